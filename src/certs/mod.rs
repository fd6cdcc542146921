//! Serving certificates for the webhook: files reloaded on change, an in-memory self-signed CA
//! that rotates itself (`--dev`), or a self-signed CA shared by every replica through a Secret
//! (`--self-signed` in a cluster), plus the `certs generate` command.
//!
//! Owns: loading and validating certificate/key pairs, keeping the served pair current, the
//! self-signed CA and its `caBundle`, expiry warnings and reload counters. It must not touch the
//! Kubernetes API (patching `caBundle` into webhook configurations is the leader's job, fed by
//! [`CertHandle::ca_bundle`] and [`CertHandle::watch_ca_bundle`]; the shared CA's Secret is
//! reached through the [`CaStore`] that `cluster` implements) nor bind sockets: the server puts
//! [`CertHandle::resolver`] into its `rustls::ServerConfig`.
//!
//! # Files mode: poll and compare bytes
//!
//! The kubelet updates a Secret volume by writing a new `..2026_…` directory and atomically
//! renaming a `..data` symlink onto it; `tls.crt` is itself a symlink to `..data/tls.crt`. An
//! inotify watch on the files sees nothing (cilium PR #13636, Kubewarden #1061). So a background
//! task re-reads both files every [`Options::poll_interval`] (1 s) through their paths, which
//! resolves the symlinks afresh, and compares a digest of the bytes with the pair being served.
//! Only a changed pair is parsed; only a pair that parses *and* whose key matches the first
//! certificate is swapped in (one `ArcSwap` store, so a handshake sees the old or the new pair,
//! never a mix). We chose this over kubert's "new acceptor per connection" because:
//!
//! - the handshake path stays a lock-free pointer load, with no file I/O, PEM or key parsing per
//!   connection;
//! - a bad new pair (half-written, only one file updated yet, key from another Secret) keeps the
//!   old credentials serving instead of failing every connection until someone notices;
//! - there is always one known served certificate, which the expiry gauge, the expiry warnings
//!   and the reload counters describe.
//!
//! The cost is up to one poll interval of delay after the files change, which is small next to
//! the kubelet's own sync period (about a minute). A read takes the cert, the key, then the cert
//! again, and retries when the cert moved under it, so a swap between two reads is not reported
//! as a mismatch. A failed pair is logged once (`tracing::warn!`, never key material), counted in
//! [`CertHandle::reload_errors`], and re-examined as soon as either file changes again.
//!
//! # Self-signed mode: publish the CA before it signs
//!
//! The rotation rules are in `authority.rs`. The ordering that keeps the API server able to
//! verify us throughout is: (1) a new CA is created and appended to the bundle, and the bundle is
//! published ([`CertHandle::ca_bundle`] returns it and [`CertHandle::watch_ca_bundle`] fires) while
//! the served leaf is still signed by the old CA; (2) only after [`Options::ca_publish_grace`] has
//! passed does the new CA start signing, and a new leaf signed by it is served; (3) the old CA
//! stays in the bundle until it expires. Within one tick the bundle is always stored before the
//! leaf.
//!
//! # Shared mode: one CA in a Secret for every replica
//!
//! With several replicas, each needs a leaf the one published `caBundle` trusts, so the CA lives
//! in a Secret ([`start_shared`], [`SharedCa`]). The leader creates and rotates it; every replica
//! issues its own leaf from it, and the leader patches `caBundle` from it (and tells the handle
//! when a patch succeeded: [`CertHandle::ca_bundle_published`]). The sequencing, the same as above
//! but across processes and gated on the confirmed patch, is in `shared.rs`; why replicas poll
//! the Secret rather than watch it, in `shared_run.rs`. Until a leaf from the shared CA is loaded
//! the handle serves an expired placeholder and [`CertHandle::not_after`] is the Unix epoch, so
//! readiness fails.

mod authority;
mod files;
mod generate;
mod shared;
mod shared_run;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use tokio::sync::{oneshot, watch};

pub use generate::{GenerateArgs, generate, service_dns_names};
use shared::Published;
pub use shared::{DATA_KEYS, Timing};
pub use shared_run::{CaStore, Created, StoreError, Stored};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Default validity of a self-signed serving (leaf) certificate.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Default time before expiry at which a self-signed leaf is renewed.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(10 * 24 * 60 * 60);
/// Default validity of the self-signed CA.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// NotBefore of generated certificates lies this far in the past, for clock skew.
pub const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Where the serving certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--tls-cert-file` (leaf first, then any intermediates) and `--tls-key-file`, reloaded on
    /// change.
    Files { cert: PathBuf, key: PathBuf },
    /// `--dev`: an in-memory ECDSA P-256 CA and a leaf for `dns_names`.
    SelfSigned { dns_names: Vec<String>, validity: Duration, renew_before: Duration },
    /// `--self-signed` in a cluster: a CA shared by every replica through a Secret; start it with
    /// [`start_shared`], which takes the store.
    Shared(SharedCa),
}

/// A self-signed CA kept in a Secret that every replica shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedCa {
    /// Names of the serving certificate.
    pub dns_names: Vec<String>,
    /// Name of the Secret (`--self-signed-ca-secret`), in coder-guard's namespace.
    pub secret_name: String,
    /// Validities and intervals.
    pub timing: Timing,
}

/// Default name of the shared CA's Secret.
pub const DEFAULT_CA_SECRET: &str = "coder-guard-ca";

/// Knobs that production leaves at their defaults and tests shorten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How often the files are re-read, or the self-signed rotation is checked.
    pub poll_interval: Duration,
    /// Validity of the self-signed CA; it is replaced when less than a third remains.
    pub ca_validity: Duration,
    /// How long a new self-signed CA is published in the bundle before it signs leaves, so the
    /// `caBundle` patcher and the API server see it first.
    pub ca_publish_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            ca_validity: DEFAULT_CA_VALIDITY,
            ca_publish_grace: Duration::from_secs(10 * 60),
        }
    }
}

/// Errors of this module. Messages name the flag or file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate file cannot be read.
    #[error(
        "cannot read --tls-cert-file {path}: {source}; mount the serving certificate there (see certs/README.md) or use --self-signed"
    )]
    ReadCert { path: PathBuf, source: std::io::Error },
    /// The key file cannot be read.
    #[error(
        "cannot read --tls-key-file {path}: {source}; mount the serving key there (see certs/README.md) or use --self-signed"
    )]
    ReadKey { path: PathBuf, source: std::io::Error },
    /// The certificate file holds no usable PEM certificate chain.
    #[error(
        "--tls-cert-file {path} is not a PEM certificate chain ({reason}); it must hold the serving certificate first, then any intermediates"
    )]
    InvalidCert { path: PathBuf, reason: String },
    /// The key file holds no usable private key. The reason never quotes the file.
    #[error(
        "--tls-key-file {path} holds no usable private key ({reason}); it must be one PEM PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key"
    )]
    InvalidKey { path: PathBuf, reason: String },
    /// The key does not belong to the first certificate of the chain.
    #[error(
        "the key in --tls-key-file {key} does not match the first certificate in --tls-cert-file {cert}; put the serving certificate first and take both files from the same Secret"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// `--self-signed` settings that cannot work.
    #[error("--self-signed: {0}")]
    SelfSignedConfig(String),
    /// The shared CA's store (Secret) cannot be read or written.
    #[error("--self-signed: cannot use the shared CA in {store}: {reason}")]
    CaStore { store: String, reason: String },
    /// The shared CA's store holds something unusable. The reason never quotes it.
    #[error(
        "--self-signed: {store} holds no usable CA: {reason}; fix it, or delete it and the leader creates a new CA \
         (the API server rejects the webhook until caBundle is patched with it, usually seconds)"
    )]
    CaInvalid { store: String, reason: String },
    /// rcgen failed to build a key or certificate.
    #[error("cannot generate the {what}: {source}")]
    Generate { what: &'static str, source: rcgen::Error },
    /// A `certs generate` name is not a DNS label.
    #[error("{flag} {value:?} is not a DNS label: {reason}")]
    InvalidName { flag: &'static str, value: String, reason: &'static str },
    /// `certs generate` would overwrite files.
    #[error("{} already exist; pass --force to replace them", list(paths))]
    Exists { paths: Vec<PathBuf> },
    /// `certs generate` cannot write a file.
    #[error("cannot write {path}: {source}; check --out")]
    Write { path: PathBuf, source: std::io::Error },
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Loads the initial credentials (failing fast if they are unusable), then keeps them current
/// in a background task that ends when the last clone of the returned handle is dropped.
pub async fn start(source: Source) -> Result<CertHandle, CertError> {
    start_with(source, Options::default()).await
}

/// [`start`] with explicit [`Options`].
pub async fn start_with(source: Source, options: Options) -> Result<CertHandle, CertError> {
    let (stop_tx, stop_rx) = oneshot::channel();
    let shared = match source {
        Source::Files { cert, key } => {
            let mut watcher = files::Watcher::load(cert, key).await?;
            let shared = Arc::new(Shared::new(watcher.served(), None));
            watcher.check_expiry(SystemTime::now());
            tokio::spawn(files::run(watcher, shared.clone(), options.poll_interval, stop_rx));
            shared
        }
        Source::SelfSigned { dns_names, validity, renew_before } => {
            let timing = Timing {
                ca_validity: options.ca_validity,
                leaf_validity: validity,
                renew_before,
                publish_grace: options.ca_publish_grace,
                poll_interval: options.poll_interval,
            };
            let settings = authority::Settings { dns_names, timing };
            let authority = authority::Authority::new(settings, SystemTime::now())?;
            let shared = Arc::new(Shared::new(authority.served(), Some(authority.bundle_pem())));
            tracing::info!(
                not_after = unix_seconds(authority.leaf_not_after()),
                "self-signed CA and serving certificate created in memory"
            );
            tokio::spawn(authority::run(authority, shared.clone(), options.poll_interval, stop_rx));
            shared
        }
        Source::Shared(_) => {
            return Err(CertError::SelfSignedConfig(
                "a CA shared through a Secret needs the cluster (start it with certs::start_shared); use --dev for an \
                 in-memory CA"
                    .into(),
            ));
        }
    };
    Ok(CertHandle { shared, _stop: Arc::new(stop_tx) })
}

/// Serves leaves issued from a CA shared through `store` (`--self-signed` in a cluster); see
/// `shared.rs`. Returns at once: until the first leaf from the shared CA is loaded, an expired
/// placeholder is served and [`CertHandle::not_after`] is the Unix epoch (not ready). Tell the
/// handle about leadership ([`CertHandle::set_leading`]) and confirmed `caBundle` patches
/// ([`CertHandle::ca_bundle_published`]). Must be called within a Tokio runtime.
pub fn start_shared<S: CaStore>(config: SharedCa, store: S) -> Result<CertHandle, CertError> {
    config.timing.validate(&config.dns_names)?;
    if config.timing.poll_interval.is_zero() {
        return Err(CertError::SelfSignedConfig("the shared CA's poll interval must be more than zero".into()));
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let shared = Arc::new(Shared::new(placeholder()?, None));
    tokio::spawn(shared_run::run(store, shared.clone(), config, stop_rx));
    Ok(CertHandle { shared, _stop: Arc::new(stop_tx) })
}

/// What is served before the shared CA is loaded: a certificate no client trusts, expired at the
/// Unix epoch.
fn placeholder() -> Result<Served, CertError> {
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
    let error = |source| CertError::Generate { what: "placeholder certificate", source };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(error)?;
    let mut params = CertificateParams::new(vec!["coder-guard.invalid".to_owned()]).map_err(error)?;
    params.not_before = UNIX_EPOCH.into();
    params.not_after = UNIX_EPOCH.into();
    let cert = params.self_signed(&key).map_err(error)?;
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let certified = CertifiedKey::from_der(vec![cert.der().clone()], der, &rustls::crypto::ring::default_provider())
        .map_err(|e| CertError::SelfSignedConfig(format!("rustls rejected the generated key: {e}")))?;
    Ok(Served { key: Arc::new(certified), not_after: UNIX_EPOCH })
}

/// Waits for the next tick; `None` once the handle's stop sender is dropped.
async fn next_tick(interval: &mut tokio::time::Interval, stop: &mut oneshot::Receiver<()>) -> Option<()> {
    tokio::select! {
        _ = stop => None,
        _ = interval.tick() => Some(()),
    }
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let every = every.max(Duration::from_millis(10));
    let start = tokio::time::Instant::now() + every;
    let mut interval = tokio::time::interval_at(start, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// The pair being served and facts about it.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) not_after: SystemTime,
}

/// State shared by the handle, the resolver and the background task.
struct Shared {
    served: Arc<ArcSwap<Served>>,
    ca_bundle: ArcSwapOption<Vec<u8>>,
    reloads: AtomicU64,
    reload_errors: AtomicU64,
    certificate_tx: watch::Sender<u64>,
    ca_bundle_tx: watch::Sender<u64>,
    /// Shared mode: leadership and the confirmed caBundle, from the caBundle patcher.
    leader: watch::Sender<shared_run::LeaderView>,
}

impl Shared {
    fn new(served: Served, ca_bundle: Option<Vec<u8>>) -> Self {
        Self {
            served: Arc::new(ArcSwap::from_pointee(served)),
            ca_bundle: ArcSwapOption::new(ca_bundle.map(Arc::new)),
            reloads: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
            certificate_tx: watch::Sender::new(0),
            ca_bundle_tx: watch::Sender::new(0),
            leader: watch::Sender::new(shared_run::LeaderView::default()),
        }
    }

    /// Puts a new pair into service and tells watchers.
    fn serve(&self, served: Served) {
        self.serve_counted(served, true);
    }

    /// [`Shared::serve`]; `count: false` for the first real pair after a placeholder, which is
    /// not a reload.
    fn serve_counted(&self, served: Served, count: bool) {
        self.served.store(Arc::new(served));
        let n =
            if count { self.reloads.fetch_add(1, Ordering::SeqCst) + 1 } else { self.reloads.load(Ordering::SeqCst) };
        self.certificate_tx.send_modify(|v| *v = n);
    }

    /// Publishes a new CA bundle and tells watchers (the `caBundle` patcher).
    fn publish_bundle(&self, pem: Vec<u8>) {
        self.ca_bundle.store(Some(Arc::new(pem)));
        self.ca_bundle_tx.send_modify(|n| *n += 1);
    }

    fn count_error(&self) {
        self.reload_errors.fetch_add(1, Ordering::SeqCst);
    }
}

// === impl CertHandle ===

/// Access to the served credentials. Cloning is cheap; the background task stops when the last
/// clone is dropped (a resolver already handed to a server keeps serving the last pair).
#[derive(Clone)]
pub struct CertHandle {
    shared: Arc<Shared>,
    _stop: Arc<oneshot::Sender<()>>,
}

impl CertHandle {
    /// What the server puts into its `rustls::ServerConfig` (`with_cert_resolver`).
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver { served: self.shared.served.clone() })
    }

    /// NotAfter of the leaf being served, for a `*_certificate_expiry_timestamp_seconds` gauge.
    pub fn not_after(&self) -> SystemTime {
        self.shared.served.load().not_after
    }

    /// The leaf being served (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.shared.served.load().key.cert[0].clone()
    }

    /// Self-signed mode: PEM of the current CA plus any previous CA that has not expired, for
    /// `caBundle`. `None` in files mode.
    pub fn ca_bundle(&self) -> Option<Vec<u8>> {
        self.shared.ca_bundle.load_full().map(|b| b.as_ref().clone())
    }

    /// How many times a new certificate was put into service after the initial load.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::SeqCst)
    }

    /// How many new pairs (or rotation attempts) failed and left the old pair serving.
    pub fn reload_errors(&self) -> u64 {
        self.shared.reload_errors.load(Ordering::SeqCst)
    }

    /// Changes each time a new certificate is served; the value is [`CertHandle::reloads`].
    pub fn watch_certificate(&self) -> watch::Receiver<u64> {
        self.shared.certificate_tx.subscribe()
    }

    /// Changes each time a new CA bundle is published (self-signed mode); feed the `caBundle`
    /// patcher from it.
    pub fn watch_ca_bundle(&self) -> watch::Receiver<u64> {
        self.shared.ca_bundle_tx.subscribe()
    }

    /// Shared mode: whether this replica leads, and so creates and rotates the shared CA. Losing
    /// leadership forgets the confirmed `caBundle`. Ignored in other modes.
    pub fn set_leading(&self, leading: bool) {
        self.shared.leader.send_if_modified(|view| {
            if view.leading == leading {
                return false;
            }
            view.leading = leading;
            if !leading {
                view.published = None;
            }
            true
        });
    }

    /// Shared mode: `pem` (a bundle from [`CertHandle::ca_bundle`]) is now the `caBundle` of
    /// every webhook of both configurations, as a patch (or a check that found nothing to patch)
    /// confirmed. A next CA signs only after it has been confirmed for the publish grace.
    /// Ignored in other modes and when not leading.
    pub fn ca_bundle_published(&self, pem: &[u8]) {
        self.shared.leader.send_if_modified(|view| match &view.published {
            _ if !view.leading => false,
            Some(p) if p.bundle == pem => false,
            _ => {
                view.published = Some(Published { bundle: pem.to_vec(), since: SystemTime::now() });
                true
            }
        });
    }
}

impl fmt::Debug for CertHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertHandle")
            .field("not_after", &unix_seconds(self.not_after()))
            .field("self_signed", &self.shared.ca_bundle.load().is_some())
            .field("reloads", &self.reloads())
            .field("reload_errors", &self.reload_errors())
            .finish()
    }
}

/// Hands out the pair being served; a handshake costs one atomic load.
#[derive(Debug)]
struct Resolver {
    served: Arc<ArcSwap<Served>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served.load().key.clone())
    }
}

// === expiry ===

/// How close the served certificate is to expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Expiry {
    Fine,
    Within30Days,
    Within7Days,
    Expired,
}

impl Expiry {
    pub(crate) fn of(not_after: SystemTime, now: SystemTime) -> Self {
        match not_after.duration_since(now) {
            Err(_) => Expiry::Expired,
            Ok(left) if left < 7 * DAY => Expiry::Within7Days,
            Ok(left) if left < 30 * DAY => Expiry::Within30Days,
            Ok(_) => Expiry::Fine,
        }
    }
}

pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;
