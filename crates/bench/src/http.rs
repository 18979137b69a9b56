//! The HTTP load generator: durable ingest of single-event Mobile Journeys deliveries against
//! `journeyd serve`, beside an axum handler that only parses the JSON, both as separate
//! processes on this machine; then ack-to-visible latency, peak RSS and point queries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A keep-alive HTTP/1.1 connection: just enough client for a load generator.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Conn {
    fn open(addr: &str) -> anyhow::Result<Conn> {
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
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
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
fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    events::timestamp::format_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// One live event: the current time, one of 20 journeys per connection.
fn delivery(conn: usize, n: usize) -> String {
    let now = now_rfc3339();
    format!(
        r#"[{{"productId":"mobilejourneys","eventId":"sessioncreated","eventVersion":"1","eventTime":"{now}","data":{{"occurredAt":"{now}","journeyId":"2","correlationId":"c-{conn}-{}","customerReference":"AX-{conn}","sessionId":"{n}"}}}}]"#,
        n % 20
    )
}

/// Runs `connections` senders for `duration`; returns (requests, latencies in µs, errors).
fn load(
    addr: &str,
    connections: usize,
    duration: Duration,
    offset: usize,
) -> anyhow::Result<(u64, Vec<u32>, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for c in 0..connections {
        let (stop, errors, addr) = (Arc::clone(&stop), Arc::clone(&errors), addr.to_owned());
        handles.push(std::thread::spawn(move || -> Vec<u32> {
            let mut lat = Vec::new();
            let Ok(mut conn) = Conn::open(&addr) else {
                errors.fetch_add(1, Ordering::Relaxed);
                return lat;
            };
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = delivery(offset + c, n);
                n += 1;
                let t = Instant::now();
                match conn.call("POST", "/webhooks/mobile-journeys", body.as_bytes()) {
                    Ok((204, _)) => {
                        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        match Conn::open(&addr) {
                            Ok(c) => conn = c,
                            Err(_) => return lat,
                        }
                    }
                }
            }
            lat
        }));
    }
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| anyhow::anyhow!("a sender panicked"))?);
    }
    Ok((all.len() as u64, all, errors.load(Ordering::Relaxed)))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Starts a server process and reads its address from a `listening on http://ADDR` line.
fn spawn(mut cmd: Command) -> anyhow::Result<(Child, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

fn stop(mut child: Child) {
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

/// The parse-only baseline server (run as `bench baseline-server`).
pub(crate) fn baseline_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/webhooks/mobile-journeys",
            axum::routing::post(|body: axum::body::Bytes| async move {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(_) => axum::http::StatusCode::NO_CONTENT,
                    Err(_) => axum::http::StatusCode::ACCEPTED,
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}

pub(crate) fn run(dir: &Path, seconds: u64, journeyd: &Path) -> anyhow::Result<()> {
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
    for connections in [64usize, 256] {
        let (base, base_addr) = spawn({
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("baseline-server");
            c
        })?;
        let (bn, mut bl, be) = load(&base_addr, connections, duration, 0)?;
        stop(base);
        bl.sort_unstable();
        let base_rate = bn as f64 / duration.as_secs_f64();

        let db = dir.join(format!("serve-{connections}.db"));
        let (daemon, addr) = spawn({
            let mut c = Command::new(journeyd);
            c.args([
                "--db",
                db.to_str().context("path")?,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--queue",
                "4096",
            ])
            .env("JOURNEYD_LOG", "info");
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
        let (n, mut lat, errors) = load(&addr, connections, duration, 100_000)?;
        probing.store(false, Ordering::Relaxed);
        let _ = prober.join();
        lat.sort_unstable();
        let rate = n as f64 / duration.as_secs_f64();
        let rss = peak_rss_mib(daemon.id());
        let mut p = probes.lock().map(|p| p.clone()).unwrap_or_default();
        p.sort_by(f64::total_cmp);
        let visible_p99 = p
            .get(((p.len() as f64 - 1.0) * 0.99).round() as usize)
            .copied()
            .unwrap_or(f64::NAN);

        // Point queries on the same daemon, same connection count.
        let (qn, mut ql) = point_queries(&addr, connections.min(64), duration)?;
        ql.sort_unstable();
        stop(daemon);

        println!(
            "| parse-only axum handler (baseline) | {connections} | {base_rate:.0} | {:.2} | {:.2} | {be} | 1.00 |",
            percentile(&bl, 0.5),
            percentile(&bl, 0.99)
        );
        println!(
            "| `journeyd serve` (synchronous=FULL) | {connections} | {rate:.0} | {:.2} | {:.2} | {errors} | {:.2} |",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            rate / base_rate
        );
        rows.push((
            connections,
            visible_p99,
            p.len(),
            rss,
            qn as f64 / duration.as_secs_f64(),
            percentile(&ql, 0.99),
        ));
    }
    println!();
    println!(
        "| connections | ack-to-visible p99 ms (probes) | daemon peak RSS MiB | point queries/s (64 conns) | query p99 ms |"
    );
    println!("|---|---|---|---|---|");
    for (c, v, probes, rss, q, qp) in rows {
        println!(
            "| {c} | {v:.1} ({probes}) | {} | {q:.0} | {qp:.2} |",
            rss.map_or("?".into(), |r| r.to_string())
        );
    }
    Ok(())
}

fn point_queries(
    addr: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<(u64, Vec<u32>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for c in 0..connections {
        let (stop, addr) = (Arc::clone(&stop), addr.to_owned());
        handles.push(std::thread::spawn(move || -> Vec<u32> {
            let mut lat = Vec::new();
            let Ok(mut conn) = Conn::open(&addr) else {
                return lat;
            };
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/v1/journeys/c-{}-{}", 100_000 + (c + n) % 64, n % 20);
                n += 1;
                let t = Instant::now();
                match conn.call("GET", &path, b"") {
                    Ok((200 | 404, _)) => {
                        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
                    }
                    _ => return lat,
                }
            }
            lat
        }));
    }
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| anyhow::anyhow!("a reader panicked"))?);
    }
    Ok((all.len() as u64, all))
}
