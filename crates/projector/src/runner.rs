//! The runner: keeps the snapshot tables current with the log (docs/contract.md section 7).
//!
//! `catch_up` reads the log from the lowest checkpoint in batches. For each batch and projection
//! it takes the fold of every key the batch touches, from the cache or by refolding the key's
//! events up to the checkpoint from the log, applies the batch, renders the rows, and hands rows
//! and new checkpoints to the writer as one job: one transaction. The batch carries the
//! checkpoint it was computed against; if a rebuild or another process moved it meanwhile, the
//! writer refuses the whole batch and the runner starts again from what is stored.
//!
//! `rebuild` refolds a projection from the start of the log into a new table, one key at a time
//! (the log is read in key order through the stream-key index, so memory holds one key's fold),
//! and swaps it in atomically with its checkpoint.

use std::sync::mpsc;

use events::Kind;
use events::json::{self, Value};
use lru::LruCache;
use store::{
    EventRecord, Expect, ProjectBatch, Projection, Reader, SnapshotRow, StreamKey, WriterHandle,
};

use crate::fold::{Fold, Input};
use crate::model::{Config, Journeys, Members, Model, Resources, Users};

/// Rows per rebuild job.
const REBUILD_CHUNK: usize = 4096;
/// Rebuild jobs queued for the writer at once.
const REBUILD_IN_FLIGHT: usize = 4;

/// What a catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Log events read.
    pub events: u64,
    /// Snapshot rows written.
    pub rows: u64,
    /// The lowest checkpoint afterwards.
    pub checkpoint: i64,
    /// Projections rebuilt first because their version or configuration changed.
    pub rebuilt: usize,
}

/// What a catch-up reports while it runs, in order (see [`Runner::catch_up_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A committed batch changed this snapshot. A batch's changes come in `seq` order (for
    /// the snapshots one event changed: journeys, members, users, resources), so whoever passes
    /// them on as they come (`/v1/stream`) sends ids that never decrease, and a client resuming
    /// from the last one it saw has seen every change before it.
    Changed(Change),
    /// A batch committed, and every change it made has been reported: the snapshots are
    /// current up to `checkpoint`, the lowest projection checkpoint.
    Committed {
        /// The lowest checkpoint after the batch.
        checkpoint: i64,
    },
    /// The snapshot tables changed other than by this runner's batches: a checkpoint moved by
    /// another process (an `import` beside the daemon) or a rebuild. Anything cached from
    /// those tables may be stale. Reported before any change of a later batch.
    Resynced {
        /// The lowest checkpoint as found.
        checkpoint: i64,
    },
}

/// One snapshot that a committed batch changed (what the daemon's live stream announces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Which projection.
    pub projection: Projection,
    /// The snapshot's key.
    pub key: String,
    /// For journeys, the status after the change.
    pub status: Option<String>,
    /// The snapshot's `last_seq` after the change.
    pub seq: i64,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Which projection.
    pub projection: Projection,
    /// The log head it folded up to (its new checkpoint).
    pub head: i64,
    /// Events of the projection's keys scanned (0 when it did not swap).
    pub events: u64,
    /// Snapshots written (0 when it did not swap).
    pub keys: u64,
    /// Whether its table was swapped in; `false` when another rebuild of the projection
    /// swapped first, and its table stands.
    pub swapped: bool,
}

/// Keeps the four projections current.
pub struct Runner {
    writer: WriterHandle,
    reader: Reader,
    config: Config,
    journeys: Part<Journeys>,
    members: Part<Members>,
    users: Part<Users>,
    resources: Part<Resources>,
    /// Set when [`Runner::sync`] finds a checkpoint it did not write; reported as
    /// [`Update::Resynced`] by the catch-up that runs or follows it.
    resynced: bool,
    /// Set when this runner's own rebuild swapped an empty table in for one nothing was read
    /// from: the checkpoint moved, but no reader can have missed a change, so it is reported as
    /// [`Update::Committed`], which live streams go on past.
    moved_quietly: bool,
}

/// What the projections' caches of folds hold: see [`Runner::cache_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Folds cached.
    pub keys: usize,
    /// Their estimated memory, in bytes ([`fold_weight`]).
    pub bytes: usize,
}

/// The memory a cached fold is counted for, from its key, its rendered state and its number of
/// events. Measured with a counting allocator on journeys, a fold takes one and a half to two and
/// a half times its rendered text: a completed journey of 1.4 kB of JSON holds 3.4 kB, a new one
/// of 0.6 kB holds 0.9 kB. Every fold also keeps the id of each event it applied (16 bytes, in a
/// hash set), which the rendered text does not show: a user with a hundred thousand pageviews
/// renders as a few counters. This counts twice the text, 32 bytes per event and a fixed 512
/// bytes (docs/decisions/0009-memory-bounds.md).
pub fn fold_weight(key: &str, rendered_state: usize, events: i64) -> usize {
    let events = usize::try_from(events).unwrap_or(0);
    2 * (key.len() + rendered_state) + 32 * events + 512
}

/// A projection's folds between batches, least recently used first out, bounded in estimated
/// bytes and, if configured, in keys.
struct Cache<S> {
    folds: LruCache<String, (Fold<S>, usize)>,
    bytes: usize,
    max_bytes: usize,
    max_keys: usize,
}

impl<S> Cache<S> {
    fn new(config: &Config) -> Self {
        Cache {
            folds: LruCache::unbounded(),
            bytes: 0,
            max_bytes: config.cache_bytes,
            max_keys: config.cache_keys,
        }
    }

    /// Takes `key`'s fold out of the cache.
    fn take(&mut self, key: &str) -> Option<Fold<S>> {
        let (fold, weight) = self.folds.pop(key)?;
        self.bytes -= weight;
        Some(fold)
    }

    /// Caches `fold` as the most recently used, then evicts the least recently used folds until
    /// both bounds hold. A fold larger than the whole budget is not cached at all, rather than
    /// emptying the cache on its way in.
    fn put(&mut self, key: String, fold: Fold<S>, weight: usize) {
        if weight > self.max_bytes || self.max_keys == 0 {
            self.take(&key);
            return;
        }
        if let Some((_, (_, old))) = self.folds.push(key, (fold, weight)) {
            self.bytes -= old;
        }
        self.bytes += weight;
        while self.bytes > self.max_bytes || self.folds.len() > self.max_keys {
            let Some((_, (_, w))) = self.folds.pop_lru() else {
                break;
            };
            self.bytes -= w;
        }
    }

    fn clear(&mut self) {
        self.folds.clear();
        self.bytes = 0;
    }

    fn usage(&self) -> CacheUsage {
        CacheUsage {
            keys: self.folds.len(),
            bytes: self.bytes,
        }
    }
}

/// A fold taken out of the cache for a batch, with the weight it will be cached at.
type Dirty<S> = Vec<(String, Fold<S>, usize)>;

struct Part<M: Model> {
    seq: i64,
    generation: i64,
    cache: Cache<M::State>,
}

impl<M: Model> Part<M> {
    fn new(config: &Config) -> Self {
        Part {
            seq: -1,
            generation: -1,
            cache: Cache::new(config),
        }
    }

    /// Adopts the stored checkpoint; cached folds are only good for the checkpoint they were
    /// built at, so any move made elsewhere empties the cache. Answers whether the checkpoint
    /// had moved, and whether the stored snapshots were built by other code or configuration.
    fn sync(&mut self, stored: &store::Checkpoint, config: &Config) -> (bool, bool) {
        let moved = (stored.seq, stored.generation) != (self.seq, self.generation);
        if moved {
            self.cache.clear();
            self.seq = stored.seq;
            self.generation = stored.generation;
        }
        let outdated = stored.version != M::VERSION || stored.fingerprint != M::fingerprint(config);
        (moved, outdated)
    }

    /// Folds the batch's events past this projection's checkpoint; adds rows, the expectation
    /// and the new checkpoint to `batch`; returns the updated folds for the cache.
    fn fold(
        &mut self,
        inputs: &[Input<'_>],
        end: i64,
        reader: &Reader,
        config: &Config,
        batch: &mut ProjectBatch,
    ) -> store::Result<Dirty<M::State>> {
        let mut dirty: Dirty<M::State> = Vec::new();
        if self.seq >= end {
            return Ok(dirty);
        }
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for e in inputs
            .iter()
            .filter(|e| e.seq > self.seq && M::accepts(e.kind))
        {
            let Some(key) = M::key(e.keys) else { continue };
            let slot = match index.get(key) {
                Some(&i) => i,
                None => {
                    let fold = match self.cache.take(key) {
                        Some(fold) => fold,
                        None => refold::<M>(reader, key, self.seq)?,
                    };
                    dirty.push((key.to_owned(), fold, 0));
                    index.insert(key.to_owned(), dirty.len() - 1);
                    dirty.len() - 1
                }
            };
            dirty[slot].1.apply(e);
        }
        for (key, fold, weight) in &mut dirty {
            let rendered = match M::row(key, fold, config) {
                Some(row) => {
                    let len = row.state.len();
                    batch.rows.push((M::PROJECTION, row));
                    len
                }
                None => 0,
            };
            *weight = fold_weight(key, rendered, fold.event_count());
        }
        batch.expect.push(Expect {
            projection: M::PROJECTION,
            generation: self.generation,
            seq: self.seq,
        });
        batch.checkpoints.push((M::PROJECTION, end));
        Ok(dirty)
    }

    fn commit(&mut self, dirty: Dirty<M::State>, end: i64) {
        if self.seq >= end {
            return;
        }
        for (key, fold, weight) in dirty {
            self.cache.put(key, fold, weight);
        }
        self.seq = end;
    }
}

/// A key's fold from the log: its events up to `until`.
fn refold<M: Model>(reader: &Reader, key: &str, until: i64) -> store::Result<Fold<M::State>> {
    let mut fold = Fold::default();
    if until <= 0 {
        return Ok(fold);
    }
    for record in reader.events_of_key_until(StreamKey::of(M::PROJECTION, key), until)? {
        with_input(&record, |e| {
            if M::accepts(e.kind) {
                fold.apply(e);
            }
        });
    }
    Ok(fold)
}

/// What a key's snapshot row would be if the projector folded the log as it stands: the answer
/// to a point read of a key whose newest events are not folded yet (decision 0013). The same
/// fold and rendering as the projector's, over the same set of events, so the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// The row, with its `meta` fields.
    Row(SnapshotRow),
    /// No event in the log folds into the key.
    Absent,
    /// The key has more than the asked-for number of events: left to the projector.
    TooLarge {
        /// Whether one of the events read (the key's first `max_events + 1`, by `seq`) is of
        /// a kind this projection folds, so that the key will have a snapshot once projected.
        /// (A key named only by events of other kinds, such as a member's accounts, has none.)
        folds_any: bool,
    },
}

/// Folds `key`'s events from the log, in one read, if it has at most `max_events` of them.
pub fn current(
    reader: &Reader,
    projection: Projection,
    key: &str,
    config: &Config,
    max_events: usize,
) -> store::Result<Current> {
    match projection {
        Projection::Journeys => current_of::<Journeys>(reader, key, config, max_events),
        Projection::Members => current_of::<Members>(reader, key, config, max_events),
        Projection::Users => current_of::<Users>(reader, key, config, max_events),
        Projection::Resources => current_of::<Resources>(reader, key, config, max_events),
    }
}

fn current_of<M: Model>(
    reader: &Reader,
    key: &str,
    config: &Config,
    max_events: usize,
) -> store::Result<Current> {
    let stream = StreamKey::of(M::PROJECTION, key);
    let records = reader.events_by_key(stream, 0, max_events.saturating_add(1))?;
    if records.len() > max_events {
        let folds_any = records
            .iter()
            .any(|r| r.kind.parse::<Kind>().is_ok_and(M::accepts));
        return Ok(Current::TooLarge { folds_any });
    }
    let mut fold = Fold::<M::State>::default();
    for record in &records {
        with_input(record, |e| {
            if M::accepts(e.kind) {
                fold.apply(e);
            }
        });
    }
    if fold.event_count() == 0 {
        return Ok(Current::Absent);
    }
    Ok(M::row(key, &fold, config).map_or(Current::Absent, Current::Row))
}

/// Parses a log row and calls `f` with it as a fold input. Rows of a kind this build does not
/// know, or (impossible for rows journeyd wrote) a payload that is not JSON, are skipped.
fn with_input(r: &EventRecord, f: impl FnOnce(&Input<'_>)) {
    let Ok(kind) = r.kind.parse::<Kind>() else {
        return;
    };
    match json::parse(&r.payload) {
        Ok(payload) => f(&input(r, kind, &payload)),
        Err(e) => {
            tracing::warn!(seq = r.seq, error = %e, "stored payload is not JSON; not projected")
        }
    }
}

fn input<'a>(r: &'a EventRecord, kind: Kind, payload: &'a Value<'a>) -> Input<'a> {
    Input {
        seq: r.seq,
        id: r.event_id,
        kind,
        clock: r.clock,
        occurred_at: r.occurred_at,
        received_at: r.received_at,
        keys: &r.keys,
        payload,
    }
}

impl Runner {
    /// A runner writing through `writer` and reading the log through `reader` (both of one
    /// database). Nothing is read until the first call.
    pub fn new(writer: WriterHandle, reader: Reader, config: Config) -> Runner {
        Runner {
            journeys: Part::new(&config),
            members: Part::new(&config),
            users: Part::new(&config),
            resources: Part::new(&config),
            resynced: false,
            moved_quietly: false,
            writer,
            reader,
            config,
        }
    }

    /// Reads the stored checkpoints; returns the projections whose snapshots were built by
    /// another version of the code or another configuration.
    fn sync(&mut self) -> store::Result<Vec<Projection>> {
        let mut stale = Vec::new();
        for c in self.reader.checkpoints()? {
            let (moved, outdated) = match c.projection {
                Projection::Journeys => self.journeys.sync(&c, &self.config),
                Projection::Members => self.members.sync(&c, &self.config),
                Projection::Users => self.users.sync(&c, &self.config),
                Projection::Resources => self.resources.sync(&c, &self.config),
            };
            self.resynced |= moved;
            if outdated {
                stale.push(c.projection);
            }
        }
        Ok(stale)
    }

    /// What each projection's cache of folds holds.
    pub fn cache_usage(&self) -> [(Projection, CacheUsage); 4] {
        [
            (Projection::Journeys, self.journeys.cache.usage()),
            (Projection::Members, self.members.cache.usage()),
            (Projection::Users, self.users.cache.usage()),
            (Projection::Resources, self.resources.cache.usage()),
        ]
    }

    fn lowest_checkpoint(&self) -> i64 {
        self.journeys
            .seq
            .min(self.members.seq)
            .min(self.users.seq)
            .min(self.resources.seq)
    }

    /// Folds every event past the checkpoints into the snapshots, rebuilding first any
    /// projection whose stored version or configuration is not this build's. Returns when the
    /// snapshots are current with the log as it was read.
    pub fn catch_up(&mut self) -> store::Result<CatchUp> {
        self.catch_up_with(&mut |_| {})
    }

    /// As [`Runner::catch_up`], but done once every checkpoint has reached `target` (a log
    /// head read before): for a command that projects what it appended, beside a daemon whose
    /// ingest would otherwise keep it chasing the head. Rebuilds as `catch_up` does.
    pub fn catch_up_to(&mut self, target: i64) -> store::Result<CatchUp> {
        self.catch_up_inner(&mut |_| {}, &|| false, true, Some(target))
    }

    /// As [`Runner::catch_up`], calling `on_update` as it goes: for every snapshot a committed
    /// batch wrote, after its commit, then once for the batch; and whenever it finds that the
    /// snapshot tables moved under it, before it reports anything else.
    pub fn catch_up_with(&mut self, on_update: &mut dyn FnMut(Update)) -> store::Result<CatchUp> {
        self.catch_up_inner(on_update, &|| false, true, None)
    }

    /// As [`Runner::catch_up_with`], but stops between batches once `stop` is set, and starts
    /// no rebuild then; one already running is abandoned before its swap, at the next key it
    /// reads, and left to the next catch-up: for a process asked to stop while it catches up
    /// (the daemon's rounds).
    pub fn catch_up_unless(
        &mut self,
        on_update: &mut dyn FnMut(Update),
        stop: &std::sync::atomic::AtomicBool,
    ) -> store::Result<CatchUp> {
        let stop = || stop.load(std::sync::atomic::Ordering::SeqCst);
        self.catch_up_inner(on_update, &stop, true, None)
    }

    /// As [`Runner::catch_up_with`], but stops between batches once `deadline` has passed and
    /// rebuilds nothing: for a process that must stop on time (the daemon's last round).
    pub fn catch_up_until(
        &mut self,
        on_update: &mut dyn FnMut(Update),
        deadline: std::time::Instant,
    ) -> store::Result<CatchUp> {
        self.catch_up_inner(
            on_update,
            &|| std::time::Instant::now() >= deadline,
            false,
            None,
        )
    }

    /// Folds batches until the log head or until `stop()`; rebuilds stale projections first
    /// when `rebuilds` and not `stop()`, else leaves them to the next catch-up.
    fn catch_up_inner(
        &mut self,
        on_update: &mut dyn FnMut(Update),
        stop: &dyn Fn() -> bool,
        rebuilds: bool,
        until: Option<i64>,
    ) -> store::Result<CatchUp> {
        let mut done = CatchUp::default();
        let stale = self.sync()?;
        self.report_resync(on_update);
        if !stale.is_empty() && (!rebuilds || stop()) {
            // No time for a rebuild: leave it to the next start.
            done.checkpoint = self.lowest_checkpoint();
            return Ok(done);
        }
        let target = self.rebuild_target(&stale)?;
        // Version 0 is the migrations' placeholder: no build of this code or any other yet.
        let never_built: Vec<Projection> = match stale.is_empty() {
            true => Vec::new(),
            false => self
                .reader
                .checkpoints()?
                .into_iter()
                .filter(|c| c.version == 0)
                .map(|c| c.projection)
                .collect(),
        };
        for projection in stale {
            if stop() {
                // The rest waits for the next catch-up; nothing is folded past stale tables.
                done.checkpoint = self.lowest_checkpoint();
                return Ok(done);
            }
            if never_built.contains(&projection) {
                tracing::info!(
                    projection = projection.name(),
                    "building the snapshots for the first time"
                );
            } else {
                tracing::info!(
                    projection = projection.name(),
                    "snapshots were built by other code or configuration; rebuilding"
                );
            }
            match self.rebuild_to(projection, &mut |_| {}, stop, Some(target)) {
                Ok(_) => {}
                Err(store::Error::Stopped) => {
                    tracing::info!(
                        projection = projection.name(),
                        "rebuild abandoned: asked to stop; the next catch-up starts it again"
                    );
                    done.checkpoint = self.lowest_checkpoint();
                    return Ok(done);
                }
                Err(e) => return Err(e),
            }
            self.report_resync(on_update);
            done.rebuilt += 1;
        }
        loop {
            if stop() || until.is_some_and(|t| self.lowest_checkpoint() >= t) {
                break;
            }
            let from = self.lowest_checkpoint();
            let records = self.reader.events(from, self.config.batch_events.max(1))?;
            let Some(end) = records.last().map(|r| r.seq) else {
                break;
            };
            let parsed: Vec<(Kind, Value<'_>, &EventRecord)> = records
                .iter()
                .filter_map(|r| {
                    let kind = r.kind.parse::<Kind>().ok()?;
                    match json::parse(&r.payload) {
                        Ok(v) => Some((kind, v, r)),
                        Err(e) => {
                            tracing::warn!(seq = r.seq, error = %e, "stored payload is not JSON; not projected");
                            None
                        }
                    }
                })
                .collect();
            let inputs: Vec<Input<'_>> = parsed
                .iter()
                .map(|(kind, v, r)| input(r, *kind, v))
                .collect();
            let mut batch = ProjectBatch::default();
            let (r, c) = (&self.reader, &self.config);
            let j = self.journeys.fold(&inputs, end, r, c, &mut batch)?;
            let m = self.members.fold(&inputs, end, r, c, &mut batch)?;
            let u = self.users.fold(&inputs, end, r, c, &mut batch)?;
            let s = self.resources.fold(&inputs, end, r, c, &mut batch)?;
            let rows = batch.rows.len() as u64;
            let mut changes: Vec<Change> = batch
                .rows
                .iter()
                .map(|(projection, row)| Change {
                    projection: *projection,
                    key: row.key.clone(),
                    status: match &row.columns {
                        store::Columns::Journey { status, .. } => Some(status.clone()),
                        _ => None,
                    },
                    seq: row.last_seq,
                })
                .collect();
            // The rows are by projection, then by a key's first event: put them in log order
            // (a stable sort keeps the projections' order for one event).
            changes.sort_by_key(|c| c.seq);
            match self.writer.project(batch) {
                Ok(()) => {
                    for c in changes {
                        on_update(Update::Changed(c));
                    }
                    self.journeys.commit(j, end);
                    self.members.commit(m, end);
                    self.users.commit(u, end);
                    self.resources.commit(s, end);
                    on_update(Update::Committed {
                        checkpoint: self.lowest_checkpoint(),
                    });
                    done.events += records.len() as u64;
                    done.rows += rows;
                }
                Err(store::Error::Stale { projection }) => {
                    tracing::debug!(
                        projection = projection.name(),
                        "checkpoint moved elsewhere; starting again from the stored one"
                    );
                    let stale = self.sync()?;
                    self.report_resync(on_update);
                    if !stale.is_empty() && (!rebuilds || stop()) {
                        // As at the start: the next catch-up (or start) rebuilds.
                        break;
                    }
                    let target = self.rebuild_target(&stale)?;
                    for projection in stale {
                        if stop() {
                            break; // and the loop ends at its top: nothing past stale tables
                        }
                        self.rebuild_to(projection, &mut |_| {}, &|| false, Some(target))?;
                        self.report_resync(on_update);
                        done.rebuilt += 1;
                    }
                }
                Err(e) => {
                    // The folds taken out of the caches are dropped: missing keys refold.
                    return Err(e);
                }
            }
        }
        done.checkpoint = self.lowest_checkpoint();
        Ok(done)
    }

    fn report_resync(&mut self, on_update: &mut dyn FnMut(Update)) {
        let quietly = std::mem::take(&mut self.moved_quietly);
        if std::mem::take(&mut self.resynced) {
            on_update(Update::Resynced {
                checkpoint: self.lowest_checkpoint(),
            });
        } else if quietly {
            on_update(Update::Committed {
                checkpoint: self.lowest_checkpoint(),
            });
        }
    }

    /// Refolds `projection` from the start of the log into a new table and swaps it in with
    /// its checkpoint at the log head it read. `progress` is called with the number of events
    /// scanned so far. Events appended meanwhile are folded by the next [`Runner::catch_up`],
    /// which also reports the swap as [`Update::Resynced`] to [`Runner::catch_up_with`]'s caller.
    pub fn rebuild(
        &mut self,
        projection: Projection,
        progress: &mut dyn FnMut(u64),
    ) -> store::Result<Rebuilt> {
        self.rebuild_to(projection, progress, &|| false, None)
    }

    /// As [`Runner::rebuild`], up to `head` (the log head as it is, when `None`), and
    /// abandoned with [`store::Error::Stopped`] once `stop()`, before its swap: the live table
    /// and checkpoint stay as they were, and the half-filled table is dropped by the next swap
    /// of the projection.
    fn rebuild_to(
        &mut self,
        projection: Projection,
        progress: &mut dyn FnMut(u64),
        stop: &dyn Fn() -> bool,
        head: Option<i64>,
    ) -> store::Result<Rebuilt> {
        let before = self.positions();
        let resynced = self.resynced;
        let (w, r, c) = (&self.writer, &self.reader, &self.config);
        let rebuilt = match projection {
            Projection::Journeys => rebuild::<Journeys>(w, r, c, progress, stop, head)?,
            Projection::Members => rebuild::<Members>(w, r, c, progress, stop, head)?,
            Projection::Users => rebuild::<Users>(w, r, c, progress, stop, head)?,
            Projection::Resources => rebuild::<Resources>(w, r, c, progress, stop, head)?,
        };
        self.sync()?;
        // An empty table that this rebuild swapped in for one nothing was read from (at
        // checkpoint 0: a new database's first catch-up, before any event), with nothing else
        // moved meanwhile: no reader can have missed a change, so live streams need not end.
        let after = self.positions();
        let only_this_moved = Projection::ALL
            .iter()
            .zip(before.iter().zip(&after))
            .all(|(p, (b, a))| *p == projection || b == a);
        let slot = Projection::ALL.iter().position(|p| *p == projection);
        let from_nothing = slot.is_some_and(|i| before[i].0 <= 0 && after[i].0 == rebuilt.head);
        if rebuilt.swapped && rebuilt.keys == 0 && from_nothing && only_this_moved && !resynced {
            self.resynced = false;
            self.moved_quietly = true;
        }
        Ok(rebuilt)
    }

    /// The one head every stale projection of a round is rebuilt to: the lowest checkpoint of
    /// the projections that are current, or the log head when all are stale. So after the
    /// rebuilds no table stands past the others, and the batches that follow announce every
    /// change past that head for all four: a change between a rebuilt table's head and the
    /// others' checkpoints would otherwise be neither announced live (the rebuilt projection
    /// folds nothing at or below its checkpoint) nor replayed (a replay stops at the lowest).
    fn rebuild_target(&self, stale: &[Projection]) -> store::Result<i64> {
        let head = self.reader.head()?;
        let current = Projection::ALL
            .iter()
            .zip(self.positions())
            .filter(|(p, _)| !stale.contains(p))
            .map(|(_, (seq, _))| seq)
            .min();
        Ok(current.map_or(head, |seq| seq.clamp(0, head)))
    }

    /// Each projection's (checkpoint, generation) as this runner holds them, in
    /// [`Projection::ALL`]'s order.
    fn positions(&self) -> [(i64, i64); 4] {
        Projection::ALL.map(|p| match p {
            Projection::Journeys => (self.journeys.seq, self.journeys.generation),
            Projection::Members => (self.members.seq, self.members.generation),
            Projection::Users => (self.users.seq, self.users.generation),
            Projection::Resources => (self.resources.seq, self.resources.generation),
        })
    }
}

fn rebuild<M: Model>(
    writer: &WriterHandle,
    reader: &Reader,
    config: &Config,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
    head: Option<i64>,
) -> store::Result<Rebuilt> {
    let head = match head {
        Some(head) => head,
        None => reader.head()?,
    };
    let ticket = writer.rebuild_begin(M::PROJECTION)?;
    let written = write_rebuild::<M>(writer, reader, config, progress, stop, head, &ticket)
        .and_then(|counts| {
            writer.rebuild_swap(&ticket, head, M::VERSION, &M::fingerprint(config))?;
            Ok(counts)
        });
    let (events, keys, swapped) = match written {
        Ok((events, keys)) => (events, keys, true),
        // Another rebuild of this projection swapped first: its table stands, and ours was
        // dropped (at the swap, or on the way, which our next rows found out).
        Err(store::Error::Stale { .. }) => {
            tracing::info!(
                projection = M::PROJECTION.name(),
                "another rebuild finished first; keeping its snapshots"
            );
            (0, 0, false)
        }
        Err(e) => return Err(e),
    };
    Ok(Rebuilt {
        projection: M::PROJECTION,
        head,
        events,
        keys,
        swapped,
    })
}

/// The rows phase of [`rebuild`]: folds every key of the log up to `head` and writes its rows
/// into the ticket's table. The events scanned and the snapshots written.
fn write_rebuild<M: Model>(
    writer: &WriterHandle,
    reader: &Reader,
    config: &Config,
    progress: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
    head: i64,
    ticket: &store::RebuildTicket,
) -> store::Result<(u64, u64)> {
    let (tx, rx) = mpsc::channel::<store::Result<()>>();
    let mut in_flight = 0usize;
    let mut rows = Vec::with_capacity(REBUILD_CHUNK);
    let mut current: Option<(String, Fold<M::State>)> = None;
    let (mut events, mut keys) = (0u64, 0u64);

    let flush = |rows: &mut Vec<store::SnapshotRow>,
                 in_flight: &mut usize,
                 force: bool|
     -> store::Result<()> {
        if rows.is_empty() || (!force && rows.len() < REBUILD_CHUNK) {
            return Ok(());
        }
        while *in_flight >= REBUILD_IN_FLIGHT {
            rx.recv().map_err(|_| store::Error::WriterStopped)??;
            *in_flight -= 1;
        }
        let tx = tx.clone();
        writer.rebuild_rows_then(ticket, std::mem::take(rows), move |r| {
            let _ = tx.send(r);
        })?;
        *in_flight += 1;
        Ok(())
    };

    reader.scan_by_key(
        M::PROJECTION,
        head,
        |record: EventRecord| -> store::Result<()> {
            events += 1;
            if events % 65_536 == 0 {
                progress(events);
            }
            let Some(key) = M::key(&record.keys) else {
                return Ok(());
            };
            if current.as_ref().is_some_and(|(k, _)| k != key) {
                if stop() {
                    return Err(store::Error::Stopped);
                }
                if let Some((k, fold)) = current.take()
                    && fold.event_count() > 0
                    && let Some(row) = M::row(&k, &fold, config)
                {
                    rows.push(row);
                    keys += 1;
                }
                flush(&mut rows, &mut in_flight, false)?;
            }
            let fold = &mut current
                .get_or_insert_with(|| (key.to_owned(), Fold::default()))
                .1;
            with_input(&record, |e| {
                if M::accepts(e.kind) {
                    fold.apply(e);
                }
            });
            Ok(())
        },
    )?;
    if let Some((k, fold)) = current.take()
        && fold.event_count() > 0
        && let Some(row) = M::row(&k, &fold, config)
    {
        rows.push(row);
        keys += 1;
    }
    flush(&mut rows, &mut in_flight, true)?;

    while in_flight > 0 {
        rx.recv().map_err(|_| store::Error::WriterStopped)??;
        in_flight -= 1;
    }
    if stop() {
        return Err(store::Error::Stopped);
    }
    progress(events);
    Ok((events, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_keys: usize, max_bytes: usize) -> Cache<()> {
        Cache::new(&Config {
            cache_keys: max_keys,
            cache_bytes: max_bytes,
            ..Config::default()
        })
    }

    /// The cache's own count against the entries it holds.
    fn counted_right(c: &Cache<()>) -> bool {
        c.bytes == c.folds.iter().map(|(_, (_, w))| *w).sum::<usize>()
    }

    #[test]
    fn the_key_bound_evicts_the_least_recently_used_and_keeps_the_count() {
        let mut c = cache(2, 1_000);
        for (key, weight) in [("a", 10), ("b", 20), ("c", 30)] {
            c.put(key.into(), Fold::default(), weight);
            assert!(counted_right(&c));
        }
        assert_eq!(c.usage(), CacheUsage { keys: 2, bytes: 50 });
        assert!(c.take("a").is_none(), "a was the least recently used");
        assert!(c.take("b").is_some());
        assert!(counted_right(&c));
        assert_eq!(c.usage(), CacheUsage { keys: 1, bytes: 30 });
    }

    #[test]
    fn the_byte_bound_evicts_and_a_fold_over_the_whole_budget_is_not_kept() {
        let mut c = cache(usize::MAX, 100);
        c.put("a".into(), Fold::default(), 40);
        c.put("b".into(), Fold::default(), 40);
        c.put("c".into(), Fold::default(), 40);
        assert_eq!(c.usage(), CacheUsage { keys: 2, bytes: 80 });
        assert!(c.take("a").is_none());
        // Too big for any budget: dropped, and nothing else is evicted for it.
        c.put("huge".into(), Fold::default(), 101);
        assert_eq!(c.usage(), CacheUsage { keys: 2, bytes: 80 });
        assert!(counted_right(&c));
        // Put again under the same key: replaced, counted once.
        c.put("c".into(), Fold::default(), 50);
        assert_eq!(c.usage(), CacheUsage { keys: 2, bytes: 90 });
        assert!(counted_right(&c));
        c.clear();
        assert_eq!(c.usage(), CacheUsage::default());
    }

    #[test]
    fn a_fold_is_counted_for_its_events_as_well_as_its_text() {
        assert!(fold_weight("k", 100, 100_000) > 3_000_000);
        assert_eq!(fold_weight("k", 100, 0), 2 * 101 + 512);
    }
}
