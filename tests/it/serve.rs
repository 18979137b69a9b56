//! `journeyd serve` driven over HTTP, as providers, dashboards and operators would.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{Daemon, Journeyd, seeds};

use crate::journeyd;

const MJ: &str = "/webhooks/mobile-journeys";
const MX: &str = "/webhooks/mx";

fn mj_event(journey: usize, n: usize) -> String {
    let kinds = [
        "linkcreated",
        "sessioncreated",
        "paymentattempt",
        "stage",
        "documentgenerated",
    ];
    let data = match n % 5 {
        0 => json!({"url": format!("https://x/{journey}"), "parameters": {"n": n}}),
        1 => json!({"sessionId": format!("s{}", n % 3)}),
        2 => {
            json!({"sessionId": "s1", "paymentDetail": {"transactionId": format!("T{}", n % 2), "authorised": if n % 4 == 2 { "true" } else { "false" }, "amount": 1.5, "currency": "GBP"}})
        }
        3 => {
            json!({"stageName": if n % 7 == 3 { "journeyEnd" } else { "details" }, "sessionData": {"n": n}})
        }
        _ => json!({"documentId": format!("D{}", n % 2)}),
    };
    let mut body = json!({"productId": "mobilejourneys", "eventId": kinds[n % 5], "eventVersion": "1", "eventTime": "2021-06-11T12:00:00Z",
        "data": {"occurredAt": format!("2021-06-11T10:{:02}:00Z", n % 60), "journeyId": "2", "correlationId": format!("J-{journey}"), "customerReference": format!("AX-{journey}")}});
    if let (Some(d), Value::Object(extra)) = (body["data"].as_object_mut(), data) {
        d.extend(extra);
    }
    format!("[{body}]")
}

fn mx_event(n: usize) -> String {
    let member = format!("MBR-{}", (n / 4) % 4);
    let user = format!("USR-{}", (n / 4) % 2);
    match n % 4 {
        0 => json!({"action": "member_data_updated", "type": "AGGREGATION", "member_guid": member, "user_guid": user, "completed_at": 1_600_000_000 + n, "transactions_created_count": n % 3}),
        1 => json!({"job": {"guid": format!("JOB-{}", n % 3), "member_guid": member, "user_guid": user, "status": 6, "status_name": "COMPLETED", "updated_at": 1_600_000_000 + n}}),
        2 => json!({"action": "updated", "goal": {"guid": format!("GOL-{}", n % 3), "user_guid": user, "revision": n % 5, "name": format!("g{n}")}}),
        _ => json!({"_json": [{"type": "pageview", "session_id": format!("S{}", n % 5), "user_guid": user, "created_at": 1_600_000_000 + n}]}),
    }
    .to_string()
}

fn corpus() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for n in 0..120 {
        out.push((MJ, mj_event(n % 13, n)));
        if n % 2 == 0 {
            out.push((MX, mx_event(n / 2)));
        }
    }
    out
}

/// Every snapshot the corpus produces, as the API serves it (states only: meta may differ).
fn all_states(d: &Daemon) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page = d.get(&format!("/v1/journeys?limit=5&after={after}")).json();
        for item in page["items"].as_array().expect("items") {
            out.insert(format!("journey {}", item["key"]), item["state"].clone());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    for path in (0..4)
        .map(|m| format!("/v1/members/MBR-{m}"))
        .chain((0..2).map(|u| format!("/v1/users/USR-{u}")))
        .chain((0..3).map(|g| format!("/v1/resources/goal/GOL-{g}")))
    {
        let r = d.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        out.insert(path, r.json()["state"].clone());
    }
    out
}

/// `series` of the daemon's `/metrics` now, as JSON (`null` when absent), for [`eventually`].
fn scraped(d: &Daemon, series: &str) -> Value {
    json!(metric(&d.get("/metrics").body, series))
}

/// Reads `read` until `done` holds for what it read, failing with the last reading after
/// `within`.
fn eventually(within: Duration, mut read: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    loop {
        let v = read();
        if done(&v) {
            return;
        }
        assert!(started.elapsed() < within, "still {v} after {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the projector has caught up with everything acknowledged, and its batches
/// have settled: no key is read through the log any more (decision 0013).
fn settle(d: &Daemon) {
    eventually(
        Duration::from_secs(10),
        || d.get("/v1/stats").json(),
        |s| s["projector"]["lag"] == 0,
    );
    eventually(
        Duration::from_secs(10),
        || scraped(d, "journeyd_unprojected_keys "),
        |keys| keys == &json!(0.0),
    );
}

#[test]
fn every_seed_example_over_http_is_stored_or_quarantined_and_projected() {
    let j = journeyd();
    let d = j.serve(&[]);
    for (file, route, status) in [
        ("mx-aggregation", MX, 204),
        ("mx-analytics-ruby-nil", MX, 202),
        ("mx-goal-created", MX, 204),
        ("mx-job-status", MX, 204),
        ("mj-standard-data", MJ, 204),
        ("mj-linkcreated-trailing-comma", MJ, 202),
        ("mj-sessioncreated", MJ, 204),
        ("mj-paymentattempt", MJ, 204),
        ("mj-documentgenerated", MJ, 204),
        ("mj-stage", MJ, 204),
    ] {
        let body = std::fs::read(seeds().join(format!("{file}.json"))).expect("seed");
        let r = d.post(route, &body, &[("content-type", "application/json")]);
        assert_eq!(r.status, status, "{file}: {}", r.body);
        if status == 202 {
            assert_eq!(r.json()["quarantined"], true);
            assert!(
                r.json()["reason"]
                    .as_str()
                    .expect("reason")
                    .contains("at line"),
                "{}",
                r.body
            );
        }
    }
    settle(&d);
    let journey = d
        .get("/v1/journeys/91daa348-0eb0-4062-b4b6-61fd467562b0")
        .json();
    assert_eq!(journey["state"]["status"], "completed");
    assert_eq!(
        journey["state"]["event_count"], 4,
        "session, payment, document, stage (the placeholder eventId is unknown)"
    );
    assert_eq!(
        d.get("/v1/members/MBR-48d9a481-f2a2-7e13-2685-62869cf0d33a")
            .json()["state"]["job"]["status_name"],
        "COMPLETED"
    );
    assert_eq!(
        d.get("/v1/users/USR-dfb1b536-692d-f172-88c6-643a2691b30c")
            .json()["state"]["goals"][0]["revision"],
        71
    );
    assert_eq!(
        d.get("/v1/resources/goal/GOL-537e6391-3c29-9130-4d4f-e44302608406")
            .json()["state"]["type"],
        "goal"
    );
    let stats = d.get("/v1/stats").json();
    assert_eq!(
        (&stats["events"], &stats["unknown"], &stats["quarantined"]),
        (&json!(8), &json!(1), &json!(2))
    );
    let history = d
        .get("/v1/journeys/91daa348-0eb0-4062-b4b6-61fd467562b0/events")
        .json();
    assert_eq!(history["events"].as_array().expect("events").len(), 4);
    assert_eq!(history["events"][0]["payload"]["eventId"], "sessioncreated");
    assert_eq!(d.get("/v1/journeys/unknown").status, 404);
    assert_eq!(d.get("/v1/journeys/unknown/events").status, 404);
    assert_eq!(d.get("/v1/journeys?status=lost").status, 400);
    assert_eq!(d.get("/v1/events?limit=2").json()["next_after"], 2);
    // A quarantined body keeps the request's selected headers beside its bytes.
    let headers: Vec<String> = {
        let conn = j.sql();
        let mut stmt = conn
            .prepare("SELECT headers FROM quarantine ORDER BY id")
            .expect("sql");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(headers.len(), 2);
    for h in headers {
        let h: Value = serde_json::from_str(&h).expect("headers are JSON");
        assert_eq!(h["content-type"], "application/json", "{h}");
    }
}

#[test]
fn one_corpus_in_order_and_shuffled_with_duplicates_gives_identical_states() {
    let (ja, jb) = (journeyd(), journeyd());
    let (a, b) = (ja.serve(&[]), jb.serve(&[]));
    let items = corpus();
    for (route, body) in &items {
        assert_eq!(a.post(route, body.as_bytes(), &[]).status, 204);
    }
    // B: every delivery twice, in a scrambled order, from four concurrent senders.
    let mut shuffled: Vec<(&str, String)> = items.iter().chain(items.iter()).cloned().collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..shuffled.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        shuffled.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let b = Arc::new(b);
    let chunks: Vec<Vec<(&str, String)>> = shuffled
        .chunks(shuffled.len() / 4 + 1)
        .map(<[_]>::to_vec)
        .collect();
    std::thread::scope(|s| {
        for chunk in chunks {
            let b = Arc::clone(&b);
            s.spawn(move || {
                for (route, body) in chunk {
                    assert_eq!(b.post(route, body.as_bytes(), &[]).status, 204);
                }
            });
        }
    });
    settle(&a);
    settle(&b);
    let (sa, sb) = (all_states(&a), all_states(&b));
    assert_eq!(sa.len(), 13 + 4 + 2 + 3);
    assert_eq!(sa, sb);
    assert_eq!(
        a.get("/v1/stats").json()["events"],
        b.get("/v1/stats").json()["events"],
        "duplicates stored once"
    );
}

#[test]
fn each_auth_scheme_accepts_the_right_credentials_and_rejects_the_rest() {
    let j = journeyd();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let d = j.serve(&[
        "--mx-basic-auth",
        "mx:s3cret",
        "--mx-bearer-token",
        "mx-token",
        "--mobile-journeys-webhook-secret",
        secret,
        "--api-token",
        "read-token",
    ]);
    let body = mj_event(1, 1);
    let basic = tests::basic_auth;
    let mx = mx_event(0);
    assert_eq!(d.post(MX, mx.as_bytes(), &[]).status, 401, "no credentials");
    assert_eq!(
        d.post(MX, mx.as_bytes(), &[("authorization", &basic("mx:wrong"))])
            .status,
        401
    );
    assert_eq!(
        d.post(MX, mx.as_bytes(), &[("authorization", "Bearer nope")])
            .status,
        401
    );
    assert_eq!(
        d.post(MX, mx.as_bytes(), &[("authorization", &basic("mx:s3cret"))])
            .status,
        204
    );
    assert_eq!(
        d.post(
            MX,
            mx_event(1).as_bytes(),
            &[("authorization", "Bearer mx-token")]
        )
        .status,
        204
    );

    // Standard Webhooks, signed now with the published test vector's secret.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let sig = ingest::auth::standard_webhooks_signature(secret, "msg_1", now, body.as_bytes())
        .expect("sign");
    let ts = now.to_string();
    let signed = |sig: &str, ts: &str, body: &str| {
        d.post(
            MJ,
            body.as_bytes(),
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", ts),
                ("webhook-signature", sig),
            ],
        )
        .status
    };
    assert_eq!(signed(&sig, &ts, &body), 204);
    assert_eq!(
        signed(&sig, &ts, &mj_event(1, 2)),
        401,
        "another body under the same signature"
    );
    assert_eq!(
        signed(&format!("v1,AAAA {sig}"), &ts, &body),
        204,
        "any one of several signatures"
    );
    // The published vector itself: a correct signature, but from 2021: outside the tolerance.
    let vector = d.post(
        MJ,
        br#"{"test": 2432232314}"#,
        &[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ],
    );
    assert_eq!(vector.status, 401);
    assert_eq!(
        vector.json()["error"]["message"],
        "signature timestamp outside the tolerance"
    );
    assert_eq!(d.post(MJ, body.as_bytes(), &[]).status, 401);

    // The read API wants its own token; health does not.
    assert_eq!(d.get("/v1/stats").status, 401);
    assert_eq!(
        d.get_with("/v1/stats", &[("authorization", "Bearer mx-token")])
            .status,
        401
    );
    // Two MX events and one Mobile Journeys event (its second delivery was a duplicate).
    assert_eq!(
        d.get_with("/v1/stats", &[("authorization", "Bearer read-token")])
            .json()["events"],
        3
    );
    assert_eq!(d.get("/healthz").status, 200);
    // Nothing of a refused request was stored, and no secret reached the log.
    let log = d.log();
    for secret in [
        "s3cret",
        "mx-token",
        "read-token",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert!(!log.contains(secret), "a secret was logged: {secret}");
    }
}

/// Minimal base64 for the test's Basic header, so the test does not trust the code it checks.
#[test]
fn malformed_bodies_get_202_and_a_quarantine_entry_and_oversized_ones_413() {
    let j = journeyd();
    let d = j.serve(&["--max-body", "2000"]);
    for (body, reason) in [
        (&b"{\"a\": nil}"[..], "not JSON"),
        (&b""[..], "empty body"),
        (&b"\xff\xfe"[..], "not UTF-8"),
        (&"[".repeat(300).into_bytes()[..], "too deep"),
    ] {
        let r = d.post(MX, body, &[]);
        assert_eq!(r.status, 202, "{}", r.body);
        assert!(
            r.json()["reason"]
                .as_str()
                .expect("reason")
                .starts_with(reason),
            "{}",
            r.body
        );
    }
    let big = vec![b' '; 2001];
    let r = d.post(MX, &big, &[]);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "too_large");
    assert_eq!(d.get("/healthz").status, 200);
    assert_eq!(
        d.get("/readyz").json(),
        json!({"database": true, "projector": true})
    );
    assert_eq!(d.get("/v1/stats").json()["quarantined"], 4);
    drop(d);
    let list = j.json(&["quarantine", "list"]);
    assert_eq!(list.as_array().expect("list").len(), 4);
}

fn sse(d: &Daemon, last_event_id: Option<i64>) -> BufReader<TcpStream> {
    let addr = d.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .expect("send");
    BufReader::new(s)
}

/// Reads SSE lines until one contains `needle`; returns the `id:` seen before it.
fn wait_for(reader: &mut BufReader<TcpStream>, needle: &str) -> Option<i64> {
    let mut id = None;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if let Some(v) = line.trim().strip_prefix("id:") {
            id = v.trim().parse().ok();
        }
        if line.contains(needle) {
            return id.or(Some(0));
        }
    }
}

#[test]
fn a_stream_client_sees_a_change_within_a_second_and_can_resume() {
    let j = journeyd();
    let d = j.serve(&[]);
    let mut stream = sse(&d, None);
    // The response head first.
    assert!(wait_for(&mut stream, "text/event-stream").is_some());
    let started = Instant::now();
    assert_eq!(d.post(MJ, mj_event(7, 1).as_bytes(), &[]).status, 204);
    // The data's fields in the contract's order: key, status (journeys), seq.
    let id = wait_for(
        &mut stream,
        r#"data: {"key":"J-7","status":"opened","seq":1}"#,
    )
    .expect("a change for J-7");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(id >= 1);
    // Events after it, then a resuming client asks for what came after `id`.
    assert_eq!(d.post(MJ, mj_event(8, 1).as_bytes(), &[]).status, 204);
    assert_eq!(d.post(MX, mx_event(0).as_bytes(), &[]).status, 204);
    settle(&d);
    let mut resumed = sse(&d, Some(id));
    assert!(
        wait_for(&mut resumed, "\"key\":\"J-8\"").is_some(),
        "missed change replayed"
    );
    let mut resumed = sse(&d, Some(id));
    assert!(
        wait_for(&mut resumed, "event: members").is_some(),
        "member change replayed"
    );
}

/// SSE messages as (id, event, key), read until `done` holds for those read so far, or
/// until the stream ends or is silent for the read timeout.
fn messages(
    reader: &mut BufReader<TcpStream>,
    done: impl Fn(&[(i64, String, String)]) -> bool,
) -> Vec<(i64, String, String)> {
    let (mut out, mut line) = (Vec::new(), String::new());
    let (mut id, mut event, mut key) = (None, None, None);
    while !done(&out) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = line.trim();
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            key = serde_json::from_str::<Value>(v.trim())
                .ok()
                .and_then(|d| d["key"].as_str().map(str::to_owned));
        } else if line.is_empty()
            && let (Some(i), Some(e), Some(k)) = (id.take(), event.take(), key.take())
        {
            out.push((i, e, k));
        }
    }
    out
}

/// One projector batch folds many events of interleaved keys and changes several projections
/// per MX event. Its changes go out in `seq` order, so a client that drops and resumes with
/// the last id it saw (at any point) is replayed every change it had not seen.
#[test]
fn a_resumed_stream_misses_no_change_however_a_batch_interleaves_keys() {
    let j = journeyd();
    let d = j.serve(&[]);
    let mut stream = sse(&d, None);
    assert!(wait_for(&mut stream, "text/event-stream").is_some());
    // Appended by another process, not projected there: the daemon's projector folds them in
    // one or a few batches.
    let mut lines = Vec::new();
    for n in 0..90 {
        lines.push(mj_event(n % 7, n));
        if n % 3 == 0 {
            lines.push(mx_event(n));
        }
    }
    let file = j.write("interleaved.ndjson", lines.join("\n").as_bytes());
    j.run(&["import", "--no-project", tests::arg(&file)])
        .success();
    let head = j.json(&["stats"])["log_head"].as_i64().expect("head");
    let reached = |m: &[(i64, String, String)]| m.last().is_some_and(|(id, _, _)| *id >= head);
    let live = messages(&mut stream, reached);
    assert!(
        reached(&live),
        "the stream reached the head, {head}: {live:?}"
    );
    let ids: Vec<i64> = live.iter().map(|(id, _, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "ids never decrease: {ids:?}"
    );
    assert!(
        live.iter().any(|(_, e, _)| e == "members") && live.iter().any(|(_, e, _)| e == "users"),
        "{live:?}"
    );
    for cut in [1, live.len() / 3, live.len() / 2, live.len() - 1] {
        let seen = live[cut].0;
        let mut resumed = sse(&d, Some(seen));
        let resumed = messages(&mut resumed, reached);
        assert!(
            resumed.iter().all(|(id, _, _)| *id >= seen),
            "resumed at {seen}, the replay starts there: {resumed:?}"
        );
        let replayed: BTreeSet<(String, String)> =
            resumed.into_iter().map(|(_, e, k)| (e, k)).collect();
        for (id, e, k) in &live[cut..] {
            assert!(
                replayed.contains(&(e.clone(), k.clone())),
                "resumed at {seen}: {e} {k} (id {id}) missing"
            );
        }
    }
}

/// The value of the counter or gauge `series` (name and labels) in a `/metrics` text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_cached_point_read_shows_a_change_as_soon_as_the_stream_announces_it() {
    let j = journeyd();
    let d = j.serve(&[]);
    let mut stream = sse(&d, None);
    assert!(wait_for(&mut stream, "text/event-stream").is_some());
    assert_eq!(d.post(MJ, mj_event(3, 0).as_bytes(), &[]).status, 204);
    assert!(wait_for(&mut stream, "\"key\":\"J-3\"").is_some());
    let hits = || {
        let text = d.get("/metrics").body;
        metric(&text, r#"journeyd_read_cache_reads_total{result="hit"} "#).unwrap_or(0.0)
    };
    for n in 1..5 {
        // Until the projector's batch has settled, the key is read through the log (decision
        // 0013); after that, reads fill the cache again.
        settle(&d);
        // The second read of the same document comes from the read cache.
        let before = d.get("/v1/journeys/J-3").json();
        let hit = hits();
        assert_eq!(d.get("/v1/journeys/J-3").json(), before);
        assert_eq!(hits(), hit + 1.0, "the second read came from the cache");
        assert_eq!(before["meta"]["event_count"], n);
        assert_eq!(d.post(MJ, mj_event(3, n).as_bytes(), &[]).status, 204);
        assert!(wait_for(&mut stream, "\"key\":\"J-3\"").is_some());
        let after = d.get("/v1/journeys/J-3").json();
        assert_eq!(after["meta"]["event_count"], n + 1, "{after}");
        // Once nothing is read through, the cache answers, and its old document is gone.
        settle(&d);
        assert_eq!(d.get("/v1/journeys/J-3").json(), after);
    }
    settle(&d);
    d.get("/v1/journeys/J-3");
    let text = d.get("/metrics").body;
    assert!(metric(&text, "journeyd_read_cache_bytes ").is_some_and(|b| b > 0.0));
}

#[test]
fn another_process_s_import_shows_in_cached_point_reads() {
    let j = journeyd();
    let d = j.serve(&[]);
    assert_eq!(d.post(MJ, mj_event(4, 0).as_bytes(), &[]).status, 204);
    settle(&d);
    let started = Instant::now();
    let first = loop {
        let r = d.get("/v1/journeys/J-4");
        if r.status == 200 {
            break r.json();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{}", r.body);
        std::thread::sleep(Duration::from_millis(10));
    };
    let hits = || {
        metric(
            &d.get("/metrics").body,
            r#"journeyd_read_cache_reads_total{result="hit"} "#,
        )
        .unwrap_or(0.0)
    };
    let before = hits();
    assert_eq!(d.get("/v1/journeys/J-4").json(), first);
    assert_eq!(hits(), before + 1.0, "the second read came from the cache");
    let lines: Vec<String> = (1..3).map(|n| mj_event(4, n)).collect();
    let file = j.write("more.ndjson", lines.join("\n").as_bytes());
    // `import` appends and projects in its own process, beside the daemon.
    j.run(&["import", tests::arg(&file)]).success();
    eventually(
        Duration::from_secs(5),
        || d.get("/v1/journeys/J-4").json(),
        |doc| doc["meta"]["event_count"] == 3,
    );
}

/// docs/contract.md section 7: `journeyd rebuild` works while the daemon runs. The rebuild swaps in tables
/// folded up to the log head it saw, which may be behind what the daemon had projected by then:
/// the snapshots go back. Point reads must not (decision 0013), and the daemon must pick up from
/// the swapped checkpoint and end where a daemon that never saw a rebuild ends.
#[test]
fn a_rebuild_by_another_process_during_ingest_never_sends_point_reads_back() {
    let (j, fresh) = (journeyd(), journeyd());
    // A log with other journeys in it, so that each rebuild of journeys takes a while and the
    // daemon projects deliveries past the head it started from. And other members: `rebuild`
    // swaps journeys in, spends a while on members and users, and only then folds what came
    // meanwhile, so the daemon is the one that meets the older journeys table.
    let history: Vec<String> = (0..20_000)
        .map(|n| mj_event(1_000 + n % 2_000, n))
        .chain((0..10_000).map(|n| {
            json!({"action": "member_data_updated", "type": "BALANCE", "member_guid": format!("MBR-H{}", n % 1_000),
                   "user_guid": format!("USR-H{}", n % 100), "completed_at": 1_600_000_000 + n})
            .to_string()
        }))
        .collect();
    let file = j.write("history.ndjson", history.join("\n").as_bytes());
    for jd in [&j, &fresh] {
        jd.run(&["import", "--no-project", tests::arg(&file)])
            .success();
    }
    let (d, f) = (j.serve(&[]), fresh.serve(&[]));
    settle(&d);
    let items = corpus();
    // Other journeys' deliveries beside the corpus: after each swap the daemon has hundreds of
    // events to fold again before its snapshots are current.
    let noise: Vec<String> = (0..40)
        .map(|b| {
            let events: Vec<String> = (0..50)
                .map(|n| mj_event(30_000 + b * 50 + n, b * 50 + n))
                .map(|e| e[1..e.len() - 1].to_owned())
                .collect();
            format!("[{}]", events.join(","))
        })
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let went_back: Mutex<Vec<String>> = Mutex::default();
    let reads = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Stops the dashboard however this closure ends, so that a failure cannot hang the test.
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _done = Done(&done);
        // A dashboard polling every journey, remembering the most events each has shown.
        s.spawn(|| {
            let mut seen: BTreeMap<String, u64> = BTreeMap::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for k in 0..13 {
                    let r = d.get(&format!("/v1/journeys/J-{k}"));
                    reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // A journey not found has no events.
                    let count = match r.status {
                        200 => r.json()["meta"]["event_count"].as_u64().unwrap_or(0),
                        404 => 0,
                        other => panic!("GET /v1/journeys/J-{k}: {other} {}", r.body),
                    };
                    let most = seen.entry(format!("J-{k}")).or_default();
                    if count < *most {
                        went_back
                            .lock()
                            .expect("lock")
                            .push(format!("J-{k}: {count} events after {most}"));
                    }
                    *most = (*most).max(count);
                }
            }
        });
        let poster = s.spawn(|| {
            for (route, body) in &items {
                assert_eq!(d.post(route, body.as_bytes(), &[]).status, 204);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let noiser = s.spawn(|| {
            for body in &noise {
                assert_eq!(d.post(MJ, body.as_bytes(), &[]).status, 204);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Rebuilds in another process, one after another while the corpus comes in.
        loop {
            j.run(&["rebuild"]).success();
            if poster.is_finished() {
                break;
            }
        }
        poster.join().expect("every delivery acknowledged");
        noiser.join().expect("every delivery acknowledged");
        settle(&d);
    });
    let went_back = went_back.into_inner().expect("lock");
    assert!(went_back.is_empty(), "point reads went back: {went_back:?}");
    assert!(reads.into_inner() > 0, "the dashboard read something");
    let all = items
        .iter()
        .map(|(r, b)| (*r, b))
        .chain(noise.iter().map(|b| (MJ, b)));
    for (route, body) in all {
        assert_eq!(f.post(route, body.as_bytes(), &[]).status, 204);
    }
    settle(&f);
    assert_eq!(all_states(&d), all_states(&f));
    assert_eq!(
        d.get("/v1/stats").json()["projector"],
        f.get("/v1/stats").json()["projector"]
    );
}

/// While the projector's rounds fail, the daemon says it is not ready, keeps taking webhooks,
/// and answers point reads by folding the log (decision 0013); once a round succeeds it is
/// ready again and its snapshots hold everything. The fault: triggers, added by another
/// process, that refuse every write to the journeys table.
#[test]
fn while_projection_fails_point_reads_fold_the_log_and_readyz_says_so() {
    let j = journeyd();
    let d = j.serve(&[]);
    for journey in [1, 9] {
        assert_eq!(d.post(MJ, mj_event(journey, 0).as_bytes(), &[]).status, 204);
    }
    settle(&d);
    assert_eq!(d.get("/readyz").status, 200);
    // J-9 gets no event during the fault, so nothing notes it: read, it fills the read cache.
    let quiet = d.get("/v1/journeys/J-9").json();
    let sql = j.sql();
    sql.execute_batch(
        "CREATE TRIGGER refuse_insert BEFORE INSERT ON journeys BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;
         CREATE TRIGGER refuse_update BEFORE UPDATE ON journeys BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .expect("add the triggers");
    for (journey, n) in [(1, 1), (1, 2), (2, 0)] {
        assert_eq!(d.post(MJ, mj_event(journey, n).as_bytes(), &[]).status, 204);
    }
    eventually(
        Duration::from_secs(5),
        || json!(d.get("/readyz").status),
        |status| status == &json!(503),
    );
    assert_eq!(d.get("/healthz").status, 200, "alive, though not ready");
    assert_ne!(d.get("/v1/stats").json()["projector"]["lag"], 0);
    // The read cache and the notes are not what answers: every key is folded from the log.
    let read_through = || {
        metric(
            &d.get("/metrics").body,
            r#"journeyd_read_cache_reads_total{result="read_through"} "#,
        )
        .unwrap_or(0.0)
    };
    let (before, failing) = (read_through(), d.get("/v1/journeys/J-1").json());
    assert_eq!(failing["meta"]["event_count"], 3, "{failing}");
    assert_eq!(d.get("/v1/journeys/J-2").json()["meta"]["event_count"], 1);
    assert_eq!(d.get("/v1/journeys/J-1").json(), failing);
    // Not noted and cached, yet folded too: no projector is keeping the snapshots current.
    assert_eq!(d.get("/v1/journeys/J-9").json(), quiet);
    assert_eq!(read_through(), before + 4.0);
    assert_eq!(d.get("/v1/journeys/J-3").status, 404);

    sql.execute_batch("DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;")
        .expect("drop the triggers");
    eventually(
        Duration::from_secs(5),
        || json!(d.get("/readyz").status),
        |status| status == &json!(200),
    );
    settle(&d);
    // The projector's own document is the one the fold showed.
    assert_eq!(d.get("/v1/journeys/J-1").json(), failing);
    let stored: i64 = sql
        .query_row(
            "SELECT event_count FROM journeys WHERE correlation_id = 'J-1'",
            [],
            |r| r.get(0),
        )
        .expect("J-1's snapshot row");
    assert_eq!(stored, 3);
}

/// docs/contract.md section 9: SIGTERM drains in-flight requests, lets the projector catch up and exits
/// 0 within 10 seconds. The signal comes while four clients are posting: every delivery that
/// got its 204 is in the log, and the snapshots are at the head.
#[test]
fn sigterm_finishes_in_flight_work_projects_to_the_head_and_exits_0() {
    let j = journeyd();
    let d = j.serve(&[]);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let posters: Vec<_> = (0..4)
        .map(|t| {
            let (url, acknowledged, stop) =
                (d.url.clone(), Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let journey = 1000 * (t + 1) + n;
                    let sent = agent
                        .post(format!("{url}{MJ}"))
                        .send(mj_event(journey, 0).as_bytes());
                    match sent {
                        Ok(r) if r.status() == 204 => {
                            acknowledged
                                .lock()
                                .expect("lock")
                                .push(format!("J-{journey}"));
                        }
                        // Refused or cut off once the daemon stops taking requests.
                        _ => break,
                    }
                    n += 1;
                }
            })
        })
        .collect();
    // Let the posters get going, then stop the daemon under them.
    while acknowledged.lock().expect("lock").len() < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    assert_eq!(d.terminate(Duration::from_secs(10)), Some(0), "exit status");
    assert!(started.elapsed() < Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for p in posters {
        p.join().expect("poster");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let stats = j.json(&["stats"]);
    assert_eq!(
        stats["projector"]["lag"], 0,
        "projected to the head before exiting"
    );
    let logged: BTreeSet<String> = j
        .log()
        .iter()
        .filter_map(|e| e["keys"]["correlation_id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !logged.contains(*k))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
    assert_eq!(
        stats["journeys"]["total"].as_u64(),
        Some(logged.len() as u64),
        "every logged journey is projected"
    );
}

/// A second SIGTERM does not wait for the graceful stop: with a request still in flight (its
/// body half sent), the first signal waits for it, the second exits at once with status 1.
#[test]
fn a_second_sigterm_exits_at_once() {
    let j = journeyd();
    let d = j.serve(&[]);
    let addr = d.url.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).expect("connect");
    write!(
        slow,
        "POST {MJ} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n["
    )
    .expect("send");
    slow.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(200));
    let (code, took) = signal_twice(d, Duration::from_millis(500));
    assert_eq!(code, Some(1), "the second signal's exit");
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(slow);
}

/// SIGTERM to `pid`.
fn sigterm(pid: u32) {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
}

/// SIGTERM, `gap`, SIGTERM again; the exit status, and how long it took after the second.
fn signal_twice(d: Daemon, gap: Duration) -> (Option<i32>, Duration) {
    sigterm(d.pid());
    std::thread::sleep(gap);
    let started = Instant::now();
    sigterm(d.pid());
    let code = d.terminate(Duration::from_secs(5));
    (code, started.elapsed())
}

/// The second signal works to the end, also once the HTTP side has stopped and the projector
/// folds a backlog (another process appended 60,000 events without projecting them).
#[test]
fn a_second_sigterm_during_the_final_catch_up_exits_at_once() {
    let j = journeyd();
    let d = j.serve(&[]);
    let lines: Vec<String> = (0..60_000).map(|n| mj_event(n, n)).collect();
    let file = j.write("backlog.ndjson", lines.join("\n").as_bytes());
    j.run(&["import", "--no-project", tests::arg(&file)])
        .success();
    // The second signal once the HTTP runtime is gone, while the projector folds.
    sigterm(d.pid());
    let started = Instant::now();
    while !d.log().contains("requests drained") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", d.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    let started = Instant::now();
    sigterm(d.pid());
    let code = d.terminate(Duration::from_secs(5));
    assert_eq!(code, Some(1), "the second signal's exit");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A SIGTERM while the daemon is still catching its projections up at start-up (here, building
/// them from a 20,000-event log while it already serves) ends it on time with status 0; the
/// next start does the work.
#[test]
fn sigterm_during_the_start_up_catch_up_exits_0_and_the_next_start_finishes_it() {
    let j = journeyd();
    let lines: Vec<String> = (0..20_000).map(|n| mj_event(n % 2_000, n)).collect();
    let file = j.write("log.ndjson", lines.join("\n").as_bytes());
    j.run(&["import", "--no-project", tests::arg(&file)])
        .success();
    let logged = j.json(&["stats"])["events"].as_u64().expect("events");
    let d = j.try_serve(&[]).expect("listening");
    let started = Instant::now();
    let (code, log) = d.terminate_with_log(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "{log}");
    // The stop cut the catch-up short: it never reached the head it found at the start.
    assert!(log.contains("stopping: no new connections"), "{log}");
    assert!(!log.contains("snapshots current"), "{log}");
    // The next start builds what the first did not.
    let d = j.serve(&[]);
    settle(&d);
    let stats = d.get("/v1/stats").json();
    assert_eq!(stats["events"].as_u64(), Some(logged));
    assert_eq!(stats["projector"]["lag"], 0);
    assert_eq!(stats["journeys"]["total"], 2_000);
}

/// The daemon serves while its projector catches up at start-up (docs/contract.md 2.5 and 7), and no
/// point read hides an event acknowledged before the start, though nothing noted its key: here
/// another connection holds the write lock, so the projector can write nothing, and a journey
/// imported without projection still reads whole. Webhooks wait for the writer meanwhile; lists
/// answer from the tables as they are. Once the lock goes, the snapshots catch up.
#[test]
fn the_daemon_serves_while_it_catches_up_and_point_reads_fold_what_it_has_not() {
    let j = journeyd();
    let lines: Vec<String> = (0..40).map(|n| mj_event(n % 4, n)).collect();
    let file = j.write("log.ndjson", lines.join("\n").as_bytes());
    j.run(&["import", tests::arg(&file)]).success();
    let projected = j.json(&["journey", "J-1"]);
    let more: Vec<String> = (40..60).map(|n| mj_event(n % 4, n)).collect();
    let file = j.write("more.ndjson", more.join("\n").as_bytes());
    j.run(&["import", "--no-project", tests::arg(&file)])
        .success();
    let lock = j.sql();
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("hold the write lock");
    let d = j.try_serve(&[]).expect("listening while the writer waits");
    let read = d.get("/v1/journeys/J-1").json();
    assert_eq!(read["meta"]["event_count"], 15, "{read}");
    assert_eq!(projected["meta"]["event_count"], 10, "{projected}");
    let listed = d.get("/v1/journeys?limit=10").json();
    assert_eq!(listed["items"].as_array().expect("items").len(), 4);
    assert_ne!(d.get("/v1/stats").json()["projector"]["lag"], 0);
    lock.execute_batch("ROLLBACK").expect("release");
    settle(&d);
    assert_eq!(d.get("/v1/journeys/J-1").json()["state"], read["state"]);
    let stats = d.get("/v1/stats").json();
    assert_eq!(stats["events"], 60);
}

#[test]
fn a_second_daemon_on_the_same_database_refuses_to_start() {
    let j = journeyd();
    let _first = j.serve(&[]);
    let log = j.try_serve(&[]).err().expect("the second must not start");
    assert!(
        log.contains("another journeyd serve is running on"),
        "{log}"
    );
    // The same file by another name: a symlink.
    let other = journeyd();
    std::os::unix::fs::symlink(j.db(), other.db()).expect("symlink");
    let log = other
        .try_serve(&[])
        .err()
        .expect("the same file through a symlink");
    assert!(
        log.contains("another journeyd serve is running on"),
        "{log}"
    );
}

/// A new database's first start builds the snapshots, and says so; a start with another
/// configuration rebuilds what it changes, and says that.
#[test]
fn the_first_start_builds_the_snapshots_and_a_new_configuration_rebuilds_them() {
    let j = journeyd();
    let d = j.serve(&[]);
    let log = d.log();
    assert_eq!(
        log.matches("building the snapshots for the first time")
            .count(),
        4,
        "one line per projection: {log}"
    );
    assert!(!log.contains("other code or configuration"), "{log}");
    assert_eq!(d.terminate(Duration::from_secs(10)), Some(0));
    let d = j.serve(&["--completing-stages", "done"]);
    let log = d.log();
    assert_eq!(
        log.matches("snapshots were built by other code or configuration; rebuilding")
            .count(),
        1,
        "the journeys only: {log}"
    );
    assert!(!log.contains("for the first time"), "{log}");
}

/// Runs `serve ARGS` to its end, which must come within 30 s; the exit code and stderr.
fn serve_to_its_end(j: &Journeyd, args: &[&str]) -> (Option<i32>, String) {
    let mut args = args.to_vec();
    args.insert(0, "serve");
    let mut child = j
        .command(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `serve` refuses what it cannot use before it starts anything: another program's database
/// gets no lock file beside it, and an address in use is refused before the database is even
/// made, without the shutdown lines of a daemon that ran.
#[test]
fn serve_refuses_a_foreign_database_and_a_taken_address_before_starting_anything() {
    let j = journeyd();
    j.sql()
        .execute_batch("CREATE TABLE t (x)")
        .expect("another program's database");
    let (code, stderr) = serve_to_its_end(&j, &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is not a journeyd database"), "{stderr}");
    let lock = format!("{}.lock", j.db().display());
    assert!(
        !std::path::Path::new(&lock).exists(),
        "no lock file: {lock}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let k = journeyd();
    let (code, stderr) = serve_to_its_end(&k, &["--listen", &addr]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(stderr.contains("--listen / JOURNEYD_LISTEN"), "{stderr}");
    for line in ["requests drained", "stopped"] {
        assert!(!stderr.contains(line), "{line}: {stderr}");
    }
    assert!(!k.db().exists(), "the database is not made");
}

/// A database in a folder that does not exist is refused by every command with a line that
/// says so, and `serve` leaves no lock file behind.
#[test]
fn a_database_in_a_folder_that_does_not_exist_is_refused_by_every_command_saying_so() {
    let j = journeyd();
    let db = j.dir().join("no-such-folder").join("journeyd.db");
    let example = tests::examples().join("mobile-journeys.json");
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["import", tests::arg(&example)],
        vec!["stats"],
        vec!["events"],
        vec!["journey", "J1"],
        vec!["rebuild"],
        vec!["quarantine", "list"],
        vec!["backup", "copy.db"],
    ] {
        let run = j.run_on(&db, &args);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("in a folder that does not exist"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
    }
    assert!(!j.dir().join("no-such-folder").exists(), "nothing was made");
}

#[test]
fn metrics_count_what_came_in_and_what_the_projector_holds() {
    let j = journeyd();
    let d = j.serve(&[]);
    for n in 0..3 {
        let body = mj_event(7, n);
        assert_eq!(
            d.post("/webhooks/mobile-journeys", body.as_bytes(), &[])
                .status,
            204
        );
    }
    let again = mj_event(7, 0);
    assert_eq!(
        d.post("/webhooks/mobile-journeys", again.as_bytes(), &[])
            .status,
        204
    );
    settle(&d);
    // The projector reports after its round; give the gauges a moment after the lag reads 0.
    let started = Instant::now();
    let text = loop {
        let m = d.get("/metrics");
        assert_eq!(m.status, 200);
        if m.body
            .contains(r#"journeyd_projector_cache_keys{projection="journeys"} 1"#)
            || started.elapsed() > Duration::from_secs(5)
        {
            break m.body;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for line in [
        r#"journeyd_events_total{source="mobile-journeys",outcome="new"} 3"#,
        r#"journeyd_events_total{source="mobile-journeys",outcome="duplicate"} 1"#,
        r#"journeyd_http_requests_total{route="/webhooks/mobile-journeys",status="204"} 4"#,
        r#"journeyd_projector_lag_events 0"#,
        r#"journeyd_projector_cache_keys{projection="journeys"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    let bytes = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"journeyd_projector_cache_bytes{projection="journeys"} "#))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("journeys cache bytes");
    assert!(bytes > 512, "{bytes}");
}

#[test]
fn the_http_worker_count_follows_the_flag_and_zero_is_bad_usage() {
    let j = journeyd();
    let d = j.serve(&["--workers", "3"]);
    assert_eq!(d.get("/healthz").status, 200);
    assert!(d.log().contains("workers=3"), "{}", d.log());
    drop(d);
    assert_eq!(j.run(&["serve", "--workers", "0"]).code, Some(2));
}

#[test]
fn kill_9_during_concurrent_ingest_loses_no_acknowledged_event() {
    let j = journeyd();
    let d = j.serve(&[]);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = Arc::new(d);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (d, acked, stop) = (Arc::clone(&d), Arc::clone(&acked), Arc::clone(&stop));
            s.spawn(move || {
                for n in 0..10_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let body = mj_event(t * 1000 + n % 50, n);
                    let Some(r) = d.try_post(MJ, body.as_bytes()) else {
                        break;
                    };
                    if r.status == 204 {
                        acked.lock().expect("lock").push(body);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(700));
        let pid = d.pid();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 20,
        "the test must ingest something before the kill ({} acked)",
        acked.len()
    );
    drop(d);

    // Every acknowledged event is in the log.
    let conn = j.sql();
    let mut stmt = conn.prepare("SELECT event_id FROM events").expect("sql");
    let stored: BTreeSet<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    for body in &acked {
        for e in
            events::parse_delivery(events::Source::MobileJourneys, body.as_bytes()).expect("valid")
        {
            assert!(
                stored.contains(e.id.as_bytes().as_slice()),
                "acknowledged event {} lost",
                e.id
            );
        }
    }
    drop(stmt);
    drop(conn);
    // After a restart the snapshots equal a full rebuild.
    let restarted = j.serve(&[]);
    settle(&restarted);
    assert_eq!(restarted.terminate(Duration::from_secs(10)), Some(0));
    let snapshot = |j: &Journeyd| -> Vec<(String, String)> {
        let conn = j.sql();
        let mut stmt = conn
            .prepare("SELECT correlation_id, state FROM journeys ORDER BY 1")
            .expect("sql");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let after_restart = snapshot(&j);
    assert!(!after_restart.is_empty());
    j.run(&["rebuild"]).success();
    assert_eq!(snapshot(&j), after_restart);
}

/// `journeyd backup` while the daemon takes webhooks: the copy is the log as of one commit (a
/// gap-free prefix of what the daemon kept, with the counts of that prefix). A daemon started
/// on the copy, sent every delivery again as a provider would, serves what the original
/// serves. A backup onto an existing file fails with one line and leaves the file alone.
#[test]
fn a_backup_taken_during_ingest_restores_to_a_daemon_that_converges() {
    let j = journeyd();
    let d = j.serve(&[]);
    let corpus = corpus();
    let (first, rest) = corpus.split_at(60);
    for (route, body) in first {
        assert_eq!(d.post(route, body.as_bytes(), &[]).status, 204);
    }
    let dest = j.dir().join("backup.db");
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            for (route, body) in rest {
                assert_eq!(d.post(route, body.as_bytes(), &[]).status, 204);
            }
        });
        j.json(&["backup", tests::arg(&dest)])
    });
    settle(&d);
    let seqs = |j: &Journeyd| -> Vec<(i64, String)> {
        j.json(&["events", "--limit", "100000"])["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| (e["seq"].as_i64().expect("seq"), e["event_id"].to_string()))
            .collect()
    };
    let restored = journeyd();
    std::fs::copy(&dest, restored.db()).expect("restore");
    let (kept, copied) = (seqs(&j), seqs(&restored));
    assert!(copied.len() >= 60, "{} events", copied.len());
    assert_eq!(copied[..], kept[..copied.len()], "a prefix of the log");
    assert_eq!(report["events"], copied.len());
    assert_eq!(report["log_head"], copied.len());
    assert_eq!(report["path"], tests::arg(&dest));

    let r = restored.serve(&[]);
    for (route, body) in &corpus {
        assert_eq!(r.post(route, body.as_bytes(), &[]).status, 204);
    }
    settle(&r);
    assert_eq!(all_states(&r), all_states(&d));
    assert_eq!(seqs(&restored).len(), kept.len(), "the rest came in again");

    let before = std::fs::read(&dest).expect("read");
    let again = j.run(&["backup", tests::arg(&dest)]);
    assert_eq!(again.code, Some(1));
    assert_eq!(again.stderr.lines().count(), 1, "{}", again.stderr);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(&dest).expect("read"), before);
}

/// Reads from `s` until the peer closes it; how long that took, or `None` if it stayed open
/// for `within`. What was read comes back too.
fn closed_within(s: &mut TcpStream, within: Duration) -> (Option<Duration>, String) {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        match s.read(&mut buf) {
            Ok(0) => return (Some(start.elapsed()), String::from_utf8_lossy(&got).into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (Some(start.elapsed()), String::from_utf8_lossy(&got).into()),
        }
    }
    (None, String::from_utf8_lossy(&got).into())
}

/// A client that stalls cannot hold a connection: a request head that does not arrive within
/// `--header-timeout`, and a kept-alive connection idle that long, are closed; a body that does
/// not arrive within `--body-timeout` gets 408, and nothing of it is stored. The daemon goes on
/// answering others throughout.
#[test]
fn stalled_clients_are_cut_off_by_the_header_and_body_timeouts() {
    let j = journeyd();
    let d = j.serve(&["--header-timeout", "1", "--body-timeout", "1"]);
    let addr = d.url.trim_start_matches("http://").to_owned();

    let mut half_head = TcpStream::connect(&addr).expect("connect");
    write!(half_head, "POST {MJ} HTTP/1.1\r\nHost: {addr}\r\n").expect("send");
    let mut idle = TcpStream::connect(&addr).expect("connect");
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut half_body = TcpStream::connect(&addr).expect("connect");
    write!(
        half_body,
        "POST {MJ} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n\r\n[{{\"productId\""
    )
    .expect("send");
    assert_eq!(
        d.get("/healthz").status,
        200,
        "others are answered meanwhile"
    );

    let (closed, _) = closed_within(&mut half_head, Duration::from_secs(10));
    let closed = closed.expect("a head that never ends is cut off");
    assert!(closed >= Duration::from_millis(500), "{closed:?}");
    let (closed, answered) = closed_within(&mut idle, Duration::from_secs(10));
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(closed.is_some(), "an idle kept-alive connection is closed");
    let (closed, answered) = closed_within(&mut half_body, Duration::from_secs(10));
    assert!(closed.is_some(), "{answered}");
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
    assert!(answered.contains(r#""code":"timeout""#), "{answered}");

    let stats = d.get("/v1/stats").json();
    assert_eq!(
        (&stats["events"], &stats["quarantined"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(d.post(MJ, mj_event(1, 0).as_bytes(), &[]).status, 204);
}

/// Past `--max-connections`, a new connection waits until one closes: it is not refused, and
/// the daemon does not take more than it may hold.
#[test]
fn connections_past_the_limit_wait_for_one_to_close() {
    let j = journeyd();
    let d = j.serve(&["--max-connections", "2"]);
    let addr = d.url.trim_start_matches("http://").to_owned();
    // Both places taken before the test's HTTP agent opens its own connection.
    let first = TcpStream::connect(&addr).expect("connect");
    let second = TcpStream::connect(&addr).expect("connect");
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(&addr).expect("connected by the kernel's backlog");
    write!(
        third,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let (closed, answered) = closed_within(&mut third, Duration::from_millis(700));
    assert_eq!(
        (closed, answered.as_str()),
        (None, ""),
        "served past the limit"
    );
    drop(first);
    let (closed, answered) = closed_within(&mut third, Duration::from_secs(10));
    assert!(closed.is_some(), "answered once a place was free");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    drop(second);
    // The agent's own connection, once the daemon has seen `second` close.
    eventually(
        Duration::from_secs(5),
        || scraped(&d, "journeyd_http_connections "),
        |open| open == &json!(1.0),
    );
}

/// A credential flag whose value breaks its rule is bad usage: exit status 2 before anything
/// starts, one line that names the flag and not the value. `:` (what `$USER:$PASS` gives with
/// both unset) would otherwise leave the route open while it looked guarded.
#[test]
fn a_credential_that_breaks_its_rule_is_bad_usage_and_is_not_echoed() {
    let j = journeyd();
    for (flag, value) in [
        ("--mx-basic-auth", ":"),
        ("--mx-basic-auth", "hunter2:"),
        ("--mobile-journeys-basic-auth", "nocolonhunter2"),
        ("--mx-webhook-secret", "whsec_!!hunter2"),
        ("--mobile-journeys-bearer-token", ""),
        ("--api-token", ""),
    ] {
        let mut child = j
            .command(&["serve", "--listen", "127.0.0.1:0", flag, value])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{flag} {value:?}: the daemon started");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    assert!(!j.db().exists(), "refused before the database was touched");
}

/// A client that asks for a response and reads none of it cannot keep its connection: once the
/// socket buffers are full and `--write-timeout` passes with nothing taken, the daemon closes
/// it. (Here a 24 MB page of the log, more than loopback buffers hold.)
#[test]
fn a_client_that_reads_nothing_of_its_response_is_cut_off() {
    let j = journeyd();
    let pad = "x".repeat(800_000);
    let lines: Vec<String> = (0..30)
        .map(|n| {
            json!({"productId": "mobilejourneys", "eventId": "linkcreated", "eventVersion": "1",
                "data": {"occurredAt": format!("2021-06-11T10:{n:02}:00Z"), "correlationId": format!("J-{n}"), "parameters": {"pad": pad}}})
            .to_string()
        })
        .collect();
    let file = j.write("big.ndjson", lines.join("\n").as_bytes());
    j.run(&["import", tests::arg(&file)]).success();
    let d = j.serve(&["--write-timeout", "1"]);
    let addr = d.url.trim_start_matches("http://").to_owned();
    let open = || scraped(&d, "journeyd_http_connections ");
    assert_eq!(open(), json!(1.0), "the test's own connection");
    let mut stalled = TcpStream::connect(&addr).expect("connect");
    write!(
        stalled,
        "GET /v1/events?limit=30 HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .expect("send");
    eventually(Duration::from_secs(5), open, |n| n == &json!(2.0));
    eventually(Duration::from_secs(20), open, |n| n == &json!(1.0));
    drop(stalled);
}

/// A stop does not wait on connections that have nothing in flight: a live `/v1/stream`
/// subscriber and a kept-alive connection between requests end at once, so the drain is done
/// long before its 6 s limit.
#[test]
fn sigterm_with_a_stream_and_an_idle_connection_open_stops_at_once() {
    let j = journeyd();
    let d = j.serve(&[]);
    let mut stream = sse(&d, None);
    assert!(wait_for(&mut stream, "text/event-stream").is_some());
    let addr = d.url.trim_start_matches("http://").to_owned();
    let mut idle = TcpStream::connect(&addr).expect("connect");
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).expect("answered");
    assert_eq!(&answer, b"HTTP/1.1 200");
    let started = Instant::now();
    let code = d.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}: the drain waited on them",
        started.elapsed()
    );
}
