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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    endpoint: String,
    credential: String,
}

/// Counters of what the webhook routes stored and refused, and of the credentials that
/// authenticated requests.
#[derive(Clone, Debug, Default)]
pub struct IngestMetrics {
    events: Family<EventLabels, Counter>,
    quarantined: Family<SourceLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    credentials: Family<CredentialLabels, Counter>,
}

/// Why a webhook was answered 503.
pub(crate) const QUEUE_FULL: &str = "queue_full";
pub(crate) const STORE_ERROR: &str = "store_error";

impl IngestMetrics {
    /// Adds the counters to `registry`, each series of a known source, outcome and reason at
    /// zero: a series that first appears at its first increase hides that increase from
    /// Prometheus' `increase()`, and so from the alerts docs/operations.md suggests.
    pub fn register(&self, registry: &mut Registry) {
        for source in [Source::Mx, Source::MobileJourneys] {
            let source = source.as_str().to_owned();
            for outcome in ["new", "duplicate"] {
                let _ = self.events.get_or_create(&EventLabels {
                    source: source.clone(),
                    outcome: outcome.to_owned(),
                });
            }
            let _ = self.quarantined.get_or_create(&SourceLabels {
                source: source.clone(),
            });
            for reason in [QUEUE_FULL, STORE_ERROR] {
                let _ = self.rejected.get_or_create(&RejectLabels {
                    source: source.clone(),
                    reason: reason.to_owned(),
                });
            }
        }
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
            "journeyd_credential_uses",
            "Requests authenticated, by endpoint (a webhook source, or api) and by the label of the credential that matched (never its value): during a rotation, when the old one stops rising, it is no longer used",
            self.credentials.clone(),
        );
        registry.register(
            "journeyd_webhooks_unavailable",
            "Webhooks answered 503 (nothing stored), by source and reason",
            self.rejected.clone(),
        );
    }

    /// Shows each of an endpoint's credentials at zero from the start, so that an alert on an
    /// old credential's use sees its first request.
    pub fn credentials(&self, endpoint: &str, labels: &[String]) {
        for label in labels {
            let _ = self.credentials.get_or_create(&CredentialLabels {
                endpoint: endpoint.to_owned(),
                credential: label.clone(),
            });
        }
    }

    /// Counts a request that credential `label` of `endpoint` authenticated (`None`: nothing
    /// is configured there, and nothing is counted).
    pub fn authenticated(&self, endpoint: &str, label: Option<&str>) {
        if let Some(label) = label {
            self.credentials
                .get_or_create(&CredentialLabels {
                    endpoint: endpoint.to_owned(),
                    credential: label.to_owned(),
                })
                .inc();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_series_is_exposed_at_zero_before_anything_happens() {
        let metrics = IngestMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for source in ["mx", "mobile-journeys"] {
            for line in [
                format!(r#"journeyd_events_total{{source="{source}",outcome="new"}} 0"#),
                format!(r#"journeyd_events_total{{source="{source}",outcome="duplicate"}} 0"#),
                format!(r#"journeyd_quarantined_bodies_total{{source="{source}"}} 0"#),
                format!(
                    r#"journeyd_webhooks_unavailable_total{{source="{source}",reason="queue_full"}} 0"#
                ),
                format!(
                    r#"journeyd_webhooks_unavailable_total{{source="{source}",reason="store_error"}} 0"#
                ),
            ] {
                assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
            }
        }
    }
}
