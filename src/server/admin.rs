//! The admin port (plain HTTP): `/healthz` (live), `/readyz` (ready), `/metrics`.
//!
//! Ready means: the serving certificate is loaded and unexpired, the rule configuration is
//! valid, the webhook listener is accepting, every cache watch has listed once, and the process
//! is not shutting down. `/readyz` lists each check (`[+]`/`[-]`, as the API server's own
//! `/readyz?verbose` does) so a failing probe says why. `/livez` and `/ready` are aliases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::metrics::{CacheLabels, Metrics};
use super::objects::Objects;
use crate::certs::CertHandle;

/// Process-wide readiness flags the probes read.
#[derive(Debug, Default)]
pub struct Health {
    /// The rule configuration in force is valid (set once loaded at start).
    config_loaded: AtomicBool,
    /// The webhook's TLS listener is accepting (or the webhook is disabled).
    serving: AtomicBool,
    /// SIGTERM/SIGINT received: report not ready so endpoints are removed.
    shutting_down: AtomicBool,
}

impl Health {
    /// Records that the rule configuration loaded.
    pub fn set_config_loaded(&self) {
        self.config_loaded.store(true, Ordering::SeqCst);
    }

    /// Records whether the webhook listener accepts connections.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// Records that shutdown began; readiness fails from now on.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown began.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// What the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// `None` when the webhook is disabled (`--no-webhook`).
    pub cert: Option<CertHandle>,
    pub objects: Arc<dyn Objects>,
}

/// One readiness check's outcome.
struct Check {
    name: &'static str,
    ok: bool,
    detail: &'static str,
}

impl Admin {
    fn checks(&self) -> Vec<Check> {
        let certificate = match &self.cert {
            None => Check { name: "certificate", ok: true, detail: "webhook disabled" },
            Some(c) if c.not_after() > SystemTime::now() => Check { name: "certificate", ok: true, detail: "loaded" },
            // The shared self-signed CA serves an epoch-dated placeholder until its first leaf.
            Some(c) if c.not_after() <= SystemTime::UNIX_EPOCH => {
                Check { name: "certificate", ok: false, detail: "waiting for the first serving certificate" }
            }
            Some(_) => Check { name: "certificate", ok: false, detail: "the serving certificate has expired" },
        };
        let flag = |name, ok, good, bad| Check { name, ok, detail: if ok { good } else { bad } };
        let h = &self.health;
        vec![
            certificate,
            flag("rule-config", h.config_loaded.load(Ordering::SeqCst), "valid", "not loaded"),
            flag("webhook-listener", h.serving.load(Ordering::SeqCst), "accepting", "not accepting connections"),
            flag("cache", self.objects.synced(), "synced", "watches have not listed every object yet"),
            flag("shutdown", !h.shutting_down(), "running", "shutting down"),
        ]
    }

    /// Whether every readiness check passes.
    pub fn ready(&self) -> bool {
        self.checks().iter().all(|c| c.ok)
    }

    /// Copies state kept elsewhere (certificate, caches, readiness) into the gauges.
    fn refresh_metrics(&self) {
        let m = &self.metrics;
        if let Some(cert) = &self.cert {
            m.set_certificate(cert.not_after(), cert.reloads(), cert.reload_errors());
        }
        for (kind, synced) in self.objects.sync_state() {
            m.cache_synced.get_or_create(&CacheLabels { kind: kind.name() }).set(i64::from(synced));
        }
        m.ready.set(i64::from(self.ready()));
    }
}

/// The admin router.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/healthz", get(live))
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(admin)
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(admin): State<Admin>) -> Response {
    let checks = admin.checks();
    let ok = checks.iter().all(|c| c.ok);
    let mut body: String =
        checks.iter().map(|c| format!("[{}]{} {}\n", if c.ok { '+' } else { '-' }, c.name, c.detail)).collect();
    body.push_str(if ok { "ready\n" } else { "not ready\n" });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body).into_response()
}

async fn metrics(State(admin): State<Admin>) -> Response {
    admin.refresh_metrics();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], admin.metrics.encode())
        .into_response()
}
