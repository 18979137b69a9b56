//! The monitoring files in `docs/monitoring/` name only metrics the daemon exposes: a renamed
//! metric must not leave an alert that can never fire.

use std::collections::BTreeSet;

use crate::journeyd;

/// Every `journeyd_*` name in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("journeyd_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_metric_the_alert_rules_name_is_one_metrics_exposes() {
    let j = journeyd();
    let d = j.serve(&[
        "--mx-bearer-token-file",
        tests::arg(&j.write("t", b"token\n")),
    ]);
    let exposed: BTreeSet<String> = d
        .get("/metrics")
        .body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    assert!(exposed.len() > 20, "{exposed:?}");
    // A histogram or counter may be named by its family too (`journeyd_commit_seconds`).
    let families: BTreeSet<String> = exposed
        .iter()
        .map(|n| {
            ["_bucket", "_count", "_sum", "_total"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_owned()
        })
        .collect();
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring/alerts.yml"),
    )
    .expect("alert rules");
    let named = names(&rules);
    assert!(named.len() >= 5, "{named:?}");
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !exposed.contains(*n) && !families.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "named but not exposed: {missing:?}\nexposed: {exposed:?}"
    );
}
