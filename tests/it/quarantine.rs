use serde_json::json;
use tests::{arg, seeds};

use crate::journeyd;

#[test]
fn quarantine_list_shows_each_body_with_its_reason_and_size() {
    let j = journeyd();
    let body = std::fs::read(seeds().join("mx-analytics-ruby-nil.json")).expect("read");
    j.json(&[
        "import",
        "--source",
        "mx",
        arg(&seeds().join("mx-analytics-ruby-nil.json")),
    ]);
    let list = j.json(&["quarantine", "list"]);
    let entry = &list[0];
    assert_eq!(entry["id"], 1);
    assert_eq!(entry["source"], "mx");
    assert_eq!(entry["size"], body.len());
    assert_eq!(
        entry["reason"],
        "not JSON: expected a JSON value (found `nil`) at line 5, column 13"
    );
    assert!(entry["received_at"].as_str().expect("time").ends_with('Z'));
    let human = j.run(&["quarantine", "list"]).success().stdout;
    assert!(
        human.contains("found `nil`") && human.contains("(1 quarantined)"),
        "{human}"
    );
}

#[test]
fn replay_moves_bodies_the_current_parser_accepts_into_the_log_and_leaves_the_rest() {
    let j = journeyd();
    j.json(&[
        "import",
        "--source",
        "mx",
        arg(&seeds().join("mx-analytics-ruby-nil.json")),
    ]);
    // A body an older build quarantined but this one parses (as if the parser had been fixed).
    let good = std::fs::read(seeds().join("mj-stage.json")).expect("read");
    j.sql()
        .execute(
            "INSERT INTO quarantine (body_id, received_at, last_received_at, source, reason, body)
             VALUES (x'01', 1623412895000, 1623412895000, 'mobile-journeys', 'rejected by an older build', ?1)",
            [&good],
        )
        .expect("insert");
    let out = j.json(&["quarantine", "replay"]);
    assert_eq!(
        out,
        json!({"moved": 1, "new": 1, "unknown": 0, "duplicate": 0, "still_quarantined": 1})
    );
    let log = j.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["kind"], "stage");
    assert_eq!(
        log[0]["received_at"], "2021-06-11T12:01:35Z",
        "a replayed event keeps when it was first received"
    );
    let left = j.json(&["quarantine", "list"]);
    assert_eq!(left.as_array().expect("list").len(), 1);
    assert_eq!(left[0]["source"], "mx");

    // Replaying again moves nothing and still succeeds.
    let again = j.run(&["quarantine", "replay"]).success().stdout;
    assert!(
        again.contains("0 moved to the log") && again.contains("1 still quarantined"),
        "{again}"
    );
}

/// `quarantine show` gives one body's reason, source, sizes, times and kept headers, and its
/// exact bytes on stdout (`--body`) or into a new owner-only file (`--output`).
#[test]
fn quarantine_show_gives_one_body_whole_and_its_exact_bytes() {
    use std::os::unix::fs::PermissionsExt;
    let j = journeyd();
    let seed = seeds().join("mx-analytics-ruby-nil.json");
    let bytes = std::fs::read(&seed).expect("read");
    j.json(&["import", "--source", "mx", arg(&seed)]);
    let shown = j.json(&["quarantine", "show", "1"]);
    assert_eq!(shown["id"], 1);
    assert_eq!(shown["source"], "mx");
    assert_eq!(shown["size"], bytes.len());
    assert_eq!(shown["times_received"], 1);
    assert!(shown["reason"].as_str().expect("reason").contains("nil"));
    assert!(shown["headers"].is_object(), "{shown}");
    let human = j.run(&["quarantine", "show", "1"]).success().stdout;
    assert!(
        human.contains("quarantined body 1") && human.contains("reason: not JSON"),
        "{human}"
    );
    let raw = j
        .command(&["quarantine", "show", "1", "--body"])
        .output()
        .expect("runs");
    assert!(raw.status.success());
    assert_eq!(raw.stdout, bytes, "the exact bytes");
    let file = j.dir().join("body.bin");
    j.run(&["quarantine", "show", "1", "--output", arg(&file)])
        .success();
    assert_eq!(std::fs::read(&file).expect("written"), bytes);
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let again = j.run(&["quarantine", "show", "1", "--output", arg(&file)]);
    assert_eq!(again.code, Some(1), "never overwrites: {}", again.stderr);
    let missing = j.run(&["quarantine", "show", "9"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no quarantined body 9"),
        "{}",
        missing.stderr
    );
}

/// A body judged to be garbage is discarded on record: gone from the list, the stats, the
/// replay and `GET /v1/quarantine`, kept whole with its note in `quarantine_discarded`.
#[test]
fn a_discarded_body_leaves_the_quarantine_on_record_and_is_kept_whole() {
    let j = journeyd();
    let seed = seeds().join("mx-analytics-ruby-nil.json");
    let bytes = std::fs::read(&seed).expect("read");
    let other = j.write("junk.json", b"not json at all");
    j.json(&["import", "--source", "mx", arg(&seed), arg(&other)]);
    assert_eq!(j.json(&["stats"])["quarantined"], 2);
    let refused = j.run(&["quarantine", "discard", "1"]);
    assert_eq!(
        refused.code,
        Some(2),
        "a note is required: {}",
        refused.stderr
    );
    j.run(&[
        "quarantine",
        "discard",
        "1",
        "--note",
        "a test body from the provider's docs",
    ])
    .success();
    let list = j.json(&["quarantine", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], 2);
    assert_eq!(j.json(&["stats"])["quarantined"], 1);
    let (body, note, at): (Vec<u8>, String, i64) = j
        .sql()
        .query_row(
            "SELECT body, note, discarded_at FROM quarantine_discarded WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("on record");
    assert_eq!(body, bytes, "kept whole");
    assert_eq!(note, "a test body from the provider's docs");
    assert!(at > 0);
    let again = j.run(&["quarantine", "discard", "1", "--note", "twice"]);
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    let replay = j.json(&["quarantine", "replay"]);
    assert_eq!(replay["still_quarantined"], 1, "{replay}");

    let d = j.serve(&[]);
    let page = d.get("/v1/quarantine").json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["items"][0]["id"], 2);
    assert_eq!(page["next"], serde_json::Value::Null);
    let first = d.get("/v1/quarantine?limit=1").json();
    assert_eq!(first["next"], 2, "{first}");
    let rest = d.get("/v1/quarantine?after=2").json();
    assert_eq!(rest["items"], json!([]));
    assert_eq!(d.get("/v1/quarantine?id=2").status, 400);
}
