//! The reconcile metrics (`ecom_operator_*` on `/metrics`).

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

/// The controller's metrics.
pub struct Metrics {
    pub registry: Registry,
    reconciliations: Counter,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ecom_operator");
        let reconciliations = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register(
            "reconciliations",
            "reconciliations of Shops",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "failed reconciliations, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "time per reconciliation",
            duration.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
        }
    }
}

impl Metrics {
    /// One more reconciliation.
    pub(super) fn reconciliation_started(&self) {
        self.reconciliations.inc();
    }

    /// How long a reconciliation took.
    pub(super) fn reconciliation_took(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// A failed reconciliation, by its error's `metric_label`.
    pub(super) fn count_failure(&self, error: &'static str) {
        self.failures.get_or_create(&ErrorLabels { error }).inc();
    }
}
