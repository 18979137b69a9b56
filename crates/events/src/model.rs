//! The normalized event and its parts: source, kind, stream keys, clock and identity.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

use crate::timestamp::Millis;

/// Who sent an event; one webhook route each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Source {
    /// MX Platform (`POST /webhooks/mx`).
    #[serde(rename = "mx")]
    Mx,
    /// Esendex Mobile Journeys (`POST /webhooks/mobile-journeys`).
    #[serde(rename = "mobile-journeys")]
    MobileJourneys,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 2] = [Source::Mx, Source::MobileJourneys];

    /// The name used in routes, the CLI and the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mx => "mx",
            Source::MobileJourneys => "mobile-journeys",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a source name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source `{0}` (expected `mx` or `mobile-journeys`)")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mx" => Ok(Source::Mx),
            "mobile-journeys" => Ok(Source::MobileJourneys),
            other => Err(UnknownSource(other.to_owned())),
        }
    }
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What an event is. The stored name is [`Kind::as_str`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($(#[$doc])* $variant,)* }

        impl Kind {
            /// Every kind.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name stored in the `kind` column.
            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$variant => $name,)* }
            }
        }

        impl FromStr for Kind {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($name => Ok(Kind::$variant),)* other => Err(format!("unknown kind `{other}`")) }
            }
        }
    };
}

kinds! {
    /// Mobile Journeys `linkcreated`.
    LinkCreated = "linkcreated",
    /// Mobile Journeys `sessioncreated`.
    SessionCreated = "sessioncreated",
    /// Mobile Journeys `paymentattempt`.
    PaymentAttempt = "paymentattempt",
    /// Mobile Journeys `documentgenerated`.
    DocumentGenerated = "documentgenerated",
    /// Mobile Journeys `stage`.
    Stage = "stage",
    /// MX member data (`action: member_data_updated`, any `type`).
    MemberData = "member_data",
    /// MX `type: CONNECTION_STATUS`.
    ConnectionStatus = "connection_status",
    /// MX job status (`{"job": {...}}`).
    Job = "job",
    /// MX resource envelope (`{"action", "<resource>": {...}}`).
    Resource = "resource",
    /// One element of an MX analytics array.
    Analytics = "analytics",
    /// Valid JSON of no known shape: stored, counted, not projected.
    Unknown = "unknown",
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The streams an event belongs to; each is an indexed column of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Keys {
    /// Mobile Journeys `data.correlationId`: the journey instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// MX member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_guid: Option<String>,
    /// MX user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_guid: Option<String>,
    /// MX resource, as `"{type}/{guid}"` (`goal/GOL-...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// The clock an event is ordered by for last-writer-wins; ties break on [`EventId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Clock {
    /// A time in milliseconds: `occurredAt`, `completed_at`, `job.updated_at`, analytics
    /// `created_at`. `None` when the event carries no valid time: it orders before every event
    /// that has one.
    Time {
        /// Milliseconds since the epoch.
        ms: Option<Millis>,
    },
    /// A resource's `revision`, then its `updated_at`.
    Revision {
        /// The resource's revision number.
        revision: Option<i64>,
        /// The resource's `updated_at`, in milliseconds.
        updated_at: Option<Millis>,
    },
    /// Arrival order (`seq`): MX connection status carries no timestamp.
    Arrival,
}

impl Clock {
    /// The value for the log's `clock` column: the time, the revision, or `NULL` for arrival.
    pub fn column(self) -> Option<i64> {
        match self {
            Clock::Time { ms } => ms,
            Clock::Revision { revision, .. } => revision,
            Clock::Arrival => None,
        }
    }
}

/// An event's deterministic identity: UUIDv5 over (source, kind, canonical JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub Uuid);

/// The UUIDv5 namespace of journeyd event ids. Never change it: every stored id depends on it.
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x76c7_9ef6_6201_472e_81ef_cf12_0d81_ef29);

impl EventId {
    /// The id of an event from `source`, of `kind`, whose canonical JSON is `canonical`.
    pub fn new(source: Source, kind: Kind, canonical: &str) -> EventId {
        let mut name =
            Vec::with_capacity(source.as_str().len() + kind.as_str().len() + canonical.len() + 2);
        name.extend_from_slice(source.as_str().as_bytes());
        name.push(0);
        name.extend_from_slice(kind.as_str().as_bytes());
        name.push(0);
        name.extend_from_slice(canonical.as_bytes());
        EventId(Uuid::new_v5(&EVENT_ID_NAMESPACE, &name))
    }

    /// The id of a whole body from `source` that could not be split into events: the same bytes
    /// from the same source are one quarantine entry.
    pub fn for_body(source: Source, bytes: &[u8]) -> EventId {
        let mut name = Vec::with_capacity(source.as_str().len() + 12 + bytes.len());
        name.extend_from_slice(source.as_str().as_bytes());
        name.extend_from_slice(b"\0quarantine\0");
        name.extend_from_slice(bytes);
        EventId(Uuid::new_v5(&EVENT_ID_NAMESPACE, &name))
    }

    /// The 16 bytes, as stored and as compared for tie-breaks.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// From the 16 stored bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> EventId {
        EventId(Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One normalized event, ready to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Deterministic identity (docs/contract.md section 4).
    pub id: EventId,
    /// Who sent it.
    pub source: Source,
    /// What it is.
    pub kind: Kind,
    /// The streams it belongs to.
    pub keys: Keys,
    /// What it is ordered by.
    pub clock: Clock,
    /// When it happened, in milliseconds, if it says.
    #[serde(serialize_with = "ser_opt_time")]
    pub occurred_at: Option<Millis>,
    /// Its exact text as received.
    pub payload: String,
}

fn ser_opt_time<S: serde::Serializer>(v: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(ms) => s.serialize_str(&crate::timestamp::format_millis(*ms)),
        None => s.serialize_none(),
    }
}
