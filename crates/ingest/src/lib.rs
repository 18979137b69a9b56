//! journeyd's webhook side: `POST /webhooks/mx` and `POST /webhooks/mobile-journeys`
//! (docs/contract.md sections 3, 8 and 9).
//!
//! Each request goes: authenticate (on the raw bytes, before parsing) -> size limit -> split
//! into events or keep whole for quarantine (`events`) -> queue for the writer without blocking
//! -> answer after the commit: `204` stored (new or duplicate), `202` quarantined, `401`, `413`,
//! or `503` with `Retry-After` when the writer's queue is full or the store failed (nothing was
//! acknowledged, the provider retries).
//!
//! What it does not do: serve reads, project, or hold any state but counters.

pub mod auth;
mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use events::Source;
use store::{Quarantined, Submission, WriterHandle};
use tracing::Instrument;

pub use auth::{Refused, Scheme, SourceAuth};
pub use metrics::IngestMetrics;

/// Bodies larger than this are parsed on the blocking pool rather than an async worker.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// Where the clock comes from: milliseconds since the Unix epoch.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How a body becomes events: [`events::parse_delivery`] in the daemon. A field rather than a
/// direct call so that a test can hand in a parser that fails in ways the real one must not.
pub type Parse = fn(Source, &[u8]) -> Result<Vec<events::Event>, events::Rejection>;

/// Told of each delivery's events after their commit and before the answer goes out: every
/// event's kind and keys, and what the writer did with it (same order). The daemon notes there
/// which keys have acknowledged events its projector has not folded yet, so that a point read
/// made after the answer sees them (decision 0013).
///
/// It runs on the writer's thread, in the commit's order, whether or not the client is still
/// there: a redelivery answered as a duplicate is answered after the first copy was told.
/// Keep it short.
pub type OnStored = Arc<dyn Fn(&[(events::Kind, events::Keys)], &[store::Appended]) + Send + Sync>;

/// Everything the webhook routes need.
pub struct Ingest {
    /// Appends go here.
    pub writer: WriterHandle,
    /// Authentication for `/webhooks/mx`.
    pub mx: SourceAuth,
    /// Authentication for `/webhooks/mobile-journeys`.
    pub mobile_journeys: SourceAuth,
    /// The largest body accepted, in bytes.
    pub max_body: usize,
    /// How long a body may take to arrive, from the end of the request head; past it, `408`.
    pub body_timeout: std::time::Duration,
    /// The clock.
    pub now: Now,
    /// The parser.
    pub parse: Parse,
    /// Counters.
    pub metrics: IngestMetrics,
    /// Called after each commit of events, before the `204`.
    pub on_stored: Option<OnStored>,
}

/// The two webhook routes.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/webhooks/mx", post(mx))
        .route("/webhooks/mobile-journeys", post(mobile_journeys))
        .with_state(ingest)
}

async fn mx(State(ingest): State<Arc<Ingest>>, request: Request) -> Response {
    receive(&ingest, Source::Mx, request).await
}

async fn mobile_journeys(State(ingest): State<Arc<Ingest>>, request: Request) -> Response {
    receive(&ingest, Source::MobileJourneys, request).await
}

/// A JSON error: `{"error": {"code", "message"}}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// A `503` JSON error with `Retry-After: {retry_after}` seconds.
pub fn unavailable_for(message: &str, retry_after: &'static str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    r
}

/// The webhooks' `503`: nothing was stored, retry in a second.
fn unavailable(message: &str) -> Response {
    unavailable_for(message, "1")
}

/// The request id, in the deliveries table and the log: the sender's `x-request-id` when it
/// is an id (1 to 128 letters, digits, `-`, `_`, `.`, `:`), else a new UUID. Anything else in
/// that header (a name, a sentence) stays out of the log, with every other header value.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// A kept header value longer than this is cut, and says so.
const KEPT_HEADER_BYTES: usize = 1024;

/// The headers kept with a quarantined body, as a JSON object. A value is kept as text: bytes
/// that are not UTF-8 become U+FFFD, and a value longer than [`KEPT_HEADER_BYTES`] is cut
/// there and ends with `… (N bytes)`, so that a header cannot make the entry large.
fn selected_headers(headers: &HeaderMap) -> String {
    let mut m = serde_json::Map::new();
    for name in [
        "content-type",
        "content-encoding",
        "content-length",
        "user-agent",
        "x-request-id",
        "webhook-id",
        "webhook-timestamp",
    ] {
        if let Some(v) = headers.get(name) {
            let bytes = v.as_bytes();
            let mut text =
                String::from_utf8_lossy(&bytes[..bytes.len().min(KEPT_HEADER_BYTES)]).into_owned();
            if bytes.len() > KEPT_HEADER_BYTES {
                text.push_str(&format!("… ({} bytes)", bytes.len()));
            }
            m.insert(name.to_owned(), serde_json::Value::String(text));
        }
    }
    serde_json::Value::Object(m).to_string()
}

async fn receive(ingest: &Ingest, source: Source, request: Request) -> Response {
    let id = request_id(request.headers());
    let span = tracing::info_span!("webhook", source = source.as_str(), request_id = %id);
    receive_in_span(ingest, source, request, id)
        .instrument(span)
        .await
}

async fn receive_in_span(
    ingest: &Ingest,
    source: Source,
    request: Request,
    id: String,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let auth = match source {
        Source::Mx => &ingest.mx,
        Source::MobileJourneys => &ingest.mobile_journeys,
    };
    let now_ms = (ingest.now)();
    // Header-only schemes are checked before a byte of the body is read.
    if !auth.needs_body() {
        match auth.authenticate(&headers, &[], now_ms / 1000) {
            Ok(label) => ingest.metrics.authenticated(source.as_str(), label),
            Err(refused) => {
                tracing::info!(reason = %refused, "refused");
                return closing(unauthorized(auth, &refused));
            }
        }
    }
    // A declared length over the limit is refused before a byte of the body is read, and
    // before a client that sent `Expect: 100-continue` is told to send it.
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|declared| declared > ingest.max_body as u64)
    {
        return closing(too_large(ingest.max_body));
    }
    let bytes = match read_body(body, ingest.max_body, ingest.body_timeout).await {
        Ok(b) => b,
        Err(response) => return closing(response),
    };
    if auth.needs_body() {
        match auth.authenticate(&headers, &bytes, now_ms / 1000) {
            Ok(label) => ingest.metrics.authenticated(source.as_str(), label),
            Err(refused) => {
                tracing::info!(reason = %refused, "refused");
                return unauthorized(auth, &refused);
            }
        }
    }
    store_body(ingest, source, &headers, id, now_ms, bytes).await
}

/// A 401 with the JSON error and the challenges of the configured schemes.
pub fn unauthorized(auth: &SourceAuth, refused: &Refused) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        &refused.to_string(),
    );
    if let Some(challenge) = auth.challenge() {
        response
            .headers_mut()
            .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// Marks an answer given before the request's body was read to its end. hyper closes such a
/// connection after the answer; the header says so, so that a client does not keep the
/// connection for its next request and find it closed under it.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// The `413` of a body larger than `max` bytes.
fn too_large(max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        &format!("the body is larger than {max} bytes"),
    )
}

async fn read_body(
    body: Body,
    max: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Response> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => Ok(b),
        // A client that starts a body and stalls would hold its connection and what it sent.
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            &format!("the body did not arrive within {}s", timeout.as_secs_f64()),
        )),
        Ok(Err(e)) => {
            // `to_bytes` fails on the limit, or on a connection that broke mid-body.
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            if over {
                Err(too_large(max))
            } else {
                Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the body could not be read",
                ))
            }
        }
    }
}

/// The quarantine reason of a body the parser panicked on.
const PARSER_PANIC: &str =
    "the parser failed on this body (a bug in journeyd); it is kept for replay after a fix";

/// Why a body goes to quarantine: the reason stored and answered, which may quote a token of
/// the body, and the same without a byte of it, for the log.
#[derive(Debug)]
struct Rejected {
    reason: String,
    summary: String,
}

/// Splits a body into events, or says why it goes to quarantine. The parser is property-tested
/// never to panic; should it still, the body is quarantined rather than lost with the request.
fn split_body(
    parse: impl FnOnce() -> Result<Vec<events::Event>, events::Rejection>,
) -> Result<Vec<events::Event>, Rejected> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)) {
        Ok(Ok(events)) => Ok(events),
        Ok(Err(rejection)) => Err(Rejected {
            reason: rejection.to_string(),
            summary: rejection.summary(),
        }),
        Err(_) => {
            tracing::error!("the parser panicked; the body goes to quarantine");
            Err(Rejected {
                reason: PARSER_PANIC.to_owned(),
                summary: PARSER_PANIC.to_owned(),
            })
        }
    }
}

async fn store_body(
    ingest: &Ingest,
    source: Source,
    headers: &HeaderMap,
    id: String,
    now_ms: i64,
    bytes: Bytes,
) -> Response {
    let size = bytes.len();
    // Parse; the body comes back with the result so a rejected one can be kept whole.
    let parse = ingest.parse;
    let split = move || (split_body(|| parse(source, &bytes)), bytes);
    let (parsed, bytes) = if size <= INLINE_PARSE_BYTES {
        split()
    } else {
        match tokio::task::spawn_blocking(split).await {
            Ok(done) => done,
            // The runtime is stopping (the parser itself cannot panic its way here: it runs
            // under catch_unwind). Nothing was stored: the provider retries.
            Err(e) => {
                tracing::error!(error = %e, "parsing task failed");
                return unavailable("the daemon is stopping; retry");
            }
        }
    };
    // What `on_stored` is told, taken before the events move to the writer.
    let mut stored_keys = Vec::new();
    let mut summary = None;
    let body = match parsed {
        Ok(events) => {
            if ingest.on_stored.is_some() {
                stored_keys = events.iter().map(|e| (e.kind, e.keys.clone())).collect();
            }
            store::Body::Events(events)
        }
        // Only a rejected body needs its headers kept.
        Err(Rejected { reason, summary: s }) => {
            summary = Some(s);
            store::Body::Quarantine(Quarantined {
                reason,
                headers: selected_headers(headers),
                bytes: bytes.to_vec(),
            })
        }
    };
    let quarantine_reason = match &body {
        store::Body::Quarantine(q) => Some(q.reason.clone()),
        _ => None,
    };
    let submission = Submission {
        source,
        received_at: now_ms,
        request_id: Some(id),
        size,
        body,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let on_stored = ingest.on_stored.clone();
    match ingest.writer.try_submit(vec![submission], move |r| {
        if let (Some(on_stored), Ok(receipts)) = (on_stored, &r)
            && let Some(receipt) = receipts.first()
            && !stored_keys.is_empty()
        {
            on_stored(&stored_keys, &receipt.events);
        }
        let _ = tx.send(r);
    }) {
        Ok(()) => {}
        Err(store::Error::QueueFull) => {
            ingest.metrics.rejected(source, metrics::QUEUE_FULL);
            return unavailable("the store is busy; retry");
        }
        Err(e) => {
            tracing::error!(error = %e, "append refused");
            ingest.metrics.rejected(source, metrics::STORE_ERROR);
            return unavailable("the store cannot take the request; retry");
        }
    }
    match rx.await {
        Ok(Ok(receipts)) => {
            for r in &receipts {
                ingest.metrics.stored(source, r);
            }
            match quarantine_reason {
                Some(reason) => {
                    // The stored reason may quote the body; the log says where, not what.
                    tracing::info!(
                        reason = summary.as_deref().unwrap_or_default(),
                        size,
                        id = receipts.first().and_then(|r| r.quarantine_id),
                        "quarantined"
                    );
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(serde_json::json!({"quarantined": true, "reason": reason})),
                    )
                        .into_response()
                }
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "append failed; nothing acknowledged");
            ingest.metrics.rejected(source, metrics::STORE_ERROR);
            unavailable("the store failed to take the request; retry")
        }
        Err(_) => {
            ingest.metrics.rejected(source, metrics::STORE_ERROR);
            unavailable("the store is shutting down; retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parser_panic_becomes_a_quarantine_reason_not_a_lost_body() {
        let rejected = split_body(|| panic!("a parser bug")).expect_err("quarantined");
        assert_eq!(rejected.reason, PARSER_PANIC);
    }

    #[test]
    fn split_body_passes_events_and_rejections_through() {
        let body = br#"{"action":"created","goal":{"guid":"GOL-1","revision":1}}"#;
        let events = split_body(|| events::parse_delivery(Source::Mx, body)).expect("events");
        assert_eq!(events.len(), 1);
        let rejected = split_body(|| events::parse_delivery(Source::Mx, b"{")).expect_err("bad");
        assert_ne!(rejected.reason, PARSER_PANIC);
        assert!(!rejected.reason.is_empty());
    }

    /// The log's summary of a rejected body says where it stopped parsing, never what it
    /// found there: the stored reason may quote a cardholder's name.
    #[test]
    fn the_summary_of_a_rejected_body_quotes_none_of_it() {
        let body = br#"{"cardholderName": nJohnSmith}"#;
        let rejected =
            split_body(|| events::parse_delivery(Source::Mx, body)).expect_err("not JSON");
        assert!(
            rejected.reason.contains("nJohnSmith"),
            "{}",
            rejected.reason
        );
        assert_eq!(rejected.summary, "not JSON at line 1, column 20");
    }
}
