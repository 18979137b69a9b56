//! The member projection (key `member_guid`): docs/contract.md section 6, "Member".

use std::collections::{BTreeMap, BTreeSet};

use events::Kind;
use events::timestamp::{Millis, format_millis, mx_time};
use rust_decimal::Decimal;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;

use crate::fold::{
    Apply, Input, Lww, Stamp, canonical_or_null, decimal, exact_sum, keep_max, text,
};
use crate::render::{raw, time};

/// Member state built from order-free parts.
#[derive(Debug, Clone, Default)]
pub struct Member {
    user_guid: Lww<String>,
    user_id: Lww<String>,
    aggregations: BTreeMap<String, Aggregation>,
    job: Lww<Job>,
    jobs_seen: BTreeSet<String>,
    connection_status: Lww<ConnectionStatus>,
    last_occurred_at: Option<Millis>,
}

/// Member-data events of one `type`. Counters are safe: a [`crate::fold::Fold`] applies each
/// distinct event once.
#[derive(Debug, Clone, Default)]
struct Aggregation {
    count: u64,
    last_completed_at: Option<Millis>,
    /// Each `*_count` field's exact sum, or `None` (unknown) once a term could not be summed.
    sums: BTreeMap<String, Option<Decimal>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Job {
    guid: Option<String>,
    status: String,
    status_name: Option<String>,
    is_authenticated: String,
    error_message: String,
    institution_guid: Option<String>,
    started_at: Option<Millis>,
    finished_at: Option<Millis>,
    updated_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
struct ConnectionStatus {
    status: Option<String>,
    status_id: String,
    message: Option<String>,
    received_at: Millis,
}

impl Apply for Member {
    fn apply(&mut self, e: &Input<'_>) {
        let stamp = Stamp::of(e);
        let p = e.payload;
        self.user_guid.offer_some(stamp, e.keys.user_guid.clone());
        match e.kind {
            Kind::MemberData => {
                self.user_id.offer_some(stamp, text(p.get("user_id")));
                keep_max(&mut self.last_occurred_at, e.occurred_at);
                let Some(kind) = text(p.get("type")) else {
                    return;
                };
                let agg = self.aggregations.entry(kind).or_default();
                agg.count += 1;
                keep_max(&mut agg.last_completed_at, e.occurred_at);
                if let events::json::Value::Object(members) = p {
                    for (name, value) in members {
                        let Some(base) = name.strip_suffix("_count").filter(|b| !b.is_empty())
                        else {
                            continue;
                        };
                        if matches!(value, events::json::Value::Null) {
                            continue; // no count sent
                        }
                        let sum = agg
                            .sums
                            .entry(base.to_owned())
                            .or_insert(Some(Decimal::ZERO));
                        *sum = sum.zip(count(value)).and_then(|(s, n)| exact_sum(s, n));
                    }
                }
            }
            Kind::Job => {
                let Some(job) = p.get("job") else { return };
                keep_max(&mut self.last_occurred_at, e.occurred_at);
                self.user_id.offer_some(stamp, text(job.get("user_id")));
                if let Some(guid) = text(job.get("guid")) {
                    self.jobs_seen.insert(guid);
                }
                self.job.offer(stamp, || Job {
                    guid: text(job.get("guid")),
                    status: canonical_or_null(job.get("status")),
                    status_name: text(job.get("status_name")),
                    is_authenticated: canonical_or_null(job.get("is_authenticated")),
                    error_message: canonical_or_null(job.get("error_message")),
                    // MX's page spells it `insitution_guid`; accept both.
                    institution_guid: text(job.get("institution_guid"))
                        .or_else(|| text(job.get("insitution_guid"))),
                    started_at: job.get("started_at").and_then(mx_time),
                    finished_at: job.get("finished_at").and_then(mx_time),
                    updated_at: job.get("updated_at").and_then(mx_time),
                });
            }
            Kind::ConnectionStatus => {
                self.user_id.offer_some(stamp, text(p.get("user_id")));
                // The one field ordered by arrival: the provider sends no timestamp.
                self.connection_status
                    .offer(Stamp::arrival(e.seq, e.id), || ConnectionStatus {
                        status: text(p.get("connection_status")),
                        status_id: canonical_or_null(p.get("connection_status_id")),
                        message: text(p.get("connection_status_message")),
                        received_at: e.received_at,
                    });
            }
            _ => {}
        }
    }
}

/// A count: a number, or a numeric string, that is not negative and that a 96-bit decimal holds
/// exactly. Anything else makes its sum unknown. With terms that are never negative, a partial
/// sum never needs more digits than the whole, so whether a sum is unknown does not depend on
/// the order the events are folded in: it is exactly when the sum of them all does not fit.
fn count(value: &events::json::Value<'_>) -> Option<Decimal> {
    decimal(Some(value)).filter(|n| *n >= Decimal::ZERO)
}

impl Serialize for Aggregation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2 + self.sums.len()))?;
        m.serialize_entry("count", &self.count)?;
        m.serialize_entry("last_completed_at", &time(self.last_completed_at))?;
        for (name, sum) in &self.sums {
            // An exact sum, shown as a JSON number with the largest scale of its terms.
            m.serialize_entry(name, &sum.map(|s| raw(&s.to_string())))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct StateJson<'a> {
    member_guid: &'a str,
    user_guid: Option<&'a str>,
    user_id: Option<&'a str>,
    aggregations: &'a BTreeMap<String, Aggregation>,
    job: Option<JobJson<'a>>,
    jobs_seen: usize,
    connection_status: Option<ConnectionJson<'a>>,
    last_occurred_at: Option<String>,
    event_count: i64,
}

#[derive(Serialize)]
struct JobJson<'a> {
    guid: Option<&'a str>,
    status: Box<RawValue>,
    status_name: Option<&'a str>,
    is_authenticated: Box<RawValue>,
    error_message: Box<RawValue>,
    institution_guid: Option<&'a str>,
    started_at: Option<String>,
    finished_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Serialize)]
struct ConnectionJson<'a> {
    status: Option<&'a str>,
    status_id: Box<RawValue>,
    message: Option<&'a str>,
    received_at: String,
}

/// What a member snapshot needs besides its `state`.
pub struct Rendered {
    /// The `state` document.
    pub state: String,
    /// Winning `user_guid`.
    pub user_guid: Option<String>,
    /// Latest connection status.
    pub connection_status: Option<String>,
    /// `last_occurred_at`.
    pub last_activity: Option<Millis>,
}

/// Renders the `state` document.
pub fn render(key: &str, m: &Member, event_count: i64) -> Rendered {
    let doc = StateJson {
        member_guid: key,
        user_guid: m.user_guid.get().map(String::as_str),
        user_id: m.user_id.get().map(String::as_str),
        aggregations: &m.aggregations,
        job: m.job.get().map(|j| JobJson {
            guid: j.guid.as_deref(),
            status: raw(&j.status),
            status_name: j.status_name.as_deref(),
            is_authenticated: raw(&j.is_authenticated),
            error_message: raw(&j.error_message),
            institution_guid: j.institution_guid.as_deref(),
            started_at: time(j.started_at),
            finished_at: time(j.finished_at),
            updated_at: time(j.updated_at),
        }),
        jobs_seen: m.jobs_seen.len(),
        connection_status: m.connection_status.get().map(|c| ConnectionJson {
            status: c.status.as_deref(),
            status_id: raw(&c.status_id),
            message: c.message.as_deref(),
            received_at: format_millis(c.received_at),
        }),
        last_occurred_at: time(m.last_occurred_at),
        event_count,
    };
    Rendered {
        state: crate::render::to_json(&doc),
        user_guid: m.user_guid.get().cloned(),
        connection_status: m.connection_status.get().and_then(|c| c.status.clone()),
        last_activity: m.last_occurred_at,
    }
}
