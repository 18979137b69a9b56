//! Load generators behind `docs/BENCHMARKS.md`. Every figure is printed beside a baseline
//! measured in the same run, on the same machine, against a database file in the same
//! directory, so the ratios mean something on a noisy machine.
//!
//! ```text
//! cargo run --release -p bench -- import --events 1000000
//! cargo run --release -p bench -- appenders --seconds 5
//! cargo run --release -p bench -- rebuild --events 5000000
//! cargo build --release -p journeyd -p bench && target/release/bench http --seconds 5
//! target/release/bench --dir /var/tmp soak --events 10000000 --svg docs/soak.svg
//! target/release/bench disk journeyd.db
//! ```

mod cpu;
mod disk;
mod http;
mod soak;
mod writer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use events::{Event, Source, parse_delivery};
use rusqlite::params;
use store::{Body, Options, Store, Submission, Synchronous};

#[derive(Parser)]
#[command(about = "journeyd load generators")]
struct Cli {
    /// Where to put the temporary databases (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// `journeyd import` of an NDJSON file of small Mobile Journeys events, against a plain
    /// rusqlite batched insert of the same rows into the same schema.
    Import {
        /// Events to import.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Repetitions of each measurement; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Full rebuild of every projection from a log of mixed events (both providers, about one
    /// key per five events), against a plain scan of the events table; then incremental
    /// projection of a stream of single-event appends.
    Rebuild {
        /// Events in the log.
        #[arg(long, default_value_t = 5_000_000)]
        events: usize,
        /// How long to run the incremental stream.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// `journeyd serve` under HTTP load (64 and 256 connections) against a parse-only axum
    /// handler; ack-to-visible latency, peak RSS, point queries.
    Http {
        /// How long to run each load.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// The journeyd executable (default: beside this one).
        #[arg(long)]
        journeyd: Option<PathBuf>,
        /// Concurrent connections, one row each.
        #[arg(long, value_delimiter = ',', default_values_t = [64, 256])]
        connections: Vec<usize>,
    },
    /// The daemon's write path without HTTP, in lockstep: append groups of single-event
    /// deliveries, each followed by the projector's batch; against appends alone. The same work
    /// in every run, for comparing builds under `valgrind --tool=callgrind`.
    Writer {
        /// Events (single-event deliveries) to write.
        #[arg(long, default_value_t = 50_000)]
        events: usize,
        /// Deliveries per append transaction.
        #[arg(long, default_value_t = 64)]
        group: usize,
        /// Simulated connections, each with 20 journeys open (as in `http`).
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// `journeyd serve` on one growing database for a long run: new single-event deliveries
    /// (a new journey each) at a steady concurrency, measured in slices (log and WAL size,
    /// events/s, p50/p99/max, the writer's commit latency, RSS). Needs the disk for the
    /// log: about 1.3 KB an event.
    Soak {
        /// Stop after this many events.
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Stop after this many minutes, if sooner (a quick look).
        #[arg(long)]
        minutes: Option<u64>,
        /// The length of a slice.
        #[arg(long, default_value_t = 10)]
        slice_seconds: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// The journeyd executable (default: beside this one).
        #[arg(long)]
        journeyd: Option<PathBuf>,
        /// Also write the rows to this CSV file.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Also plot latency, throughput and WAL size to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Move the database here at the end (same file system), for `bench disk`.
        #[arg(long)]
        keep_db: Option<PathBuf>,
        /// Arguments for `journeyd serve`, after `--`.
        #[arg(last = true)]
        serve_args: Vec<String>,
    },
    /// Disk use per event of a journeyd database: each table and index, from SQLite's `dbstat`.
    Disk {
        /// The database file (read only; stop the daemon first for a file without a WAL).
        db: PathBuf,
    },
    /// The parse-only baseline server, for `http` (not for direct use).
    #[command(hide = true)]
    BaselineServer {
        /// Also append each body to this SQLite file, group-committed with fsync, before 204.
        #[arg(long)]
        durable: Option<PathBuf>,
    },
    /// Durable appends (synchronous=FULL) from 1, 16 and 256 concurrent appenders, one event
    /// per append, against one transaction per event.
    Appenders {
        /// How long to run each configuration.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = match &cli.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    match cli.command {
        Command::Import { events, runs } => import(dir.path(), events, runs.max(1)),
        Command::Appenders { seconds } => appenders(dir.path(), Duration::from_secs(seconds)),
        Command::Rebuild { events, seconds } => {
            rebuild(dir.path(), events, Duration::from_secs(seconds))
        }
        Command::Http {
            seconds,
            journeyd,
            connections,
        } => {
            let exe = match journeyd {
                Some(p) => p,
                None => std::env::current_exe()?.with_file_name("journeyd"),
            };
            http::run(dir.path(), seconds, &exe, &connections)
        }
        Command::Soak {
            events,
            minutes,
            slice_seconds,
            connections,
            journeyd,
            csv,
            svg,
            keep_db,
            serve_args,
        } => soak::run(
            dir.path(),
            &soak::Settings {
                journeyd: match journeyd {
                    Some(p) => p,
                    None => std::env::current_exe()?.with_file_name("journeyd"),
                },
                events,
                minutes,
                slice: Duration::from_secs(slice_seconds.max(1)),
                connections: connections.max(1),
                csv,
                svg,
                serve_args,
                keep_db,
            },
        ),
        Command::Disk { db } => disk::run(&db),
        Command::Writer {
            events,
            group,
            connections,
        } => writer::run(dir.path(), events, group, connections),
        Command::BaselineServer { durable } => http::baseline_server(durable.as_deref()),
    }
}

/// A deterministic stream of small Mobile Journeys events: ~20% journeys each get a link, a
/// session, a stage or a payment (200-400 bytes each).
fn mj_event_line(i: usize) -> String {
    let journey = i / 5;
    let t = 1_623_412_800 + i as u64;
    let (h, m, s) = ((t / 3600) % 24, (t / 60) % 60, t % 60);
    let when = format!("2021-06-11T{h:02}:{m:02}:{s:02}Z");
    let head = format!(
        r#"{{"productId":"mobilejourneys","eventVersion":"1","eventTime":"{when}","data":{{"occurredAt":"{when}","journeyId":"2","correlationId":"c-{journey:08}","customerReference":"AX-{journey}""#
    );
    match i % 5 {
        0 => format!(
            r#"{head},"url":"https://examplelink.com/x{journey}","parameters":{{"balance":"18.56"}}}},"eventId":"linkcreated"}}"#
        ),
        1 | 2 => format!(r#"{head},"sessionId":"s-{i}"}},"eventId":"sessioncreated"}}"#),
        3 => format!(
            r#"{head},"sessionId":"s-{i}","stageName":"details","sessionData":{{"balance":"13.00"}}}},"eventId":"stage"}}"#
        ),
        _ => format!(
            r#"{head},"sessionId":"s-{i}","paymentDetail":{{"transactionId":"t-{i}","authorised":"true","amount":5.56,"currency":"GBP"}}}},"eventId":"paymentattempt"}}"#
        ),
    }
}

fn fresh_db(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    // Create the schema through the store, exactly as journeyd would.
    Store::open(&path, Options::default())?.close();
    Ok(path)
}

fn import(dir: &Path, n: usize, runs: usize) -> anyhow::Result<()> {
    let file = dir.join("events.ndjson");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..n {
            writeln!(w, "{}", mj_event_line(i))?;
        }
        w.flush()?;
    }
    let bytes = std::fs::metadata(&file)?.len();
    // The rows the baseline inserts: parsed once, outside its timing.
    let text = std::fs::read_to_string(&file)?;
    let rows: Vec<Event> = text
        .lines()
        .map(|l| parse_delivery(Source::MobileJourneys, l.as_bytes()).map(|mut e| e.remove(0)))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("generator produced a bad line: {e}"))?;

    let mut baseline = Duration::MAX;
    let mut ours = Duration::MAX;
    let mut projected = Duration::MAX;
    for run in 0..runs {
        let db = fresh_db(dir, "baseline.db")?;
        let t = Instant::now();
        plain_insert(&db, &rows)?;
        baseline = baseline.min(t.elapsed());

        let timed = |no_project: bool| -> anyhow::Result<Duration> {
            let db = fresh_db(dir, "journeyd.db")?;
            let mut args = vec![
                "journeyd",
                "--db",
                db.to_str().context("path")?,
                "--json",
                "import",
                "--source",
                "mobile-journeys",
            ];
            if no_project {
                args.push("--no-project");
            }
            args.push(file.to_str().context("path")?);
            let t = Instant::now();
            let code = journeyd::run_with_args(args);
            let took = t.elapsed();
            anyhow::ensure!(code == std::process::ExitCode::SUCCESS, "import failed");
            let stored: i64 = rusqlite::Connection::open(&db)?.query_row(
                "SELECT count(*) FROM events",
                [],
                |r| r.get(0),
            )?;
            anyhow::ensure!(stored as usize == n, "import stored {stored} of {n} events");
            Ok(took)
        };
        let took = timed(true)?;
        ours = ours.min(took);
        projected = projected.min(timed(false)?);
        eprintln!(
            "run {}: baseline {:?}, journeyd import {:?}",
            run + 1,
            baseline,
            took
        );
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "import of {n} Mobile Journeys events ({:.0} bytes each on average), synchronous=FULL, best of {runs}",
        bytes as f64 / n as f64
    );
    println!();
    println!("| what | time | events/s | ratio to baseline |");
    println!("|---|---|---|---|");
    println!(
        "| plain rusqlite batched insert of the same rows (baseline) | {:.2} s | {:.0} | 1.00 |",
        baseline.as_secs_f64(),
        rate(baseline)
    );
    println!(
        "| `journeyd import --no-project` (read, parse, canonicalize, UUIDv5, dedupe, append) | {:.2} s | {:.0} | {:.2} |",
        ours.as_secs_f64(),
        rate(ours),
        baseline.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "| `journeyd import` (the same, then projecting into snapshots) | {:.2} s | {:.0} | {:.2} |",
        projected.as_secs_f64(),
        rate(projected),
        baseline.as_secs_f64() / projected.as_secs_f64()
    );
    Ok(())
}

/// What a hand-written loader would do: one prepared INSERT, 2048 rows per transaction, same
/// schema and pragmas, rows already parsed. No dedupe bookkeeping, no deliveries, no counts.
fn plain_insert(db: &Path, rows: &[Event]) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    for chunk in rows.chunks(2048) {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO events (event_id, source, kind, correlation_id, member_guid, user_guid, resource_key,
                                     clock, occurred_at, received_at, delivery_id, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for e in chunk {
                stmt.execute(params![
                    &e.id.as_bytes()[..],
                    e.source.as_str(),
                    e.kind.as_str(),
                    e.keys.correlation_id,
                    e.keys.member_guid,
                    e.keys.user_guid,
                    e.keys.resource,
                    e.clock.column(),
                    e.occurred_at,
                    0i64,
                    1i64,
                    e.payload,
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

fn appenders(dir: &Path, duration: Duration) -> anyhow::Result<()> {
    println!(
        "durable appends, synchronous=FULL, one single-event submission per append, {}s per row",
        duration.as_secs()
    );
    println!();
    println!(
        "| appenders | events/s | commits/s | events per commit | ratio to one transaction per event |"
    );
    println!("|---|---|---|---|---|");
    let per_event = one_transaction_per_event(dir, duration)?;
    println!(
        "| 1 (baseline: plain rusqlite, one transaction per event) | {per_event:.0} | {per_event:.0} | 1.0 | 1.00 |"
    );
    for threads in [1usize, 16, 256] {
        let db = fresh_db(dir, &format!("appenders-{threads}.db"))?;
        let commits = Arc::new(AtomicU64::new(0));
        let hook_commits = Arc::clone(&commits);
        let store = Store::open(
            &db,
            Options {
                synchronous: Synchronous::Full,
                on_commit: Some(Arc::new(move |_| {
                    hook_commits.fetch_add(1, Ordering::Relaxed);
                })),
                ..Options::default()
            },
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let appended = Arc::new(AtomicU64::new(0));
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let w = store.writer();
                let (stop, appended, errors) = (
                    Arc::clone(&stop),
                    Arc::clone(&appended),
                    Arc::clone(&errors),
                );
                s.spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        let line = mj_event_line(i);
                        i += threads;
                        let body = match parse_delivery(Source::MobileJourneys, line.as_bytes()) {
                            Ok(events) => Body::Events(events),
                            Err(e) => {
                                errors.lock().map(|mut v| v.push(e.to_string())).ok();
                                return;
                            }
                        };
                        let sub = Submission {
                            source: Source::MobileJourneys,
                            received_at: 0,
                            request_id: None,
                            size: line.len(),
                            body,
                        };
                        match w.append(vec![sub]) {
                            Ok(_) => {
                                appended.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                errors.lock().map(|mut v| v.push(e.to_string())).ok();
                                return;
                            }
                        }
                    }
                });
            }
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
        });
        let secs = started.elapsed().as_secs_f64();
        store.close();
        if let Some(e) = errors.lock().ok().and_then(|v| v.first().cloned()) {
            anyhow::bail!("an appender failed: {e}");
        }
        let (n, c) = (
            appended.load(Ordering::Relaxed) as f64,
            commits.load(Ordering::Relaxed) as f64,
        );
        println!(
            "| {threads} | {:.0} | {:.0} | {:.1} | {:.2} |",
            n / secs,
            c / secs,
            n / c.max(1.0),
            (n / secs) / per_event
        );
    }
    Ok(())
}

/// One fsync'd transaction per event: what an append path without group commit costs.
fn one_transaction_per_event(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let db = fresh_db(dir, "per-event.db")?;
    let mut conn = rusqlite::Connection::open(&db)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < duration {
        let line = mj_event_line(n);
        let e = parse_delivery(Source::MobileJourneys, line.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .remove(0);
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO events (event_id, source, kind, correlation_id, received_at, delivery_id, payload) VALUES (?1, ?2, ?3, ?4, 0, 1, ?5)",
            params![&e.id.as_bytes()[..], e.source.as_str(), e.kind.as_str(), e.keys.correlation_id, e.payload],
        )?;
        tx.commit()?;
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// A mixed log: 60% Mobile Journeys events over `n/5 * 0.6` journeys (five events each), and MX
/// member data, jobs, connection status, goals and analytics over members, users and goals.
/// About one key per five events in all. Deterministic.
fn mixed_event(i: usize) -> (Source, String) {
    if i % 5 < 3 {
        // Journeys: i -> (journey, step)
        let n = i / 5 * 3 + i % 5;
        return (Source::MobileJourneys, mj_event_line(n));
    }
    let k = i / 5;
    let member = k % 200_000;
    let user = member % 100_000;
    let t = 1_600_000_000 + k as u64;
    let body = match (i % 5, k % 4) {
        (3, 0) => format!(
            r#"{{"action":"member_data_updated","type":"AGGREGATION","member_guid":"MBR-{member}","user_guid":"USR-{user}","completed_at":{t},"transactions_created_count":{},"transactions_updated_count":1}}"#,
            k % 7
        ),
        (3, 1) => format!(
            r#"{{"job":{{"guid":"JOB-{k}","member_guid":"MBR-{member}","user_guid":"USR-{user}","status":6,"status_name":"COMPLETED","updated_at":{t},"is_authenticated":true,"error_message":null}}}}"#
        ),
        (3, 2) => format!(
            r#"{{"type":"CONNECTION_STATUS","action":"CHANGED","connection_status":"CONNECTED","connection_status_id":6,"member_guid":"MBR-{member}","user_guid":"USR-{user}","n":{k}}}"#
        ),
        (3, _) => format!(
            r#"{{"action":"updated","goal":{{"guid":"GOL-{}","user_guid":"USR-{user}","revision":{},"amount":750,"name":"Home"}}}}"#,
            k % 100_000,
            k / 100_000
        ),
        _ => format!(
            r#"[{{"type":"pageview","session_id":"S-{}","user_guid":"USR-{user}","created_at":{t}}}]"#,
            k % 50_000
        ),
    };
    (Source::Mx, body)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rebuild(dir: &Path, n: usize, duration: Duration) -> anyhow::Result<()> {
    let db = fresh_db(dir, "rebuild.db")?;
    let store = Store::open(
        &db,
        Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )?;
    let t = Instant::now();
    let w = store.writer();
    let mut batch: Vec<Event> = Vec::with_capacity(8192);
    let flush = |batch: &mut Vec<Event>| -> anyhow::Result<()> {
        let events = std::mem::take(batch);
        let source = events.first().map_or(Source::Mx, |e| e.source);
        w.append(vec![Submission {
            source,
            received_at: 0,
            request_id: None,
            size: 0,
            body: Body::Events(events),
        }])?;
        Ok(())
    };
    for i in 0..n {
        let (source, body) = mixed_event(i);
        batch.extend(parse_delivery(source, body.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?);
        if batch.len() >= 8192 {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    eprintln!("generated {n} events in {:.1}s", t.elapsed().as_secs_f64());

    // Baseline: read every row and column of the log once, as a scan would.
    let conn = rusqlite::Connection::open(&db)?;
    let t = Instant::now();
    let mut rows = 0u64;
    let mut bytes = 0usize;
    {
        let mut stmt = conn.prepare(
            "SELECT seq, event_id, source, kind, correlation_id, member_guid, user_guid, resource_key, clock, occurred_at, received_at, delivery_id, payload FROM events",
        )?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let payload: String = r.get(12)?;
            let id: Vec<u8> = r.get(1)?;
            let kind: String = r.get(3)?;
            bytes += payload.len() + id.len() + kind.len();
            rows += 1;
        }
    }
    let scan = t.elapsed();
    anyhow::ensure!(rows as usize >= n, "scan read {rows} rows");

    let mut runner = projector::Runner::new(
        store.writer(),
        store.reader()?,
        projector::Config::default(),
    );
    reset_peak_rss();
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let mut per = Vec::new();
    for p in store::Projection::ALL {
        let tp = Instant::now();
        let r = runner.rebuild(p, &mut |_| {})?;
        per.push((r, tp.elapsed()));
    }
    let total = t.elapsed();
    let rss_peak = peak_rss_kib();
    let log_events = rows as f64;
    println!(
        "rebuild of a log of {rows} mixed events ({:.0} bytes per row read), both providers, synchronous=NORMAL",
        bytes as f64 / log_events
    );
    println!();
    println!("| what | time | log events/s | ratio to scan |");
    println!("|---|---|---|---|");
    println!(
        "| plain scan of the events table, every column (baseline) | {:.2} s | {:.0} | 1.00 |",
        scan.as_secs_f64(),
        log_events / scan.as_secs_f64()
    );
    println!(
        "| full rebuild, all four projections | {:.2} s | {:.0} | {:.2} |",
        total.as_secs_f64(),
        log_events / total.as_secs_f64(),
        scan.as_secs_f64() / total.as_secs_f64()
    );
    println!();
    println!("| projection | events folded | snapshots | time | events/s |");
    println!("|---|---|---|---|---|");
    for (r, d) in &per {
        println!(
            "| {} | {} | {} | {:.2} s | {:.0} |",
            r.projection.name(),
            r.events,
            r.keys,
            d.as_secs_f64(),
            r.events as f64 / d.as_secs_f64()
        );
    }
    println!();
    println!(
        "peak RSS during the rebuild: {} MiB (at its start: {} MiB)",
        rss_peak.map_or("?".into(), |k| (k / 1024).to_string()),
        rss_before.map_or("?".into(), |k| (k / 1024).to_string())
    );

    // Incremental: single-event appends as fast as one appender goes, a projector catching up.
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let lags: Arc<Mutex<Vec<i64>>> = Arc::default();
    let started = Instant::now();
    let projected = std::thread::scope(|s| -> anyhow::Result<u64> {
        let (stop2, appended2) = (Arc::clone(&stop), Arc::clone(&appended));
        let w = store.writer();
        s.spawn(move || {
            let mut i = n;
            while !stop2.load(Ordering::Relaxed) {
                let (source, body) = mixed_event(i);
                i += 1;
                let Ok(events) = parse_delivery(source, body.as_bytes()) else {
                    continue;
                };
                if w.append(vec![Submission {
                    source,
                    received_at: 0,
                    request_id: None,
                    size: 0,
                    body: Body::Events(events),
                }])
                .is_ok()
                {
                    appended2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let reader = store.reader()?;
        let mut folded = 0u64;
        while started.elapsed() < duration {
            let c = runner.catch_up()?;
            folded += c.events;
            lags.lock()
                .map(|mut l| l.push(reader.head().unwrap_or(0) - c.checkpoint))
                .ok();
            if c.events == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        stop.store(true, Ordering::Relaxed);
        Ok(folded)
    })?;
    let final_catch = runner.catch_up()?;
    let secs = started.elapsed().as_secs_f64();
    let lags = lags.lock().map(|l| l.clone()).unwrap_or_default();
    let mean = lags.iter().sum::<i64>() as f64 / lags.len().max(1) as f64;
    let max = lags.iter().max().copied().unwrap_or(0);
    println!();
    println!(
        "incremental: one appender of single-event submissions ({:.0} events/s appended) and one projector catching up: {:.0} events/s projected; lag after each catch-up (events appended meanwhile): mean {:.1}, max {}; {} left at the end",
        appended.load(Ordering::Relaxed) as f64 / secs,
        (projected + final_catch.events) as f64 / secs,
        mean,
        max,
        final_catch.events
    );
    store.close();
    Ok(())
}
