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
//!
//! Stopping: once `drain` completes, the loop stops accepting, tells every connection to end
//! after its request in flight, and returns when all have ended.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// What one server allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Time for a request head to arrive, and for a connection to sit idle between requests.
    pub(crate) header_timeout: Duration,
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
            stream = accept(&listener) => stream,
            () = &mut drain => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut close = close_rx.clone();
        let connections = connections.clone();
        connections.inc();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
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
            connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    let _ = close_tx.send(true);
    // Every connection holds a permit until it ends.
    let _ = permits.acquire_many(max as u32).await;
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
