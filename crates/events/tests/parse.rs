//! Payload parsing and identity, as data in, data out.

use events::{Event, Kind, Rejection, Source, parse_delivery, parse_delivery_detect};
use proptest::prelude::*;
use serde_json::{Value, json};

fn seed(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/seeds/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The normalized form of a body: its events, or the quarantine reason.
fn normalized(source: Source, body: &[u8]) -> Value {
    match parse_delivery(source, body) {
        Ok(events) => serde_json::to_value(&events).expect("events serialize"),
        Err(rejection) => json!({ "quarantined": rejection.to_string() }),
    }
}

fn check(source: Source, name: &str) {
    insta::assert_json_snapshot!(name, normalized(source, &seed(name)));
}

#[test]
fn seed_mx_aggregation_is_one_member_data_event() {
    check(Source::Mx, "mx-aggregation");
}

#[test]
fn seed_mx_analytics_with_ruby_nil_is_quarantined_with_where() {
    check(Source::Mx, "mx-analytics-ruby-nil");
}

#[test]
fn seed_mx_goal_created_is_one_resource_event() {
    check(Source::Mx, "mx-goal-created");
}

#[test]
fn seed_mx_job_status_is_one_job_event() {
    check(Source::Mx, "mx-job-status");
}

#[test]
fn seed_mj_standard_data_with_placeholder_event_id_is_unknown() {
    check(Source::MobileJourneys, "mj-standard-data");
}

#[test]
fn seed_mj_linkcreated_with_trailing_comma_is_quarantined_with_where() {
    check(Source::MobileJourneys, "mj-linkcreated-trailing-comma");
}

#[test]
fn seed_mj_sessioncreated() {
    check(Source::MobileJourneys, "mj-sessioncreated");
}

#[test]
fn seed_mj_paymentattempt() {
    check(Source::MobileJourneys, "mj-paymentattempt");
}

#[test]
fn seed_mj_documentgenerated() {
    check(Source::MobileJourneys, "mj-documentgenerated");
}

#[test]
fn seed_mj_stage() {
    check(Source::MobileJourneys, "mj-stage");
}

fn one(source: Source, body: &str) -> Event {
    let mut events = parse_delivery(source, body.as_bytes()).expect("parses");
    assert_eq!(events.len(), 1, "{body}");
    events.remove(0)
}

fn kind_of(source: Source, body: &str) -> Kind {
    one(source, body).kind
}

#[test]
fn mx_shapes_are_classified() {
    let cases = [
        (
            r#"{"type":"VERIFICATION","action":"member_data_updated","member_guid":"MBR-1","user_guid":"USR-1","completed_at":1}"#,
            Kind::MemberData,
        ),
        (
            r#"{"type":"REWARD","action":"member_data_updated","member_guid":"MBR-1"}"#,
            Kind::MemberData,
        ),
        (
            r#"{"type":"SOMETHING_NEW","action":"member_data_updated","member_guid":"MBR-1"}"#,
            Kind::MemberData,
        ),
        (
            r#"{"type":"CONNECTION_STATUS","action":"CHANGED","connection_status":"CONNECTED","connection_status_id":6,"connection_status_message":"ok","member_guid":"MBR-1","user_guid":"USR-1"}"#,
            Kind::ConnectionStatus,
        ),
        (
            r#"{"job":{"guid":"JOB-1","member_guid":"MBR-1","updated_at":5,"insitution_guid":"INS-1"}}"#,
            Kind::Job,
        ),
        (
            r#"{"type":"pageview","user_guid":"USR-1","created_at":1523397481}"#,
            Kind::Analytics,
        ),
        (r#"{"type":"member_data_updated"}"#, Kind::Unknown),
        (r#"{"hello":"world"}"#, Kind::Unknown),
        (
            r#"{"action":"created","goal":{"revision":1}}"#,
            Kind::Unknown,
        ),
        ("42", Kind::Unknown),
        ("null", Kind::Unknown),
    ];
    for (body, kind) in cases {
        assert_eq!(kind_of(Source::Mx, body), kind, "{body}");
    }
}

#[test]
fn every_mx_resource_envelope_is_a_resource_keyed_by_type_and_guid() {
    for name in [
        "goal",
        "user",
        "budget",
        "category",
        "tag",
        "tagging",
        "micro_deposit",
        "member",
        "account",
        "transaction",
        "holding",
    ] {
        // The `user` resource is its own user; the `member` resource is its own member.
        let user_key = if name == "user" { "USR-R" } else { "USR-1" };
        let member_key = if name == "member" { "USR-R" } else { "MBR-9" };
        let body = format!(
            r#"{{"action":"updated","{name}":{{"guid":"USR-R","user_guid":"USR-1","member_guid":"MBR-9","revision":3,"updated_at":"2016-10-13T17:57:37.000Z"}}}}"#
        );
        let e = one(Source::Mx, &body);
        assert_eq!(e.kind, Kind::Resource, "{name}");
        assert_eq!(
            e.keys.resource.as_deref(),
            Some(format!("{name}/USR-R").as_str())
        );
        assert_eq!(e.keys.user_guid.as_deref(), Some(user_key), "{name}");
        assert_eq!(e.keys.member_guid.as_deref(), Some(member_key), "{name}");
        assert_eq!(
            e.clock,
            events::Clock::Revision {
                revision: Some(3),
                updated_at: Some(1_476_381_457_000)
            }
        );
    }
}

#[test]
fn analytics_arrays_bare_and_wrapped_split_into_one_event_per_element() {
    let element = |n: u32| {
        format!(r#"{{"type":"pageview","session_id":"S{n}","user_guid":"USR-1","created_at":{n}}}"#)
    };
    let bare = format!("[{},{}]", element(1), element(2));
    let wrapped = format!(r#"{{"_json": [{}, {}]}}"#, element(1), element(2));
    let a = parse_delivery(Source::Mx, bare.as_bytes()).expect("bare");
    let b = parse_delivery(Source::Mx, wrapped.as_bytes()).expect("wrapped");
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "the wrapper is not part of any event");
    assert!(
        a.iter()
            .all(|e| e.kind == Kind::Analytics && e.keys.user_guid.as_deref() == Some("USR-1"))
    );
    assert_eq!(a[1].payload, element(2), "each event keeps its exact bytes");
}

#[test]
fn a_mobile_journeys_array_judges_each_element_on_its_own() {
    let good = r#"{"productId":"mobilejourneys","eventId":"sessioncreated","data":{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"A","sessionId":"1"}}"#;
    let other = r#"{"productId":"mobilejourneys","eventId":"sessioncreated","data":{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"B"}}"#;
    let body = format!(r#"[{good}, 7, "junk", {{"eventId":"stage"}}, {other}, {good}]"#);
    let events = parse_delivery(Source::MobileJourneys, body.as_bytes())
        .expect("an array of junk is still JSON");
    let kinds: Vec<Kind> = events.iter().map(|e| e.kind).collect();
    use Kind::*;
    assert_eq!(
        kinds,
        [
            SessionCreated,
            Unknown,
            Unknown,
            Unknown,
            SessionCreated,
            SessionCreated
        ]
    );
    assert_eq!(
        events[0].id, events[5].id,
        "the same event twice in one body is one id"
    );
    assert_ne!(events[0].id, events[4].id, "a batch may mix journeys");
    assert_eq!(events[4].keys.correlation_id.as_deref(), Some("B"));
}

#[test]
fn payment_with_boolean_or_string_authorised_both_parse() {
    for authorised in [r#""true""#, "true", r#""false""#, "false", "null"] {
        let body = format!(
            r#"{{"eventId":"paymentattempt","data":{{"correlationId":"C","occurredAt":"2021-06-11T12:01:35Z","paymentDetail":{{"transactionId":"T","authorised":{authorised},"amount":5.56}}}}}}"#
        );
        assert_eq!(
            kind_of(Source::MobileJourneys, &body),
            Kind::PaymentAttempt,
            "{authorised}"
        );
    }
}

#[test]
fn missing_or_bad_times_leave_the_clock_empty_not_the_event() {
    let e = one(
        Source::MobileJourneys,
        r#"{"eventId":"stage","data":{"correlationId":"C","occurredAt":"soon"}}"#,
    );
    assert_eq!(e.kind, Kind::Stage);
    assert_eq!(e.occurred_at, None);
    let e = one(Source::Mx, r#"{"job":{"guid":"J","updated_at":1e400}}"#);
    assert_eq!((e.kind, e.occurred_at), (Kind::Job, None));
}

#[test]
fn bodies_that_are_not_json_are_rejected_with_a_reason() {
    let reason = |b: &[u8]| {
        parse_delivery(Source::Mx, b)
            .expect_err("rejected")
            .to_string()
    };
    assert_eq!(reason(b""), "empty body");
    assert_eq!(reason(b" \n\t"), "empty body");
    assert_eq!(
        reason(b"{\"a\":\"\xff\"}"),
        "not UTF-8: invalid byte at offset 6"
    );
    assert_eq!(
        reason(b"{\"a\":"),
        "not JSON: expected a JSON value (found the end of the input) at line 1, column 6"
    );
    assert!(
        reason("[".repeat(200).as_bytes())
            .starts_with("too deep: nesting deeper than 128 levels at line 1, column 129")
    );
    assert!(
        matches!(
            parse_delivery(Source::Mx, b"\xef\xbb\xbf{}"),
            Err(Rejection::NotJson(_))
        ),
        "a byte order mark is not JSON"
    );
}

#[test]
fn source_detection_follows_the_shape() {
    let (s, r) = parse_delivery_detect(&seed("mj-stage"));
    assert_eq!(
        (s, r.expect("ok")[0].kind),
        (Source::MobileJourneys, Kind::Stage)
    );
    let (s, _) = parse_delivery_detect(
        format!(
            "[1, {}]",
            String::from_utf8(seed("mj-stage")).expect("utf8")
        )
        .as_bytes(),
    );
    assert_eq!(s, Source::MobileJourneys);
    let (s, r) = parse_delivery_detect(&seed("mx-job-status"));
    assert_eq!((s, r.expect("ok")[0].kind), (Source::Mx, Kind::Job));
    let (s, r) = parse_delivery_detect(&seed("mj-linkcreated-trailing-comma"));
    assert_eq!(
        s,
        Source::MobileJourneys,
        "unparseable bodies are told by their bytes"
    );
    assert!(r.is_err());
    assert_eq!(parse_delivery_detect(b"{}").0, Source::Mx);
}

// ---- identity ----

const STAGE: &str = r#"{"productId":"mobilejourneys","eventId":"stage","eventVersion":"1","eventTime":"2021-06-11T12:01:45Z","data":{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"C","stageName":"journeyEnd","sessionData":{"balance":"13.00","n":19.90}}}"#;

fn id_of(source: Source, body: &str) -> events::EventId {
    one(source, body).id
}

#[test]
fn redelivery_with_reordered_keys_and_other_whitespace_is_the_same_event() {
    let reordered = r#"{
        "data": { "sessionData": { "n": 19.90, "balance": "13.00" }, "stageName": "journeyEnd",
                  "correlationId": "C", "occurredAt": "2021-06-11T12:01:35Z" },
        "eventTime": "2021-06-11T12:01:45Z", "eventVersion": "1", "eventId": "stage",
        "productId": "mobilejourneys"
    }"#;
    assert_eq!(
        id_of(Source::MobileJourneys, STAGE),
        id_of(Source::MobileJourneys, reordered)
    );
}

#[test]
fn mobile_journeys_event_time_is_not_part_of_the_identity() {
    let later = STAGE.replace("2021-06-11T12:01:45Z", "2021-06-11T13:00:00Z");
    assert_ne!(STAGE, later);
    assert_eq!(
        id_of(Source::MobileJourneys, STAGE),
        id_of(Source::MobileJourneys, &later)
    );
    let no_time = STAGE.replace(r#""eventTime":"2021-06-11T12:01:45Z","#, "");
    assert_eq!(
        id_of(Source::MobileJourneys, STAGE),
        id_of(Source::MobileJourneys, &no_time)
    );
}

#[test]
fn everything_else_counts_in_the_identity() {
    let base = id_of(Source::MobileJourneys, STAGE);
    for (from, to) in [
        ("19.90", "19.9"),
        ("journeyEnd", "journeyend"),
        (r#""eventVersion":"1""#, r#""eventVersion":"2""#),
        ("12:01:35Z", "12:01:36Z"),
        (r#""balance":"13.00""#, r#""balance":13.00"#),
    ] {
        let changed = STAGE.replace(from, to);
        assert_ne!(
            base,
            id_of(Source::MobileJourneys, &changed),
            "{from} -> {to}"
        );
    }
    // The source is part of it too: the same JSON from the other route is another event.
    assert_ne!(base, id_of(Source::Mx, STAGE));
    // On MX, a top-level eventTime is content like any other field.
    let mx = r#"{"job":{"guid":"J","updated_at":1},"eventTime":"x"}"#;
    assert_ne!(
        id_of(Source::Mx, mx),
        id_of(Source::Mx, &mx.replace("\"x\"", "\"y\""))
    );
}

#[test]
fn large_numbers_keep_their_exact_text_in_the_identity() {
    let a = r#"{"job":{"guid":"J","n":12345678901234567890123}}"#;
    let b = r#"{"job":{"guid":"J","n":12345678901234567890124}}"#;
    assert_ne!(
        id_of(Source::Mx, a),
        id_of(Source::Mx, b),
        "would collide as f64"
    );
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-c]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Re-renders a value with its object keys in a shuffled order and random whitespace.
fn scramble(v: &Value, seed: &mut u64) -> String {
    let mut next = || {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as usize
    };
    fn go(v: &Value, next: &mut dyn FnMut() -> usize) -> String {
        let ws = [" ", "", "\n  ", "\t"][next() % 4];
        match v {
            Value::Object(m) => {
                let mut members: Vec<(&String, &Value)> = m.iter().collect();
                for i in (1..members.len()).rev() {
                    members.swap(i, next() % (i + 1));
                }
                let parts: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| {
                        format!(
                            "{ws}{}{ws}:{ws}{}",
                            serde_json::to_string(k).expect("key"),
                            go(v, next)
                        )
                    })
                    .collect();
                format!("{{{}{ws}}}", parts.join(","))
            }
            Value::Array(a) => format!(
                "[{}{ws}]",
                a.iter()
                    .map(|v| format!("{ws}{}", go(v, next)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => other.to_string(),
        }
    }
    go(v, &mut next)
}

proptest! {
    #[test]
    fn the_same_content_in_any_key_order_and_whitespace_has_one_id(v in arb_value(), s1 in any::<u64>(), s2 in any::<u64>()) {
        for source in Source::ALL {
            let (mut a, mut b) = (s1, s2);
            let x = parse_delivery(source, scramble(&v, &mut a).as_bytes()).expect("json");
            let y = parse_delivery(source, scramble(&v, &mut b).as_bytes()).expect("json");
            // The clock must follow the id: the log's uniqueness key is (clock, id).
            let ids = |e: &Vec<Event>| e.iter().map(|e| (e.id, e.clock, e.occurred_at)).collect::<Vec<_>>();
            prop_assert_eq!(ids(&x), ids(&y));
        }
    }

    #[test]
    fn a_scrambled_seed_event_keeps_its_id_and_its_clock(seed_index in 0usize..8, s in any::<u64>()) {
        let (name, source) = [
            ("mx-aggregation", Source::Mx), ("mx-goal-created", Source::Mx), ("mx-job-status", Source::Mx),
            ("mj-sessioncreated", Source::MobileJourneys), ("mj-paymentattempt", Source::MobileJourneys),
            ("mj-documentgenerated", Source::MobileJourneys), ("mj-stage", Source::MobileJourneys),
            ("mj-standard-data", Source::MobileJourneys),
        ][seed_index];
        let body = seed(name);
        let original = parse_delivery(source, &body).expect("seed parses").remove(0);
        let value: Value = serde_json::from_slice(&body).expect("json");
        let mut state = s;
        let scrambled = parse_delivery(source, scramble(&value, &mut state).as_bytes()).expect("json").remove(0);
        prop_assert_eq!((scrambled.id, scrambled.kind, scrambled.clock, scrambled.occurred_at), (original.id, original.kind, original.clock, original.occurred_at));
        prop_assert_eq!(scrambled.keys, original.keys);
    }

    #[test]
    fn distinct_events_never_share_an_id(a in arb_value(), b in arb_value()) {
        // Wrap each in an object so an array is one event, not several.
        let (a, b) = (json!({"payload": a}), json!({"payload": b}));
        for source in Source::ALL {
            let ea = one(source, &a.to_string());
            let eb = one(source, &b.to_string());
            prop_assert_eq!(ea.id == eb.id, a == b, "{} vs {}", a, b);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_any_event_keeps_bytes_from_the_body(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for source in Source::ALL {
            if let Ok(events) = parse_delivery(source, &bytes) {
                let text = std::str::from_utf8(&bytes).expect("accepted bodies are UTF-8");
                for e in events {
                    prop_assert!(text.contains(&e.payload));
                }
            }
        }
        let _ = parse_delivery_detect(&bytes);
    }

    #[test]
    fn json_like_text_never_panics(s in r#"[\[\]{}",:0-9a-z_.\- ]{0,64}"#) {
        for source in Source::ALL {
            let _ = parse_delivery(source, s.as_bytes());
        }
    }
}
