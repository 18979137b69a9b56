//! The user projection (key `user_guid`): docs/contract.md section 6, "User".

use std::collections::{BTreeMap, BTreeSet};

use events::Kind;
use events::timestamp::Millis;
use serde::Serialize;

use crate::fold::{Apply, Input, Lww, Stamp, keep_max, keep_min, text};
use crate::render::time;
use crate::resource::{Record, RecordJson, record};

/// User state built from order-free parts.
#[derive(Debug, Clone, Default)]
pub struct User {
    user_id: Lww<String>,
    member_guids: BTreeSet<String>,
    goals: BTreeMap<String, Lww<Record>>,
    analytics: Analytics,
    last_occurred_at: Option<Millis>,
}

#[derive(Debug, Clone, Default)]
struct Analytics {
    events: u64,
    sessions: BTreeSet<String>,
    by_type: BTreeMap<String, u64>,
    first_at: Option<Millis>,
    last_at: Option<Millis>,
}

impl Apply for User {
    fn apply(&mut self, e: &Input<'_>) {
        let p = e.payload;
        if let Some(member) = &e.keys.member_guid {
            self.member_guids.insert(member.clone());
        }
        let stamp = Stamp::time(e.clock, e.id);
        match e.kind {
            Kind::MemberData => {
                self.user_id.offer_some(stamp, text(p.get("user_id")));
                keep_max(&mut self.last_occurred_at, e.occurred_at);
            }
            Kind::Job => {
                self.user_id
                    .offer_some(stamp, p.get("job").and_then(|j| text(j.get("user_id"))));
                keep_max(&mut self.last_occurred_at, e.occurred_at);
            }
            Kind::Analytics => {
                self.user_id.offer_some(stamp, text(p.get("user_id")));
                keep_max(&mut self.last_occurred_at, e.occurred_at);
                let a = &mut self.analytics;
                a.events += 1;
                if let Some(session) = text(p.get("session_id")) {
                    a.sessions.insert(session);
                }
                if let Some(kind) = text(p.get("type")) {
                    *a.by_type.entry(kind).or_default() += 1;
                }
                keep_min(&mut a.first_at, e.occurred_at);
                keep_max(&mut a.last_at, e.occurred_at);
            }
            Kind::Resource => {
                if let Some((stamp, r)) = record(e)
                    && r.resource_type == "goal"
                {
                    self.goals
                        .entry(r.guid.clone())
                        .or_default()
                        .offer(stamp, || r);
                }
            }
            _ => {}
        }
    }
}

#[derive(Serialize)]
struct StateJson<'a> {
    user_guid: &'a str,
    user_id: Option<&'a str>,
    member_guids: &'a BTreeSet<String>,
    goals: Vec<RecordJson<'a>>,
    analytics: AnalyticsJson<'a>,
    last_occurred_at: Option<String>,
    event_count: i64,
}

#[derive(Serialize)]
struct AnalyticsJson<'a> {
    events: u64,
    sessions: usize,
    by_type: &'a BTreeMap<String, u64>,
    first_at: Option<String>,
    last_at: Option<String>,
}

/// What a user snapshot needs besides its `state`.
pub struct Rendered {
    /// The `state` document.
    pub state: String,
    /// `last_occurred_at`.
    pub last_activity: Option<Millis>,
}

/// Renders the `state` document.
pub fn render(key: &str, u: &User, event_count: i64) -> Rendered {
    let a = &u.analytics;
    let doc = StateJson {
        user_guid: key,
        user_id: u.user_id.get().map(String::as_str),
        member_guids: &u.member_guids,
        goals: u
            .goals
            .values()
            .filter_map(|g| g.get().map(Record::goal_json))
            .collect(),
        analytics: AnalyticsJson {
            events: a.events,
            sessions: a.sessions.len(),
            by_type: &a.by_type,
            first_at: time(a.first_at),
            last_at: time(a.last_at),
        },
        last_occurred_at: time(u.last_occurred_at),
        event_count,
    };
    Rendered {
        state: crate::render::to_json(&doc),
        last_activity: u.last_occurred_at,
    }
}
