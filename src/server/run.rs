//! `coder-guard serve`: start-up in a fail-fast order, then serve until SIGTERM/SIGINT.
//!
//! 1. Certificates are loaded before anything binds (a bad `--tls-cert-file` fails at once).
//! 2. The cluster is reached and coder-guard's CRDs are checked through discovery (no extra
//!    RBAC); when they are missing, the error says how to install them. `--dev` skips this.
//! 3. The cache starts watching; readiness waits for its first full list.
//! 4. Both listeners bind and serve. A Lease elects a leader, which keeps `caBundle` of the
//!    `coder-guard` webhook configurations equal to the CA bundle (`--self-signed`) and runs
//!    the reconcile loop (unless `--no-reconcile`).
//! 5. On a signal: not ready, serve on for `--shutdown-delay`, stop accepting, drain for up to
//!    `--drain-timeout`, exit 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::signal::{Watch, signal};
use super::{GoDuration, Objects, ServeError, Settings};
use crate::api::webhooks::CONFIGURATION_NAME;
use crate::certs::{self, CertError, CertHandle};
use crate::cluster::{self, Cache, Leadership, LeaseError, LeaseParams};
use crate::policy::Index;
use crate::reconcile;

/// How often the leader re-checks `caBundle` even when the CA did not change (someone may have
/// re-applied the webhook configurations without it).
const CA_BUNDLE_RESYNC: Duration = Duration::from_secs(60);
/// Pause before the reconcile loop is started again after it ended by itself (a panic).
const RECONCILE_RESTART: Duration = Duration::from_secs(10);
/// Wait after a failed caBundle patch.
const CA_BUNDLE_RETRY: Duration = Duration::from_secs(10);

/// Where lookups come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterMode {
    /// No cluster (`--dev`): an empty offline cache, or the objects in these manifest files
    /// (`--dev-objects`); anything else is "unknown", as in `check`.
    Offline { objects: Vec<PathBuf> },
    /// Connect with the ambient kubeconfig or in-cluster config.
    Connect {
        /// Limit the watches to these namespaces (`--namespace`); empty means all.
        namespaces: Vec<String>,
        /// Namespace of the leader-election Lease (`POD_NAMESPACE`); default the client's
        /// namespace (in a Pod, its service account's).
        lease_namespace: Option<String>,
        /// This replica's identity (`POD_NAME`).
        identity: String,
        /// Run the reconcile loop as leader (`None` with `--no-reconcile`).
        reconcile: Option<reconcile::Config>,
    },
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub settings: Settings,
    /// `None` with `--no-webhook`.
    pub certificates: Option<certs::Source>,
    pub cluster: ClusterMode,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    /// Print how to send a review, and write the CA to a file (`--dev`).
    pub dev: bool,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The serving certificate is unusable.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// No cluster configuration or the cluster is unreachable.
    #[error(
        "cannot reach the Kubernetes API: {0}; run in a cluster, set KUBECONFIG, or try `coder-guard serve --dev` \
         (no cluster)"
    )]
    Cluster(String),
    /// coder-guard's CRDs are not installed.
    #[error(
        "coder-guard's CustomResourceDefinitions are not installed ({missing}); install them with \
         `coder-guard manifests crds | kubectl apply -f -`"
    )]
    CrdsMissing { missing: String },
    /// Leader election cannot start.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The server cannot start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A `--dev-objects` file cannot be used.
    #[error("--dev-objects {path}: {reason}")]
    DevObjects { path: PathBuf, reason: String },
    /// The dev-mode CA file cannot be written.
    #[error("cannot write the dev CA to {path}: {source}")]
    DevCa { path: PathBuf, source: std::io::Error },
}

/// Runs `serve` until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(config: ServeConfig) -> Result<(), RunError> {
    let ServeConfig { settings, certificates, cluster, shutdown_delay, drain_timeout, dev } = config;
    install_panic_hook();

    // 1. Certificates before anything binds; a CA shared through a Secret once the cluster is
    //    reached (readiness waits for its first leaf).
    let mut cert = match &certificates {
        Some(certs::Source::Shared(_)) if matches!(cluster, ClusterMode::Connect { .. }) => None,
        Some(source) => Some(certs::start(source.clone()).await?),
        None => None,
    };

    // 2–3. The cluster and the cache.
    let (client, objects, lease) = match &cluster {
        ClusterMode::Offline { objects } if objects.is_empty() => {
            (None, Arc::new(Cache::offline()) as Arc<dyn Objects>, None)
        }
        ClusterMode::Offline { objects } => (None, Arc::new(load_objects(objects)?) as Arc<dyn Objects>, None),
        ClusterMode::Connect { namespaces, lease_namespace, identity, .. } => {
            let client = Client::try_default().await.map_err(|e| RunError::Cluster(e.to_string()))?;
            check_crds(&client).await?;
            let namespaces = (!namespaces.is_empty()).then(|| namespaces.clone());
            let cache = Arc::new(Cache::start(client.clone(), namespaces));
            let lease_namespace = lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
            if let Some(certs::Source::Shared(shared)) = &certificates {
                let secret = cluster::CaSecret::new(client.clone(), &lease_namespace, &shared.secret_name);
                cert = Some(certs::start_shared(shared.clone(), secret)?);
            }
            (Some(client), cache as Arc<dyn Objects>, Some((lease_namespace, identity.clone())))
        }
    };

    // 4. Serve.
    let running = super::start(settings, cert.clone(), objects).await?;
    let (stop_tasks, tasks_stop) = signal();

    let mut leadership = None;
    if let (ClusterMode::Connect { reconcile, .. }, Some(client), Some((ns, identity))) = (&cluster, &client, lease) {
        // A CA shared through a Secret is created, rotated and published by the leader.
        let ca_bundle = cert.as_ref().filter(|_| matches!(certificates, Some(certs::Source::Shared(_))));
        if ca_bundle.is_some() || reconcile.is_some() {
            let lead = Leadership::start(client.clone(), LeaseParams::new(ns, CONFIGURATION_NAME, identity))?;
            if let Some(cert) = ca_bundle {
                tokio::spawn(keep_ca_bundle(client.clone(), cert.clone(), lead.subscribe(), tasks_stop.clone()));
            }
            if let Some(config) = reconcile {
                let metrics = running.metrics.reconcile.clone();
                let leader = lead.subscribe();
                tokio::spawn(lead_reconcile(client.clone(), config.clone(), metrics, leader, tasks_stop.clone()));
            }
            leadership = Some(lead);
        }
    }

    let dev_ca = match (&cert, dev) {
        (Some(cert), true) => Some(dev_banner(cert, running.webhook_addr, running.admin_addr, tasks_stop.clone())?),
        _ => None,
    };

    // 5. Until a signal.
    let signal_name = wait_for_signal().await;
    info!(signal = signal_name, "shutdown requested");
    let drained = running.shutdown(shutdown_delay, drain_timeout).await;
    stop_tasks.fire();
    if let Some(lead) = leadership
        && let Err(e) = tokio::time::timeout(Duration::from_secs(5), lead.shutdown()).await.unwrap_or(Ok(()))
    {
        warn!(error = %e, "could not release the leader Lease; another replica takes over when it expires");
    }
    if let Some(path) = dev_ca {
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }
    info!(?drained, "stopped");
    Ok(())
}

/// Checks, through discovery (which every authenticated client may read), that the API server
/// serves every coder-guard kind.
async fn check_crds(client: &Client) -> Result<(), RunError> {
    let mut missing = Vec::new();
    for crd in crate::api::crds::all() {
        let spec = &crd.spec;
        let Some(version) = spec.versions.iter().find(|v| v.served) else { continue };
        let api_version = format!("{}/{}", spec.group, version.name);
        let served = match client.list_api_group_resources(&api_version).await {
            Ok(list) => list.resources.iter().any(|r| r.name == spec.names.plural),
            Err(kube::Error::Api(status)) if status.is_not_found() => false,
            Err(e) => return Err(RunError::Cluster(format!("discovery of {api_version} failed: {e}"))),
        };
        if !served {
            missing.push(crd.metadata.name.clone().unwrap_or_default());
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(RunError::CrdsMissing { missing: missing.join(", ") }) }
}

/// A non-authoritative index of the objects in manifest files (what is not in them is
/// "unknown"), for `--dev`.
fn load_objects(paths: &[PathBuf]) -> Result<Index, RunError> {
    let mut index = Index::new(false);
    for path in paths {
        let error = |reason: String| RunError::DevObjects { path: path.clone(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let (documents, problem) = crate::yaml::parse_documents(&text);
        if let Some(e) = problem {
            return Err(error(format!("line {}: {}", e.line, e.message)));
        }
        documents.iter().filter(|d| !d.value.is_null()).for_each(|d| index.insert(&d.value, "default"));
    }
    Ok(index)
}

/// As leader, keeps `caBundle` of the `coder-guard` webhook configurations equal to the CA
/// bundle: when the bundle changes, on gaining leadership, and every minute. Tells the
/// certificates whether this replica leads and which bundle a patch confirmed: a shared CA is
/// created and rotated by the leader, and a new CA signs only once confirmed.
async fn keep_ca_bundle(client: Client, cert: CertHandle, mut leader: watch::Receiver<bool>, mut stop: Watch) {
    let mut bundles = cert.watch_ca_bundle();
    loop {
        let mut wait = CA_BUNDLE_RESYNC;
        let leading = *leader.borrow_and_update();
        cert.set_leading(leading);
        if leading && let Some(pem) = cert.ca_bundle() {
            match cluster::patch_ca_bundle(&client, CONFIGURATION_NAME, CONFIGURATION_NAME, &pem).await {
                // `patch_ca_bundle` logs each configuration it changed.
                Ok(_) => cert.ca_bundle_published(&pem),
                Err(e) => {
                    warn!(error = %e, retry_in = %GoDuration(CA_BUNDLE_RETRY), "cannot update caBundle");
                    wait = CA_BUNDLE_RETRY;
                }
            }
        }
        tokio::select! {
            () = stop.fired() => return,
            // The elector is gone (it only ends on shutdown or a panic): stop leading.
            changed = leader.changed() => if changed.is_err() {
                cert.set_leading(false);
                return;
            },
            _ = bundles.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Runs the reconcile loop while this replica leads; stops it when leadership is lost or on
/// shutdown.
async fn lead_reconcile(
    client: Client,
    config: reconcile::Config,
    metrics: reconcile::Metrics,
    mut leader: watch::Receiver<bool>,
    mut stop: Watch,
) {
    loop {
        tokio::select! {
            () = stop.fired() => return,
            led = leader.wait_for(|leads| *leads) => if led.is_err() { return },
        }
        info!("leading: reconcile loop started");
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let mut running = tokio::spawn(reconcile::run(client.clone(), config.clone(), metrics.clone(), async move {
            let _ = ended.await;
        }));
        let (stopping, ended) = tokio::select! {
            () = stop.fired() => (true, None),
            _ = leader.wait_for(|leads| !*leads) => (false, None),
            ended = &mut running => (false, Some(ended)),
        };
        let _ = end.send(());
        match ended {
            // It ended by itself: only a panic does that. Start it again after a pause.
            Some(ended) => {
                metrics.leading.set(0);
                error!(error = ?ended.err(), retry_in = %GoDuration(RECONCILE_RESTART), "reconcile loop ended");
                tokio::time::sleep(RECONCILE_RESTART).await;
            }
            None => {
                if tokio::time::timeout(Duration::from_secs(10), &mut running).await.is_err() {
                    running.abort();
                    metrics.leading.set(0);
                }
                info!("reconcile loop stopped");
            }
        }
        if stopping {
            return;
        }
    }
}

/// Writes the dev CA to a temp file (rewritten when it rotates) and prints how to call the
/// webhook. Returns the file's path.
fn dev_banner(
    cert: &CertHandle,
    webhook: Option<SocketAddr>,
    admin: SocketAddr,
    mut stop: Watch,
) -> Result<PathBuf, RunError> {
    let dir = std::env::temp_dir().join(format!("coder-guard-dev-{}", std::process::id()));
    let path = dir.join("ca.pem");
    let write = |path: &Path, pem: &[u8]| {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(path, pem))
            .map_err(|source| RunError::DevCa { path: path.to_owned(), source })
    };
    write(&path, &cert.ca_bundle().unwrap_or_default())?;
    let webhook = webhook.map_or_else(|| "(disabled)".to_owned(), |a| format!("https://{a}"));
    let ca = path.display();
    let banner = format!(
        "coder-guard dev mode: no cluster; lookups answer from --dev-objects, anything else is \"unknown\"\n\
         webhook:  {webhook}/validate and {webhook}/mutate\n\
         admin:    http://{admin}/healthz, /readyz, /metrics\n\
         CA file:  {ca}\n\
         try:\n  \
         curl --cacert {ca} -H 'Content-Type: application/json' --data @examples/admission/deny-provisioner.json \
         {webhook}/validate\n"
    );
    // Not `print!`: a closed stdout must not take the server down.
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(banner.as_bytes()).and_then(|()| stdout.flush());
    let cert = cert.clone();
    let again = path.clone();
    tokio::spawn(async move {
        let mut bundles = cert.watch_ca_bundle();
        loop {
            tokio::select! {
                () = stop.fired() => return,
                changed = bundles.changed() => if changed.is_err() { return },
            }
            if let Some(pem) = cert.ca_bundle()
                && let Err(e) = std::fs::write(&again, pem)
            {
                warn!(path = %again.display(), error = %e, "cannot rewrite the dev CA file");
            }
        }
    });
    Ok(path)
}

/// Waits for SIGTERM (Kubernetes) or SIGINT (Ctrl-C); returns which.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Panics are logged through tracing with their location and only a literal message: the
/// default hook would print a formatted message, which could quote request data.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        match info.payload().downcast_ref::<&'static str>() {
            Some(message) => error!(%location, panic = *message, "panic"),
            None => error!(%location, "panic (message withheld)"),
        }
    }));
}
