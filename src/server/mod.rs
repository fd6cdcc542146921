//! The HTTPS admission server and its admin port.
//!
//! Owns: the axum routers (`router`, `admin::router`), the TLS accept loop, request limits
//! (body size, concurrency, deadline, panics), probes and metrics, the rule-config reload loop,
//! graceful shutdown and the `serve` command's start-up (`run`). It translates between HTTP and
//! `admission`/`policy` and must not contain rules, wire-format details of AdmissionReview
//! (that is `admission`), certificate handling (`certs`) or Kubernetes reads (`cluster`).
//!
//! Pieces, in the order a request meets them: `tls` (accept, handshake, HTTP/1.1) → `router`
//! (panic guard) → `handler` (budget, body, slot, decode, evaluate, confirm, answer) with
//! `objects` (the cache behind lookups) and `rule_config` (the engine, reloaded on change);
//! beside them `admin` (`/healthz`, `/readyz`, `/metrics`) and `metrics`.

pub mod admin;
pub mod budget;
pub mod handler;
mod http;
pub mod logging;
pub mod metrics;
pub mod objects;
pub mod rule_config;
pub mod run;
pub mod signal;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::{info, warn};

pub use admin::{Admin, Health};
pub use budget::{Budget, GoDuration};
pub use handler::{App, Execution, Limits};
pub use logging::LogFormat;
pub use metrics::Metrics;
pub use objects::Objects;
pub use rule_config::{RuleConfigError, SharedEngine};
pub use tls::ConnectionLimits;

use crate::certs::CertHandle;
use crate::policy::RuleConfig;

/// The webhook router: `POST /validate`, `POST /mutate`; anything else is 404/405. A panic
/// while handling becomes a 500 with a JSON `Status` (and a counted metric).
pub fn router(app: App) -> Router {
    let metrics = app.metrics.clone();
    Router::new()
        .route("/validate", post(handler::validate))
        .route("/mutate", post(handler::mutate))
        .fallback(|| async {
            http::status_response(StatusCode::NOT_FOUND, "coder-guard serves POST /validate and POST /mutate")
        })
        .layer(CatchPanicLayer::custom(http::panic_response(metrics)))
        .with_state(app)
}

/// Errors starting the server. Each names the flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener cannot bind.
    #[error("cannot listen on {flag} {addr}: {source}; pick a free address")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The rule configuration is unusable at start.
    #[error(transparent)]
    RuleConfig(#[from] RuleConfigError),
    /// The TLS configuration cannot be built.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// How the server listens and limits work.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The webhook's HTTPS address (`--listen`).
    pub listen: SocketAddr,
    /// The admin port's plain-HTTP address (`--admin-listen`).
    pub admin_listen: SocketAddr,
    /// Request limits.
    pub limits: Limits,
    /// Connection limits.
    pub connections: ConnectionLimits,
    /// The rule configuration file (`--config`), reloaded when its bytes change.
    pub rule_config: Option<PathBuf>,
    /// How often `rule_config` is re-read.
    pub rule_config_poll: Duration,
    /// Answer with an allow without evaluating (benchmark baseline only).
    pub no_op: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9443)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            limits: Limits::default(),
            connections: ConnectionLimits::default(),
            rule_config: None,
            rule_config_poll: rule_config::POLL_INTERVAL,
            no_op: false,
        }
    }
}

/// A started server: both listeners bound and serving.
pub struct Running {
    /// Where the webhook listens (`None` without a certificate: `--no-webhook`).
    pub webhook_addr: Option<SocketAddr>,
    /// Where the admin port listens.
    pub admin_addr: SocketAddr,
    /// The shared metrics.
    pub metrics: Arc<Metrics>,
    /// The readiness flags.
    pub health: Arc<Health>,
    stop_accepting: signal::Trigger,
    stop_admin: signal::Trigger,
    webhook: Option<JoinHandle<()>>,
    admin: JoinHandle<()>,
}

/// How shutdown ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished.
    Cleanly,
    /// `drain_timeout` passed with connections still open; they were dropped.
    TimedOut,
}

/// Loads the rule configuration (failing on an invalid one), binds both listeners and starts
/// serving. `cert` is `None` for `--no-webhook`: only the admin port is served then.
pub async fn start(
    settings: Settings,
    cert: Option<CertHandle>,
    objects: Arc<dyn Objects>,
) -> Result<Running, ServeError> {
    let Settings { listen, admin_listen, limits, connections, rule_config, rule_config_poll, no_op } = settings;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop_accepting, accepting) = signal::signal();
    let (stop_admin, admin_stop) = signal::signal();

    let config = match &rule_config {
        Some(path) => Some(rule_config::load(path)?),
        None => None,
    };
    let engine: SharedEngine = Arc::new(ArcSwap::from_pointee(rule_config::engine(
        config.as_ref().map(|c| c.config.clone()).unwrap_or_else(RuleConfig::default),
    )));
    health.set_config_loaded();
    if let (Some(path), Some(loaded)) = (rule_config, config) {
        tokio::spawn(rule_config::watch(
            path,
            loaded.bytes,
            engine.clone(),
            metrics.clone(),
            rule_config_poll,
            stop_admin.watch(),
        ));
    }

    let admin_listener = TcpListener::bind(admin_listen).await.map_err(|source| ServeError::Bind {
        flag: "--admin-listen",
        addr: admin_listen,
        source,
    })?;
    let admin_addr = admin_listener.local_addr().map_err(|source| ServeError::Bind {
        flag: "--admin-listen",
        addr: admin_listen,
        source,
    })?;
    let admin_state =
        Admin { health: health.clone(), metrics: metrics.clone(), cert: cert.clone(), objects: objects.clone() };
    let admin_router = admin::router(admin_state);
    let mut admin_stop_wait = admin_stop;
    let admin = tokio::spawn(async move {
        let served = axum::serve(admin_listener, admin_router)
            .with_graceful_shutdown(async move { admin_stop_wait.fired().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "admin server failed");
        }
    });
    info!(addr = %admin_addr, "admin port serving /healthz, /readyz and /metrics");

    let (webhook_addr, webhook) = match cert {
        None => {
            health.set_serving(true);
            (None, None)
        }
        Some(cert) => {
            let tls_config = tls::server_config(cert.resolver())?;
            let listener = TcpListener::bind(listen).await.map_err(|source| ServeError::Bind {
                flag: "--listen",
                addr: listen,
                source,
            })?;
            let addr =
                listener.local_addr().map_err(|source| ServeError::Bind { flag: "--listen", addr: listen, source })?;
            let mut app = App::new(engine, objects, metrics.clone(), limits);
            if no_op {
                app = app.without_policy();
            }
            let router = router(app);
            let health_for_task = health.clone();
            let task = tokio::spawn(async move {
                tls::serve(listener, tls_config, router, connections, accepting).await;
                health_for_task.set_serving(false);
            });
            health.set_serving(true);
            info!(%addr, "webhook serving POST /validate and POST /mutate over TLS (HTTP/1.1)");
            (Some(addr), Some(task))
        }
    };

    Ok(Running { webhook_addr, admin_addr, metrics, health, stop_accepting, stop_admin, webhook, admin })
}

impl Running {
    /// Graceful shutdown: not ready at once; keep serving for `delay` (so endpoint controllers
    /// remove this replica); stop accepting; wait up to `drain_timeout` for open connections to
    /// finish their requests; stop the admin port.
    pub async fn shutdown(self, delay: Duration, drain_timeout: Duration) -> Drained {
        let Running { health, stop_accepting, stop_admin, webhook, admin, .. } = self;
        health.set_shutting_down();
        info!(delay = %GoDuration(delay), "shutting down: not ready; still serving during the delay");
        tokio::time::sleep(delay).await;
        stop_accepting.fire();
        info!(timeout = %GoDuration(drain_timeout), "stopped accepting; draining open connections");
        let drained = match webhook {
            None => Drained::Cleanly,
            Some(task) => match tokio::time::timeout(drain_timeout, task).await {
                Ok(_) => Drained::Cleanly,
                Err(_) => Drained::TimedOut,
            },
        };
        stop_admin.fire();
        let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
        match drained {
            Drained::Cleanly => info!("drained; exiting"),
            Drained::TimedOut => warn!("connections still open after the drain timeout; exiting anyway"),
        }
        drained
    }
}

#[cfg(test)]
mod tests;
