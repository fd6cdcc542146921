//! The in-memory self-signed CA behind `--self-signed`, and the key and certificate builders
//! that `certs generate` shares.
//!
//! Rules (after cert-manager's dynamic authority, Kyverno's renewer and cert-controller):
//!
//! - The CA is ECDSA P-256, valid [`Options::ca_validity`](super::Options) (a year), and is
//!   replaced once less than a third of its life remains.
//! - The leaf is ECDSA P-256 for the configured DNS names, valid `validity` (30 days by default)
//!   but never beyond its CA, and renewed once `renew_before` remains.
//! - Every NotBefore is backdated by [`BACKDATE`] for clock skew.
//! - The bundle holds every CA that has not expired: after a rotation it holds the old and the
//!   new CA, so the API server trusts leaves of either (Kyverno's overlap).
//! - Ordering: a new CA is *published* (added to the bundle, which the caller stores and
//!   announces before anything else) and only starts signing once `publish_grace` has passed;
//!   then a leaf signed by it replaces the current one. The old CA leaves the bundle when it
//!   expires.
//!
//! [`Authority::tick`] applies these rules at a given time, so tests can drive a year of
//! rotations with a fake clock. It never does I/O.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::oneshot;

use super::{BACKDATE, CertError, Served, Shared, Timing, next_tick, ticker, unix_seconds};

/// What `--dev` was asked for: the serving certificate's names and the validities and
/// intervals, the same [`Timing`] as a shared CA's (its poll interval is how often the rotation
/// is checked).
#[derive(Clone, Debug)]
pub struct Settings {
    pub dns_names: Vec<String>,
    pub timing: Timing,
}

/// A CA that can sign, with its certificate.
pub(crate) struct Ca {
    id: u64,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) pem: String,
    issued: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl Ca {
    /// A CA read back from storage (a shared CA's Secret): its issuer, certificate and expiry.
    pub(crate) fn stored(issuer: Issuer<'static, KeyPair>, pem: String, not_after: SystemTime) -> Self {
        Self { id: 0, issuer, pem, issued: not_after, not_after }
    }

    /// When less than a third of the CA's life remains.
    fn rotate_at(&self) -> SystemTime {
        let life = self.not_after.duration_since(self.issued).unwrap_or_default();
        self.issued + life * 2 / 3
    }
}

/// Builds a self-signed ECDSA P-256 CA valid from `now - BACKDATE` to `now + validity`.
pub(crate) fn new_ca(common_name: &str, now: SystemTime, validity: Duration) -> Result<Ca, CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| gen_error("CA key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.distinguished_name.push(DnType::OrganizationName, "coder-guard");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + validity).into();
    let cert = params.self_signed(&key).map_err(|e| gen_error("CA certificate", e))?;
    Ok(Ca { id: 0, pem: cert.pem(), issuer: Issuer::new(params, key), issued: now, not_after: now + validity })
}

/// A serving certificate and its key.
pub(crate) struct Leaf {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) pem: String,
    pub(crate) key: KeyPair,
}

/// Builds an ECDSA P-256 serving certificate for `dns_names`, signed by `ca`, valid from
/// `now - BACKDATE` to `not_after`.
pub(crate) fn new_leaf(
    ca: &Ca,
    dns_names: &[String],
    now: SystemTime,
    not_after: SystemTime,
) -> Result<Leaf, CertError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| gen_error("serving key", e))?;
    let mut params = CertificateParams::new(dns_names.to_vec()).map_err(|e| gen_error("serving certificate", e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, dns_names[0].as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - BACKDATE).into();
    params.not_after = not_after.into();
    let cert = params.signed_by(&key, &ca.issuer).map_err(|e| gen_error("serving certificate", e))?;
    Ok(Leaf { der: cert.der().clone(), pem: cert.pem(), key })
}

fn gen_error(what: &'static str, source: rcgen::Error) -> CertError {
    CertError::Generate { what, source }
}

/// Drops sub-second precision: certificates carry whole seconds, and the rotation arithmetic
/// must agree with what the certificates say.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// The leaf being served.
struct Current {
    key: Arc<CertifiedKey>,
    ca_id: u64,
    not_after: SystemTime,
}

// === impl Authority ===

/// The self-signed CA state machine.
pub struct Authority {
    settings: Settings,
    /// The published bundle, oldest first; the last one is the newest CA.
    cas: Vec<Ca>,
    /// The CA that signs leaves.
    signing: u64,
    /// When the newest CA was published.
    published_at: SystemTime,
    next_id: u64,
    leaf: Current,
    bundle_version: u64,
    leaf_version: u64,
}

impl Authority {
    /// A fresh CA and leaf at `now`.
    pub fn new(settings: Settings, now: SystemTime) -> Result<Self, CertError> {
        settings.timing.validate(&settings.dns_names)?;
        let now = whole_seconds(now);
        let ca = new_ca(&ca_name(now), now, settings.timing.ca_validity)?;
        let leaf = issue(&settings, &ca, now)?;
        Ok(Self {
            settings,
            cas: vec![ca],
            signing: 0,
            published_at: now,
            next_id: 1,
            leaf,
            bundle_version: 0,
            leaf_version: 0,
        })
    }

    /// Applies the rotation rules at `now`. On error the state stays consistent (the old CA and
    /// leaf keep serving) and the same step is retried on the next tick; the versions tell the
    /// caller what changed either way.
    pub fn tick(&mut self, now: SystemTime) -> Result<(), CertError> {
        let now = whole_seconds(now);

        let before = self.cas.len();
        let signing = self.signing;
        self.cas.retain(|ca| ca.id == signing || ca.not_after > now);
        if self.cas.len() != before {
            self.bundle_version += 1;
        }

        let newest = self.cas.last().expect("the signing CA is never pruned");
        if now >= newest.rotate_at() {
            let mut ca = new_ca(&ca_name(now), now, self.settings.timing.ca_validity)?;
            ca.id = self.next_id;
            self.next_id += 1;
            self.cas.push(ca);
            self.published_at = now;
            self.bundle_version += 1;
        }

        let newest = self.cas.last().expect("the bundle is never empty");
        if newest.id != self.signing && now >= self.published_at + self.settings.timing.publish_grace {
            self.signing = newest.id;
        }

        if self.leaf.ca_id != self.signing || now + self.settings.timing.renew_before >= self.leaf.not_after {
            self.leaf = issue(&self.settings, self.signing_ca(), now)?;
            self.leaf_version += 1;
        }
        Ok(())
    }

    fn signing_ca(&self) -> &Ca {
        self.cas.iter().find(|ca| ca.id == self.signing).expect("the signing CA is in the bundle")
    }

    /// PEM of every CA in the bundle, oldest first.
    pub fn bundle_pem(&self) -> Vec<u8> {
        self.cas.iter().map(|ca| ca.pem.as_str()).collect::<String>().into_bytes()
    }

    /// DER of every CA in the bundle, oldest first.
    #[cfg(test)]
    pub fn bundle_der(&self) -> Vec<CertificateDer<'static>> {
        use rustls_pki_types::pem::PemObject;
        self.cas.iter().map(|ca| CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).collect()
    }

    /// Bumped each time the bundle changes.
    pub fn bundle_version(&self) -> u64 {
        self.bundle_version
    }

    /// Bumped each time a new leaf is issued.
    pub fn leaf_version(&self) -> u64 {
        self.leaf_version
    }

    /// The leaf being served (DER).
    #[cfg(test)]
    pub fn leaf_der(&self) -> CertificateDer<'static> {
        self.leaf.key.cert[0].clone()
    }

    /// NotAfter of the leaf being served.
    pub fn leaf_not_after(&self) -> SystemTime {
        self.leaf.not_after
    }

    pub(crate) fn served(&self) -> Served {
        Served { key: self.leaf.key.clone(), not_after: self.leaf.not_after }
    }
}

pub(crate) fn ca_name(now: SystemTime) -> String {
    format!("coder-guard self-signed CA {}", unix_seconds(now))
}

/// Issues a leaf signed by `ca`, cut at the CA's expiry.
fn issue(settings: &Settings, ca: &Ca, now: SystemTime) -> Result<Current, CertError> {
    let (key, not_after) = issue_certified(&settings.dns_names, settings.timing.leaf_validity, ca, now)?;
    Ok(Current { key, ca_id: ca.id, not_after })
}

/// A leaf for `dns_names` signed by `ca`, valid `validity` but cut at the CA's expiry, ready for
/// rustls; and its NotAfter. `now` must be whole seconds.
pub(crate) fn issue_certified(
    dns_names: &[String],
    validity: Duration,
    ca: &Ca,
    now: SystemTime,
) -> Result<(Arc<CertifiedKey>, SystemTime), CertError> {
    let not_after = (now + validity).min(ca.not_after);
    let leaf = new_leaf(ca, dns_names, now, not_after)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der()));
    let certified = CertifiedKey::from_der(vec![leaf.der], key, &rustls::crypto::ring::default_provider())
        .map_err(|e| CertError::SelfSignedConfig(format!("rustls rejected the generated key: {e}")))?;
    Ok((Arc::new(certified), not_after))
}

/// The self-signed background task: ticks, then publishes the bundle *before* serving a leaf.
pub(crate) async fn run(
    mut authority: Authority,
    shared: Arc<Shared>,
    every: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut interval = ticker(every);
    let (mut bundle_seen, mut leaf_seen) = (authority.bundle_version(), authority.leaf_version());
    while next_tick(&mut interval, &mut stop).await.is_some() {
        let result = authority.tick(SystemTime::now());
        if authority.bundle_version() != bundle_seen {
            bundle_seen = authority.bundle_version();
            shared.publish_bundle(authority.bundle_pem());
            tracing::info!(
                cas = authority.cas.len(),
                newest_not_after = authority.cas.last().map(|ca| unix_seconds(ca.not_after)),
                "self-signed CA bundle published"
            );
        }
        if authority.leaf_version() != leaf_seen {
            leaf_seen = authority.leaf_version();
            shared.serve(authority.served());
            tracing::info!(
                not_after = unix_seconds(authority.leaf_not_after()),
                ca = authority.signing,
                "self-signed serving certificate renewed"
            );
        }
        if let Err(e) = result {
            shared.count_error();
            tracing::warn!(error = %e, "self-signed rotation failed; still serving the previous certificate, retrying");
        }
    }
    tracing::debug!("self-signed rotation task stopped");
}
