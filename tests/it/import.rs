use std::collections::BTreeSet;

use serde_json::{Value, json};
use tests::{arg, examples, seeds};

use crate::journeyd;

fn example_files() -> Vec<String> {
    [
        "mobile-journeys.json",
        "mx.ndjson",
        "mx-analytics-as-printed.json",
    ]
    .iter()
    .map(|f| arg(&examples().join(f)).to_owned())
    .collect()
}

fn import(j: &tests::Journeyd, files: &[String]) -> Value {
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    j.json(&args)
}

fn event_ids(log: &[Value]) -> BTreeSet<String> {
    log.iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

#[test]
fn importing_the_examples_twice_reports_only_duplicates_the_second_time_and_changes_nothing() {
    let j = journeyd();
    let first = import(&j, &example_files());
    assert_eq!(
        first,
        json!({"bodies": 10, "new": 15, "duplicate": 0, "quarantined": 1, "unknown": 1})
    );
    let log = j.log();
    assert_eq!(log.len(), 15);
    let second = import(&j, &example_files());
    assert_eq!(
        second,
        json!({"bodies": 10, "new": 0, "duplicate": 15, "quarantined": 1, "unknown": 0})
    );
    assert_eq!(j.log(), log, "the log is unchanged");
    let quarantined = j.json(&["quarantine", "list"]);
    assert_eq!(
        quarantined.as_array().expect("list").len(),
        1,
        "the same bad body is one entry"
    );
    assert_eq!(quarantined[0]["times_received"], 2);
}

#[test]
fn importing_the_same_deliveries_in_reverse_order_yields_the_same_event_ids() {
    let forward = journeyd();
    import(&forward, &example_files());

    let backward = journeyd();
    // Every body in reverse order, and each Mobile Journeys array reversed too.
    let mj: Vec<Value> = serde_json::from_slice(
        &std::fs::read(examples().join("mobile-journeys.json")).expect("read"),
    )
    .expect("json");
    let mj_reversed: Vec<Value> = mj.into_iter().rev().collect();
    let mx = std::fs::read_to_string(examples().join("mx.ndjson")).expect("read");
    let mx_reversed: Vec<&str> = mx.lines().rev().collect();
    let files = [
        backward.write("mx-reversed.ndjson", mx_reversed.join("\n").as_bytes()),
        backward.write(
            "mj-reversed.json",
            serde_json::to_string_pretty(&mj_reversed)
                .expect("json")
                .as_bytes(),
        ),
    ];
    let files: Vec<String> = files.iter().map(|p| arg(p).to_owned()).collect();
    import(&backward, &files);

    let (a, b) = (forward.log(), backward.log());
    assert_eq!(a.len(), b.len());
    assert_eq!(event_ids(&a), event_ids(&b));
    assert_ne!(
        a.iter().map(|e| &e["event_id"]).collect::<Vec<_>>(),
        b.iter().map(|e| &e["event_id"]).collect::<Vec<_>>(),
        "the arrival order differs, so the test means something"
    );
}

#[test]
fn every_seed_example_is_imported_or_quarantined_with_its_reason() {
    let j = journeyd();
    let mut expected_kinds = Vec::new();
    for (file, source, kind) in [
        ("mx-aggregation", "mx", Some("member_data")),
        ("mx-analytics-ruby-nil", "mx", None),
        ("mx-goal-created", "mx", Some("resource")),
        ("mx-job-status", "mx", Some("job")),
        ("mj-standard-data", "mobile-journeys", Some("unknown")),
        ("mj-linkcreated-trailing-comma", "mobile-journeys", None),
        (
            "mj-sessioncreated",
            "mobile-journeys",
            Some("sessioncreated"),
        ),
        (
            "mj-paymentattempt",
            "mobile-journeys",
            Some("paymentattempt"),
        ),
        (
            "mj-documentgenerated",
            "mobile-journeys",
            Some("documentgenerated"),
        ),
        ("mj-stage", "mobile-journeys", Some("stage")),
    ] {
        let path = seeds().join(format!("{file}.json"));
        let out = j.json(&["import", "--source", source, arg(&path)]);
        match kind {
            Some(kind) => {
                assert_eq!(
                    (&out["new"], &out["quarantined"]),
                    (&json!(1), &json!(0)),
                    "{file}"
                );
                expected_kinds.push(kind);
            }
            None => assert_eq!(
                (&out["new"], &out["quarantined"]),
                (&json!(0), &json!(1)),
                "{file}"
            ),
        }
    }
    let log = j.log();
    let kinds: Vec<&str> = log
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, expected_kinds);
    // Each payload is the exact bytes of the file's JSON value.
    let stage = std::fs::read_to_string(seeds().join("mj-stage.json")).expect("read");
    let stored: String = j
        .sql()
        .query_row("SELECT payload FROM events WHERE kind = 'stage'", [], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(stored, stage.trim_end());

    let reasons: Vec<String> = j
        .json(&["quarantine", "list"])
        .as_array()
        .expect("list")
        .iter()
        .map(|q| q["reason"].as_str().expect("reason").to_owned())
        .collect();
    assert_eq!(
        reasons,
        [
            "not JSON: expected a JSON value (found `nil`) at line 5, column 13",
            "not JSON: trailing comma before the end of an object (found `}`) at line 16, column 1",
        ]
    );
}

#[test]
fn stdin_takes_one_body_per_line_and_sources_are_detected_from_the_shape() {
    let j = journeyd();
    let mj = std::fs::read_to_string(seeds().join("mj-sessioncreated.json")).expect("read");
    let mj_line: String =
        serde_json::to_string(&serde_json::from_str::<Value>(&mj).expect("json")).expect("json");
    let input = format!("{mj_line}\r\n\n{{\"job\":{{\"guid\":\"J\",\"updated_at\":1}}}}\n   \n");
    let out = j
        .run_with_stdin(&["--json", "import", "-"], input.as_bytes())
        .success()
        .json();
    assert_eq!(
        out,
        json!({"bodies": 2, "new": 2, "duplicate": 0, "quarantined": 0, "unknown": 0}),
        "blank lines are not bodies"
    );
    let log = j.log();
    let got: Vec<(&str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["source"].as_str().expect("s"),
                e["kind"].as_str().expect("k"),
            )
        })
        .collect();
    assert_eq!(got, [("mobile-journeys", "sessioncreated"), ("mx", "job")]);
    assert_eq!(
        log[0]["payload"],
        serde_json::from_str::<Value>(&mj_line).expect("json"),
        "the line break is not part of the body"
    );
}

#[test]
fn junk_of_every_kind_is_kept_with_a_reason_and_nothing_panics() {
    let j = journeyd();
    let deep = "[".repeat(500);
    let mut lines: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"{\"a\": \"\xff\xfe\"}".to_vec(),
        deep.clone().into_bytes(),
        b"[]".to_vec(),
        b"[1, \"two\", null, {\"three\": 3}]".to_vec(),
        b"123456789012345678901234567890".to_vec(),
        b"{\"job\": {\"guid\": \"J\", \"updated_at\": 1e999999}}".to_vec(),
    ];
    lines.push(vec![0u8, 1, 2, 3, 255]);
    let file = j.write("junk.ndjson", &lines.join(&b'\n'));
    let out = j.json(&["import", "--source", "mx", arg(&file)]);
    assert_eq!(
        out,
        json!({"bodies": 8, "new": 6, "duplicate": 0, "quarantined": 4, "unknown": 5})
    );
    let conn = j.sql();
    let mut stmt = conn
        .prepare("SELECT reason, body FROM quarantine ORDER BY id")
        .expect("prepare");
    let rows: Vec<(String, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let reasons: Vec<&str> = rows.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "not JSON: expected a JSON value (found `not`) at line 1, column 1",
            "not UTF-8: invalid byte at offset 7",
            "too deep: nesting deeper than 128 levels at line 1, column 129",
            "not UTF-8: invalid byte at offset 4",
        ]
    );
    assert_eq!(rows[1].1, lines[1], "exact bytes kept");
    assert_eq!(rows[3].1, lines[7], "exact bytes kept");
    let stats = j.json(&["stats"]);
    assert_eq!(
        (
            &stats["unknown"],
            &stats["quarantined"],
            &stats["by_kind"]["job"]
        ),
        (&json!(5), &json!(4), &json!(1))
    );
}

/// `--source` of the other provider's bodies would store every event as `unknown`, for good:
/// the import is refused, naming the file and the source to use, before anything is written.
#[test]
fn an_import_whose_bodies_are_plainly_the_other_providers_is_refused_before_anything_is_written() {
    let j = journeyd();
    let mj = tests::examples().join("mobile-journeys.json");
    let mx = tests::examples().join("mx.ndjson");
    for (file, declared, detected) in [
        (&mj, "mx", "mobile-journeys"),
        (&mx, "mobile-journeys", "mx"),
    ] {
        // The first file is fine, the second not: the first is not written either.
        let fine = if declared == "mx" { &mx } else { &mj };
        let run = j.run(&[
            "import",
            "--source",
            declared,
            tests::arg(fine),
            tests::arg(file),
        ]);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(run.stderr.contains(tests::arg(file)), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("--source {detected}")),
            "{}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(
            !j.db().exists(),
            "nothing was written, not even the database"
        );
    }
    // Each source given right, or detected, imports.
    let run = j
        .run(&["import", "--source", "mobile-journeys", tests::arg(&mj)])
        .success();
    assert!(run.stdout.contains("(0 unknown)"), "{}", run.stdout);
}

/// Every summary says how many events were stored as `unknown`.
#[test]
fn the_summary_counts_the_events_stored_as_unknown() {
    let j = journeyd();
    let file = j.write("odd.ndjson", b"{\"hello\": 1}\n{\"hello\": 2}\n");
    let run = j
        .run(&["import", "--source", "mx", tests::arg(&file)])
        .success();
    assert!(
        run.stdout.contains("2 new events (2 unknown)"),
        "{}",
        run.stdout
    );
    let json = j.json(&["import", tests::arg(&file)]);
    assert_eq!(json["unknown"], 0, "duplicates are not new: {json}");
}

/// A file that is no delivery (a README, an empty file) does not read as imported.
#[test]
fn a_file_that_is_no_delivery_is_said_to_be_so() {
    let j = journeyd();
    let readme = j.write("README.md.json", b"# Notes\n\nNot a webhook.\n");
    let run = j.run(&["import", tests::arg(&readme)]).success();
    assert!(run.stderr.contains("is not a delivery"), "{}", run.stderr);
    let empty = j.write("empty.ndjson", b"\n\n");
    let run = j.run(&["import", tests::arg(&empty)]).success();
    assert!(run.stderr.contains("holds no delivery"), "{}", run.stderr);
    let fine = tests::examples().join("mobile-journeys.json");
    let run = j.run(&["import", tests::arg(&fine)]).success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}
