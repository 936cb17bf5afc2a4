//! Prometheus metrics, one registry per application instance (no globals, so tests can run
//! several servers in one process).
//!
//! Labels are route templates, methods, status codes and reasons: never ids or values.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

/// The application's metrics.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    auth_failures: Family<ReasonLabels, Counter>,
    refusals: Family<CodeLabels, Counter>,
    audit_write_failures: Family<TargetLabels, Counter>,
    enumeration_suspected: Counter,
    lookup_suspicious: Counter,
    integrity_failures: Counter,
    reencrypted_rows: Counter,
    rows_to_reencrypt: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("strongroom");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to ~4 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Authentication failures by reason",
            auth_failures.clone(),
        );
        let refusals = Family::<CodeLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests answered with a problem, by its stable code",
            refusals.clone(),
        );
        let audit_write_failures = Family::<TargetLabels, Counter>::default();
        registry.register(
            "audit_write_failures",
            "Audit records (target database) or checkpoints (target checkpoint) not written",
            audit_write_failures.clone(),
        );
        let enumeration_suspected = Counter::default();
        registry.register(
            "enumeration_suspected",
            "Card buckets locked because their tokenize calls looked like enumeration",
            enumeration_suspected.clone(),
        );
        let lookup_suspicious = Counter::default();
        registry.register(
            "lookup_suspicious",
            "Episodes of a principal's token lookups throttled for missing too often",
            lookup_suspicious.clone(),
        );
        let integrity_failures = Counter::default();
        registry.register(
            "integrity_failures",
            "Sealed card numbers that failed to open: moved, swapped or corrupted rows, or a changed key version",
            integrity_failures.clone(),
        );
        let reencrypted_rows = Counter::default();
        registry.register(
            "reencrypted_rows",
            "Rows this instance sealed again under the active data key in the background",
            reencrypted_rows.clone(),
        );
        let rows_to_reencrypt = Gauge::default();
        registry.register(
            "reencrypt_rows_remaining",
            "Rows still sealed under retired data keys, as this instance's background re-encryption last counted",
            rows_to_reencrypt.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            reencrypted_rows,
            rows_to_reencrypt,
            integrity_failures,
            enumeration_suspected,
            lookup_suspicious,
            requests,
            latency,
            auth_failures,
            refusals,
            audit_write_failures,
        }))
    }

    /// Counts one request and its latency.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.0
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.0
            .latency
            .get_or_create(&LatencyLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one authentication failure.
    pub fn observe_auth_failure(&self, reason: &str) {
        self.0
            .auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one refusal by its problem code.
    pub fn observe_refusal(&self, code: &str) {
        self.0
            .refusals
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc();
    }

    /// Counts one batch of audit records, or one checkpoint, that could not be written.
    pub fn observe_audit_write_failure(&self, target: &str) {
        self.0
            .audit_write_failures
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .inc();
    }

    /// Counts one card bucket locked as an enumeration suspect.
    pub fn observe_enumeration_suspected(&self) {
        self.0.enumeration_suspected.inc();
    }

    /// Counts one sealed card number that failed its integrity check.
    pub fn observe_integrity_failure(&self) {
        self.0.integrity_failures.inc();
    }

    /// Counts one episode of throttled lookups.
    pub fn observe_lookup_suspicious(&self) {
        self.0.lookup_suspicious.inc();
    }

    /// Counts rows re-encrypted in the background.
    pub fn reencrypted(&self, rows: u64) {
        self.0.reencrypted_rows.inc_by(rows);
    }

    /// Sets how many rows are left under retired data keys.
    pub fn set_rows_to_reencrypt(&self, rows: u64) {
        self.0
            .rows_to_reencrypt
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry)?;
        Ok(out)
    }
}
