//! The write-ahead log stays short while appends never stop (decision 0018): the writer starts
//! it over once it passes its bound, between two groups, and a reader that holds an old
//! snapshot delays that without stopping the writer. Sizes, not times: nothing here depends on
//! how fast the machine is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use events::{Event, Source, parse_delivery};
use store::{Body, Options, Reader, Store, Submission, Synchronous, WalReset};

/// The bound the tests set, in pages: small, so that a few hundred appends pass it many times.
const BOUND: u64 = 64;
/// A WAL frame: a page and its 24-byte header; the file has a 32-byte header of its own.
const FRAME: u64 = 4096 + 24;

fn wal_bytes(db: &Path) -> u64 {
    std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len())
}

/// A store with the small bound, and the resets it reports.
fn open(db: &Path) -> (Store, Arc<Mutex<Vec<WalReset>>>) {
    let resets: Arc<Mutex<Vec<WalReset>>> = Arc::default();
    let seen = Arc::clone(&resets);
    let store = Store::open(
        db,
        Options {
            synchronous: Synchronous::Normal,
            wal_reset_pages: BOUND,
            on_wal_reset: Some(Arc::new(move |r: &WalReset| {
                seen.lock().expect("resets").push(r.clone());
            })),
            ..Options::default()
        },
    )
    .expect("open");
    (store, resets)
}

/// Appender `a`'s `n`th event, of a journey of its own: every append touches new index pages.
fn event(a: usize, n: usize) -> Event {
    let body = format!(
        r#"{{"productId":"mobilejourneys","eventId":"sessioncreated","eventVersion":"1","data":{{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"journey-{a}-{n}","sessionId":"{n}"}}}}"#
    );
    parse_delivery(Source::MobileJourneys, body.as_bytes())
        .expect("valid")
        .remove(0)
}

fn append(store: &Store, a: usize, n: usize) {
    store
        .writer()
        .append(vec![Submission {
            source: Source::MobileJourneys,
            received_at: 1_000,
            request_id: None,
            size: 0,
            body: Body::Events(vec![event(a, n)]),
        }])
        .expect("append");
}

fn dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("journeyd.db");
    (dir, db)
}

/// Four appenders keep the writer's queue from ever running dry, so the WAL never starts over
/// by itself (SQLite needs a writer to begin with every page already copied), while a reader
/// reads the log again and again. Without the writer's reset the WAL holds every page written
/// (about 60 times the bound here); with it, the bound and the pages of a few groups.
#[test]
fn the_wal_stays_near_its_bound_while_appends_never_stop_and_readers_come_and_go() {
    let (_dir, db) = dir();
    let (store, resets) = open(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(0));
    let reader = {
        let (db, stop) = (db.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let reader = Reader::open(&db).expect("reader");
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                reader.events(0, 50).expect("read");
                reads += 1;
            }
            reads
        })
    };
    let watcher = {
        let (db, stop, largest) = (db.clone(), Arc::clone(&stop), Arc::clone(&largest));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                largest.fetch_max(wal_bytes(&db), Ordering::Relaxed);
                std::thread::yield_now();
            }
        })
    };
    std::thread::scope(|s| {
        for a in 0..4 {
            let store = &store;
            s.spawn(move || {
                for n in 0..400 {
                    append(store, a, n);
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    watcher.join().expect("watcher");
    let largest = largest.load(Ordering::Relaxed).max(wal_bytes(&db));
    let resets = resets.lock().expect("resets").clone();
    let done = resets.iter().filter(|r| r.done).count();
    assert!(reads > 0, "the reader never read");
    assert!(
        largest <= 32 + 8 * BOUND * FRAME,
        "the WAL reached {largest} bytes, {} pages, against a bound of {BOUND} pages; resets: {resets:?}",
        largest / FRAME
    );
    assert!(
        done >= 5,
        "the WAL was started over {done} times: {resets:?}"
    );
    store.close();
}

/// A reader that holds one snapshot (a backup, a long replay) keeps every page written after
/// it in the WAL: SQLite cannot start it over under the reader. The writer tries, waits a
/// moment, and goes on appending; once the reader is gone the WAL starts over, and the file
/// is cut back to twice the bound.
#[test]
fn a_reader_holding_a_snapshot_delays_the_reset_without_stopping_the_writer() {
    let (_dir, db) = dir();
    let (store, resets) = open(&db);
    append(&store, 0, 0);
    let held = rusqlite::Connection::open(&db).expect("connection");
    held.execute_batch("BEGIN").expect("begin");
    let before: i64 = held
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("read");
    for n in 1..600 {
        append(&store, 0, n);
    }
    let grown = wal_bytes(&db);
    {
        let resets = resets.lock().expect("resets");
        assert!(
            resets.iter().all(|r| !r.done),
            "no reset can complete under the reader: {resets:?}"
        );
        assert!(!resets.is_empty(), "the writer never tried");
        // One attempt each time another half bound has been written, not one per commit.
        let pages = grown / FRAME;
        assert!(
            (resets.len() as u64) <= 1 + 2 * pages / BOUND,
            "{} attempts for {pages} pages",
            resets.len()
        );
    }
    assert!(
        grown > 32 + 8 * BOUND * FRAME,
        "the reader's snapshot kept the WAL: {grown} bytes"
    );
    let still: i64 = held
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("read");
    assert_eq!(still, before, "the reader kept its snapshot throughout");
    held.execute_batch("COMMIT").expect("end the read");
    drop(held);
    for n in 600..640 {
        append(&store, 0, n);
    }
    assert!(
        resets.lock().expect("resets").iter().any(|r| r.done),
        "the WAL started over once the reader had gone"
    );
    assert!(
        wal_bytes(&db) <= 32 + 2 * BOUND * 4096 + 4 * BOUND * FRAME,
        "the file was cut back: {} bytes",
        wal_bytes(&db)
    );
    assert_eq!(
        Reader::open(&db)
            .expect("reader")
            .events(0, usize::MAX)
            .expect("events")
            .len(),
        640,
        "every append is in the log"
    );
    store.close();
}
