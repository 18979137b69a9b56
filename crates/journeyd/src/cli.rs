//! The command line (docs/contract.md section 8). Every flag can also come from the environment
//! variable named beside it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use events::Source;
use store::Synchronous;

/// Webhook-to-state projector for MX Platform and Esendex Mobile Journeys.
///
/// Every webhook body is appended verbatim to an append-only SQLite event log; bodies that are
/// not JSON are kept whole in quarantine.
#[derive(Debug, Parser)]
#[command(
    name = "journeyd",
    version,
    propagate_version = true,
    max_term_width = 100,
    next_help_heading = "Global options (before or after the command)"
)]
pub(crate) struct Cli {
    /// The SQLite database file.
    #[arg(
        long,
        global = true,
        env = "JOURNEYD_DB",
        default_value = "./journeyd.db"
    )]
    pub(crate) db: PathBuf,

    /// Machine output: compact JSON on stdout. From the environment, `0`, `false`, `no`, `off`
    /// or empty mean off, anything else on.
    #[arg(long, global = true, env = "JOURNEYD_JSON", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) json: bool,

    /// Durability of each commit: `full` fsyncs every commit (an acknowledged event survives
    /// power loss); `normal` fsyncs at checkpoints only (it survives a crash of the process).
    #[arg(long, global = true, env = "JOURNEYD_SYNCHRONOUS", default_value = "full", value_parser = parse_synchronous)]
    pub(crate) synchronous: Synchronous,

    /// Stage names that complete a journey, comma-separated. Changing the set rebuilds the
    /// journeys projection the next time journeyd projects (`serve` at start-up, `import`,
    /// `rebuild`).
    #[arg(
        long,
        global = true,
        env = "JOURNEYD_COMPLETING_STAGES",
        default_value = "journeyEnd",
        value_delimiter = ','
    )]
    pub(crate) completing_stages: Vec<String>,

    /// Memory, in MiB, each projection may use to keep folds between batches (estimated; see
    /// the `journeyd_projector_cache_bytes` metric). A key that is not kept is refolded from
    /// the log, so too small a cache slows the projector when many keys are active.
    #[arg(
        long,
        global = true,
        env = "JOURNEYD_PROJECTOR_CACHE_MIB",
        default_value_t = projector::Config::default().cache_bytes >> 20
    )]
    pub(crate) projector_cache_mib: usize,

    /// Log filter for stderr (`warn`, `info`, `journeyd=debug,store=trace`, ...). Default:
    /// `info` for `serve`, `warn` for the other commands.
    #[arg(long, global = true, env = "JOURNEYD_LOG", value_parser = parse_log_filter)]
    pub(crate) log_level: Option<String>,

    /// Log format on stderr: `text` for people, `json` for machines (one object per line).
    #[arg(
        long,
        global = true,
        env = "JOURNEYD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the daemon: webhook ingest, the projector and the read API in one process.
    Serve(Box<ServeArgs>),
    /// Import delivery bodies from files: a `.json` file is one body, a `.ndjson` file (or `-`
    /// for stdin) has one body per line.
    Import(ImportArgs),
    /// Show the event log in arrival order.
    Events(EventsArgs),
    /// Refold projections from the start of the log into new tables and swap them in.
    /// Safe while other journeyd processes append; they keep reading the old tables until the swap.
    Rebuild {
        /// Which projection.
        #[arg(value_enum, default_value = "all")]
        projection: Which,
    },
    /// One journey's state, by `correlationId`.
    Journey {
        /// The journey's correlation id.
        id: String,
    },
    /// Journeys, filtered, by correlation id.
    Journeys(JourneysArgs),
    /// One MX member's state.
    Member {
        /// The member's guid.
        guid: String,
    },
    /// One MX user's state.
    User {
        /// The user's guid.
        guid: String,
    },
    /// One MX resource's state.
    Resource {
        /// The envelope key: goal, account, transaction, ...
        #[arg(value_name = "TYPE")]
        resource_type: String,
        /// The resource's guid.
        guid: String,
    },
    /// Counts: events by source and kind, unknown events, quarantined bodies, log head.
    Stats,
    /// Bodies that could not be split into events.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Write a consistent copy of the database to a new file, while the daemon runs: the
    /// database as of one commit, compacted, checked. Never overwrites a file.
    Backup {
        /// Where to write the copy; the file must not exist.
        #[arg(value_name = "FILE")]
        dest: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on: IP:PORT (`127.0.0.1:8080`, `0.0.0.0:8080`, `[::]:8080`), or
    /// `localhost:PORT`; port 0 picks a free port and logs it.
    #[arg(long, env = "JOURNEYD_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub(crate) listen: std::net::SocketAddr,

    /// MX: accept HTTP Basic with these credentials. Repeat it to accept several at once (a rotation); visible to other local users
    /// in the process list: prefer --mx-basic-auth-file.
    #[arg(
        long,
        env = "JOURNEYD_MX_BASIC_AUTH",
        value_name = "USER:PASS",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) mx_basic_auth: Vec<Redacted>,
    /// As --mx-basic-auth, read from a file: one per line (a line's end and blank lines are not
    /// part of it). Repeatable.
    #[arg(
        long,
        env = "JOURNEYD_MX_BASIC_AUTH_FILE",
        value_name = "PATH",
        action = clap::ArgAction::Append
    )]
    pub(crate) mx_basic_auth_file: Vec<PathBuf>,
    /// MX: accept this static bearer token. Repeat it to accept several at once (a rotation); visible to other local users
    /// in the process list: prefer --mx-bearer-token-file.
    #[arg(
        long,
        env = "JOURNEYD_MX_BEARER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) mx_bearer_token: Vec<Redacted>,
    /// As --mx-bearer-token, read from a file: one per line (a line's end and blank lines are not
    /// part of it). Repeatable.
    #[arg(
        long,
        env = "JOURNEYD_MX_BEARER_TOKEN_FILE",
        value_name = "PATH",
        action = clap::ArgAction::Append
    )]
    pub(crate) mx_bearer_token_file: Vec<PathBuf>,
    /// MX: accept Standard Webhooks signatures made with this secret. Repeat it to accept several at once (a rotation); visible to other local users
    /// in the process list: prefer --mx-webhook-secret-file.
    #[arg(
        long,
        env = "JOURNEYD_MX_WEBHOOK_SECRET",
        value_name = "whsec_...",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) mx_webhook_secret: Vec<Redacted>,
    /// As --mx-webhook-secret, read from a file: one per line (a line's end and blank lines are not
    /// part of it). Repeatable.
    #[arg(
        long,
        env = "JOURNEYD_MX_WEBHOOK_SECRET_FILE",
        value_name = "PATH",
        action = clap::ArgAction::Append
    )]
    pub(crate) mx_webhook_secret_file: Vec<PathBuf>,

    /// Mobile Journeys: accept HTTP Basic with these credentials. Repeat it to accept several at once (a rotation); visible to other local users
    /// in the process list: prefer --mobile-journeys-basic-auth-file.
    #[arg(
        long,
        env = "JOURNEYD_MOBILE_JOURNEYS_BASIC_AUTH",
        value_name = "USER:PASS",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) mobile_journeys_basic_auth: Vec<Redacted>,
    /// As --mobile-journeys-basic-auth, read from a file: one per line (a line's end and blank lines are not
    /// part of it). Repeatable.
    #[arg(
        long,
        env = "JOURNEYD_MOBILE_JOURNEYS_BASIC_AUTH_FILE",
        value_name = "PATH",
        action = clap::ArgAction::Append
    )]
    pub(crate) mobile_journeys_basic_auth_file: Vec<PathBuf>,
    /// Mobile Journeys: accept this static bearer token. Repeat it to accept several at once (a rotation); visible to other local users
    /// in the process list: prefer --mobile-journeys-bearer-token-file.
    #[arg(
        long,
        env = "JOURNEYD_MOBILE_JOURNEYS_BEARER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) mobile_journeys_bearer_token: Vec<Redacted>,
    /// As --mobile-journeys-bearer-token, read from a file: one per line (a line's end and blank lines are not
    /// part of it). Repeatable.
    #[arg(
        long,
        env = "JOURNEYD_MOBILE_JOURNEYS_BEARER_TOKEN_FILE",
        value_name = "PATH",
        action = clap::ArgAction::Append
    )]
    pub(crate) mobile_journeys_bearer_token_file: Vec<PathBuf>,
    /// Mobile Journeys: accept Standard Webhooks signatures made with this secret. Repeat it to accept several at once (a rotation); visible to other local users
    /// in the process list: prefer --mobile-journeys-webhook-secret-file.
    #[arg(
        long,
        env = "JOURNEYD_MOBILE_JOURNEYS_WEBHOOK_SECRET",
        value_name = "whsec_...",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) mobile_journeys_webhook_secret: Vec<Redacted>,
    /// As --mobile-journeys-webhook-secret, read from a file: one per line (a line's end and blank lines are not
    /// part of it). Repeatable.
    #[arg(
        long,
        env = "JOURNEYD_MOBILE_JOURNEYS_WEBHOOK_SECRET_FILE",
        value_name = "PATH",
        action = clap::ArgAction::Append
    )]
    pub(crate) mobile_journeys_webhook_secret_file: Vec<PathBuf>,

    /// Require `Authorization: Bearer TOKEN` on the read API (`/v1/...`). Repeat it to accept several at once (a rotation); visible to other local users
    /// in the process list: prefer --api-token-file.
    #[arg(
        long,
        env = "JOURNEYD_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) api_token: Vec<Redacted>,
    /// As --api-token, read from a file: one per line (a line's end and blank lines are not
    /// part of it). Repeatable.
    #[arg(
        long,
        env = "JOURNEYD_API_TOKEN_FILE",
        value_name = "PATH",
        action = clap::ArgAction::Append
    )]
    pub(crate) api_token_file: Vec<PathBuf>,

    /// The largest webhook body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "JOURNEYD_MAX_BODY", default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub(crate) max_body: usize,

    /// Seconds a webhook body may take to arrive after its request head; past it, 408.
    #[arg(long, env = "JOURNEYD_BODY_TIMEOUT", default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) body_timeout: u32,

    /// Seconds a request head may take to arrive; a connection idle this long between
    /// requests is closed too.
    #[arg(long, env = "JOURNEYD_HEADER_TIMEOUT", default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) header_timeout: u32,

    /// Seconds a response may wait for the client to take any of it; past it, the connection
    /// is closed (a client that stopped reading, a stream subscriber included).
    #[arg(long, env = "JOURNEYD_WRITE_TIMEOUT", default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) write_timeout: u32,

    /// `/v1/stream` responses open at once; past it, a new one gets 503 with Retry-After, so
    /// that subscribers cannot take every connection from the webhooks.
    #[arg(long, env = "JOURNEYD_MAX_STREAMS", default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_streams: u32,

    /// Connections open at once; past it, new ones wait in the kernel's backlog until one
    /// closes. Bounds memory: each may hold a body of up to --max-body.
    #[arg(long, env = "JOURNEYD_MAX_CONNECTIONS", default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: u32,

    /// Requests that may wait for the writer; past this, webhooks get 503 with Retry-After.
    #[arg(long, env = "JOURNEYD_QUEUE", default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) queue: u32,

    /// Threads serving HTTP. Default: one less than the CPUs (at least one), because the writer
    /// and the projector each run on a thread of their own and must keep up under load.
    #[arg(long, env = "JOURNEYD_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) workers: Option<u16>,

    /// Memory for rendered snapshot documents kept in front of SQLite for the point-read routes
    /// (`GET /v1/journeys/{id}` and the like), in MiB; 0 turns the cache off.
    #[arg(
        long,
        env = "JOURNEYD_READ_CACHE_MIB",
        default_value_t = 4,
        value_name = "MIB"
    )]
    pub(crate) read_cache_mib: usize,
    /// The write-ahead log's bound, in MiB: past it, the writer starts the WAL over between two
    /// commits (a pause of one fsync). Larger means fewer pauses and more disk for `PATH-wal`.
    #[arg(
        long,
        env = "JOURNEYD_WAL_MIB",
        default_value_t = 128,
        value_name = "MIB",
        value_parser = clap::value_parser!(u64).range(1..=65_536)
    )]
    pub(crate) wal_mib: u64,

    /// The credential flags given on the command line itself (not the environment or a file),
    /// each of which draws a warning: the process list shows them to every local user. Filled
    /// from clap's matches after parsing.
    #[arg(skip)]
    pub(crate) on_command_line: Vec<&'static str>,
}

/// The ids of [`ServeArgs`]' credential flags that take a value on the command line.
pub(crate) const CREDENTIAL_FLAGS: [&str; 7] = [
    "mx_basic_auth",
    "mx_bearer_token",
    "mx_webhook_secret",
    "mobile_journeys_basic_auth",
    "mobile_journeys_bearer_token",
    "mobile_journeys_webhook_secret",
    "api_token",
];

/// A credential from the command line or the environment. `Debug` shows `[redacted]`, so the
/// parsed arguments can be logged or printed whole without a secret in them.
#[derive(Clone)]
pub(crate) struct Redacted(String);

impl Redacted {
    /// The value itself, for the one place that needs it: building the auth schemes.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Redacted {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Redacted(s.to_owned()))
    }
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Which provider the bodies are from. Without it, each body's source is detected from its
    /// shape: an array with an object that has `productId`, or one such object, is Mobile
    /// Journeys; anything else is MX.
    #[arg(long, env = "JOURNEYD_IMPORT_SOURCE", value_parser = parse_source)]
    pub(crate) source: Option<Source>,

    /// Append only, without bringing the snapshots up to date. For bulk backfills: import many
    /// files, then project once (the next import, `serve` or `rebuild` catches up).
    #[arg(long, env = "JOURNEYD_IMPORT_NO_PROJECT", value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_project: bool,

    /// Files to import; `-` reads NDJSON from stdin.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Show events with `seq` greater than this.
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub(crate) after: i64,

    /// At most this many events.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) limit: u32,
}

/// A projection, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Which {
    Journeys,
    Members,
    Users,
    Resources,
    All,
}

#[derive(Debug, Args)]
pub(crate) struct JourneysArgs {
    /// Only journeys with this status: created, opened, paid or completed.
    #[arg(long, value_parser = ["created", "opened", "paid", "completed"])]
    pub(crate) status: Option<String>,
    /// Only journeys of this journey definition (`journeyId`).
    #[arg(long, value_name = "J")]
    pub(crate) journey_id: Option<String>,
    /// Only journeys with this customer reference.
    #[arg(long)]
    pub(crate) customer_reference: Option<String>,
    /// Start after this correlation id (the `next` cursor of the previous page).
    #[arg(long, value_name = "CURSOR")]
    pub(crate) after: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) limit: u32,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuarantineCommand {
    /// List quarantined bodies: id, when, source, size and reason.
    List,
    /// Re-parse every quarantined body with this build's parser; those that now split into
    /// events move into the log, the rest stay.
    Replay,
    /// One quarantined body: its reason, source, sizes, times and the headers kept with it;
    /// with --body its exact bytes on stdout, with --output into a new file.
    Show {
        /// The body's id (`quarantine list`).
        id: i64,
        /// Write the body's exact bytes to stdout, and nothing else.
        #[arg(long, conflicts_with = "output")]
        body: bool,
        /// Write the body's exact bytes to this file (which must not exist; owner-only).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Move a body you judge to be garbage out of the quarantine, on record: it is kept whole,
    /// with when and your note, in the `quarantine_discarded` table, and no longer listed,
    /// counted or replayed.
    Discard {
        /// The body's id (`quarantine list`).
        id: i64,
        /// Why: kept beside the body.
        #[arg(long, value_name = "TEXT", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        note: String,
    },
}

fn parse_source(s: &str) -> Result<Source, String> {
    s.parse().map_err(|e: events::UnknownSource| e.to_string())
}

fn parse_synchronous(s: &str) -> Result<Synchronous, String> {
    s.parse()
}

/// `--listen`: an IP address and port, or `localhost:PORT` (the IPv4 loopback, which is what
/// the default listens on). Any other name is refused with how to write the address, rather
/// than resolved: a name that resolves to several addresses would listen on one of them.
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if let Some(port) = s.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "`{s}` is not an address to listen on: write IP:PORT (127.0.0.1:8080 for this machine only, 0.0.0.0:8080 for every IPv4 interface, [::]:8080 for IPv6) or localhost:PORT"
    ))
}

/// A log filter `tracing_subscriber` accepts; anything else is bad usage, not a quiet `warn`.
fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The parsed command line can be printed whole: no credential shows.
    #[test]
    fn credentials_never_show_in_the_parsed_arguments() {
        let secrets = [
            ("--mx-basic-auth", "mx:hunter2-basic"),
            ("--mx-bearer-token", "hunter2-mx-token"),
            ("--mx-webhook-secret", "whsec_aHVudGVyMi1teA=="),
            ("--mobile-journeys-basic-auth", "mj:hunter2-basic"),
            ("--mobile-journeys-bearer-token", "hunter2-mj-token"),
            ("--mobile-journeys-webhook-secret", "whsec_aHVudGVyMi1tag=="),
            ("--api-token", "hunter2-api"),
        ];
        let mut args = vec!["journeyd", "serve"];
        for (flag, value) in &secrets {
            args.extend([*flag, *value]);
        }
        let cli = Cli::try_parse_from(args).expect("parses");
        let shown = format!("{cli:?}");
        for (flag, value) in secrets {
            assert!(!shown.contains(value), "{flag} shows: {shown}");
        }
        assert_eq!(shown.matches("[redacted]").count(), 7, "{shown}");
        let Command::Serve(serve) = cli.command else {
            panic!("serve")
        };
        assert_eq!(
            serve
                .api_token
                .iter()
                .map(Redacted::expose)
                .collect::<Vec<_>>(),
            ["hunter2-api"]
        );
    }

    /// Each credential flag may be repeated (old and new during a rotation), and so may its
    /// `-file` form.
    #[test]
    fn credential_flags_and_their_files_may_be_repeated() {
        let cli = Cli::try_parse_from([
            "journeyd",
            "serve",
            "--mx-bearer-token",
            "old",
            "--mx-bearer-token",
            "new",
            "--api-token-file",
            "/a",
            "--api-token-file",
            "/b",
        ])
        .expect("parses");
        let Command::Serve(serve) = cli.command else {
            panic!("serve")
        };
        let tokens: Vec<&str> = serve.mx_bearer_token.iter().map(Redacted::expose).collect();
        assert_eq!(tokens, ["old", "new"]);
        assert_eq!(
            serve.api_token_file,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }

    /// `--listen` takes an IP and port, or `localhost:PORT`; anything else is bad usage that
    /// says how to write it.
    #[test]
    fn listen_takes_an_ip_and_port_or_localhost_and_says_how_to_write_anything_else() {
        let listen = |s: &str| {
            Cli::try_parse_from(["journeyd", "serve", "--listen", s]).map(|cli| match cli.command {
                Command::Serve(serve) => serve.listen,
                _ => panic!("serve"),
            })
        };
        assert_eq!(
            listen("localhost:9000").expect("ok").to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(listen("0.0.0.0:80").expect("ok").to_string(), "0.0.0.0:80");
        assert_eq!(listen("[::1]:80").expect("ok").to_string(), "[::1]:80");
        for bad in [
            "example.com:80",
            "8080",
            "localhost",
            "localhost:http",
            ":8080",
        ] {
            let e = listen(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("IP:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_log_filter_that_does_not_parse_is_bad_usage() {
        let parsed =
            |filter: &str| Cli::try_parse_from(["journeyd", "--log-level", filter, "stats"]);
        assert!(parsed("journeyd=debug,store=info").is_ok());
        let bad = parsed("journeyd=loud").expect_err("refused");
        assert_eq!(bad.exit_code(), 2);
    }

    /// A count or a duration of `serve` that must be at least 1 refuses 0 as bad usage, rather
    /// than starting a daemon that cannot work as documented.
    #[test]
    fn serve_counts_and_timeouts_refuse_zero() {
        for flag in [
            "--queue",
            "--workers",
            "--max-streams",
            "--max-connections",
            "--body-timeout",
            "--header-timeout",
            "--write-timeout",
        ] {
            let parsed = |n: &str| Cli::try_parse_from(["journeyd", "serve", flag, n]);
            assert!(parsed("1").is_ok(), "{flag} 1");
            let zero = parsed("0").expect_err(flag);
            assert_eq!(zero.exit_code(), 2, "{flag}");
        }
    }
}
