//! `journeyd import` and `journeyd quarantine replay`: bodies in, through the same parser and
//! writer the webhooks use.
//!
//! Parsing runs on this thread while the writer thread commits the previous chunk, so an import
//! keeps both cores busy; at most [`MAX_IN_FLIGHT`] chunks wait for the writer at a time, which
//! bounds memory whatever the size of the input.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context;
use events::{Source, parse_delivery, parse_delivery_detect};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use store::{Body, Options, Quarantined, Receipt, Store, Submission, Synchronous};

use crate::cli::ImportArgs;
use crate::output::{Output, counted};

/// Events per writer job: large enough to amortize a transaction, small enough to pipeline.
const CHUNK_EVENTS: usize = 2048;
/// Jobs queued for the writer before the reader waits.
const MAX_IN_FLIGHT: usize = 4;

/// What an import or replay did.
#[derive(Debug, Default, Serialize)]
struct Tally {
    bodies: u64,
    new: u64,
    duplicate: u64,
    quarantined: u64,
    /// Of the new events, those of no known shape: stored for good as kind `unknown`.
    unknown: u64,
}

impl Tally {
    /// Adds a chunk's receipts; `unknown` says, per submission and per event in order, which
    /// events are of kind `unknown`.
    fn add(&mut self, receipts: &[Receipt], unknown: &[Vec<bool>]) {
        for (r, flags) in receipts
            .iter()
            .zip(unknown.iter().chain(std::iter::repeat(&Vec::new())))
        {
            self.new += r.new_count() as u64;
            self.duplicate += r.duplicate_count() as u64;
            self.quarantined += u64::from(r.quarantine_id.is_some());
            self.unknown += r
                .events
                .iter()
                .zip(flags)
                .filter(|(a, unknown)| matches!(a, store::Appended::New(_)) && **unknown)
                .count() as u64;
        }
    }
}

/// Which events of a submission are of kind `unknown`, in order.
fn unknown_flags(s: &Submission) -> Vec<bool> {
    match &s.body {
        Body::Events(e) | Body::Replay { events: e, .. } => {
            e.iter().map(|e| e.kind == events::Kind::Unknown).collect()
        }
        Body::Quarantine(_) => Vec::new(),
    }
}

/// Sends chunks of submissions to the writer and collects the receipts.
struct Pipeline {
    writer: store::WriterHandle,
    chunk: Vec<Submission>,
    chunk_events: usize,
    in_flight: usize,
    tx: mpsc::Sender<store::Result<Vec<Receipt>>>,
    rx: mpsc::Receiver<store::Result<Vec<Receipt>>>,
    /// Per chunk in flight, in order, [`unknown_flags`] of each submission.
    kinds: std::collections::VecDeque<Vec<Vec<bool>>>,
    tally: Tally,
}

impl Pipeline {
    fn new(store: &Store) -> Pipeline {
        let (tx, rx) = mpsc::channel();
        Pipeline {
            writer: store.writer(),
            chunk: Vec::new(),
            chunk_events: 0,
            in_flight: 0,
            tx,
            rx,
            kinds: std::collections::VecDeque::new(),
            tally: Tally::default(),
        }
    }

    fn push(&mut self, s: Submission) -> anyhow::Result<()> {
        self.tally.bodies += 1;
        self.chunk_events += match &s.body {
            Body::Events(e) | Body::Replay { events: e, .. } => e.len().max(1),
            Body::Quarantine(_) => 1,
        };
        self.chunk.push(s);
        if self.chunk_events >= CHUNK_EVENTS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        while self.in_flight >= MAX_IN_FLIGHT {
            self.receive_one()?;
        }
        let tx = self.tx.clone();
        let chunk = std::mem::take(&mut self.chunk);
        self.kinds
            .push_back(chunk.iter().map(unknown_flags).collect());
        self.chunk_events = 0;
        self.writer.submit(chunk, move |r| {
            let _ = tx.send(r);
        })?;
        self.in_flight += 1;
        Ok(())
    }

    fn receive_one(&mut self) -> anyhow::Result<()> {
        let receipts = self.rx.recv().context("the writer stopped")??;
        self.in_flight -= 1;
        // The writer answers jobs in the order they were queued.
        let kinds = self.kinds.pop_front().unwrap_or_default();
        self.tally.add(&receipts, &kinds);
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<Tally> {
        self.flush()?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        Ok(self.tally)
    }
}

pub(crate) fn open_store(db: &Path, synchronous: Synchronous) -> anyhow::Result<Store> {
    Store::open(
        db,
        Options {
            synchronous,
            ..Options::default()
        },
    )
    .with_context(|| format!("cannot open the database {}", db.display()))
}

pub(crate) fn run(
    db: &Path,
    synchronous: Synchronous,
    config: &projector::Config,
    args: &ImportArgs,
    out: &Output,
) -> anyhow::Result<()> {
    if let Some(declared) = args.source {
        check_sources(&args.files, declared)?;
    }
    let store = open_store(db, synchronous)?;
    let progress = progress_bar(&args.files);
    let mut pipeline = Pipeline::new(&store);
    for file in &args.files {
        import_file(file, args.source, &mut pipeline, &progress)?;
    }
    let tally = pipeline.finish()?;
    progress.finish_and_clear();
    // When import returns, the snapshots are current (docs/contract.md section 8).
    let projected = if args.no_project {
        Ok(Default::default())
    } else {
        crate::project::catch_up(&store, config)
    };
    store.close();
    projected?;
    if out.json {
        return out.json(&tally);
    }
    out.text(format_args!(
        "imported {}: {} new {} ({} unknown), {}, {} quarantined",
        counted(tally.bodies, "body", "bodies"),
        tally.new,
        if tally.new == 1 { "event" } else { "events" },
        tally.unknown,
        counted(tally.duplicate, "duplicate", "duplicates"),
        counted(tally.quarantined, "body", "bodies"),
    ))
}

fn progress_bar(files: &[PathBuf]) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total: Option<u64> = files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                None
            } else {
                std::fs::metadata(f).ok().map(|m| m.len())
            }
        })
        .sum();
    match total {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// Reads each body of `file` (a `.json` file is one body; a `.ndjson` file or `-`, one per
/// line) and hands it to `each` with its request id (`import:FILE` or `import:FILE:LINE`).
fn bodies(
    file: &Path,
    progress: &ProgressBar,
    each: &mut dyn FnMut(Vec<u8>, String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = file.display().to_string();
    let stdin = file.as_os_str() == "-";
    let ndjson = stdin
        || file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ndjson"));
    let reader: Box<dyn Read> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        if file.is_dir() {
            anyhow::bail!("cannot import {name}: it is a directory");
        }
        Box::new(File::open(file).with_context(|| format!("cannot read {name}"))?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, progress.wrap_read(reader));
    if !ndjson {
        let mut body = Vec::new();
        reader
            .read_to_end(&mut body)
            .with_context(|| format!("cannot read {name}"))?;
        return each(body, format!("import:{name}"));
    }
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {name}"))?
            == 0
        {
            break;
        }
        // The line break ends the body; it is not part of it. Blank lines carry nothing.
        while let Some(b'\n' | b'\r') = line.last() {
            line.pop();
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        each(line.clone(), format!("import:{name}:{number}"))?;
    }
    Ok(())
}

fn import_file(
    file: &Path,
    source: Option<Source>,
    pipeline: &mut Pipeline,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let (mut count, mut quarantined, mut first_reason) = (0u64, 0u64, None);
    let stdin = file.as_os_str() == "-";
    bodies(file, progress, &mut |body, request_id| {
        // Files were checked before anything was written (`check_sources`); stdin only now.
        if let Some(declared) = source
            && stdin
        {
            mismatch(declared, &body, &request_id)?;
        }
        let (s, summary) = submission(source, body, request_id);
        count += 1;
        if let Some(summary) = summary {
            quarantined += 1;
            first_reason.get_or_insert(summary);
        }
        pipeline.push(s)
    })?;
    // A file that is no delivery at all (a README, an empty file) must not read as imported.
    let name = file.display();
    if count == 0 {
        eprintln!("warning: {name} holds no delivery: nothing of it was imported");
    } else if quarantined == count {
        eprintln!(
            "warning: {name} is not a delivery: {} quarantined, none stored as events ({})",
            counted(count, "body", "bodies"),
            first_reason.unwrap_or_default()
        );
    }
    Ok(())
}

/// Refuses a body that is plainly the other provider's: `--source` would store every event of
/// it as `unknown`, for good, where detection finds events of known kinds.
fn mismatch(declared: Source, body: &[u8], request_id: &str) -> anyhow::Result<()> {
    let Ok(as_declared) = parse_delivery(declared, body) else {
        return Ok(());
    };
    if as_declared.is_empty() || as_declared.iter().any(|e| e.kind != events::Kind::Unknown) {
        return Ok(());
    }
    let (detected, parsed) = parse_delivery_detect(body);
    let Ok(as_detected) = parsed else {
        return Ok(());
    };
    if detected == declared || as_detected.iter().all(|e| e.kind == events::Kind::Unknown) {
        return Ok(());
    }
    let at = request_id.strip_prefix("import:").unwrap_or(request_id);
    anyhow::bail!(
        "{at} is a {} delivery, not {}: with --source {} its events would be stored as unknown. Import it with --source {}, or without --source to detect each body's source",
        detected.as_str(),
        declared.as_str(),
        declared.as_str(),
        detected.as_str()
    )
}

/// With `--source`, every body of the files is checked against it before anything is written
/// ([`mismatch`]). Standard input cannot be read twice: its bodies are checked as they come,
/// and those already sent to the writer before a mismatch (whole chunks of them) are stored.
fn check_sources(files: &[PathBuf], declared: Source) -> anyhow::Result<()> {
    let hidden = ProgressBar::hidden();
    for file in files.iter().filter(|f| f.as_os_str() != "-") {
        bodies(file, &hidden, &mut |body, request_id| {
            mismatch(declared, &body, &request_id)
        })?;
    }
    Ok(())
}

/// Parses one body into what the writer stores: its events, or the body for quarantine with,
/// beside it, the reason's summary that quotes none of the body (for what is printed).
fn submission(
    source: Option<Source>,
    body: Vec<u8>,
    request_id: String,
) -> (Submission, Option<String>) {
    let (source, parsed) = match source {
        Some(s) => (s, parse_delivery(s, &body)),
        None => parse_delivery_detect(&body),
    };
    let size = body.len();
    let (body, summary) = match parsed {
        Ok(events) => (Body::Events(events), None),
        Err(rejection) => (
            Body::Quarantine(Quarantined {
                reason: rejection.to_string(),
                headers: "{}".into(),
                bytes: body,
            }),
            Some(rejection.summary()),
        ),
    };
    let submission = Submission {
        source,
        received_at: crate::now_millis(),
        request_id: Some(request_id),
        size,
        body,
    };
    (submission, summary)
}

pub(crate) fn replay(
    db: &Path,
    synchronous: Synchronous,
    config: &projector::Config,
    out: &Output,
) -> anyhow::Result<()> {
    let store = open_store(db, synchronous)?;
    let reader = store.reader()?;
    let mut pipeline = Pipeline::new(&store);
    let mut still = 0u64;
    let mut after = 0;
    loop {
        let page = reader.quarantined_bodies(after, 256)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for q in page {
            let Ok(source) = q.source.parse::<Source>() else {
                tracing::warn!(id = q.id, source = %q.source, "quarantined body of an unknown source left in place");
                still += 1;
                continue;
            };
            match parse_delivery(source, &q.body) {
                Ok(events) => pipeline.push(Submission {
                    source,
                    received_at: q.received_at,
                    request_id: Some(format!("replay:{}", q.id)),
                    size: q.body.len(),
                    body: Body::Replay {
                        quarantine_id: q.id,
                        events,
                    },
                })?,
                Err(_) => still += 1,
            }
        }
    }
    let tally = pipeline.finish()?;
    let projected = crate::project::catch_up(&store, config);
    store.close();
    projected?;
    if out.json {
        #[derive(Serialize)]
        struct Replay {
            moved: u64,
            new: u64,
            unknown: u64,
            duplicate: u64,
            still_quarantined: u64,
        }
        return out.json(&Replay {
            moved: tally.bodies,
            new: tally.new,
            unknown: tally.unknown,
            duplicate: tally.duplicate,
            still_quarantined: still,
        });
    }
    out.text(format_args!(
        "replayed {}: {} moved to the log ({} new {} ({} unknown), {}), {} still quarantined",
        counted(
            tally.bodies + still,
            "quarantined body",
            "quarantined bodies"
        ),
        tally.bodies,
        tally.new,
        if tally.new == 1 { "event" } else { "events" },
        tally.unknown,
        counted(tally.duplicate, "duplicate", "duplicates"),
        still,
    ))
}

/// `quarantine discard ID --note TEXT`: moves the body out of the quarantine, whole, with when
/// and why, into `quarantine_discarded`.
pub(crate) fn discard(
    db: &Path,
    synchronous: Synchronous,
    id: i64,
    note: &str,
    out: &Output,
) -> anyhow::Result<()> {
    if !db.exists() {
        anyhow::bail!("no journeyd database at {}", db.display());
    }
    let store = open_store(db, synchronous)?;
    let found = store.writer().discard(id, crate::now_millis(), note);
    store.close();
    if !found? {
        anyhow::bail!("no quarantined body {id} (see journeyd quarantine list)");
    }
    if out.json {
        return out.json(&serde_json::json!({"discarded": id}));
    }
    out.text(format_args!(
        "discarded quarantined body {id}: kept whole, with your note, in the quarantine_discarded table"
    ))
}
