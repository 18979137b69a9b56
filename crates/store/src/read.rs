//! Read-only access: the log by `seq` or stream key, counts, and quarantine.

use std::collections::BTreeMap;
use std::path::Path;

use events::{EventId, Keys};
use rusqlite::{Connection, Row};
use serde::Serialize;

use crate::snapshots::{self, Checkpoint, JourneyFilter, Projection, ProjectionCounts, Snapshot};
use crate::{Error, Millis, Result};

/// A read-only connection. WAL lets any number of these read beside the writer.
pub struct Reader {
    conn: Connection,
}

/// One stored event, as the API and CLI show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Arrival order.
    pub seq: i64,
    /// Deterministic identity.
    pub event_id: EventId,
    /// `mx` or `mobile-journeys`.
    pub source: String,
    /// The kind's stored name.
    pub kind: String,
    /// Stream keys.
    pub keys: Keys,
    /// The `clock` column (time in ms, or revision; `None` for arrival).
    pub clock: Option<i64>,
    /// When it happened, if it says.
    pub occurred_at: Option<Millis>,
    /// When it was received.
    pub received_at: Millis,
    /// The `deliveries` row it came in.
    pub delivery_id: i64,
    /// Its exact bytes as received.
    pub payload: String,
}

/// A stream key to select events by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKey<'a> {
    /// A journey's `correlationId`.
    Journey(&'a str),
    /// An MX member.
    Member(&'a str),
    /// An MX user.
    User(&'a str),
    /// An MX resource, `"{type}/{guid}"`.
    Resource(&'a str),
}

impl<'a> StreamKey<'a> {
    /// The stream of `projection` with this key.
    pub fn of(projection: Projection, key: &'a str) -> StreamKey<'a> {
        match projection {
            Projection::Journeys => StreamKey::Journey(key),
            Projection::Members => StreamKey::Member(key),
            Projection::Users => StreamKey::User(key),
            Projection::Resources => StreamKey::Resource(key),
        }
    }

    fn column_and_value(self) -> (&'static str, &'a str) {
        match self {
            StreamKey::Journey(v) => ("correlation_id", v),
            StreamKey::Member(v) => ("member_guid", v),
            StreamKey::User(v) => ("user_guid", v),
            StreamKey::Resource(v) => ("resource_key", v),
        }
    }
}

/// Counts over the log and quarantine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogStats {
    /// Events in the log.
    pub events: i64,
    /// Events of kind `unknown`.
    pub unknown: i64,
    /// Bodies in quarantine.
    pub quarantined: i64,
    /// The greatest `seq` (0 for an empty log).
    pub log_head: i64,
    /// Requests recorded.
    pub deliveries: i64,
    /// Events by source.
    pub by_source: BTreeMap<String, i64>,
    /// Events by kind.
    pub by_kind: BTreeMap<String, i64>,
}

/// A quarantine row without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// `quarantine.id`.
    pub id: i64,
    /// When it was received.
    pub received_at: Millis,
    /// The route it came in on.
    pub source: String,
    /// Why it is here.
    pub reason: String,
    /// Body size in bytes.
    pub size: i64,
    /// How many times these exact bytes were received from this source.
    pub times_received: i64,
    /// When they were last received.
    pub last_received_at: Millis,
}

/// A quarantine row with its body, for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedBody {
    /// `quarantine.id`.
    pub id: i64,
    /// When it was first received.
    pub received_at: Millis,
    /// The route it came in on.
    pub source: String,
    /// The exact bytes.
    pub body: Vec<u8>,
}

/// A [`QuarantineEntry`] from the columns `id, received_at, source, reason, size,
/// times_received, last_received_at`, in that order.
fn quarantine_entry(r: &Row<'_>) -> rusqlite::Result<QuarantineEntry> {
    Ok(QuarantineEntry {
        id: r.get(0)?,
        received_at: r.get(1)?,
        source: r.get(2)?,
        reason: r.get(3)?,
        size: r.get(4)?,
        times_received: r.get(5)?,
        last_received_at: r.get(6)?,
    })
}

const EVENT_COLUMNS: &str = "seq, event_id, source, kind, correlation_id, member_guid, user_guid, resource_key, clock, occurred_at, received_at, delivery_id, payload";

fn event_record(r: &Row<'_>) -> rusqlite::Result<EventRecord> {
    let id: Vec<u8> = r.get(1)?;
    let id: [u8; 16] = id.try_into().map_err(|v: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Blob,
            format!("event_id has {} bytes, not 16", v.len()).into(),
        )
    })?;
    Ok(EventRecord {
        seq: r.get(0)?,
        event_id: EventId::from_bytes(id),
        source: r.get(2)?,
        kind: r.get(3)?,
        keys: Keys {
            correlation_id: r.get(4)?,
            member_guid: r.get(5)?,
            user_guid: r.get(6)?,
            resource: r.get(7)?,
        },
        clock: r.get(8)?,
        occurred_at: r.get(9)?,
        received_at: r.get(10)?,
        delivery_id: r.get(11)?,
        payload: r.get(12)?,
    })
}

impl Reader {
    /// Opens the database at `path` read-only. Fails if it does not exist or its schema
    /// version is not this build's.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader> {
        Ok(Reader {
            conn: crate::open_read_only(path.as_ref())?,
        })
    }

    /// The greatest `seq`, 0 for an empty log.
    pub fn head(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Up to `limit` events with `seq > after`, in `seq` order.
    pub fn events(&self, after: i64, limit: usize) -> Result<Vec<EventRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(rusqlite::params![after, limit_param(limit)], event_record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` events of one stream with `seq > after`, in `seq` order.
    pub fn events_by_key(
        &self,
        key: StreamKey<'_>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        let (column, value) = key.column_and_value();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {column} = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            rusqlite::params![value, after, limit_param(limit)],
            event_record,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The events of one stream with `seq` up to `until`, in `seq` order (a projector's refold).
    pub fn events_of_key_until(&self, key: StreamKey<'_>, until: i64) -> Result<Vec<EventRecord>> {
        let (column, value) = key.column_and_value();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {column} = ?1 AND seq <= ?2 ORDER BY seq"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params![value, until], event_record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Calls `f` with every event that has `projection`'s key and `seq` up to `until`, grouped
    /// by key (keys ascending, each key's events in `seq` order). Streams: memory does not grow
    /// with the log. `f` returning an error stops the scan.
    pub fn scan_by_key<E: From<crate::Error>>(
        &self,
        projection: Projection,
        until: i64,
        mut f: impl FnMut(EventRecord) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let column = projection.event_key_column();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {column} IS NOT NULL AND seq <= ?1 ORDER BY {column}, seq"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(crate::Error::from)?;
        let mut rows = stmt.query([until]).map_err(crate::Error::from)?;
        while let Some(row) = rows.next().map_err(crate::Error::from)? {
            f(event_record(row).map_err(crate::Error::from)?)?;
        }
        Ok(())
    }

    /// Every projection's checkpoint.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        snapshots::read_checkpoints(&self.conn)
    }

    /// One snapshot, if the key is known.
    pub fn snapshot(&self, projection: Projection, key: &str) -> Result<Option<Snapshot>> {
        snapshots::read_snapshot(&self.conn, projection, key)
    }

    /// The snapshot of `key`, if any, and the checkpoint `seq` of the table it was read from,
    /// read together: a caller can tell a table that went back (another process's rebuild
    /// swapped in an older one) from one that is current.
    pub fn snapshot_at(
        &self,
        projection: Projection,
        key: &str,
    ) -> Result<(i64, Option<Snapshot>)> {
        snapshots::read_snapshot_at(&self.conn, projection, key)
    }

    /// Every snapshot of a projection, by key (for comparisons and exports).
    pub fn snapshots(&self, projection: Projection) -> Result<Vec<Snapshot>> {
        snapshots::read_all(&self.conn, projection)
    }

    /// Journeys matching a filter, by `correlation_id`, after the cursor.
    pub fn journeys(&self, filter: &JourneyFilter) -> Result<Vec<Snapshot>> {
        snapshots::read_journeys(&self.conn, filter)
    }

    /// Snapshot counts for `stats`.
    pub fn projection_counts(&self) -> Result<ProjectionCounts> {
        snapshots::read_counts(&self.conn)
    }

    /// The `seq` of an event, if it is in the log (found by its identity: clock and id).
    pub fn seq_of(&self, event: &events::Event) -> Result<Option<i64>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row(
                "SELECT seq FROM events WHERE coalesce(clock, -1) = coalesce(?1, -1) AND event_id = ?2",
                rusqlite::params![event.clock.column(), &event.id.as_bytes()[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Runs `read` on one snapshot of the database: every query in it sees the same commits
    /// (a read transaction). Nested calls share the outer snapshot.
    pub fn consistent<T>(&self, read: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        if !self.conn.is_autocommit() {
            return read(self);
        }
        let tx = self.conn.unchecked_transaction()?;
        let out = read(self)?;
        tx.finish()?;
        Ok(out)
    }

    /// Writes a copy of the whole database to `dest`, a file that must not exist yet, while
    /// other connections (a running daemon) go on reading and writing. It is SQLite's
    /// `VACUUM INTO`: the copy is the database as of one commit, compacted, a single file with
    /// no `-wal` beside it. It is written to a temporary file beside `dest`, synced, opened as a
    /// journeyd database and checked (`PRAGMA quick_check`), and only then linked to `dest`,
    /// which never replaces a file, and the directory synced. So `dest` is a whole, checked copy
    /// or does not exist; a failure leaves nothing behind.
    pub fn backup_into(&self, dest: &Path) -> Result<()> {
        let fail = |reason: String| Error::Backup {
            path: dest.to_path_buf(),
            reason,
        };
        // Absolute: SQLite would read a name starting with `file:` as a URI.
        let dest = std::path::absolute(dest).map_err(|e| fail(e.to_string()))?;
        if dest.exists() {
            return Err(fail(
                "the file exists; a backup never overwrites one".into(),
            ));
        }
        let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(fail("the path names no file".into()));
        };
        clear_partials(dir, name);
        // A name of its own (pid and time, so that backups in other pid namespaces sharing the
        // directory do not meet), made empty and locked before the copy goes into it: the lock
        // tells another backup's clean-up that this copy is being written.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut partial = std::ffi::OsString::from(".");
        partial.push(name);
        partial.push(format!(".partial-{}-{stamp}", std::process::id()));
        let partial = dir.join(partial);
        let holder = crate::owner_only(std::fs::OpenOptions::new().write(true).create_new(true))
            .open(&partial)
            .map_err(|e| fail(format!("cannot create {}: {e}", partial.display())))?;
        if let Err(e) = holder.try_lock() {
            let _ = std::fs::remove_file(&partial);
            return Err(fail(format!("cannot lock {}: {e}", partial.display())));
        }
        // `VACUUM INTO` writes into a file that does not exist or is empty.
        let written = self.write_checked_copy(&partial, &fail);
        let linked = written.and_then(|()| match std::fs::hard_link(&partial, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(fail(
                "the file exists; a backup never overwrites one".into(),
            )),
            // A file system without hard links (vfat, some network mounts): a rename, which
            // would replace a file that appeared since the check above, a window this small.
            Err(_) if !dest.exists() => std::fs::rename(&partial, &dest)
                .map_err(|e| fail(format!("cannot move the checked copy into place: {e}"))),
            Err(e) => Err(fail(format!(
                "cannot link the checked copy into place: {e}"
            ))),
        });
        let _ = std::fs::remove_file(&partial);
        drop(holder);
        linked?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(format!("cannot sync its directory: {e}")))
    }

    /// `VACUUM INTO path`, synced, then opened as a journeyd database and checked.
    fn write_checked_copy(&self, path: &Path, fail: &dyn Fn(String) -> Error) -> Result<()> {
        let target = path
            .to_str()
            .ok_or_else(|| fail("the path is not UTF-8".into()))?;
        self.conn.execute("VACUUM INTO ?1", [target])?;
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| fail(format!("cannot sync the copy: {e}")))?;
        let copy = Reader::open(path)?;
        let check: String = copy
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(fail(format!("the copy failed its check: {check}")));
        }
        Ok(())
    }

    /// Counts over the log (from the writer-maintained `event_counts`) and quarantine, from one
    /// snapshot.
    pub fn stats(&self) -> Result<LogStats> {
        self.consistent(Reader::log_stats)
    }

    fn log_stats(&self) -> Result<LogStats> {
        let conn = &self.conn;
        let mut stats = LogStats::default();
        {
            let mut stmt = conn.prepare_cached("SELECT source, kind, count FROM event_counts")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (source, kind, n): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                stats.events += n;
                if kind == events::Kind::Unknown.as_str() {
                    stats.unknown += n;
                }
                *stats.by_source.entry(source).or_default() += n;
                *stats.by_kind.entry(kind).or_default() += n;
            }
        }
        stats.log_head =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
        stats.quarantined = conn.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))?;
        stats.deliveries =
            conn.query_row("SELECT coalesce(max(id), 0) FROM deliveries", [], |r| {
                r.get(0)
            })?;
        Ok(stats)
    }

    /// Every quarantined body, oldest first, without the bytes.
    pub fn quarantine(&self) -> Result<Vec<QuarantineEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, received_at, source, reason, length(body), times_received, last_received_at
             FROM quarantine ORDER BY id",
        )?;
        let rows = stmt.query_map([], quarantine_entry)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` quarantine entries with `id > after`, oldest first, without the bytes:
    /// a page of [`Reader::quarantine`].
    pub fn quarantine_page(&self, after: i64, limit: usize) -> Result<Vec<QuarantineEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, received_at, source, reason, length(body), times_received, last_received_at
             FROM quarantine WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![after, limit_param(limit)],
            quarantine_entry,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One quarantined body whole: its entry, the request headers kept with it (a JSON
    /// object), and its exact bytes.
    pub fn quarantined(&self, id: i64) -> Result<Option<(QuarantineEntry, String, Vec<u8>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, received_at, source, reason, length(body), times_received, last_received_at, headers, body
             FROM quarantine WHERE id = ?1",
        )?;
        let mut rows =
            stmt.query_map([id], |r| Ok((quarantine_entry(r)?, r.get(7)?, r.get(8)?)))?;
        Ok(rows.next().transpose()?)
    }

    /// Up to `limit` quarantined bodies with `id > after`, oldest first.
    pub fn quarantined_bodies(&self, after: i64, limit: usize) -> Result<Vec<QuarantinedBody>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, received_at, source, body FROM quarantine WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let rows = stmt.query_map(rusqlite::params![after, limit_param(limit)], |r| {
            Ok(QuarantinedBody {
                id: r.get(0)?,
                received_at: r.get(1)?,
                source: r.get(2)?,
                body: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A partial copy this young and still empty may be a backup's between creating it and
/// locking it: left alone.
const PARTIAL_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the partial copies of a backup to `name` in `dir` (`.NAME.partial-…` and their
/// `-journal`s) that backups killed part-way left. A backup holds a lock on its partial copy
/// while it writes it, so a copy whose lock can be taken is one nobody writes any more; one
/// whose lock is held is another backup at work and is left alone, and so is one that is empty
/// and younger than [`PARTIAL_GRACE`]. A journal whose copy is gone goes too. Each removal is a
/// warning; nothing here fails the backup.
fn clear_partials(dir: &Path, name: &std::ffi::OsStr) {
    let Some(name) = name.to_str() else { return };
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut journals = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(file) = file.to_str().filter(|f| f.starts_with(&prefix)) else {
            continue;
        };
        let path = entry.path();
        if file.ends_with("-journal") {
            journals.push(path);
            continue;
        }
        let Ok(copy) = std::fs::File::open(&path) else {
            continue;
        };
        match copy.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue, // a backup at work
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot tell whether a backup still writes this partial copy; left alone");
                continue;
            }
        }
        let young_and_empty = copy.metadata().is_ok_and(|m| {
            m.len() == 0
                && m.modified()
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < PARTIAL_GRACE))
        });
        if young_and_empty {
            continue;
        }
        remove_partial(&path);
    }
    for journal in journals {
        let copy = journal.to_string_lossy();
        let copy = Path::new(copy.strip_suffix("-journal").unwrap_or(&copy));
        if !copy.exists() {
            remove_partial(&journal);
        }
    }
}

fn remove_partial(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            "removed a partial copy left by a backup that was killed part-way"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // another backup's clean-up
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot remove a partial copy left by a backup that was killed part-way"
        ),
    }
}
