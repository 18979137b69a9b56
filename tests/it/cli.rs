use serde_json::json;
use tests::{arg, examples};

use crate::journeyd;

#[test]
fn bad_usage_exits_2_and_failures_exit_1_with_one_line() {
    let j = journeyd();
    assert_eq!(j.run(&["import"]).code, Some(2), "missing FILE");
    assert_eq!(
        j.run(&["import", "--source", "sms", "x.json"]).code,
        Some(2)
    );
    assert_eq!(j.run(&["no-such-command"]).code, Some(2));

    let missing = j.run(&["import", "does-not-exist.json"]);
    assert_eq!(missing.code, Some(1));
    assert_eq!(missing.stderr.lines().count(), 1, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .starts_with("error: cannot read does-not-exist.json"),
        "{}",
        missing.stderr
    );

    let fresh = journeyd();
    let no_db = fresh.run(&["stats"]);
    assert_eq!(no_db.code, Some(1));
    assert!(
        no_db.stderr.contains("no journeyd database at"),
        "{}",
        no_db.stderr
    );
    assert!(
        !fresh.db().exists(),
        "a read-only command must not create the database"
    );
}

#[test]
fn events_pages_through_the_log_with_after_and_limit() {
    let j = journeyd();
    j.json(&["import", arg(&examples().join("mobile-journeys.json"))]);
    let first = j.json(&["events", "--limit", "4"]);
    assert_eq!(first["events"].as_array().expect("events").len(), 4);
    assert_eq!(first["next_after"], 4);
    let rest = j.json(&["events", "--after", "4", "--limit", "4"]);
    let seqs: Vec<i64> = rest["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [5, 6]);
    assert_eq!(rest["next_after"], json!(null));

    let record = &first["events"][0];
    let fields: Vec<&str> = record
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "event_id",
            "keys",
            "kind",
            "occurred_at",
            "payload",
            "received_at",
            "seq",
            "source"
        ]
    );
    assert_eq!(
        record["keys"],
        json!({"correlation_id": "91daa348-0eb0-4062-b4b6-61fd467562b0"})
    );
    assert_eq!(record["occurred_at"], "2021-06-11T11:57:35Z");
    assert_eq!(record["payload"]["data"]["parameters"]["balance"], "18.56");

    let human = j.run(&["events", "--limit", "2"]).success().stdout;
    assert!(
        human.contains("linkcreated") && human.contains("(more: journeyd events --after 2)"),
        "{human}"
    );
}

#[test]
fn stats_counts_by_source_and_kind() {
    let j = journeyd();
    j.json(&[
        "import",
        arg(&examples().join("mx.ndjson")),
        arg(&examples().join("mobile-journeys.json")),
    ]);
    let stats = j.json(&["stats"]);
    assert_eq!(
        stats,
        json!({
            "events": 15, "unknown": 1, "quarantined": 0, "log_head": 15, "deliveries": 9,
            "journeys": {"total": 2, "by_status": {"completed": 1, "opened": 1}},
            "members": 1, "users": 1, "resources": 1,
            "projector": {"checkpoint": 15, "lag": 0},
            "by_source": {"mobile-journeys": 6, "mx": 9},
            "by_kind": {"analytics": 2, "connection_status": 1, "documentgenerated": 1, "job": 1,
                        "linkcreated": 1, "member_data": 2, "paymentattempt": 1, "resource": 2,
                        "sessioncreated": 2, "stage": 1, "unknown": 1}
        })
    );
}

#[test]
fn the_database_flag_also_comes_from_the_environment() {
    let j = journeyd();
    // `--db` given on the command line wins; check the env var through a second path.
    let other = j.dir().join("other.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_journeyd-under-test"))
        .env("JOURNEYD_DB", &other)
        .env("JOURNEYD_SYNCHRONOUS", "normal")
        .args([
            "--json",
            "import",
            arg(&examples().join("mobile-journeys.json")),
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(other.exists());
    assert!(!j.db().exists());
}

/// An environment variable turns a flag on with any value but a false-like one, as shells and
/// service managers set them (`1`, `true`, `yes`), and off with `0`, `false`, `no`, `off` or
/// empty.
#[test]
fn flags_from_the_environment_take_the_usual_spellings() {
    let j = journeyd();
    j.run(&["import", arg(&examples().join("mobile-journeys.json"))])
        .success();
    for (value, json) in [
        ("1", true),
        ("true", true),
        ("yes", true),
        ("0", false),
        ("false", false),
        ("off", false),
        ("", false),
    ] {
        let out = j
            .command(&["stats"])
            .env("JOURNEYD_JSON", value)
            .output()
            .expect("runs");
        assert!(out.status.success(), "JOURNEYD_JSON={value:?}: {out:?}");
        let parsed = serde_json::from_slice::<serde_json::Value>(&out.stdout);
        assert_eq!(parsed.is_ok(), json, "JOURNEYD_JSON={value:?}");
    }
    let out = j
        .command(&["import", arg(&examples().join("mx.ndjson"))])
        .env("JOURNEYD_IMPORT_NO_PROJECT", "1")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let stats = j.json(&["stats"]);
    assert_ne!(stats["projector"]["lag"], 0, "appended only: {stats}");
}

/// A reader that goes away (`journeyd events | head -1`) is no failure: the command ends
/// quietly with status 0, as a tool killed by SIGPIPE would, in text and in JSON.
#[test]
fn output_into_a_pipe_whose_reader_went_away_ends_quietly() {
    let j = journeyd();
    j.run(&["import", arg(&examples().join("mobile-journeys.json"))])
        .success();
    for args in [&["events"][..], &["--json", "events"], &["stats"]] {
        let mut child = j
            .command(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("journeyd runs");
        // The reader goes away before journeyd has written a byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("exits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

/// `--log-format json` writes one JSON object per line, journeyd's own events only: no `log.*`
/// fields of dependencies' records (they carried the build machine's paths). A new database's
/// migration is logged by the store.
#[test]
fn json_logs_are_one_object_a_line_with_journeyds_own_fields() {
    let j = journeyd();
    let run = j
        .run(&[
            "--log-format",
            "json",
            "--log-level",
            "info",
            "import",
            arg(&examples().join("mobile-journeys.json")),
        ])
        .success();
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        let keys = line.as_object().expect("an object").keys();
        for key in keys {
            assert!(!key.starts_with("log."), "{key} in {line}");
        }
    }
    let migrated = lines
        .iter()
        .find(|l| l["message"] == "database schema migrated")
        .unwrap_or_else(|| panic!("no migration line in {lines:?}"));
    assert_eq!((&migrated["from"], &migrated["to"]), (&json!(0), &json!(7)));
}

/// Human output counts in words that agree with the number: `1 journey`, `1 event`,
/// `1 body`, and the plural otherwise.
#[test]
fn human_counts_agree_with_their_number() {
    let j = journeyd();
    let body = r#"[{"productId":"mobilejourneys","eventId":"sessioncreated","data":{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"J1","sessionId":"S1"}}]"#;
    let file = j.write("one.json", body.as_bytes());
    let imported = j.run(&["import", tests::arg(&file)]).success();
    assert!(
        imported.stdout.contains(
            "imported 1 body: 1 new event (0 unknown), 0 duplicates, 0 bodies quarantined"
        ),
        "{}",
        imported.stdout
    );
    let listed = j.run(&["journeys"]).success();
    assert!(listed.stdout.contains("(1 journey)"), "{}", listed.stdout);
    let events = j.run(&["events"]).success();
    assert!(events.stdout.contains("(1 event)"), "{}", events.stdout);
    let shown = j.run(&["journey", "J1"]).success();
    assert!(
        shown.stdout.contains("(1 event, last seq 1"),
        "{}",
        shown.stdout
    );
    let copy = j.dir().join("copy.db");
    let backup = j.run(&["backup", tests::arg(&copy)]).success();
    assert!(
        backup
            .stdout
            .contains(": 1 event (log head 1), 0 bodies quarantined"),
        "{}",
        backup.stdout
    );
}

/// A file that is not SQLite is named, with what it is, by every command, and nothing warns
/// about its mode first: it is not a database of payments.
#[test]
fn a_file_that_is_not_sqlite_is_named_by_every_command() {
    let j = journeyd();
    let notes = j.write("notes.txt", &b"# notes\n".repeat(1000));
    let example = tests::examples().join("mobile-journeys.json");
    for args in [
        vec!["stats"],
        vec!["events"],
        vec!["import", tests::arg(&example)],
        vec!["rebuild"],
        vec!["serve", "--listen", "127.0.0.1:0"],
    ] {
        let run = j.run_on(&notes, &args);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(tests::arg(&notes))
                && run.stderr.contains("not an SQLite database"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("readable by other users"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
