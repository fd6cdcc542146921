//! `Lookup`: what rules may know about other objects, and `Index`, the in-memory
//! implementation fed by both the `check` manifest set and the cluster cache; `Overlay` layers
//! freshly confirmed objects over another `Lookup`.
//!
//! Secrets are kept as key names plus a SHA-256 digest of each value; no value is stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::kind::Kind;

/// The answer to a lookup.
#[derive(Clone, Debug, PartialEq)]
pub enum Found<T> {
    /// The object exists.
    Present(T),
    /// The object does not exist (the source is authoritative).
    Absent,
    /// The source cannot tell (offline input that does not contain it).
    Unknown,
}

/// An object's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What is known about one Secret value: whether it is empty, and its SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueDigest {
    pub empty: bool,
    pub sha256: [u8; 32],
}

impl ValueDigest {
    /// Digest of raw bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self { empty: bytes.is_empty(), sha256: Sha256::digest(bytes).into() }
    }

    /// `sha256:` and the lowercase hex of the SHA-256: the checksum annotation's value.
    pub fn checksum(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = *b"sha256:0000000000000000000000000000000000000000000000000000000000000000";
        for (i, b) in self.sha256.iter().enumerate() {
            out[7 + 2 * i] = HEX[usize::from(b >> 4)];
            out[8 + 2 * i] = HEX[usize::from(b & 0x0f)];
        }
        String::from_utf8(out.to_vec()).expect("ASCII")
    }
}

/// What is known about a Secret: its keys and value digests (sorted by key; a vector, not a
/// map, because a Secret has few keys and an index may hold tens of thousands of Secrets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretInfo {
    /// Key names with their digests; `None` for a key assumed to exist (value unknown).
    keys: Vec<(Box<str>, Option<ValueDigest>)>,
    /// Assumed to exist with any key (`check --assume-secret NS/NAME`).
    any_key: bool,
}

/// The state of one key of a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Missing,
    Empty,
    Present,
}

impl SecretInfo {
    /// Builds from a Secret object's `data` (base64) and `stringData`, digesting the values.
    pub fn from_object(secret: &Value) -> Self {
        use base64::Engine as _;
        let mut keys = BTreeMap::<&str, ValueDigest>::new();
        if let Some(Value::Object(data)) = secret.get("data") {
            for (k, v) in data {
                let raw = v.as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw.trim())
                    .unwrap_or_else(|_| raw.as_bytes().to_vec());
                keys.insert(k, ValueDigest::of(&bytes));
            }
        }
        if let Some(Value::Object(data)) = secret.get("stringData") {
            for (k, v) in data {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                keys.insert(k, ValueDigest::of(s.as_bytes()));
            }
        }
        Self { keys: keys.into_iter().map(|(k, d)| (k.into(), Some(d))).collect(), any_key: false }
    }

    /// The digest of `key`'s value, when the key exists and its value is known (not for keys
    /// only assumed to exist).
    pub fn digest(&self, key: &str) -> Option<&ValueDigest> {
        self.entry(key).and_then(Option::as_ref)
    }

    fn entry(&self, key: &str) -> Option<&Option<ValueDigest>> {
        self.keys.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &self.keys[i].1)
    }

    fn set(&mut self, key: &str, digest: Option<ValueDigest>) {
        match self.keys.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => self.keys[i].1 = digest,
            Err(i) => self.keys.insert(i, (key.into(), digest)),
        }
    }

    /// The state of `key`.
    pub fn key(&self, key: &str) -> KeyState {
        match self.entry(key) {
            Some(Some(d)) if d.empty => KeyState::Empty,
            Some(_) => KeyState::Present,
            None if self.any_key => KeyState::Present,
            None => KeyState::Missing,
        }
    }
}

/// Which coderd an object talks to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Coderd {
    /// Through a `CoderInstance` of this name.
    Instance(String),
    /// Through a `CoderControlPlane` of this name.
    ControlPlane(String),
}

/// A coderd-side object that at most one resource may manage. Names are normalized the way
/// coderd compares them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    Organization {
        namespace: String,
        instance: String,
        name: String,
    },
    AiProvider {
        namespace: String,
        instance: String,
        name: String,
    },
    ProvisionerKey {
        namespace: String,
        coderd: Coderd,
        organization: String,
        name: String,
    },
    /// The license of the coderd behind a control plane.
    License {
        namespace: String,
        control_plane: String,
    },
    /// A `CoderInstance` that fronts this control plane.
    InstanceOf {
        namespace: String,
        control_plane: String,
    },
    /// Deployment-wide state (appearance, organization sync, license) of one coderd,
    /// identified by its normalized URL or `<namespace>/<control plane>`.
    DeploymentState {
        coderd: String,
    },
    /// A Secret whose data the operator or the reconcile loop writes.
    WrittenSecret {
        namespace: String,
        name: String,
    },
}

/// Read access to other objects, for rules.
pub trait Lookup {
    /// The Secret `namespace/name`.
    fn secret(&self, namespace: &str, name: &str) -> Found<Arc<SecretInfo>>;
    /// A `CoderControlPlane`, `CoderInstance` or `CoderProvisionerKey`: the fields kept of it
    /// (`INDEXED_FIELDS`) as compact JSON text, for the caller to decode into the view it needs.
    fn object(&self, kind: Kind, namespace: &str, name: &str) -> Found<Arc<str>>;
    /// Every object that makes `claim`, in a stable order.
    fn claimants(&self, claim: &Claim) -> Vec<ObjectKey>;
}

/// Kinds an `Index` keeps for `Lookup::object`, with the fields it keeps of each: what rules
/// and mutations read of a referenced object. Everything else is dropped to keep the index
/// small (a control plane's pod settings can be kilobytes).
pub const INDEXED_FIELDS: [(Kind, &[&str]); 3] = [
    (
        Kind::CoderControlPlane,
        &[
            "/spec/licenseSecretRef",
            "/spec/operatorAccess",
            "/status/url",
            "/status/operatorTokenSecretRef",
            "/status/operatorAccessReady",
        ],
    ),
    (
        Kind::CoderInstance,
        &["/spec/url", "/spec/controlPlaneRef", "/spec/tokenSecretRef", "/spec/caSecretRef", "/spec/license"],
    ),
    (Kind::CoderProvisionerKey, &["/spec/secretName", "/spec/secretKey"]),
];

/// The part of `object` an `Index` keeps: type, name, namespace and `fields`.
fn retained(object: &Value, fields: &[&str]) -> Value {
    let mut out = serde_json::json!({});
    let mut copy = |pointer: &str| {
        let Some(v) = object.pointer(pointer) else { return };
        let mut target = &mut out;
        let mut parts = pointer.split('/').skip(1).peekable();
        while let Some(part) = parts.next() {
            let map = target.as_object_mut().expect("built from objects");
            if parts.peek().is_none() {
                map.insert(part.to_owned(), v.clone());
                return;
            }
            target = map.entry(part).or_insert_with(|| serde_json::json!({}));
        }
    };
    ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace"]
        .into_iter()
        .chain(fields.iter().copied())
        .for_each(&mut copy);
    out
}

/// An in-memory `Lookup`.
#[derive(Debug, Default)]
pub struct Index {
    secrets: HashMap<(String, String), Arc<SecretInfo>>,
    /// Retained fields of indexed objects, as compact JSON text: parsed `Value`s added 4 MiB
    /// to `check`'s peak on 10,000 documents, and consumers decode a typed view from the text
    /// directly (for the webhook's provisioner-key lookup, 0.25 µs more than from a `Value`).
    objects: HashMap<ObjectKey, Arc<str>>,
    claims: HashMap<Claim, Vec<ObjectKey>>,
    /// The claims each non-Secret object makes (possibly none), to forget them on removal and
    /// to know which keys an index holds.
    claimed_by: HashMap<ObjectKey, Vec<Claim>>,
    /// When true a miss is `Absent`; when false it is `Unknown`.
    authoritative: bool,
}

impl Index {
    /// An empty index. `authoritative` says whether a miss proves absence.
    pub fn new(authoritative: bool) -> Self {
        Self { authoritative, ..Self::default() }
    }

    /// Adds (or replaces) an object; kinds the engine does not know are ignored.
    pub fn insert(&mut self, object: &Value, default_namespace: &str) {
        let Some(kind) = Kind::of(object) else { return };
        let meta = object.get("metadata");
        let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(default_namespace);
        let key = ObjectKey { kind, namespace: namespace.to_owned(), name: name.to_owned() };
        self.remove(&key);
        if kind == Kind::Secret {
            self.secrets.insert((key.namespace, key.name), Arc::new(SecretInfo::from_object(object)));
            return;
        }
        let claims = super::claims::claims_of(kind, object, namespace);
        for claim in &claims {
            let owners = self.claims.entry(claim.clone()).or_default();
            owners.push(key.clone());
            owners.sort();
        }
        // Recorded even when empty: `absorb` replaces exactly the keys listed here, so an
        // object that claims nothing and keeps no fields still replaces an earlier one.
        self.claimed_by.insert(key.clone(), claims);
        if let Some((_, fields)) = INDEXED_FIELDS.iter().find(|(k, _)| *k == kind) {
            self.objects.insert(key, retained(object, fields).to_string().into());
        }
    }

    /// Records a Secret assumed to exist: with `key`, that key is present; without, any key is.
    pub fn assume_secret(&mut self, namespace: &str, name: &str, key: Option<&str>) {
        let entry = self.secrets.entry((namespace.to_owned(), name.to_owned())).or_default();
        let info = Arc::make_mut(entry);
        match key {
            Some(k) => info.set(k, None),
            None => info.any_key = true,
        }
    }

    /// Forgets an object.
    pub fn remove(&mut self, key: &ObjectKey) {
        if key.kind == Kind::Secret {
            self.secrets.remove(&(key.namespace.clone(), key.name.clone()));
            return;
        }
        self.objects.remove(key);
        for claim in self.claimed_by.remove(key).unwrap_or_default() {
            if let Some(owners) = self.claims.get_mut(&claim) {
                owners.retain(|o| o != key);
                if owners.is_empty() {
                    self.claims.remove(&claim);
                }
            }
        }
    }

    /// Moves every entry of `other` into this index, replacing entries with the same key: the
    /// same as inserting `other`'s objects here one by one. A cache stages a relist in a
    /// separate index (Secrets reduced to digests on arrival) and applies it in one step with
    /// this; `check` indexes files separately and absorbs them in input order. `other`'s
    /// authority is ignored.
    pub fn absorb(&mut self, other: Index) {
        let Index { secrets, objects, claimed_by, .. } = other;
        self.secrets.extend(secrets);
        // Every non-Secret object `other` holds has a `claimed_by` entry, claims or not.
        for key in claimed_by.keys() {
            self.remove(key);
        }
        self.objects.extend(objects);
        for (key, claims) in claimed_by {
            for claim in &claims {
                let owners = self.claims.entry(claim.clone()).or_default();
                owners.push(key.clone());
                owners.sort();
            }
            self.claimed_by.insert(key, claims);
        }
    }

    fn miss<T>(&self) -> Found<T> {
        if self.authoritative { Found::Absent } else { Found::Unknown }
    }
}

impl Lookup for Index {
    fn secret(&self, namespace: &str, name: &str) -> Found<Arc<SecretInfo>> {
        match self.secrets.get(&(namespace.to_owned(), name.to_owned())) {
            Some(s) => Found::Present(s.clone()),
            None => self.miss(),
        }
    }

    fn object(&self, kind: Kind, namespace: &str, name: &str) -> Found<Arc<str>> {
        let key = ObjectKey { kind, namespace: namespace.to_owned(), name: name.to_owned() };
        match self.objects.get(&key) {
            Some(text) => Found::Present(text.clone()),
            None => self.miss(),
        }
    }

    fn claimants(&self, claim: &Claim) -> Vec<ObjectKey> {
        self.claims.get(claim).cloned().unwrap_or_default()
    }
}

// === impl Overlay ===

/// A `Lookup` that answers for freshly confirmed objects from `fresh` and for everything else
/// from `base`. The webhook confirms a cache miss with a live read before it denies; this
/// layers that read over the cache for a second evaluation.
pub struct Overlay<'a> {
    /// What exists now, for the keys in `confirmed` (typically authoritative).
    fresh: &'a Index,
    /// Keys `fresh` answers for, present or absent.
    confirmed: BTreeSet<ObjectKey>,
    /// Answers for every other key.
    base: &'a dyn Lookup,
}

impl<'a> Overlay<'a> {
    /// `fresh` answers for `confirmed`; `base` for the rest.
    pub fn new(fresh: &'a Index, confirmed: impl IntoIterator<Item = ObjectKey>, base: &'a dyn Lookup) -> Self {
        Self { fresh, confirmed: confirmed.into_iter().collect(), base }
    }

    fn confirms(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        self.confirmed.contains(&ObjectKey { kind, namespace: namespace.to_owned(), name: name.to_owned() })
    }
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("fresh", self.fresh).field("confirmed", &self.confirmed).finish_non_exhaustive()
    }
}

impl Lookup for Overlay<'_> {
    fn secret(&self, namespace: &str, name: &str) -> Found<Arc<SecretInfo>> {
        if self.confirms(Kind::Secret, namespace, name) {
            self.fresh.secret(namespace, name)
        } else {
            self.base.secret(namespace, name)
        }
    }

    fn object(&self, kind: Kind, namespace: &str, name: &str) -> Found<Arc<str>> {
        if self.confirms(kind, namespace, name) {
            self.fresh.object(kind, namespace, name)
        } else {
            self.base.object(kind, namespace, name)
        }
    }

    /// The base's claimants minus confirmed keys, plus the confirmed objects that make the
    /// claim now.
    fn claimants(&self, claim: &Claim) -> Vec<ObjectKey> {
        let mut owners: Vec<ObjectKey> =
            self.base.claimants(claim).into_iter().filter(|k| !self.confirmed.contains(k)).collect();
        owners.extend(self.fresh.claimants(claim).into_iter().filter(|k| self.confirmed.contains(k)));
        owners.sort();
        owners.dedup();
        owners
    }
}

#[cfg(test)]
mod tests;
