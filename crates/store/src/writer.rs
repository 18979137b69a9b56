//! The single writer: one thread owns the write connection and commits many callers'
//! submissions per transaction (group commit). See `docs/decisions/0003-group-commit.md`.
//!
//! A caller's submission is answered only after the transaction that holds it has committed
//! (with `synchronous=FULL`, after fsync). If a group's transaction fails, it is rolled back and
//! each job is retried alone, so one bad job cannot fail its neighbours; a job that still fails
//! is answered with the error and left no trace in the database.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use events::{Event, Kind, Source};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::snapshots::{self, ProjectBatch, Projection, RebuildTicket, SnapshotRow};
use crate::{CommitHook, Error, Millis, Options, Result, Synchronous};

/// One request body, ready to store: its events, or the whole body for quarantine.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The route (or `--source`) it came in on.
    pub source: Source,
    /// When it was received, in milliseconds (the caller's clock: time comes in at the edge).
    pub received_at: Millis,
    /// An id for the `deliveries` table: HTTP request id, `import:FILE:LINE`, ...
    pub request_id: Option<String>,
    /// Size of the body in bytes.
    pub size: usize,
    /// What to store.
    pub body: Body,
}

/// What a [`Submission`] stores.
#[derive(Debug, Clone)]
pub enum Body {
    /// The events the body was split into (possibly none, for `[]`).
    Events(Vec<Event>),
    /// A body that could not be split into events, kept whole.
    Quarantine(Quarantined),
    /// A quarantined body that the current code splits: its events go into the log and its
    /// quarantine row is removed, in one transaction.
    Replay {
        /// The `quarantine.id` being moved.
        quarantine_id: i64,
        /// Its events.
        events: Vec<Event>,
    },
}

/// A body for quarantine.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// Why it could not be split into events.
    pub reason: String,
    /// Selected request headers, as a JSON object.
    pub headers: String,
    /// The body's exact bytes.
    pub bytes: Vec<u8>,
}

/// What happened to one event of a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Newly appended at this `seq`.
    New(i64),
    /// Its `event_id` was already in the log (or earlier in the same transaction).
    Duplicate,
}

/// The answer to one [`Submission`], given after its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The `deliveries` row recording the request.
    pub delivery_id: i64,
    /// One entry per event, in the submission's order.
    pub events: Vec<Appended>,
    /// The `quarantine` row, when the body was quarantined.
    pub quarantine_id: Option<i64>,
}

impl Receipt {
    /// Events newly appended.
    pub fn new_count(&self) -> usize {
        self.events
            .iter()
            .filter(|a| matches!(a, Appended::New(_)))
            .count()
    }

    /// Events already in the log.
    pub fn duplicate_count(&self) -> usize {
        self.events.len() - self.new_count()
    }
}

/// What one commit did; handed to [`Options::on_commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The greatest `seq` in the log after the commit.
    pub head: i64,
    /// Jobs (caller requests) in the transaction.
    pub jobs: usize,
    /// Of those, appends (webhook bodies, imports, or an empty flush): a transaction with one
    /// commits with the configured `synchronous`, one without with `NORMAL` (decision 0007).
    pub appends: usize,
    /// Submissions in the transaction.
    pub submissions: usize,
    /// Events newly appended.
    pub events_new: usize,
    /// Events that were duplicates.
    pub events_duplicate: usize,
    /// Bodies quarantined.
    pub quarantined: usize,
    /// From `BEGIN` to the end of `COMMIT`.
    pub duration: Duration,
    /// Pages in the WAL after the commit.
    pub wal_pages: u64,
}

/// What a job asks the writer to do.
#[derive(Debug)]
pub(crate) enum Work {
    /// Append request bodies (events or quarantine) and record the deliveries.
    Append(Vec<Submission>),
    /// Upsert snapshots and move checkpoints (the incremental projector).
    Project(ProjectBatch),
    /// Start a rebuild: an empty table of its own.
    RebuildBegin(Projection),
    /// Rows for the table a rebuild is filling.
    RebuildRows(RebuildTicket, Vec<SnapshotRow>),
    /// Swap the rebuilt table in and move the checkpoint.
    RebuildSwap {
        ticket: RebuildTicket,
        seq: i64,
        version: i64,
        fingerprint: String,
    },
    /// Move a quarantined body to `quarantine_discarded`, with when and why.
    Discard { id: i64, at: Millis, note: String },
}

/// What the writer answers, after the commit.
pub(crate) enum Answer {
    Receipts(Vec<Receipt>),
    Ticket(RebuildTicket),
    /// Whether a job found what it was for (a discard, its quarantined body).
    Found(bool),
    Done,
}

type Reply = Box<dyn FnOnce(Result<Answer>) + Send>;

/// A job answers exactly once: through [`Job::answer`], or, if it is dropped unanswered (the
/// writer stopped, a send failed), with [`Error::WriterStopped`] from its `Drop`. So a caller
/// waiting on the reply never waits forever.
struct Job {
    work: Work,
    reply: Option<Reply>,
}

impl Job {
    fn new(work: Work, reply: Reply) -> Job {
        Job {
            work,
            reply: Some(reply),
        }
    }

    fn answer(mut self, result: Result<Answer>) {
        if let Some(reply) = self.reply.take() {
            reply(result);
        }
    }

    /// For a job that never reached the writer and whose caller hears of it by return value.
    fn defuse(mut self) {
        self.reply.take();
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply(Err(Error::WriterStopped));
        }
    }
}

enum Msg {
    Job(Job),
    /// Commit what is already queued, then stop.
    Stop,
}

impl Job {
    /// The job's weight against the group's size limit.
    fn event_count(&self) -> usize {
        match &self.work {
            Work::Append(submissions) => submissions
                .iter()
                .map(|s| match &s.body {
                    Body::Events(e) | Body::Replay { events: e, .. } => e.len(),
                    Body::Quarantine(_) => 1,
                })
                .sum::<usize>()
                .max(1),
            Work::Project(b) => b.rows.len().max(1),
            Work::RebuildRows(_, rows) => rows.len().max(1),
            Work::RebuildBegin(_) | Work::RebuildSwap { .. } | Work::Discard { .. } => 1,
        }
    }
}

/// A cloneable handle to submit to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: SyncSender<Msg>,
}

impl WriterHandle {
    fn call(&self, work: Work) -> Result<Answer> {
        let (tx, rx) = mpsc::sync_channel(1);
        let reply: Reply = Box::new(move |r| {
            // The caller may have gone away; then nobody needs the answer.
            let _ = tx.send(r);
        });
        self.tx
            .send(Msg::Job(Job::new(work, reply)))
            .map_err(|_| Error::WriterStopped)?;
        rx.recv().map_err(|_| Error::WriterStopped)?
    }

    /// Appends `submissions` in one transaction and waits for the commit. Blocks while the queue
    /// is full. The receipts are in the submissions' order.
    pub fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Receipt>> {
        match self.call(Work::Append(submissions))? {
            Answer::Receipts(r) => Ok(r),
            Answer::Done | Answer::Ticket(_) | Answer::Found(_) => Ok(Vec::new()),
        }
    }

    /// Queues `submissions` without waiting; `reply` is called on the writer thread after the
    /// commit (or failure). Answers [`Error::QueueFull`] at once when the queue is full (the
    /// HTTP layer turns that into 503), and then `reply` is not called.
    pub fn try_submit(
        &self,
        submissions: Vec<Submission>,
        reply: impl FnOnce(Result<Vec<Receipt>>) + Send + 'static,
    ) -> Result<()> {
        match self.tx.try_send(Msg::Job(Job::new(
            Work::Append(submissions),
            receipts_reply(reply),
        ))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msg)) => {
                defuse(msg);
                Err(Error::QueueFull)
            }
            Err(TrySendError::Disconnected(msg)) => {
                defuse(msg);
                Err(Error::WriterStopped)
            }
        }
    }

    /// As [`WriterHandle::try_submit`] but waits for room in the queue instead of failing.
    pub fn submit(
        &self,
        submissions: Vec<Submission>,
        reply: impl FnOnce(Result<Vec<Receipt>>) + Send + 'static,
    ) -> Result<()> {
        self.tx
            .send(Msg::Job(Job::new(
                Work::Append(submissions),
                receipts_reply(reply),
            )))
            .map_err(|e| {
                defuse(e.0);
                Error::WriterStopped
            })
    }

    /// Writes a batch of snapshots and checkpoints atomically. Fails with [`Error::Stale`] if a
    /// rebuild swapped a projection since the caller read its generation; nothing is written.
    pub fn project(&self, batch: ProjectBatch) -> Result<()> {
        self.call(Work::Project(batch)).map(drop)
    }

    /// Starts a rebuild of `projection` into an empty table of its own.
    pub fn rebuild_begin(&self, projection: Projection) -> Result<RebuildTicket> {
        match self.call(Work::RebuildBegin(projection))? {
            Answer::Ticket(t) => Ok(t),
            _ => Err(Error::WriterStopped),
        }
    }

    /// Adds rows to the table a rebuild is filling.
    pub fn rebuild_rows(&self, ticket: &RebuildTicket, rows: Vec<SnapshotRow>) -> Result<()> {
        self.call(Work::RebuildRows(ticket.clone(), rows)).map(drop)
    }

    /// As [`WriterHandle::rebuild_rows`] without waiting for the commit: `reply` is called on
    /// the writer thread afterwards. Blocks only while the queue is full.
    pub fn rebuild_rows_then(
        &self,
        ticket: &RebuildTicket,
        rows: Vec<SnapshotRow>,
        reply: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        let reply: Reply = Box::new(move |r| reply(r.map(drop)));
        self.tx
            .send(Msg::Job(Job::new(
                Work::RebuildRows(ticket.clone(), rows),
                reply,
            )))
            .map_err(|e| {
                defuse(e.0);
                Error::WriterStopped
            })
    }

    /// Swaps the rebuilt table in, with its indexes, and sets the checkpoint to `seq` with the
    /// given version and fingerprint, in one transaction. Readers see the old table until then.
    /// [`Error::Stale`] if another rebuild of the projection swapped first; nothing changes.
    pub fn rebuild_swap(
        &self,
        ticket: &RebuildTicket,
        seq: i64,
        version: i64,
        fingerprint: &str,
    ) -> Result<()> {
        self.call(Work::RebuildSwap {
            ticket: ticket.clone(),
            seq,
            version,
            fingerprint: fingerprint.to_owned(),
        })
        .map(drop)
    }
}

impl WriterHandle {
    /// Moves quarantined body `id` to `quarantine_discarded`, whole, with `at` and `note`, in
    /// one transaction; `false` when there is no such body in quarantine.
    pub fn discard(&self, id: i64, at: Millis, note: &str) -> Result<bool> {
        match self.call(Work::Discard {
            id,
            at,
            note: note.to_owned(),
        })? {
            Answer::Found(found) => Ok(found),
            _ => Err(Error::WriterStopped),
        }
    }
}

/// A message that could not be sent: its caller is told by the return value, not the reply.
fn defuse(msg: Msg) {
    if let Msg::Job(job) = msg {
        job.defuse();
    }
}

fn receipts_reply(reply: impl FnOnce(Result<Vec<Receipt>>) + Send + 'static) -> Reply {
    Box::new(move |r| {
        reply(r.map(|a| match a {
            Answer::Receipts(r) => r,
            Answer::Done | Answer::Ticket(_) | Answer::Found(_) => Vec::new(),
        }))
    })
}

pub(crate) struct Writer {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(
        conn: Connection,
        options: &Options,
        wal: std::sync::Arc<crate::wal::Shared>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::sync_channel(options.queue_capacity.max(1));
        let max_group_events = options.max_group_events.max(1);
        let hook = options.on_commit.clone();
        let sync = options.synchronous;
        let resetter = crate::wal::Resetter::install(
            &conn,
            wal,
            options.wal_reset_pages,
            options.on_wal_reset.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("journeyd-writer".into())
            .spawn(move || run(conn, rx, max_group_events, hook, sync, resetter))
            .map_err(|e| Error::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok(Writer {
            tx,
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> WriterHandle {
        WriterHandle {
            tx: self.tx.clone(),
        }
    }

    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    /// Asks the thread to commit what is queued and stop, and waits for it. Handles held
    /// elsewhere get [`Error::WriterStopped`] afterwards.
    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // A full queue makes this wait for room, which the running thread makes.
        let _ = self.tx.send(Msg::Stop);
        if thread.join().is_err() {
            tracing::error!("the writer thread panicked");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    mut conn: Connection,
    rx: Receiver<Msg>,
    max_group_events: usize,
    hook: Option<CommitHook>,
    sync: Synchronous,
    mut resetter: crate::wal::Resetter,
) {
    let mut stopping = false;
    while !stopping {
        let first = match rx.recv() {
            Ok(Msg::Job(job)) => job,
            Ok(Msg::Stop) | Err(_) => break,
        };
        let mut events = first.event_count();
        let mut group = vec![first];
        // Take whatever else is already waiting, up to the group's size; after Stop, take all.
        while events < max_group_events || stopping {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => {
                    events += job.event_count();
                    group.push(job);
                }
                Ok(Msg::Stop) => stopping = true,
                Err(_) => break,
            }
        }
        if !commit_round(&mut conn, group, hook.as_ref(), sync) {
            break;
        }
        resetter.after_commit(&conn, crate::BUSY_TIMEOUT);
    }
    // Dropping `rx` here makes every later send answer WriterStopped.
    tracing::debug!("writer stopped");
}

/// Commits one group. Snapshots and rebuilds are derived from the log: a group with nothing
/// appended need not wait for fsync, so under `synchronous=FULL` it commits with `NORMAL`. The
/// next group that appends syncs the WAL, and with it everything committed before (decision
/// 0007). `FULL` is restored after the group; if that fails, this answers `false` and the
/// writer stops, rather than acknowledge an append less durably than configured.
fn commit_round(
    conn: &mut Connection,
    group: Vec<Job>,
    hook: Option<&CommitHook>,
    sync: Synchronous,
) -> bool {
    let derived_only = group.iter().all(|j| !matches!(j.work, Work::Append(_)));
    let relax = sync == Synchronous::Full && derived_only;
    if relax && let Err(e) = set_synchronous(conn, "PRAGMA synchronous = NORMAL") {
        tracing::warn!(error = %e, "could not relax synchronous for a derived-only group");
    }
    commit_group(conn, group, hook);
    if relax && let Err(e) = set_synchronous(conn, "PRAGMA synchronous = FULL") {
        tracing::error!(error = %e, "could not restore synchronous=FULL; the writer stops");
        return false;
    }
    true
}

/// Runs one of the two `synchronous` pragmas. Not from the statement cache: SQLite applies a
/// pragma when it prepares it, and a prepared PRAGMA expires after one run, so it is parsed
/// again every time anyway.
fn set_synchronous(conn: &Connection, pragma: &str) -> rusqlite::Result<()> {
    conn.execute_batch(pragma)
}

fn commit_group(conn: &mut Connection, group: Vec<Job>, hook: Option<&CommitHook>) {
    let started = Instant::now();
    match write_jobs(conn, group.iter().map(|j| &j.work)) {
        Ok((answers, stats)) => {
            report(conn, hook, &stats, group.len(), started);
            for (job, answer) in group.into_iter().zip(answers) {
                job.answer(Ok(answer));
            }
        }
        Err(e) if group.len() == 1 => fail(group, e),
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "group commit failed; retrying each job alone");
            for job in group {
                let started = Instant::now();
                match write_jobs(conn, std::iter::once(&job.work)) {
                    Ok((mut answers, stats)) => {
                        report(conn, hook, &stats, 1, started);
                        job.answer(Ok(answers.pop().unwrap_or(Answer::Done)));
                    }
                    Err(e) => fail(vec![job], e),
                }
            }
        }
    }
}

fn fail(jobs: Vec<Job>, e: Error) {
    if matches!(e, Error::Stale { .. }) {
        tracing::debug!(error = %e, "projection batch refused");
    } else {
        tracing::error!(error = %e, "write failed; nothing of it was stored");
    }
    let message = e.to_string();
    let stale = match &e {
        Error::Stale { projection } => Some(*projection),
        _ => None,
    };
    let mut first = Some(e);
    for job in jobs {
        // rusqlite errors are not Clone: the first job gets the error itself, any others its text.
        let err = first.take().unwrap_or_else(|| match stale {
            Some(projection) => Error::Stale { projection },
            None => Error::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(message.clone()),
            )),
        });
        job.answer(Err(err));
    }
}

fn report(
    conn: &Connection,
    hook: Option<&CommitHook>,
    stats: &GroupStats,
    jobs: usize,
    started: Instant,
) {
    let Some(hook) = hook else { return };
    let head = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .unwrap_or(stats.last_seq);
    hook(&CommitInfo {
        head,
        jobs,
        appends: stats.appends,
        submissions: stats.submissions,
        events_new: stats.events_new,
        events_duplicate: stats.events_duplicate,
        quarantined: stats.quarantined,
        duration: started.elapsed(),
        wal_pages: crate::wal::pages_after_last_commit(),
    });
}

#[derive(Default)]
struct GroupStats {
    appends: usize,
    submissions: usize,
    events_new: usize,
    events_duplicate: usize,
    quarantined: usize,
    last_seq: i64,
}

/// Writes the jobs in one immediate transaction; on any error, nothing is kept.
fn write_jobs<'a>(
    conn: &mut Connection,
    jobs: impl Iterator<Item = &'a Work>,
) -> Result<(Vec<Answer>, GroupStats)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut stats = GroupStats::default();
    let mut counts: HashMap<(Source, Kind), i64> = HashMap::new();
    let mut next_delivery: Option<i64> = None;
    let mut answers = Vec::new();
    for work in jobs {
        let answer = match work {
            Work::Append(submissions) => {
                stats.appends += 1;
                let next = match next_delivery {
                    Some(n) => n,
                    None => tx
                        .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM deliveries")?
                        .query_row([], |r| r.get(0))?,
                };
                let mut receipts = Vec::with_capacity(submissions.len());
                for (i, s) in submissions.iter().enumerate() {
                    receipts.push(write_submission(
                        &tx,
                        s,
                        next + i as i64,
                        &mut counts,
                        &mut stats,
                    )?);
                }
                next_delivery = Some(next + submissions.len() as i64);
                Answer::Receipts(receipts)
            }
            Work::Project(batch) => {
                snapshots::write_batch(&tx, batch)?;
                Answer::Done
            }
            Work::RebuildBegin(projection) => {
                Answer::Ticket(snapshots::rebuild_begin(&tx, *projection)?)
            }
            Work::RebuildRows(ticket, rows) => {
                snapshots::rebuild_rows(&tx, ticket, rows)?;
                Answer::Done
            }
            Work::RebuildSwap {
                ticket,
                seq,
                version,
                fingerprint,
            } => {
                snapshots::rebuild_swap(&tx, ticket, *seq, *version, fingerprint)?;
                Answer::Done
            }
            Work::Discard { id, at, note } => {
                let moved = tx
                    .prepare_cached(
                        "INSERT INTO quarantine_discarded (id, body_id, received_at, last_received_at, times_received, source, reason, headers, body, discarded_at, note)
                         SELECT id, body_id, received_at, last_received_at, times_received, source, reason, headers, body, ?2, ?3
                         FROM quarantine WHERE id = ?1",
                    )?
                    .execute(params![id, at, note])?;
                tx.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?
                    .execute([id])?;
                Answer::Found(moved == 1)
            }
        };
        answers.push(answer);
    }
    if !counts.is_empty() {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO event_counts (source, kind, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (source, kind) DO UPDATE SET count = count + excluded.count",
        )?;
        for ((source, kind), n) in counts {
            upsert.execute(params![source.as_str(), kind.as_str(), n])?;
        }
    }
    tx.commit()?;
    Ok((answers, stats))
}

fn write_submission(
    tx: &Transaction<'_>,
    s: &Submission,
    delivery_id: i64,
    counts: &mut HashMap<(Source, Kind), i64>,
    stats: &mut GroupStats,
) -> Result<Receipt> {
    stats.submissions += 1;
    let mut receipt = Receipt {
        delivery_id,
        events: Vec::new(),
        quarantine_id: None,
    };
    match &s.body {
        Body::Events(events) => {
            append_events(tx, s, delivery_id, events, counts, stats, &mut receipt)?
        }
        Body::Replay {
            quarantine_id,
            events,
        } => {
            append_events(tx, s, delivery_id, events, counts, stats, &mut receipt)?;
            tx.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?
                .execute([quarantine_id])?;
        }
        Body::Quarantine(q) => {
            let body_id = events::EventId::for_body(s.source, &q.bytes);
            let id: i64 = tx
                .prepare_cached(
                    "INSERT INTO quarantine (body_id, received_at, last_received_at, source, reason, headers, body)
                     VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (body_id) DO UPDATE SET times_received = times_received + 1,
                                                         last_received_at = excluded.last_received_at
                     RETURNING id",
                )?
                .query_row(
                    params![&body_id.as_bytes()[..], s.received_at, s.source.as_str(), q.reason, q.headers, q.bytes],
                    |r| r.get(0),
                )?;
            receipt.quarantine_id = Some(id);
            stats.quarantined += 1;
        }
    }
    tx.prepare_cached(
        "INSERT INTO deliveries (id, received_at, source, request_id, size, events_new, events_duplicate, quarantine_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        delivery_id,
        s.received_at,
        s.source.as_str(),
        s.request_id,
        i64::try_from(s.size).unwrap_or(i64::MAX),
        receipt.new_count() as i64,
        receipt.duplicate_count() as i64,
        receipt.quarantine_id,
    ])?;
    Ok(receipt)
}

fn append_events(
    tx: &Transaction<'_>,
    s: &Submission,
    delivery_id: i64,
    events: &[Event],
    counts: &mut HashMap<(Source, Kind), i64>,
    stats: &mut GroupStats,
    receipt: &mut Receipt,
) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (event_id, source, kind, correlation_id, member_guid, user_guid, resource_key,
                             clock, occurred_at, received_at, delivery_id, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT DO NOTHING", // the only uniqueness that can conflict: events_identity
    )?;
    receipt.events.reserve(events.len());
    for e in events {
        let inserted = insert.execute(params![
            &e.id.as_bytes()[..],
            e.source.as_str(),
            e.kind.as_str(),
            e.keys.correlation_id,
            e.keys.member_guid,
            e.keys.user_guid,
            e.keys.resource,
            e.clock.column(),
            e.occurred_at,
            s.received_at,
            delivery_id,
            e.payload,
        ])?;
        if inserted == 1 {
            let seq = tx.last_insert_rowid();
            stats.last_seq = seq;
            stats.events_new += 1;
            *counts.entry((e.source, e.kind)).or_default() += 1;
            receipt.events.push(Appended::New(seq));
        } else {
            stats.events_duplicate += 1;
            receipt.events.push(Appended::Duplicate);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever a group wrote, the connection is back at the configured level before the next
    /// group, which may append: a derived-only group relaxes `FULL` for its own commit only.
    /// (The relaxing itself only saves an fsync and is not observed here.)
    #[test]
    fn after_any_group_the_writer_is_back_at_the_configured_synchronous_level() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::migrations().to_latest(&mut conn).expect("schema");
        let level = |c: &Connection| -> i64 {
            c.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .expect("read")
        };
        let (full, normal) = (2, 1);
        let during = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let group = |work: Work| {
            let during = std::sync::Arc::clone(&during);
            vec![Job::new(
                work,
                Box::new(move |answer: Result<Answer>| {
                    during.lock().expect("lock").push(answer.is_ok());
                }),
            )]
        };
        for (configured, start) in [(Synchronous::Full, full), (Synchronous::Normal, normal)] {
            set_synchronous(
                &conn,
                if start == full {
                    "PRAGMA synchronous = FULL"
                } else {
                    "PRAGMA synchronous = NORMAL"
                },
            )
            .expect("set");
            for work in [
                Work::Project(ProjectBatch::default()),
                Work::RebuildBegin(Projection::Users),
                Work::Append(Vec::new()),
            ] {
                let name = format!("{work:?}");
                assert!(commit_round(&mut conn, group(work), None, configured));
                assert_eq!(level(&conn), start, "{configured:?} after {name}");
            }
        }
        assert_eq!(
            *during.lock().expect("lock"),
            [true; 6],
            "every group committed"
        );
    }
}
