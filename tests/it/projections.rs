use serde_json::{Value, json};
use tests::{arg, examples};

use crate::journeyd;

const JOURNEY: &str = "91daa348-0eb0-4062-b4b6-61fd467562b0";
const MEMBER: &str = "MBR-48d9a481-f2a2-7e13-2685-62869cf0d33a";
const USER: &str = "USR-eaf4ac68-d17d-5e9b-7b46-959a5b315a9e";
const GOAL: &str = "GOL-537e6391-3c29-9130-4d4f-e44302608406";

fn import_examples(j: &tests::Journeyd) {
    j.json(&[
        "import",
        arg(&examples().join("mobile-journeys.json")),
        arg(&examples().join("mx.ndjson")),
    ]);
}

/// Every snapshot's `state`, as the CLI prints it (exact bytes).
fn states(j: &tests::Journeyd) -> Vec<String> {
    let mut out = Vec::new();
    for args in [
        vec!["journey", JOURNEY],
        vec!["journey", "5e0c8f4a-7d1b-4c55-9a53-0b8f6a1c2d3e"],
        vec!["member", MEMBER],
        vec!["user", USER],
        vec!["resource", "goal", GOAL],
    ] {
        let mut all = vec!["--json"];
        all.extend(args);
        let run = j.run(&all).success();
        // The state's bytes exactly as printed: from `"state":` to `,"meta":`.
        let text = run.stdout.trim();
        let start = text.find(r#""state":"#).expect("state") + 8;
        let end = text.rfind(r#","meta":"#).expect("meta");
        out.push(mask_arrival(&text[start..end]));
    }
    out
}

/// Blanks the member's `connection_status.received_at`: ordered by arrival, it is the one value
/// that may differ between two databases (docs/contract.md invariant 4's exception).
fn mask_arrival(state: &str) -> String {
    let marker = r#""received_at":""#;
    match state.find(marker) {
        Some(i) => {
            let from = i + marker.len();
            let to = from + state[from..].find('"').expect("closing quote");
            format!("{}*{}", &state[..from], &state[to..])
        }
        None => state.to_owned(),
    }
}

#[test]
fn import_leaves_the_snapshots_current_and_the_documents_have_key_state_meta() {
    let j = journeyd();
    import_examples(&j);
    let doc = j.json(&["journey", JOURNEY]);
    assert_eq!(doc["key"], JOURNEY);
    assert_eq!(doc["state"]["status"], "completed");
    assert_eq!(doc["state"]["amount_authorised"], json!({"GBP": "5.56"}));
    assert_eq!(
        (&doc["meta"]["event_count"], &doc["meta"]["last_seq"]),
        (&json!(5), &json!(5))
    );
    assert!(
        doc["meta"]["updated_at"]
            .as_str()
            .expect("time")
            .ends_with('Z')
    );
    let keys: Vec<&str> = doc
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["key", "meta", "state"]);

    assert_eq!(
        j.json(&["member", MEMBER])["state"]["connection_status"]["status"],
        "CONNECTED"
    );
    assert_eq!(j.json(&["user", USER])["state"]["goals"][0]["revision"], 72);
    assert_eq!(
        j.json(&["resource", "goal", GOAL])["state"]["deleted"],
        false
    );

    let missing = j.run(&["journey", "no-such-journey"]);
    assert_eq!(missing.code, Some(1));
    assert_eq!(missing.stderr.trim(), "error: no journey no-such-journey");
    let human = j.run(&["journey", JOURNEY]).success().stdout;
    assert!(
        human.starts_with(&format!("journey {JOURNEY}  (5 events")),
        "{human}"
    );
    assert!(
        human.contains("\n  \"status\": \"completed\",\n"),
        "readable, in the documented key order: {human}"
    );
}

#[test]
fn journeys_filter_by_status_and_journey_id_and_page_with_a_cursor() {
    let j = journeyd();
    import_examples(&j);
    let all = j.json(&["journeys", "--limit", "1"]);
    assert_eq!(all["items"].as_array().expect("items").len(), 1);
    let cursor = all["next"]
        .as_str()
        .expect("a cursor: the page was full")
        .to_owned();
    let rest = j.json(&["journeys", "--limit", "1", "--after", &cursor]);
    assert_eq!(rest["items"][0]["key"], JOURNEY);
    let done = j.json(&["journeys", "--limit", "5", "--after", &cursor]);
    assert_eq!(done["next"], Value::Null);
    let completed = j.json(&["journeys", "--status", "completed"]);
    let keys: Vec<&str> = completed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, [JOURNEY]);
    assert_eq!(
        j.json(&["journeys", "--journey-id", "9"])["items"],
        json!([])
    );
    assert_eq!(
        j.json(&["journeys", "--customer-reference", "AX-654321"])["items"][0]["state"]["status"],
        "opened"
    );
    assert_eq!(j.run(&["journeys", "--status", "lost"]).code, Some(2));
}

#[test]
fn the_same_deliveries_in_reverse_order_give_byte_identical_states_and_so_does_a_rebuild() {
    let forward = journeyd();
    import_examples(&forward);
    let expected = states(&forward);

    let backward = journeyd();
    let mx = std::fs::read_to_string(examples().join("mx.ndjson")).expect("read");
    let lines: Vec<&str> = mx.lines().rev().collect();
    // Everything twice, in reverse, as a provider redelivering would.
    let reversed = backward.write(
        "mx-reversed.ndjson",
        format!("{0}\n{0}\n", lines.join("\n")).as_bytes(),
    );
    let mj: Vec<Value> = serde_json::from_slice(
        &std::fs::read(examples().join("mobile-journeys.json")).expect("read"),
    )
    .expect("json");
    let mj_reversed = backward.write(
        "mj.json",
        serde_json::to_string(&mj.into_iter().rev().collect::<Vec<_>>())
            .expect("json")
            .as_bytes(),
    );
    backward.json(&["import", arg(&reversed), arg(&mj_reversed)]);
    // Byte-identical but for the arrival time of the connection status.
    assert_eq!(states(&backward), expected);

    let out = backward.run(&["rebuild"]).success().stdout;
    assert!(
        out.contains("rebuilt journeys: 2 snapshots from 6 events")
            && out.contains("snapshots are current at seq"),
        "{out}"
    );
    assert_eq!(states(&backward), expected);
    let one = backward.json(&["rebuild", "members"]);
    assert_eq!(one["rebuilt"][0]["projection"], "members");
    assert_eq!(states(&backward), expected);
}

#[test]
fn a_rebuild_in_one_process_while_another_imports_ends_equal_to_a_fresh_rebuild() {
    let j = journeyd();
    // A larger log: many journeys, so the rebuild takes long enough to overlap the import.
    let mut lines = String::new();
    for i in 0..3000 {
        lines.push_str(&format!(
            r#"{{"productId":"mobilejourneys","eventId":"sessioncreated","data":{{"occurredAt":"2021-06-11T10:00:00Z","correlationId":"c{}","sessionId":"s{i}"}}}}"#,
            i % 700
        ));
        lines.push('\n');
    }
    let first = j.write("first.ndjson", lines.as_bytes());
    let second = j.write("second.ndjson", lines.replace("\"s", "\"t").as_bytes());
    j.json(&["import", arg(&first)]);
    let db = j.db();
    let exe = env!("CARGO_BIN_EXE_journeyd-under-test");
    let importer = std::process::Command::new(exe)
        .args(["--db", arg(&db), "--json", "import", arg(&second)])
        .env("JOURNEYD_SYNCHRONOUS", "normal")
        .output();
    let rebuild = j.run(&["rebuild"]).success();
    let importer = importer.expect("import ran");
    assert!(
        importer.status.success(),
        "{}",
        String::from_utf8_lossy(&importer.stderr)
    );
    assert!(
        rebuild.stdout.contains("rebuilt journeys"),
        "{}",
        rebuild.stdout
    );
    // Whatever the interleaving, a catch-up (here: an empty import) leaves the snapshots equal
    // to a fresh rebuild.
    let empty = j.write("empty.ndjson", b"");
    j.json(&["import", arg(&empty)]);
    let snapshot = |j: &tests::Journeyd| -> Vec<(String, String, i64)> {
        let conn = j.sql();
        let mut stmt = conn
            .prepare("SELECT correlation_id, state, last_seq FROM journeys ORDER BY 1")
            .expect("sql");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let incremental = snapshot(&j);
    assert_eq!(incremental.len(), 700);
    j.run(&["rebuild", "journeys"]).success();
    assert_eq!(snapshot(&j), incremental);
    let stats = j.json(&["stats"]);
    assert_eq!(stats["projector"]["lag"], 0);
    assert_eq!(stats["events"], 6000);
}

#[test]
fn import_no_project_only_appends_and_the_next_import_catches_up() {
    let j = journeyd();
    j.json(&[
        "import",
        "--no-project",
        arg(&examples().join("mobile-journeys.json")),
    ]);
    let stats = j.json(&["stats"]);
    assert_eq!(
        (
            &stats["events"],
            &stats["projector"]["lag"],
            &stats["journeys"]["total"]
        ),
        (&json!(6), &json!(6), &json!(0))
    );
    // The same from the environment (every option of `import` has its variable).
    let mx = examples().join("mx.ndjson");
    let out = j
        .command(&["--json", "import", arg(&mx)])
        .env("JOURNEYD_IMPORT_NO_PROJECT", "true")
        .output()
        .expect("import");
    assert!(out.status.success(), "{out:?}");
    let stats = j.json(&["stats"]);
    assert_eq!(
        (&stats["projector"]["lag"], &stats["members"]),
        (&json!(stats["events"]), &json!(0)),
        "{stats}"
    );
    let empty = j.write("empty.ndjson", b"");
    j.json(&["import", arg(&empty)]);
    let stats = j.json(&["stats"]);
    assert_eq!(
        (&stats["projector"]["lag"], &stats["journeys"]["total"]),
        (&json!(0), &json!(2))
    );
}
