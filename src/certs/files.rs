//! Files mode: parse a PEM chain and key, and the polling task that swaps in changed pairs.
//! Why polling and not inotify or per-connection loading: see the module doc of `certs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::{CertError, Expiry, Served, Shared, next_tick, ticker, unix_seconds};

/// Reads of (cert, key, cert again) before giving up on getting a consistent pair.
const READ_ATTEMPTS: usize = 3;

/// The bytes of both files, read so that a symlink swap between the reads is noticed.
pub(crate) struct Pair {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

impl Pair {
    fn digest(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update((self.cert.len() as u64).to_be_bytes())
            .chain_update(&self.cert)
            .chain_update(&self.key)
            .finalize()
            .into()
    }
}

/// A parsed, consistent pair.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) not_after: SystemTime,
    pub(crate) subject: String,
    pub(crate) serial: String,
    pub(crate) chain_len: usize,
}

/// Parses `pair`: every CERTIFICATE block of the cert file in order (leaf first), the one
/// private key of the key file, and checks that the key belongs to the leaf.
pub(crate) fn parse(pair: &Pair, cert_path: &Path, key_path: &Path) -> Result<Loaded, CertError> {
    let invalid_cert = |reason: String| CertError::InvalidCert { path: cert_path.to_owned(), reason };
    let chain = CertificateDer::pem_slice_iter(&pair.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_cert(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(invalid_cert("no CERTIFICATE block".into()));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| invalid_cert(format!("the first certificate does not parse: {e}")))?;
    let not_after = from_unix(parsed.validity().not_after.timestamp());
    let subject = parsed.subject().to_string();
    let serial = parsed.raw_serial_as_string();

    let key = PrivateKeyDer::from_pem_slice(&pair.key)
        .map_err(|e| CertError::InvalidKey { path: key_path.to_owned(), reason: key_pem_reason(&e) })?;
    let provider = rustls::crypto::ring::default_provider();
    let chain_len = chain.len();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            CertError::KeyMismatch { cert: cert_path.to_owned(), key: key_path.to_owned() }
        }
        rustls::Error::InvalidCertificate(e) => invalid_cert(format!("the first certificate is invalid: {e:?}")),
        _ => CertError::InvalidKey {
            path: key_path.to_owned(),
            reason: "the key type is not supported (use ECDSA P-256/P-384, Ed25519 or RSA)".into(),
        },
    })?;
    Ok(Loaded { key: Arc::new(certified), not_after, subject, serial, chain_len })
}

/// Describes a key-file PEM error without quoting any of the file (base64 errors can carry
/// bytes of the key).
fn key_pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::NoItemsFound => "no PRIVATE KEY block".into(),
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line; the file may be half-written".into(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64".into(),
        _ => "the file is not valid PEM".into(),
    }
}

pub(crate) fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Reads cert, key and the cert again; retries when the cert changed in between (a swap
/// happened mid-read) or a read failed.
pub(crate) async fn read_pair(cert_path: &Path, key_path: &Path) -> Result<Pair, CertError> {
    let read_cert = || async {
        tokio::fs::read(cert_path).await.map_err(|source| CertError::ReadCert { path: cert_path.to_owned(), source })
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let cert = read_cert().await?;
            let key = tokio::fs::read(key_path)
                .await
                .map_err(|source| CertError::ReadKey { path: key_path.to_owned(), source })?;
            let again = read_cert().await?;
            Ok::<_, CertError>((cert, key, again))
        }
        .await;
        match result {
            Ok((cert, key, again)) if cert == again || attempt >= READ_ATTEMPTS => return Ok(Pair { cert, key }),
            Err(e) if attempt >= READ_ATTEMPTS => return Err(e),
            _ => tokio::task::yield_now().await,
        }
    }
}

// === impl Watcher ===

/// Files-mode state kept by the background task.
pub(crate) struct Watcher {
    cert: PathBuf,
    key: PathBuf,
    current: Loaded,
    /// Digest of the served pair's bytes.
    served_digest: [u8; 32],
    /// Digest of the last pair (or read error) that failed, so it is reported once.
    failed_digest: Option<[u8; 32]>,
    /// The worst expiry level already logged for the served certificate.
    warned: Expiry,
}

impl Watcher {
    /// The initial load: any failure is returned, so the process can fail fast.
    pub(crate) async fn load(cert: PathBuf, key: PathBuf) -> Result<Self, CertError> {
        let pair = read_pair(&cert, &key).await?;
        let current = parse(&pair, &cert, &key)?;
        tracing::info!(
            cert = %cert.display(),
            subject = %current.subject,
            serial = %current.serial,
            chain = current.chain_len,
            not_after = unix_seconds(current.not_after),
            "serving certificate loaded"
        );
        Ok(Self { served_digest: pair.digest(), cert, key, current, failed_digest: None, warned: Expiry::Fine })
    }

    pub(crate) fn served(&self) -> Served {
        Served { key: self.current.key.clone(), not_after: self.current.not_after }
    }

    /// One poll: re-read both files; swap in a changed pair that parses, otherwise keep serving.
    pub(crate) async fn poll(&mut self, shared: &Shared) {
        let pair = match read_pair(&self.cert, &self.key).await {
            Ok(pair) => pair,
            Err(e) => {
                let digest: [u8; 32] = Sha256::digest(e.to_string().as_bytes()).into();
                self.fail(shared, digest, &e);
                return;
            }
        };
        let digest = pair.digest();
        if digest == self.served_digest {
            self.failed_digest = None;
            return;
        }
        if Some(digest) == self.failed_digest {
            return;
        }
        match parse(&pair, &self.cert, &self.key) {
            Ok(loaded) => {
                tracing::info!(
                    cert = %self.cert.display(),
                    subject = %loaded.subject,
                    serial = %loaded.serial,
                    chain = loaded.chain_len,
                    not_after = unix_seconds(loaded.not_after),
                    "serving certificate reloaded"
                );
                self.current = loaded;
                self.served_digest = digest;
                self.failed_digest = None;
                self.warned = Expiry::Fine;
                shared.serve(self.served());
            }
            Err(e) => self.fail(shared, digest, &e),
        }
    }

    fn fail(&mut self, shared: &Shared, digest: [u8; 32], e: &CertError) {
        if self.failed_digest == Some(digest) {
            return;
        }
        self.failed_digest = Some(digest);
        shared.count_error();
        tracing::warn!(
            error = %e,
            serving_serial = %self.current.serial,
            "new serving certificate not loaded; still serving the previous one (retried when the files change)"
        );
    }

    /// Warns once each time the served certificate crosses 30 days, 7 days and expiry.
    pub(crate) fn check_expiry(&mut self, now: SystemTime) {
        let level = Expiry::of(self.current.not_after, now);
        if level <= self.warned {
            return;
        }
        self.warned = level;
        let days_left = self.current.not_after.duration_since(now).map(|d| d.as_secs() / 86_400).unwrap_or(0);
        let cert = self.cert.display();
        let (not_after, serial) = (unix_seconds(self.current.not_after), &self.current.serial);
        match level {
            Expiry::Fine => {}
            Expiry::Within30Days => tracing::warn!(
                %cert, %serial, not_after, days_left,
                "serving certificate expires in less than 30 days; renew it (cert-manager renews on its own)"
            ),
            Expiry::Within7Days => tracing::warn!(
                %cert, %serial, not_after, days_left,
                "serving certificate expires in less than 7 days; renew it now or the API server will reject the webhook"
            ),
            Expiry::Expired => tracing::error!(
                %cert, %serial, not_after,
                "serving certificate has expired; the API server rejects the webhook until it is renewed"
            ),
        }
    }
}

/// The files-mode background task.
pub(crate) async fn run(mut watcher: Watcher, shared: Arc<Shared>, every: Duration, mut stop: oneshot::Receiver<()>) {
    let mut interval = ticker(every);
    while next_tick(&mut interval, &mut stop).await.is_some() {
        watcher.poll(&shared).await;
        watcher.check_expiry(SystemTime::now());
    }
    tracing::debug!(cert = %watcher.cert.display(), "certificate reload task stopped");
}
