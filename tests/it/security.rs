//! What journeyd keeps from other local users and from its own log: owner-only data files
//! whatever the umask, credentials from files, several credentials at once for a rotation, and
//! no payload byte or header value in the log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tests::{arg, examples};

use crate::journeyd;

const MJ: &str = "/webhooks/mobile-journeys";
const MX: &str = "/webhooks/mx";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn beside(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A Mobile Journeys payment whose cardholder is `name`.
fn payment(name: &str) -> String {
    format!(
        r#"[{{"productId":"mobilejourneys","eventId":"paymentattempt","eventVersion":"1","data":{{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"J-private","sessionId":"S1","paymentDetail":{{"transactionId":"T1","authorised":"true","amount":"5.56","currency":"GBP","cardholderName":"{name}","cardNumber":"4321"}}}}}}]"#
    )
}

/// Under a umask that lets everyone read and write, the database, its WAL and shared-memory
/// files, the lock file and a backup are still created readable and writable by their owner
/// only: they hold payment and identity data.
#[test]
fn every_file_that_holds_the_log_is_owner_only_whatever_the_umask() {
    let j = journeyd().with_umask(0o000);
    let db = j.db();
    let d = j.serve(&[]);
    let body = std::fs::read(examples().join("mobile-journeys.json")).expect("example");
    assert_eq!(d.post(MJ, &body, &[]).status, 204);
    for path in [
        db.clone(),
        beside(&db, "-wal"),
        beside(&db, "-shm"),
        beside(&db, ".lock"),
    ] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let backup = j.dir().join("copy.db");
    j.run(&["backup", arg(&backup)]).success();
    assert_eq!(mode(&backup), 0o600, "the backup");
    assert_eq!(d.terminate(Duration::from_secs(10)), Some(0));

    // A database an import creates is owner-only too.
    let k = journeyd().with_umask(0o000);
    k.run(&["import", arg(&examples().join("mobile-journeys.json"))])
        .success();
    assert_eq!(mode(&k.db()), 0o600);
}

/// journeyd does not change the mode of a database it did not create, but says, once, when it
/// opens it to write (an import, the daemon's start-up), that others can read it and how to
/// stop that.
#[test]
fn a_database_others_can_read_draws_one_warning_naming_it_and_the_fix() {
    let j = journeyd();
    let example = examples().join("mobile-journeys.json");
    let quiet = j.run(&["import", arg(&example)]).success();
    assert!(
        !quiet.stderr.contains("readable by other users"),
        "{}",
        quiet.stderr
    );
    chmod(&j.db(), 0o644);
    let warned = j.run(&["import", arg(&example)]).success();
    assert_eq!(
        warned.stderr.matches("readable by other users").count(),
        1,
        "{}",
        warned.stderr
    );
    assert!(warned.stderr.contains(arg(&j.db())), "{}", warned.stderr);
    assert!(warned.stderr.contains("chmod 600"), "{}", warned.stderr);
    assert_eq!(mode(&j.db()), 0o644, "left as the operator made it");
    let d = j.serve(&[]);
    let (_, log) = d.terminate_with_log(Duration::from_secs(10));
    assert_eq!(log.matches("readable by other users").count(), 1, "{log}");
}

/// Credentials from files (flags and `_FILE` variables), one per line; several accepted at
/// once; each request counted under its credential's label, never its value.
#[test]
fn credentials_come_from_files_and_old_and_new_are_accepted_together() {
    let j = journeyd();
    let tokens = j.write("mx-tokens", b"old-token\nnew-token\n");
    let api = j.write("api-token", b"reader-token\r\n");
    chmod(&tokens, 0o600);
    chmod(&api, 0o600);
    // The API token's file comes by its environment variable.
    let d = j.serve_with_env(
        &["--mx-bearer-token-file", arg(&tokens)],
        &[("JOURNEYD_API_TOKEN_FILE", arg(&api))],
    );
    let ndjson = std::fs::read_to_string(examples().join("mx.ndjson")).expect("example");
    let body = ndjson.lines().next().expect("a line").as_bytes().to_vec();
    for token in ["old-token", "new-token", "new-token"] {
        let auth = format!("Bearer {token}");
        assert_eq!(d.post(MX, &body, &[("authorization", &auth)]).status, 204);
    }
    assert_eq!(
        d.post(MX, &body, &[("authorization", "Bearer other")])
            .status,
        401
    );
    assert_eq!(d.get("/v1/stats").status, 401, "the read API has its token");
    let metrics = d.get("/metrics").body;
    assert!(
        metrics
            .contains(r#"journeyd_credential_uses_total{endpoint="mx",credential="bearer-1"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"journeyd_credential_uses_total{endpoint="mx",credential="bearer-2"} 2"#),
        "{metrics}"
    );
    assert_eq!(
        d.get_with("/v1/stats", &[("authorization", "Bearer reader-token")])
            .status,
        200,
        "the file's line end is not part of the token"
    );
    let (code, log) = d.terminate_with_log(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        log.contains(&format!(
            "bearer-1 (--mx-bearer-token-file {}, line 1), bearer-2 (--mx-bearer-token-file {}, line 2)",
            tokens.display(),
            tokens.display()
        )),
        "{log}"
    );
    for secret in ["old-token", "new-token", "reader-token"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(
        !log.contains("process list"),
        "no credential on the command line:\n{log}"
    );
}

/// A credential typed on the command line shows in the process list, and a credential file
/// every local user can read is as good as the credential: both are warned of at start-up.
/// The same credential from the environment is not.
#[test]
fn credentials_other_users_can_see_draw_warnings() {
    let j = journeyd();
    let open = j.write("open-secret", b"open-token\n");
    chmod(&open, 0o644);
    let d = j.serve_with_env(
        &[
            "--mobile-journeys-basic-auth",
            "provider:old-pass",
            "--mobile-journeys-basic-auth",
            "provider:new-pass",
            "--mx-bearer-token-file",
            arg(&open),
        ],
        &[("JOURNEYD_API_TOKEN", "from-the-environment")],
    );
    let body = std::fs::read(examples().join("mobile-journeys.json")).expect("example");
    for pass in ["old-pass", "new-pass"] {
        let auth = tests::basic_auth(&format!("provider:{pass}"));
        assert_eq!(d.post(MJ, &body, &[("authorization", &auth)]).status, 204);
    }
    let (_, log) = d.terminate_with_log(Duration::from_secs(10));
    assert_eq!(
        log.matches("--mobile-journeys-basic-auth on the command line")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("JOURNEYD_MOBILE_JOURNEYS_BASIC_AUTH_FILE"),
        "{log}"
    );
    assert!(!log.contains("--api-token on the command line"), "{log}");
    assert!(log.contains("readable by every local user"), "{log}");
    assert!(log.contains(arg(&open)), "{log}");
}

/// No byte of a webhook's body, and no header value but a plain request id, reaches the log
/// at the default level: neither of a stored body nor of a quarantined one, whose stored
/// reason quotes it.
#[test]
fn no_payload_byte_or_header_value_reaches_the_log() {
    let j = journeyd();
    let d = j.serve(&["--mx-bearer-token", "tok"]);
    let name = "Zebedee Quartermaine";
    let headers = [("user-agent", name), ("x-request-id", name)];
    assert_eq!(d.post(MJ, payment(name).as_bytes(), &headers).status, 204);
    // Not JSON: the parser's reason quotes the bare word, as the stored reason says.
    let broken = r#"{"cardholderName": nZebedeeQuartermaine}"#;
    let q = d.post(MJ, broken.as_bytes(), &headers);
    assert_eq!(q.status, 202);
    assert!(q.body.contains("nZebedeeQuartermaine"), "{}", q.body);
    assert_eq!(
        d.post(
            MX,
            b"{}",
            &[("authorization", "Bearer Zebedee"), ("user-agent", name)]
        )
        .status,
        401
    );
    let (code, log) = d.terminate_with_log(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        log.contains("quarantined"),
        "the quarantine is logged:\n{log}"
    );
    assert!(
        !log.contains("Zebedee"),
        "a personal value in the log:\n{log}"
    );
    assert!(!log.contains("4321"), "card digits in the log:\n{log}");
}

/// A credential line with white space around it would never match: it is bad usage, named by
/// file and line, not a silent refusal of every delivery. A byte-order mark and blank lines are
/// not credentials.
#[test]
fn a_credential_file_line_with_white_space_around_it_is_refused() {
    let j = journeyd();
    let file = j.write("tokens", b"\xef\xbb\xbfgood-token\n   \nbad-token \n");
    chmod(&file, 0o600);
    let run = j.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mx-bearer-token-file",
        arg(&file),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("line 3"), "{}", run.stderr);
    assert!(!run.stderr.contains("bad-token"), "{}", run.stderr);
    let fine = j.write("fine", b"\xef\xbb\xbfgood-token\n\n");
    chmod(&fine, 0o600);
    let d = j.serve(&["--mx-bearer-token-file", arg(&fine)]);
    let ndjson = std::fs::read_to_string(examples().join("mx.ndjson")).expect("example");
    let body = ndjson.lines().next().expect("a line").as_bytes().to_vec();
    assert_eq!(
        d.post(MX, &body, &[("authorization", "Bearer good-token")])
            .status,
        204
    );
}
