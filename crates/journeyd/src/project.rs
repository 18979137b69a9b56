//! Keeping snapshots current from the CLI: after `import` and `quarantine replay`, and `rebuild`.

use std::io::IsTerminal;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use projector::{CatchUp, Config, Runner};
use store::{Projection, Store};

use crate::cli::Which;
use crate::output::Output;

/// The projector's configuration from the command line.
pub(crate) fn config(completing_stages: &[String], cache_mib: usize) -> Config {
    Config {
        completing_stages: completing_stages
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        cache_bytes: cache_mib.saturating_mul(1 << 20),
        ..Config::default()
    }
}

fn runner(store: &Store, config: &Config) -> anyhow::Result<Runner> {
    Ok(Runner::new(store.writer(), store.reader()?, config.clone()))
}

/// Folds everything appended so far into the snapshots: up to the log head as it is now, so
/// that a daemon's ingest beside this command does not keep it chasing a moving head.
pub(crate) fn catch_up(store: &Store, config: &Config) -> anyhow::Result<CatchUp> {
    let head = store.reader()?.head()?;
    runner(store, config)?
        .catch_up_to(head)
        .context("projecting the log into snapshots failed")
}

pub(crate) fn rebuild(
    store: &Store,
    config: &Config,
    which: Which,
    out: &Output,
) -> anyhow::Result<()> {
    let projections: Vec<Projection> = match which {
        Which::Journeys => vec![Projection::Journeys],
        Which::Members => vec![Projection::Members],
        Which::Users => vec![Projection::Users],
        Which::Resources => vec![Projection::Resources],
        Which::All => Projection::ALL.to_vec(),
    };
    let mut runner = runner(store, config)?;
    let head = store.reader()?.head()?;
    let mut done = Vec::new();
    for p in projections {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(head.max(0) as u64), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{prefix:>9} {bar:40} {pos}/{len} events {per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                )
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix(p.name());
        let started = std::time::Instant::now();
        let r = runner
            .rebuild(p, &mut |n| bar.set_position(n))
            .with_context(|| format!("rebuilding {} failed", p.name()))?;
        bar.finish_and_clear();
        done.push((r, started.elapsed()));
    }
    // Events appended while rebuilding are folded now, up to the head as it is now (a daemon
    // beside it may go on appending, and projects those itself).
    let head_now = store.reader()?.head()?;
    let caught = runner
        .catch_up_to(head_now)
        .context("catching up after the rebuild failed")?;
    if out.json {
        #[derive(serde::Serialize)]
        struct Item {
            projection: &'static str,
            swapped: bool,
            head: i64,
            events: u64,
            snapshots: u64,
            seconds: f64,
        }
        let items: Vec<Item> = done
            .iter()
            .map(|(r, t)| Item {
                projection: r.projection.name(),
                swapped: r.swapped,
                head: r.head,
                events: r.events,
                snapshots: r.keys,
                seconds: t.as_secs_f64(),
            })
            .collect();
        return out.json(&serde_json::json!({"rebuilt": items, "checkpoint": caught.checkpoint}));
    }
    for (r, t) in &done {
        if !r.swapped {
            out.text(format_args!(
                "{}: another rebuild of it finished first; its snapshots stand",
                r.projection.name()
            ))?;
            continue;
        }
        out.text(format_args!(
            "rebuilt {}: {} {} from {} {} up to seq {} in {:.2}s",
            r.projection.name(),
            r.keys,
            if r.keys == 1 { "snapshot" } else { "snapshots" },
            r.events,
            if r.events == 1 { "event" } else { "events" },
            r.head,
            t.as_secs_f64()
        ))?;
    }
    out.text(format_args!(
        "snapshots are current at seq {}",
        caught.checkpoint
    ))
}
