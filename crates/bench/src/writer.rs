//! `bench writer`: the daemon's write path without HTTP, in one process and in lockstep, so
//! that it repeats. Each round appends a group of single-event Mobile Journeys
//! deliveries in one transaction (as the writer's group commit does under `bench http`), then
//! lets the projector fold them and write their snapshots in another. The events are those of
//! `bench http`: journeys with the eight-event lifecycle, 20 open per simulated connection,
//! stamped a millisecond apart from a fixed time rather than with the clock.
//!
//! The same rounds run twice on fresh databases: appends only (the baseline), then appends and
//! projection. Wall time is noisy on a shared machine. The writer's and the projector's work is
//! the same in every run, so under `valgrind --tool=callgrind` their instruction counts compare
//! two builds to within 0.3% (the store's checkpoint thread runs on a timer, so the program's
//! total varies a little more). docs/BENCHMARKS.md, "The write path without HTTP".

use std::path::Path;
use std::time::{Duration, Instant};

use events::{Source, parse_delivery};
use store::{Body, Options, Store, Submission, Synchronous};

/// The first event's `occurredAt` and `eventTime`: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;

/// What one pass did.
struct Pass {
    elapsed: Duration,
    commits: usize,
}

fn pass(
    db: &Path,
    events: usize,
    group: usize,
    connections: usize,
    project: bool,
) -> anyhow::Result<Pass> {
    let store = Store::open(
        db,
        Options {
            synchronous: Synchronous::Full,
            ..Options::default()
        },
    )?;
    let writer = store.writer();
    let mut runner = projector::Runner::new(
        store.writer(),
        store.reader()?,
        projector::Config::default(),
    );
    let started = Instant::now();
    let mut commits = 0;
    let mut i = 0;
    while i < events {
        let n = group.min(events - i);
        let submissions = (i..i + n)
            .map(|k| {
                // A millisecond apart, from a fixed time: the same bytes in every run.
                let at = events::timestamp::format_millis(START_MS + k as i64);
                let body = crate::http::delivery_at(k % connections, k / connections, &at);
                let events = parse_delivery(Source::MobileJourneys, body.as_bytes())
                    .map_err(|e| anyhow::anyhow!("the generated delivery does not parse: {e}"))?;
                Ok(Submission {
                    source: Source::MobileJourneys,
                    received_at: 0,
                    request_id: None,
                    size: body.len(),
                    body: Body::Events(events),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        writer.append(submissions)?;
        commits += 1;
        if project {
            commits += usize::from(runner.catch_up()?.events > 0);
        }
        i += n;
    }
    let elapsed = started.elapsed();
    store.close();
    Ok(Pass { elapsed, commits })
}

/// Runs both passes and prints a table.
pub(crate) fn run(
    dir: &Path,
    events: usize,
    group: usize,
    connections: usize,
) -> anyhow::Result<()> {
    let group = group.max(1);
    let connections = connections.max(1);
    let appends = pass(&dir.join("appends.db"), events, group, connections, false)?;
    let both = pass(&dir.join("projected.db"), events, group, connections, true)?;
    println!(
        "the write path without HTTP: {events} single-event deliveries, {group} per append transaction, {connections} simulated connections, synchronous=FULL"
    );
    println!();
    println!("| pass | commits | seconds | events/s | ratio to appends only |");
    println!("|---|---|---|---|---|");
    let rate = |p: &Pass| events as f64 / p.elapsed.as_secs_f64();
    for (name, p) in [
        ("appends only (baseline)", &appends),
        ("appends, then projection", &both),
    ] {
        println!(
            "| {name} | {} | {:.2} | {:.0} | {:.2} |",
            p.commits,
            p.elapsed.as_secs_f64(),
            rate(p),
            rate(p) / rate(&appends)
        );
    }
    Ok(())
}
