//! `journeyd serve`: webhook ingest, the projector and the read API in one process
//! (docs/contract.md sections 7 to 9).
//!
//! Threads: tokio's workers serve HTTP; the store's writer thread commits; one projector thread
//! catches up whenever the writer reports a commit (and every [`IDLE_WAKE`] otherwise, to notice
//! other processes' writes). SIGTERM or SIGINT: stop accepting, finish in-flight requests (at most
//! [`DRAIN`]), let the projector reach the log head, close the store, exit 0.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest::{Ingest, Scheme, SourceAuth};
use projector::{Change, Runner, Update};
use store::{Options, Store, Synchronous};
use tokio::sync::{broadcast, watch};

use crate::api::{Announcement, Api, MAX_REPLAY, ReaderPool};
use crate::cli::{Redacted, ServeArgs};
use crate::metrics::Metrics;
use crate::read_cache::ReadCache;
use crate::unprojected::Unprojected;

/// How often the projector looks at the log and the checkpoints when no commit of this
/// process woke it: how soon it notices another process's writes (an `import` beside the
/// daemon, a `rebuild`) and drops the read cache's documents.
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// How long in-flight requests may take to finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(6);
/// How long the HTTP runtime may take to stop its tasks after that.
const RUNTIME_STOP: Duration = Duration::from_millis(500);
/// How long the projector may work after that; whatever is left is folded at the next start.
/// DRAIN + RUNTIME_STOP + FINAL_CATCH_UP is 8.5 s, which leaves the writer's last commits and
/// closing the store 1.5 s of the 10 s the contract allows.
const FINAL_CATCH_UP: Duration = Duration::from_secs(2);
/// Events per projector batch in the daemon, where batches follow commits and freshness matters
/// more than the per-batch cost (`import` keeps the projector's default, 4,096). A projector that
/// fell behind under load caught up in batches of a thousand events and more, whose records,
/// parsed payloads and rendered rows raised peak RSS: two alternating runs at 256 connections
/// peaked at 57 MiB with 512, against 59-60 MiB with 4,096 (docs/BENCHMARKS.md).
const SERVE_BATCH_EVENTS: usize = 512;
/// At most this many keys are noted as unprojected (decision 0013): about 2 MiB at the most.
/// The projector keeps a few batches' keys there; more means it is rebuilding or stopped.
const UNPROJECTED_KEYS: usize = 16_384;

/// Marks the projector dead when its thread ends, however it ends, and turns the read cache
/// off: nothing would drop its documents any more.
struct AliveGuard(Arc<AtomicBool>, Arc<ReadCache>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
        self.1.disable();
    }
}

/// Applies the projector's updates to what readers see, in the order that keeps readers and
/// stream clients consistent:
///
/// 1. A change's cached document is dropped as soon as the change is reported.
/// 2. At the batch's end, `settled` moves: `/v1/stream` replays no further than it, so a
///    resumed client is never told of a change whose old document is still cached.
/// 3. Then the batch's keys stop being read through (`unprojected`), so a point read never
///    meets an old document either.
/// 4. Only then are the batch's changes announced, in `seq` order. A stream client that
///    subscribes before the announcement gets them live; one that subscribes after it finds
///    `settled` already past them and replays them. None falls between the two.
/// 5. A resync (tables moved by another process, whose changes nobody announced) is announced
///    too: live streams end, and their clients resume through the replay.
struct Publisher<'a> {
    cache: &'a ReadCache,
    settled: &'a AtomicI64,
    unprojected: &'a Unprojected,
    /// The current batch's changes, announced at its end.
    pending: Vec<Change>,
}

impl<'a> Publisher<'a> {
    fn new(cache: &'a ReadCache, settled: &'a AtomicI64, unprojected: &'a Unprojected) -> Self {
        Publisher {
            cache,
            settled,
            unprojected,
            pending: Vec::new(),
        }
    }

    fn apply(&mut self, update: Update, announce: &mut dyn FnMut(Announcement)) {
        let (checkpoint, resynced) = match update {
            Update::Changed(c) => {
                self.cache.invalidate(c.projection, &c.key);
                self.pending.push(c);
                return;
            }
            Update::Committed { checkpoint } => (checkpoint, false),
            Update::Resynced { checkpoint } => {
                self.cache.clear();
                (checkpoint, true)
            }
        };
        self.settled.store(checkpoint, Ordering::SeqCst);
        self.unprojected.settle(checkpoint);
        for c in self.pending.drain(..) {
            announce(Announcement::Change(c));
        }
        if resynced {
            announce(Announcement::Resynced);
        }
    }
}

/// Notes, before a webhook is answered, the keys its new events fold into.
fn note_stored(unprojected: Arc<Unprojected>) -> ingest::OnStored {
    Arc::new(move |events, appended| {
        unprojected.note_all(events.iter().zip(appended).flat_map(|((kind, keys), a)| {
            let seq = match a {
                store::Appended::New(seq) => Some(*seq),
                store::Appended::Duplicate => None,
            };
            seq.into_iter().flat_map(move |seq| {
                projector::projections_of(*kind, keys).map(move |(p, key)| (p, key, seq))
            })
        }));
    })
}

/// Wakes the projector thread.
#[derive(Default)]
struct Wake {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    fn notify(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = true;
            self.cv.notify_one();
        }
    }

    /// Waits for a notification or `timeout`, whichever comes first.
    fn wait(&self, timeout: Duration) {
        let Ok(guard) = self.pending.lock() else {
            return;
        };
        if let Ok((mut p, _)) = self.cv.wait_timeout_while(guard, timeout, |p| !*p) {
            *p = false;
        }
    }
}

/// HTTP threads when `--workers` is not given: one per CPU but one, which the writer and the
/// projector share. With a worker on every CPU, a saturating load starves the projector and
/// reads fall behind the acknowledgements (docs/decisions/0010-http-workers.md).
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1)
        .max(1)
}

/// Connections the kernel holds for the accept loop: those past `--max-connections` wait here
/// (decision 0016). tokio's own `bind` asks for the same; `std`'s asks for 128.
const LISTEN_BACKLOG: i32 = 1024;

/// A listening socket on `addr`, non-blocking, for tokio to take over once the runtime runs.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As tokio and std do on Unix: a restart can take the address its predecessor left in
    // TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Holds `DB.lock` for the life of the process: a second `serve` on the same database refuses
/// to start. The OS releases it when the process ends, however it ends.
fn lock(db: &Path) -> anyhow::Result<File> {
    let lock = lock_path(db);
    let path = lock.display();
    let file = store::owner_only(File::options().write(true).create(true).truncate(true))
        .open(&lock)
        .with_context(|| format!("cannot create the lock file {path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!(
                "another journeyd serve is running on {} (it holds {path})",
                db.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {path}"))
        }
    }
}

/// The lock file of `db`: beside the file the path resolves to, so that a second `serve` that
/// reaches the same file by another name (a symlink, a relative path) finds the same lock. A
/// file not created yet resolves through its directory. (A hard link is another name the OS
/// cannot resolve: operations.md says so.)
fn lock_path(db: &Path) -> std::path::PathBuf {
    // A symlink to a file not created yet resolves by hand, link by link (at most 40, as the
    // OS allows), to the name it will have.
    let mut target = db.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&target) {
            Ok(next) => {
                target = match target.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                }
            }
            Err(_) => break,
        }
    }
    let resolved = std::fs::canonicalize(&target).or_else(|_| {
        let dir = target
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = target.file_name().unwrap_or(target.as_os_str());
        std::fs::canonicalize(dir).map(|d| d.join(name))
    });
    let mut path = resolved.unwrap_or(target).into_os_string();
    path.push(".lock");
    path.into()
}

/// One kind of credential of an endpoint, as configured: the flag, its values from the
/// command line or the environment, and the files to read more from.
struct CredentialFlag<'a> {
    flag: &'static str,
    /// Whether `values` came from the command line, not the flag's variable: their origin in
    /// the start-up log.
    typed: bool,
    values: &'a [Redacted],
    files: &'a [PathBuf],
    scheme: fn(&str) -> Result<Scheme, ingest::auth::ConfigError>,
}

/// The credentials of one endpoint (a webhook source, or `api`), in the order given: each
/// flag's values, then each of its files' lines. Logs each one's label and where it came from
/// (never its value), so that an operator rotating one knows which label is the old one.
fn credentials(endpoint: &str, flags: &[CredentialFlag<'_>]) -> anyhow::Result<SourceAuth> {
    let mut schemes = Vec::new();
    let mut origins = Vec::new();
    for f in flags {
        let origin = if f.typed {
            f.flag.to_owned()
        } else {
            format!(
                "JOURNEYD_{}",
                f.flag
                    .trim_start_matches('-')
                    .replace('-', "_")
                    .to_ascii_uppercase()
            )
        };
        for v in f.values {
            schemes.push(credential((f.scheme)(v.expose()), f.flag)?);
            origins.push(origin.clone());
        }
        for path in f.files {
            let flag = format!("{}-file", f.flag);
            let text = read_secret_file(path, &flag)?;
            let mut found = false;
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let origin = format!("{flag} {}, line {}", path.display(), n + 1);
                // White space around a credential is almost surely an editor's: it would never
                // match, and the sender would be refused with no word why.
                if line.trim() != line {
                    return Err(crate::Usage(format!(
                        "{origin}: a credential may not begin or end with white space"
                    ))
                    .into());
                }
                schemes.push(credential((f.scheme)(line), &origin)?);
                origins.push(origin);
                found = true;
            }
            if !found {
                return Err(crate::Usage(format!(
                    "{flag}: {} holds no credential",
                    path.display()
                ))
                .into());
            }
        }
    }
    let auth = SourceAuth::new(schemes);
    if !auth.is_open() {
        let list: Vec<String> = auth
            .labels()
            .iter()
            .zip(&origins)
            .map(|(label, origin)| format!("{label} ({origin})"))
            .collect();
        tracing::info!(endpoint, credentials = %list.join(", "), "credentials accepted");
    }
    Ok(auth)
}

/// A credential file's text. One that other users may read draws a warning: it is as good
/// as the credential. Unreadable, it is bad usage (exit 2): restarting cannot mend it.
fn read_secret_file(path: &Path, flag: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::Usage(format!("{flag}: cannot read {}: {e}", path.display())))?;
    if let Some(mode) = store::open_to_others(path).filter(|mode| mode & 0o004 != 0) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "a credential file is readable by every local user: chmod 600 it (or 640, for a group of its own)"
        );
    }
    Ok(text)
}

/// A credential flag's scheme, or the bad usage its value is (exit status 2). The message
/// names the flag and the rule, never the value.
fn credential(
    scheme: Result<Scheme, ingest::auth::ConfigError>,
    flag: &str,
) -> anyhow::Result<Scheme> {
    scheme.map_err(|e| crate::Usage(format!("{flag}: {e}")).into())
}

pub(crate) fn run(
    db: &Path,
    synchronous: Synchronous,
    config: &projector::Config,
    args: &ServeArgs,
) -> anyhow::Result<()> {
    let mx = credentials(
        "mx",
        &[
            CredentialFlag {
                flag: "--mx-basic-auth",
                typed: args.on_command_line.contains(&"mx_basic_auth"),
                values: &args.mx_basic_auth,
                files: &args.mx_basic_auth_file,
                scheme: Scheme::basic,
            },
            CredentialFlag {
                flag: "--mx-bearer-token",
                typed: args.on_command_line.contains(&"mx_bearer_token"),
                values: &args.mx_bearer_token,
                files: &args.mx_bearer_token_file,
                scheme: Scheme::bearer,
            },
            CredentialFlag {
                flag: "--mx-webhook-secret",
                typed: args.on_command_line.contains(&"mx_webhook_secret"),
                values: &args.mx_webhook_secret,
                files: &args.mx_webhook_secret_file,
                scheme: Scheme::standard_webhooks,
            },
        ],
    )?;
    let mj = credentials(
        "mobile-journeys",
        &[
            CredentialFlag {
                flag: "--mobile-journeys-basic-auth",
                typed: args.on_command_line.contains(&"mobile_journeys_basic_auth"),
                values: &args.mobile_journeys_basic_auth,
                files: &args.mobile_journeys_basic_auth_file,
                scheme: Scheme::basic,
            },
            CredentialFlag {
                flag: "--mobile-journeys-bearer-token",
                typed: args
                    .on_command_line
                    .contains(&"mobile_journeys_bearer_token"),
                values: &args.mobile_journeys_bearer_token,
                files: &args.mobile_journeys_bearer_token_file,
                scheme: Scheme::bearer,
            },
            CredentialFlag {
                flag: "--mobile-journeys-webhook-secret",
                typed: args
                    .on_command_line
                    .contains(&"mobile_journeys_webhook_secret"),
                values: &args.mobile_journeys_webhook_secret,
                files: &args.mobile_journeys_webhook_secret_file,
                scheme: Scheme::standard_webhooks,
            },
        ],
    )?;
    let token = credentials(
        "api",
        &[CredentialFlag {
            flag: "--api-token",
            typed: args.on_command_line.contains(&"api_token"),
            values: &args.api_token,
            files: &args.api_token_file,
            scheme: Scheme::bearer,
        }],
    )?;
    let token = (!token.is_open()).then_some(token);
    for id in &args.on_command_line {
        let flag = id.replace('_', "-");
        let variable = format!("JOURNEYD_{}_FILE", id.to_ascii_uppercase());
        tracing::warn!(
            "--{flag} on the command line shows the credential to every local user in the process list: use --{flag}-file or {variable}"
        );
    }
    // A file `Store::open` would refuse gets no lock file beside it either.
    Store::check(db).with_context(|| format!("cannot open the database {}", db.display()))?;
    let _lock = lock(db)?;
    // The address is taken now, so that one in use is refused before anything starts.
    let listener = listen(args.listen).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            ": another process listens there; give another --listen / JOURNEYD_LISTEN, or stop it"
        } else {
            " (--listen / JOURNEYD_LISTEN)"
        };
        anyhow::anyhow!("cannot listen on {}: {e}{hint}", args.listen)
    })?;
    // The signal handlers come first: a SIGTERM during a long start-up (a rebuild of every
    // projection) must stop the process cleanly too.
    let stop_signal = StopSignal::install()?;
    for (name, auth) in [("mx", &mx), ("mobile-journeys", &mj)] {
        if auth.is_open() {
            tracing::warn!(
                source = name,
                "no credentials configured: /webhooks/{name} accepts anyone who can reach it"
            );
        }
    }
    if token.is_none() {
        tracing::warn!("no --api-token: the read API is open to anyone who can reach it");
    }

    let metrics = Metrics::new();
    for (endpoint, auth) in [
        ("mx", Some(&mx)),
        ("mobile-journeys", Some(&mj)),
        ("api", token.as_ref()),
    ] {
        if let Some(auth) = auth {
            metrics.ingest.credentials(endpoint, auth.labels());
        }
    }
    let wake = Arc::new(Wake::default());
    // Commit times by head seq, to measure ack-to-projected.
    let acks: Arc<Mutex<VecDeque<(i64, Instant)>>> = Arc::default();
    let hook = {
        let (metrics, wake, acks) = (Arc::clone(&metrics), Arc::clone(&wake), Arc::clone(&acks));
        Arc::new(move |c: &store::CommitInfo| {
            metrics.commit(c);
            if c.events_new > 0 {
                if let Ok(mut a) = acks.lock() {
                    a.push_back((c.head, Instant::now()));
                    // Bounded: if the projector is far behind, the oldest marks go.
                    while a.len() > 100_000 {
                        a.pop_front();
                    }
                }
                wake.notify();
            }
        })
    };
    let store = Store::open(
        db,
        Options {
            synchronous,
            queue_capacity: args.queue as usize,
            on_commit: Some(hook),
            wal_reset_pages: args.wal_mib.saturating_mul(1 << 20) / store::PAGE_SIZE,
            on_wal_reset: Some({
                let metrics = Arc::clone(&metrics);
                Arc::new(move |r: &store::WalReset| metrics.wal_reset(r))
            }),
            ..Options::default()
        },
    )
    .with_context(|| format!("cannot open the database {}", db.display()))?;

    // The projector thread brings the snapshots to the log head, rebuilding first any projection
    // that other code or configuration built, while the daemon serves (docs/contract.md 2.5 and 7):
    // until it gets there, lists, stats and streams answer from the tables as they are, and
    // `Unprojected` starts behind the head, so point reads fold every key from the log and none
    // hides an event acknowledged before this start (decision 0013).
    let serving = projector::Config {
        batch_events: SERVE_BATCH_EVENTS.min(config.batch_events),
        ..config.clone()
    };
    let mut runner = Runner::new(store.writer(), store.reader()?, serving);
    let (start_checkpoint, start_head) = {
        let r = store.reader()?;
        r.consistent(|r| {
            let lowest = r.checkpoints()?.iter().map(|c| c.seq).min().unwrap_or(0);
            Ok((lowest, r.head()?))
        })?
    };
    tracing::info!(
        checkpoint = start_checkpoint,
        head = start_head,
        "the projector catches up while the daemon serves"
    );

    let read_cache = Arc::new(ReadCache::new(args.read_cache_mib.saturating_mul(1 << 20)));
    let settled = Arc::new(AtomicI64::new(start_checkpoint));
    let unprojected = Arc::new(Unprojected::new(
        start_checkpoint,
        start_head,
        UNPROJECTED_KEYS,
        metrics.unprojected_dropped.clone(),
    ));
    let (changes, _) = broadcast::channel::<Announcement>(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let projector_alive = Arc::new(AtomicBool::new(true));
    let stopping = Arc::new(AtomicBool::new(false));
    let projector = {
        let (wake, changes, metrics, acks, alive, stopping) = (
            Arc::clone(&wake),
            changes.clone(),
            Arc::clone(&metrics),
            Arc::clone(&acks),
            Arc::clone(&projector_alive),
            Arc::clone(&stopping),
        );
        let (read_cache, settled, unprojected) = (
            Arc::clone(&read_cache),
            Arc::clone(&settled),
            Arc::clone(&unprojected),
        );
        let reader = store.reader()?;
        std::thread::Builder::new()
            .name("journeyd-projector".into())
            .spawn(move || {
                // Clears `alive` however the thread ends, a panic included (for /readyz).
                let healthy = Arc::clone(&alive);
                let _alive = AliveGuard(alive, Arc::clone(&read_cache));
                // Ack-to-projected: every commit mark up to the checkpoint is done.
                let projected = |checkpoint: i64| {
                    if let Ok(mut a) = acks.lock() {
                        while a.front().is_some_and(|(seq, _)| *seq <= checkpoint) {
                            if let Some((_, at)) = a.pop_front() {
                                metrics.projected(at.elapsed());
                            }
                        }
                    }
                };
                let mut publisher = Publisher::new(&read_cache, &settled, &unprojected);
                let mut current = false;
                loop {
                    let last_round = stopping.load(Ordering::SeqCst);
                    let mut on_update = |u: Update| {
                        if let Update::Committed { checkpoint } = u {
                            projected(checkpoint);
                        }
                        publisher.apply(u, &mut |c| {
                            let _ = changes.send(c);
                        });
                    };
                    let result = if last_round {
                        runner.catch_up_until(&mut on_update, Instant::now() + FINAL_CATCH_UP)
                    } else {
                        // A stop cuts the round short at the next batch; the last round
                        // then has FINAL_CATCH_UP.
                        runner.catch_up_unless(&mut on_update, &stopping)
                    };
                    match result {
                        Ok(done) => {
                            let head = reader.head().unwrap_or(done.checkpoint);
                            if !current && !last_round && done.checkpoint >= start_head {
                                current = true;
                                tracing::info!(
                                    checkpoint = done.checkpoint,
                                    rebuilt = done.rebuilt,
                                    "snapshots current"
                                );
                            }
                            metrics.projector(
                                done.checkpoint,
                                (head - done.checkpoint).max(0),
                                &runner.cache_usage(),
                            );
                            projected(done.checkpoint);
                            healthy.store(true, Ordering::SeqCst);
                        }
                        Err(e) => {
                            // Not ready, and point reads fold the log, until a round succeeds.
                            healthy.store(false, Ordering::SeqCst);
                            // It may have met tables moved by others before it failed.
                            read_cache.clear();
                            tracing::error!(error = %e, "projection failed; retrying");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                    if last_round {
                        break;
                    }
                    wake.wait(IDLE_WAKE);
                }
            })?
    };

    let ingest = Arc::new(Ingest {
        writer: store.writer(),
        mx,
        mobile_journeys: mj,
        max_body: args.max_body,
        body_timeout: std::time::Duration::from_secs(args.body_timeout.into()),
        now: Arc::new(crate::now_millis),
        parse: events::parse_delivery,
        metrics: metrics.ingest.clone(),
        on_stored: Some(note_stored(Arc::clone(&unprojected))),
    });
    // Connections as many as the open-file limit allows, and streams at most half of them, so
    // that subscribers always leave places for webhooks (decision 0016).
    let max_connections =
        crate::server::connections_within_file_limit(args.max_connections as usize);
    let max_streams = (args.max_streams as usize).min((max_connections / 2).max(1));
    if max_streams < args.max_streams as usize {
        tracing::warn!(
            max_streams,
            max_connections,
            "--max-streams lowered to half the connections the daemon takes"
        );
    }
    let api = Arc::new(Api {
        pool: ReaderPool::new(db.to_path_buf()),
        token,
        changes,
        replay_events: MAX_REPLAY,
        shutdown: stop_rx,
        projector_alive: Arc::clone(&projector_alive),
        metrics: Arc::clone(&metrics),
        cache: read_cache,
        settled,
        unprojected,
        projection: config.clone(),
        streams: Arc::new(tokio::sync::Semaphore::new(max_streams)),
    });
    let app = app(ingest, api, &metrics);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.map_or_else(default_workers, usize::from))
        // Reads that scan, and large bodies' parsing, run here; each read holds a connection
        // (two files). Bounded, so that the open-file reserve of server.rs holds.
        .max_blocking_threads(crate::server::BLOCKING_THREADS)
        .enable_all()
        .thread_name("journeyd-http")
        .build()?;
    // What the runtime has, not what was asked: the e2e test reads this line.
    tracing::info!(
        workers = runtime.metrics().num_workers(),
        "HTTP worker threads"
    );
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let mut stop = stop_signal.serving();
        tracing::info!("listening on http://{addr}");
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let limits = crate::server::Limits {
            max_connections,
            header_timeout: std::time::Duration::from_secs(args.header_timeout.into()),
            write_timeout: std::time::Duration::from_secs(args.write_timeout.into()),
        };
        let server = tokio::spawn(crate::server::serve(
            listener,
            app,
            limits,
            metrics.connections.clone(),
            async move {
                let _ = drain_rx.await;
            },
        ));
        let _ = stop.wait_for(|stop| *stop).await;
        tracing::info!("stopping: no new connections; finishing in-flight requests");
        let _ = stop_tx.send(true); // ends live streams
        let _ = drain_tx.send(());
        match tokio::time::timeout(DRAIN, server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!(
                "requests still running after {}s; stopping anyway",
                DRAIN.as_secs()
            ),
        }
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(RUNTIME_STOP);
    tracing::info!(
        "requests drained; committing what is queued and letting the projector catch up"
    );
    // Everything acknowledged is committed. An empty append returns once every job queued
    // before it has committed (requests cut off by the drain limit), then the projector folds
    // what it can in FINAL_CATCH_UP.
    if let Err(e) = store.writer().append(Vec::new()) {
        tracing::warn!(error = %e, "could not flush the writer queue");
    }
    stopping.store(true, Ordering::SeqCst);
    wake.notify();
    if projector.join().is_err() {
        tracing::error!("the projector thread panicked");
    }
    store.close();
    tracing::info!("stopped");
    served
}

/// Every route: webhooks, the read API, health, metrics; counted by route and status.
fn app(ingest: Arc<Ingest>, api: Arc<Api>, metrics: &Arc<Metrics>) -> axum::Router {
    ingest::router(ingest)
        .merge(crate::api::router(api))
        .fallback(crate::api::no_route)
        .method_not_allowed_fallback(crate::api::no_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(metrics),
            crate::metrics::track,
        ))
}

/// SIGTERM and SIGINT, both registered before `serve` opens the store.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the start of `serve`. Before the server
/// listens, nothing has been acknowledged and the start-up work (catching the projections up)
/// is redone at the next start, so a signal then ends the process at once, with status 0, as
/// a kill would leave it: safe, since every write is a transaction. Once the server listens,
/// a signal starts the graceful stop, and a second one exits at once (status 1), as safely.
struct StopSignal {
    serving: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

impl StopSignal {
    /// Listens on a thread of its own, with a runtime of its own, so that it outlives the HTTP
    /// runtime: the second signal must work until the process ends, through the final catch-up.
    fn install() -> anyhow::Result<StopSignal> {
        let serving = Arc::new(AtomicBool::new(false));
        let (tx, stop) = watch::channel(false);
        let listening = Arc::clone(&serving);
        let (registered_tx, registered) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        std::thread::Builder::new()
            .name("journeyd-signals".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = registered_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut signals = match Signals::new() {
                        Ok(s) => {
                            let _ = registered_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = registered_tx.send(Err(e));
                            return;
                        }
                    };
                    signals.next().await;
                    if !listening.load(Ordering::SeqCst) {
                        tracing::info!(
                            "stopped during start-up; the start-up work is redone at the next start"
                        );
                        std::process::exit(0);
                    }
                    let _ = tx.send(true);
                    // A second signal does not wait for the graceful stop.
                    signals.next().await;
                    tracing::warn!(
                        "second stop signal: exiting now; acknowledged events are committed"
                    );
                    std::process::exit(1);
                });
            })
            .context("cannot start the signal thread")?;
        registered
            .recv()
            .context("the signal thread ended before listening")??;
        Ok(StopSignal { serving, stop })
    }

    /// From now on a signal stops the server gracefully: the receiver turns `true`.
    fn serving(&self) -> watch::Receiver<bool> {
        self.serving.store(true, Ordering::SeqCst);
        self.stop.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    /// The order that keeps cached reads fresh and resumed streams whole: a change's document
    /// is gone as soon as it is reported, `settled` waits for the batch, and the batch's changes
    /// are announced after `settled` has moved past them; a resync empties the cache.
    #[test]
    fn a_change_leaves_the_read_cache_before_it_is_announced() {
        use axum::body::Bytes;
        const J: store::Projection = store::Projection::Journeys;
        let cache = ReadCache::new(1 << 20);
        let fill = |key: &str| {
            let miss = cache.get(J, key.to_owned()).expect_err("miss");
            cache.insert(J, miss, Bytes::from_static(b"old"));
            assert!(cache.get(J, key.to_owned()).is_ok());
        };
        fill("K");
        fill("other");
        let settled = AtomicI64::new(3);
        let unprojected = Unprojected::new(3, 3, 10, Default::default());
        unprojected.note(J, "K", 5);
        let mut publisher = Publisher::new(&cache, &settled, &unprojected);
        let change = |key: &str, seq| {
            Update::Changed(Change {
                projection: J,
                key: key.into(),
                status: None,
                seq,
            })
        };
        publisher.apply(change("K", 5), &mut |_| panic!("not before the batch ends"));
        assert!(cache.get(J, "K".into()).is_err(), "dropped at once");
        assert!(cache.get(J, "other".into()).is_ok(), "other keys stay");
        assert_eq!(
            settled.load(Ordering::SeqCst),
            3,
            "not before the batch ends"
        );
        assert!(
            unprojected.contains(J, "K"),
            "read through until the batch ends"
        );
        let mut announced = Vec::new();
        publisher.apply(Update::Committed { checkpoint: 5 }, &mut |c| {
            assert_eq!(
                settled.load(Ordering::SeqCst),
                5,
                "announced before a replay would include it"
            );
            assert!(
                !unprojected.contains(J, "K"),
                "announced while read through"
            );
            if let Announcement::Change(c) = c {
                announced.push(c.key);
            }
        });
        assert_eq!(announced, ["K"]);
        publisher.apply(Update::Committed { checkpoint: 6 }, &mut |_| {
            panic!("nothing to announce")
        });
        unprojected.note(J, "L", 8);
        let mut resyncs = 0;
        publisher.apply(Update::Resynced { checkpoint: 9 }, &mut |a| {
            assert!(matches!(a, Announcement::Resynced), "{a:?}");
            assert_eq!(settled.load(Ordering::SeqCst), 9);
            resyncs += 1;
        });
        assert_eq!(resyncs, 1, "live streams hear of it, to end and resume");
        assert!(!unprojected.contains(J, "L"), "a resync settles too");
        assert!(cache.get(J, "other".into()).is_err(), "a resync empties it");
        assert_eq!(settled.load(Ordering::SeqCst), 9);
    }

    /// A fresh database and every route over it, wired as `run` wires them, without the
    /// projector thread: a test folds with its own runner and hands the updates to a
    /// [`Publisher`].
    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        app: axum::Router,
        api: Arc<Api>,
    }

    fn fixture() -> Fixture {
        fixture_replaying(MAX_REPLAY)
    }

    /// A [`fixture`] whose `/v1/stream` replays at most `replay_events` events per request.
    fn fixture_replaying(replay_events: usize) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("j.db");
        let store = crate::test_store(&db);
        let (app, api) = test_app(&store, &db, replay_events);
        Fixture {
            _dir: dir,
            store,
            app,
            api,
        }
    }

    /// Appends a Mobile Journeys body straight to the log, as an `import` beside the daemon
    /// does: no webhook of this process notes its keys.
    fn append_elsewhere(store: &Store, body: &str) {
        let events =
            events::parse_delivery(events::Source::MobileJourneys, body.as_bytes()).expect("parse");
        store
            .writer()
            .append(vec![store::Submission {
                source: events::Source::MobileJourneys,
                received_at: 1_700_000_000_000,
                request_id: None,
                size: body.len(),
                body: store::Body::Events(events),
            }])
            .expect("append");
    }

    fn test_app(store: &Store, db: &Path, replay_events: usize) -> (axum::Router, Arc<Api>) {
        let metrics = Metrics::new();
        let (changes, _) = broadcast::channel(4096);
        let (stop, shutdown) = watch::channel(false);
        std::mem::forget(stop); // streams never end in these tests
        let unprojected = Arc::new(Unprojected::new(
            0,
            0,
            UNPROJECTED_KEYS,
            metrics.unprojected_dropped.clone(),
        ));
        let ingest = Arc::new(Ingest {
            writer: store.writer(),
            mx: SourceAuth::default(),
            mobile_journeys: SourceAuth::default(),
            max_body: 1 << 20,
            body_timeout: std::time::Duration::from_secs(30),
            now: Arc::new(crate::now_millis),
            parse: events::parse_delivery,
            metrics: metrics.ingest.clone(),
            on_stored: Some(note_stored(Arc::clone(&unprojected))),
        });
        let api = Arc::new(Api {
            pool: ReaderPool::new(db.to_path_buf()),
            token: None,
            changes,
            replay_events,
            shutdown,
            projector_alive: Arc::new(AtomicBool::new(true)),
            metrics: Arc::clone(&metrics),
            cache: Arc::new(ReadCache::new(1 << 20)),
            settled: Arc::new(AtomicI64::new(0)),
            unprojected,
            projection: projector::Config::default(),
            streams: Arc::new(tokio::sync::Semaphore::new(2)),
        });
        (app(ingest, Arc::clone(&api), &metrics), api)
    }

    async fn call(
        app: &axum::Router,
        method: Method,
        uri: &str,
        body: &str,
    ) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::from(body.to_owned()))
                    .expect("request"),
            )
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
    }

    fn runner(store: &Store) -> Runner {
        Runner::new(
            store.writer(),
            store.reader().expect("reader"),
            projector::Config::default(),
        )
    }

    /// A catch-up by hand, its updates applied as the daemon's projector thread applies them.
    fn project(runner: &mut Runner, api: &Api) {
        let mut publisher = Publisher::new(&api.cache, &api.settled, &api.unprojected);
        runner
            .catch_up_with(&mut |u| publisher.apply(u, &mut |_| {}))
            .expect("project");
    }

    /// A Mobile Journeys session event for `key`.
    fn session(key: &str, session: &str) -> String {
        format!(
            r#"{{"productId":"mobilejourneys","eventId":"sessioncreated","data":{{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"{key}","sessionId":"{session}"}}}}"#
        )
    }

    /// Posts a session event for each (key, session id), each acknowledged.
    async fn post_sessions(app: &axum::Router, sessions: &[(&str, &str)]) {
        for (key, s) in sessions {
            let body = session(key, s);
            let posted = call(app, Method::POST, "/webhooks/mobile-journeys", &body).await;
            assert_eq!(posted.0, StatusCode::NO_CONTENT);
        }
    }

    /// `journeyd_read_cache_reads_total{result}` now.
    fn reads(api: &Api, result: &str) -> f64 {
        let series = format!(r#"journeyd_read_cache_reads_total{{result="{result}"}} "#);
        api.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// A point read made after a webhook's 204 shows its event, though the projector has not
    /// folded it: from no snapshot at all, and past a cached document of the old state. What
    /// it shows is what the projector then writes, byte for byte.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_point_read_after_the_acknowledgement_shows_the_event_before_the_projector_does() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        let mut runner = runner(&store);
        project(&mut runner, &api); // its first round reports the tables it found
        let post = |body: &'static str| call(&app, Method::POST, "/webhooks/mobile-journeys", body);
        let read = || call(&app, Method::GET, "/v1/journeys/J1", "");
        const SESSION: &str = r#"{"productId":"mobilejourneys","eventId":"sessioncreated","data":{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"J1","sessionId":"S1"}}"#;
        const STAGE: &str = r#"{"productId":"mobilejourneys","eventId":"stage","data":{"occurredAt":"2021-06-11T12:02:00Z","correlationId":"J1","sessionId":"S1","stageName":"journeyEnd"}}"#;

        assert_eq!(post(SESSION).await.0, StatusCode::NO_CONTENT);
        let (status, early) = read().await;
        assert_eq!(status, StatusCode::OK, "{early}");
        assert!(early.contains(r#""status":"opened""#), "{early}");

        project(&mut runner, &api);
        assert_eq!(
            api.unprojected.keys(),
            0,
            "the projector's commit ends the note"
        );
        let (_, projected) = read().await;
        assert_eq!(
            projected, early,
            "the read-through is the projector's document"
        );
        assert_eq!(read().await.1, projected, "and now the read cache holds it");

        // A duplicate notes nothing; a new event is seen past the cached document.
        assert_eq!(post(SESSION).await.0, StatusCode::NO_CONTENT);
        assert_eq!(api.unprojected.keys(), 0);
        assert_eq!(post(STAGE).await.0, StatusCode::NO_CONTENT);
        let (_, late) = read().await;
        assert!(late.contains(r#""status":"completed""#), "{late}");
        assert!(late.contains(r#""event_count":2"#), "{late}");
        project(&mut runner, &api);
        assert_eq!(read().await.1, late);
        assert_eq!(reads(&api, "read_through"), 2.0);
        store.close();
    }

    /// A read through shows the whole log, even events no webhook of this process noted (an
    /// `import` beside the daemon). A projector batch that ends before them does not send the
    /// next read back to an older document.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_through_never_goes_back_to_an_older_document() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        let read = || call(&app, Method::GET, "/v1/journeys/J1", "");
        post_sessions(&app, &[("J1", "S1")]).await;
        let imported = r#"{"productId":"mobilejourneys","eventId":"stage","data":{"occurredAt":"2021-06-11T12:02:00Z","correlationId":"J1","stageName":"journeyEnd"}}"#;
        append_elsewhere(&store, imported);
        let (_, both) = read().await;
        assert!(both.contains(r#""event_count":2"#), "{both}");
        // The projector's batch ended at the posted event (seq 1).
        api.unprojected.settle(1);
        assert_eq!(read().await, (StatusCode::OK, both));
        store.close();
    }

    /// What another process's `rebuild` from log head `head` leaves: J2's row as of its first
    /// event, and the journeys checkpoint at `head`, with a new generation.
    fn swap_back(db: &Path, head: i64) {
        rusqlite::Connection::open(db)
            .expect("open")
            .execute_batch(&format!(
                "UPDATE journeys SET event_count = 1 WHERE correlation_id = 'J2';
                 UPDATE checkpoints SET seq = {head}, generation = generation + 1 WHERE projection = 'journeys';"
            ))
            .expect("swap back");
    }

    /// Another process's `rebuild` can swap in a table built from an older log head. Until this
    /// daemon's projector notices (at its next round), a point read that misses the read cache
    /// would meet that table: it must fold the log instead, and keep nothing in the cache.
    /// (Found by the end-to-end rebuild test under CI load: a journey went from 5 events to 4.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_swapped_back_by_another_process_is_read_through_before_the_projector_notices()
    {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        post_sessions(&app, &[("J1", "S1"), ("J2", "S1"), ("J2", "S2")]).await;
        project(&mut runner(&store), &api);
        assert!(!api.unprojected.contains(store::Projection::Journeys, "J2"));
        swap_back(&_dir.path().join("j.db"), 2);
        let before = (reads(&api, "read_through"), reads(&api, "hit"));
        let mut shown = Vec::new();
        for _ in 0..2 {
            let (status, doc) = call(&app, Method::GET, "/v1/journeys/J2", "").await;
            assert_eq!(status, StatusCode::OK, "{doc}");
            assert!(doc.contains(r#""meta":{"event_count":2"#), "{doc}");
            shown.push(doc);
        }
        assert_eq!(
            (reads(&api, "read_through"), reads(&api, "hit")),
            (before.0 + 2.0, before.1),
            "both read through, neither from the cache"
        );
        // The projector notices, folds again, and the table answers and fills the cache.
        project(&mut runner(&store), &api);
        for _ in 0..2 {
            assert_eq!(
                call(&app, Method::GET, "/v1/journeys/J2", "").await,
                (StatusCode::OK, shown[0].clone())
            );
        }
        assert_eq!(reads(&api, "read_through"), before.0 + 2.0);
        assert_eq!(
            reads(&api, "hit"),
            before.1 + 1.0,
            "the second read was cached"
        );
        store.close();
    }

    /// Another process's `import` can move the tables past what this projector has reported,
    /// unnoted, and a read shows that; a `rebuild` from a head between the two must not send
    /// the next read back, even once the cached document is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_shown_ahead_of_the_projector_and_then_swapped_back_is_read_through() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        post_sessions(&app, &[("J1", "S1"), ("J2", "S1")]).await;
        project(&mut runner(&store), &api); // settled at 2
        // The other process: an import of J2's second event, and its own catch-up to 3.
        append_elsewhere(&store, &session("J2", "S2"));
        runner(&store)
            .catch_up()
            .expect("the other process's catch-up");
        let (status, ahead) = call(&app, Method::GET, "/v1/journeys/J2", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ahead.contains(r#""meta":{"event_count":2"#), "{ahead}");
        // A rebuild that read head 2 swaps in; the cached document is evicted meanwhile.
        swap_back(&_dir.path().join("j.db"), 2);
        api.cache.clear();
        let (status, doc) = call(&app, Method::GET, "/v1/journeys/J2", "").await;
        assert_eq!((status, doc), (StatusCode::OK, ahead));
        store.close();
    }

    /// With no projector folding (its thread ended, or its last round failed), point reads
    /// fold the log, even for keys nothing noted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_working_projector_point_reads_fold_the_log() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        append_elsewhere(&store, &session("J1", "S1"));
        let read = || call(&app, Method::GET, "/v1/journeys/J1", "");
        assert_eq!(
            read().await.0,
            StatusCode::NOT_FOUND,
            "not noted, not projected"
        );
        api.projector_alive.store(false, Ordering::SeqCst);
        let (status, doc) = read().await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert!(doc.contains(r#""sessions":["S1"]"#), "{doc}");
        store.close();
    }

    /// A journey's history shows acknowledged events before the projector has folded them,
    /// on every page, the one past its last event included; an unknown journey is 404.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journey_s_history_pages_through_events_the_projector_has_not_folded() {
        let Fixture {
            _dir, store, app, ..
        } = fixture();
        post_sessions(&app, &[("J1", "S1"), ("J1", "S2")]).await;
        let page = |query: &'static str| {
            let app = app.clone();
            async move {
                let (status, text) = call(
                    &app,
                    Method::GET,
                    &format!("/v1/journeys/J1/events?{query}"),
                    "",
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{query}: {text}");
                serde_json::from_str::<serde_json::Value>(&text).expect("json")
            }
        };
        let first = page("limit=1").await;
        assert_eq!(first["events"][0]["seq"], 1);
        assert_eq!(first["next_after"], 1);
        assert_eq!(page("after=1&limit=1").await["events"][0]["seq"], 2);
        assert_eq!(page("after=2").await["events"], serde_json::json!([]));
        let unknown = call(&app, Method::GET, "/v1/journeys/J2/events", "").await;
        assert_eq!(unknown.0, StatusCode::NOT_FOUND);
        store.close();
    }

    /// Payloads are the bytes as received and states the bytes the projector wrote, on every
    /// route that shows them: numbers keep their text (`1.50`, an integer past `u64`) and keys
    /// their order. A list item is the point read's document.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_and_histories_show_payloads_and_states_byte_for_byte() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        const LINK: &str = r#"{"productId":"mobilejourneys","eventId":"linkcreated","data":{"occurredAt":"2021-06-11T11:57:35Z","correlationId":"J1","url":"https://examplelink.com/abc","parameters":{"zeta":1.50,"alpha":99999999999999999999}}}"#;
        const PAYMENT: &str = r#"{"productId":"mobilejourneys","eventId":"paymentattempt","data":{"occurredAt":"2021-06-11T12:00:00Z","correlationId":"J1","sessionId":"S1","paymentDetail":{"transactionId":"T1","authorised":"true","amount":19.90,"currency":"GBP"}}}"#;
        for body in [LINK, PAYMENT] {
            let posted = call(&app, Method::POST, "/webhooks/mobile-journeys", body).await;
            assert_eq!(posted.0, StatusCode::NO_CONTENT, "{}", posted.1);
        }
        for uri in ["/v1/events", "/v1/journeys/J1/events"] {
            let (status, page) = call(&app, Method::GET, uri, "").await;
            assert_eq!(status, StatusCode::OK, "{uri}: {page}");
            for body in [LINK, PAYMENT] {
                assert!(
                    page.contains(&format!(r#""payload":{body}"#)),
                    "{uri} shows the payload as received: {page}"
                );
            }
        }
        project(&mut runner(&store), &api);
        let (_, point) = call(&app, Method::GET, "/v1/journeys/J1", "").await;
        // The fold orders a map's keys; it keeps numbers' text.
        assert!(
            point.contains(r#""parameters":{"alpha":99999999999999999999,"zeta":1.50}"#),
            "{point}"
        );
        let (status, list) = call(&app, Method::GET, "/v1/journeys", "").await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list, format!(r#"{{"items":[{point}],"next":null}}"#));
        store.close();
    }

    /// docs/contract.md section 8: errors are `{"error": {"code", "message"}}` "with the right
    /// status", the ones axum would answer by itself too: no route, a method a route does not
    /// take (with its `Allow` header), a key that is not UTF-8 once decoded.
    #[tokio::test]
    async fn unknown_routes_methods_and_undecodable_keys_get_the_json_error() {
        let Fixture {
            _dir, store, app, ..
        } = fixture();
        for (method, uri, status, code) in [
            (Method::GET, "/nope", StatusCode::NOT_FOUND, "no_route"),
            (
                Method::GET,
                "/v1/journeys/",
                StatusCode::NOT_FOUND,
                "no_route",
            ),
            (
                Method::GET,
                "/v1/resources/goal",
                StatusCode::NOT_FOUND,
                "no_route",
            ),
            (
                Method::GET,
                "/webhooks/mx",
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            (
                Method::DELETE,
                "/v1/stats",
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            (
                Method::GET,
                "/v1/journeys/%FF",
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Method::GET,
                "/v1/resources/goal/%FF%FE",
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
        ] {
            let response = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method.clone())
                        .uri(uri)
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_eq!(response.status(), status, "{method} {uri}");
            assert_eq!(
                response.headers()[axum::http::header::CONTENT_TYPE],
                "application/json",
                "{method} {uri}"
            );
            if status == StatusCode::METHOD_NOT_ALLOWED {
                assert!(
                    response.headers().contains_key(axum::http::header::ALLOW),
                    "{method} {uri}"
                );
            }
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .expect("body");
            let error: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(error["error"]["code"], code, "{method} {uri}: {error}");
            assert!(error["error"]["message"].is_string(), "{error}");
        }
        store.close();
    }

    /// Query strings and path keys are read in journeyd's words, never the framework's, and
    /// never with replacement characters: a value that is not UTF-8 once percent-decoded is a
    /// 400 (a cursor read as `\u{FFFD}` would be another cursor), and so is a parameter given
    /// twice. A value that is UTF-8 once decoded is read as such.
    #[tokio::test]
    async fn query_values_not_utf8_or_given_twice_are_a_400_in_journeyds_words() {
        let Fixture {
            _dir, store, app, ..
        } = fixture();
        post_sessions(&app, &[("J\u{e9}", "S1")]).await;
        runner(&store).catch_up().expect("project");
        for uri in [
            "/v1/journeys?after=%FF%FE",
            "/v1/journeys?journey_id=%FF",
            "/v1/journeys?customer_reference=%C3",
            "/v1/journeys?%FF=1",
            "/v1/events?limit=%FF",
            "/v1/journeys?limit=1&limit=2",
            "/v1/events?after=1&after=1",
            "/v1/journeys/J1/events?limit=1&limit=1",
            "/v1/journeys/%FF",
            "/v1/members/%C3%28",
            "/v1/resources/goal/%FF%FE",
            "/v1/events?limit=1000000000",
        ] {
            let (status, text) = call(&app, Method::GET, uri, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
            let error: serde_json::Value = serde_json::from_str(&text).expect("json");
            assert_eq!(error["error"]["code"], "bad_request", "{uri}");
            let message = error["error"]["message"].as_str().expect("message");
            for framework in ["Failed to", "Invalid URL", "`id`", "`guid`", "\u{FFFD}"] {
                assert!(!message.contains(framework), "{uri}: {message}");
            }
        }
        // The same characters, UTF-8 once decoded, are read as such.
        let (status, text) = call(&app, Method::GET, "/v1/journeys/J%C3%A9", "").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (status, text) = call(&app, Method::GET, "/v1/journeys?after=J%C3%A9", "").await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, r#"{"items":[],"next":null}"#)
        );
        let (status, text) = call(&app, Method::GET, "/v1/journeys?after=J", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("J\u{e9}"), "{text}");
        store.close();
    }

    /// A key with more events than a read folds waits for the projector (decision 0013); until
    /// the projector writes it, it is there all the same: `503` with `Retry-After`, not `404`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_too_large_to_read_through_is_unavailable_until_projected_not_unknown() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        let events = crate::api::READ_THROUGH_MAX_EVENTS + 1;
        let sessions: Vec<String> = (0..events)
            .map(|n| session("J-BIG", &format!("S{n}")))
            .collect();
        let body = format!("[{}]", sessions.join(","));
        let posted = call(&app, Method::POST, "/webhooks/mobile-journeys", &body).await;
        assert_eq!(posted.0, StatusCode::NO_CONTENT, "{}", posted.1);
        let response = app
            .clone()
            .oneshot(
                Request::get("/v1/journeys/J-BIG")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        let (status, text) = call(&app, Method::GET, "/v1/journeys/J-NONE", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
        project(&mut runner(&store), &api);
        let (status, text) = call(&app, Method::GET, "/v1/journeys/J-BIG", "").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(doc["state"]["event_count"], events);
        store.close();
    }

    /// A `/v1/stream` request; its body, as far as it goes within `wait` (a live stream goes
    /// on), and whether it ended.
    async fn stream(
        app: &axum::Router,
        last_event_id: Option<i64>,
        wait: Duration,
    ) -> (String, bool) {
        read_stream(open_stream(app, last_event_id).await, wait).await
    }

    /// Opens `/v1/stream` and returns its body unread. The handler has subscribed to the
    /// announcements by the time it returns, so whatever a test sends next is either read
    /// later or, past the broadcast's capacity, lost to this client: a lag made by
    /// construction, not by how the threads happen to be scheduled.
    async fn open_stream(app: &axum::Router, last_event_id: Option<i64>) -> Body {
        open_stream_at(app, "/v1/stream", last_event_id).await
    }

    /// As [`open_stream`], at `uri` (`/v1/stream` with a query).
    async fn open_stream_at(app: &axum::Router, uri: &str, last_event_id: Option<i64>) -> Body {
        let mut request = Request::builder().uri(uri);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body()
    }

    /// Reads a stream's body until it ends (`true`) or `wait` has passed (`false`).
    async fn read_stream(body: Body, wait: Duration) -> (String, bool) {
        let mut body = body.into_data_stream();
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut body)).await
            {
                Ok(Some(chunk)) => {
                    text.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"))
                }
                Ok(None) => return (text, true),
                Err(_) => return (text, false),
            }
        }
    }

    /// [`stream`] on a task of its own, returned once it has subscribed to the announcements,
    /// so that what a test sends next reaches it.
    async fn subscribed(
        app: &axum::Router,
        api: &Api,
        last_event_id: Option<i64>,
        wait: Duration,
    ) -> tokio::task::JoinHandle<(String, bool)> {
        let before = api.changes.receiver_count();
        let app = app.clone();
        let client = tokio::spawn(async move { stream(&app, last_event_id, wait).await });
        while api.changes.receiver_count() == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client
    }

    /// The announcement of a change of journey `J{seq}` at `seq`.
    fn announced(seq: i64) -> Announcement {
        Announcement::Change(Change {
            projection: store::Projection::Journeys,
            key: format!("J{seq}"),
            status: None,
            seq,
        })
    }

    /// The ids of a stream's text, one per message that has one.
    fn ids(text: &str) -> Vec<i64> {
        text.lines()
            .filter_map(|l| l.strip_prefix("id:")?.trim().parse().ok())
            .collect()
    }

    /// A client far behind gets the replay in parts: each response stops after its share of
    /// events, ends with an `id:` of the last one (so the client moves on even past events that
    /// changed nothing) and a short `retry:`, and its reconnect goes on from there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_replay_comes_in_parts_that_each_end_with_the_id_to_resume_from() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture_replaying(3);
        let keys: Vec<String> = (1..=7).map(|n| format!("J{n}")).collect();
        let sessions: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "S1")).collect();
        post_sessions(&app, &sessions).await;
        project(&mut runner(&store), &api);
        let (first, ended) = stream(&app, Some(2), Duration::from_secs(5)).await;
        assert!(ended, "a cut-short replay ends the response: {first}");
        assert_eq!(ids(&first), [2, 3, 4, 4], "{first}");
        assert!(first.ends_with("id: 4\nretry: 250\n\n"), "{first:?}");
        let (second, ended) = stream(&app, Some(4), Duration::from_secs(5)).await;
        assert!(ended);
        assert_eq!(ids(&second), [4, 5, 6, 6], "{second}");
        // The rest fits: the response replays it and stays open for live changes.
        let (last, ended) = stream(&app, Some(6), Duration::from_millis(300)).await;
        assert!(!ended, "{last}");
        assert_eq!(ids(&last), [6, 7], "{last}");
        store.close();
    }

    /// A live stream ends, for its client to resume through the replay, when it could miss
    /// changes: after another process moved the tables (nobody announced its changes), and
    /// when it fell so far behind that the broadcast dropped changes for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_stream_ends_when_it_could_miss_a_change() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        // Resynced: the stream delivers what came before it, then ends.
        let tx = api.changes.clone();
        let client = subscribed(&app, &api, None, Duration::from_secs(5)).await;
        tx.send(announced(1)).expect("send");
        tx.send(Announcement::Resynced).expect("send");
        let _ = tx.send(announced(2)); // no receiver left, once the stream ended
        let (text, ended) = client.await.expect("client");
        assert!(ended, "{text}");
        assert_eq!(
            ids(&text),
            [0, 1],
            "a new client is told where it starts: {text}"
        );
        assert!(text.starts_with("retry: 3000\nid: 0\n\n"), "{text:?}");
        // Lagged: more changes than the broadcast keeps (4,096), sent before the client reads
        // any of them, since nothing reads its body until the sends are done.
        let body = open_stream(&app, None).await;
        for seq in 1..=5_000 {
            let _ = tx.send(announced(seq));
        }
        let (text, ended) = read_stream(body, Duration::from_secs(5)).await;
        assert!(
            ended,
            "a lagging client is cut off, to resume: {} ids",
            ids(&text).len()
        );
        assert_eq!(ids(&text), [0], "nothing after the lag is sent: {text}");
        store.close();
    }

    /// `?lastEventId=N` resumes as the `Last-Event-ID` header does, for the EventSource
    /// polyfills that send it so on a reconnect.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn last_event_id_in_the_query_resumes_as_the_header_does() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        post_sessions(&app, &[("J1", "S1")]).await;
        project(&mut runner(&store), &api);
        let body = open_stream_at(&app, "/v1/stream?lastEventId=0", None).await;
        let (text, _) = read_stream(body, Duration::from_millis(300)).await;
        assert_eq!(ids(&text), [1], "{text}");
        store.close();
    }

    /// A `Last-Event-ID` past the log (a client of a daemon whose file was restored from a
    /// backup) does not hide the changes up to it: they come live. One far below zero is the
    /// start of the log, not an overflow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_id_past_the_log_or_far_below_it_resumes_from_what_the_log_has() {
        let Fixture {
            _dir,
            store,
            app,
            api,
        } = fixture();
        post_sessions(&app, &[("J1", "S1")]).await;
        project(&mut runner(&store), &api);
        let (text, ended) = stream(&app, Some(i64::MIN), Duration::from_millis(300)).await;
        assert!(!ended, "{text}");
        assert_eq!(ids(&text), [1], "{text}");
        let client = subscribed(&app, &api, Some(1_000_000), Duration::from_millis(500)).await;
        api.changes.send(announced(2)).expect("send");
        let (text, _) = client.await.expect("client");
        assert_eq!(ids(&text), [2], "{text}");
        assert!(text.starts_with("retry: 3000\n\n"), "{text:?}");
        store.close();
    }

    /// docs/contract.md section 8 writes the list route as `?status=&journey_id=&...`, and an HTML form
    /// sends unset fields that way: an empty value is a parameter left out. A value that is
    /// not empty and not valid is a documented 400 with the JSON error, and the schema in
    /// `/openapi.json` says which values are valid.
    #[tokio::test]
    async fn empty_query_values_are_parameters_left_out_and_bad_ones_a_documented_400() {
        let Fixture {
            _dir, store, app, ..
        } = fixture();
        post_sessions(&app, &[("J1", "S1")]).await;
        runner(&store).catch_up().expect("project");
        let get = |uri: &'static str| {
            let app = app.clone();
            async move { call(&app, Method::GET, uri, "").await }
        };
        for (plain, empty) in [
            (
                "/v1/journeys",
                "/v1/journeys?status=&journey_id=&customer_reference=&limit=&after=",
            ),
            ("/v1/events", "/v1/events?after=&limit="),
            (
                "/v1/journeys/J1/events",
                "/v1/journeys/J1/events?after=&limit=",
            ),
        ] {
            let (expected, (status, text)) = (get(plain).await, get(empty).await);
            assert_eq!(status, StatusCode::OK, "{empty}: {text}");
            assert_eq!(text, expected.1, "{empty}");
            assert!(text.contains("J1"), "{empty}: {text}");
        }
        let doc: serde_json::Value =
            serde_json::from_str(&crate::openapi::document()).expect("json");
        assert_eq!(
            get("/v1/journeys?status=lost").await.0,
            StatusCode::BAD_REQUEST
        );
        // Every value the published pattern accepts is answered 200, every other one 400.
        let values = [
            "1",
            "7",
            "1000",
            "999999999",
            "1000000000",
            "0",
            "010",
            "+5",
            "-1",
            "-0",
            "ten",
            "1e3",
            " 5",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "99999999999999999999",
        ];
        for (path, route, param) in [
            ("/v1/journeys", "/v1/journeys", "limit"),
            ("/v1/events", "/v1/events", "limit"),
            ("/v1/events", "/v1/events", "after"),
            (
                "/v1/journeys/J1/events",
                "/v1/journeys/{id}/events",
                "limit",
            ),
            (
                "/v1/journeys/J1/events",
                "/v1/journeys/{id}/events",
                "after",
            ),
        ] {
            let op = &doc["paths"][route]["get"];
            assert!(
                op["responses"]["400"].is_object(),
                "{route}: 400 undocumented"
            );
            let schema = op["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == param))
                .map(|p| &p["schema"])
                .expect("documented parameter");
            let pattern =
                regex::Regex::new(schema["pattern"].as_str().expect("pattern")).expect("regex");
            for value in values {
                let uri = format!(
                    "{path}?{param}={}",
                    value.replace(' ', "%20").replace('+', "%2B")
                );
                let (status, text) = call(&app, Method::GET, &uri, "").await;
                let expected = if pattern.is_match(value) {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_REQUEST
                };
                assert_eq!(status, expected, "{uri}: {text}");
                if status == StatusCode::BAD_REQUEST {
                    let error: serde_json::Value = serde_json::from_str(&text).expect("json");
                    assert_eq!(error["error"]["code"], "bad_request", "{uri}");
                }
            }
        }
        store.close();
    }

    /// A parameter a route does not take (a misspelt filter, a wrong case) is refused, named
    /// with the ones the route takes, rather than ignored: the caller would read unfiltered data
    /// as filtered. Every other query error names its parameter too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_query_parameter_is_refused_by_name_and_every_error_names_its_parameter() {
        let Fixture {
            _dir, store, app, ..
        } = fixture();
        post_sessions(&app, &[("J1", "S1")]).await;
        for (uri, names) in [
            (
                "/v1/journeys?statuss=paid",
                &["`statuss`", "`status`", "`customer_reference`"][..],
            ),
            ("/v1/journeys?Status=paid", &["`Status`", "`status`"]),
            ("/v1/events?offset=10", &["`offset`", "`after`", "`limit`"]),
            ("/v1/journeys/J1/events?page=2", &["`page`", "`after`"]),
            ("/v1/journeys/J1?fields=status", &["`fields`", "takes none"]),
            ("/v1/members/M1?x=1", &["`x`", "takes none"]),
            ("/v1/users/U1?x=1", &["`x`", "takes none"]),
            ("/v1/resources/goal/G1?x=1", &["`x`", "takes none"]),
            ("/v1/stats?since=1", &["`since`", "takes none"]),
            ("/v1/stream?x=1", &["`x`", "`lastEventId`"]),
            ("/v1/stream?lastEventId=abc", &["`lastEventId`"]),
            ("/v1/journeys?limit=abc", &["`limit`"]),
            ("/v1/journeys?limit=0", &["`limit`"]),
            ("/v1/events?after=x", &["`after`"]),
            ("/v1/journeys?status=lost", &["`status`"]),
        ] {
            let (status, text) = call(&app, Method::GET, uri, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
            let error: serde_json::Value = serde_json::from_str(&text).expect("json");
            let message = error["error"]["message"].as_str().expect("message");
            for name in names {
                assert!(message.contains(name), "{uri}: {message}");
            }
        }
        // The parameters each route takes still work.
        for uri in [
            "/v1/journeys?status=opened&journey_id=2&customer_reference=x&after=&limit=5",
            "/v1/events?after=0&limit=5",
            "/v1/journeys/J1/events?after=0&limit=5",
            "/v1/journeys/J1",
            "/v1/stats",
        ] {
            let (status, text) = call(&app, Method::GET, uri, "").await;
            assert_eq!(status, StatusCode::OK, "{uri}: {text}");
        }
        store.close();
    }

    /// The listening socket holds up to [`LISTEN_BACKLOG`] connections not yet accepted (where
    /// those past `--max-connections` wait); `std`'s `bind` would hold 128, and the kernel
    /// drops the SYNs past that.
    #[test]
    fn the_listener_holds_the_connections_past_the_limit_waiting() {
        let cap: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if cap < LISTEN_BACKLOG {
            return; // the kernel caps every backlog lower: nothing to tell apart
        }
        let listener = listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let waiting: Vec<std::net::TcpStream> = (0..300)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connection {i} was not taken: {e}"))
            })
            .collect();
        assert_eq!(waiting.len(), 300);
    }

    /// Every name of one database file gives one lock file: a symlink, before the file exists
    /// and after, and a chain of them.
    #[test]
    fn every_name_of_a_database_file_has_the_same_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.db");
        let link = dir.path().join("link.db");
        let chain = dir.path().join("chain.db");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        std::os::unix::fs::symlink("link.db", &chain).expect("relative symlink");
        let expected = std::fs::canonicalize(dir.path())
            .expect("dir")
            .join("real.db.lock");
        for name in [&real, &link, &chain] {
            assert_eq!(lock_path(name), expected, "{} before", name.display());
        }
        std::fs::write(&real, b"").expect("create");
        for name in [&real, &link, &chain] {
            assert_eq!(lock_path(name), expected, "{} after", name.display());
        }
    }

    /// `/v1/stream` responses hold a place each (two in these tests): past them a new stream
    /// gets 503 with Retry-After and the JSON error, and a place frees when a response ends.
    #[tokio::test]
    async fn streams_past_the_limit_get_503_until_one_ends() {
        let Fixture {
            _dir, store, app, ..
        } = fixture();
        let open = || {
            app.clone().oneshot(
                Request::get("/v1/stream")
                    .body(Body::empty())
                    .expect("request"),
            )
        };
        let first = open().await.expect("response");
        let second = open().await.expect("response");
        assert_eq!(
            (first.status(), second.status()),
            (StatusCode::OK, StatusCode::OK)
        );
        let refused = open().await.expect("response");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "3");
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .expect("body");
        assert!(String::from_utf8_lossy(&body).contains(r#""code":"unavailable""#));
        drop(first);
        let third = open().await.expect("response");
        assert_eq!(third.status(), StatusCode::OK, "a place freed");
        drop((second, third));
        store.close();
    }

    /// The OpenAPI table and the router cannot drift: every documented operation is answered by
    /// a real route (not 405, not the fallback's `no_route`) with a documented status, and every
    /// `.route(...)` the code registers is documented.
    #[tokio::test]
    async fn every_documented_operation_is_a_real_route() {
        let Fixture {
            _dir, store, app, ..
        } = fixture();
        assert!(crate::openapi::OPERATIONS.len() >= 15);
        for op in crate::openapi::OPERATIONS {
            let path = op
                .path
                .replace("{id}", "x")
                .replace("{guid}", "x")
                .replace("{resource_type}", "goal");
            let method =
                Method::from_bytes(op.method.to_ascii_uppercase().as_bytes()).expect("method");
            if op.path == "/v1/stream" {
                continue; // an endless response; the end-to-end tests read it
            }
            let body = if method == Method::POST { "{}" } else { "" };
            let (status, bytes) = call(&app, method, &path, body).await;
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{} {}",
                op.method,
                op.path
            );
            assert!(
                !bytes.contains(r#""code":"no_route""#),
                "{} {} is not routed",
                op.method,
                op.path
            );
            assert!(
                op.responses.iter().any(|(s, _, _)| *s == status.as_u16()),
                "{} {} answered {status}, undocumented",
                op.method,
                op.path
            );
        }
        // A point read of a key that is not UTF-8 once decoded: 400, and documented so.
        for (path, pattern) in [
            ("/v1/journeys/%ff", "/v1/journeys/{id}"),
            ("/v1/members/%ff", "/v1/members/{guid}"),
            ("/v1/users/%ff", "/v1/users/{guid}"),
            (
                "/v1/resources/goal/%ff",
                "/v1/resources/{resource_type}/{guid}",
            ),
        ] {
            let (status, bytes) = call(&app, Method::GET, path, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {bytes}");
            let op = crate::openapi::OPERATIONS
                .iter()
                .find(|op| op.path == pattern)
                .expect("documented");
            assert!(op.responses.iter().any(|(s, _, _)| *s == 400), "{pattern}");
        }
        // And the other way round: every route the code registers is in the table, with every
        // method of its method router (`get(a).post(b)` is two operations). A `.route(` this
        // cannot read (a path that is not a literal, say) fails the test rather than go unseen.
        let source = concat!(
            include_str!("api.rs"),
            include_str!("../../ingest/src/lib.rs")
        );
        let route =
            regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*((?:\.?\s*[a-z_]+\([^()]*\))+)\s*\)"#)
                .expect("regex");
        let method = regex::Regex::new(r"\b(get|post|put|delete|patch|head|options|trace)\(")
            .expect("regex");
        let routes: Vec<_> = route.captures_iter(source).collect();
        assert_eq!(
            routes.len(),
            source.matches(".route(").count(),
            "a .route( call the test cannot read"
        );
        let mut registered = std::collections::BTreeSet::new();
        for c in &routes {
            let methods: Vec<_> = method.captures_iter(&c[2]).collect();
            assert!(!methods.is_empty(), "no method in {}", &c[0]);
            for m in methods {
                registered.insert((m[1].to_owned(), c[1].to_owned()));
            }
        }
        let documented: std::collections::BTreeSet<(String, String)> = crate::openapi::OPERATIONS
            .iter()
            .map(|op| (op.method.to_owned(), op.path.to_owned()))
            .collect();
        assert_eq!(registered, documented);
        let doc: serde_json::Value =
            serde_json::from_str(&crate::openapi::document()).expect("json");
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/v1/journeys/{id}"]["get"]["responses"]["404"].is_object());
        store.close();
    }
}
