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
