//! journeyd's vocabulary: what an event is, how it is identified and ordered, and how a provider's
//! webhook body becomes events.
//!
//! This crate owns the provider payload shapes (docs/contract.md section 3), event identity and clocks
//! (section 4) and the canonical JSON form identity is computed over. It does no I/O, knows no
//! database, socket or async runtime, and cannot fail except by returning a [`Rejection`] for a
//! body that is not JSON: time and bytes come in as arguments, events go out as values.
//!
//! ```
//! use events::{parse_delivery, Kind, Source};
//! let body = br#"[{"productId":"mobilejourneys","eventId":"sessioncreated","eventVersion":"1",
//!   "eventTime":"2021-06-11T12:01:45Z","data":{"occurredAt":"2021-06-11T12:01:35Z",
//!   "journeyId":"2","correlationId":"91daa348","sessionId":"654321"}}]"#;
//! let events = parse_delivery(Source::MobileJourneys, body).unwrap();
//! assert_eq!(events[0].kind, Kind::SessionCreated);
//! assert_eq!(events[0].keys.correlation_id.as_deref(), Some("91daa348"));
//! ```

pub mod json;
mod model;
mod parse;
pub mod timestamp;

pub use model::{Clock, EVENT_ID_NAMESPACE, Event, EventId, Keys, Kind, Source, UnknownSource};
pub use parse::{Rejection, parse_delivery, parse_delivery_detect};
