//! Disk use per event: each table and index of a journeyd database, from SQLite's `dbstat`
//! table, divided by the events in the log. What `docs/BENCHMARKS.md` ("Disk per event") and
//! the monthly estimate in `docs/operations.md` come from.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};

/// The part of the database a table or index belongs to.
fn part(table: &str) -> &'static str {
    match table {
        "events" | "event_counts" => "events (rows, payloads, identity and stream-key indexes)",
        "deliveries" => "deliveries",
        "quarantine" => "quarantine",
        "checkpoints" | "snapshot_counts" => "checkpoints and counts",
        t if ["journeys", "members", "users", "resources"]
            .iter()
            .any(|p| t.starts_with(p)) =>
        {
            "snapshots (rows and their indexes)"
        }
        _ => "SQLite's own (schema, free pages)",
    }
}

pub(crate) fn run(db: &Path) -> anyhow::Result<()> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", db.display()))?;
    let events: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    anyhow::ensure!(events > 0, "{} has no events", db.display());
    // `dbstat` names each b-tree; an index's table comes from the schema.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    {
        let mut stmt = conn.prepare("SELECT name, tbl_name FROM sqlite_schema")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (name, table) = row?;
            owner.insert(name, table);
        }
    }
    let mut by_tree: Vec<(String, i64)> = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY sum(pgsize) DESC",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            by_tree.push(row?);
        }
    }
    let file = std::fs::metadata(db)?.len();
    let freelist: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let per = |bytes: i64| bytes as f64 / events as f64;
    println!(
        "{} events, file {:.1} MiB, {:.0} bytes per event ({} free pages)",
        events,
        file as f64 / (1024.0 * 1024.0),
        file as f64 / events as f64,
        freelist
    );
    println!();
    println!("| table or index | MiB | bytes per event |");
    println!("|---|---|---|");
    let mut parts: BTreeMap<&str, i64> = BTreeMap::new();
    for (name, bytes) in &by_tree {
        let table = owner.get(name).map_or(name.as_str(), String::as_str);
        *parts.entry(part(table)).or_default() += bytes;
        println!(
            "| {name} | {:.1} | {:.0} |",
            *bytes as f64 / (1024.0 * 1024.0),
            per(*bytes)
        );
    }
    *parts.entry(part("")).or_default() += freelist * page;
    println!();
    println!("| part | bytes per event | share |");
    println!("|---|---|---|");
    let total: i64 = parts.values().sum();
    for (name, bytes) in &parts {
        println!(
            "| {name} | {:.0} | {:.0}% |",
            per(*bytes),
            *bytes as f64 * 100.0 / total.max(1) as f64
        );
    }
    Ok(())
}
