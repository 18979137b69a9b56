//! Keeping the write-ahead log short while appends never stop (decision 0018).
//!
//! SQLite writes every commit to the end of the WAL, and copies committed pages into the
//! database file at checkpoints ([`Checkpointer`], a thread off the commit path). It
//! starts the WAL over from its beginning only when a writer begins a transaction with every
//! frame already copied and no reader left on a snapshot inside the WAL. Under continuous
//! appends that moment never comes by itself: the writer begins its next group microseconds
//! after committing the last, long before anything can have copied that commit. So the WAL
//! grew to the writer's `wal_autocheckpoint` bound (400 MB), where the writer checkpointed
//! inside a commit, and commits stalled for as long as that took.
//!
//! Here the writer makes the moment itself:
//!
//! - SQLite tells the writer, after each commit, how many pages the WAL holds
//!   (`sqlite3_wal_hook`, which also turns SQLite's own in-commit checkpoint off).
//! - The checkpoint thread copies pages ten times a second, as before.
//! - Past [`Options::wal_reset_pages`], between two groups (the last one already
//!   acknowledged), once the checkpoint thread is between passes and has left at most a quarter
//!   of the bound uncopied, the writer runs `wal_checkpoint(RESTART)`: it copies that rest,
//!   waits at most [`RESET_WAIT`] for readers still on older snapshots, and the WAL starts over
//!   at the writer's next commit. The writer is held up for that copy and one fsync of the
//!   database file. Should that moment not come before one and a half times the bound (a disk
//!   slower than the appends), the writer resets then, whatever is left to copy.
//! - A reader that holds a snapshot longer than [`RESET_WAIT`] (a backup, a long replay) makes
//!   the attempt give up and let the writer go on; the next comes after another half bound has
//!   been written, so a long reader costs the writer one short wait per half bound, not one per
//!   commit. The WAL grows meanwhile, as it must: SQLite cannot overwrite pages a reader may
//!   still need.
//!
//! Copying pass after pass near the bound, to leave the writer less, was tried and measured:
//! each pass ends with an fsync of the database file, and the appends lost a fifth of their
//! throughput to them (decision 0018).
//!
//! [`Options::wal_reset_pages`]: crate::Options::wal_reset_pages

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use crate::{Error, Result};

/// How long a reset waits for readers on older snapshots before it gives up and lets the
/// writer go on.
pub const RESET_WAIT: Duration = Duration::from_millis(20);

/// How often the checkpoint thread copies.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// What one reset attempt did; handed to [`crate::Options::on_wal_reset`].
#[derive(Debug, Clone)]
pub struct WalReset {
    /// Pages in the WAL when the writer tried.
    pub pages: u64,
    /// Of those, pages the checkpoint thread had not copied yet: the writer copied them.
    pub uncopied: u64,
    /// Whether every page was copied and no reader was left in the WAL: it starts over at the
    /// next commit. False when a reader held an older snapshot for longer than [`RESET_WAIT`].
    pub done: bool,
    /// How long the writer was held up.
    pub duration: Duration,
}

/// Called by the writer thread after every reset attempt. Keep it cheap.
pub type WalResetHook = Arc<dyn Fn(&WalReset) + Send + Sync>;

/// What the writer and the checkpoint thread tell each other.
#[derive(Default)]
pub(crate) struct Shared {
    /// The WAL's length as of the checkpoint thread's last pass, and how much of it was copied
    /// into the database file.
    passed: AtomicU64,
    copied: AtomicU64,
    /// Held by the checkpoint thread through each pass, and by the writer through a reset: the
    /// writer resets between two passes, and no pass starts under the reset.
    pass: Mutex<()>,
}

impl Shared {
    /// Pages the last pass left uncopied of a WAL of `pages`. A pass of an earlier WAL (before
    /// it started over) says nothing of this one: then every page counts.
    fn uncopied(&self, pages: u64) -> u64 {
        let copied = self.copied.load(Ordering::Acquire);
        let passed = self.passed.load(Ordering::Acquire);
        if passed > pages || copied > passed {
            pages
        } else {
            pages - copied
        }
    }
}

thread_local! {
    /// Pages in the WAL after the last commit on this thread's connection. The writer is one
    /// thread with one connection, and `sqlite3_wal_hook` takes a plain function.
    static WAL_PAGES: Cell<u64> = const { Cell::new(0) };
}

fn note_pages(_: &Wal, pages: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(u64::try_from(pages).unwrap_or(0)));
    Ok(())
}

/// Pages in the WAL after the last commit of the writer, on the writer's thread.
pub(crate) fn pages_after_last_commit() -> u64 {
    WAL_PAGES.with(Cell::get)
}

/// The writer thread's side: knows the WAL's length after each commit and starts it over when
/// it has grown past the bound.
pub(crate) struct Resetter {
    shared: Arc<Shared>,
    bound: u64,
    /// The WAL length at which to try next: the bound, or further after a failed attempt.
    next_attempt: u64,
    hook: Option<WalResetHook>,
}

impl Resetter {
    /// Installs the commit hook on the writer's connection. It replaces SQLite's automatic
    /// checkpoint, which would otherwise copy pages inside a commit.
    pub(crate) fn install(
        conn: &Connection,
        shared: Arc<Shared>,
        bound: u64,
        hook: Option<WalResetHook>,
    ) -> Resetter {
        conn.wal_hook(Some(note_pages));
        let bound = bound.max(2);
        Resetter {
            shared,
            bound,
            next_attempt: bound,
            hook,
        }
    }

    /// Called between groups, after a group's answers have gone out.
    pub(crate) fn after_commit(&mut self, conn: &Connection, busy_timeout: Duration) {
        let pages = pages_after_last_commit();
        if pages < self.bound {
            // The WAL started over (this writer's reset, or an idle moment's): back to the
            // plain bound.
            self.next_attempt = self.bound;
            return;
        }
        if pages < self.next_attempt {
            return;
        }
        let hard = pages >= self.bound + self.bound / 2;
        let started = Instant::now();
        // Between two passes of the checkpoint thread, or at one and a half times the bound
        // after the pass under way.
        let pass = match self.shared.pass.try_lock() {
            Ok(pass) => pass,
            Err(TryLockError::WouldBlock) if !hard => return,
            Err(_) => self
                .shared
                .pass
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        };
        let uncopied = self.shared.uncopied(pages);
        if uncopied > self.bound / 4 && !hard {
            return;
        }
        let done = match restart(conn, busy_timeout) {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "could not reset the WAL; will retry");
                false
            }
        };
        if done {
            // The next commit starts the WAL over: what the last pass found is of the old one,
            // and so is the length the hook gave (a group that commits nothing leaves it).
            self.shared.passed.store(0, Ordering::Release);
            self.shared.copied.store(0, Ordering::Release);
            WAL_PAGES.with(|p| p.set(0));
        }
        drop(pass);
        let duration = started.elapsed();
        tracing::debug!(
            pages,
            uncopied,
            done,
            ms = duration.as_secs_f64() * 1000.0,
            "WAL reset"
        );
        self.next_attempt = if done {
            self.bound
        } else {
            tracing::debug!(pages, "a reader held the WAL; its reset waits");
            pages + self.bound / 2
        };
        if let Some(hook) = &self.hook {
            hook(&WalReset {
                pages,
                uncopied,
                done,
                duration,
            });
        }
    }
}

thread_local! {
    /// When the reset under way on this thread began, for [`briefly`] to bound its wait in
    /// time rather than in sleeps (a sleep may take longer than asked on a busy machine).
    static RESET_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// `wal_checkpoint(RESTART)` with a short busy wait; true when it completed.
fn restart(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<bool> {
    RESET_STARTED.with(|s| s.set(Some(Instant::now())));
    conn.busy_handler(Some(briefly))?;
    let busy = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
    // Back to the usual wait, which replaces `briefly`.
    conn.busy_timeout(busy_timeout)?;
    Ok(busy? == 0)
}

/// The reset's busy handler: waits for readers in steps of [`RESET_STEP`] until
/// [`RESET_WAIT`] has passed since the reset began. SQLite's own steps grow to milliseconds,
/// longer than most reads.
fn briefly(_attempts: i32) -> bool {
    let waited = RESET_STARTED.with(|s| s.get().map_or(RESET_WAIT, |t| t.elapsed()));
    if waited >= RESET_WAIT {
        return false;
    }
    std::thread::sleep(RESET_STEP.min(RESET_WAIT - waited));
    true
}

/// How often a reset looks again whether the readers in its way have finished.
const RESET_STEP: Duration = Duration::from_micros(100);

/// Copies committed pages from the WAL into the database file, on its own thread and
/// connection, so that the writer's commits never do (decision 0007), and the writer's resets
/// find little left to copy.
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection, shared: Arc<Shared>) -> Result<Checkpointer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let mine = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("journeyd-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    // Woken early by `stop`, so closing a store never waits out the interval.
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    // PASSIVE: copies what it can without waiting for readers or the writer.
                    // The pass and what it found are one step under the lock, so that a
                    // reset never reads the figures of a pass of the WAL it started over.
                    let _pass = mine.pass.lock();
                    let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    });
                    let (log, copied) = match pass {
                        Ok((log, copied)) => (
                            u64::try_from(log).unwrap_or(0),
                            u64::try_from(copied).unwrap_or(0),
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "checkpoint failed; will retry");
                            continue;
                        }
                    };
                    tracing::trace!(log, copied, "checkpoint pass");
                    mine.passed.store(log, Ordering::Release);
                    mine.copied.store(copied, Ordering::Release);
                }
            })
            .map_err(|e| Error::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && {
                t.thread().unpark();
                t.join().is_err()
            }
        {
            tracing::error!("the checkpoint thread panicked");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
