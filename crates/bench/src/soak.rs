//! The soak: `journeyd serve` taking new single-event Mobile Journeys deliveries at a steady
//! concurrency for a long run on one growing database, measured in slices. Each slice prints
//! what the log, the database and its WAL have grown to, the webhooks' throughput and
//! latencies, the writer's commit latency and the daemon's memory; at the end a CSV and an SVG
//! plot of the same rows. What a daemon that runs for months does to its tail latency.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::http::{Conn, load, now_rfc3339, percentile, spawn, stop};

/// What to run.
pub(crate) struct Settings {
    pub(crate) journeyd: PathBuf,
    pub(crate) events: u64,
    pub(crate) minutes: Option<u64>,
    pub(crate) slice: Duration,
    pub(crate) connections: usize,
    pub(crate) csv: Option<PathBuf>,
    pub(crate) svg: Option<PathBuf>,
    /// Arguments for `journeyd serve` after the benchmark's own.
    pub(crate) serve_args: Vec<String>,
    /// Where to move the database at the end, rather than delete it (for `bench disk`).
    pub(crate) keep_db: Option<PathBuf>,
}

/// One slice's figures.
struct Slice {
    seconds: f64,
    events: u64,
    db_mib: f64,
    wal_mib: f64,
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    errors: u64,
    commit_p99: f64,
    commit_max: f64,
    commits: u64,
    wal_resets: Option<u64>,
    reset_p99: f64,
    reset_max: f64,
    rss_mib: Option<u64>,
}

/// Connection `c`'s `n`th delivery of slice `slice`: one event of a journey never seen before.
fn new_journey(
    slice: usize,
    connections: usize,
) -> impl Fn(usize, usize) -> (&'static str, String, String) {
    move |c, n| {
        let now = now_rfc3339();
        let id = crate::http::correlation_id(slice * connections + c, 0, n);
        (
            "POST",
            "/webhooks/mobile-journeys".to_owned(),
            format!(
                r#"[{{"productId":"mobilejourneys","eventId":"linkcreated","eventVersion":"1","eventTime":"{now}","data":{{"occurredAt":"{now}","journeyId":"2","correlationId":"{id}","customerReference":"AX-{c}-{n}","url":"https://examplelink.com/{n}","parameters":{{"name":"John Smith","amount":"12.00"}}}}}}]"#
            ),
        )
    }
}

pub(crate) fn run(dir: &Path, s: &Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        s.journeyd.exists(),
        "{} not found: run `cargo build --release -p journeyd -p bench` first",
        s.journeyd.display()
    );
    let db = dir.join("soak.db");
    let wal = dir.join("soak.db-wal");
    let (daemon, addr) = spawn({
        let mut c = crate::http::serve_command(&s.journeyd, &db)?;
        c.args(&s.serve_args).env(
            "JOURNEYD_LOG",
            std::env::var("BENCH_JOURNEYD_LOG").unwrap_or_else(|_| "warn,journeyd=info".into()),
        );
        c
    })?;
    println!(
        "soak: new single-event Mobile Journeys deliveries (a new journey each), {} connections, {} s slices, until {} events{}",
        s.connections,
        s.slice.as_secs(),
        s.events,
        s.minutes
            .map_or(String::new(), |m| format!(" or {m} minutes"))
    );
    println!("`journeyd serve {}`", s.serve_args.join(" "));
    println!();
    println!(
        "| slice end s | events in the log | DB MiB | WAL MiB | events/s | p50 ms | p99 ms | max ms | errors | commit p99 ms | commit max ms | commits | WAL resets | reset pause max ms | RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut before = scrape(&addr)?;
    let mut total = 0u64;
    let mut slices = Vec::new();
    let mut index = 0usize;
    while total < s.events
        && s.minutes
            .is_none_or(|m| started.elapsed() < Duration::from_secs(m * 60))
    {
        let measured = load(
            &addr,
            s.connections,
            s.slice,
            new_journey(index, s.connections),
            |status| status == 204,
        )?;
        index += 1;
        total += measured.requests;
        let after = scrape(&addr)?;
        let commits = after.commit.since(&before.commit);
        let resets = after.reset.since(&before.reset);
        let slice = Slice {
            seconds: started.elapsed().as_secs_f64(),
            events: total,
            db_mib: mib(&db),
            wal_mib: mib(&wal),
            rate: measured.requests as f64 / s.slice.as_secs_f64(),
            p50: percentile(&measured.latencies, 0.5),
            p99: percentile(&measured.latencies, 0.99),
            max: measured
                .latencies
                .last()
                .map_or(0.0, |&m| f64::from(m) / 1000.0),
            errors: measured.errors,
            commit_p99: commits.quantile_bound(0.99) * 1000.0,
            commit_max: commits.max_bound() * 1000.0,
            commits: commits.count,
            wal_resets: after
                .wal_resets
                .map(|a| a.saturating_sub(before.wal_resets.unwrap_or(0))),
            reset_p99: resets.quantile_bound(0.99) * 1000.0,
            reset_max: resets.max_bound() * 1000.0,
            rss_mib: crate::http::status_mib(daemon.id(), "VmRSS:"),
        };
        before = after;
        println!(
            "| {:.0} | {} | {:.0} | {:.1} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            slice.seconds,
            slice.events,
            slice.db_mib,
            slice.wal_mib,
            slice.rate,
            slice.p50,
            slice.p99,
            slice.max,
            slice.errors,
            bound(slice.commit_p99),
            bound(slice.commit_max),
            slice.commits,
            slice.wal_resets.map_or("-".into(), |n| n.to_string()),
            if slice.wal_resets.is_some() {
                bound(slice.reset_max)
            } else {
                "-".into()
            },
            slice.rss_mib.map_or("?".into(), |r| r.to_string()),
        );
        let _ = std::io::stdout().flush();
        slices.push(slice);
    }
    stop(daemon);
    if let Some(keep) = &s.keep_db {
        std::fs::rename(&db, keep)
            .with_context(|| format!("cannot move the database to {}", keep.display()))?;
    }
    summary(&slices);
    if let Some(path) = &s.csv {
        write_csv(path, &slices)?;
    }
    if let Some(path) = &s.svg {
        std::fs::write(path, plot(&slices, s))?;
    }
    Ok(())
}

/// A histogram bucket's upper bound, in ms, as printed: `≤ 0.8`.
fn bound(ms: f64) -> String {
    if ms.is_finite() {
        format!("≤ {}", trim(ms))
    } else {
        "> top".into()
    }
}

fn trim(ms: f64) -> String {
    let s = format!("{ms:.1}");
    if s == "0.0" { format!("{ms:.2}") } else { s }
}

/// The first and last tenths of the run compared: what the issue of growing tails asks.
fn summary(slices: &[Slice]) {
    if slices.len() < 2 {
        return;
    }
    let tenth = (slices.len() / 10).max(1);
    let mean =
        |rows: &[Slice], f: fn(&Slice) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
    let (first, last) = (&slices[..tenth], &slices[slices.len() - tenth..]);
    let wal_max = slices.iter().map(|s| s.wal_mib).fold(0.0, f64::max);
    println!();
    println!(
        "first {tenth} slice(s) against the last {tenth}: p99 {:.2} -> {:.2} ms ({:.2}x), events/s {:.0} -> {:.0} ({:.2}x); largest WAL seen {:.1} MiB; worst request {:.1} ms",
        mean(first, |s| s.p99),
        mean(last, |s| s.p99),
        mean(last, |s| s.p99) / mean(first, |s| s.p99),
        mean(first, |s| s.rate),
        mean(last, |s| s.rate),
        mean(last, |s| s.rate) / mean(first, |s| s.rate),
        wal_max,
        slices.iter().map(|s| s.max).fold(0.0, f64::max),
    );
}

fn mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// A cumulative Prometheus histogram: bucket upper bounds (s) and counts.
#[derive(Default, Clone)]
struct Histogram {
    buckets: BTreeMap<u64, (f64, u64)>,
    count: u64,
}

impl Histogram {
    fn since(&self, before: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (k, (_, n)) in out.buckets.iter_mut() {
            *n = n.saturating_sub(before.buckets.get(k).map_or(0, |b| b.1));
        }
        out.count = self.count.saturating_sub(before.count);
        out
    }

    /// The upper bound of the bucket that holds quantile `q`.
    fn quantile_bound(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let want = (q * self.count as f64).ceil() as u64;
        self.buckets
            .values()
            .find(|(_, n)| *n >= want)
            .map_or(f64::INFINITY, |(le, _)| *le)
    }

    /// The upper bound of the bucket that holds the slowest observation.
    fn max_bound(&self) -> f64 {
        self.quantile_bound(1.0)
    }
}

/// What the soak reads from `/metrics` after each slice.
struct Scraped {
    commit: Histogram,
    /// The writer's pauses to start the WAL over (absent before decision 0018).
    reset: Histogram,
    wal_resets: Option<u64>,
}

fn scrape(addr: &str) -> anyhow::Result<Scraped> {
    let (status, body) = Conn::open(addr)?.call("GET", "/metrics", b"")?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    let text = String::from_utf8(body)?;
    let mut wal_resets = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("journeyd_wal_resets_total{result=\"done\"} ") {
            wal_resets = Some(n.trim().parse()?);
        }
    }
    Ok(Scraped {
        commit: histogram(&text, "journeyd_commit_seconds")?,
        reset: histogram(&text, "journeyd_wal_reset_seconds")?,
        wal_resets,
    })
}

/// The histogram `name` of a Prometheus text; empty when the daemon has none of that name.
fn histogram(text: &str, name: &str) -> anyhow::Result<Histogram> {
    let mut out = Histogram::default();
    let (bucket, count) = (format!("{name}_bucket{{le=\""), format!("{name}_count "));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&bucket) {
            let (le, n) = rest.split_once("\"} ").context("bucket line")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            // Keyed by the bound's bits, which order like the bounds for positive floats.
            out.buckets.insert(le.to_bits(), (le, n.trim().parse()?));
        } else if let Some(n) = line.strip_prefix(&count) {
            out.count = n.trim().parse()?;
        }
    }
    Ok(out)
}

fn write_csv(path: &Path, slices: &[Slice]) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        w,
        "seconds,events,db_mib,wal_mib,events_per_s,p50_ms,p99_ms,max_ms,errors,commit_p99_ms,commit_max_ms,commits,wal_resets,reset_p99_ms,reset_max_ms,rss_mib"
    )?;
    for s in slices {
        writeln!(
            w,
            "{:.1},{},{:.1},{:.1},{:.0},{:.3},{:.3},{:.1},{},{},{},{},{},{},{},{}",
            s.seconds,
            s.events,
            s.db_mib,
            s.wal_mib,
            s.rate,
            s.p50,
            s.p99,
            s.max,
            s.errors,
            s.commit_p99,
            s.commit_max,
            s.commits,
            s.wal_resets.map_or(String::new(), |n| n.to_string()),
            s.reset_p99,
            s.reset_max,
            s.rss_mib.map_or(String::new(), |n| n.to_string()),
        )?;
    }
    w.flush()?;
    Ok(())
}

/// Three stacked panels over the events in the log: request latency (p50, p99), throughput,
/// and the WAL's size. Plain SVG, no plotting dependency.
fn plot(slices: &[Slice], s: &Settings) -> String {
    const W: f64 = 900.0;
    const PANEL: f64 = 200.0;
    const LEFT: f64 = 70.0;
    const TOP: f64 = 40.0;
    const GAP: f64 = 50.0;
    let x_max = slices.last().map_or(1.0, |s| s.events as f64).max(1.0);
    let x = |events: u64| LEFT + (W - LEFT - 20.0) * events as f64 / x_max;
    type Series<'a> = (&'a str, &'a str, fn(&Slice) -> f64);
    let panels: [(&str, Vec<Series>); 3] = [
        (
            "request latency, ms",
            vec![("p99", "#d62728", |s| s.p99), ("p50", "#1f77b4", |s| s.p50)],
        ),
        ("events/s", vec![("events/s", "#2ca02c", |s| s.rate)]),
        ("WAL, MiB", vec![("WAL", "#9467bd", |s| s.wal_mib)]),
    ];
    let height = TOP + 3.0 * (PANEL + GAP) + 20.0;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="14">journeyd soak: {} connections, new journey per request; x: events in the log (millions)</text>
"#,
        s.connections
    );
    for (i, (title, series)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let bottom = top + PANEL;
        let y_max = slices
            .iter()
            .flat_map(|sl| series.iter().map(move |(_, _, f)| f(sl)))
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.1;
        let y = |v: f64| bottom - PANEL * v / y_max;
        out += &format!(
            r##"<text x="{LEFT}" y="{}">{title}</text>
<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#444"/>
<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}" stroke="#444"/>
"##,
            top - 6.0,
            W - 20.0
        );
        for tick in 0..=4 {
            let v = y_max * f64::from(tick) / 4.0;
            out += &format!(
                r##"<text x="{}" y="{}" text-anchor="end">{}</text><line x1="{LEFT}" y1="{1}" x2="{}" y2="{1}" stroke="#eee"/>
"##,
                LEFT - 6.0,
                y(v),
                if v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                },
                W - 20.0
            );
        }
        for tick in 0..=5 {
            let events = (x_max * f64::from(tick) / 5.0) as u64;
            out += &format!(
                r#"<text x="{}" y="{}" text-anchor="middle">{:.1}</text>
"#,
                x(events),
                bottom + 16.0,
                events as f64 / 1e6
            );
        }
        for (j, (name, colour, f)) in series.iter().enumerate() {
            let points: Vec<String> = slices
                .iter()
                .map(|sl| format!("{:.1},{:.1}", x(sl.events), y(f(sl))))
                .collect();
            out += &format!(
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>
<text x="{}" y="{}" fill="{colour}">{name}</text>
"#,
                points.join(" "),
                W - 80.0,
                top + 14.0 + 14.0 * j as f64
            );
        }
    }
    out += "</svg>\n";
    out
}
