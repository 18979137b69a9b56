//! The daemon's Prometheus metrics (`GET /metrics`). What each one means is in
//! `docs/operations.md`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use store::CommitInfo;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: String,
}

/// Every metric, and the registry that prints them.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) ingest: ingest::IngestMetrics,
    requests: Family<RouteLabels, Counter>,
    commit_events: Histogram,
    commit_seconds: Histogram,
    derived_commit_seconds: Histogram,
    wal_pages: Gauge,
    wal_resets_done: Counter,
    wal_resets_busy: Counter,
    wal_reset_seconds: Histogram,
    lag: Gauge,
    checkpoint: Gauge,
    cache_keys: Family<ProjectionLabels, Gauge>,
    cache_bytes: Family<ProjectionLabels, Gauge>,
    ack_to_projected: Histogram,
    /// The two series of `journeyd_read_cache_reads`, made once: a point read counts without
    /// a label lookup.
    read_cache_hits: Counter,
    read_cache_misses: Counter,
    read_throughs: Counter,
    read_cache_keys: Gauge,
    unprojected_keys: Gauge,
    /// Handed to [`crate::unprojected::Unprojected`], which counts what it drops.
    pub(crate) unprojected_dropped: Counter,
    read_cache_bytes: Gauge,
    /// Open HTTP connections, kept by [`crate::server::serve`].
    pub(crate) connections: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let ingest = ingest::IngestMetrics::default();
        ingest.register(&mut registry);
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "journeyd_http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let commit_events = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        registry.register(
            "journeyd_commit_events",
            "Events newly appended per writer commit (group commit size)",
            commit_events.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "journeyd_commit_seconds",
            "Time of writer transactions that append (webhooks, imports), BEGIN to COMMIT, fsync included under synchronous=full",
            commit_seconds.clone(),
        );
        let derived_commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "journeyd_derived_commit_seconds",
            "Time of writer transactions that append nothing (projector batches, rebuilds), BEGIN to COMMIT, without fsync",
            derived_commit_seconds.clone(),
        );
        let wal_pages = Gauge::default();
        registry.register(
            "journeyd_wal_pages",
            "Pages (4 KiB) in the SQLite write-ahead log after the writer's last commit",
            wal_pages.clone(),
        );
        let wal_resets = Family::<ResultLabels, Counter>::default();
        registry.register(
            "journeyd_wal_resets",
            "The writer's attempts to start the WAL over once it passed its bound, by result: done, or busy (a reader held an older snapshot past the wait)",
            wal_resets.clone(),
        );
        let wal_resets_done = wal_resets
            .get_or_create(&ResultLabels { result: "done" })
            .clone();
        let wal_resets_busy = wal_resets
            .get_or_create(&ResultLabels { result: "busy" })
            .clone();
        let wal_reset_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "journeyd_wal_reset_seconds",
            "How long each of those attempts held the writer up, between two groups",
            wal_reset_seconds.clone(),
        );
        let lag = Gauge::default();
        registry.register(
            "journeyd_projector_lag_events",
            "Log head minus the projector's checkpoint",
            lag.clone(),
        );
        let checkpoint = Gauge::default();
        registry.register(
            "journeyd_projector_checkpoint",
            "The lowest projection checkpoint (seq)",
            checkpoint.clone(),
        );
        let cache_keys = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "journeyd_projector_cache_keys",
            "Folds the projector keeps in memory between batches, by projection",
            cache_keys.clone(),
        );
        let cache_bytes = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "journeyd_projector_cache_bytes",
            "Estimated memory of those folds, by projection (each bounded by --projector-cache-mib)",
            cache_bytes.clone(),
        );
        let ack_to_projected = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "journeyd_ack_to_projected_seconds",
            "From a commit (the webhook's acknowledgement) to the snapshots including it",
            ack_to_projected.clone(),
        );
        let read_cache_reads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "journeyd_read_cache_reads",
            "Point reads of snapshots (GET /v1/journeys/{id} and the like), by result: hit (served from the read cache), miss (read from SQLite), or read_through (the key had acknowledged events the projector had not folded yet: its events were folded from the log for the answer)",
            read_cache_reads.clone(),
        );
        let read_cache_hits = read_cache_reads
            .get_or_create(&ResultLabels { result: "hit" })
            .clone();
        let read_cache_misses = read_cache_reads
            .get_or_create(&ResultLabels { result: "miss" })
            .clone();
        let read_throughs = read_cache_reads
            .get_or_create(&ResultLabels {
                result: "read_through",
            })
            .clone();
        let unprojected_keys = Gauge::default();
        registry.register(
            "journeyd_unprojected_keys",
            "Keys with acknowledged events the projector has not folded yet: point reads of them fold the log",
            unprojected_keys.clone(),
        );
        let unprojected_dropped = Counter::default();
        registry.register(
            "journeyd_unprojected_dropped",
            "Notes of new unprojected keys dropped because the bound was reached: point reads of those keys wait for the projector, unless it is failing or stopped",
            unprojected_dropped.clone(),
        );
        let read_cache_keys = Gauge::default();
        registry.register(
            "journeyd_read_cache_keys",
            "Rendered snapshot documents in the read cache",
            read_cache_keys.clone(),
        );
        let read_cache_bytes = Gauge::default();
        registry.register(
            "journeyd_read_cache_bytes",
            "Their estimated memory (bounded by --read-cache-mib)",
            read_cache_bytes.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "journeyd_http_connections",
            "HTTP connections open (bounded by --max-connections)",
            connections.clone(),
        );
        Arc::new(Metrics {
            registry,
            ingest,
            requests,
            commit_events,
            commit_seconds,
            derived_commit_seconds,
            wal_pages,
            wal_resets_done,
            wal_resets_busy,
            wal_reset_seconds,
            lag,
            checkpoint,
            cache_keys,
            cache_bytes,
            ack_to_projected,
            read_cache_hits,
            read_cache_misses,
            read_throughs,
            read_cache_keys,
            unprojected_keys,
            unprojected_dropped,
            read_cache_bytes,
            connections,
        })
    }

    /// The Prometheus/OpenMetrics text.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics failed to encode");
        }
        out
    }

    pub(crate) fn commit(&self, c: &CommitInfo) {
        if c.events_new > 0 {
            self.commit_events.observe(c.events_new as f64);
        }
        // A group that appended (fsynced under synchronous=full); the others only wrote what
        // the log derives, with synchronous=NORMAL (decision 0007).
        let histogram = if c.appends > 0 {
            &self.commit_seconds
        } else {
            &self.derived_commit_seconds
        };
        histogram.observe(c.duration.as_secs_f64());
        self.wal_pages
            .set(i64::try_from(c.wal_pages).unwrap_or(i64::MAX));
    }

    pub(crate) fn wal_reset(&self, r: &store::WalReset) {
        if r.done {
            self.wal_resets_done.inc();
        } else {
            self.wal_resets_busy.inc();
        }
        self.wal_reset_seconds.observe(r.duration.as_secs_f64());
    }

    pub(crate) fn projector(
        &self,
        checkpoint: i64,
        lag: i64,
        caches: &[(store::Projection, projector::CacheUsage)],
    ) {
        self.checkpoint.set(checkpoint);
        self.lag.set(lag);
        for (projection, usage) in caches {
            let labels = ProjectionLabels {
                projection: projection.name(),
            };
            let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.cache_keys
                .get_or_create(&labels)
                .set(gauge(usage.keys));
            self.cache_bytes
                .get_or_create(&labels)
                .set(gauge(usage.bytes));
        }
    }

    pub(crate) fn read_cache(&self, hit: bool) {
        if hit {
            self.read_cache_hits.inc();
        } else {
            self.read_cache_misses.inc();
        }
    }

    pub(crate) fn read_through(&self) {
        self.read_throughs.inc();
    }

    pub(crate) fn read_cache_usage(&self, usage: crate::read_cache::Usage, unprojected: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.read_cache_keys.set(gauge(usage.keys));
        self.read_cache_bytes.set(gauge(usage.bytes));
        self.unprojected_keys.set(gauge(unprojected));
    }

    pub(crate) fn projected(&self, waited: Duration) {
        self.ack_to_projected.observe(waited.as_secs_f64());
    }
}

/// Counts every response by its route pattern (not the raw path: bounded label values).
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    metrics
        .requests
        .get_or_create(&RouteLabels {
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `journeyd_commit_seconds` is what a webhook waits for: only transactions that append
    /// (and fsync). The projector's transactions go to their own histogram.
    #[test]
    fn appending_and_derived_commits_are_timed_apart() {
        let metrics = Metrics::new();
        let commit = |appends, events_new| CommitInfo {
            head: 1,
            jobs: 1,
            appends,
            submissions: appends,
            events_new,
            events_duplicate: 0,
            quarantined: 0,
            duration: std::time::Duration::from_millis(2),
            wal_pages: 10,
        };
        metrics.commit(&commit(3, 3));
        metrics.commit(&commit(1, 0)); // duplicates only, or the empty flush: still synced
        for _ in 0..4 {
            metrics.commit(&commit(0, 0)); // projector batches
        }
        let text = metrics.encode();
        let count = |name: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}_count "))?
                    .parse::<u64>()
                    .ok()
            })
        };
        assert_eq!(count("journeyd_commit_seconds"), Some(2), "{text}");
        assert_eq!(count("journeyd_derived_commit_seconds"), Some(4), "{text}");
        assert_eq!(count("journeyd_commit_events"), Some(1), "{text}");
    }
}
