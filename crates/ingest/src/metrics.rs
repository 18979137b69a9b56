//! Ingest counters, exposed by the daemon's `/metrics`.

use events::Source;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use store::Receipt;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    source: String,
    reason: String,
}

/// Counters of what the webhook routes stored and refused.
#[derive(Clone, Debug, Default)]
pub struct IngestMetrics {
    events: Family<EventLabels, Counter>,
    quarantined: Family<SourceLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
}

impl IngestMetrics {
    /// Adds the counters to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "journeyd_events",
            "Events received by webhook, by source and outcome (new or duplicate)",
            self.events.clone(),
        );
        registry.register(
            "journeyd_quarantined_bodies",
            "Webhook bodies quarantined, by source",
            self.quarantined.clone(),
        );
        registry.register(
            "journeyd_webhooks_unavailable",
            "Webhooks answered 503 (nothing stored), by source and reason",
            self.rejected.clone(),
        );
    }

    pub(crate) fn stored(&self, source: Source, r: &Receipt) {
        let source = source.as_str().to_owned();
        let count = |outcome: &str, n: usize| {
            self.events
                .get_or_create(&EventLabels {
                    source: source.clone(),
                    outcome: outcome.to_owned(),
                })
                .inc_by(n as u64);
        };
        count("new", r.new_count());
        count("duplicate", r.duplicate_count());
        if r.quarantine_id.is_some() {
            self.quarantined
                .get_or_create(&SourceLabels {
                    source: source.clone(),
                })
                .inc();
        }
    }

    pub(crate) fn rejected(&self, source: Source, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                source: source.as_str().to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }
}
