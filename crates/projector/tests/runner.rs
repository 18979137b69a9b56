//! The runner against a real database: incremental projection equals a full rebuild whatever
//! the arrival order, batching, failures, concurrent appends or concurrent projectors.

use std::path::PathBuf;

use events::{Event, Source, parse_delivery};
use projector::{Config, Runner, Update};
use proptest::prelude::*;
use serde_json::json;
use store::{Body, Options, Projection, Reader, Snapshot, Store, Submission, Synchronous};

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
}

fn db() -> Db {
    db_with(None)
}

/// As [`db`], calling `on_commit` after every commit of the store's writer.
fn db_with(on_commit: Option<store::CommitHook>) -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let store = Store::open(
        &path,
        Options {
            synchronous: Synchronous::Normal,
            on_commit,
            ..Options::default()
        },
    )
    .expect("open");
    Db {
        _dir: dir,
        path,
        store,
    }
}

impl Db {
    fn append(&self, events: Vec<Event>) {
        let source = events.first().map_or(Source::Mx, |e| e.source);
        self.store
            .writer()
            .append(vec![Submission {
                source,
                received_at: 1_700_000_000_000,
                request_id: None,
                size: 0,
                body: Body::Events(events),
            }])
            .expect("append");
    }

    /// Appends `events` `chunk` at a time, letting `runner` catch up after each append, as the
    /// daemon does after each commit.
    fn feed(&self, runner: &mut Runner, events: &[Event], chunk: usize) {
        for c in events.chunks(chunk) {
            self.append(c.to_vec());
            runner.catch_up().expect("catch up");
        }
    }

    fn runner(&self, config: Config) -> Runner {
        Runner::new(
            self.store.writer(),
            self.store.reader().expect("reader"),
            config,
        )
    }

    /// Every snapshot, after checking that the counts `stats` reads (kept by the triggers of
    /// migration 0004, reset by a rebuild's swap) are those of the tables.
    fn snapshots(&self) -> Vec<(Projection, Vec<Snapshot>)> {
        let r = Reader::open(&self.path).expect("reader");
        assert_eq!(
            r.projection_counts().expect("counts"),
            self.counted(),
            "snapshot_counts agrees with the tables"
        );
        Projection::ALL
            .iter()
            .map(|&p| (p, r.snapshots(p).expect("snapshots")))
            .collect()
    }

    /// The snapshot counts by scanning the tables.
    fn counted(&self) -> store::ProjectionCounts {
        let conn = rusqlite::Connection::open(&self.path).expect("open");
        let count = |t: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .expect("count")
        };
        store::ProjectionCounts {
            journeys_by_status: conn
                .prepare("SELECT status, count(*) FROM journeys GROUP BY status ORDER BY status")
                .expect("prepare")
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<rusqlite::Result<_>>()
                .expect("rows"),
            members: count("members"),
            users: count("users"),
            resources: count("resources"),
        }
    }

    fn states(&self) -> Vec<(Projection, Vec<(String, String)>)> {
        self.snapshots()
            .into_iter()
            .map(|(p, s)| (p, s.into_iter().map(|s| (s.key, s.state)).collect()))
            .collect()
    }

    fn checkpoints(&self) -> Vec<store::Checkpoint> {
        Reader::open(&self.path)
            .expect("reader")
            .checkpoints()
            .expect("checkpoints")
    }

    fn sql(&self, sql: &str) {
        // The store crate owns SQL; tests reach the file the way an operator would.
        let conn = rusqlite::Connection::open(&self.path).expect("open");
        conn.execute_batch(sql).expect("sql");
    }

    /// The rows of each table that rebuilds of `projection` are filling or abandoned.
    fn rebuild_tables(&self, projection: Projection) -> Vec<i64> {
        let conn = rusqlite::Connection::open(&self.path).expect("open");
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?1")
            .expect("sql")
            .query_map([format!("{}_next_%", projection.name())], |r| r.get(0))
            .expect("sql")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        names
            .iter()
            .map(|n| {
                conn.query_row(&format!("SELECT count(*) FROM {n}"), [], |r| r.get(0))
                    .expect("count")
            })
            .collect()
    }
}

/// A mixed stream: journeys and MX members/users/resources, no connection status (which is
/// ordered by arrival and would differ between databases fed in different orders).
fn corpus(n: usize) -> Vec<Event> {
    let mut bodies: Vec<(Source, String)> = Vec::new();
    for i in 0..n {
        let c = format!("J{}", i % 7);
        let at = format!("2021-06-11T10:{:02}:00Z", i % 60);
        let data = match i % 5 {
            0 => {
                json!({"correlationId": c, "occurredAt": at, "journeyId": "2", "url": format!("u{i}")})
            }
            1 => json!({"correlationId": c, "occurredAt": at, "sessionId": format!("s{}", i % 3)}),
            2 => {
                json!({"correlationId": c, "occurredAt": at, "paymentDetail": {"transactionId": format!("T{}", i % 4), "authorised": i % 2 == 0, "amount": "1.10", "currency": "GBP"}})
            }
            3 => {
                json!({"correlationId": c, "occurredAt": at, "stageName": if i % 11 == 0 { "journeyEnd" } else { "step" }, "sessionData": {"i": i}})
            }
            _ => json!({"correlationId": c, "occurredAt": at, "documentId": format!("D{}", i % 3)}),
        };
        let kind = [
            "linkcreated",
            "sessioncreated",
            "paymentattempt",
            "stage",
            "documentgenerated",
        ][i % 5];
        bodies.push((
            Source::MobileJourneys,
            json!({"productId": "mobilejourneys", "eventId": kind, "data": data}).to_string(),
        ));
        let m = format!("MBR-{}", i % 5);
        let u = format!("USR-{}", i % 3);
        let mx = match i % 4 {
            0 => {
                json!({"action": "member_data_updated", "type": (["AGGREGATION", "BALANCE"][i % 2]), "member_guid": m, "user_guid": u, "completed_at": 1000 + i, "transactions_created_count": i % 3})
            }
            1 => {
                json!({"job": {"guid": format!("JOB-{}", i % 2), "member_guid": m, "user_guid": u, "status_name": "COMPLETED", "updated_at": 2000 + (i % 9)}})
            }
            2 => {
                json!({"action": (["created", "updated", "deleted"][i % 3]), "goal": {"guid": format!("GOL-{}", i % 4), "user_guid": u, "revision": i % 6}})
            }
            _ => {
                json!([{"type": "pageview", "session_id": format!("S{}", i % 4), "user_guid": u, "created_at": 3000 + i}])
            }
        };
        bodies.push((Source::Mx, mx.to_string()));
    }
    bodies
        .iter()
        .flat_map(|(s, b)| parse_delivery(*s, b.as_bytes()).expect("valid"))
        .collect()
}

fn rebuild_all(runner: &mut Runner) {
    for p in Projection::ALL {
        runner.rebuild(p, &mut |_| {}).expect("rebuild");
    }
}

#[test]
fn incremental_projection_equals_a_full_rebuild_and_the_import_order_does_not_matter() {
    let events = corpus(120);
    let a = db();
    let mut runner = a.runner(Config {
        batch_events: 7,
        ..Config::default()
    });
    a.feed(&mut runner, &events, 13);
    let incremental = a.snapshots();
    assert!(
        incremental.iter().all(|(_, s)| !s.is_empty()),
        "every projection has snapshots"
    );
    // The indexed columns too (statuses move as journeys progress): read through the index.
    let counts = |d: &Db| {
        Reader::open(&d.path)
            .expect("reader")
            .projection_counts()
            .expect("counts")
    };
    let incremental_counts = counts(&a);
    assert!(
        incremental_counts.journeys_by_status.len() >= 2,
        "{incremental_counts:?}"
    );
    rebuild_all(&mut runner);
    assert_eq!(
        a.snapshots(),
        incremental,
        "a rebuild gives the same rows, meta included"
    );
    assert_eq!(
        counts(&a),
        incremental_counts,
        "indexed columns kept current incrementally"
    );
    let conn = rusqlite::Connection::open(&a.path).expect("open");
    let mismatched: i64 = conn
        .query_row(
            "SELECT count(*) FROM journeys WHERE status IS NOT json_extract(state, '$.status')",
            [],
            |r| r.get(0),
        )
        .expect("sql");
    assert_eq!(mismatched, 0, "the status column agrees with the state");

    let b = db();
    let mut reversed = events.clone();
    reversed.reverse();
    b.append(reversed);
    b.runner(Config::default()).catch_up().expect("catch up");
    assert_eq!(
        b.states(),
        a.states(),
        "another arrival order, the same states"
    );
}

#[test]
fn a_projection_batch_that_fails_midway_leaves_snapshots_and_checkpoint_as_before() {
    let d = db();
    let events = corpus(40);
    d.append(events[..40].to_vec());
    d.runner(Config::default())
        .catch_up()
        .expect("first catch up");
    let before = (d.snapshots(), d.checkpoints());

    d.append(events[40..].to_vec());
    // Inject a failure in the middle of the batch: the members table refuses one key, whether
    // its row is new or updated.
    for (name, op) in [
        ("fail_member_insert", "INSERT"),
        ("fail_member_update", "UPDATE"),
    ] {
        d.sql(&format!(
            "CREATE TRIGGER {name} BEFORE {op} ON members WHEN NEW.member_guid = 'MBR-3' \
             BEGIN SELECT RAISE(ABORT, 'injected'); END;"
        ));
    }
    let err = d
        .runner(Config::default())
        .catch_up()
        .expect_err("must fail");
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(
        (d.snapshots(), d.checkpoints()),
        before,
        "nothing of the failed batch is visible"
    );

    // After the fault is gone, a fresh runner (a restart) catches up to what a rebuild gives.
    d.sql("DROP TRIGGER fail_member_insert; DROP TRIGGER fail_member_update;");
    let mut runner = d.runner(Config::default());
    runner.catch_up().expect("catch up after restart");
    let incremental = d.snapshots();
    rebuild_all(&mut runner);
    assert_eq!(d.snapshots(), incremental);
}

#[test]
fn a_rebuild_while_appends_continue_ends_equal_to_a_fresh_rebuild() {
    let d = db();
    let events = corpus(300);
    d.append(events[..200].to_vec());
    let writer = d.store.writer();
    let rest = events[200..].to_vec();
    let appender = std::thread::spawn(move || {
        for chunk in rest.chunks(10) {
            writer
                .append(vec![Submission {
                    source: chunk[0].source,
                    received_at: 1,
                    request_id: None,
                    size: 0,
                    body: Body::Events(chunk.to_vec()),
                }])
                .expect("append");
        }
    });
    let mut runner = d.runner(Config::default());
    for p in Projection::ALL {
        runner.rebuild(p, &mut |_| {}).expect("rebuild");
    }
    appender.join().expect("appender");
    runner.catch_up().expect("catch up");
    let after = d.snapshots();
    let head = Reader::open(&d.path).expect("r").head().expect("head");
    assert!(
        d.checkpoints().iter().all(|c| c.seq == head),
        "every checkpoint at the head"
    );
    let mut fresh = d.runner(Config::default());
    rebuild_all(&mut fresh);
    assert_eq!(d.snapshots(), after);
}

#[test]
fn a_stored_version_or_configuration_that_differs_triggers_a_rebuild() {
    let d = db();
    d.append(corpus(30));
    let mut runner = d.runner(Config::default());
    let first = runner.catch_up().expect("catch up");
    assert_eq!(
        first.rebuilt, 4,
        "a new database's checkpoints have version 0: all four are built"
    );
    let good = d.snapshots();
    // Damage a snapshot and pretend an older build wrote the journeys.
    d.sql("UPDATE journeys SET state = 'damaged'; UPDATE checkpoints SET version = 0 WHERE projection = 'journeys';");
    let again = d.runner(Config::default()).catch_up().expect("catch up");
    assert_eq!(again.rebuilt, 1);
    assert_eq!(d.snapshots(), good);
    // Another completing stage set is another configuration: journeys are rebuilt with it.
    let config = Config {
        completing_stages: ["step".to_owned()].into(),
        ..Config::default()
    };
    let changed = d.runner(config).catch_up().expect("catch up");
    assert_eq!(changed.rebuilt, 1);
    let completed = Reader::open(&d.path)
        .expect("r")
        .projection_counts()
        .expect("counts")
        .journeys_by_status;
    // Six of the seven journeys reached a `step` stage; the seventh only paid.
    assert_eq!(
        completed,
        [("completed".to_owned(), 6), ("paid".to_owned(), 1)]
    );
}

#[test]
fn runners_taking_turns_on_one_database_agree_with_a_rebuild() {
    let d = db();
    let events = corpus(150);
    let mut a = d.runner(Config {
        batch_events: 5,
        cache_keys: 3,
        ..Config::default()
    });
    let mut b = d.runner(Config {
        batch_events: 11,
        ..Config::default()
    });
    for (i, chunk) in events.chunks(17).enumerate() {
        d.append(chunk.to_vec());
        if i % 2 == 0 {
            a.catch_up()
        } else {
            b.catch_up()
        }
        .expect("catch up");
        if i % 3 == 0 {
            b.catch_up().expect("catch up");
        }
    }
    a.catch_up().expect("catch up");
    let incremental = d.snapshots();
    rebuild_all(&mut b);
    assert_eq!(d.snapshots(), incremental);
}

/// The updates of one catch-up.
fn updates(r: &mut Runner) -> Vec<Update> {
    let mut out = Vec::new();
    r.catch_up_with(&mut |u| out.push(u)).expect("catch up");
    out
}

fn resynced(updates: &[Update]) -> bool {
    updates.iter().any(|u| matches!(u, Update::Resynced { .. }))
}

/// A new database's first catch-up builds all four projections. Swapping an empty table in for
/// one nothing was read from cannot hide a change from anyone, so those swaps are reported as
/// a commit (live streams go on), and only the first look's adoption as a resync; a rebuild
/// that writes rows is still a resync.
#[test]
fn building_empty_tables_of_a_new_database_is_no_resync() {
    let d = db();
    let mut a = d.runner(Config::default());
    let first = updates(&mut a);
    let resyncs = first
        .iter()
        .filter(|u| matches!(u, Update::Resynced { .. }))
        .count();
    assert_eq!(resyncs, 1, "the adoption only: {first:?}");
    assert!(
        first.contains(&Update::Committed { checkpoint: 0 }),
        "{first:?}"
    );
    assert!(
        d.checkpoints().iter().all(|c| c.version > 0),
        "built: {:?}",
        d.checkpoints()
    );
    // With events in the log, the first catch-up's rebuild writes rows: a resync.
    let e = db();
    e.append(corpus(20));
    let mut b = e.runner(Config::default());
    let first = updates(&mut b);
    let resyncs = first
        .iter()
        .filter(|u| matches!(u, Update::Resynced { .. }))
        .count();
    assert!(
        resyncs >= 2,
        "the adoption and a rebuild with rows: {first:?}"
    );
}

/// A rebuild during a catch-up (another configuration for journeys, with events past every
/// checkpoint) goes to the others' checkpoint, not past it: then the batches announce every
/// journey change past that point. Rebuilt to the log head instead, the journeys would stand
/// past the others, and the changes between were neither announced nor within a replay.
#[test]
fn a_rebuild_in_a_catch_up_leaves_no_change_unannounced() {
    let d = db();
    let events = corpus(60);
    d.append(events[..30].to_vec());
    let mut before = d.runner(Config::default());
    before.catch_up().expect("catch up");
    let projected = d.checkpoints()[0].seq;
    d.append(events[30..].to_vec());
    let config = Config {
        completing_stages: ["step".to_owned()].into(),
        ..Config::default()
    };
    let mut runner = d.runner(config);
    let updates = updates(&mut runner);
    let announced: std::collections::BTreeSet<String> = updates
        .iter()
        .filter_map(|u| match u {
            Update::Changed(c) if c.projection == Projection::Journeys && c.seq > projected => {
                Some(c.key.clone())
            }
            _ => None,
        })
        .collect();
    let expected: std::collections::BTreeSet<String> = keys_of(&events[30..])
        .into_iter()
        .filter(|(p, _)| *p == Projection::Journeys)
        .map(|(_, k)| k)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(announced, expected, "{updates:?}");
    let seqs: Vec<i64> = d.checkpoints().iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] == w[1]), "{seqs:?}");
}

/// A stop asked for while a runner catches up ends the round at the next batch, and starts no
/// rebuild; the next catch-up without it goes on from where it stopped.
#[test]
fn a_catch_up_asked_to_stop_ends_at_the_next_batch_and_rebuilds_nothing() {
    use std::sync::atomic::AtomicBool;
    let d = db();
    d.append(corpus(30));
    let mut runner = d.runner(Config {
        batch_events: 4,
        ..Config::default()
    });
    let stop = AtomicBool::new(true);
    let stopped = runner
        .catch_up_unless(&mut |_| {}, &stop)
        .expect("catch up");
    assert_eq!(
        (stopped.rebuilt, stopped.events),
        (0, 0),
        "the first round would rebuild all four"
    );
    // Asked to stop during the first of four rebuilds: it finishes that one, starts no other.
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    let first = runner
        .catch_up_unless(
            &mut |u| {
                if matches!(u, Update::Resynced { .. }) {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            },
            &stop,
        )
        .expect("catch up");
    assert_eq!((first.rebuilt, first.events), (1, 0));
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    let full = runner
        .catch_up_unless(&mut |_| {}, &stop)
        .expect("catch up");
    assert_eq!(full.rebuilt, 3);
    let head = || Reader::open(&d.path).expect("reader").head().expect("head");
    let before = head();
    d.append(corpus(60)); // the first 30 again (duplicates), and 30 more
    let new = (head() - before) as u64;
    assert!(new > 8, "{new}");
    // Set by the first batch's report: the round ends there.
    let mut batches = 0;
    let cut = runner
        .catch_up_unless(
            &mut |u| {
                if matches!(u, Update::Committed { .. }) {
                    batches += 1;
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            },
            &stop,
        )
        .expect("catch up");
    assert_eq!((batches, cut.events), (1, 4));
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    let rest = runner
        .catch_up_unless(&mut |_| {}, &stop)
        .expect("catch up");
    assert_eq!(cut.events + rest.events, new);
    let incremental = d.snapshots();
    rebuild_all(&mut runner);
    assert_eq!(d.snapshots(), incremental);
}

/// A stop asked for while a rebuild reads the log abandons it before its swap: the live table
/// and its checkpoint stay as they were, and the next catch-up rebuilds from the start and drops
/// the abandoned table.
#[test]
fn a_stop_during_a_rebuild_abandons_it_before_the_swap() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let (armed, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (a, s) = (Arc::clone(&armed), Arc::clone(&stop));
    // Once armed, the first commit without appends is the rebuild's empty table: the stop comes
    // before the rebuild has read a key.
    let d = db_with(Some(Arc::new(move |info: &store::CommitInfo| {
        if info.appends == 0 && a.load(SeqCst) {
            s.store(true, SeqCst);
        }
    })));
    d.append(corpus(30));
    let mut runner = d.runner(Config::default());
    runner.catch_up().expect("catch up");
    let built = d.snapshots();
    d.sql("UPDATE journeys SET state = 'damaged'; UPDATE checkpoints SET version = 0 WHERE projection = 'journeys';");
    let before = (d.snapshots(), d.checkpoints());

    armed.store(true, SeqCst);
    let mut updates = Vec::new();
    let cut = runner
        .catch_up_unless(&mut |u| updates.push(u), &stop)
        .expect("a stop is not an error");
    assert!(stop.load(SeqCst), "the rebuild began");
    assert_eq!((cut.rebuilt, cut.events), (0, 0));
    assert!(!resynced(&updates), "nothing was swapped in");
    assert_eq!(
        (d.snapshots(), d.checkpoints()),
        before,
        "the live table and its checkpoint are as they were"
    );
    assert_eq!(
        d.rebuild_tables(Projection::Journeys),
        [0],
        "the abandoned table, left before its first key was written"
    );

    armed.store(false, SeqCst);
    stop.store(false, SeqCst);
    let full = runner
        .catch_up_unless(&mut |_| {}, &stop)
        .expect("catch up");
    assert_eq!(full.rebuilt, 1);
    assert_eq!(d.snapshots(), built, "rebuilt from the log");
    assert_eq!(
        d.rebuild_tables(Projection::Journeys),
        [0; 0],
        "dropped at the swap"
    );
}

/// `/v1/stream` sends changes as they are reported, with `id` = `seq`, and a resumed client
/// replays from the last id it saw: so every batch reports its changes in `seq` order, however
/// its keys interleave and whichever projections one event changes. Each batch ends with its
/// `Committed`, and every event's snapshots are reported.
#[test]
fn a_batch_reports_its_changes_in_log_order() {
    let d = db();
    let mut runner = d.runner(Config {
        batch_events: 16,
        ..Config::default()
    });
    runner
        .catch_up()
        .expect("the first catch-up builds the empty tables");
    d.append(corpus(60));
    let reported = updates(&mut runner);
    let mut batches = 0;
    let mut last_seq = 0;
    let mut changed = std::collections::BTreeSet::new();
    for u in &reported {
        match u {
            Update::Changed(c) => {
                assert!(c.seq >= last_seq, "seq {} reported after {last_seq}", c.seq);
                last_seq = c.seq;
                changed.insert((c.projection, c.key.clone()));
            }
            Update::Committed { checkpoint } => {
                assert!(*checkpoint >= last_seq);
                batches += 1;
            }
            Update::Resynced { .. } => {}
        }
    }
    assert!(batches >= 4, "several batches: {batches}");
    let snapshots: std::collections::BTreeSet<_> = d
        .snapshots()
        .into_iter()
        .flat_map(|(p, rows)| rows.into_iter().map(move |s| (p, s.key)))
        .collect();
    assert_eq!(changed, snapshots, "every snapshot was reported");
}

/// A daemon drops whatever it cached from the snapshot tables on `Resynced`, so it must come
/// exactly when the tables moved under the runner (by another runner's batch or by a rebuild,
/// not by the runner's own batches), and before any change read after the move.
#[test]
fn a_catch_up_reports_whether_the_snapshots_moved_under_the_runner() {
    let d = db();
    let events = corpus(60);
    let mut a = d.runner(Config::default());
    let mut b = d.runner(Config::default());
    // The first look adopts what is stored.
    assert!(resynced(&updates(&mut a)));
    assert_eq!(updates(&mut a), [], "nothing moved, nothing to say");
    // Its own batches are not a move; each batch ends with its checkpoint.
    d.append(events[..20].to_vec());
    let own = updates(&mut a);
    assert!(!resynced(&own), "its own batch: {own:?}");
    assert!(matches!(own.first(), Some(Update::Changed(_))), "{own:?}");
    let head = d
        .checkpoints()
        .iter()
        .map(|c| c.seq)
        .min()
        .expect("checkpoints");
    assert_eq!(own.last(), Some(&Update::Committed { checkpoint: head }));
    assert_eq!(updates(&mut a), []);
    // Another runner's batch is, and it is reported before the changes read after it.
    assert!(resynced(&updates(&mut b)), "b's first look");
    d.append(events[20..40].to_vec());
    assert!(!resynced(&updates(&mut b)));
    d.append(events[40..].to_vec());
    let after_move = updates(&mut a);
    assert!(
        matches!(after_move.first(), Some(Update::Resynced { .. })),
        "{after_move:?}"
    );
    assert!(after_move.iter().any(|u| matches!(u, Update::Changed(_))));
    assert_eq!(updates(&mut a), [], "reported once");
    // So is a rebuild, by anyone.
    b.rebuild(Projection::Users, &mut |_| {}).expect("rebuild");
    assert!(resynced(&updates(&mut a)), "b rebuilt users");
    a.rebuild(Projection::Members, &mut |_| {})
        .expect("rebuild");
    assert!(resynced(&updates(&mut a)), "a rebuilt members");
    assert_eq!(updates(&mut a), []);
}

#[test]
fn the_cache_is_bounded_and_refolds_from_the_log_on_a_miss() {
    let events = corpus(100);
    let small = db();
    let mut r = small.runner(Config {
        cache_keys: 1,
        batch_events: 3,
        ..Config::default()
    });
    small.feed(&mut r, &events, 5);
    let big = db();
    big.append(events);
    big.runner(Config::default()).catch_up().expect("catch up");
    // The same events in the same order: the same rows, meta included.
    assert_eq!(small.snapshots(), big.snapshots());
}

#[test]
fn the_cache_counts_what_it_holds_and_stays_within_its_byte_budget() {
    let events = corpus(120);
    // A budget that holds everything: every snapshot's fold is cached, at its weight.
    let all = db();
    let mut r = all.runner(Config {
        batch_events: 7,
        ..Config::default()
    });
    all.feed(&mut r, &events, 9);
    let whole = r.cache_usage();
    for ((projection, snapshots), (p, used)) in all.snapshots().into_iter().zip(whole) {
        assert_eq!(projection, p);
        assert_eq!(used.keys, snapshots.len(), "{p:?}");
        let weight = |s: &Snapshot| projector::fold_weight(&s.key, s.state.len(), s.event_count);
        assert_eq!(
            used.bytes,
            snapshots.iter().map(weight).sum::<usize>(),
            "{p:?}"
        );
    }
    let (_, journeys) = whole[0];

    // A third of what the journeys took: each projection's cache stays under it after every
    // batch, the journeys' cache evicts, and misses refold the same snapshots.
    let budget = journeys.bytes / 3;
    let small = db();
    let mut r = small.runner(Config {
        batch_events: 7,
        cache_bytes: budget,
        ..Config::default()
    });
    for chunk in events.chunks(9) {
        small.append(chunk.to_vec());
        r.catch_up().expect("catch up");
        for (p, used) in r.cache_usage() {
            assert!(used.bytes <= budget, "{p:?}: {used:?} over {budget}");
        }
    }
    let (_, used) = r.cache_usage()[0];
    assert!(used.keys > 0 && used.keys < journeys.keys, "{used:?}");
    assert_eq!(small.snapshots(), all.snapshots());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any arrival order, with duplicates, with catch-ups at any points: the snapshots equal a
    /// rebuild of the same log, and the states equal those of the log fed in order.
    #[test]
    fn any_arrival_order_and_batching_gives_the_same_snapshots(
        n in 5usize..60,
        order in prop::collection::vec(0usize..1000, 0..80),
        splits in prop::collection::vec(1usize..20, 1..10),
        batch in 1usize..50,
    ) {
        let events = corpus(n);
        let mut arrivals: Vec<Event> = order.iter().map(|i| events[i % events.len()].clone()).collect();
        arrivals.extend(events.iter().rev().cloned());

        let a = db();
        let mut runner = a.runner(Config { batch_events: batch, cache_keys: 4, ..Config::default() });
        let mut rest: &[Event] = &arrivals;
        let mut s = splits.iter().cycle();
        while !rest.is_empty() {
            let k = (*s.next().unwrap_or(&1)).min(rest.len());
            a.append(rest[..k].to_vec());
            rest = &rest[k..];
            runner.catch_up().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let incremental = a.snapshots();
        rebuild_all(&mut runner);
        prop_assert_eq!(a.snapshots(), incremental);

        let b = db();
        b.append(events);
        b.runner(Config::default()).catch_up().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(a.states(), b.states());
    }
}

/// Every key an event stream touches, in each projection it folds into.
fn keys_of(events: &[Event]) -> std::collections::BTreeSet<(Projection, String)> {
    events
        .iter()
        .flat_map(|e| projector::projections_of(e.kind, &e.keys).map(|(p, k)| (p, k.to_owned())))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// What a point read folds from the log for a key the projector is behind on is, byte for
    /// byte, the row the projector then writes (decision 0013).
    #[test]
    fn a_read_through_is_the_row_the_projector_then_writes(
        n in 5usize..60,
        order in prop::collection::vec(0usize..1000, 0..80),
        projected in 0usize..140,
        batch in 1usize..8,
    ) {
        let events = corpus(n);
        let mut arrivals: Vec<Event> = order.iter().map(|i| events[i % events.len()].clone()).collect();
        arrivals.extend(events.iter().cloned());
        let (early, late) = arrivals.split_at(projected.min(arrivals.len()));

        let a = db();
        // Small batches and a tiny fold cache: the projector refolds keys from the log too.
        let mut runner = a.runner(Config { batch_events: batch, cache_keys: 2, ..Config::default() });
        if !early.is_empty() {
            a.append(early.to_vec());
            runner.catch_up().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        a.append(late.to_vec());
        let reader = Reader::open(&a.path).expect("reader");
        let config = Config::default();
        let mut keys = keys_of(&events);
        keys.insert((Projection::Journeys, "never-sent".into()));
        let read: Vec<_> = keys
            .iter()
            .map(|(p, k)| projector::current(&reader, *p, k, &config, usize::MAX).expect("read"))
            .collect();
        runner.catch_up().map_err(|e| TestCaseError::fail(e.to_string()))?;
        for ((p, k), current) in keys.iter().zip(read) {
            let stored = reader.snapshot(*p, k).expect("snapshot");
            match current {
                projector::Current::Row(row) => prop_assert_eq!(Some(Snapshot::from(row)), stored),
                projector::Current::Absent => prop_assert_eq!(None, stored),
                projector::Current::TooLarge { .. } => prop_assert!(false, "no bound was set"),
            }
        }
    }
}

#[test]
fn a_read_through_leaves_a_key_with_more_events_than_asked_to_the_projector() {
    let a = db();
    let events = corpus(21); // seven journeys, three events each
    a.append(events);
    let reader = Reader::open(&a.path).expect("reader");
    let config = Config::default();
    let read = |max| projector::current(&reader, Projection::Journeys, "J0", &config, max);
    assert_eq!(
        read(2).expect("read"),
        projector::Current::TooLarge { folds_any: true }
    );
    assert!(matches!(read(3).expect("read"), projector::Current::Row(r) if r.event_count == 3));
}

/// A key named only by events the projection does not fold (a member's accounts, say) is not
/// one that will have a snapshot, however many of them there are.
#[test]
fn a_key_too_large_to_read_through_says_whether_the_projection_folds_any_of_it() {
    let a = db();
    let account = |n: usize| {
        let body = format!(
            r#"{{"action":"updated","account":{{"guid":"ACT-{n}","member_guid":"MBR-1","user_guid":"USR-1","revision":1}}}}"#
        );
        parse_delivery(Source::Mx, body.as_bytes()).expect("parsed")
    };
    a.append((0..3).flat_map(account).collect());
    let reader = Reader::open(&a.path).expect("reader");
    let config = Config::default();
    let read = |p, key| projector::current(&reader, p, key, &config, 2).expect("read");
    assert_eq!(
        read(Projection::Members, "MBR-1"),
        projector::Current::TooLarge { folds_any: false }
    );
    assert_eq!(
        read(Projection::Users, "USR-1"),
        projector::Current::TooLarge { folds_any: true }
    );
}

/// `catch_up_to` is done once every checkpoint has reached its target, however much more the
/// log holds (a daemon beside an `import` goes on appending); `catch_up` folds it all.
#[test]
fn a_catch_up_to_a_target_stops_there_and_catch_up_goes_on() {
    let a = db();
    let mut runner = a.runner(Config {
        batch_events: 1,
        ..Config::default()
    });
    runner.catch_up().expect("the first build, of nothing");
    let events = corpus(6);
    let n = events.len() as i64;
    a.append(events);
    assert_eq!(runner.catch_up_to(3).expect("catch up").checkpoint, 3);
    assert_eq!(runner.catch_up().expect("catch up").checkpoint, n);
}

/// Of two rebuilds of one projection, the one that swaps second is not an error: it reports
/// that it did not swap, and the first one's table stands.
#[test]
fn a_rebuild_that_another_rebuild_beat_to_the_swap_reports_it_and_succeeds() {
    let a = db();
    a.append(corpus(12));
    let mut first = a.runner(Config::default());
    let mut second = a.runner(Config::default());
    let mut other: Option<projector::Rebuilt> = None;
    // The progress callback runs after the first rebuild's rows are written, before its swap:
    // the second rebuild runs whole there.
    let lost = first
        .rebuild(Projection::Journeys, &mut |_| {
            if other.is_none() {
                other = Some(
                    second
                        .rebuild(Projection::Journeys, &mut |_| {})
                        .expect("the second rebuild"),
                );
            }
        })
        .expect("the first rebuild ends without an error");
    assert!(other.expect("ran").swapped, "the second swapped");
    assert!(!lost.swapped, "the first did not");
    let journeys = |d: &Db| {
        d.snapshots()
            .into_iter()
            .find(|(p, _)| *p == Projection::Journeys)
            .map(|(_, s)| s)
            .expect("journeys")
    };
    let b = db();
    b.append(corpus(12));
    rebuild_all(&mut b.runner(Config::default()));
    assert!(!journeys(&a).is_empty());
    assert_eq!(journeys(&a), journeys(&b), "the winner's table, whole");
}
