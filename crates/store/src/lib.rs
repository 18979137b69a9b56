//! journeyd's storage: the append-only SQLite event log and what sits beside it.
//!
//! This crate owns the database file: the schema (migrations in the workspace's `migrations/`,
//! applied at open in one transaction and tracked in `PRAGMA user_version`), the per-connection
//! pragmas, the single [writer](WriterHandle) that commits many callers' submissions per
//! transaction (group commit), and read-only [`Reader`]s. It is synchronous and knows no async
//! runtime: async callers hand the writer a callback ([`WriterHandle::try_submit`]) and bridge it
//! to their own runtime.
//!
//! What it deliberately does not do: parse payloads (the `events` crate does, before anything
//! reaches the store), fold events into state, or ever change or delete a row of `events`
//! (triggers in the schema make that fail).

mod read;
mod snapshots;
mod wal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

pub use events::timestamp::Millis;
pub use read::{EventRecord, LogStats, QuarantineEntry, QuarantinedBody, Reader, StreamKey};
pub use snapshots::{
    Checkpoint, Columns, Expect, JourneyFilter, ProjectBatch, Projection, ProjectionCounts,
    RebuildTicket, Snapshot, SnapshotRow,
};
pub use wal::{RESET_WAIT, WalReset, WalResetHook};
pub use writer::{Appended, Body, CommitInfo, Quarantined, Receipt, Submission, WriterHandle};

/// The schema, one entry per file in `migrations/`, in order. Append only.
const MIGRATION_LIST: &[M<'static>] = &[
    M::up(include_str!("../../../migrations/0001_event_log.sql")),
    M::up(include_str!("../../../migrations/0002_projections.sql")),
    M::up(include_str!(
        "../../../migrations/0003_snapshot_rowid_tables.sql"
    )),
    M::up(include_str!("../../../migrations/0004_snapshot_counts.sql")),
    M::up(include_str!(
        "../../../migrations/0005_counting_without_statement_journals.sql"
    )),
    M::up(include_str!("../../../migrations/0006_application_id.sql")),
    M::up(include_str!(
        "../../../migrations/0007_quarantine_discarded.sql"
    )),
];

/// The SQLite header's application id of a journeyd database (migration 0006): "JRND".
pub const APPLICATION_ID: i64 = 0x4A52_4E44;

/// The first schema version that carries [`APPLICATION_ID`].
const APPLICATION_ID_SINCE: usize = 6;

fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATION_LIST)
}

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: usize = MIGRATION_LIST.len();

/// What can go wrong in the store. Duplicates and quarantined bodies are not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite said no (I/O error, disk full, constraint, busy past the timeout, ...). Its
    /// message is part of this one, and not also given as the error's source: a report of the
    /// whole chain (`{:#}`) would say it twice.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// Applying the migrations failed; nothing was changed.
    #[error("could not migrate the database schema: {0}")]
    Migration(rusqlite_migration::Error),
    /// The file is an SQLite database of something else, which journeyd must not add its
    /// tables to (a mistyped `--db`, say).
    #[error("{} is not a journeyd database: {reason}", path.display())]
    NotJourneyd {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// A reader was asked for a database file that does not exist.
    #[error("no journeyd database at {0}")]
    Missing(PathBuf),
    /// The file's schema is not the one this build knows.
    #[error(
        "the database schema is version {found}, this journeyd uses version {expected}{hint}",
        hint = if *found < *expected { " (run `journeyd import` or `journeyd serve` once to migrate it)" } else { " (it was written by a newer journeyd)" }
    )]
    SchemaVersion {
        /// `PRAGMA user_version` of the file.
        found: usize,
        /// [`SCHEMA_VERSION`].
        expected: usize,
    },
    /// The writer's queue is full: back off and retry (HTTP callers answer 503).
    #[error("the writer queue is full")]
    QueueFull,
    /// A rebuild replaced the projection's snapshots since the caller read its generation:
    /// nothing was written; reload the checkpoint, drop cached state and try again.
    #[error("the {} projection was rebuilt meanwhile", projection.name())]
    Stale {
        /// Which projection.
        projection: Projection,
    },
    /// The writer thread has stopped; nothing more can be appended through this store.
    #[error("the writer has stopped")]
    WriterStopped,
    /// The caller asked a long operation (a rebuild) to stop before it finished; nothing of it
    /// took effect.
    #[error("stopped before it finished")]
    Stopped,
    /// A backup could not be written where it was asked for, or its copy failed its check.
    #[error("cannot back up to {}: {reason}", path.display())]
    Backup {
        /// The destination asked for.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

impl From<rusqlite_migration::Error> for Error {
    fn from(e: rusqlite_migration::Error) -> Self {
        Error::Migration(e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLite's `synchronous` setting for the writer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged event survives power loss. The default.
    #[default]
    Full,
    /// fsync at WAL checkpoints only: an acknowledged event survives a crash of the process but
    /// the last commits may be lost on power loss.
    Normal,
}

impl std::str::FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            other => Err(format!(
                "unknown synchronous mode `{other}` (expected `full` or `normal`)"
            )),
        }
    }
}

/// Called by the writer thread after every commit (metrics, waking the projector). Keep it cheap.
pub type CommitHook = Arc<dyn Fn(&CommitInfo) + Send + Sync>;

/// How to open a [`Store`].
#[derive(Clone)]
pub struct Options {
    /// Durability of a commit. Default [`Synchronous::Full`].
    pub synchronous: Synchronous,
    /// Jobs that may wait for the writer; past this, [`WriterHandle::try_submit`] answers
    /// [`Error::QueueFull`] and [`WriterHandle::append`] blocks. Default 1024.
    pub queue_capacity: usize,
    /// A group commit stops taking more jobs once it holds this many events. Default 16384.
    pub max_group_events: usize,
    /// Called after every commit.
    pub on_commit: Option<CommitHook>,
    /// The WAL's length, in pages, past which the writer starts it over between two groups
    /// (the `wal` module; decision 0018). Default [`WAL_RESET_PAGES`].
    pub wal_reset_pages: u64,
    /// Called after every attempt to start the WAL over.
    pub on_wal_reset: Option<WalResetHook>,
}

/// The default [`Options::wal_reset_pages`]: 32,768 pages, 128 MiB of WAL.
pub const WAL_RESET_PAGES: u64 = 32_768;

/// The database's page size, in bytes: SQLite's default, which journeyd never changes.
pub const PAGE_SIZE: u64 = 4096;

impl Default for Options {
    fn default() -> Self {
        Options {
            synchronous: Synchronous::Full,
            queue_capacity: 1024,
            max_group_events: 16_384,
            on_commit: None,
            wal_reset_pages: WAL_RESET_PAGES,
            on_wal_reset: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("synchronous", &self.synchronous)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_group_events", &self.max_group_events)
            .field("on_commit", &self.on_commit.is_some())
            .field("wal_reset_pages", &self.wal_reset_pages)
            .field("on_wal_reset", &self.on_wal_reset.is_some())
            .finish()
    }
}

/// An open database with its writer thread running.
pub struct Store {
    path: PathBuf,
    writer: writer::Writer,
    checkpointer: wal::Checkpointer,
}

/// Files journeyd creates hold payment and identity data: readable and writable by their owner
/// only, whatever the umask. On Unix, `mode` 0600; elsewhere the platform's default.
pub fn owner_only(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600)
    }
    #[cfg(not(unix))]
    {
        options
    }
}

/// The group and other permission bits of `path`'s mode, when it has any (Unix only).
pub fn open_to_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Makes the database file, owner-only, before SQLite does: SQLite creates a new database
/// readable by everyone the umask lets in, and gives its `-wal` and `-shm` files the mode of
/// the database. True when it made the file. Any failure (the file is there, a read-only file
/// system) is left for SQLite to say, which it says better.
fn create_owner_only(path: &Path) -> bool {
    owner_only(std::fs::OpenOptions::new().write(true).create_new(true))
        .open(path)
        .is_ok()
}

/// A database that was already there and is open to others gets one warning, naming the fix;
/// journeyd does not change the mode of a file it did not make.
fn warn_if_open_to_others(path: &Path) {
    if let Some(mode) = open_to_others(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "the database is readable by other users, and it holds payment and identity data: chmod 600 it and its -wal and -shm files"
        );
    }
}

impl Store {
    /// Opens (creating if needed, owner-only) the database at `path`, applies pending
    /// migrations in one transaction, and starts the writer thread.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        not_a_directory(&path)?;
        let created = create_owner_only(&path);
        let mut conn = Connection::open(&path)?;
        check_before_migrating(&conn, &path).map_err(|e| match e {
            Error::Sqlite(e) => not_sqlite(e, &path),
            e => e,
        })?;
        if !created {
            warn_if_open_to_others(&path);
        }
        configure_writer(&conn, options.synchronous, options.wal_reset_pages)?;
        let from: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        migrations().to_latest(&mut conn)?;
        if usize::try_from(from).is_ok_and(|from| from < SCHEMA_VERSION) {
            tracing::info!(from, to = SCHEMA_VERSION, path = %path.display(), "database schema migrated");
        }
        let wal = Arc::new(wal::Shared::default());
        let checkpointer = {
            let conn = Connection::open(&path)?;
            configure_common(&conn, READER_CACHE_KIB)?;
            wal::Checkpointer::start(conn, Arc::clone(&wal))?
        };
        let writer = writer::Writer::start(conn, &options, wal)?;
        Ok(Store {
            path,
            writer,
            checkpointer,
        })
    }

    /// Refuses, without changing the file, what [`Store::open`] would refuse before writing to
    /// it: a directory, a file that is not an SQLite database, another program's database, a
    /// newer journeyd's. A path with no file passes, and so does a file that cannot be read
    /// now ([`Store::open`] then says why). (Reading a database in WAL mode may create its
    /// `-shm` index beside it, as any reader does.) For a caller that makes files of its own
    /// beside the database first, as `serve` does its lock file.
    pub fn check(path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        not_a_directory(path)?;
        if !path.exists() {
            return Ok(());
        }
        let Ok(conn) = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) else {
            return Ok(());
        };
        match check_before_migrating(&conn, path) {
            Err(e @ (Error::NotJourneyd { .. } | Error::SchemaVersion { .. })) => Err(e),
            Err(Error::Sqlite(e))
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) =>
            {
                Err(Error::NotJourneyd {
                    path: path.to_path_buf(),
                    reason: "it is not an SQLite database".into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle to append through; clone it freely.
    pub fn writer(&self) -> WriterHandle {
        self.writer.handle()
    }

    /// A new read-only connection to this database.
    pub fn reader(&self) -> Result<Reader> {
        Reader::open(&self.path)
    }

    /// Stops the writer after it has committed everything already submitted, and waits for it.
    /// Handles still held elsewhere get [`Error::WriterStopped`] afterwards.
    pub fn close(mut self) {
        self.writer.stop();
        self.checkpointer.stop();
    }
}

fn configure_writer(conn: &Connection, sync: Synchronous, wal_reset_pages: u64) -> Result<()> {
    // journal_mode returns a row, so it is queried rather than executed.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode; readers will block the writer");
    }
    conn.pragma_update(
        None,
        "synchronous",
        if sync == Synchronous::Full {
            "FULL"
        } else {
            "NORMAL"
        },
    )?;
    // The writer starts the WAL over past `wal_reset_pages` (the `wal` module), in place of
    // SQLite's automatic checkpoint (its hook replaces it). A WAL that grew far past that while
    // a long reader held it (a backup) is cut back to twice the bound when it starts over.
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let limit = i64::try_from(wal_reset_pages)
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(2 * page_size);
    conn.pragma_update(None, "journal_size_limit", limit)?;
    // About 26 statements run in every busy second (appends, deliveries, counts, four for each
    // of the four snapshot tables, checkpoints); room for those and the rarer ones (quarantine,
    // rebuilds), so that none is evicted and parsed again.
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    configure_common(conn, WRITER_CACHE_KIB)
}

/// Prepared statements the writer connection keeps (rusqlite's default is 16).
const WRITER_STATEMENTS: usize = 48;

/// The writer's page cache. It lives as long as the process and keeps the indexes' hot pages:
/// the right edge of the log and identity index, the inner pages of the others. Larger buys no
/// throughput, measured (decision 0009): the rest comes from the OS page cache.
const WRITER_CACHE_KIB: i64 = 8 * 1024;
/// Every other connection's page cache. A reader's cache is emptied whenever another
/// connection has committed since its last read, which under ingest is every read; a big one
/// only costs memory (decision 0009).
const READER_CACHE_KIB: i64 = 2 * 1024;

/// How long any connection waits for a lock another holds before it answers busy.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn configure_common(conn: &Connection, cache_kib: i64) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // SQLite (3.53) plans `LIMIT ?N` with the value bound to it, and so compiles such a
    // statement again whenever that parameter is bound anew: the projector's batch read, every
    // page of a list, every replay. That cost about 150,000 instructions each time, more than
    // reading the batch itself. The query planner stability guarantee makes every plan
    // independent of bound values (there are no `ANALYZE` statistics for them to use anyway).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// SQLite's "file is not a database", said of the file by name.
fn not_sqlite(e: rusqlite::Error, path: &Path) -> Error {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
        Error::NotJourneyd {
            path: path.to_path_buf(),
            reason: "it is not an SQLite database".into(),
        }
    } else {
        Error::Sqlite(e)
    }
}

/// SQLite reports a directory given as the database as a "disk I/O error"; say what it is.
fn not_a_directory(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::NotJourneyd {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    Ok(())
}

/// Refuses, before anything is written to it (even the switch to WAL), a file this build must
/// not migrate: one written by a newer journeyd, or the SQLite database of another program,
/// which a mistyped `--db` would otherwise fill with journeyd's tables. A new or empty file has
/// no schema; a journeyd file at any earlier version has its `events` table.
fn check_before_migrating(conn: &Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let found = usize::try_from(found).unwrap_or(usize::MAX);
    let application: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if application != 0 && application != APPLICATION_ID {
        return Err(Error::NotJourneyd {
            path: path.to_path_buf(),
            reason: format!("it carries another application's id ({application:#010x})"),
        });
    }
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    if found >= APPLICATION_ID_SINCE && application != APPLICATION_ID {
        return Err(Error::NotJourneyd {
            path: path.to_path_buf(),
            reason: format!("its schema version is {found} but it lacks journeyd's application id"),
        });
    }
    let (objects, events): (i64, bool) = conn.query_row(
        "SELECT count(*), coalesce(max(type = 'table' AND name = 'events'), 0) FROM sqlite_master",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // journeyd's `events` has had these columns since migration 0001.
    let ours: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('events') WHERE name IN ('seq', 'event_id', 'source', 'kind', 'clock', 'payload')",
        [],
        |r| r.get(0),
    )?;
    let reason = match (found, objects, events) {
        (0, 0, _) => return Ok(()),
        (1.., _, true) if ours == 6 => return Ok(()),
        (0, n, _) => format!("it has {n} tables, indexes or views of its own"),
        (v, _, false) => format!("its schema version is {v} but it has no events table"),
        (v, _, true) => format!("its schema version is {v} but its events table is not journeyd's"),
    };
    Err(Error::NotJourneyd {
        path: path.to_path_buf(),
        reason,
    })
}

fn open_read_only(path: &Path) -> Result<Connection> {
    if !path.exists() {
        return Err(Error::Missing(path.to_path_buf()));
    }
    not_a_directory(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The header first, so that a file that is not SQLite is named as such.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| not_sqlite(e, path))?;
    configure_common(&conn, READER_CACHE_KIB)?;
    let found = usize::try_from(found).unwrap_or(0);
    if found != SCHEMA_VERSION {
        return Err(Error::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_with_a_bound_limit_is_compiled_once_whatever_is_bound() {
        let conn = Connection::open_in_memory().expect("open");
        configure_common(&conn, READER_CACHE_KIB).expect("configure");
        conn.execute_batch(
            "CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .expect("table");
        let mut stmt = conn
            .prepare("SELECT x FROM t WHERE x > ?1 ORDER BY x LIMIT ?2")
            .expect("prepare");
        for limit in [1_i64, 2, 3, 1] {
            let rows = stmt
                .query_map(rusqlite::params![0, limit], |r| r.get::<_, i64>(0))
                .expect("query")
                .count();
            assert_eq!(i64::try_from(rows), Ok(limit), "the limit applies");
        }
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "a new LIMIT value made SQLite compile the statement again"
        );
    }

    #[test]
    fn the_bundled_sqlite_has_no_process_wide_cache_or_malloc_mutex() {
        // `.cargo/config.toml` sets these through LIBSQLITE3_FLAGS (decision 0008). Without them
        // every connection of the daemon contends on one page-cache mutex.
        let conn = Connection::open_in_memory().expect("open");
        let mut stmt = conn.prepare("PRAGMA compile_options").expect("pragma");
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    /// A mistyped `--db` that names another program's SQLite file, or a file of a newer
    /// journeyd, or a directory, is refused before a byte of it changes (not even the switch to
    /// WAL); the refusals say what the file is, once.
    #[test]
    fn check_passes_a_new_path_and_a_journeyd_database_and_makes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = dir.path().join("new.db");
        Store::check(&new).expect("a new path passes");
        assert!(!new.exists(), "nothing made");
        let db = dir.path().join("j.db");
        Store::open(&db, Options::default()).expect("open").close();
        Store::check(&db).expect("a journeyd database passes");
        let text = dir.path().join("notes.db");
        std::fs::write(
            &text,
            "not a database, and longer than an SQLite header is: ".repeat(4),
        )
        .expect("write");
        let refused = Store::check(&text).expect_err("refused");
        assert!(
            refused.to_string().contains("it is not an SQLite database"),
            "{refused}"
        );
    }

    #[test]
    fn open_refuses_files_it_must_not_migrate_and_leaves_them_as_they_were() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file named `name`, made by `sql` as some program would.
        let made = |name: &str, sql: &str| {
            let path = dir.path().join(name);
            Connection::open(&path)
                .and_then(|c| c.execute_batch(sql))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            path
        };
        // Another program's database; a newer journeyd's; another program's `events` table in
        // a numbered schema; another application's id; a version-6 file without journeyd's id;
        // another program that numbers its schema.
        let foreign = made(
            "other.db",
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY); INSERT INTO accounts VALUES (1);",
        );
        let newer = made(
            "newer.db",
            "CREATE TABLE events (seq INTEGER PRIMARY KEY); PRAGMA user_version = 99;",
        );
        let lookalike = made(
            "lookalike.db",
            "CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT); PRAGMA user_version = 2;",
        );
        let claimed = made(
            "claimed.db",
            "CREATE TABLE events (x); PRAGMA user_version = 3; PRAGMA application_id = 7;",
        );
        let unmarked = made(
            "unmarked.db",
            "CREATE TABLE events (x); PRAGMA user_version = 6;",
        );
        let versioned = made(
            "versioned.db",
            "CREATE TABLE t (x); PRAGMA user_version = 2;",
        );
        for (path, expected) in [
            (&foreign, "is not a journeyd database: it has 1 tables"),
            (
                &newer,
                "the database schema is version 99, this journeyd uses version",
            ),
            (
                &versioned,
                "its schema version is 2 but it has no events table",
            ),
            (&claimed, "it carries another application's id (0x00000007)"),
            (
                &lookalike,
                "its schema version is 2 but its events table is not journeyd's",
            ),
            (
                &unmarked,
                "its schema version is 6 but it lacks journeyd's application id",
            ),
            (
                &dir.path().to_path_buf(),
                "is not a journeyd database: it is a directory",
            ),
        ] {
            let before = std::fs::read(path).ok();
            // `check` refuses it the same way, and makes nothing.
            let checked = Store::check(path).expect_err("refused by check");
            assert!(checked.to_string().contains(expected), "{checked}");
            assert_eq!(std::fs::read(path).ok(), before, "{}", path.display());
            let err = Store::open(path, Options::default())
                .err()
                .expect("refused");
            let shown = err.to_string();
            assert!(shown.contains(expected), "{shown}");
            assert!(
                std::error::Error::source(&err).is_none(),
                "said once: {shown}"
            );
            assert_eq!(std::fs::read(path).ok(), before, "{}", path.display());
            assert!(
                !path.with_extension("db-wal").exists(),
                "{}",
                path.display()
            );
        }
        let newer_hint = Store::open(&newer, Options::default())
            .err()
            .expect("refused");
        assert!(
            newer_hint
                .to_string()
                .contains("written by a newer journeyd"),
            "{newer_hint}"
        );
        // Not a database at all: said once, of the file by name.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![b'x'; 4096]).expect("write");
        let shown = Store::open(&junk, Options::default())
            .err()
            .expect("refused")
            .to_string();
        assert_eq!(
            shown.matches("not an SQLite database").count(),
            1,
            "{shown}"
        );
        assert!(shown.contains(&junk.display().to_string()), "{shown}");
        // An empty file, or none, is a new database.
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").expect("write");
        Store::open(&empty, Options::default())
            .expect("new")
            .close();
        let id: i64 = Connection::open(&empty)
            .and_then(|c| c.pragma_query_value(None, "application_id", |r| r.get(0)))
            .expect("read");
        assert_eq!(id, APPLICATION_ID, "a new database carries journeyd's id");
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().expect("migrations validate");
    }

    #[test]
    fn every_file_in_migrations_is_applied_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(
            files.len(),
            SCHEMA_VERSION,
            "a migration file is not in MIGRATION_LIST: {files:?}"
        );
        for (i, name) in files.iter().enumerate() {
            assert!(
                name.starts_with(&format!("{:04}_", i + 1)),
                "{name} is out of sequence"
            );
        }
    }

    /// Migration 0003 rebuilds the snapshot tables as rowid tables: a database of version 2
    /// keeps every snapshot, its checkpoints and its index names, and the projector's upserts
    /// work on the new tables.
    #[test]
    fn a_version_2_database_keeps_its_snapshots_through_migration_3() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.db");
        let mut conn = Connection::open(&path).expect("open");
        Migrations::from_slice(&MIGRATION_LIST[..2])
            .to_latest(&mut conn)
            .expect("version 2");
        let indexes = |conn: &Connection| -> Vec<String> {
            conn.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ('journeys', 'members', 'users', 'resources') ORDER BY name")
                .expect("prepare")
                .query_map([], |r| r.get(0))
                .expect("query")
                .collect::<rusqlite::Result<_>>()
                .expect("rows")
        };
        let before = indexes(&conn);
        conn.execute_batch(
            "INSERT INTO journeys VALUES ('J2', 'paid', '2', 'AX-2', 7, '{\"j\":2}', 3, 30, 300),
                                         ('J1', 'created', NULL, NULL, NULL, '{\"j\":1}', 1, 10, 100);
             INSERT INTO members VALUES ('M1', 'U1', 'CONNECTED', 5, '{\"m\":1}', 2, 20, 200);
             INSERT INTO users VALUES ('U1', 5, '{\"u\":1}', 4, 40, 400);
             INSERT INTO resources VALUES ('goal/G1', 'goal', 'G1', 'U1', 1, '{\"r\":1}', 1, 50, 500);
             UPDATE checkpoints SET seq = 50, version = 3, fingerprint = 'f', generation = 2;",
        )
        .expect("rows");
        drop(conn);

        Store::open(&path, Options::default())
            .expect("migrates")
            .close();
        let conn = Connection::open(&path).expect("open");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("pragma");
        assert_eq!(v, SCHEMA_VERSION as i64);
        // The same indexes, but the customer-reference one now carries the key.
        let widened = |sql: &String| {
            sql.replace(
                "(customer_reference)",
                "(customer_reference, correlation_id)",
            )
        };
        assert_eq!(
            indexes(&conn),
            before.iter().map(widened).collect::<Vec<_>>()
        );
        assert_ne!(indexes(&conn), before);
        for table in ["journeys", "members", "users", "resources"] {
            let sql: String = conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .expect("table");
            assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        }
        let reader = Reader::open(&path).expect("reader");
        let j = reader.snapshots(Projection::Journeys).expect("journeys");
        let keys: Vec<(&str, &str, i64, i64, i64)> = j
            .iter()
            .map(|s| {
                (
                    s.key.as_str(),
                    s.state.as_str(),
                    s.event_count,
                    s.last_seq,
                    s.updated_at,
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("J1", r#"{"j":1}"#, 1, 10, 100),
                ("J2", r#"{"j":2}"#, 3, 30, 300)
            ]
        );
        for (p, key, state) in [
            (Projection::Members, "M1", r#"{"m":1}"#),
            (Projection::Users, "U1", r#"{"u":1}"#),
            (Projection::Resources, "goal/G1", r#"{"r":1}"#),
        ] {
            let s = reader.snapshot(p, key).expect("read").expect("kept");
            assert_eq!(s.state, state);
        }
        let status: String = conn
            .query_row(
                "SELECT status FROM journeys WHERE customer_reference = 'AX-2'",
                [],
                |r| r.get(0),
            )
            .expect("indexed columns kept");
        assert_eq!(status, "paid");
        let checkpoints = reader.checkpoints().expect("checkpoints");
        assert!(
            checkpoints
                .iter()
                .all(|c| (c.seq, c.version, c.generation) == (50, 3, 2)),
            "{checkpoints:?}"
        );
        // The key is still unique: the projector's upserts depend on it.
        let dup = conn.execute(
            "INSERT INTO journeys VALUES ('J1', 'created', NULL, NULL, NULL, '{}', 1, 1, 1)",
            [],
        );
        assert!(dup.is_err());
        // Migration 0004 counted the snapshots it found.
        let counts = reader.projection_counts().expect("counts");
        assert_eq!(
            counts,
            ProjectionCounts {
                journeys_by_status: vec![("created".into(), 1), ("paid".into(), 1)],
                members: 1,
                users: 1,
                resources: 1,
            }
        );
    }

    /// Migration 0005 re-creates the counting triggers and recounts. A process older than 0004
    /// that rebuilt a table beside a migrated file left it without its triggers and with stale
    /// counts; the migration must neither fail on the missing triggers nor keep those counts.
    #[test]
    fn migration_5_opens_a_file_whose_counting_triggers_an_old_rebuild_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.db");
        let mut conn = Connection::open(&path).expect("open");
        Migrations::from_slice(&MIGRATION_LIST[..4])
            .to_latest(&mut conn)
            .expect("version 4");
        conn.execute_batch(
            "INSERT INTO journeys VALUES ('J1', 'created', NULL, NULL, NULL, '{}', 1, 10, 100);
             INSERT INTO users VALUES ('U1', 5, '{}', 1, 40, 400);
             -- What an old rebuild's swap left: the tables without their triggers.
             DROP TRIGGER journeys_counted_insert; DROP TRIGGER journeys_counted_status;
             DROP TRIGGER users_counted_insert;
             INSERT INTO journeys VALUES ('J2', 'paid', NULL, NULL, NULL, '{}', 1, 20, 200);
             UPDATE journeys SET status = 'opened' WHERE correlation_id = 'J1';
             INSERT INTO users VALUES ('U2', 5, '{}', 1, 50, 500);",
        )
        .expect("rows");
        drop(conn);

        Store::open(&path, Options::default())
            .expect("migrates")
            .close();
        let reader = Reader::open(&path).expect("reader");
        let expected = ProjectionCounts {
            journeys_by_status: vec![("opened".into(), 1), ("paid".into(), 1)],
            members: 0,
            users: 2,
            resources: 0,
        };
        assert_eq!(reader.projection_counts().expect("counts"), expected);
        // The triggers are back: a new row is counted.
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "INSERT INTO users VALUES ('U3', 5, '{}', 1, 60, 600);
             UPDATE journeys SET status = 'completed' WHERE correlation_id = 'J2';",
        )
        .expect("more rows");
        assert_eq!(
            reader.projection_counts().expect("counts"),
            ProjectionCounts {
                journeys_by_status: vec![("completed".into(), 1), ("opened".into(), 1)],
                users: 3,
                ..expected
            }
        );
    }

    #[test]
    fn opening_twice_migrates_once_and_sets_user_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.db");
        Store::open(&path, Options::default())
            .expect("first open")
            .close();
        Store::open(&path, Options::default())
            .expect("second open")
            .close();
        let conn = Connection::open(&path).expect("open");
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("pragma");
        assert_eq!(v, SCHEMA_VERSION as i64);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_reader_refuses_a_missing_file_or_another_schema_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.db");
        assert!(matches!(Reader::open(&path), Err(Error::Missing(_))));
        Connection::open(&path)
            .expect("create")
            .execute_batch("PRAGMA user_version = 99")
            .expect("set");
        let err = Reader::open(&path).err().expect("refused");
        assert!(err.to_string().contains("version 99"), "{err}");
    }

    #[test]
    fn the_log_refuses_update_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.db");
        Store::open(&path, Options::default())
            .expect("open")
            .close();
        let conn = Connection::open(&path).expect("open");
        conn.execute(
            "INSERT INTO events (event_id, source, kind, received_at, delivery_id, payload) VALUES (x'00', 'mx', 'unknown', 0, 1, '{}')",
            [],
        )
        .expect("insert is allowed");
        for sql in ["UPDATE events SET kind = 'job'", "DELETE FROM events"] {
            let err = conn.execute(sql, []).expect_err(sql);
            assert!(err.to_string().contains("append-only"), "{err}");
        }
    }
}
