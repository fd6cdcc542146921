//! Prometheus metrics of the reconcile loop, registered into the server's registry (so they are
//! on the admin port's `/metrics`). Label values come from closed sets: a kind name and a
//! result; never an object's name or a value.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Reconcile-duration buckets in seconds (coderd round trips, up to a slow 60 s).
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// Labels of a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind, e.g. `CoderInstance`.
    pub kind: &'static str,
}

/// Labels of one reconcile's result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The kind, e.g. `CoderInstance`.
    pub kind: &'static str,
    /// `ready` (every surface fine), `not_ready` (a condition says what is wrong) or `error`
    /// (the result could not be recorded: a Kubernetes write failed).
    pub result: &'static str,
}

/// The reconcile loop's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub results: Family<ResultLabels, Counter>,
    pub leading: Gauge,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Metrics {
    /// The metrics, registered in `registry` (which supplies the `coder_guard_` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let durations = Family::<KindLabels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register("reconcile_duration_seconds", "Time of one reconcile, by kind", durations.clone());
        let results = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconcile_results",
            "Reconciles by kind and result (ready, not_ready: a condition says why, error: not recorded)",
            results.clone(),
        );
        let leading = Gauge::default();
        registry.register(
            "reconcile_leading",
            "1 while this replica leads and runs the reconcile loop",
            leading.clone(),
        );
        Metrics { durations, results, leading }
    }

    /// Unregistered metrics (tests, or a loop without a server).
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }

    pub fn observe(&self, kind: &'static str, elapsed: Duration) {
        self.durations.get_or_create(&KindLabels { kind }).observe(elapsed.as_secs_f64());
    }

    pub fn count(&self, kind: &'static str, result: &'static str) {
        self.results.get_or_create(&ResultLabels { kind, result }).inc();
    }
}
