//! Splitting a delivery body into normalized events (docs/contract.md section 3).
//!
//! A body is judged once as a whole (UTF-8, JSON, depth): if it fails, it has no events and goes
//! to quarantine whole with a [`Rejection`]. If it is JSON, every element is judged on its own:
//! an element of no known shape becomes an event of kind `unknown`, never an error.

use std::fmt;

use crate::json::{self, JsonError, Value};
use crate::model::{Clock, Event, EventId, Keys, Kind, Source};
use crate::timestamp::{Millis, mx_time, parse_rfc3339};

/// Why a body cannot be split into events. Its `Display` is the quarantine reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Zero bytes, or only whitespace.
    Empty,
    /// Not UTF-8: the first invalid byte.
    NotUtf8 {
        /// Byte offset of the first byte that is not UTF-8.
        offset: usize,
    },
    /// Not JSON (including nesting deeper than [`json::MAX_DEPTH`]).
    NotJson(JsonError),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Empty => f.write_str("empty body"),
            Rejection::NotUtf8 { offset } => {
                write!(f, "not UTF-8: invalid byte at offset {offset}")
            }
            Rejection::NotJson(e) if e.message.starts_with("nesting deeper") => {
                write!(f, "too deep: {e}")
            }
            Rejection::NotJson(e) => write!(f, "not JSON: {e}"),
        }
    }
}

impl Rejection {
    /// The reason without a byte of the body (its `Display` may quote a token of it): what a
    /// log line may say of a body that holds payment and identity data.
    pub fn summary(&self) -> String {
        match self {
            Rejection::Empty => "empty body".to_owned(),
            Rejection::NotUtf8 { offset } => format!("not UTF-8 at offset {offset}"),
            Rejection::NotJson(e) => {
                let what = if e.message.starts_with("nesting deeper") {
                    "too deep"
                } else {
                    "not JSON"
                };
                format!("{what} at line {}, column {}", e.line, e.column)
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// Splits a body from `source` into events.
pub fn parse_delivery(source: Source, body: &[u8]) -> Result<Vec<Event>, Rejection> {
    let text = as_text(body)?;
    let doc = json::parse(text).map_err(Rejection::NotJson)?;
    Ok(split(source, text, &doc))
}

/// Splits a body whose source is not known, detecting it from its shape: an array with an
/// object that has `productId`, or one such object, is Mobile Journeys; anything else is MX.
/// A body that is not JSON is Mobile Journeys if its bytes contain `"productId"`.
pub fn parse_delivery_detect(body: &[u8]) -> (Source, Result<Vec<Event>, Rejection>) {
    let parsed =
        as_text(body).and_then(|text| Ok((text, json::parse(text).map_err(Rejection::NotJson)?)));
    match parsed {
        Ok((text, doc)) => {
            let source = detect(&doc);
            (source, Ok(split(source, text, &doc)))
        }
        Err(rejection) => {
            let mj = body.windows(11).any(|w| w == b"\"productId\"");
            (
                if mj {
                    Source::MobileJourneys
                } else {
                    Source::Mx
                },
                Err(rejection),
            )
        }
    }
}

fn as_text(body: &[u8]) -> Result<&str, Rejection> {
    let text = std::str::from_utf8(body).map_err(|e| Rejection::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    if text.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
        return Err(Rejection::Empty);
    }
    Ok(text)
}

fn detect(doc: &Value<'_>) -> Source {
    let is_mj = |v: &Value<'_>| v.get("productId").is_some();
    let mj = match doc {
        Value::Array(elements) => elements.iter().any(|e| is_mj(&e.value)),
        other => is_mj(other),
    };
    if mj {
        Source::MobileJourneys
    } else {
        Source::Mx
    }
}

fn split(source: Source, text: &str, doc: &Value<'_>) -> Vec<Event> {
    let one = |raw: &str, v: &Value<'_>| match source {
        Source::MobileJourneys => mobile_journeys_event(raw, v),
        Source::Mx => mx_event(raw, v),
    };
    match (source, doc) {
        (_, Value::Array(elements)) => elements.iter().map(|e| one(e.raw, &e.value)).collect(),
        (Source::Mx, Value::Object(members)) if members.len() == 1 && members[0].0 == "_json" => {
            match &members[0].1 {
                Value::Array(elements) => elements.iter().map(|e| one(e.raw, &e.value)).collect(),
                _ => vec![one(text.trim_matches([' ', '\t', '\n', '\r']), doc)],
            }
        }
        _ => vec![one(text.trim_matches([' ', '\t', '\n', '\r']), doc)],
    }
}

/// What a classifier found: everything of an event but its id and payload.
struct Found {
    kind: Kind,
    keys: Keys,
    clock: Clock,
    occurred_at: Option<Millis>,
}

impl Found {
    fn unknown() -> Found {
        Found {
            kind: Kind::Unknown,
            keys: Keys::default(),
            clock: Clock::Time { ms: None },
            occurred_at: None,
        }
    }

    fn timed(kind: Kind, keys: Keys, ms: Option<Millis>) -> Found {
        Found {
            kind,
            keys,
            clock: Clock::Time { ms },
            occurred_at: ms,
        }
    }

    fn into_event(self, source: Source, raw: &str, v: &Value<'_>, skip: Option<&str>) -> Event {
        let mut canonical = String::with_capacity(raw.len());
        v.write_canonical_skipping(&mut canonical, skip);
        Event {
            id: EventId::new(source, self.kind, &canonical),
            source,
            kind: self.kind,
            keys: self.keys,
            clock: self.clock,
            occurred_at: self.occurred_at,
            payload: raw.to_owned(),
        }
    }
}

/// A stream key: a non-empty string.
fn key(v: Option<&Value<'_>>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn mobile_journeys_event(raw: &str, v: &Value<'_>) -> Event {
    // `eventTime` is the provider's processing time: a redelivery may carry another one, so it
    // is not part of the identity (docs/contract.md section 4).
    classify_mobile_journeys(v)
        .unwrap_or_else(Found::unknown)
        .into_event(Source::MobileJourneys, raw, v, Some("eventTime"))
}

fn classify_mobile_journeys(v: &Value<'_>) -> Option<Found> {
    let kind = match v.get("eventId")?.as_str()? {
        "linkcreated" => Kind::LinkCreated,
        "sessioncreated" => Kind::SessionCreated,
        "paymentattempt" => Kind::PaymentAttempt,
        "documentgenerated" => Kind::DocumentGenerated,
        "stage" => Kind::Stage,
        _ => return None,
    };
    let data = v.get("data").filter(|d| d.is_object())?;
    let keys = Keys {
        correlation_id: Some(key(data.get("correlationId"))?),
        ..Keys::default()
    };
    let occurred = data
        .get("occurredAt")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339);
    Some(Found::timed(kind, keys, occurred))
}

fn mx_event(raw: &str, v: &Value<'_>) -> Event {
    classify_mx(v)
        .unwrap_or_else(Found::unknown)
        .into_event(Source::Mx, raw, v, None)
}

const ANALYTICS_TYPES: [&str; 4] = ["analyticsevent", "pageview", "screenview", "timedevent"];

fn classify_mx(v: &Value<'_>) -> Option<Found> {
    let Value::Object(members) = v else {
        return None;
    };
    let action = v.get("action").and_then(Value::as_str);
    let kind_name = v.get("type").and_then(Value::as_str);

    if action.is_none()
        && let Some(job) = v.get("job").filter(|j| j.is_object())
    {
        let keys = Keys {
            member_guid: key(job.get("member_guid")),
            user_guid: key(job.get("user_guid")),
            ..Keys::default()
        };
        return Some(Found::timed(
            Kind::Job,
            keys,
            job.get("updated_at").and_then(mx_time),
        ));
    }

    let flat_keys = || Keys {
        member_guid: key(v.get("member_guid")),
        user_guid: key(v.get("user_guid")),
        ..Keys::default()
    };

    if kind_name == Some("CONNECTION_STATUS") {
        let keys = flat_keys();
        keys.member_guid.as_ref()?;
        return Some(Found {
            kind: Kind::ConnectionStatus,
            keys,
            clock: Clock::Arrival,
            occurred_at: None,
        });
    }

    if action == Some("member_data_updated") && kind_name.is_some() {
        let keys = flat_keys();
        keys.member_guid.as_ref()?;
        return Some(Found::timed(
            Kind::MemberData,
            keys,
            v.get("completed_at").and_then(mx_time),
        ));
    }

    if let Some("created" | "updated" | "deleted") = action {
        let mut resources = members.iter().filter(|(name, value)| {
            name != "action"
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && key(value.get("guid")).is_some()
        });
        let (Some((name, resource)), None) = (resources.next(), resources.next()) else {
            return None;
        };
        let guid = key(resource.get("guid"))?;
        let keys = Keys {
            user_guid: if name == "user" {
                Some(guid.clone())
            } else {
                key(resource.get("user_guid"))
            },
            member_guid: if name == "member" {
                Some(guid.clone())
            } else {
                key(resource.get("member_guid"))
            },
            resource: Some(format!("{name}/{guid}")),
            ..Keys::default()
        };
        let revision = resource.get("revision").and_then(|r| match r {
            Value::String(s) => s.parse().ok(),
            other => other.as_i64(),
        });
        let updated_at = resource.get("updated_at").and_then(mx_time);
        return Some(Found {
            kind: Kind::Resource,
            keys,
            clock: Clock::Revision {
                revision,
                updated_at,
            },
            occurred_at: updated_at,
        });
    }

    if kind_name.is_some_and(|t| ANALYTICS_TYPES.contains(&t)) {
        let keys = Keys {
            user_guid: key(v.get("user_guid")),
            ..Keys::default()
        };
        return Some(Found::timed(
            Kind::Analytics,
            keys,
            v.get("created_at").and_then(mx_time),
        ));
    }
    None
}
