//! The webhook routes in-process: backpressure, storage failures and limits.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ingest::{Ingest, IngestMetrics, SourceAuth};
use store::{Options, Store, Synchronous};
use tower::ServiceExt;

const BODY: &str = r#"{"productId":"mobilejourneys","eventId":"sessioncreated","data":{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"J","sessionId":"1"}}"#;

fn ingest_for(store: &Store) -> Ingest {
    Ingest {
        writer: store.writer(),
        mx: SourceAuth::default(),
        mobile_journeys: SourceAuth::default(),
        max_body: 1 << 20,
        body_timeout: std::time::Duration::from_secs(30),
        now: Arc::new(|| 1_700_000_000_000),
        parse: events::parse_delivery,
        metrics: IngestMetrics::default(),
        on_stored: None,
    }
}

/// A store in `dir`, without fsync (the tests do not need durability).
fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(
        dir.path().join("j.db"),
        Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        },
    )
    .expect("open")
}

fn app(store: &Store, max_body: usize) -> axum::Router {
    ingest::router(Arc::new(Ingest {
        max_body,
        ..ingest_for(store)
    }))
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/webhooks/mobile-journeys")
        .body(body.into())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_queue_answers_503_with_retry_after_and_stores_nothing_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.db");
    let store = Store::open(
        &path,
        Options {
            synchronous: Synchronous::Normal,
            queue_capacity: 1,
            ..Options::default()
        },
    )
    .expect("open");
    // Hold SQLite's write lock: the writer takes the first job and waits on it.
    let lock = rusqlite_lock(&path);
    let app = app(&store, 1 << 20);
    let first = tokio::spawn(app.clone().oneshot(post(BODY)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(app.clone().oneshot(post(BODY.replace("\"1\"", "\"2\""))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = app
        .clone()
        .oneshot(post(BODY.replace("\"1\"", "\"3\"")))
        .await
        .expect("response");
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        third
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    drop(lock);
    assert_eq!(
        first.await.expect("task").expect("response").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        second.await.expect("task").expect("response").status(),
        StatusCode::NO_CONTENT
    );
    let stats = store.reader().expect("reader").stats().expect("stats");
    assert_eq!(stats.events, 2, "the refused request left nothing");
    assert_eq!(stats.deliveries, 2);
}

/// A store that fails the write (here a trigger, added by another connection, refuses every
/// event, as a full disk or an I/O error would fail the commit): 503 with `Retry-After`, the
/// error JSON without SQLite's words, nothing stored, the refusal counted; once the store takes
/// writes again, the same body is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_the_write_answers_503_and_keeps_nothing_of_the_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let other = rusqlite::Connection::open(dir.path().join("j.db")).expect("open");
    other
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'the disk says no'); END;",
        )
        .expect("trigger");
    let ingest = Arc::new(ingest_for(&store));
    let app = ingest::router(Arc::clone(&ingest));
    let refused = app.clone().oneshot(post(BODY)).await.expect("response");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .expect("body");
    let error: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
    assert!(
        !String::from_utf8_lossy(&body).contains("disk says no"),
        "internal details are logged, not sent: {error}"
    );
    let stats = store.reader().expect("reader").stats().expect("stats");
    assert_eq!((stats.events, stats.deliveries), (0, 0), "nothing kept");
    let mut registry = prometheus_client::registry::Registry::default();
    ingest.metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(
            r#"journeyd_webhooks_unavailable_total{source="mobile-journeys",reason="store_error"} 1"#
        ),
        "{text}"
    );

    other.execute_batch("DROP TRIGGER refuse").expect("drop");
    let stored = app.clone().oneshot(post(BODY)).await.expect("response");
    assert_eq!(stored.status(), StatusCode::NO_CONTENT);
    let stats = store.reader().expect("reader").stats().expect("stats");
    assert_eq!((stats.events, stats.deliveries), (1, 1));
    store.close();
}

/// The headers kept with the one quarantined body in `dir`'s database.
fn kept_headers(dir: &tempfile::TempDir) -> serde_json::Value {
    let headers: String = rusqlite::Connection::open(dir.path().join("j.db"))
        .expect("open")
        .query_row("SELECT headers FROM quarantine", [], |r| r.get(0))
        .expect("one quarantined body");
    serde_json::from_str(&headers).expect("json")
}

/// A quarantined body keeps the headers that explain it (a gzip body is "not UTF-8" until one
/// sees its `Content-Encoding`), and never a credential.
#[tokio::test]
async fn a_quarantined_body_keeps_the_headers_that_explain_it_and_no_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let app = app(&store, 1 << 20);
    let request = Request::post("/webhooks/mobile-journeys")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("content-length", "5")
        .header("user-agent", "provider/1.0")
        .header("x-request-id", "req-7")
        .header("authorization", "Bearer hunter2")
        .header("cookie", "session=hunter2")
        .body(Body::from(vec![0x1f, 0x8b, 0x08, 0x00, 0xff]))
        .expect("request");
    let response = app.oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let headers = kept_headers(&dir);
    assert_eq!(
        headers,
        serde_json::json!({
            "content-type": "application/json",
            "content-encoding": "gzip",
            "content-length": "5",
            "user-agent": "provider/1.0",
            "x-request-id": "req-7",
        })
    );
    store.close();
}

/// A kept header is text of at most a kibibyte: bytes that are not UTF-8 become U+FFFD, and a
/// longer value is cut and says how long it was.
#[tokio::test]
async fn a_kept_header_is_text_and_at_most_a_kibibyte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let app = app(&store, 1 << 20);
    let long = "r".repeat(60_000);
    let request = Request::post("/webhooks/mx")
        .header(
            "user-agent",
            axum::http::HeaderValue::from_bytes(b"caf\xe9/1").expect("obs-text"),
        )
        .header("x-request-id", long.as_str())
        .body(Body::from("{"))
        .expect("request");
    let response = app.oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let headers = kept_headers(&dir);
    assert_eq!(headers["user-agent"], "caf\u{FFFD}/1");
    assert_eq!(
        headers["x-request-id"],
        format!("{}… (60000 bytes)", &long[..1024])
    );
    store.close();
}

/// A body whose declared length is over the limit is refused before it is read: here it never
/// comes, and waiting for it would end in the body timeout's `408`. One declared at the limit
/// is waited for.
#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let app = ingest::router(Arc::new(Ingest {
        max_body: 100,
        body_timeout: Duration::from_millis(200),
        ..ingest_for(&store)
    }));
    let never = || {
        Body::from_stream(futures_util::stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >())
    };
    let declared = |length: &str| {
        Request::post("/webhooks/mobile-journeys")
            .header("content-length", length)
            .body(never())
            .expect("request")
    };
    let over = app
        .clone()
        .oneshot(declared("101"))
        .await
        .expect("response");
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(over.headers()["connection"], "close");
    let at = app
        .clone()
        .oneshot(declared("100"))
        .await
        .expect("response");
    assert_eq!(at.status(), StatusCode::REQUEST_TIMEOUT);
    let stats = store.reader().expect("reader").stats().expect("stats");
    assert_eq!(stats.deliveries, 0);
    store.close();
}

fn rusqlite_lock(path: &std::path::Path) -> Lock {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch("BEGIN IMMEDIATE").expect("lock");
    Lock(conn)
}

struct Lock(rusqlite::Connection);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_one_at_the_limit_is_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let app = app(&store, BODY.len());
    let at = app.clone().oneshot(post(BODY)).await.expect("response");
    assert_eq!(at.status(), StatusCode::NO_CONTENT);
    let over = app
        .clone()
        .oneshot(post(format!("{BODY} ")))
        .await
        .expect("response");
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(over.headers()["connection"], "close", "the rest is unread");
    assert!(!at.headers().contains_key("connection"));
    let body = axum::body::to_bytes(over.into_body(), 1 << 16)
        .await
        .expect("body");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["error"]["code"], "too_large");
}

#[tokio::test]
async fn a_parser_that_panics_leaves_the_body_in_quarantine_and_the_route_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let app = ingest::router(Arc::new(Ingest {
        parse: |_, _| panic!("a parser bug"),
        ..ingest_for(&store)
    }));
    let response = app.clone().oneshot(post(BODY)).await.expect("response");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["quarantined"], true);
    let reader = store.reader().expect("reader");
    let kept = reader.quarantined_bodies(0, 10).expect("quarantine");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].body, BODY.as_bytes(), "the exact bytes are kept");
    let entries = reader.quarantine().expect("quarantine");
    assert!(
        entries[0].reason.contains("parser failed"),
        "{}",
        entries[0].reason
    );
    // The route still answers the next request.
    let next = app.oneshot(post(BODY)).await.expect("response");
    assert_eq!(next.status(), StatusCode::ACCEPTED);
}

/// A header-only scheme refuses before the body is read. hyper then closes the connection, and
/// the answer must say so, or a client that reuses the connection finds it closed under its
/// next request.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_says_the_connection_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let app = ingest::router(Arc::new(Ingest {
        mobile_journeys: SourceAuth::new(vec![ingest::Scheme::bearer("token").expect("scheme")]),
        ..ingest_for(&store)
    }));
    let refused = app.clone().oneshot(post(BODY)).await.expect("response");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["connection"], "close");
    assert_eq!(
        refused.headers()["www-authenticate"],
        r#"Bearer realm="journeyd""#
    );
    let accepted = app
        .clone()
        .oneshot(
            Request::post("/webhooks/mobile-journeys")
                .header("authorization", "Bearer token")
                .body(Body::from(BODY))
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(accepted.status(), StatusCode::NO_CONTENT);
    assert!(!accepted.headers().contains_key("connection"));
}

/// `on_stored` hears of every stored event, with what the writer did with it, before the
/// answer: a new event with its `seq`, a redelivery as a duplicate, a quarantined body not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_stored_hears_each_committed_event_before_the_answer() {
    type Heard = Vec<(events::Kind, Option<String>, store::Appended)>;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let heard: Arc<std::sync::Mutex<Heard>> = Arc::default();
    let on_stored: ingest::OnStored = {
        let heard = Arc::clone(&heard);
        Arc::new(move |events, appended| {
            assert_eq!(events.len(), appended.len());
            let mut heard = heard.lock().expect("lock");
            for ((kind, keys), a) in events.iter().zip(appended) {
                heard.push((*kind, keys.correlation_id.clone(), *a));
            }
        })
    };
    let app = ingest::router(Arc::new(Ingest {
        on_stored: Some(on_stored),
        ..ingest_for(&store)
    }));
    let heard_now = || heard.lock().expect("lock").clone();
    let status = |r: axum::response::Response| r.status();
    let first = app.clone().oneshot(post(BODY)).await.expect("response");
    assert_eq!(status(first), StatusCode::NO_CONTENT);
    let kind = events::Kind::SessionCreated;
    let journey = Some("J".to_owned());
    assert_eq!(
        heard_now(),
        [(kind, journey.clone(), store::Appended::New(1))]
    );
    let again = app.clone().oneshot(post(BODY)).await.expect("response");
    assert_eq!(status(again), StatusCode::NO_CONTENT);
    assert_eq!(
        heard_now()[1..],
        [(kind, journey, store::Appended::Duplicate)]
    );
    let junk = app.clone().oneshot(post("{")).await.expect("response");
    assert_eq!(status(junk), StatusCode::ACCEPTED);
    assert_eq!(heard_now().len(), 2, "a quarantined body has no events");
    store.close();
}
