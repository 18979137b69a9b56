//! The HTTP load generator: durable ingest of single-event Mobile Journeys deliveries against
//! `journeyd serve`, beside an axum handler that only parses the JSON, both as separate
//! processes on this machine; then ack-to-visible latency, peak RSS and point queries.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cpu;

/// A keep-alive HTTP/1.1 connection: just enough client for a load generator.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Conn {
    pub(crate) fn open(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            host: addr.to_owned(),
        })
    }

    /// Sends a request and returns (status, body).
    pub(crate) fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16)?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        } else {
            out.resize(length, 0);
            self.reader.read_exact(&mut out)?;
        }
        Ok((status, out))
    }
}

/// Now as RFC 3339 with milliseconds: what a provider stamps on a live event.
pub(crate) fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    events::timestamp::format_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Journeys each connection has open at once.
const OPEN_JOURNEYS: usize = 20;
/// The events of one journey, in the order a connection sends them: a link, a session, three
/// stages, a payment, a document, and the completing stage. Each is
/// (`eventId`, the `data` fields after the common ones).
const LIFECYCLE: [(&str, &str); 8] = [
    (
        "linkcreated",
        r#""url":"https://examplelink.com/abc","parameters":{"name":"John Smith","amount":"12.00"}"#,
    ),
    ("sessioncreated", r#""sessionId":"S1""#),
    ("stage", r#""sessionId":"S1","stageName":"identity""#),
    ("stage", r#""sessionId":"S1","stageName":"details""#),
    (
        "paymentattempt",
        r#""sessionId":"S1","paymentDetail":{"transactionId":"T1","transactionTime":"2026-11-22T10:00:00Z","authorised":"true","amount":5.56,"currency":"GBP","cardNumber":"001","authorisationCode":"test/4321","cardType":"DEBIT","cardholderName":"John Smith"}"#,
    ),
    (
        "documentgenerated",
        r#""sessionId":"S1","templateId":"cf80f9b3","documentId":"D1","documentCategory":"Invoice-Type1""#,
    ),
    ("stage", r#""sessionId":"S1","stageName":"review""#),
    (
        "stage",
        r#""sessionId":"S1","stageName":"journeyEnd","generatedDocumentIds":["D1"],"downloadedDocumentIds":["D1"],"uploadedDocumentIds":[],"transactionIds":["T1"]"#,
    ),
];

/// The correlation id of a connection's `generation`th journey in slot `slot`: UUID-shaped
/// and spread over the key space, as providers' ids are.
pub(crate) fn correlation_id(conn: usize, slot: usize, generation: usize) -> String {
    // splitmix64: a cheap, well-mixed bijection.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let seed = ((conn as u64) << 40) ^ ((slot as u64) << 32) ^ generation as u64;
    let (a, b) = (mix(seed), mix(seed ^ 0x9e37_79b9_7f4a_7c15));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Connection `conn`'s `n`th live event (the current time). Each connection keeps
/// [`OPEN_JOURNEYS`] journeys open and sends them events in turn; a journey that has had its
/// [`LIFECYCLE`] is replaced by a new one. So states stay the size of real journeys, new keys
/// keep arriving, and statuses move through created, opened, paid and completed.
fn delivery(conn: usize, n: usize) -> String {
    delivery_at(conn, n, &now_rfc3339())
}

/// As [`delivery`], stamped `now` (an RFC 3339 time) instead of the current time.
pub(crate) fn delivery_at(conn: usize, n: usize, now: &str) -> String {
    let (slot, round) = (n % OPEN_JOURNEYS, n / OPEN_JOURNEYS);
    let (event_id, fields) = LIFECYCLE[round % LIFECYCLE.len()];
    let id = correlation_id(conn, slot, round / LIFECYCLE.len());
    format!(
        r#"[{{"productId":"mobilejourneys","eventId":"{event_id}","eventVersion":"1","eventTime":"{now}","data":{{"occurredAt":"{now}","journeyId":"2","correlationId":"{id}","customerReference":"AX-{conn}-{slot}",{fields}}}}}]"#
    )
}

/// A keep-alive HTTP/1.1 connection on tokio: the senders' client. One event loop drives
/// every connection, so the load generator's own cost per request stays a few microseconds
/// (a thread per connection spent more CPU on context switches than the server under test).
struct AsyncConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    request: Vec<u8>,
}

impl AsyncConn {
    async fn open(addr: &str) -> anyhow::Result<AsyncConn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(AsyncConn {
            stream,
            buf: Vec::with_capacity(4096),
            request: Vec::with_capacity(1024),
        })
    }

    /// Sends one request and returns its status once the whole response is read.
    async fn call(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<u16> {
        use tokio::io::AsyncWriteExt;
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await?;
        loop {
            if let Some((status, head, length)) = parse_head(&self.buf)? {
                while self.buf.len() < head + length {
                    self.read_more().await?;
                }
                self.buf.drain(..head + length);
                return Ok(status);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        let n = self.stream.read_buf(&mut self.buf).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        Ok(())
    }
}

/// A response head in `buf`: (status, head length, content length), or None if incomplete.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(u16, usize, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let mut length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            anyhow::bail!("chunked responses are not supported by the load generator");
        }
    }
    Ok(Some((status, end + 4, length)))
}

/// What a load run measured: completed requests, their latencies in µs, and errors.
pub(crate) struct Load {
    pub(crate) requests: u64,
    pub(crate) latencies: Vec<u32>,
    pub(crate) errors: u64,
    /// The load generator's own CPU (the one thread it runs on).
    cpu: cpu::Times,
}

/// Runs `connections` clients on one tokio thread for `duration`. `request(c, n)` gives the
/// method, path and body of connection `c`'s `n`th request; `ok` says which statuses count.
pub(crate) fn load(
    addr: &str,
    connections: usize,
    duration: Duration,
    request: impl Fn(usize, usize) -> (&'static str, String, String) + Send + Sync + 'static,
    ok: fn(u16) -> bool,
) -> anyhow::Result<Load> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let request = Arc::new(request);
    let cpu_before = cpu::this_thread();
    let mut out = runtime.block_on(async move {
        let deadline = tokio::time::Instant::now() + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let (addr, request) = (addr.to_owned(), Arc::clone(&request));
            tasks.spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut conn = None;
                let mut n = 0;
                while tokio::time::Instant::now() < deadline {
                    let current = match conn.as_mut() {
                        Some(c) => c,
                        None => match AsyncConn::open(&addr).await {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                errors += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let (method, path, body) = request(c, n);
                    n += 1;
                    let t = Instant::now();
                    match current.call(method, &path, body.as_bytes()).await {
                        Ok(status) if ok(status) => {
                            lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
                        }
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (lat, errors)
            });
        }
        let mut out = Load {
            requests: 0,
            latencies: Vec::new(),
            errors: 0,
            cpu: cpu::Times::default(),
        };
        while let Some(done) = tasks.join_next().await {
            let (lat, errors) = done.map_err(|_| anyhow::anyhow!("a sender panicked"))?;
            out.latencies.extend(lat);
            out.errors += errors;
        }
        out.requests = out.latencies.len() as u64;
        out.latencies.sort_unstable();
        anyhow::Ok(out)
    })?;
    out.cpu = cpu::this_thread().since(cpu_before);
    Ok(out)
}

/// A load and the CPU the server and the machine spent on it.
struct Measured {
    load: Load,
    /// The server's threads, by name.
    server: BTreeMap<String, cpu::Times>,
    /// The machine's busy share over the load.
    busy: f64,
}

/// Runs `load` against the server process `pid`, sampling the CPU on both sides of it.
fn measured(pid: u32, load: impl FnOnce() -> anyhow::Result<Load>) -> anyhow::Result<Measured> {
    let (server, machine) = (cpu::Process::sample(pid), cpu::machine());
    let load = load()?;
    let busy = cpu::busy_share(machine, cpu::machine());
    Ok(Measured {
        load,
        server: cpu::Process::sample(pid).since(&server),
        busy,
    })
}

/// Connection `offset + c`'s `n`th webhook delivery.
fn webhook(offset: usize) -> impl Fn(usize, usize) -> (&'static str, String, String) {
    move |c, n| {
        (
            "POST",
            "/webhooks/mobile-journeys".to_owned(),
            delivery(offset + c, n),
        )
    }
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// `journeyd --db DB serve --listen 127.0.0.1:0`, for more arguments to follow.
pub(crate) fn serve_command(journeyd: &Path, db: &Path) -> anyhow::Result<Command> {
    let mut c = Command::new(journeyd);
    c.args([
        "--db",
        db.to_str().context("path")?,
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    Ok(c)
}

/// Starts a server process and reads its address from a `listening on http://ADDR` line.
pub(crate) fn spawn(mut cmd: Command) -> anyhow::Result<(Child, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let echo = std::env::var_os("BENCH_SERVER_STDERR").is_some();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("{line}");
            }
            if let Some(i) = line.find("listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(
                    line[i + "listening on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not start")?;
    Ok((child, addr))
}

fn peak_rss_mib(pid: u32) -> Option<u64> {
    status_mib(pid, "VmHWM:")
}

/// A memory figure of process `pid` from `/proc/PID/status` (`VmHWM:` the peak resident set,
/// `VmRSS:` the current one), in MiB.
pub(crate) fn status_mib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

pub(crate) fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Ack-to-visible: post a new journey, then read it back until it is there.
fn probe(addr: &str, n: usize) -> anyhow::Result<f64> {
    let mut conn = Conn::open(addr)?;
    let id = format!("probe-{n}");
    let body = format!(
        r#"[{{"productId":"mobilejourneys","eventId":"sessioncreated","data":{{"occurredAt":"2021-06-11T12:01:35Z","correlationId":"{id}","sessionId":"1"}}}}]"#
    );
    let (status, _) = conn.call("POST", "/webhooks/mobile-journeys", body.as_bytes())?;
    anyhow::ensure!(status == 204, "probe got {status}");
    let acked = Instant::now();
    loop {
        let (status, _) = conn.call("GET", &format!("/v1/journeys/{id}"), b"")?;
        if status == 200 {
            return Ok(acked.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(
            acked.elapsed() < Duration::from_secs(10),
            "probe {id} never became visible"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// The daemon's own ack-to-projected histogram (`journeyd_ack_to_projected_seconds`): the upper
/// bounds in ms of the buckets holding its median and its 99th percentile, and its count. Unlike
/// the probes, it counts every commit, and it leaves out the reader's own request.
fn daemon_ack_to_projected(addr: &str) -> anyhow::Result<(f64, f64, u64)> {
    let (status, body) = Conn::open(addr)?.call("GET", "/metrics", b"")?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    let text = String::from_utf8(body)?;
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut count = 0u64;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("journeyd_ack_to_projected_seconds_bucket{le=\"") {
            let (le, n) = rest.split_once("\"} ").context("bucket line")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            buckets.push((le, n.trim().parse()?));
        } else if let Some(n) = line.strip_prefix("journeyd_ack_to_projected_seconds_count ") {
            count = n.trim().parse()?;
        }
    }
    let bound = |q: f64| {
        if count == 0 {
            return f64::NAN;
        }
        let want = (q * count as f64).ceil() as u64;
        buckets
            .iter()
            .find(|(_, n)| *n >= want)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    };
    Ok((bound(0.5), bound(0.99), count))
}

/// A body waiting for the durable floor's writer, and where to say it is stored.
type Pending = (Vec<u8>, tokio::sync::oneshot::Sender<()>);

/// The durable floor's writer: one connection, one table with no index, group commit with
/// `synchronous=FULL`. The least any server that acknowledges only durable bodies can do.
fn floor_writer(path: &Path) -> anyhow::Result<std::sync::mpsc::SyncSender<Pending>> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE log (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(4096);
    std::thread::spawn(move || -> anyhow::Result<()> {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < 1024 {
                match rx.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
            let t = conn.transaction()?;
            {
                let mut insert = t.prepare_cached("INSERT INTO log (body) VALUES (?1)")?;
                for (body, _) in &group {
                    insert.execute([body])?;
                }
            }
            t.commit()?;
            for (_, done) in group {
                let _ = done.send(());
            }
        }
        Ok(())
    });
    Ok(tx)
}

/// The baseline servers (run as `bench baseline-server`): parse the JSON and answer 204; with
/// `durable`, also append the body to a SQLite log (group commit, fsync) before answering.
pub(crate) fn baseline_server(durable: Option<&Path>) -> anyhow::Result<()> {
    let writer = durable.map(floor_writer).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // What `GET /v1/journeys/{id}` returns for a journey that had the load's LIFECYCLE, for
        // the GET ceiling.
        let document =
            axum::body::Bytes::from_static(include_bytes!("../data/completed-journey.json"));
        let app = axum::Router::new()
            .route(
                "/v1/journeys/{id}",
                axum::routing::get(move || async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        document,
                    )
                }),
            )
            .route(
                "/webhooks/mobile-journeys",
                axum::routing::post(move |body: axum::body::Bytes| async move {
                    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                        return axum::http::StatusCode::ACCEPTED;
                    }
                    let Some(writer) = writer else {
                        return axum::http::StatusCode::NO_CONTENT;
                    };
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    if writer.try_send((body.to_vec(), tx)).is_err() {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    match rx.await {
                        Ok(()) => axum::http::StatusCode::NO_CONTENT,
                        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}

pub(crate) fn run(
    dir: &Path,
    seconds: u64,
    journeyd: &Path,
    connection_counts: &[usize],
) -> anyhow::Result<()> {
    let duration = Duration::from_secs(seconds);
    anyhow::ensure!(
        journeyd.exists(),
        "{} not found: run `cargo build --release -p journeyd -p bench` first",
        journeyd.display()
    );
    println!(
        "durable ingest of single-event Mobile Journeys deliveries, {seconds}s per row, load generator on the same machine"
    );
    println!();
    println!("| server | connections | events/s | p50 ms | p99 ms | errors | ratio to baseline |");
    println!("|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for &connections in connection_counts {
        let (base, base_addr) = spawn({
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("baseline-server");
            c
        })?;
        let base_load = measured(base.id(), || {
            load(&base_addr, connections, duration, webhook(0), |s| s == 204)
        })?;
        let get_ceiling = load(&base_addr, 64, duration, point_query, |s| s == 200)?;
        stop(base);
        let base_rate = base_load.load.requests as f64 / duration.as_secs_f64();

        let (floor, floor_addr) = spawn({
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("baseline-server")
                .arg("--durable")
                .arg(dir.join(format!("floor-{connections}.db")));
            c
        })?;
        let floor_load = measured(floor.id(), || {
            load(&floor_addr, connections, duration, webhook(0), |s| s == 204)
        })?;
        stop(floor);

        let db = dir.join(format!("serve-{connections}.db"));
        let (daemon, addr) = spawn({
            let mut c = serve_command(journeyd, &db)?;
            c.args(["--queue", "4096"]).env("JOURNEYD_LOG", "info");
            c
        })?;
        // Ack-to-visible under load: probes from a separate connection while the senders run.
        let probes: Arc<Mutex<Vec<f64>>> = Arc::default();
        let probing = Arc::new(AtomicBool::new(true));
        let prober = {
            let (probes, probing, addr) = (Arc::clone(&probes), Arc::clone(&probing), addr.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while probing.load(Ordering::Relaxed) {
                    if let Ok(ms) = probe(&addr, n)
                        && let Ok(mut p) = probes.lock()
                    {
                        p.push(ms);
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let ingest = measured(daemon.id(), || {
            load(&addr, connections, duration, webhook(100_000), |s| s == 204)
        })?;
        probing.store(false, Ordering::Relaxed);
        let _ = prober.join();
        let rss = peak_rss_mib(daemon.id());
        let projected = daemon_ack_to_projected(&addr).unwrap_or_else(|e| {
            eprintln!("could not read the daemon's ack-to-projected histogram: {e:#}");
            (f64::NAN, f64::NAN, 0)
        });
        let mut p = probes.lock().map(|p| p.clone()).unwrap_or_default();
        p.sort_by(f64::total_cmp);
        let visible_p99 = p
            .get(((p.len() as f64 - 1.0) * 0.99).round() as usize)
            .copied()
            .unwrap_or(f64::NAN);

        // Point queries on the same daemon, same connection count.
        let queries = load(&addr, 64, duration, point_query, |s| s == 200 || s == 404)?;
        stop(daemon);

        let row = |server: &str, load: &Measured| {
            let load = &load.load;
            let rate = load.requests as f64 / duration.as_secs_f64();
            println!(
                "| {server} | {connections} | {rate:.0} | {:.2} | {:.2} | {} | {:.2} |",
                percentile(&load.latencies, 0.5),
                percentile(&load.latencies, 0.99),
                load.errors,
                rate / base_rate
            );
        };
        row("parse-only axum handler (baseline)", &base_load);
        row(
            "durable floor: parse, one unindexed row, group commit with fsync",
            &floor_load,
        );
        row("`journeyd serve` (synchronous=FULL)", &ingest);
        cpu_rows.push((connections, [base_load, floor_load, ingest]));
        rows.push((
            connections,
            visible_p99,
            p.len(),
            projected,
            rss,
            queries.requests as f64 / duration.as_secs_f64(),
            percentile(&queries.latencies, 0.99),
            get_ceiling.requests as f64 / duration.as_secs_f64(),
        ));
    }
    println!();
    println!(
        "| connections | ack-to-visible p99 ms (probes) | daemon ack-to-projected p50 / p99 ms, bucket bounds (commits) | daemon peak RSS MiB | point queries/s (64 conns) | query p99 ms | GET ceiling/s (fixed document, 64 conns) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (c, v, probes, (p50, p99, commits), rss, q, qp, ceiling) in rows {
        println!(
            "| {c} | {v:.1} ({probes}) | {p50} / {p99} ({commits}) | {} | {q:.0} | {qp:.2} | {ceiling:.0} | {:.2} |",
            rss.map_or("?".into(), |r| r.to_string()),
            q / ceiling
        );
    }
    print_cpu(&cpu_rows, duration);
    Ok(())
}

/// Where each ingest run's CPU went: per event stored, the server's and the load generator's,
/// and what that allows when every core of the machine does nothing else; then the daemon's
/// threads.
fn print_cpu(runs: &[(usize, [Measured; 3])], duration: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "CPU per event stored, µs (on-CPU time from /proc/PID/task/*/schedstat over each load)"
    );
    println!();
    println!(
        "| server | connections | server | load generator | both | machine busy | events/s if {cores} cores did only this |"
    );
    println!("|---|---|---|---|---|---|---|");
    let names = ["baseline", "durable floor", "`journeyd serve`"];
    for (connections, measured) in runs {
        for (name, m) in names.iter().zip(measured) {
            let events = m.load.requests;
            let server: u64 = m.server.values().map(|t| t.on_cpu).sum();
            let per = |t| cpu::micros_per(t, events);
            let both = per(server) + per(m.load.cpu.on_cpu);
            println!(
                "| {name} | {connections} | {:.1} | {:.1} | {both:.1} | {:.0}% | {:.0} |",
                per(server),
                per(m.load.cpu.on_cpu),
                m.busy * 100.0,
                cores as f64 * 1e6 / both
            );
        }
    }
    println!();
    println!(
        "| connections | `journeyd serve` thread | µs per event | on a CPU, % of the run | waiting for a CPU, % of the run |"
    );
    println!("|---|---|---|---|---|");
    for (connections, [.., daemon]) in runs {
        for (thread, t) in &daemon.server {
            if t.on_cpu == 0 {
                continue;
            }
            println!(
                "| {connections} | {thread} | {:.1} | {:.0}% | {:.0}% |",
                cpu::micros_per(t.on_cpu, daemon.load.requests),
                cpu::percent_of(t.on_cpu, duration),
                cpu::percent_of(t.waiting, duration)
            );
        }
        let lg = &daemon.load.cpu;
        println!(
            "| {connections} | (load generator) | {:.1} | {:.0}% | {:.0}% |",
            cpu::micros_per(lg.on_cpu, daemon.load.requests),
            cpu::percent_of(lg.on_cpu, duration),
            cpu::percent_of(lg.waiting, duration)
        );
    }
}

/// Connection `c`'s `n`th point query: one of the first journeys the ingest run wrote.
fn point_query(c: usize, n: usize) -> (&'static str, String, String) {
    (
        "GET",
        format!(
            "/v1/journeys/{}",
            correlation_id(100_000 + (c + n) % 64, n % OPEN_JOURNEYS, 0)
        ),
        String::new(),
    )
}
