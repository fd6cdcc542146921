//! Prometheus metrics of the webhook, exposed as text on the admin port's `/metrics`.
//!
//! Every label value is a `&'static str` from a closed set (webhook, kind, operation, verdict,
//! rule id, severity): no label can carry a name, a namespace, an object's content or a secret.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Request-duration buckets in seconds: sub-millisecond resolution (most reviews take well
/// under a millisecond) up to the API server's 30 s maximum timeout.
pub const DURATION_BUCKETS: [f64; 17] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Labels of one answered admission request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `validate` or `mutate`.
    pub webhook: &'static str,
    /// A kind the engine knows, or `other`.
    pub kind: &'static str,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'static str,
    /// `allowed`, `warned`, `denied`, `timeout` or `error`.
    pub verdict: &'static str,
    /// `true` or `false`.
    pub dry_run: &'static str,
}

/// Labels of one finding.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    /// The rule id.
    pub rule: &'static str,
    /// `error` or `warning`.
    pub severity: &'static str,
}

/// Labels of a request answered without a review.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// `validate`, `mutate` or `other`.
    pub webhook: &'static str,
    /// The HTTP status: `400`, `413`, `503`, `500`.
    pub code: &'static str,
}

/// Labels of a live confirmation of references the cache reported absent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfirmLabels {
    /// `confirmed-absent` (the deny stands), `found` (the cache was stale) or `error`.
    pub outcome: &'static str,
}

/// Labels of a watched kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// The kind's name.
    pub kind: &'static str,
}

/// Every metric the server exports, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub findings: Family<FindingLabels, Counter>,
    pub rejections: Family<RejectionLabels, Counter>,
    pub confirmations: Family<ConfirmLabels, Counter>,
    pub in_flight: Gauge,
    pub panics: Counter,
    pub certificate_expiry: Gauge<f64, AtomicU64>,
    pub certificate_reloads: Counter,
    pub certificate_reload_errors: Counter,
    pub cache_synced: Family<CacheLabels, Gauge>,
    pub rule_config_reloads: Counter,
    pub rule_config_reload_errors: Counter,
    pub ready: Gauge,
    /// The reconcile loop's metrics (zero on replicas that do not lead).
    pub reconcile: crate::reconcile::Metrics,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered under the `coder_guard_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("coder_guard");
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "admission_request_duration_seconds",
            "Time from receiving an AdmissionReview to answering it",
            requests.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register("admission_findings", "Findings in answered reviews, by rule and severity", findings.clone());
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "admission_rejected_requests",
            "Requests answered without a review (400 not a review, 413 too large, 503 overloaded, 500 panic)",
            rejections.clone(),
        );
        let confirmations = Family::<ConfirmLabels, Counter>::default();
        registry.register(
            "admission_confirmations",
            "Live reads of references the cache reported absent, before a deny",
            confirmations.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("admission_requests_in_flight", "Admission requests being handled", in_flight.clone());
        let panics = Counter::default();
        registry.register("admission_panics", "Panics while handling a request (answered with 500)", panics.clone());
        let certificate_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires",
            certificate_expiry.clone(),
        );
        let certificate_reloads = Counter::default();
        registry.register(
            "certificate_reloads",
            "Serving certificates loaded after the first",
            certificate_reloads.clone(),
        );
        let certificate_reload_errors = Counter::default();
        registry.register(
            "certificate_reload_errors",
            "Serving-certificate reloads that failed (the previous certificate stays in use)",
            certificate_reload_errors.clone(),
        );
        let cache_synced = Family::<CacheLabels, Gauge>::default();
        registry.register("cache_synced", "1 when the watch of a kind has listed every object", cache_synced.clone());
        let rule_config_reloads = Counter::default();
        registry.register(
            "rule_config_reloads",
            "Rule configurations loaded after the first",
            rule_config_reloads.clone(),
        );
        let rule_config_reload_errors = Counter::default();
        registry.register(
            "rule_config_reload_errors",
            "Rule configurations rejected on reload (the previous one stays in force)",
            rule_config_reload_errors.clone(),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 when /readyz answers 200", ready.clone());
        let reconcile = crate::reconcile::Metrics::register(&mut registry);
        Self {
            registry,
            requests,
            findings,
            rejections,
            confirmations,
            in_flight,
            panics,
            certificate_expiry,
            certificate_reloads,
            certificate_reload_errors,
            cache_synced,
            rule_config_reloads,
            rule_config_reload_errors,
            ready,
            reconcile,
        }
    }

    /// Records one answered review.
    pub fn observe_request(&self, labels: RequestLabels, elapsed: Duration) {
        self.requests.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records a request answered without a review.
    pub fn reject(&self, webhook: &'static str, code: &'static str) {
        self.rejections.get_or_create(&RejectionLabels { webhook, code }).inc();
    }

    /// Sets the certificate gauges from the certificate source's own counters.
    pub fn set_certificate(&self, not_after: SystemTime, reloads: u64, errors: u64) {
        let expiry = not_after.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.certificate_expiry.set(expiry);
        catch_up(&self.certificate_reloads, reloads);
        catch_up(&self.certificate_reload_errors, errors);
    }

    /// The exposition in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Advances a counter to a total kept elsewhere (counters only go up).
fn catch_up(counter: &Counter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_sub_millisecond_buckets_and_labels() {
        let m = Metrics::new();
        m.observe_request(
            RequestLabels {
                webhook: "validate",
                kind: "CoderInstance",
                operation: "CREATE",
                verdict: "denied",
                dry_run: "false",
            },
            Duration::from_micros(150),
        );
        m.set_certificate(UNIX_EPOCH + Duration::from_secs(2_000_000_000), 3, 1);
        m.set_certificate(UNIX_EPOCH + Duration::from_secs(2_000_000_000), 3, 1);
        let text = m.encode();
        assert!(text.contains(
            r#"coder_guard_admission_request_duration_seconds_bucket{le="0.00025",webhook="validate",kind="CoderInstance",operation="CREATE",verdict="denied",dry_run="false"} 1"#
        ), "{text}");
        assert!(text.contains(r#"le="0.0001""#) && text.contains(r#"le="30.0""#), "{text}");
        assert!(text.contains("coder_guard_certificate_expiry_timestamp_seconds 2000000000"), "{text}");
        assert!(text.contains("coder_guard_certificate_reloads_total 3"), "{text}");
        assert!(text.contains("coder_guard_certificate_reload_errors_total 1"), "{text}");
    }
}
