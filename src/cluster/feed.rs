//! One watch's events applied to the shared `Index`: a small synchronous state machine, fed
//! hand-built events in tests. No I/O here.
//!
//! A relist (`Init`, `InitApply`…, `InitDone`) is staged in an index of its own, where a Secret
//! is reduced to digests as it arrives, and replaces this watch's entries in one step at
//! `InitDone`: readers never see half a relist, and objects deleted while the watch was down
//! disappear. Watches partition the index (one per kind and namespace), so a watch only ever
//! removes keys it added itself.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock, RwLockWriteGuard};

use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::{Map, Value};

use crate::policy::{Index, Kind, ObjectKey};

/// Why an object was not indexed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// `metadata.name` is missing or empty.
    #[error("it has no metadata.name")]
    NoName,
    /// `metadata.namespace` is missing or empty (every watched kind is namespaced).
    #[error("it has no metadata.namespace")]
    NoNamespace,
    /// The object is outside the namespace this watch covers.
    #[error("it is outside the watched namespace {0}")]
    OutOfScope(String),
    /// The object's body is not a JSON object.
    #[error("its body is not a JSON object")]
    NotAnObject,
}

/// The part of a watched object the index needs, as the raw JSON `Index::insert` takes:
/// `apiVersion` and `kind` of the watched resource (list items of built-in kinds carry
/// neither), `metadata.name` and `metadata.namespace` only (a Secret's annotations may hold its
/// values in `last-applied-configuration`), and the body (of a Secret: `data` and `stringData`).
/// Consumes `object`, so nothing outlives the caller's use of the result.
pub fn reduce(kind: Kind, scope: Option<&str>, object: DynamicObject) -> Result<(ObjectKey, Value), Skip> {
    let DynamicObject { metadata, data, .. } = object;
    let name = metadata.name.filter(|n| !n.is_empty()).ok_or(Skip::NoName)?;
    let namespace = metadata.namespace.filter(|n| !n.is_empty()).ok_or(Skip::NoNamespace)?;
    if let Some(scope) = scope.filter(|s| *s != namespace) {
        return Err(Skip::OutOfScope(scope.to_owned()));
    }
    let Value::Object(mut body) = data else { return Err(Skip::NotAnObject) };
    if kind == Kind::Secret {
        body.retain(|k, _| k == "data" || k == "stringData");
    }
    let resource = super::api_resource(kind);
    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(name.clone()));
    meta.insert("namespace".into(), Value::String(namespace.clone()));
    body.insert("apiVersion".into(), Value::String(resource.api_version));
    body.insert("kind".into(), Value::String(resource.kind));
    body.insert("metadata".into(), Value::Object(meta));
    Ok((ObjectKey { kind, namespace, name }, Value::Object(body)))
}

/// A relist in progress.
#[derive(Debug, Default)]
struct Staging {
    index: Index,
    seen: HashSet<ObjectKey>,
}

/// The state of one watch: a kind, optionally limited to one namespace.
#[derive(Debug)]
pub struct Feed {
    kind: Kind,
    namespace: Option<String>,
    /// Keys this watch has put into the shared index.
    known: HashSet<ObjectKey>,
    staging: Option<Staging>,
    /// Whether a first full list has completed.
    synced: bool,
}

impl Feed {
    /// A watch of `kind` in `namespace` (all namespaces when `None`).
    pub fn new(kind: Kind, namespace: Option<String>) -> Self {
        Self { kind, namespace, known: HashSet::new(), staging: None, synced: false }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Applies one event; returns true when it completed the first full list.
    pub fn handle(&mut self, index: &RwLock<Index>, event: Event<DynamicObject>) -> bool {
        match event {
            Event::Init => {
                self.staging = Some(Staging::default());
                false
            }
            Event::InitApply(object) => {
                self.stage(object);
                false
            }
            Event::InitDone => self.commit(index),
            // `Apply` inside a relist does not happen with kube's watcher; stage it if it does.
            Event::Apply(object) if self.staging.is_some() => {
                self.stage(object);
                false
            }
            Event::Apply(object) => {
                if let Some((key, value)) = self.reduce(object) {
                    write(index).insert(&value, &key.namespace);
                    self.known.insert(key);
                }
                false
            }
            Event::Delete(object) => {
                let Some((key, _)) = self.reduce(object) else { return false };
                match &mut self.staging {
                    Some(staging) => {
                        staging.index.remove(&key);
                        staging.seen.remove(&key);
                    }
                    None => {
                        write(index).remove(&key);
                        self.known.remove(&key);
                    }
                }
                false
            }
        }
    }

    /// The resource is not served (its CRD is not installed): no such object can exist, so
    /// this is an empty full list. Returns true when it completed the first full list.
    pub fn not_served(&mut self, index: &RwLock<Index>) -> bool {
        self.staging = Some(Staging::default());
        self.commit(index)
    }

    fn stage(&mut self, object: DynamicObject) {
        let Some((key, value)) = self.reduce(object) else { return };
        let staging = self.staging.get_or_insert_with(Staging::default);
        staging.index.insert(&value, &key.namespace);
        staging.seen.insert(key);
    }

    fn commit(&mut self, index: &RwLock<Index>) -> bool {
        let Staging { index: staged, seen } = self.staging.take().unwrap_or_default();
        {
            let mut index = write(index);
            for key in &self.known {
                index.remove(key);
            }
            index.absorb(staged);
        }
        self.known = seen;
        let first = !self.synced;
        self.synced = true;
        first
    }

    fn reduce(&self, object: DynamicObject) -> Option<(ObjectKey, Value)> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let namespace = object.metadata.namespace.clone().unwrap_or_default();
        match reduce(self.kind, self.namespace.as_deref(), object) {
            Ok(reduced) => Some(reduced),
            Err(reason) => {
                tracing::warn!(kind = %self.kind, namespace, name, %reason, "cluster cache: skipping an object");
                None
            }
        }
    }
}

/// The write lock, recovered from poisoning: the index stays consistent between calls.
pub fn write(index: &RwLock<Index>) -> RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::{Found, Lookup};

    fn object(kind: Kind, namespace: &str, name: &str, body: Value) -> DynamicObject {
        DynamicObject::new(name, &super::super::api_resource(kind)).within(namespace).data(body)
    }

    fn secret(namespace: &str, name: &str) -> DynamicObject {
        object(Kind::Secret, namespace, name, json!({"type": "Opaque", "data": {"token": "dG9rZW4="}}))
    }

    fn instance(namespace: &str, name: &str) -> DynamicObject {
        object(
            Kind::CoderInstance,
            namespace,
            name,
            json!({"spec": {"url": "https://coder.example.com", "tokenSecretRef": {"name": "t"}}}),
        )
    }

    fn has_secret(index: &RwLock<Index>, namespace: &str, name: &str) -> bool {
        matches!(index.read().unwrap().secret(namespace, name), Found::Present(_))
    }

    fn has_instance(index: &RwLock<Index>, namespace: &str, name: &str) -> bool {
        matches!(index.read().unwrap().object(Kind::CoderInstance, namespace, name), Found::Present(_))
    }

    fn relist(feed: &mut Feed, index: &RwLock<Index>, objects: Vec<DynamicObject>) -> bool {
        feed.handle(index, Event::Init);
        for o in objects {
            feed.handle(index, Event::InitApply(o));
        }
        feed.handle(index, Event::InitDone)
    }

    #[test]
    fn a_relist_replaces_the_watch_entries_at_init_done() {
        let index = RwLock::new(Index::new(true));
        let mut feed = Feed::new(Kind::Secret, None);
        assert!(relist(&mut feed, &index, vec![secret("a", "one"), secret("a", "two")]), "first InitDone syncs");
        assert!(feed.synced);
        assert!(has_secret(&index, "a", "one") && has_secret(&index, "a", "two"));

        // The watch restarts; `two` was deleted meanwhile, `three` created.
        feed.handle(&index, Event::Init);
        feed.handle(&index, Event::InitApply(secret("a", "one")));
        feed.handle(&index, Event::InitApply(secret("a", "three")));
        // Until InitDone readers see the previous list, whole.
        assert!(has_secret(&index, "a", "two"));
        assert!(!has_secret(&index, "a", "three"));
        assert!(!feed.handle(&index, Event::InitDone), "only the first InitDone reports a sync");
        assert!(has_secret(&index, "a", "one") && has_secret(&index, "a", "three"));
        assert!(!has_secret(&index, "a", "two"), "a relist removes what it no longer lists");
    }

    #[test]
    fn a_relist_leaves_other_watches_alone() {
        let index = RwLock::new(Index::new(true));
        let mut secrets = Feed::new(Kind::Secret, None);
        let mut instances = Feed::new(Kind::CoderInstance, None);
        relist(&mut secrets, &index, vec![secret("a", "s")]);
        relist(&mut instances, &index, vec![instance("a", "i")]);
        relist(&mut secrets, &index, vec![]);
        assert!(!has_secret(&index, "a", "s"));
        assert!(has_instance(&index, "a", "i"));
    }

    #[test]
    fn apply_and_delete_update_the_index() {
        let index = RwLock::new(Index::new(true));
        let mut feed = Feed::new(Kind::CoderInstance, None);
        relist(&mut feed, &index, vec![]);
        feed.handle(&index, Event::Apply(instance("a", "i")));
        assert!(has_instance(&index, "a", "i"));
        feed.handle(&index, Event::Delete(instance("a", "i")));
        assert!(!has_instance(&index, "a", "i"));
        assert_eq!(index.read().unwrap().object(Kind::CoderInstance, "a", "i"), Found::Absent);

        // Applied after the list, then gone at the next relist.
        feed.handle(&index, Event::Apply(instance("a", "late")));
        relist(&mut feed, &index, vec![]);
        assert!(!has_instance(&index, "a", "late"));
    }

    #[test]
    fn secret_values_never_reach_the_index() {
        let value = "hunter2-correct-horse";
        let b64 = "aHVudGVyMi1jb3JyZWN0LWhvcnNl";
        let annotation = format!(r#"{{"apiVersion":"v1","kind":"Secret","stringData":{{"password":"{value}"}}}}"#);
        let mut s = object(Kind::Secret, "a", "creds", json!({"data": {"password": b64}, "stringData": {"p": value}}));
        s.metadata.annotations =
            Some([("kubectl.kubernetes.io/last-applied-configuration".to_owned(), annotation)].into());
        s.metadata.labels = Some([("leak".to_owned(), value.to_owned())].into());

        let index = RwLock::new(Index::new(true));
        let mut feed = Feed::new(Kind::Secret, None);
        feed.handle(&index, Event::Init);
        feed.handle(&index, Event::InitApply(s.clone()));
        let staged = format!("{feed:?}");
        assert!(!staged.contains("hunter2") && !staged.contains(b64), "staging holds digests only: {staged}");
        feed.handle(&index, Event::InitDone);
        feed.handle(&index, Event::Apply(s));

        let Found::Present(info) = index.read().unwrap().secret("a", "creds") else { panic!("indexed") };
        assert_eq!(info.key("password"), crate::policy::lookup::KeyState::Present);
        let debug = format!("{:?}", index.read().unwrap());
        assert!(!debug.contains("hunter2") && !debug.contains(b64), "{debug}");
        assert!(debug.contains("creds"), "the index does know the Secret's name: {debug}");
    }

    #[test]
    fn bad_objects_are_skipped_and_the_watch_goes_on() {
        let index = RwLock::new(Index::new(true));
        let mut feed = Feed::new(Kind::CoderInstance, None);
        let mut nameless = instance("a", "x");
        nameless.metadata.name = None;
        let mut no_namespace = instance("a", "y");
        no_namespace.metadata.namespace = Some(String::new());
        let not_an_object = object(Kind::CoderInstance, "a", "z", json!("garbage"));
        // A spec that does not decode is still indexed (rules report its shape; it claims nothing).
        let odd_spec = object(Kind::CoderInstance, "a", "odd", json!({"spec": {"url": 42}}));
        let synced =
            relist(&mut feed, &index, vec![nameless, instance("a", "good"), no_namespace, not_an_object, odd_spec]);
        assert!(synced);
        assert!(has_instance(&index, "a", "good"));
        assert!(has_instance(&index, "a", "odd"));
        assert!(!has_instance(&index, "a", "z"));
        feed.handle(&index, Event::Apply(object(Kind::CoderInstance, "a", "bad", json!([1, 2]))));
        feed.handle(&index, Event::Apply(instance("a", "after")));
        assert!(has_instance(&index, "a", "after"));
    }

    #[test]
    fn reduce_reports_why_and_keeps_only_what_the_index_needs() {
        let mut nameless = secret("a", "s");
        nameless.metadata.name = Some(String::new());
        assert_eq!(reduce(Kind::Secret, None, nameless), Err(Skip::NoName));
        let mut no_ns = secret("a", "s");
        no_ns.metadata.namespace = None;
        assert_eq!(reduce(Kind::Secret, None, no_ns), Err(Skip::NoNamespace));
        assert_eq!(reduce(Kind::Secret, Some("b"), secret("a", "s")), Err(Skip::OutOfScope("b".into())));

        let mut s = secret("a", "s");
        s.types = None; // list items of built-in kinds have no apiVersion/kind
        s.metadata.uid = Some("u".into());
        let (key, value) = reduce(Kind::Secret, Some("a"), s).unwrap();
        assert_eq!(key, ObjectKey { kind: Kind::Secret, namespace: "a".into(), name: "s".into() });
        assert_eq!(
            value,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "a"},
                "data": {"token": "dG9rZW4="}})
        );
    }

    #[test]
    fn a_namespaced_watch_ignores_other_namespaces() {
        let index = RwLock::new(Index::new(true));
        let mut feed = Feed::new(Kind::Secret, Some("a".into()));
        relist(&mut feed, &index, vec![secret("a", "in"), secret("b", "out")]);
        feed.handle(&index, Event::Apply(secret("b", "late")));
        assert!(has_secret(&index, "a", "in"));
        assert!(!has_secret(&index, "b", "out"));
        assert!(!has_secret(&index, "b", "late"));
    }

    #[test]
    fn a_kind_that_is_not_served_counts_as_an_empty_list() {
        let index = RwLock::new(Index::new(true));
        let mut feed = Feed::new(Kind::CoderControlPlane, None);
        assert!(feed.not_served(&index));
        assert!(feed.synced);
        assert_eq!(index.read().unwrap().object(Kind::CoderControlPlane, "a", "cp"), Found::Absent);
        // The CRD appears later: the next list fills the index.
        let cp = object(Kind::CoderControlPlane, "a", "cp", json!({"spec": {}}));
        assert!(!relist(&mut feed, &index, vec![cp]));
        assert!(matches!(index.read().unwrap().object(Kind::CoderControlPlane, "a", "cp"), Found::Present(_)));
    }
}
