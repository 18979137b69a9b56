//! `journeyd`: the command-line program. Parses the command line, sets up logging, and glues
//! the `events` and `store` crates together. Errors leave as one line on stderr with exit status
//! 1; bad usage exits 2 (clap's convention).
//!
//! The program is a library with one entry point, [`main`], so that the end-to-end tests (the
//! workspace's `tests` package) can build an executable from exactly this code: cargo gives an
//! integration test only the binaries of its own package.

mod api;
mod cli;
mod import;
mod metrics;
mod openapi;
mod output;
mod project;
mod query;
mod read_cache;
mod serve;
mod server;
mod unprojected;

use std::io::IsTerminal;
use std::process::ExitCode;

/// Runs journeyd with the process's arguments and environment.
pub fn main() -> ExitCode {
    run_with_args(std::env::args_os())
}

/// Runs journeyd with these arguments (the first is the program name) and the process's
/// environment, as the executable would. Used by the load generator to measure the real path.
pub fn run_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let parsed = <cli::Cli as clap::CommandFactory>::command()
        .try_get_matches_from(args)
        .and_then(|matches| {
            // Which credentials were typed on the command line, for `serve` to warn of.
            let on_command_line: Vec<&'static str> = match matches.subcommand() {
                Some(("serve", m)) => cli::CREDENTIAL_FLAGS
                    .into_iter()
                    .filter(|id| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
                    .collect(),
                _ => Vec::new(),
            };
            let mut cli = <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches)?;
            if let cli::Command::Serve(serve) = &mut cli.command {
                serve.on_command_line = on_command_line;
            }
            Ok(cli)
        });
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // Prints help or the usage error; exits 0 for --help/--version, 2 otherwise.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let default_level = if matches!(cli.command, cli::Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    init_tracing(
        cli.log_level.as_deref().unwrap_or(default_level),
        cli.log_format,
    );
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`journeyd events | head`): nothing is wrong, and
        // there is no one left to tell. Quiet, as a tool killed by SIGPIPE would be; Rust
        // ignores SIGPIPE, so the write fails instead.
        Err(e) if closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<Usage>() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bad usage found after parsing (a credential flag's value breaks its rule): exit status 2,
/// as for the usage errors clap finds.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Whether `e` is a write to a pipe whose reader has gone.
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// A database in a folder that does not exist is refused by every command with one line that
/// says so, before anything (a lock file, a new database) is made: SQLite would say only that
/// it cannot open the file.
fn folder_exists(db: &std::path::Path) -> anyhow::Result<()> {
    let folder = match db.parent() {
        Some(f) if !f.as_os_str().is_empty() => f,
        _ => return Ok(()),
    };
    if folder.is_dir() {
        return Ok(());
    }
    anyhow::bail!(
        "the database {} is in a folder that does not exist ({}): create it, or give another --db / JOURNEYD_DB",
        db.display(),
        folder.display()
    )
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let out = output::Output { json: cli.json };
    let config = project::config(&cli.completing_stages, cli.projector_cache_mib);
    let db = &cli.db;
    folder_exists(db)?;
    match cli.command {
        cli::Command::Serve(args) => serve::run(db, cli.synchronous, &config, &args),
        cli::Command::Import(args) => import::run(db, cli.synchronous, &config, &args, &out),
        cli::Command::Events(args) => query::events(db, &args, &out),
        cli::Command::Stats => query::stats(db, &out),
        cli::Command::Rebuild { projection } => {
            let store = import::open_store(db, cli.synchronous)?;
            let result = project::rebuild(&store, &config, projection, &out);
            store.close();
            result
        }
        cli::Command::Journey { id } => query::snapshot(db, store::Projection::Journeys, &id, &out),
        cli::Command::Journeys(args) => query::journeys(db, &args, &out),
        cli::Command::Member { guid } => {
            query::snapshot(db, store::Projection::Members, &guid, &out)
        }
        cli::Command::User { guid } => query::snapshot(db, store::Projection::Users, &guid, &out),
        cli::Command::Resource {
            resource_type,
            guid,
        } => query::snapshot(
            db,
            store::Projection::Resources,
            &format!("{resource_type}/{guid}"),
            &out,
        ),
        cli::Command::Quarantine {
            command: cli::QuarantineCommand::List,
        } => query::quarantine_list(db, &out),
        cli::Command::Quarantine {
            command: cli::QuarantineCommand::Replay,
        } => import::replay(db, cli.synchronous, &config, &out),
        cli::Command::Quarantine {
            command: cli::QuarantineCommand::Show { id, body, output },
        } => query::quarantine_show(db, id, body, output.as_deref(), &out),
        cli::Command::Quarantine {
            command: cli::QuarantineCommand::Discard { id, note },
        } => import::discard(db, cli.synchronous, id, &note, &out),
        cli::Command::Backup { dest } => query::backup(db, &dest, &out),
    }
}

fn init_tracing(level: &str, format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Only journeyd's own events: `try_init` would also forward the `log` records of
    // dependencies, whose JSON lines carry `log.file` and the like, paths of the build
    // machine. The one such record an operator needs, a migration, the store logs itself.
    // Already installed: this process ran a command before (the load generator does).
    let _ = match format {
        cli::LogFormat::Json => {
            tracing::subscriber::set_global_default(builder.json().flatten_event(true).finish())
        }
        cli::LogFormat::Text => tracing::subscriber::set_global_default(
            builder.with_ansi(std::io::stderr().is_terminal()).finish(),
        ),
    };
}

/// Milliseconds since the Unix epoch, now. The one place the binary reads the clock for events.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A store at `db` without fsync, for unit tests that need a real database.
#[cfg(test)]
fn test_store(db: &std::path::Path) -> store::Store {
    store::Store::open(
        db,
        store::Options {
            synchronous: store::Synchronous::Normal,
            ..store::Options::default()
        },
    )
    .expect("open")
}
