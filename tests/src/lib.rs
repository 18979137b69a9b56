//! Harness for the end-to-end tests in `it/`: each test gets a fresh temporary directory and
//! database and drives a `journeyd` executable as a separate process, as an operator would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A journeyd executable pointed at a database of its own.
pub struct Journeyd {
    exe: PathBuf,
    dir: tempfile::TempDir,
}

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output, as text.
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with everything printed unless the run exited 0.
    pub fn success(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "journeyd failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Standard output parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl Journeyd {
    /// `exe` is `env!("CARGO_BIN_EXE_journeyd-under-test")` of the calling test.
    pub fn new(exe: &str) -> Journeyd {
        Journeyd {
            exe: PathBuf::from(exe),
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("journeyd.db")
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("JOURNEYD_") {
                c.env_remove(k);
            }
        }
        // Tests check durability semantics elsewhere; here speed matters more than fsync.
        c.env("JOURNEYD_SYNCHRONOUS", "normal")
            .arg("--db")
            .arg(self.db())
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    /// Runs `journeyd --db DB ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(
            self.command(args)
                .stdin(Stdio::null())
                .output()
                .expect("journeyd runs"),
        )
    }

    /// Runs with `input` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("journeyd starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("journeyd ends"))
    }

    /// Runs with `--json`, expects success, and parses the output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(&all).success().json()
    }

    /// Writes a file in the scratch directory and returns its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// The whole log as the CLI shows it (`events --json`), for comparisons.
    pub fn log(&self) -> Vec<Value> {
        let page = self.json(&["events", "--limit", "100000"]);
        page["events"].as_array().expect("events array").clone()
    }

    /// A direct connection to the database, for what the CLI does not show.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).expect("open database")
    }
}

/// `docs/examples/` in this repository.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// The seed examples extracted verbatim from `shared/seeds/`.
pub fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/events/tests/seeds")
}

/// A path as the `&str` the command line takes.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
