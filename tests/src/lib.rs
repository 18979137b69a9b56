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
    umask: Option<u32>,
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
            umask: None,
        }
    }

    /// Runs every command under this umask (through `sh`, which sets it and then becomes
    /// journeyd), as a service with a careless umask would.
    pub fn with_umask(mut self, umask: u32) -> Journeyd {
        self.umask = Some(umask);
        self
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("journeyd.db")
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `journeyd --db DB ARGS` in the test's directory, with no `JOURNEYD_*` variable from the
    /// environment but `synchronous=normal`.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_on(&self.db(), args)
    }

    /// Runs `journeyd --db DB ARGS...` on another database than the test's own.
    pub fn run_on(&self, db: &Path, args: &[&str]) -> Run {
        Run::from(
            self.command_on(db, args)
                .stdin(Stdio::null())
                .output()
                .expect("journeyd runs"),
        )
    }

    fn command_on(&self, db: &Path, args: &[&str]) -> Command {
        let mut c = match self.umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
                    .arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("JOURNEYD_") {
                c.env_remove(k);
            }
        }
        // Tests check durability semantics elsewhere; here speed matters more than fsync.
        c.env("JOURNEYD_SYNCHRONOUS", "normal")
            .arg("--db")
            .arg(db)
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

/// The seed examples: the provider pages' examples, verbatim.
pub fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/events/tests/seeds")
}

/// An `Authorization: Basic` value for `user:password`.
pub fn basic_auth(user_colon_password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    for chunk in user_colon_password.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A path as the `&str` the command line takes.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A running `journeyd serve` on a free port, with its own database.
pub struct Daemon {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    agent: ureq::Agent,
}

/// A response: status, headers we look at, body.
#[derive(Debug)]
pub struct Http {
    /// Status code.
    pub status: u16,
    /// `Retry-After`, if sent.
    pub retry_after: Option<String>,
    /// Body as text.
    pub body: String,
}

impl Http {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Journeyd {
    /// Starts `journeyd serve` on 127.0.0.1:0 with `args`; waits until it listens and its
    /// projector has caught up with the log as it was at the start (`snapshots current`).
    pub fn serve(&self, args: &[&str]) -> Daemon {
        self.serve_with_env(args, &[])
    }

    /// As [`Journeyd::serve`], with these `JOURNEYD_*` variables set for the daemon.
    pub fn serve_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let d = self
            .try_serve_with_env(args, env)
            .unwrap_or_else(|log| panic!("journeyd serve did not start:\n{log}"));
        let started = std::time::Instant::now();
        while !d.log().contains("snapshots current") {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the projector did not catch up:\n{}",
                d.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        d
    }

    /// Starts `journeyd serve` and returns once it listens, with the projector perhaps still
    /// catching up; the log if it exits before listening.
    pub fn try_serve(&self, args: &[&str]) -> Result<Daemon, String> {
        self.try_serve_with_env(args, &[])
    }

    fn try_serve_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Daemon, String> {
        use std::io::BufRead;
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .env("JOURNEYD_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("journeyd serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(i) = line.find("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let url = line[i + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let _ = tx.send(url);
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(url) => {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                Ok(Daemon {
                    child,
                    url,
                    log,
                    agent,
                })
            }
            Err(_) => {
                let _ = child.wait();
                std::thread::sleep(std::time::Duration::from_millis(100));
                Err(log.lock().map(|l| l.clone()).unwrap_or_default())
            }
        }
    }
}

impl Daemon {
    fn http(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Http {
        let mut r = r.expect("HTTP request");
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r.body_mut().read_to_string().unwrap_or_default();
        Http {
            status,
            retry_after,
            body,
        }
    }

    /// `POST path` with `body` and extra headers.
    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Http {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::http(req.send(body))
    }

    /// `POST path`; `None` when the connection fails (the daemon is gone).
    pub fn try_post(&self, path: &str, body: &[u8]) -> Option<Http> {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.url))
            .send(body)
            .ok()?;
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap_or_default();
        Some(Http {
            status,
            retry_after: None,
            body,
        })
    }

    /// `GET path` with extra headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Http {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::http(req.call())
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Http {
        self.get_with(path, &[])
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// As [`Daemon::terminate`], with everything the daemon logged.
    pub fn terminate_with_log(self, timeout: std::time::Duration) -> (Option<i32>, String) {
        let log = std::sync::Arc::clone(&self.log);
        let code = self.terminate(timeout);
        // The reader thread ends at the pipe's end, just after the exit.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        (code, log)
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit code.
    pub fn terminate(mut self, timeout: std::time::Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL, no warning; waits for it to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
