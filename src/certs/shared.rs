//! A self-signed CA shared by every replica through a store (in a cluster: the Secret of
//! `cluster::CaSecret`): what is stored, and CA rotation as a pure state machine ([`plan`],
//! [`CaSet::apply`], [`leaf_due`]). The task that runs it is in `shared_run.rs`.
//!
//! # What is stored
//!
//! PEM, under these keys of an `Opaque` Secret (other keys are left alone):
//!
//! - `ca.crt`, `ca.key`: the *current* CA, the only one that signs serving certificates;
//! - `next.crt`, `next.key`: during a rotation, the *next* CA, already in the bundle but not
//!   signing yet;
//! - `previous.crt`: CAs replaced by a rotation that have not expired yet (no keys: they never
//!   sign again).
//!
//! The bundle, which the leader patches into `caBundle`, is previous, current and next, in that
//! order. Only the leader writes, one step per write, each an update carrying the
//! `resourceVersion` it read (a create for the first), so two leaders never both win.
//!
//! # Sequencing: a CA is in the published caBundle before any leaf it signs is served
//!
//! Invariant: every leaf a replica serves is signed by a CA in the `caBundle` the API server
//! uses. [`plan`] picks the leader's next step:
//!
//! 1. **Create**: nothing stored, so a new CA becomes current. Create-only: when another replica
//!    created it first, the winner's is read. Nobody can trust anything before the first
//!    `caBundle` patch, so nothing is lost.
//! 2. **Prune**: previous CAs that have expired leave the bundle. Leaves never outlive their CA,
//!    so no leaf they signed is still valid.
//! 3. **Stage**: when less than a third of [`Timing::ca_validity`] remains on the current CA, a
//!    new CA is stored as next. Replicas add it to their bundle and keep issuing from current.
//!    The leader patches `caBundle` with the grown bundle.
//! 4. **Promote**: once the leader's `caBundle` patch with next in it has succeeded (every webhook
//!    of both configurations carries it: [`Published`]) *and* [`Timing::publish_grace`] has
//!    passed since, for the API servers' informers to see it: current moves to previous, next
//!    becomes current. Replicas notice on their next poll and issue a new leaf from the new
//!    current, which the published bundle already trusts; the leaves they served until then are
//!    signed by the old CA, still in the bundle as previous until it expires.
//!
//! Promotion never waits for replicas, and replicas never need to be quick: the bundle grows
//! before a CA signs and shrinks only by CAs that have expired. If the patch cannot be confirmed
//! (webhook configurations missing, RBAC), promotion waits until the current CA is within the
//! grace of expiring and then happens anyway, logged as a warning: leaves of the old CA would
//! stop verifying at that point regardless.
//!
//! A replica ([`leaf_due`]) issues a new leaf, with a key that never leaves the process, when
//! the current CA is not the one that signed its leaf, or when its leaf has less than
//! [`Timing::renew_before`] left (and a new one would last longer: leaves are cut at the CA's
//! expiry).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::authority::{Ca, ca_name, new_ca, whole_seconds};
use super::{CertError, DEFAULT_CA_VALIDITY, DEFAULT_LEAF_VALIDITY, DEFAULT_RENEW_BEFORE};

/// Data key of the current CA's certificate.
pub(crate) const CA_CRT: &str = "ca.crt";
/// Data key of the current CA's private key.
pub(crate) const CA_KEY: &str = "ca.key";
/// Data key of the next CA's certificate (during a rotation).
pub(crate) const NEXT_CRT: &str = "next.crt";
/// Data key of the next CA's private key (during a rotation).
pub(crate) const NEXT_KEY: &str = "next.key";
/// Data key of the replaced CAs that have not expired.
pub(crate) const PREVIOUS_CRT: &str = "previous.crt";
/// Every data key coder-guard writes; a store keeps any other key as it is.
pub const DATA_KEYS: [&str; 5] = [CA_CRT, CA_KEY, NEXT_CRT, NEXT_KEY, PREVIOUS_CRT];

/// Validities and intervals of a shared self-signed CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Validity of a new CA; it is rotated when less than a third remains.
    pub ca_validity: Duration,
    /// Validity of a serving certificate (never beyond its CA).
    pub leaf_validity: Duration,
    /// A serving certificate is renewed when this much remains.
    pub renew_before: Duration,
    /// How long a next CA stays in the confirmed `caBundle` before it signs.
    pub publish_grace: Duration,
    /// How often every replica reads the store.
    pub poll_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ca_validity: DEFAULT_CA_VALIDITY,
            leaf_validity: DEFAULT_LEAF_VALIDITY,
            renew_before: DEFAULT_RENEW_BEFORE,
            publish_grace: Duration::from_secs(10 * 60),
            poll_interval: Duration::from_secs(30),
        }
    }
}

impl Timing {
    /// Refuses settings that cannot work for a CA signing leaves for `dns_names`.
    pub(crate) fn validate(&self, dns_names: &[String]) -> Result<(), CertError> {
        let bad = |m: String| Err(CertError::SelfSignedConfig(m));
        if dns_names.is_empty() {
            return bad("no DNS names; pass the webhook Service's names (svc, svc.ns, svc.ns.svc)".into());
        }
        if self.renew_before.is_zero() || self.renew_before >= self.leaf_validity {
            return bad(format!(
                "renew-before ({}s) must be more than zero and less than the leaf validity ({}s)",
                self.renew_before.as_secs(),
                self.leaf_validity.as_secs()
            ));
        }
        // A leaf signed by the old CA during the grace period is cut at that CA's expiry; it
        // must still outlive `renew_before`, or renewal would loop.
        if self.renew_before + self.publish_grace >= self.ca_validity / 3 {
            return bad(format!(
                "renew-before ({}s) plus the CA publish grace ({}s) must be less than a third of the CA validity ({}s)",
                self.renew_before.as_secs(),
                self.publish_grace.as_secs(),
                self.ca_validity.as_secs()
            ));
        }
        Ok(())
    }

    /// The default timing for a CA valid `ca_validity`: each duration is the default, capped at a
    /// fixed share of `ca_validity` (leaf a quarter, renewal a third of the leaf, grace 1/30 and
    /// poll 1/60), so a short CA for tests rotates in seconds. The default CA validity gives the
    /// defaults.
    pub fn for_ca_validity(ca_validity: Duration) -> Self {
        let d = Self::default();
        let secs = |t: Duration| Duration::from_secs(t.as_secs().max(1));
        let leaf_validity = d.leaf_validity.min(secs(ca_validity / 4));
        Self {
            ca_validity,
            leaf_validity,
            renew_before: d.renew_before.min(secs(leaf_validity / 3)),
            publish_grace: d.publish_grace.min(secs(ca_validity / 30)),
            poll_interval: d.poll_interval.min(ca_validity / 60).max(Duration::from_millis(250)),
        }
    }
}

// === stored CAs ===

/// A CA certificate as stored.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CaCert {
    pub(crate) pem: String,
    pub(crate) der: CertificateDer<'static>,
    pub(crate) not_after: SystemTime,
    pub(crate) subject: String,
}

impl fmt::Debug for CaCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCert")
            .field("subject", &self.subject)
            .field("not_after", &super::unix_seconds(self.not_after))
            .finish()
    }
}

/// A CA that can sign: its certificate and its private key (PEM, never printed).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SigningCa {
    pub(crate) cert: CaCert,
    key_pem: String,
}

impl fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCa").field("cert", &self.cert).field("key", &"[withheld]").finish()
    }
}

impl SigningCa {
    fn generate(now: SystemTime, validity: Duration) -> Result<Self, CertError> {
        let ca = new_ca(&ca_name(now), now, validity)?;
        let key_pem = ca.issuer.key().serialize_pem();
        let cert = parse_certs(ca.pem.as_bytes())
            .and_then(|mut certs| certs.pop().ok_or_else(|| "no certificate".to_owned()))
            .map_err(|reason| CertError::SelfSignedConfig(format!("the generated CA does not parse: {reason}")))?;
        Ok(Self { cert, key_pem })
    }

    /// Parses a stored pair; the key must belong to the certificate.
    fn parse(cert_key: &str, cert: &[u8], key_name: &str, key: &[u8]) -> Result<Self, String> {
        let mut certs = parse_certs(cert).map_err(|r| format!("{cert_key}: {r}"))?;
        if certs.len() != 1 {
            return Err(format!("{cert_key} must hold exactly one certificate, not {}", certs.len()));
        }
        let cert = certs.remove(0);
        let key_pem = std::str::from_utf8(key).map_err(|_| format!("{key_name} is not PEM text"))?;
        let pair = KeyPair::from_pem(key_pem)
            .map_err(|_| format!("{key_name} is not a PEM PKCS#8 private key (ECDSA P-256/P-384, Ed25519 or RSA)"))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der)
            .map_err(|_| format!("{cert_key} does not parse as X.509"))?;
        if parsed.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
            return Err(format!("{key_name} does not belong to the certificate in {cert_key}"));
        }
        Ok(Self { cert, key_pem: key_pem.to_owned() })
    }

    /// The CA as an rcgen issuer: rcgen copies the subject with its string types and reuses the
    /// subject key identifier, so leaves chain to the stored certificate byte for byte.
    pub(crate) fn ca(&self) -> Result<Ca, CertError> {
        let invalid = |reason: &str| CertError::SelfSignedConfig(format!("the shared CA cannot sign: {reason}"));
        let key = KeyPair::from_pem(&self.key_pem).map_err(|_| invalid("its key does not parse"))?;
        let issuer = Issuer::from_ca_cert_der(&self.cert.der, key)
            .map_err(|e| invalid(&format!("its certificate does not parse ({e})")))?;
        Ok(Ca::stored(issuer, self.cert.pem.clone(), self.cert.not_after))
    }
}

/// Every PEM certificate in `pem`, with its expiry.
fn parse_certs(pem: &[u8]) -> Result<Vec<CaCert>, String> {
    let ders = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "not a PEM certificate".to_owned())?;
    if ders.is_empty() {
        return Err("no PEM certificate".to_owned());
    }
    ders.into_iter()
        .map(|der| {
            let (_, parsed) =
                x509_parser::parse_x509_certificate(&der).map_err(|_| "a certificate does not parse".to_owned())?;
            if !parsed.is_ca() {
                return Err(format!("{} is not a CA certificate", parsed.subject()));
            }
            let not_after = super::files::from_unix(parsed.validity().not_after.timestamp());
            Ok(CaCert { subject: parsed.subject().to_string(), not_after, pem: pem_block(&der), der: der.clone() })
        })
        .collect()
}

/// The PEM block of one certificate.
pub(crate) fn pem_block(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

// === the set ===

/// What the store holds: the current CA, the next one during a rotation, and replaced CAs that
/// have not expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CaSet {
    pub(crate) current: SigningCa,
    pub(crate) next: Option<SigningCa>,
    pub(crate) previous: Vec<CaCert>,
}

impl CaSet {
    /// A set with a fresh CA valid from `now`.
    pub(crate) fn create(now: SystemTime, timing: &Timing) -> Result<Self, CertError> {
        let now = whole_seconds(now);
        Ok(Self { current: SigningCa::generate(now, timing.ca_validity)?, next: None, previous: Vec::new() })
    }

    /// Parses stored data. The reason of an error names the key and never quotes its value.
    pub(crate) fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, String> {
        let get = |key: &str| data.get(key).filter(|v| !v.is_empty());
        let (Some(cert), Some(key)) = (get(CA_CRT), get(CA_KEY)) else {
            if get("tls.key").is_some() {
                return Err(format!(
                    "it has no {CA_KEY} but a tls.key: it is someone else's (cert-manager's CA Secret has this name \
                     too); pick another name with --self-signed-ca-secret"
                ));
            }
            return Err(format!("it has no {CA_CRT} and {CA_KEY}"));
        };
        let current = SigningCa::parse(CA_CRT, cert, CA_KEY, key)?;
        let next = match (get(NEXT_CRT), get(NEXT_KEY)) {
            (Some(cert), Some(key)) => Some(SigningCa::parse(NEXT_CRT, cert, NEXT_KEY, key)?),
            (None, None) => None,
            _ => return Err(format!("it has only one of {NEXT_CRT} and {NEXT_KEY}")),
        };
        let previous = match get(PREVIOUS_CRT) {
            Some(pem) => parse_certs(pem).map_err(|r| format!("{PREVIOUS_CRT}: {r}"))?,
            None => Vec::new(),
        };
        Ok(Self { current, next, previous })
    }

    /// The data to store: every key of [`DATA_KEYS`] that applies (absent ones are removed).
    pub(crate) fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_owned(), v.as_bytes().to_vec());
        };
        put(CA_CRT, &self.current.cert.pem);
        put(CA_KEY, &self.current.key_pem);
        if let Some(next) = &self.next {
            put(NEXT_CRT, &next.cert.pem);
            put(NEXT_KEY, &next.key_pem);
        }
        if !self.previous.is_empty() {
            put(PREVIOUS_CRT, &self.previous.iter().map(|c| c.pem.as_str()).collect::<String>());
        }
        data
    }

    /// The CAs of the bundle, oldest first: previous, current, next.
    pub(crate) fn bundle(&self) -> impl Iterator<Item = &CaCert> {
        self.previous.iter().chain([&self.current.cert]).chain(self.next.as_ref().map(|n| &n.cert))
    }

    /// PEM of [`CaSet::bundle`], for `caBundle`.
    pub(crate) fn bundle_pem(&self) -> Vec<u8> {
        self.bundle().map(|c| c.pem.as_str()).collect::<String>().into_bytes()
    }

    /// The current (signing) CA's certificate.
    pub(crate) fn current(&self) -> &CaCert {
        &self.current.cert
    }

    /// The next CA's certificate, during a rotation.
    pub(crate) fn next(&self) -> Option<&CaCert> {
        self.next.as_ref().map(|n| &n.cert)
    }

    /// The set after `step` (`None` for the wait steps and [`Step::Idle`], or a step that does
    /// not apply). Generates keys for [`Step::Stage`]; [`Step::Create`] is [`CaSet::create`].
    pub(crate) fn apply(&self, step: &Step, now: SystemTime, timing: &Timing) -> Result<Option<Self>, CertError> {
        let now = whole_seconds(now);
        let mut set = self.clone();
        match step {
            Step::Prune => {
                set.previous.retain(|ca| ca.not_after > now);
                set.next = set.next.filter(|n| n.cert.not_after > now);
            }
            Step::Stage if set.next.is_none() => set.next = Some(SigningCa::generate(now, timing.ca_validity)?),
            Step::Promote { .. } => {
                let Some(next) = set.next.take() else { return Ok(None) };
                let old = std::mem::replace(&mut set.current, next);
                set.previous.push(old.cert);
            }
            _ => return Ok(None),
        }
        Ok(Some(set))
    }
}

// === the leader's steps ===

/// The `caBundle` the leader has confirmed in every webhook of both configurations, and since
/// when (first confirmation of these bytes, on this replica, while leading).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) bundle: Vec<u8>,
    pub(crate) since: SystemTime,
}

impl Published {
    fn contains(&self, ca: &CaCert) -> bool {
        CertificateDer::pem_slice_iter(&self.bundle).any(|c| c.is_ok_and(|c| c == ca.der))
    }
}

/// The leader's next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing is stored: create a CA.
    Create,
    /// Drop expired previous CAs (and an expired next one).
    Prune,
    /// Store a new CA as next: it joins the bundle but does not sign yet.
    Stage,
    /// Next becomes current (and signs); current joins the previous CAs. `forced` when the
    /// publication of next could not be confirmed before current nears expiry.
    Promote { forced: bool },
    /// A rotation waits for the `caBundle` patch with next to be confirmed.
    WaitForPublication,
    /// A rotation waits for the grace after publication, until this time.
    WaitForGrace { until: SystemTime },
    /// Nothing to do.
    Idle,
}

/// The leader's next step for `set` (what is stored) at `now`, given the confirmed `published`
/// caBundle. See the module doc for the sequence.
pub(crate) fn plan(set: Option<&CaSet>, published: Option<&Published>, now: SystemTime, timing: &Timing) -> Step {
    let Some(set) = set else { return Step::Create };
    let now = whole_seconds(now);
    let expired = |ca: &CaCert| ca.not_after <= now;
    if set.previous.iter().any(expired) || set.next.as_ref().is_some_and(|n| expired(&n.cert)) {
        return Step::Prune;
    }
    let current = &set.current.cert;
    let Some(next) = &set.next else {
        let rotate = now + timing.ca_validity / 3 >= current.not_after;
        return if rotate { Step::Stage } else { Step::Idle };
    };
    let forced = now + timing.publish_grace >= current.not_after;
    match published.filter(|p| p.contains(&next.cert) && p.contains(current)) {
        Some(p) if now >= p.since + timing.publish_grace => Step::Promote { forced: false },
        _ if forced => Step::Promote { forced: true },
        Some(p) => Step::WaitForGrace { until: p.since + timing.publish_grace },
        None => Step::WaitForPublication,
    }
}

// === a replica's leaf ===

/// The leaf a replica serves: the CA that signed it and its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeafState {
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) not_after: SystemTime,
}

/// Whether a replica serving `leaf` (`None`: no leaf from the shared CA yet) must issue a new
/// one from `set`'s current CA at `now`.
pub(crate) fn leaf_due(set: &CaSet, leaf: Option<&LeafState>, now: SystemTime, timing: &Timing) -> bool {
    let Some(leaf) = leaf else { return true };
    let current = &set.current.cert;
    if leaf.ca != current.der {
        return true;
    }
    let now = whole_seconds(now);
    let fresh = (now + timing.leaf_validity).min(current.not_after);
    now + timing.renew_before >= leaf.not_after && fresh > leaf.not_after
}
