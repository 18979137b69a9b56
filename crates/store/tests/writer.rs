//! The writer's contract: acknowledged means committed, failure leaves no trace, duplicates are
//! answered per event, and concurrent appenders each get the right answer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use events::{Event, EventId, Source, parse_delivery};
use proptest::prelude::*;
use rusqlite::Connection;
use store::{
    Appended, Body, Options, Quarantined, Reader, Store, StreamKey, Submission, Synchronous,
};

struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journeyd.db");
    Db { _dir: dir, path }
}

fn open(db: &Db) -> Store {
    Store::open(
        &db.path,
        Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )
    .expect("open")
}

/// A Mobile Journeys session event; `n` makes it distinct, `journey` picks the stream.
fn event(journey: &str, n: u32) -> Event {
    let body = format!(
        r#"{{"productId":"mobilejourneys","eventId":"sessioncreated","eventVersion":"1","data":{{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"{journey}","sessionId":"{n}"}}}}"#
    );
    parse_delivery(Source::MobileJourneys, body.as_bytes())
        .expect("valid")
        .remove(0)
}

fn submission(events: Vec<Event>) -> Submission {
    Submission {
        source: Source::MobileJourneys,
        received_at: 1_000,
        request_id: None,
        size: 0,
        body: Body::Events(events),
    }
}

fn log(path: &std::path::Path) -> Vec<(i64, EventId)> {
    Reader::open(path)
        .expect("reader")
        .events(0, usize::MAX)
        .expect("events")
        .into_iter()
        .map(|r| (r.seq, r.event_id))
        .collect()
}

fn block_writes(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).expect("open");
    c.execute_batch("BEGIN IMMEDIATE").expect("lock");
    c
}

#[test]
fn an_append_is_answered_only_after_its_commit_is_visible_to_other_connections() {
    let db = db();
    let store = open(&db);
    let (tx, rx) = mpsc::channel();
    let path = db.path.clone();
    let e = event("J", 1);
    let probe = e.clone();
    store
        .writer()
        .try_submit(vec![submission(vec![e])], move |r| {
            // Runs on the writer thread at acknowledgement time: another connection must
            // already see the event.
            let seen = Reader::open(&path)
                .expect("reader")
                .seq_of(&probe)
                .expect("query");
            tx.send((r.expect("appended")[0].events.clone(), seen))
                .expect("send");
        })
        .expect("queued");
    let (answer, seen) = rx.recv_timeout(Duration::from_secs(10)).expect("answered");
    assert_eq!(answer, vec![Appended::New(1)]);
    assert_eq!(seen, Some(1), "acknowledged before it was visible");
}

#[test]
fn a_redelivery_is_acknowledged_as_duplicate_and_changes_nothing() {
    let db = db();
    let store = open(&db);
    let w = store.writer();
    let batch = vec![event("J", 1), event("J", 2), event("J", 1)];
    let first = w.append(vec![submission(batch.clone())]).expect("first");
    assert_eq!(
        first[0].events,
        vec![Appended::New(1), Appended::New(2), Appended::Duplicate]
    );
    let before = log(&db.path);
    let stats_before = store.reader().expect("reader").stats().expect("stats");
    let again = w.append(vec![submission(batch)]).expect("again");
    assert_eq!(again[0].events, vec![Appended::Duplicate; 3]);
    assert_eq!(log(&db.path), before);
    let stats = store.reader().expect("reader").stats().expect("stats");
    assert_eq!(
        (stats.events, stats.log_head),
        (stats_before.events, stats_before.log_head)
    );
    assert_eq!(
        stats.deliveries, 2,
        "each request is recorded, duplicate or not"
    );
}

/// Makes any insert of an event whose payload contains `boom` fail, as a disk error would.
fn install_failure(path: &std::path::Path) {
    Connection::open(path)
        .expect("open")
        .execute_batch(
            "CREATE TRIGGER inject_failure BEFORE INSERT ON events WHEN NEW.payload LIKE '%boom%'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .expect("trigger");
}

#[test]
fn a_failed_transaction_acknowledges_nothing_and_leaves_the_log_unchanged() {
    let db = db();
    let store = open(&db);
    let w = store.writer();
    w.append(vec![submission(vec![event("J", 1)])])
        .expect("seed");
    install_failure(&db.path);
    let before = log(&db.path);
    let stats_before = store.reader().expect("reader").stats().expect("stats");

    // One job: a good submission and one whose second event fails. The job is atomic.
    let err = w
        .append(vec![
            submission(vec![event("J", 2)]),
            submission(vec![event("J", 3), event("boom", 4)]),
        ])
        .expect_err("must fail");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(log(&db.path), before);
    assert_eq!(
        store.reader().expect("reader").stats().expect("stats"),
        stats_before,
        "counts and deliveries unchanged"
    );

    // The writer is still healthy.
    assert_eq!(
        w.append(vec![submission(vec![event("J", 2)])])
            .expect("after")[0]
            .events,
        vec![Appended::New(2)]
    );
}

#[test]
fn a_failing_job_does_not_fail_the_jobs_committed_beside_it() {
    let db = db();
    let store = open(&db);
    install_failure(&db.path);
    let w = store.writer();
    // Hold the write lock so the jobs below queue up and are taken as one group.
    let lock = block_writes(&db.path);
    let (tx, rx) = mpsc::channel();
    for (name, events) in [
        ("warm-up", vec![event("J", 0)]),
        ("good", vec![event("J", 1)]),
        ("bad", vec![event("boom", 2)]),
        ("good2", vec![event("J", 3)]),
    ] {
        let tx = tx.clone();
        w.try_submit(vec![submission(events)], move |r| {
            tx.send((name, r.map(|r| r[0].new_count()))).expect("send")
        })
        .expect("queued");
    }
    std::thread::sleep(Duration::from_millis(100));
    lock.execute_batch("ROLLBACK").expect("unlock");
    let mut answers: HashMap<&str, Result<usize, String>> = HashMap::new();
    for _ in 0..4 {
        let (name, r) = rx.recv_timeout(Duration::from_secs(10)).expect("answered");
        answers.insert(name, r.map_err(|e| e.to_string()));
    }
    assert_eq!(answers["warm-up"], Ok(1));
    assert_eq!(answers["good"], Ok(1));
    assert_eq!(answers["good2"], Ok(1));
    assert!(
        answers["bad"]
            .as_ref()
            .is_err_and(|e| e.contains("injected")),
        "{:?}",
        answers["bad"]
    );
    assert_eq!(log(&db.path).len(), 3);
}

#[test]
fn concurrent_appenders_each_get_the_right_new_or_duplicate_answer() {
    let db = db();
    let store = open(&db);
    let threads = 16;
    let per_thread = 200;
    // Every thread sends events 0..per_thread of 4 shared journeys plus its own.
    let new_by_id: Arc<Mutex<HashMap<EventId, usize>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..threads {
            let w = store.writer();
            let new_by_id = Arc::clone(&new_by_id);
            let answered = Arc::clone(&answered);
            s.spawn(move || {
                for i in 0..per_thread {
                    let shared = event(&format!("shared-{}", i % 4), i);
                    let own = event(&format!("own-{t}"), i);
                    let ids = [shared.id, own.id];
                    let receipts = w
                        .append(vec![submission(vec![shared, own])])
                        .expect("append");
                    let mut map = new_by_id.lock().expect("lock");
                    for (id, a) in ids.iter().zip(&receipts[0].events) {
                        if let Appended::New(_) = a {
                            *map.entry(*id).or_default() += 1;
                        }
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(
        answered.load(Ordering::Relaxed),
        threads * per_thread as usize
    );
    let map = new_by_id.lock().expect("lock");
    let stored: HashSet<EventId> = log(&db.path).into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        stored.len(),
        per_thread as usize + threads * per_thread as usize
    );
    assert!(
        map.values().all(|&n| n == 1),
        "some event was answered New more than once"
    );
    assert_eq!(
        map.keys().copied().collect::<HashSet<_>>(),
        stored,
        "every stored event was answered New exactly once"
    );
}

#[test]
fn quarantined_bodies_are_kept_whole_and_a_replay_moves_them_into_the_log_atomically() {
    let db = db();
    let store = open(&db);
    let w = store.writer();
    let bytes = b"[{\"not\": json".to_vec();
    let q = Submission {
        source: Source::Mx,
        received_at: 5,
        request_id: Some("req-1".into()),
        size: bytes.len(),
        body: Body::Quarantine(Quarantined {
            reason: "not JSON".into(),
            headers: "{}".into(),
            bytes: bytes.clone(),
        }),
    };
    let receipt = w.append(vec![q.clone()]).expect("quarantined").remove(0);
    let qid = receipt.quarantine_id.expect("has an id");
    // A redelivery of the same bytes is counted on the same entry, not stored again.
    let again = w
        .append(vec![Submission {
            received_at: 7,
            ..q.clone()
        }])
        .expect("again")
        .remove(0);
    assert_eq!(again.quarantine_id, Some(qid));
    // The same bytes from the other source are another entry.
    let other = w
        .append(vec![Submission {
            source: Source::MobileJourneys,
            ..q
        }])
        .expect("other")
        .remove(0);
    assert_ne!(other.quarantine_id, Some(qid));
    let reader = store.reader().expect("reader");
    let bodies = reader.quarantined_bodies(0, 10).expect("bodies");
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0].body, bytes, "the exact bytes");
    let list = reader.quarantine().expect("list");
    let first = &list[0];
    assert_eq!(
        (
            first.size,
            first.times_received,
            first.received_at,
            first.last_received_at
        ),
        (bytes.len() as i64, 2, 5, 7)
    );
    assert_eq!(reader.stats().expect("stats").quarantined, 2);

    let replay = Submission {
        source: Source::Mx,
        received_at: 6,
        request_id: Some(format!("replay:{qid}")),
        size: bytes.len(),
        body: Body::Replay {
            quarantine_id: qid,
            events: vec![event("J", 9)],
        },
    };
    assert_eq!(
        w.append(vec![replay]).expect("replayed")[0].events,
        vec![Appended::New(1)]
    );
    let stats = reader.stats().expect("stats");
    assert_eq!(
        (stats.quarantined, stats.events),
        (1, 1),
        "only the replayed entry left quarantine"
    );
    assert!(
        reader
            .quarantine()
            .expect("list")
            .iter()
            .all(|e| e.id != qid)
    );
}

#[test]
fn readers_select_by_seq_range_and_by_stream_key() {
    let db = db();
    let store = open(&db);
    let w = store.writer();
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(event(if i % 2 == 0 { "even" } else { "odd" }, i));
    }
    w.append(vec![submission(all.clone())]).expect("append");
    let r = store.reader().expect("reader");
    let page: Vec<i64> = r
        .events(3, 4)
        .expect("page")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, [4, 5, 6, 7]);
    let odd = r
        .events_by_key(StreamKey::Journey("odd"), 0, 100)
        .expect("odd");
    assert_eq!(
        odd.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10]
    );
    assert_eq!(odd[0].payload, all[1].payload, "exact bytes back");
    assert_eq!(odd[0].event_id, all[1].id);
    assert_eq!(
        r.events_by_key(StreamKey::Journey("odd"), 6, 1)
            .expect("after")
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [8]
    );
    assert!(
        r.events_by_key(StreamKey::Member("odd"), 0, 100)
            .expect("none")
            .is_empty()
    );
}

#[test]
fn the_commit_hook_sees_every_commit_and_the_head() {
    let db = db();
    let seen: Arc<Mutex<Vec<(i64, usize, usize)>>> = Arc::default();
    let hook_seen = Arc::clone(&seen);
    let store = Store::open(
        &db.path,
        Options {
            on_commit: Some(Arc::new(move |c| {
                hook_seen
                    .lock()
                    .expect("lock")
                    .push((c.head, c.events_new, c.appends))
            })),
            ..Options::default()
        },
    )
    .expect("open");
    let w = store.writer();
    w.append(vec![submission(vec![event("J", 1), event("J", 2)])])
        .expect("1");
    w.append(vec![submission(vec![event("J", 2)])]).expect("2");
    w.append(Vec::new()).expect("a flush");
    // A projector batch appends nothing: `appends` 0, so it is timed as derived.
    w.project(store::ProjectBatch::default()).expect("project");
    store.close();
    assert_eq!(
        *seen.lock().expect("lock"),
        [(2, 2, 1), (2, 0, 1), (2, 0, 1), (2, 0, 0)]
    );
}

#[test]
fn closing_commits_what_was_queued_and_later_appends_are_refused() {
    let db = db();
    let store = open(&db);
    let w = store.writer();
    let lock = block_writes(&db.path);
    let (tx, rx) = mpsc::channel();
    for i in 0..20 {
        let tx = tx.clone();
        w.try_submit(vec![submission(vec![event("J", i)])], move |r| {
            tx.send(r.is_ok()).expect("send")
        })
        .expect("queued");
    }
    let closer = std::thread::spawn(move || store.close());
    std::thread::sleep(Duration::from_millis(50));
    lock.execute_batch("ROLLBACK").expect("unlock");
    closer.join().expect("closed");
    assert_eq!(rx.try_iter().filter(|ok| *ok).count(), 20);
    assert_eq!(log(&db.path).len(), 20);
    assert!(matches!(
        w.append(vec![submission(vec![event("J", 99)])]),
        Err(store::Error::WriterStopped)
    ));
}

#[test]
fn every_accepted_submission_is_answered_exactly_once_even_while_the_store_closes() {
    for round in 0..5 {
        let db = db();
        let store = open(&db);
        let w = store.writer();
        let answers = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let (w, answers, accepted, stop) = (
                w.clone(),
                Arc::clone(&answers),
                Arc::clone(&accepted),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let answers = Arc::clone(&answers);
                    let sent = w.submit(vec![submission(vec![event("J", n)])], move |_| {
                        answers.fetch_add(1, Ordering::SeqCst);
                    });
                    match sent {
                        Ok(()) => accepted.fetch_add(1, Ordering::SeqCst),
                        Err(_) => break, // refused by return value: no reply expected
                    };
                    n += 1;
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20 + round * 7));
        store.close();
        stop.store(true, Ordering::Relaxed);
        sender.join().expect("sender");
        // Replies run on the writer thread or in a dropped job's Drop; give stragglers a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while answers.load(Ordering::SeqCst) < accepted.load(Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(accepted.load(Ordering::SeqCst) > 0);
        assert_eq!(
            answers.load(Ordering::SeqCst),
            accepted.load(Ordering::SeqCst),
            "round {round}: an accepted job was never answered"
        );
    }
}

fn journey_row(key: &str, state: &str, seq: i64) -> store::SnapshotRow {
    store::SnapshotRow {
        key: key.into(),
        columns: store::Columns::Journey {
            status: "created".into(),
            journey_id: None,
            customer_reference: None,
            last_activity: None,
        },
        state: state.into(),
        event_count: 1,
        last_seq: seq,
        updated_at: 0,
    }
}

#[test]
fn a_projection_batch_computed_against_a_moved_checkpoint_is_refused_whole() {
    use store::{Expect, ProjectBatch, Projection};
    let db = db();
    let store = open(&db);
    let w = store.writer();
    let reader = store.reader().expect("reader");
    let cp = |r: &Reader| {
        r.checkpoints()
            .expect("checkpoints")
            .into_iter()
            .find(|c| c.projection == Projection::Journeys)
            .expect("row")
    };
    let start = cp(&reader);
    let batch = |state: &str, from: i64, to: i64| ProjectBatch {
        expect: vec![Expect {
            projection: Projection::Journeys,
            generation: start.generation,
            seq: from,
        }],
        rows: vec![(Projection::Journeys, journey_row("J", state, to))],
        checkpoints: vec![(Projection::Journeys, to)],
    };
    // Projector B commits first, from the stored checkpoint to 10.
    w.project(batch("newer", start.seq, 10)).expect("B commits");
    // Projector A computed against the same old checkpoint: refused, nothing written.
    let err = w
        .project(batch("older", start.seq, 5))
        .expect_err("A is stale");
    assert!(
        matches!(
            err,
            store::Error::Stale {
                projection: Projection::Journeys
            }
        ),
        "{err}"
    );
    assert_eq!(
        reader
            .snapshot(Projection::Journeys, "J")
            .expect("read")
            .expect("row")
            .state,
        "newer"
    );
    assert_eq!(cp(&reader).seq, 10);
    // A rebuild swap moves the generation: a batch against the old generation is refused too.
    let ticket = w.rebuild_begin(Projection::Journeys).expect("begin");
    w.rebuild_rows(&ticket, vec![journey_row("J", "rebuilt", 10)])
        .expect("rows");
    w.rebuild_swap(&ticket, 10, 1, "").expect("swap");
    let after = cp(&reader);
    assert_eq!(
        (after.generation, after.seq, after.version),
        (start.generation + 1, 10, 1)
    );
    let stale = ProjectBatch {
        expect: vec![Expect {
            projection: Projection::Journeys,
            generation: start.generation,
            seq: 10,
        }],
        ..batch("older", 10, 11)
    };
    assert!(matches!(w.project(stale), Err(store::Error::Stale { .. })));
    assert_eq!(
        reader
            .snapshot(Projection::Journeys, "J")
            .expect("read")
            .expect("row")
            .state,
        "rebuilt"
    );
}

/// The keys of the journeys table, in key order.
fn journey_keys(reader: &Reader) -> Vec<String> {
    reader
        .snapshots(store::Projection::Journeys)
        .expect("rows")
        .into_iter()
        .map(|s| s.key)
        .collect()
}

#[test]
fn of_two_interleaved_rebuilds_the_first_to_swap_wins_whole_and_the_other_is_refused() {
    use store::Projection;
    let db = db();
    let store = open(&db);
    let w = store.writer();
    let reader = store.reader().expect("reader");
    let a = w.rebuild_begin(Projection::Journeys).expect("begin a");
    w.rebuild_rows(
        &a,
        vec![journey_row("A1", "a", 1), journey_row("A2", "a", 2)],
    )
    .expect("rows a");
    let b = w.rebuild_begin(Projection::Journeys).expect("begin b");
    w.rebuild_rows(&a, vec![journey_row("A3", "a", 3)])
        .expect("more rows a: B's begin did not touch A's table");
    w.rebuild_rows(&b, vec![journey_row("B1", "b", 1)])
        .expect("rows b");
    w.rebuild_swap(&a, 3, 1, "").expect("a swaps first");
    let keys = journey_keys(&reader);
    assert_eq!(keys, ["A1", "A2", "A3"], "all of A's rows, none lost to B");
    // A's swap dropped B's table; B's next rows are told why, not "no such table".
    assert!(
        matches!(
            w.rebuild_rows(&b, vec![journey_row("B2", "b", 2)]),
            Err(store::Error::Stale { .. })
        ),
        "B's rows after A's swap"
    );
    assert!(
        matches!(
            w.rebuild_swap(&b, 1, 1, ""),
            Err(store::Error::Stale { .. })
        ),
        "B lost the race"
    );
    let keys = journey_keys(&reader);
    assert_eq!(keys, ["A1", "A2", "A3"], "B's refused swap changed nothing");
    // No rebuild table is left behind.
    let conn = rusqlite::Connection::open(&db.path).expect("open");
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'journeys_next%'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(left, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any sequence of batches with repeats: the log holds each distinct event once, in the
    /// order first seen, every answer is right, and the counts agree with the log.
    #[test]
    fn the_log_is_the_set_of_distinct_events_in_first_arrival_order(
        batches in prop::collection::vec(prop::collection::vec((0u32..3, 0u32..12), 0..6), 1..8)
    ) {
        let db = db();
        let store = open(&db);
        let w = store.writer();
        let mut first_seen: Vec<EventId> = Vec::new();
        for batch in &batches {
            let evs: Vec<Event> = batch.iter().map(|&(j, n)| event(&format!("j{j}"), n)).collect();
            let ids: Vec<EventId> = evs.iter().map(|e| e.id).collect();
            let receipt = w.append(vec![submission(evs)]).expect("append").remove(0);
            for (id, a) in ids.iter().zip(&receipt.events) {
                let expected_new = !first_seen.contains(id);
                prop_assert_eq!(matches!(a, Appended::New(_)), expected_new);
                if expected_new {
                    first_seen.push(*id);
                    prop_assert_eq!(*a, Appended::New(first_seen.len() as i64));
                }
            }
        }
        let stored: Vec<EventId> = log(&db.path).into_iter().map(|(_, id)| id).collect();
        prop_assert_eq!(&stored, &first_seen);
        let stats = store.reader().expect("reader").stats().expect("stats");
        prop_assert_eq!(stats.events, first_seen.len() as i64);
        prop_assert_eq!(stats.deliveries, batches.len() as i64);
    }
}

/// `Reader::consistent` reads one snapshot: a commit made meanwhile shows only after it, and
/// `stats` inside it shares that snapshot.
#[test]
fn a_consistent_read_sees_one_snapshot() {
    let db = db();
    let store = open(&db);
    let w = store.writer();
    w.append(vec![submission(vec![event("J", 1)])]).expect("1");
    let reader = store.reader().expect("reader");
    let (before, during, stats) = reader
        .consistent(|r| {
            let before = r.head()?;
            w.append(vec![submission(vec![event("J", 2)])]).expect("2");
            Ok((before, r.head()?, r.stats()?))
        })
        .expect("read");
    assert_eq!((before, during, stats.log_head, stats.events), (1, 1, 1, 1));
    assert_eq!(reader.head().expect("head"), 2, "after it, the new commit");
    store.close();
}

/// A backup taken while a writer appends is the log as of one commit: a gap-free prefix of the
/// log, with counts that agree with it, and it opens as a journeyd database. It never
/// overwrites a file.
#[test]
fn a_backup_during_appends_is_the_database_as_of_one_commit() {
    let db = db();
    let store = open(&db);
    let w = store.writer();
    w.append(vec![submission(vec![event("J0", 0)])])
        .expect("first");
    let appending = std::sync::atomic::AtomicBool::new(true);
    let dest = db.path.with_file_name("backup.db");
    let backup = std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 1;
            while appending.load(Ordering::SeqCst) || n < 50 {
                let batch = (0..20)
                    .map(|i| event(&format!("J{}", n % 7), n * 20 + i))
                    .collect();
                w.append(vec![submission(batch)]).expect("append");
                n += 1;
            }
        });
        // Back up once some appends have gone in, while others go on.
        while log(&db.path).len() < 200 {
            std::thread::yield_now();
        }
        let backup = store.reader().and_then(|r| r.backup_into(&dest));
        appending.store(false, Ordering::SeqCst);
        backup
    });
    backup.expect("backup");
    let original = log(&db.path);
    let copy = log(&dest);
    assert!(
        copy.len() >= 200 && copy.len() < original.len(),
        "{} of {}",
        copy.len(),
        original.len()
    );
    assert_eq!(copy[..], original[..copy.len()], "a prefix of the log");
    assert_eq!(copy.len() % 20, 1, "whole commits only");
    let stats = Reader::open(&dest).expect("copy").stats().expect("stats");
    assert_eq!(
        (stats.events, stats.log_head),
        (copy.len() as i64, copy.len() as i64)
    );
    assert!(!dest.with_file_name("backup.db-wal").exists(), "one file");

    let before = std::fs::read(&dest).expect("read");
    let again = store.reader().expect("reader").backup_into(&dest);
    assert!(
        matches!(&again, Err(store::Error::Backup { reason, .. }) if reason.contains("exists")),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        before,
        "left as it was"
    );
    // A backup that fails (here, into a directory that does not exist) leaves nothing, and no
    // temporary file is left beside a good one.
    let nowhere = db.path.with_file_name("missing").join("backup.db");
    assert!(
        store
            .reader()
            .expect("reader")
            .backup_into(&nowhere)
            .is_err()
    );
    assert!(!nowhere.exists());
    let mut left: Vec<String> = std::fs::read_dir(db.path.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("journeyd.db"))
        .collect();
    left.sort();
    assert_eq!(left, ["backup.db"], "no partial copy left");
    // The partial copies other backups left: a killed one's (its lock is free) goes, with its
    // journal, and so does a journal whose copy is gone; a running one's (locked) stays, and so
    // does one just made and still empty (a backup between creating and locking it).
    let other = db.path.with_file_name("other.db");
    let partial = |name: &str| db.path.with_file_name(format!(".other.db.partial-{name}"));
    let killed = [
        partial("7-1"),
        partial("7-1-journal"),
        partial("8-2-journal"),
    ];
    let running = partial("9-3");
    let just_made = partial("10-4");
    for path in killed.iter().chain([&running]) {
        std::fs::write(path, b"a partial copy").expect("write");
    }
    std::fs::write(&just_made, b"").expect("write");
    let held = std::fs::File::open(&running).expect("open");
    held.try_lock().expect("lock, as a running backup holds it");
    store
        .reader()
        .expect("reader")
        .backup_into(&other)
        .expect("backup");
    assert!(other.exists());
    for path in &killed {
        assert!(!path.exists(), "{} removed", path.display());
    }
    assert!(running.exists(), "a running backup's copy stays");
    assert!(just_made.exists(), "a copy just made stays");
    let mut left: Vec<String> = std::fs::read_dir(db.path.parent().expect("dir"))
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".other.db.partial-"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".other.db.partial-10-4", ".other.db.partial-9-3"],
        "the backup's own partial copy is gone"
    );
    drop(held);
    store.close();
}
