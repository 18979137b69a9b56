//! Read-only commands: `events`, `stats`, `quarantine list`, `backup`.

use std::path::Path;

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use events::timestamp::format_millis;
use serde::Serialize;
use store::{JourneyFilter, Projection, Reader};

use crate::cli::{EventsArgs, JourneysArgs};
use crate::output::{
    EventsPage, JourneysPage, Output, SnapshotJson, main_key, next_cursor, pretty, table,
};

pub(crate) fn events(db: &Path, args: &EventsArgs, out: &Output) -> anyhow::Result<()> {
    let reader = Reader::open(db)?;
    let limit = args.limit as usize;
    let records = reader.events(args.after, limit)?;
    if out.json {
        return out.json(&EventsPage::new(&records, limit)?);
    }
    let next_after = next_cursor(&records, limit, |r| r.seq);
    let mut t = table(&[
        "SEQ", "KIND", "SOURCE", "KEY", "OCCURRED", "RECEIVED", "EVENT ID",
    ]);
    for r in &records {
        t.add_row(vec![
            r.seq.to_string(),
            r.kind.clone(),
            r.source.clone(),
            main_key(&r.keys).to_owned(),
            r.occurred_at.map(format_millis).unwrap_or_default(),
            format_millis(r.received_at),
            r.event_id.to_string(),
        ]);
    }
    out.text(t)?;
    match next_after {
        Some(seq) => out.text(format_args!("(more: journeyd events --after {seq})")),
        None => out.text(format_args!(
            "({})",
            crate::output::counted(records.len() as u64, "event", "events")
        )),
    }
}

/// The `stats` document: the same as `GET /v1/stats` (docs/contract.md section 8), then the log's
/// breakdown.
#[derive(Serialize)]
pub(crate) struct Stats {
    events: i64,
    journeys: JourneyCounts,
    members: i64,
    users: i64,
    resources: i64,
    unknown: i64,
    quarantined: i64,
    log_head: i64,
    projector: ProjectorStats,
    deliveries: i64,
    by_source: BTreeMap<String, i64>,
    by_kind: BTreeMap<String, i64>,
}

#[derive(Serialize)]
struct JourneyCounts {
    total: i64,
    by_status: BTreeMap<String, i64>,
}

#[derive(Serialize)]
struct ProjectorStats {
    checkpoint: i64,
    lag: i64,
}

/// The stats document from one reader.
pub(crate) fn stats_document(reader: &Reader) -> anyhow::Result<Stats> {
    // One snapshot, so that the counts, the head and the checkpoint agree.
    let (log, counts, checkpoints) =
        reader.consistent(|r| Ok((r.stats()?, r.projection_counts()?, r.checkpoints()?)))?;
    let checkpoint = checkpoints.iter().map(|c| c.seq).min().unwrap_or(0);
    let by_status: BTreeMap<String, i64> = counts.journeys_by_status.into_iter().collect();
    let stats = Stats {
        events: log.events,
        journeys: JourneyCounts {
            total: by_status.values().sum(),
            by_status,
        },
        members: counts.members,
        users: counts.users,
        resources: counts.resources,
        unknown: log.unknown,
        quarantined: log.quarantined,
        log_head: log.log_head,
        projector: ProjectorStats {
            checkpoint,
            lag: (log.log_head - checkpoint).max(0),
        },
        deliveries: log.deliveries,
        by_source: log.by_source,
        by_kind: log.by_kind,
    };
    Ok(stats)
}

pub(crate) fn stats(db: &Path, out: &Output) -> anyhow::Result<()> {
    let stats = stats_document(&Reader::open(db)?)?;
    if out.json {
        return out.json(&stats);
    }
    let mut t = table(&["", "COUNT"]);
    let mut row = |name: String, n: i64| {
        t.add_row(vec![name, n.to_string()]);
    };
    row("events".into(), stats.events);
    for (source, n) in &stats.by_source {
        row(format!("  from {source}"), *n);
    }
    for (kind, n) in &stats.by_kind {
        row(format!("  {kind}"), *n);
    }
    row("unknown".into(), stats.unknown);
    row("quarantined bodies".into(), stats.quarantined);
    row("deliveries".into(), stats.deliveries);
    row("journeys".into(), stats.journeys.total);
    for (status, n) in &stats.journeys.by_status {
        row(format!("  {status}"), *n);
    }
    row("members".into(), stats.members);
    row("users".into(), stats.users);
    row("resources".into(), stats.resources);
    row("log head (seq)".into(), stats.log_head);
    row("projector checkpoint".into(), stats.projector.checkpoint);
    row("projector lag".into(), stats.projector.lag);
    out.text(t)
}

/// `journey`, `member`, `user`, `resource`: one snapshot.
pub(crate) fn snapshot(
    db: &Path,
    projection: Projection,
    key: &str,
    out: &Output,
) -> anyhow::Result<()> {
    let reader = Reader::open(db)?;
    let Some(s) = reader.snapshot(projection, key)? else {
        let what = match projection {
            Projection::Journeys => "journey",
            Projection::Members => "member",
            Projection::Users => "user",
            Projection::Resources => "resource",
        };
        bail!("no {what} {key}");
    };
    if out.json {
        return out.json(&SnapshotJson::new(&s)?);
    }
    out.text(format_args!(
        "{} {}  ({}, last seq {}, updated {})",
        projection.name().trim_end_matches('s'),
        s.key,
        crate::output::counted(u64::try_from(s.event_count).unwrap_or(0), "event", "events"),
        s.last_seq,
        format_millis(s.updated_at)
    ))?;
    out.text(pretty(&s.state))
}

pub(crate) fn journeys(db: &Path, args: &JourneysArgs, out: &Output) -> anyhow::Result<()> {
    let reader = Reader::open(db)?;
    let limit = args.limit as usize;
    let filter = JourneyFilter {
        status: args.status.clone(),
        journey_id: args.journey_id.clone(),
        customer_reference: args.customer_reference.clone(),
        after: args.after.clone(),
        limit,
    };
    let items = reader.journeys(&filter)?;
    if out.json {
        return out.json(&JourneysPage::new(&items, limit)?);
    }
    let next = next_cursor(&items, limit, |s| s.key.clone());
    let mut t = table(&[
        "CORRELATION ID",
        "STATUS",
        "JOURNEY",
        "CUSTOMER REF",
        "LAST ACTIVITY",
        "EVENTS",
    ]);
    for s in &items {
        let v: serde_json::Value = serde_json::from_str(&s.state).unwrap_or_default();
        let field = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        t.add_row(vec![
            s.key.clone(),
            field("status"),
            field("journey_id"),
            field("customer_reference"),
            field("last_occurred_at"),
            s.event_count.to_string(),
        ]);
    }
    out.text(t)?;
    match next {
        Some(cursor) => out.text(format_args!("(more: journeyd journeys --after {cursor})")),
        None => out.text(format_args!(
            "({})",
            crate::output::counted(items.len() as u64, "journey", "journeys")
        )),
    }
}

pub(crate) fn quarantine_list(db: &Path, out: &Output) -> anyhow::Result<()> {
    let entries = Reader::open(db)?.quarantine()?;
    if out.json {
        let list: Vec<_> = entries
            .iter()
            .map(crate::output::QuarantineJson::new)
            .collect();
        return out.json(&list);
    }
    let mut t = table(&["ID", "FIRST RECEIVED", "TIMES", "SOURCE", "SIZE", "REASON"]);
    for e in &entries {
        t.add_row(vec![
            e.id.to_string(),
            format_millis(e.received_at),
            e.times_received.to_string(),
            e.source.clone(),
            e.size.to_string(),
            e.reason.clone(),
        ]);
    }
    out.text(t)?;
    out.text(format_args!("({} quarantined)", entries.len()))
}

/// `quarantine show ID`: the entry and its kept headers, or with `body` the exact bytes on
/// stdout, or with `output` the bytes in a new owner-only file.
pub(crate) fn quarantine_show(
    db: &Path,
    id: i64,
    body: bool,
    output: Option<&Path>,
    out: &Output,
) -> anyhow::Result<()> {
    let Some((entry, headers, bytes)) = Reader::open(db)?.quarantined(id)? else {
        anyhow::bail!("no quarantined body {id} (see journeyd quarantine list)");
    };
    if body {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes)?;
        return Ok(stdout.flush()?);
    }
    if let Some(path) = output {
        use std::io::Write;
        let mut file = store::owner_only(std::fs::OpenOptions::new().write(true).create_new(true))
            .open(path)
            .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        return out.text(format_args!(
            "wrote {} to {}",
            crate::output::counted(bytes.len() as u64, "byte", "bytes"),
            path.display()
        ));
    }
    let headers: serde_json::Value =
        serde_json::from_str(&headers).unwrap_or(serde_json::Value::String(headers));
    if out.json {
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(flatten)]
            entry: crate::output::QuarantineJson<'a>,
            headers: &'a serde_json::Value,
        }
        return out.json(&Shown {
            entry: crate::output::QuarantineJson::new(&entry),
            headers: &headers,
        });
    }
    out.text(format_args!(
        "quarantined body {id}  ({}, {}, received {} times, first {}, last {})\nreason: {}\nheaders: {headers}\n(the bytes: journeyd quarantine show {id} --body)",
        entry.source,
        crate::output::counted(u64::try_from(entry.size).unwrap_or(0), "byte", "bytes"),
        entry.times_received,
        format_millis(entry.received_at),
        format_millis(entry.last_received_at),
        entry.reason,
    ))
}

/// What `backup` wrote.
#[derive(Serialize)]
struct BackupReport {
    path: String,
    bytes: u64,
    events: i64,
    log_head: i64,
    quarantined: i64,
}

pub(crate) fn backup(db: &Path, dest: &Path, out: &Output) -> anyhow::Result<()> {
    Reader::open(db)?.backup_into(dest)?;
    let copy = Reader::open(dest)?.stats()?;
    let report = BackupReport {
        path: dest.display().to_string(),
        bytes: std::fs::metadata(dest)?.len(),
        events: copy.events,
        log_head: copy.log_head,
        quarantined: copy.quarantined,
    };
    if out.json {
        return out.json(&report);
    }
    out.text(format_args!(
        "backed up to {}: {} (log head {}), {} quarantined, {} bytes",
        report.path,
        crate::output::counted(u64::try_from(report.events).unwrap_or(0), "event", "events"),
        report.log_head,
        crate::output::counted(
            u64::try_from(report.quarantined).unwrap_or(0),
            "body",
            "bodies"
        ),
        report.bytes
    ))
}
