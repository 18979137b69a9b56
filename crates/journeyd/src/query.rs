//! Read-only commands: `events`, `stats`, `quarantine list`.

use std::path::Path;

use events::timestamp::format_millis;
use serde::Serialize;
use store::Reader;

use crate::cli::EventsArgs;
use crate::output::{EventJson, Output, main_key, table};

pub(crate) fn events(db: &Path, args: &EventsArgs, out: &Output) -> anyhow::Result<()> {
    let reader = Reader::open(db)?;
    let limit = args.limit as usize;
    let records = reader.events(args.after, limit)?;
    let next_after = if records.len() == limit {
        records.last().map(|r| r.seq)
    } else {
        None
    };
    if out.json {
        #[derive(Serialize)]
        struct Page<'a> {
            events: Vec<EventJson<'a>>,
            next_after: Option<i64>,
        }
        let events = records
            .iter()
            .map(EventJson::new)
            .collect::<anyhow::Result<_>>()?;
        return out.json(&Page { events, next_after });
    }
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
        None => out.text(format_args!("({} events)", records.len())),
    }
}

pub(crate) fn stats(db: &Path, out: &Output) -> anyhow::Result<()> {
    let stats = Reader::open(db)?.stats()?;
    if out.json {
        return out.json(&stats);
    }
    let mut t = table(&["", "COUNT"]);
    t.add_row(vec!["events".to_owned(), stats.events.to_string()]);
    for (source, n) in &stats.by_source {
        t.add_row(vec![format!("  from {source}"), n.to_string()]);
    }
    for (kind, n) in &stats.by_kind {
        t.add_row(vec![format!("  {kind}"), n.to_string()]);
    }
    t.add_row(vec!["unknown".to_owned(), stats.unknown.to_string()]);
    t.add_row(vec![
        "quarantined bodies".to_owned(),
        stats.quarantined.to_string(),
    ]);
    t.add_row(vec!["deliveries".to_owned(), stats.deliveries.to_string()]);
    t.add_row(vec![
        "log head (seq)".to_owned(),
        stats.log_head.to_string(),
    ]);
    out.text(t)
}

pub(crate) fn quarantine_list(db: &Path, out: &Output) -> anyhow::Result<()> {
    let entries = Reader::open(db)?.quarantine()?;
    if out.json {
        #[derive(Serialize)]
        struct Entry<'a> {
            id: i64,
            received_at: String,
            source: &'a str,
            reason: &'a str,
            size: i64,
            times_received: i64,
            last_received_at: String,
        }
        let list: Vec<Entry<'_>> = entries
            .iter()
            .map(|e| Entry {
                id: e.id,
                received_at: format_millis(e.received_at),
                source: &e.source,
                reason: &e.reason,
                size: e.size,
                times_received: e.times_received,
                last_received_at: format_millis(e.last_received_at),
            })
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
