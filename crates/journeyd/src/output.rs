//! Rendering for people (tables) and machines (compact JSON with keys in a fixed order).

use std::io::Write;

use anyhow::Context;
use comfy_table::{ContentArrangement, Table, presets};
use events::timestamp::format_millis;
use serde::Serialize;
use serde_json::value::RawValue;
use store::EventRecord;

/// Where and how command output goes.
pub(crate) struct Output {
    pub(crate) json: bool,
}

impl Output {
    /// Writes `value` as one line of compact JSON on stdout.
    pub(crate) fn json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, value).context("cannot write to stdout")?;
        writeln!(stdout).context("cannot write to stdout")?;
        Ok(())
    }

    /// Writes human-readable text on stdout.
    pub(crate) fn text(&self, text: impl std::fmt::Display) -> anyhow::Result<()> {
        writeln!(std::io::stdout().lock(), "{text}").context("cannot write to stdout")
    }
}

/// A table with a header row, sized to the terminal.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// An event record as the API and `--json` show it (docs/contract.md section 8).
#[derive(Serialize)]
pub(crate) struct EventJson<'a> {
    seq: i64,
    event_id: String,
    source: &'a str,
    kind: &'a str,
    keys: &'a events::Keys,
    occurred_at: Option<String>,
    received_at: String,
    payload: Box<RawValue>,
}

impl<'a> EventJson<'a> {
    pub(crate) fn new(r: &'a EventRecord) -> anyhow::Result<Self> {
        Ok(EventJson {
            seq: r.seq,
            event_id: r.event_id.to_string(),
            source: &r.source,
            kind: &r.kind,
            keys: &r.keys,
            occurred_at: r.occurred_at.map(format_millis),
            received_at: format_millis(r.received_at),
            // Every stored payload was parsed as JSON before it was appended.
            payload: RawValue::from_string(r.payload.clone())
                .with_context(|| format!("event {} has a payload that is not JSON", r.seq))?,
        })
    }
}

/// The one stream key worth showing in a table row.
pub(crate) fn main_key(keys: &events::Keys) -> &str {
    keys.correlation_id
        .as_deref()
        .or(keys.resource.as_deref())
        .or(keys.member_guid.as_deref())
        .or(keys.user_guid.as_deref())
        .unwrap_or("")
}

/// Where the page after `items` starts: past the last of them when the page is full (`limit`
/// items), none when it is not, since the listing ended.
pub(crate) fn next_cursor<T, K>(items: &[T], limit: usize, key: impl Fn(&T) -> K) -> Option<K> {
    (items.len() == limit)
        .then(|| items.last().map(key))
        .flatten()
}

/// A page of the log, `{"events", "next_after"}`, as `GET /v1/events`, a journey's history and
/// `journeyd events --json` show it. Serialized as it is: through `serde_json::json!` the raw
/// payloads would be parsed into values, which reorders their keys and rounds their numbers.
#[derive(Serialize)]
pub(crate) struct EventsPage<'a> {
    events: Vec<EventJson<'a>>,
    next_after: Option<i64>,
}

impl<'a> EventsPage<'a> {
    /// The page of `records`, a full page (`limit` of them) pointing past its last one.
    pub(crate) fn new(records: &'a [EventRecord], limit: usize) -> anyhow::Result<Self> {
        Ok(EventsPage {
            events: records
                .iter()
                .map(EventJson::new)
                .collect::<anyhow::Result<_>>()?,
            next_after: next_cursor(records, limit, |r| r.seq),
        })
    }
}

/// A page of journeys, `{"items", "next"}`, as `GET /v1/journeys` and `journeyd journeys --json`
/// show it. Serialized as it is, for the reason given at [`EventsPage`].
#[derive(Serialize)]
pub(crate) struct JourneysPage<'a> {
    items: Vec<SnapshotJson<'a>>,
    next: Option<String>,
}

impl<'a> JourneysPage<'a> {
    /// The page of `items`, a full page (`limit` of them) pointing past its last key.
    pub(crate) fn new(items: &'a [store::Snapshot], limit: usize) -> anyhow::Result<Self> {
        Ok(JourneysPage {
            items: items
                .iter()
                .map(SnapshotJson::new)
                .collect::<anyhow::Result<_>>()?,
            next: next_cursor(items, limit, |s| s.key.clone()),
        })
    }
}

/// A snapshot as the API and `--json` show it: `{"key", "state", "meta"}` (docs/contract.md section 6).
#[derive(Serialize)]
pub(crate) struct SnapshotJson<'a> {
    key: &'a str,
    state: Box<RawValue>,
    meta: Meta,
}

#[derive(Serialize)]
struct Meta {
    event_count: i64,
    last_seq: i64,
    updated_at: String,
}

impl<'a> SnapshotJson<'a> {
    pub(crate) fn new(s: &'a store::Snapshot) -> anyhow::Result<Self> {
        Ok(SnapshotJson {
            key: &s.key,
            state: RawValue::from_string(s.state.clone())
                .with_context(|| format!("the snapshot of {} is not JSON", s.key))?,
            meta: Meta {
                event_count: s.event_count,
                last_seq: s.last_seq,
                updated_at: format_millis(s.updated_at),
            },
        })
    }
}

/// Indented JSON that keeps the keys in the order they are stored (the documented order).
pub(crate) fn pretty(json: &str) -> String {
    fn go(v: &events::json::Value<'_>, depth: usize, out: &mut String) {
        use events::json::Value;
        let pad = |n: usize| "  ".repeat(n);
        match v {
            Value::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, e) in items.iter().enumerate() {
                    out.push_str(&pad(depth + 1));
                    go(&e.value, depth + 1, out);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(depth));
                out.push(']');
            }
            Value::Object(members) if !members.is_empty() => {
                out.push_str("{\n");
                for (i, (k, v)) in members.iter().enumerate() {
                    out.push_str(&pad(depth + 1));
                    events::json::write_string(out, k);
                    out.push_str(": ");
                    go(v, depth + 1, out);
                    out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(depth));
                out.push('}');
            }
            other => other.write_canonical(out),
        }
    }
    match events::json::parse(json) {
        Ok(v) => {
            let mut out = String::new();
            go(&v, 0, &mut out);
            out
        }
        Err(_) => json.to_owned(),
    }
}

/// `n` and the noun in the number `n` asks for: `1 journey`, `2 journeys`, `0 journeys`.
pub(crate) fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A quarantine entry as `quarantine list --json` and `GET /v1/quarantine` show it: the
/// contract's fields, then how often the same bytes came from the same source and when last.
#[derive(serde::Serialize)]
pub(crate) struct QuarantineJson<'a> {
    id: i64,
    received_at: String,
    source: &'a str,
    reason: &'a str,
    size: i64,
    times_received: i64,
    last_received_at: String,
}

impl<'a> QuarantineJson<'a> {
    pub(crate) fn new(e: &'a store::QuarantineEntry) -> QuarantineJson<'a> {
        QuarantineJson {
            id: e.id,
            received_at: events::timestamp::format_millis(e.received_at),
            source: &e.source,
            reason: &e.reason,
            size: e.size,
            times_received: e.times_received,
            last_received_at: events::timestamp::format_millis(e.last_received_at),
        }
    }
}

/// A page of the quarantine, `{"items", "next"}`, as `GET /v1/quarantine` shows it: `next` is
/// the `after` of the next page, or null after the last.
#[derive(serde::Serialize)]
pub(crate) struct QuarantinePage<'a> {
    items: Vec<QuarantineJson<'a>>,
    next: Option<i64>,
}

impl<'a> QuarantinePage<'a> {
    /// The page of `entries`, a full page (`limit` of them) pointing past its last id.
    pub(crate) fn new(entries: &'a [store::QuarantineEntry], limit: usize) -> Self {
        QuarantinePage {
            items: entries.iter().map(QuarantineJson::new).collect(),
            next: next_cursor(entries, limit, |e| e.id),
        }
    }
}
