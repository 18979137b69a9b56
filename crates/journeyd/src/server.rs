//! The HTTP server loop: the router on hyper's HTTP/1 connections, with the limits a daemon
//! facing the internet needs and `axum::serve` has no setting for (decision 0016):
//!
//! - at most [`Limits::max_connections`] connections at once. Past it, the loop stops
//!   accepting; new connections wait in the kernel's backlog until one closes. So memory stays
//!   bounded by connections × body limit, whatever clients do;
//! - a request's head must arrive within [`Limits::header_timeout`], and a connection kept
//!   alive between requests is closed once it has been idle that long: hyper's header read
//!   timeout, which starts whenever a connection waits for a request head. (Bodies have their
//!   own deadline, in the webhook routes.)
//! - a response that makes no progress for [`Limits::write_timeout`], because the client reads
//!   nothing, ends its connection ([`Stalled`]): a client that stops reading, a stream
//!   subscriber included, cannot keep its place.
//!
//! Stopping: once `drain` completes, the loop stops accepting, tells every connection to end
//! after its request in flight, and returns when all have ended.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use std::io;
use std::task::{Context, Poll};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// What one server allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Time for a request head to arrive, and for a connection to sit idle between requests.
    pub(crate) header_timeout: Duration,
    /// Time a response may wait for the client to take any of it.
    pub(crate) write_timeout: Duration,
}

/// The HTTP runtime's blocking threads (tokio's default is 512): scanning reads and large
/// bodies' parsing. Each read on one holds a read connection.
pub(crate) const BLOCKING_THREADS: usize = 64;

/// File descriptors the daemon needs besides its connections: the database, its WAL and
/// shared memory for the writer, the projector and every read connection (two each: one per
/// blocking thread, the HTTP workers' and the idle pool's), the listener, the lock, stdio.
const OTHER_FILES: u64 = 2 * (BLOCKING_THREADS as u64 + 32) + 64;

/// `max_connections`, lowered if the process's open-file limit could not hold that many
/// connections beside [`OTHER_FILES`], with a warning: past the limit, `accept` fails and
/// reads cannot open connections. Linux only (`/proc/self/limits`); elsewhere as given.
pub(crate) fn connections_within_file_limit(max_connections: usize) -> usize {
    let Some(soft) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(open_files_limit)
    else {
        return max_connections;
    };
    let room = usize::try_from(soft.saturating_sub(OTHER_FILES)).unwrap_or(usize::MAX);
    if max_connections <= room {
        return max_connections;
    }
    let lowered = room.max(1);
    tracing::warn!(
        open_files = soft,
        max_connections,
        lowered,
        "the open-file limit cannot hold --max-connections; using fewer (raise it: LimitNOFILE= in systemd, ulimit -n)"
    );
    lowered
}

/// The soft limit of `Max open files` in the text of `/proc/self/limits`.
fn open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `app` on `listener` until `drain` completes and every connection has ended.
/// `connections` follows the number open.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    connections: Gauge,
    drain: impl Future<Output = ()>,
) {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let (close_tx, close_rx) = watch::channel(false);
    let mut drain = pin!(drain);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // closed: cannot happen, the semaphore lives here
            },
            () = &mut drain => break,
        };
        let stream = tokio::select! {
            biased; // a stop wins over a connection waiting to be accepted
            () = &mut drain => break,
            stream = accept(&listener) => stream,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut close = close_rx.clone();
        let open = Open::new(&connections);
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let io = TokioIo::new(Stalled::new(stream, limits.write_timeout));
            let mut conn = pin!(builder.serve_connection(io, service));
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = async { let _ = close.wait_for(|close| *close).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((open, permit));
        });
    }
    drop(listener);
    let _ = close_tx.send(true);
    // Every connection holds a permit until it ends.
    let _ = permits.acquire_many(max as u32).await;
}

/// One open connection in the gauge, for as long as it lives, a panic in its task included.
struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The next connection. Errors that concern one connection (it was reset before it was
/// accepted) are skipped; others (out of file descriptors) are logged and retried after a
/// second, as the listener cannot do better.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot accept connections; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// A connection whose writes fail with `TimedOut` once one has waited `timeout` for the socket
/// to take anything: the client stopped reading. Reads pass through.
struct Stalled<S> {
    io: S,
    timeout: Duration,
    /// Running while a write or flush waits.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Stalled<S> {
    fn new(io: S, timeout: Duration) -> Self {
        Stalled {
            io,
            timeout,
            waiting: None,
        }
    }

    /// `polled` is what the socket answered; a pending one starts (or goes on with) the wait.
    fn limit<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalled<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.limit(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.limit(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.limit(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_from_proc_self_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95813                95813                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(text), Some(1024));
        assert_eq!(
            open_files_limit("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(open_files_limit(""), None);
    }
}
