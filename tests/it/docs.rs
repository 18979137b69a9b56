//! The documentation stands on its own: every relative link in the repository's Markdown leads
//! to a file that exists, and nothing points outside the repository.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Every Markdown file of the repository, but the build's and git's.
fn markdown(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        if path.is_dir() {
            markdown(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The targets of `[text](target)` links in `text`.
fn links(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].trim());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_leads_to_a_file_that_exists() {
    let root = root();
    let mut files = Vec::new();
    markdown(&root, &mut files);
    assert!(files.len() > 10, "found the docs: {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for target in links(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap_or(target);
            checked += 1;
            let resolved = file.parent().expect("dir").join(path);
            if !resolved.exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(checked > 10, "links were checked: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The contract, the provider pages and the decisions are all in the repository: no file
/// points to one outside it.
#[test]
fn nothing_in_the_repository_points_outside_it() {
    let root = root();
    let mut files = Vec::new();
    markdown(&root, &mut files);
    for dir in ["crates", "tests", "migrations", ".cargo", ".ci", "scripts"] {
        sources(&root.join(dir), &mut files);
    }
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for needle in ["../shared", "DESIGN.md"] {
            // This test names them to look for them.
            if file.ends_with("tests/it/docs.rs") {
                continue;
            }
            if text.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "points outside the repository:\n{}",
        found.join("\n")
    );
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == "target" {
            continue;
        }
        if path.is_dir() {
            sources(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The systemd units of `docs/operations.md` (the service, the backup service and its timer)
/// pass `systemd-analyze verify`, with their `journeyd` executable where they expect it (here,
/// the one under test). Where `systemd-analyze` is missing the test says so in one line and
/// passes, except in CI, where it must run.
#[test]
fn the_systemd_units_of_the_operations_guide_verify() {
    let Ok(found) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is required in CI"
        );
        eprintln!("systemd-analyze not found: the systemd units were not verified");
        return;
    };
    assert!(found.status.success());
    let guide = std::fs::read_to_string(root().join("docs/operations.md")).expect("guide");
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = env!("CARGO_BIN_EXE_journeyd-under-test");
    let mut units = Vec::new();
    for block in guide.split("```ini\n").skip(1) {
        let text = block.split("```").next().expect("block");
        let name = if text.starts_with("# journeyd-backup.service") {
            "journeyd-backup.service"
        } else if text.starts_with("# journeyd-backup.timer") {
            "journeyd-backup.timer"
        } else if text.contains("journeyd serve") {
            "journeyd.service"
        } else {
            continue;
        };
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("/usr/local/bin/journeyd", exe)).expect("unit");
        units.push(path);
    }
    assert_eq!(
        units.len(),
        3,
        "the service, the backup service and its timer"
    );
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
