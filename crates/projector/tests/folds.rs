//! The folds as data in, data out: given these deliveries, the state is this.

use std::collections::BTreeMap;

use events::{Event, Source, parse_delivery};
use projector::fold::{Fold, Input};
use projector::{Config, Journeys, Members, Model, Resources, Users};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Folds events (in the order given; `seq` is the position of each one's first appearance) and
/// returns each key's `state`.
fn fold_events<M: Model>(events: &[Event], config: &Config) -> BTreeMap<String, Value> {
    let mut seqs: Vec<events::EventId> = Vec::new();
    let mut folds: BTreeMap<String, Fold<M::State>> = BTreeMap::new();
    for e in events {
        let seq = match seqs.iter().position(|id| *id == e.id) {
            Some(i) => i as i64 + 1,
            None => {
                seqs.push(e.id);
                seqs.len() as i64
            }
        };
        if !M::accepts(e.kind) {
            continue;
        }
        let Some(key) = M::key(&e.keys) else { continue };
        let payload = events::json::parse(&e.payload).expect("payload parses");
        let input = Input {
            seq,
            id: e.id,
            kind: e.kind,
            clock: e.clock.column(),
            occurred_at: e.occurred_at,
            received_at: 1_700_000_000_000 + seq,
            keys: &e.keys,
            payload: &payload,
        };
        folds.entry(key.to_owned()).or_default().apply(&input);
    }
    folds
        .iter()
        .filter_map(|(k, f)| M::row(k, f, config))
        .map(|row| {
            (
                row.key.clone(),
                serde_json::from_str(&row.state).expect("state is JSON"),
            )
        })
        .collect()
}

fn parse(deliveries: &[(Source, String)]) -> Vec<Event> {
    deliveries
        .iter()
        .flat_map(|(s, b)| parse_delivery(*s, b.as_bytes()).expect("valid body"))
        .collect()
}

fn state<M: Model>(deliveries: &[(Source, String)], key: &str) -> Value {
    fold_events::<M>(&parse(deliveries), &Config::default())
        .remove(key)
        .unwrap_or_else(|| panic!("no state for {key}"))
}

/// A Mobile Journeys event for journey `c` at `HH:MM` on 2021-06-11, with extra `data` members.
fn mj(event: &str, c: &str, at: &str, extra: Value) -> (Source, String) {
    let mut data = json!({"occurredAt": format!("2021-06-11T{at}:00Z"), "journeyId": "2", "correlationId": c, "customerReference": "AX-1"});
    if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), extra) {
        d.extend(extra);
    }
    let body = json!({"productId": "mobilejourneys", "eventId": event, "eventVersion": "1", "eventTime": "2021-06-11T23:59:59Z", "data": data});
    (Source::MobileJourneys, body.to_string())
}

fn mx(body: Value) -> (Source, String) {
    (Source::Mx, body.to_string())
}

fn payment(c: &str, at: &str, tid: &str, authorised: Value, amount: Value) -> (Source, String) {
    mj(
        "paymentattempt",
        c,
        at,
        json!({"sessionId": "s1", "paymentDetail": {"transactionId": tid, "transactionTime": format!("2021-06-11T{at}:00Z"), "authorised": authorised, "amount": amount, "currency": "GBP"}}),
    )
}

fn stage(c: &str, at: &str, name: &str, extra: Value) -> (Source, String) {
    let mut data = json!({"stageName": name});
    if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), extra) {
        d.extend(extra);
    }
    mj("stage", c, at, data)
}

// ---- journeys ----

#[test]
fn status_is_the_highest_that_holds() {
    let link = mj(
        "linkcreated",
        "J",
        "10:00",
        json!({"url": "https://x", "parameters": {"a": 1}}),
    );
    let session = mj("sessioncreated", "J", "10:01", json!({"sessionId": "s1"}));
    let declined = payment("J", "10:02", "T1", json!("false"), json!(5));
    let paid = payment("J", "10:03", "T2", json!(true), json!(5));
    let end = stage("J", "10:04", "journeyEnd", json!({}));
    let status = |d: &[(Source, String)]| state::<Journeys>(d, "J")["status"].clone();
    assert_eq!(status(std::slice::from_ref(&link)), "created");
    assert_eq!(status(&[link.clone(), session.clone()]), "opened");
    assert_eq!(
        status(&[link.clone(), session.clone(), declined.clone()]),
        "opened",
        "a declined payment is not paid"
    );
    assert_eq!(
        status(&[link.clone(), declined.clone(), paid.clone()]),
        "paid"
    );
    assert_eq!(
        status(&[end.clone(), link.clone()]),
        "completed",
        "completed outranks everything, in any order"
    );
    // Another stage name does not complete, unless configured to.
    let other = stage("J", "10:05", "thanks", json!({}));
    assert_eq!(
        status(&[link.clone(), other.clone()]),
        "created",
        "another stage name does not complete"
    );
    let config = Config {
        completing_stages: ["thanks".to_owned()].into(),
        ..Config::default()
    };
    let s = fold_events::<Journeys>(&parse(&[link, other]), &config);
    assert_eq!(s["J"]["status"], "completed");
}

#[test]
fn one_payment_per_transaction_id_the_latest_by_clock() {
    let first = payment("J", "10:00", "T1", json!("false"), json!(5.56));
    let retry = payment("J", "10:05", "T1", json!("true"), json!(5.56));
    for order in [
        vec![first.clone(), retry.clone()],
        vec![retry.clone(), first.clone()],
    ] {
        let s = state::<Journeys>(&order, "J");
        assert_eq!(s["payments"].as_array().expect("list").len(), 1);
        assert_eq!(s["payments"][0]["authorised"], true);
        assert_eq!(s["payments"][0]["occurred_at"], "2021-06-11T10:05:00Z");
        assert_eq!(s["status"], "paid");
    }
}

#[test]
fn authorised_strings_are_booleans() {
    for (sent, expected) in [
        (json!("true"), json!(true)),
        (json!("false"), json!(false)),
        (json!(true), json!(true)),
        (json!("maybe"), json!(null)),
    ] {
        let s = state::<Journeys>(&[payment("J", "10:00", "T", sent.clone(), json!(1))], "J");
        assert_eq!(s["payments"][0]["authorised"], expected, "{sent}");
    }
}

#[test]
fn authorised_amounts_sum_exactly_per_currency_keeping_the_largest_scale() {
    let s = state::<Journeys>(
        &[
            payment("J", "10:00", "A", json!(true), json!(0.1)),
            payment("J", "10:01", "B", json!("true"), json!(0.2)),
        ],
        "J",
    );
    assert_eq!(s["amount_authorised"], json!({"GBP": "0.3"}));
    let raw = |amount: &str, tid: &str, at: &str| {
        let (src, body) = payment("J", at, tid, json!(true), json!(0));
        (
            src,
            body.replace(r#""amount":0"#, &format!(r#""amount":{amount}"#)),
        )
    };
    let s = state::<Journeys>(
        &[
            raw("19.90", "A", "10:00"),
            raw("\"0.10\"", "B", "10:01"),
            raw("3", "C", "10:02"),
        ],
        "J",
    );
    assert_eq!(s["amount_authorised"], json!({"GBP": "23.00"}));
    assert_eq!(
        s["payments"][0]["amount"], "19.90",
        "an amount keeps the text it was sent with"
    );
    let declined = state::<Journeys>(&[payment("J", "10:00", "A", json!(false), json!(9))], "J");
    assert_eq!(
        declined["amount_authorised"],
        json!({}),
        "a currency appears only with an authorised payment"
    );
}

/// An amount is shown as it was sent, whatever its spelling, and only its value is summed. An
/// authorised payment whose amount is no decimal that fits (too large, too many places, not a
/// number) still gives its currency a key, and adds nothing to it.
#[test]
fn amounts_keep_their_text_and_a_sum_is_exact_or_null() {
    let raw = |amount: &str, tid: &str, at: &str| {
        let (src, body) = payment("J", at, tid, json!(true), json!(0));
        (
            src,
            body.replace(r#""amount":0"#, &format!(r#""amount":{amount}"#)),
        )
    };
    // The amount as JSON in the payload, and the text the payment shows.
    let sent = [
        (r#"1E-2"#, r#"1E-2"#),
        (r#""1e3""#, r#"1e3"#),
        (r#""  7 ""#, r#"  7 "#),
        (r#"-0"#, r#"-0"#),
        (r#""-0.00""#, r#"-0.00"#),
        (r#"1.2345678901234568e+29"#, r#"1.2345678901234568e+29"#),
        (
            r#""0.000000000000000000000000000001""#,
            r#"0.000000000000000000000000000001"#,
        ),
        (r#""five""#, r#"five"#),
    ];
    let deliveries: Vec<_> = sent
        .iter()
        .enumerate()
        .map(|(i, (amount, _))| raw(amount, &format!("T{i}"), &format!("10:{i:02}")))
        .collect();
    let s = state::<Journeys>(&deliveries, "J");
    let shown: Vec<&str> = s["payments"]
        .as_array()
        .expect("payments")
        .iter()
        .map(|p| p["amount"].as_str().expect("amount"))
        .collect();
    let expected: Vec<&str> = sent.iter().map(|(_, shown)| *shown).collect();
    assert_eq!(shown, expected, "the text as sent");
    // The last three cannot be summed exactly, so the sum is unknown, not a total without them.
    assert_eq!(s["amount_authorised"], json!({"GBP": null}));
    // 0.01 + 1000 + 7 + 0 + 0.00
    let summable: Vec<_> = deliveries[..5].to_vec();
    let s = state::<Journeys>(&summable, "J");
    assert_eq!(s["amount_authorised"], json!({"GBP": "1007.01"}));
    for amount in [
        r#""five""#,
        "null",
        "123456789012345678901234567890.1",
        r#""0.000000000000000000000000000001""#,
    ] {
        let alone = state::<Journeys>(&[raw(amount, "A", "10:00")], "J");
        assert_eq!(alone["amount_authorised"], json!({"GBP": null}), "{amount}");
    }
    // Each term fits, the exact sum does not (it would be rounded to 5E+28).
    let rounded = state::<Journeys>(
        &[
            raw("50000000000000000000000000000", "A", "10:00"),
            raw("0.1", "B", "10:01"),
        ],
        "J",
    );
    assert_eq!(rounded["amount_authorised"], json!({"GBP": null}));
    // A zero amount keeps its scale in the sum (a card check of 0.00, then a payment).
    let check = state::<Journeys>(&[raw("0.00", "A", "10:00"), raw("10", "B", "10:01")], "J");
    assert_eq!(check["amount_authorised"], json!({"GBP": "10.00"}));
    // One unknown currency leaves the others exact.
    let (src, euro) = payment("J", "10:05", "E", json!(true), json!(0));
    let euro = (
        src,
        euro.replace("GBP", "EUR")
            .replace(r#""amount":0"#, r#""amount":2.50"#),
    );
    let mixed = state::<Journeys>(&[raw(r#""five""#, "A", "10:00"), euro], "J");
    assert_eq!(
        mixed["amount_authorised"],
        json!({"EUR": "2.50", "GBP": null})
    );
}

#[test]
fn stages_keep_first_and_last_reached_and_sort_by_first() {
    let s = state::<Journeys>(
        &[
            stage("J", "10:30", "details", json!({})),
            stage("J", "10:10", "details", json!({})),
            stage("J", "10:20", "payment", json!({})),
            stage("J", "10:50", "details", json!({})),
        ],
        "J",
    );
    assert_eq!(
        s["stages"],
        json!([
            {"name": "details", "first_reached_at": "2021-06-11T10:10:00Z", "last_reached_at": "2021-06-11T10:50:00Z"},
            {"name": "payment", "first_reached_at": "2021-06-11T10:20:00Z", "last_reached_at": "2021-06-11T10:20:00Z"}
        ])
    );
}

#[test]
fn session_data_comes_from_the_latest_stage_that_carries_it() {
    let early = stage(
        "J",
        "10:00",
        "a",
        json!({"sessionData": {"balance": "18.56"}}),
    );
    let late = stage(
        "J",
        "10:30",
        "b",
        json!({"sessionData": {"balance": "0.00", "z": 1}}),
    );
    let latest_without = stage("J", "10:40", "c", json!({}));
    for order in [
        vec![early.clone(), late.clone(), latest_without.clone()],
        vec![latest_without.clone(), late.clone(), early.clone()],
    ] {
        assert_eq!(
            state::<Journeys>(&order, "J")["session_data"],
            json!({"balance": "0.00", "z": 1})
        );
    }
}

#[test]
fn sessions_and_ids_are_gathered_from_every_event_that_carries_them() {
    let s = state::<Journeys>(
        &[
            mj("sessioncreated", "J", "10:00", json!({"sessionId": "s2"})),
            payment("J", "10:01", "T1", json!(true), json!(1)),
            mj(
                "documentgenerated",
                "J",
                "10:02",
                json!({"sessionId": "s3", "documentId": "D1", "templateId": "TPL", "documentCategory": "Invoice"}),
            ),
            stage(
                "J",
                "10:03",
                "x",
                json!({"sessionId": "s1", "generatedDocumentIds": ["D2", "D1"], "downloadedDocumentIds": ["D1"], "uploadedDocumentIds": ["U1"], "transactionIds": ["T9", "T1"]}),
            ),
        ],
        "J",
    );
    assert_eq!(s["sessions"], json!(["s1", "s2", "s3"]));
    assert_eq!(
        s["document_ids"],
        json!({"generated": ["D1", "D2"], "downloaded": ["D1"], "uploaded": ["U1"]})
    );
    assert_eq!(s["transaction_ids"], json!(["T1", "T9"]));
    assert_eq!(
        s["documents"],
        json!([{"document_id": "D1", "template_id": "TPL", "category": "Invoice", "generated_at": "2021-06-11T10:02:00Z"}])
    );
    assert_eq!(s["event_count"], 4);
}

#[test]
fn the_example_journey_renders_every_field() {
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/examples/mobile-journeys.json"
    ))
    .expect("example");
    let s = state::<Journeys>(
        &[(Source::MobileJourneys, body)],
        "91daa348-0eb0-4062-b4b6-61fd467562b0",
    );
    assert_eq!(
        s,
        json!({
            "correlation_id": "91daa348-0eb0-4062-b4b6-61fd467562b0",
            "journey_id": "2",
            "customer_reference": "AX-123456",
            "status": "completed",
            "url": "https://examplelink.com/CompanyName_abc",
            "parameters": {"accountReference": "AX123456", "balance": "18.56", "name": "Mr Smith"},
            "link_created_at": "2021-06-11T11:57:35Z",
            "first_occurred_at": "2021-06-11T11:57:35Z",
            "last_occurred_at": "2021-06-11T12:04:41Z",
            "sessions": ["654321"],
            "payments": [{
                "transaction_id": "664855f2-076b-448b-8058-41a72ee9608f",
                "transaction_time": "2021-06-11T12:03:01Z",
                "authorised": true,
                "amount": "5.56",
                "currency": "GBP",
                "card_type": "DEBIT",
                "card_number": "001",
                "authorisation_code": "test/4321",
                "cardholder_name": "John Smith",
                "occurred_at": "2021-06-11T12:03:02Z"
            }],
            "amount_authorised": {"GBP": "5.56"},
            "documents": [{"document_id": "77a3b1e3-cdec-40ca-9543-7685a24120c6", "template_id": "cf80f9b3-22da-42d9-94a0-285518264677", "category": "Invoice-Type1", "generated_at": "2021-06-11T12:03:55Z"}],
            "stages": [{"name": "journeyEnd", "first_reached_at": "2021-06-11T12:04:41Z", "last_reached_at": "2021-06-11T12:04:41Z"}],
            "session_data": {"accountReference": "AX123456", "balance": "12.00", "name": "Mr Smith", "portalName": "DemoPortal"},
            "document_ids": {"generated": ["77a3b1e3-cdec-40ca-9543-7685a24120c6"], "downloaded": ["77a3b1e3-cdec-40ca-9543-7685a24120c6"], "uploaded": []},
            "transaction_ids": ["664855f2-076b-448b-8058-41a72ee9608f"],
            "event_count": 5
        })
    );
    // Keys come out in the documented order, not alphabetically.
    let config = Config::default();
    let evs = parse(&[(
        Source::MobileJourneys,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/examples/mobile-journeys.json"
        ))
        .expect("example"),
    )]);
    let mut folds: BTreeMap<String, Fold<projector::journey::Journey>> = BTreeMap::new();
    for (i, e) in evs.iter().enumerate() {
        let p = events::json::parse(&e.payload).expect("json");
        let input = Input {
            seq: i as i64 + 1,
            id: e.id,
            kind: e.kind,
            clock: e.clock.column(),
            occurred_at: e.occurred_at,
            received_at: 0,
            keys: &e.keys,
            payload: &p,
        };
        folds
            .entry(e.keys.correlation_id.clone().expect("key"))
            .or_default()
            .apply(&input);
    }
    let (k, f) = folds.iter().next().expect("a journey");
    let text = Journeys::row(k, f, &config).expect("row").state;
    assert!(
        text.starts_with(r#"{"correlation_id":"#) && text.ends_with(r#","event_count":1}"#),
        "{text}"
    );
}

// ---- members ----

fn member_data(kind: &str, completed_at: i64, extra: Value) -> (Source, String) {
    let mut body = json!({"action": "member_data_updated", "type": kind, "member_guid": "MBR-1", "user_guid": "USR-1", "user_id": "u-1", "completed_at": completed_at});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    mx(body)
}

fn job(guid: &str, updated_at: i64, status: &str) -> (Source, String) {
    mx(
        json!({"job": {"guid": guid, "member_guid": "MBR-1", "user_guid": "USR-1", "status": 6, "status_name": status, "updated_at": updated_at, "started_at": updated_at - 5, "finished_at": null, "is_authenticated": true, "error_message": null, "insitution_guid": "INS-1"}}),
    )
}

fn connection(status: &str) -> (Source, String) {
    mx(
        json!({"type": "CONNECTION_STATUS", "action": "CHANGED", "connection_status": status, "connection_status_id": 6, "connection_status_message": "m", "member_guid": "MBR-1", "user_guid": "USR-1"}),
    )
}

#[test]
fn member_aggregations_count_and_sum_distinct_events_per_type() {
    let a1 = member_data(
        "AGGREGATION",
        100,
        json!({"transactions_created_count": 3, "transactions_updated_count": 2}),
    );
    let a2 = member_data(
        "AGGREGATION",
        200,
        json!({"transactions_created_count": 2, "statements_created_count": 1.5}),
    );
    let b = member_data("BALANCE", 150, json!({}));
    let s = state::<Members>(&[a1.clone(), a2.clone(), a1.clone(), b], "MBR-1");
    assert_eq!(
        s["aggregations"],
        json!({
            "AGGREGATION": {"count": 2, "last_completed_at": "1970-01-01T00:03:20Z", "statements_created": 1.5, "transactions_created": 5, "transactions_updated": 2},
            "BALANCE": {"count": 1, "last_completed_at": "1970-01-01T00:02:30Z"}
        })
    );
    assert_eq!(s["event_count"], 3, "the duplicate counts once");
    assert_eq!(s["last_occurred_at"], "1970-01-01T00:03:20Z");
    assert_eq!(
        (&s["user_guid"], &s["user_id"]),
        (&json!("USR-1"), &json!("u-1"))
    );
}

/// A member-data event of type `AGGREGATION` at `completed_at` whose `a_count` is `count`'s
/// text as sent (a JSON number, or a string with its quotes).
fn counted(completed_at: i64, count: &str) -> (Source, String) {
    let (src, body) = member_data("AGGREGATION", completed_at, json!({"a_count": "@"}));
    (src, body.replace(r#""@""#, count))
}

#[test]
fn a_member_count_sum_is_exact_or_null() {
    let sum = |counts: &[&str]| {
        let events: Vec<_> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| counted(100 + i as i64, c))
            .collect();
        state::<Members>(&events, "MBR-1")["aggregations"]["AGGREGATION"]["a"].clone()
    };
    assert_eq!(sum(&["2", r#""3.50""#, "0"]), json!(5.50));
    assert_eq!(sum(&["2", "null"]), json!(2), "null is no count");
    for bad in [
        "-1",
        r#""five""#,
        "true",
        "1e40",
        r#""100000000000000000000000000000""#,
        "0.00000000000000000000000000001",
    ] {
        assert_eq!(sum(&["2", bad]), Value::Null, "{bad}");
    }
    // Each term fits; their exact sum does not.
    assert_eq!(sum(&["50000000000000000000000000000", "0.1"]), Value::Null);
}

proptest! {
    /// Sums whose terms are near the edge of what fits (or past it) do not depend on the
    /// order either: the sum is unknown exactly when the set's sum does not fit.
    #[test]
    fn member_count_sums_at_the_edge_do_not_depend_on_order(
        counts in prop::collection::vec(prop::sample::select(vec![
            "1", "0.1", "0.0000000000000000000000000001", "50000000000000000000000000000",
            "30000000000000000000000000000", "-1", "null", "\"five\"", "7", "0.0", "0.00", "0",
        ]), 1..6),
        perm in prop::collection::vec(0usize..64, 0..12),
    ) {
        let events: Vec<_> = counts.iter().enumerate().map(|(i, c)| counted(100 + i as i64, c)).collect();
        assert_order_free::<Members>(events, perm, vec![], |_| {})?;
    }
}

#[test]
fn the_latest_job_by_updated_at_wins_and_jobs_are_counted_by_guid() {
    let older = job("JOB-1", 100, "CHALLENGED");
    let newer = job("JOB-1", 200, "COMPLETED");
    let other = job("JOB-2", 150, "DENIED");
    for order in [
        vec![older.clone(), newer.clone(), other.clone()],
        vec![newer.clone(), other.clone(), older.clone()],
    ] {
        let s = state::<Members>(&order, "MBR-1");
        assert_eq!(s["job"]["status_name"], "COMPLETED");
        assert_eq!(
            s["job"]["institution_guid"], "INS-1",
            "the page's spelling insitution_guid is read"
        );
        assert_eq!(s["job"]["updated_at"], "1970-01-01T00:03:20Z");
        assert_eq!(s["job"]["finished_at"], json!(null));
        assert_eq!(s["jobs_seen"], 2);
    }
}

#[test]
fn connection_status_is_the_latest_to_arrive() {
    let s = state::<Members>(
        &[connection("CHALLENGED"), connection("CONNECTED")],
        "MBR-1",
    );
    assert_eq!(s["connection_status"]["status"], "CONNECTED");
    let s = state::<Members>(
        &[connection("CONNECTED"), connection("CHALLENGED")],
        "MBR-1",
    );
    assert_eq!(
        s["connection_status"]["status"], "CHALLENGED",
        "no timestamp: arrival decides"
    );
    assert_eq!(
        s["last_occurred_at"],
        json!(null),
        "connection status does not count as activity"
    );
}

// ---- users and resources ----

fn goal(action: &str, revision: i64, name: &str) -> (Source, String) {
    mx(
        json!({"action": action, "goal": {"guid": "GOL-1", "user_guid": "USR-1", "revision": revision, "name": name, "amount": 750.00}}),
    )
}

#[test]
fn a_goal_tombstone_is_not_undone_by_a_lower_or_equal_revision() {
    let created = goal("created", 1, "Home");
    let deleted = goal("deleted", 5, "Home");
    let same_rev_update = goal("updated", 5, "Renamed");
    let lower = goal("updated", 4, "Older");
    for order in [
        vec![
            created.clone(),
            deleted.clone(),
            same_rev_update.clone(),
            lower.clone(),
        ],
        vec![
            lower.clone(),
            same_rev_update.clone(),
            deleted.clone(),
            created.clone(),
        ],
    ] {
        let u = state::<Users>(&order, "USR-1");
        assert_eq!(
            u["goals"],
            json!([{"guid": "GOL-1", "revision": 5, "action": "deleted", "deleted": true, "fields": {"amount": 750.00, "guid": "GOL-1", "name": "Home", "revision": 5, "user_guid": "USR-1"}}])
        );
        let r = state::<Resources>(&order, "goal/GOL-1");
        assert_eq!(
            (&r["type"], &r["deleted"], &r["revision"]),
            (&json!("goal"), &json!(true), &json!(5))
        );
    }
    let revived = state::<Users>(&[deleted, goal("updated", 6, "Back")], "USR-1");
    assert_eq!(
        revived["goals"][0]["deleted"], false,
        "a higher revision may undo it"
    );
}

#[test]
fn goal_fields_keep_the_numbers_as_sent() {
    let (src, body) = goal("created", 1, "Home");
    let body = body.replace("750.0", "750.00");
    assert!(body.contains("750.00"));
    let events = parse(&[(src, body)]);
    let mut fold: Fold<projector::user::User> = Fold::default();
    let p = events::json::parse(&events[0].payload).expect("json");
    let e = &events[0];
    fold.apply(&Input {
        seq: 1,
        id: e.id,
        kind: e.kind,
        clock: e.clock.column(),
        occurred_at: e.occurred_at,
        received_at: 0,
        keys: &e.keys,
        payload: &p,
    });
    let text = Users::row("USR-1", &fold, &Config::default())
        .expect("row")
        .state;
    assert!(text.contains(r#""amount":750.00,"#), "{text}");
}

#[test]
fn a_user_gathers_members_goals_analytics_and_activity() {
    let analytics = mx(json!({"_json": [
        {"type": "pageview", "session_id": "S1", "user_guid": "USR-1", "user_id": "u-9", "created_at": 1000},
        {"type": "analyticsevent", "session_id": "S1", "user_guid": "USR-1", "created_at": 3000},
        {"type": "pageview", "session_id": "S2", "user_guid": "USR-1", "created_at": 2000}
    ]}));
    let s = state::<Users>(
        &[
            analytics,
            member_data("AGGREGATION", 1500, json!({})),
            goal("created", 1, "Home"),
            connection("CONNECTED"),
        ],
        "USR-1",
    );
    assert_eq!(s["member_guids"], json!(["MBR-1"]));
    assert_eq!(
        s["analytics"],
        json!({"events": 3, "sessions": 2, "by_type": {"analyticsevent": 1, "pageview": 2}, "first_at": "1970-01-01T00:16:40Z", "last_at": "1970-01-01T00:50:00Z"})
    );
    assert_eq!(s["last_occurred_at"], "1970-01-01T00:50:00Z");
    assert_eq!(
        s["user_id"], "u-1",
        "the latest timed event that carries user_id: member data at 1500, not analytics at 1000"
    );
    assert_eq!(s["goals"].as_array().expect("goals").len(), 1);
    assert_eq!(s["event_count"], 6);
}

// ---- order independence ----

fn arb_journey_events() -> impl Strategy<Value = Vec<(Source, String)>> {
    let c = prop::sample::select(vec!["J1", "J2"]);
    let at = prop::sample::select(vec!["10:00", "10:01", "10:02"]);
    let event = prop_oneof![
        (c.clone(), at.clone()).prop_map(|(c, at)| mj("linkcreated", c, at, json!({"url": format!("u{at}"), "parameters": {"at": at}}))),
        (c.clone(), at.clone(), 0..3u8).prop_map(|(c, at, s)| mj("sessioncreated", c, at, json!({"sessionId": format!("s{s}")}))),
        (c.clone(), at.clone(), 0..3u8, any::<bool>(), prop::sample::select(vec!["0.1", "0.2", "19.90", "5"])).prop_map(
            |(c, at, t, ok, amount)| {
                let (src, body) = payment(c, at, &format!("T{t}"), json!(if ok { "true" } else { "false" }), json!(0));
                (src, body.replace(r#""amount":0"#, &format!(r#""amount":{amount}"#)))
            }
        ),
        (c.clone(), at.clone(), 0..2u8).prop_map(|(c, at, d)| mj("documentgenerated", c, at, json!({"documentId": format!("D{d}"), "templateId": at}))),
        (c, at, prop::sample::select(vec!["a", "b", "journeyEnd"]), 0..3u8).prop_map(|(c, at, name, n)| stage(
            c,
            at,
            name,
            json!({"sessionData": {"n": n}, "generatedDocumentIds": [format!("G{n}")], "transactionIds": [format!("T{n}")]})
        )),
    ];
    prop::collection::vec(event, 1..14)
}

fn arb_mx_events() -> impl Strategy<Value = Vec<(Source, String)>> {
    let t = prop::sample::select(vec![100i64, 200, 300]);
    let event = prop_oneof![
        (prop::sample::select(vec!["AGGREGATION", "BALANCE"]), t.clone(), 0..4u8)
            .prop_map(|(k, t, n)| member_data(k, t, json!({"transactions_created_count": n, "user_id": format!("u{n}")}))),
        (prop::sample::select(vec!["JOB-1", "JOB-2"]), t.clone(), prop::sample::select(vec!["COMPLETED", "DENIED"]))
            .prop_map(|(g, t, s)| job(g, t, s)),
        (prop::sample::select(vec!["created", "updated", "deleted"]), 1..4i64, prop::sample::select(vec!["A", "B"]))
            .prop_map(|(a, r, n)| goal(a, r, n)),
        (0..3u8, t).prop_map(|(s, t)| mx(json!([{"type": "pageview", "session_id": format!("S{s}"), "user_guid": "USR-1", "created_at": t}]))),
    ];
    prop::collection::vec(event, 1..14)
}

/// Any permutation of the deliveries with any duplicates folds to the same bytes, and folding
/// everything a second time changes nothing.
fn assert_order_free<M: Model>(
    deliveries: Vec<(Source, String)>,
    perm: Vec<usize>,
    dups: Vec<usize>,
    mask: impl Fn(&mut Value),
) -> Result<(), TestCaseError> {
    let config = Config::default();
    let in_order = parse(&deliveries);
    let mut shuffled: Vec<Event> = perm
        .iter()
        .map(|&i| in_order[i % in_order.len()].clone())
        .collect();
    shuffled.extend(in_order.iter().cloned());
    for d in dups {
        let e = shuffled[d % shuffled.len()].clone();
        shuffled.insert(d % (shuffled.len() + 1), e);
    }
    let masked = |states: BTreeMap<String, Value>| -> BTreeMap<String, String> {
        states
            .into_iter()
            .map(|(k, mut v)| {
                mask(&mut v);
                (k, v.to_string())
            })
            .collect()
    };
    let a = masked(fold_events::<M>(&in_order, &config));
    let b = masked(fold_events::<M>(&shuffled, &config));
    prop_assert_eq!(&a, &b);
    let twice: Vec<Event> = in_order.iter().chain(in_order.iter()).cloned().collect();
    prop_assert_eq!(&a, &masked(fold_events::<M>(&twice, &config)));
    Ok(())
}

proptest! {
    #[test]
    fn journeys_do_not_depend_on_order_or_duplicates(d in arb_journey_events(), perm in prop::collection::vec(0usize..64, 0..20), dups in prop::collection::vec(0usize..64, 0..6)) {
        assert_order_free::<Journeys>(d, perm, dups, |_| {})?;
    }

    #[test]
    fn members_do_not_depend_on_order_or_duplicates(d in arb_mx_events(), perm in prop::collection::vec(0usize..64, 0..20), dups in prop::collection::vec(0usize..64, 0..6)) {
        assert_order_free::<Members>(d, perm, dups, |_| {})?;
    }

    #[test]
    fn users_do_not_depend_on_order_or_duplicates(d in arb_mx_events(), perm in prop::collection::vec(0usize..64, 0..20), dups in prop::collection::vec(0usize..64, 0..6)) {
        assert_order_free::<Users>(d, perm, dups, |_| {})?;
    }

    #[test]
    fn resources_do_not_depend_on_order_or_duplicates(d in arb_mx_events(), perm in prop::collection::vec(0usize..64, 0..20), dups in prop::collection::vec(0usize..64, 0..6)) {
        assert_order_free::<Resources>(d, perm, dups, |_| {})?;
    }

    #[test]
    fn members_with_connection_status_differ_only_in_connection_status(
        d in arb_mx_events(), statuses in prop::collection::vec(prop::sample::select(vec!["CONNECTED", "CHALLENGED", "DENIED"]), 0..4),
        perm in prop::collection::vec(0usize..64, 0..20)
    ) {
        let mut all = d;
        all.extend(statuses.into_iter().map(connection));
        assert_order_free::<Members>(all, perm, vec![], |v| { v["connection_status"] = Value::Null; })?;
    }
}
