//! The read API (docs/contract.md section 8): snapshots, lists, the log, stats, the live stream,
//! health and metrics. Read-only: every query runs on a pooled read-only SQLite connection
//! beside the writer (WAL); point lookups on the worker thread, scans on the blocking pool
//! (decision 0008).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, BoxStream, StreamExt};
use ingest::error;
use projector::Change;
use serde::Deserialize;
use store::{JourneyFilter, Projection, Reader, StreamKey};
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;

use crate::metrics::Metrics;
use crate::output::{EventsPage, JourneysPage, SnapshotJson};
use crate::read_cache::ReadCache;
use crate::unprojected::Unprojected;

/// Read-only connections, reused across requests.
pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

/// Idle connections kept; more are opened under load and closed after.
const POOL_IDLE: usize = 16;

impl ReaderPool {
    pub(crate) fn new(path: PathBuf) -> Arc<ReaderPool> {
        Arc::new(ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` with a pooled reader on this thread.
    fn with_reader<T>(&self, f: impl FnOnce(&Reader) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let reader = match self.idle.lock().ok().and_then(|mut v| v.pop()) {
            Some(r) => r,
            None => Reader::open(&self.path)?,
        };
        let out = f(&reader);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_IDLE
        {
            idle.push(reader);
        }
        out
    }

    /// Runs a point lookup (one row by its primary key) on the calling worker thread.
    ///
    /// Such a lookup takes microseconds, less than the hand-off to the blocking pool and back
    /// that [`ReaderPool::run`] pays, so point queries answer about twice as fast this way. Only
    /// bounded, indexed single-row reads belong here; anything that scans goes through `run`.
    pub(crate) fn lookup<T>(
        &self,
        f: impl FnOnce(&Reader) -> anyhow::Result<T>,
    ) -> Result<T, ApiError> {
        self.with_reader(f).map_err(ApiError::internal)
    }

    /// Runs `f` with a reader on the blocking pool.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Reader) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let pool = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || pool.with_reader(f)).await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ApiError::internal(e)),
            Err(e) => Err(ApiError::internal(anyhow::anyhow!(
                "query task failed: {e}"
            ))),
        }
    }
}

/// A route's path parameters, read as `Path` reads them but refused with the JSON error in
/// journeyd's own words: `Path`'s rejection is plain text and names the handler's variables.
/// Every path parameter is a string, so the client's one mistake is a key that is not UTF-8
/// once percent-decoded; anything else is a route that does not fit its handler, a bug.
pub(crate) struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Params(v)),
            Err(PathRejection::FailedToDeserializePathParams(e))
                if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
            {
                Err(ApiError::bad_request(
                    "a key in the path is not UTF-8 once percent-decoded",
                ))
            }
            Err(e) => Err(ApiError::internal(anyhow::anyhow!(
                "the path did not fit its handler: {}",
                e.body_text()
            ))),
        }
    }
}

/// A route's query parameters, refused with the JSON error in journeyd's own words, each error
/// naming the parameter. A value that is not UTF-8 once percent-decoded is refused, not read
/// with replacement characters (which would turn a cursor into another one), and so is a
/// parameter given twice, and one the route does not take: a misspelt filter must not be
/// answered with unfiltered data. `T` denies unknown fields; [`NoQuery`] for a route that
/// takes none.
pub(crate) struct QueryParams<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        check_query(query).map_err(|m| ApiError::bad_request(&m))?;
        let pairs = form_urlencoded::parse(query.as_bytes());
        serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs))
            .map(QueryParams)
            .map_err(|e| ApiError::bad_request(&query_error(&e)))
    }
}

/// A query error in words that name the parameter: `unknown query parameter `statuss`; this
/// route takes `status`, `journey_id`, ...`, or `query parameter `limit`: ...`.
fn query_error(e: &serde_path_to_error::Error<serde_urlencoded::de::Error>) -> String {
    let inner = e.inner().to_string();
    if let Some(rest) = inner.strip_prefix("unknown field ") {
        let (name, expected) = rest.split_once(", ").unwrap_or((rest, ""));
        let takes = match expected.strip_prefix("expected one of ") {
            Some(list) => format!("this route takes {list}"),
            None => match expected.strip_prefix("expected ") {
                Some(one) => format!("this route takes {one}"),
                None => "this route takes none".to_owned(),
            },
        };
        return format!("unknown query parameter {name}; {takes}");
    }
    match e.path().to_string().as_str() {
        "" | "." => inner,
        name => format!("query parameter `{name}`: {inner}"),
    }
}

/// The query of a route that takes no parameters: any one is refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoQuery {}

/// Refuses a query string with a name or value that is not UTF-8 once percent-decoded (`+`
/// being a space), or with a name given twice.
fn check_query(query: &str) -> Result<(), String> {
    let decode = |part: &str| -> Result<String, String> {
        let spaced = part.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("`{part}` in the query is not UTF-8 once percent-decoded"))
    };
    let mut seen = std::collections::BTreeSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        decode(value)?;
        if !seen.insert(name.clone()) {
            return Err(format!("the query gives `{name}` more than once"));
        }
    }
    Ok(())
}

/// The answer to a path no route matches: the JSON error, as everywhere else, with its own
/// code, so that a wrong address is not taken for an unknown key (`not_found`).
pub(crate) async fn no_route() -> Response {
    error(StatusCode::NOT_FOUND, "no_route", "no such route")
}

/// The answer to a method a route does not take (its `Allow` header says which it does).
pub(crate) async fn no_method() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// An error answered as `{"error": {"code", "message"}}`. Internal details are logged here,
/// once, and never sent.
pub(crate) struct ApiError(Box<Response>);

impl ApiError {
    fn new(status: StatusCode, code: &str, message: &str) -> ApiError {
        ApiError(Box::new(error(status, code, message)))
    }

    fn internal(e: anyhow::Error) -> ApiError {
        tracing::error!(error = format!("{e:#}"), "read API query failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", &format!("no {what}"))
    }

    fn bad_request(message: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 503 with `Retry-After: 3`: try again shortly.
    fn unavailable(message: &str) -> ApiError {
        ApiError(Box::new(ingest::unavailable_for(message, "3")))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What the read routes share.
pub(crate) struct Api {
    pub(crate) pool: Arc<ReaderPool>,
    pub(crate) token: Option<ingest::SourceAuth>,
    pub(crate) changes: broadcast::Sender<Announcement>,
    /// At most this many log events are replayed per `/v1/stream` request ([`MAX_REPLAY`]).
    pub(crate) replay_events: usize,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) projector_alive: Arc<AtomicBool>,
    pub(crate) metrics: Arc<Metrics>,
    /// Rendered documents of the point-read routes.
    pub(crate) cache: Arc<ReadCache>,
    /// How far the projector's changes have left the read cache and been announced: the
    /// stream's replay stops there.
    pub(crate) settled: Arc<AtomicI64>,
    /// Keys with acknowledged events not yet in their snapshots: point reads fold them.
    pub(crate) unprojected: Arc<Unprojected>,
    /// The projector's configuration, which those folds render with.
    pub(crate) projection: projector::Config,
    /// A permit per open `/v1/stream` response (`--max-streams`), so that subscribers cannot
    /// take every connection the server allows from the webhooks.
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
}

/// A point read of an unprojected key folds at most this many events on the HTTP worker
/// (about a millisecond). A key with more waits for the projector, as every key did before
/// decision 0013.
pub(crate) const READ_THROUGH_MAX_EVENTS: usize = 256;

/// The read routes. `/v1/...` is behind the API token when one is set; health, metrics and
/// the OpenAPI document are not.
pub(crate) fn router(api: Arc<Api>) -> Router {
    let v1 = Router::new()
        .route("/v1/journeys", get(list_journeys))
        .route("/v1/journeys/{id}", get(journey))
        .route("/v1/journeys/{id}/events", get(journey_events))
        .route("/v1/members/{guid}", get(member))
        .route("/v1/users/{guid}", get(user))
        .route("/v1/resources/{resource_type}/{guid}", get(resource))
        .route("/v1/events", get(events))
        .route("/v1/stats", get(stats))
        .route("/v1/quarantine", get(quarantine))
        .route("/v1/stream", get(stream_changes))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&api),
            require_token,
        ));
    Router::new()
        .merge(v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(api)
}

async fn require_token(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    if let Some(auth) = &api.token {
        match auth.authenticate(request.headers(), &[], 0) {
            Ok(label) => api.metrics.ingest.authenticated("api", label),
            Err(refused) => return ingest::unauthorized(auth, &refused),
        }
    }
    next.run(request).await
}

async fn snapshot(
    api: &Arc<Api>,
    projection: Projection,
    key: String,
    what: &'static str,
) -> Result<Response, ApiError> {
    // Read through when the key has acknowledged events its snapshot lacks, or when no
    // projector is folding them: its thread ended, or its last round failed (decision 0013).
    let alive = api.projector_alive.load(Ordering::SeqCst);
    // `Some(folds_any)` once a read through found the key too large to fold.
    let mut too_large = None;
    if !alive || api.unprojected.contains(projection, &key) {
        match read_through(api, projection, &key, what).await? {
            ReadThrough::Answer(answer) => return Ok(answer),
            ReadThrough::TooLarge { folds_any } => too_large = Some(folds_any),
        }
    }
    let miss = match api.cache.get(projection, key) {
        Ok(doc) => {
            api.metrics.read_cache(true);
            return Ok(json_bytes(doc));
        }
        Err(miss) => miss,
    };
    let (checkpoint, doc) = api.pool.lookup(|r| {
        let (checkpoint, row) = r.snapshot_at(projection, &miss.key)?;
        Ok((checkpoint, row.map(|s| document(&s)).transpose()?))
    })?;
    if api.unprojected.behind(projection, checkpoint) {
        // Another process's rebuild swapped in a table older than what reads have shown:
        // neither answer from it nor cache it. (A key too large to fold is answered from it,
        // uncached: decision 0013's one exception.)
        if too_large.is_none() {
            match read_through(api, projection, &miss.key, what).await? {
                ReadThrough::Answer(answer) => return Ok(answer),
                ReadThrough::TooLarge { folds_any } => too_large = Some(folds_any),
            }
        }
        api.metrics.read_cache(false);
    } else if let Some(doc) = doc {
        api.metrics.read_cache(false);
        api.cache.insert(projection, miss, doc.clone());
        return Ok(json_bytes(doc));
    } else {
        api.metrics.read_cache(false);
    }
    match doc {
        Some(doc) => Ok(json_bytes(doc)),
        // The log holds more of the key's events than a read folds, and the projector has not
        // written the key yet: it exists, so not a 404, and it will show shortly.
        None if too_large == Some(true) => Err(ApiError::unavailable(&format!(
            "{what} {} has more events than a read folds, {}",
            miss.key,
            match alive {
                true => "and is not projected yet; retry",
                false => "and the projector is not running (see /readyz and the daemon's log)",
            }
        ))),
        None => Err(ApiError::not_found(&format!("{what} {}", miss.key))),
    }
}

/// What a read through the log gave.
enum ReadThrough {
    /// The document, as the projector will write it, or the 404.
    Answer(Response),
    /// The key has more events than a read folds: the caller answers from the snapshot.
    /// `folds_any` as in [`projector::Current::TooLarge`].
    TooLarge { folds_any: bool },
}

/// Folds `key`'s events from the log, as the projector will (decision 0013).
async fn read_through(
    api: &Arc<Api>,
    projection: Projection,
    key: &str,
    what: &'static str,
) -> Result<ReadThrough, ApiError> {
    let (a, k) = (Arc::clone(api), key.to_owned());
    // Up to READ_THROUGH_MAX_EVENTS rows: the blocking pool, not the worker (decision 0008).
    let current = api
        .pool
        .run(move |r| {
            let current =
                projector::current(r, projection, &k, &a.projection, READ_THROUGH_MAX_EVENTS)?;
            if let projector::Current::Row(row) = &current {
                // Everything this read showed stays read through until the projector holds
                // it, so that the next read does not go back to an older snapshot.
                a.unprojected.note(projection, &k, row.last_seq);
            }
            Ok(current)
        })
        .await?;
    match current {
        projector::Current::Row(row) => {
            api.metrics.read_through();
            let doc = document(&store::Snapshot::from(row)).map_err(ApiError::internal)?;
            Ok(ReadThrough::Answer(json_bytes(doc)))
        }
        projector::Current::Absent => {
            api.metrics.read_through();
            Err(ApiError::not_found(&format!("{what} {key}")))
        }
        projector::Current::TooLarge { folds_any } => Ok(ReadThrough::TooLarge { folds_any }),
    }
}

/// The `{"key", "state", "meta"}` document of a point read.
fn document(s: &store::Snapshot) -> anyhow::Result<Bytes> {
    let mut doc = serde_json::to_vec(&SnapshotJson::new(s)?)?;
    doc.shrink_to_fit(); // kept in the read cache: no spare capacity
    Ok(Bytes::from(doc))
}

fn json_bytes(bytes: impl Into<Bytes>) -> Response {
    let bytes: Bytes = bytes.into();
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn journey(
    State(api): State<Arc<Api>>,
    Params(id): Params<String>,
    QueryParams(NoQuery {}): QueryParams<NoQuery>,
) -> Result<Response, ApiError> {
    snapshot(&api, Projection::Journeys, id, "journey").await
}

async fn member(
    State(api): State<Arc<Api>>,
    Params(guid): Params<String>,
    QueryParams(NoQuery {}): QueryParams<NoQuery>,
) -> Result<Response, ApiError> {
    snapshot(&api, Projection::Members, guid, "member").await
}

async fn user(
    State(api): State<Arc<Api>>,
    Params(guid): Params<String>,
    QueryParams(NoQuery {}): QueryParams<NoQuery>,
) -> Result<Response, ApiError> {
    snapshot(&api, Projection::Users, guid, "user").await
}

async fn resource(
    State(api): State<Arc<Api>>,
    Params((resource_type, guid)): Params<(String, String)>,
    QueryParams(NoQuery {}): QueryParams<NoQuery>,
) -> Result<Response, ApiError> {
    snapshot(
        &api,
        Projection::Resources,
        format!("{resource_type}/{guid}"),
        "resource",
    )
    .await
}

/// Query parameters of `GET /v1/journeys`. An empty value (`?status=&limit=`, as the contract
/// section 8 writes the route) is the same as leaving the parameter out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JourneysQuery {
    #[serde(default, deserialize_with = "empty_is_none")]
    status: Option<String>,
    #[serde(default, deserialize_with = "empty_is_none")]
    journey_id: Option<String>,
    #[serde(default, deserialize_with = "empty_is_none")]
    customer_reference: Option<String>,
    #[serde(default, deserialize_with = "empty_is_none")]
    after: Option<String>,
    #[serde(default, deserialize_with = "count")]
    limit: Option<usize>,
}

/// A text query parameter, `None` when it is empty.
fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A `limit`: 1 to 9 digits, not starting with 0 (`openapi::schema` publishes the same
/// pattern), or empty for none. Above [`MAX_LIMIT`] it is taken as [`MAX_LIMIT`].
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    number(d, "a count: 1 to 9 digits, not starting with 0", |s| {
        (1..=9).contains(&s.len()) && !s.starts_with('0')
    })
}

/// A seq: an optional `-` and 1 to 18 digits (the published pattern), or empty for none.
fn seq<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    number(d, "a seq: 1 to 18 digits, after an optional `-`", |s| {
        let digits = s.strip_prefix('-').unwrap_or(s);
        (1..=18).contains(&digits.len())
    })
}

/// A number in plain digits that `shape` accepts, or `None` when empty. The digit counts keep
/// every accepted value in range, so a value matches the published pattern exactly when it
/// parses.
fn number<'de, D, T>(d: D, what: &str, shape: impl Fn(&str) -> bool) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
{
    let Some(s) = empty_is_none(d)? else {
        return Ok(None);
    };
    let digits = s.strip_prefix('-').unwrap_or(&s);
    if !shape(&s) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(serde::de::Error::custom(format!("`{s}` is not {what}")));
    }
    s.parse()
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("`{s}` is not {what}")))
}

const MAX_LIMIT: usize = 1000;

fn limit(asked: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match asked {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request(
            "query parameter `limit`: must be at least 1",
        )),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

async fn list_journeys(
    State(api): State<Arc<Api>>,
    QueryParams(q): QueryParams<JourneysQuery>,
) -> Result<Response, ApiError> {
    if let Some(s) = &q.status
        && !["created", "opened", "paid", "completed"].contains(&s.as_str())
    {
        return Err(ApiError::bad_request(
            "query parameter `status`: must be created, opened, paid or completed",
        ));
    }
    let limit = limit(q.limit, 50)?;
    let filter = JourneyFilter {
        status: q.status,
        journey_id: q.journey_id,
        customer_reference: q.customer_reference,
        after: q.after,
        limit,
    };
    let bytes = api
        .pool
        .run(move |r| {
            let items = r.journeys(&filter)?;
            Ok(serde_json::to_vec(&JourneysPage::new(&items, limit)?)?)
        })
        .await?;
    Ok(json_bytes(bytes))
}

/// Query parameters of the log routes; empty values as for [`JourneysQuery`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[serde(default, deserialize_with = "seq")]
    after: Option<i64>,
    #[serde(default, deserialize_with = "count")]
    limit: Option<usize>,
}

fn events_page(records: &[store::EventRecord], limit: usize) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&EventsPage::new(records, limit)?)?)
}

async fn events(
    State(api): State<Arc<Api>>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Response, ApiError> {
    let (after, limit) = (q.after.unwrap_or(0), limit(q.limit, 100)?);
    let bytes = api
        .pool
        .run(move |r| events_page(&r.events(after, limit)?, limit))
        .await?;
    Ok(json_bytes(bytes))
}

async fn journey_events(
    State(api): State<Arc<Api>>,
    Params(id): Params<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Response, ApiError> {
    let (after, limit) = (q.after.unwrap_or(0), limit(q.limit, 100)?);
    let shown = id.clone();
    let page = api
        .pool
        .run(move |r| {
            let journey = StreamKey::Journey(&id);
            let records = r.events_by_key(journey, after, limit)?;
            // Known: it has events in the log, or a snapshot. Not the snapshot alone: events
            // acknowledged a moment ago are not in it yet. An empty page may be past the end.
            if records.is_empty()
                && r.events_by_key(journey, 0, 1)?.is_empty()
                && r.snapshot(Projection::Journeys, &id)?.is_none()
            {
                return Ok(None);
            }
            Ok(Some(events_page(&records, limit)?))
        })
        .await?;
    match page {
        Some(bytes) => Ok(json_bytes(bytes)),
        None => Err(ApiError::not_found(&format!("journey {shown}"))),
    }
}

/// `GET /v1/quarantine`: quarantined bodies without their bytes, oldest first, a page at a
/// time (`after` an id, `limit`).
async fn quarantine(
    State(api): State<Arc<Api>>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Response, ApiError> {
    let (after, limit) = (q.after.unwrap_or(0), limit(q.limit, 100)?);
    let bytes = api
        .pool
        .run(move |r| {
            let entries = r.quarantine_page(after, limit)?;
            Ok(serde_json::to_vec(&crate::output::QuarantinePage::new(
                &entries, limit,
            ))?)
        })
        .await?;
    Ok(json_bytes(bytes))
}

async fn stats(
    State(api): State<Arc<Api>>,
    QueryParams(NoQuery {}): QueryParams<NoQuery>,
) -> Result<Response, ApiError> {
    let bytes = api
        .pool
        .run(|r| Ok(serde_json::to_vec(&crate::query::stats_document(r)?)?))
        .await?;
    Ok(json_bytes(bytes))
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let db = api.pool.run(|r| Ok(r.head()?)).await.is_ok();
    let projector = api.projector_alive.load(Ordering::Relaxed);
    let body = serde_json::json!({"database": db, "projector": projector});
    if db && projector {
        axum::Json(body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    api.metrics
        .read_cache_usage(api.cache.usage(), api.unprojected.keys());
    let text = api.metrics.encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    json_bytes(crate::openapi::document().into_bytes())
}

/// At most this many log events are replayed per request; a client further behind gets the
/// rest on its next connection (see [`stream_changes`]).
pub(crate) const MAX_REPLAY: usize = 10_000;

/// What the projector thread tells live `/v1/stream` responses.
#[derive(Debug, Clone)]
pub(crate) enum Announcement {
    /// A snapshot changed (a batch's changes come in `seq` order, after `settled` moved).
    Change(Change),
    /// The tables moved under the projector: another process's `import` folded events, or its
    /// `rebuild` swapped tables in. Their changes were not announced, so live responses end,
    /// and clients resume from their last id through the replay.
    Resynced,
}

/// How long an `EventSource` waits before it reconnects (sent with the end of a cut-short
/// replay): short, so that a client far behind catches up in quick steps.
const RECONNECT: std::time::Duration = std::time::Duration::from_millis(250);
/// The reconnect delay of a live response: an `EventSource` keeps the last one it was sent.
const RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// What a resumed stream replays from the log.
struct Replay {
    /// The changes, in `seq` order.
    changes: Vec<Change>,
    /// Every change up to this seq is in `changes` (or was before `from`).
    through: i64,
    /// Whether the replay reached `settled`; if not, it stopped at its limit of events.
    complete: bool,
}

/// The snapshot changes of the events from `from` on, up to the projectors' checkpoint and no
/// further than `settled` (past it, the read cache may still hold the old documents). A
/// journey's status is its current one.
fn replay(r: &Reader, from: i64, settled: i64, max_events: usize) -> anyhow::Result<Replay> {
    let bound = r
        .checkpoints()?
        .iter()
        .map(|c| c.seq)
        .min()
        .unwrap_or(0)
        .min(settled);
    let after = from.saturating_sub(1);
    let records = r.events(after, max_events)?;
    let complete = records.len() < max_events || records.last().is_some_and(|e| e.seq >= bound);
    let mut out = Replay {
        changes: Vec::new(),
        // Complete: every change up to the bound is replayed or was before `from`. (An id past
        // the bound, from a log restored from a backup say, must not hide the changes up to
        // it: they go out live, at worst again.)
        through: if complete {
            bound
        } else {
            records.last().map_or(after, |e| e.seq)
        },
        complete,
    };
    for e in records.into_iter().filter(|e| e.seq <= bound) {
        let Ok(kind) = e.kind.parse::<events::Kind>() else {
            continue;
        };
        for (projection, key) in projector::projections_of(kind, &e.keys) {
            let status = if projection == Projection::Journeys {
                r.snapshot(projection, key)?
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(&s.state).ok())
                    .and_then(|v| v["status"].as_str().map(str::to_owned))
            } else {
                None
            };
            out.changes.push(Change {
                projection,
                key: key.to_owned(),
                status,
                seq: e.seq,
            });
        }
    }
    Ok(out)
}

/// The `data` of a stream message, fields in the contract's order: `key`, `status` (journeys
/// only), `seq`.
#[derive(serde::Serialize)]
struct ChangeData<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    seq: i64,
}

fn sse_event(c: &Change) -> SseEvent {
    let data = ChangeData {
        key: &c.key,
        status: c.status.as_deref(),
        seq: c.seq,
    };
    SseEvent::default()
        .id(c.seq.to_string())
        .event(c.projection.name())
        .data(serde_json::to_string(&data).unwrap_or_default())
}

/// `GET /v1/stream`'s query: `lastEventId`, which EventSource polyfills send on a reconnect
/// in place of the `Last-Event-ID` header. The header wins when both are given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    #[serde(default, rename = "lastEventId", deserialize_with = "seq")]
    last_event_id: Option<i64>,
}

/// `GET /v1/stream`. With `Last-Event-ID: N`, it first replays from the log the changes of the
/// events from `N` on: those at `N` again, because one event can change several snapshots
/// under the one id, and the client cannot say which of them it saw. So a resumed client sees
/// every change at least once. Then it goes on live. The response ends, for the client to
/// reconnect with its last id and be replayed what it would otherwise miss, when:
///
/// - the replay stopped at [`Api::replay_events`] events: its last message is then an `id:`
///   alone, the last event replayed, so that the client moves on even past events that changed
///   nothing, and a `retry:` of [`RECONNECT`];
/// - the client fell so far behind that the broadcast dropped changes for it (`Lagged`);
/// - another process moved the tables ([`Announcement::Resynced`]).
async fn stream_changes(
    State(api): State<Arc<Api>>,
    QueryParams(query): QueryParams<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(permit) = Arc::clone(&api.streams).try_acquire_owned() else {
        return Err(ApiError::unavailable(
            "as many streams are open as the daemon allows; retry",
        ));
    };
    let last: Option<i64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(query.last_event_id);
    // Subscribe before replaying: a change announced from now on is received live, and one
    // announced before had moved `settled` past it first (serve.rs, `Publisher`), so the
    // replay has it.
    let live = BroadcastStream::new(api.changes.subscribe());
    let settled = api.settled.load(Ordering::SeqCst);
    let replayed = match last {
        Some(n) => {
            let max = api.replay_events;
            api.pool.run(move |r| replay(r, n, settled, max)).await?
        }
        // A new client starts at `settled`: every change after it comes live. It is told so
        // (below), so that even a response that ends before any change leaves it an id to
        // resume from.
        None => Replay {
            changes: Vec::new(),
            through: settled,
            complete: true,
        },
    };
    let through = replayed.through;
    let missed = stream::iter(replayed.changes.into_iter().map(|c| Ok(sse_event(&c))));
    if !replayed.complete {
        let resume = SseEvent::default().id(through.to_string()).retry(RECONNECT);
        return Ok(sse(missed
            .chain(stream::once(async move { Ok(resume) }))
            .chain(holding(permit))
            .boxed()));
    }
    // Going live: the usual reconnect delay again (a cut-short part set a short one, and an
    // `EventSource` keeps it), and for a new client, its starting id.
    let mut start = SseEvent::default().retry(RETRY);
    if last.is_none() {
        start = start.id(through.to_string());
    }
    let missed = stream::once(async move { Ok(start) }).chain(missed);
    let mut shutdown = api.shutdown.clone();
    let ended = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let live = live
        .take_while(|a| std::future::ready(matches!(a, Ok(Announcement::Change(_)))))
        .filter_map(move |a| async move {
            match a {
                Ok(Announcement::Change(c)) if c.seq > through => Some(Ok(sse_event(&c))),
                _ => None, // replayed already
            }
        });
    Ok(sse(missed
        .chain(live)
        .take_until(ended)
        .chain(holding(permit))
        .boxed()))
}

/// An empty stream that holds a stream's permit: chained last, it goes with the response,
/// whichever way that ends.
fn holding(
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl futures_util::Stream<Item = Result<SseEvent, Infallible>> {
    stream::poll_fn(move |_| {
        let _ = &permit;
        std::task::Poll::Ready(None)
    })
}

fn sse(events: BoxStream<'static, Result<SseEvent, Infallible>>) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Body, Submission};

    /// A resumed stream replays what is projected, but no further than `settled`: past it, the
    /// read cache may still hold the old documents of the changed keys.
    #[test]
    fn the_replay_stops_where_the_read_cache_has_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("j.db");
        let store = crate::test_store(&db);
        for journey in ["J1", "J2", "J3"] {
            let body = format!(
                r#"{{"productId":"mobilejourneys","eventId":"sessioncreated","data":{{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"{journey}","sessionId":"1"}}}}"#
            );
            let events = events::parse_delivery(events::Source::MobileJourneys, body.as_bytes())
                .expect("parse");
            store
                .writer()
                .append(vec![Submission {
                    source: events::Source::MobileJourneys,
                    received_at: 1_700_000_000_000,
                    request_id: None,
                    size: body.len(),
                    body: Body::Events(events),
                }])
                .expect("append");
        }
        projector::Runner::new(
            store.writer(),
            store.reader().expect("reader"),
            projector::Config::default(),
        )
        .catch_up()
        .expect("project");
        let reader = Reader::open(&db).expect("reader");
        let keys = |from, settled| -> (Vec<(String, i64)>, i64) {
            let r = replay(&reader, from, settled, 10).expect("replay");
            assert!(r.complete);
            let keys = r.changes.into_iter().map(|c| (c.key, c.seq)).collect();
            (keys, r.through)
        };
        let (all, through) = keys(1, i64::MAX);
        assert_eq!(all, [("J1".into(), 1), ("J2".into(), 2), ("J3".into(), 3)]);
        assert_eq!(through, 3);
        assert_eq!(keys(1, 2), (all[..2].to_vec(), 2));
        assert_eq!(keys(1, 0), (vec![], 0));
        // From the event at Last-Event-ID on, that event included.
        assert_eq!(keys(2, i64::MAX), (all[1..].to_vec(), 3));
        assert_eq!(keys(4, i64::MAX), (vec![], 3));
        // Past its limit, a replay says how far it got, and that it is not complete.
        let part = replay(&reader, 1, i64::MAX, 2).expect("replay");
        assert!(!part.complete);
        assert_eq!((part.changes.len(), part.through), (2, 2));
        let rest = replay(&reader, part.through, i64::MAX, 2).expect("replay");
        assert!(rest.complete, "the last event is the bound");
        assert_eq!(rest.through, 3);
        store.close();
    }
}
