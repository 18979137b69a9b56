//! Output helpers: compact JSON with keys in declaration order, so equal states are equal bytes.

use events::timestamp::{Millis, format_millis};
use serde::Serialize;
use serde_json::value::RawValue;

/// A time as RFC 3339 UTC, `.mmm` only when the milliseconds are not zero.
pub(crate) fn time(ms: Option<Millis>) -> Option<String> {
    ms.map(format_millis)
}

/// Embeds canonical JSON text (produced by `events::json`) as is.
pub(crate) fn raw(canonical: &str) -> Box<RawValue> {
    RawValue::from_string(canonical.to_owned()).unwrap_or_else(|_| {
        // Unreachable: canonical text is always valid JSON. Show null rather than panic.
        tracing::error!("canonical JSON failed to embed");
        RawValue::from_string("null".to_owned()).unwrap_or_default()
    })
}

/// Compact JSON of a document whose types cannot fail to serialize.
pub(crate) fn to_json<T: Serialize>(doc: &T) -> String {
    serde_json::to_string(doc).unwrap_or_else(|e| {
        tracing::error!(error = %e, "state failed to serialize");
        "null".to_owned()
    })
}
