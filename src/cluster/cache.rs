//! [`Cache`]: the webhook's view of other objects, kept by one kube-runtime watcher per kind
//! (and per namespace when limited), and live reads that confirm a cache miss.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::core::DynamicObject;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::feed::{self, Feed};
use super::{WATCHED_KINDS, api_resource};
use crate::policy::{Index, Kind, ObjectKey};

/// How many live reads [`Cache::confirm`] runs at once.
const CONFIRM_CONCURRENCY: usize = 8;

/// Objects the webhook looks up: watch-fed, or empty and offline.
pub struct Cache {
    shared: Arc<Shared>,
    /// `None` offline.
    client: Option<Client>,
    /// The watch tasks, stopped when the cache is dropped.
    tasks: Vec<AbortHandle>,
}

struct Shared {
    index: RwLock<Index>,
    /// Each watch's kind and whether its first full list has completed.
    watches: Vec<(Kind, AtomicBool)>,
    synced: watch::Sender<bool>,
}

impl Shared {
    fn mark_synced(&self, slot: usize) {
        self.watches[slot].1.store(true, Ordering::Release);
        if self.watches.iter().all(|(_, s)| s.load(Ordering::Acquire)) {
            self.synced.send_replace(true);
        }
    }
}

/// Why [`Cache::confirm`] could not tell what exists.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// The reads did not finish within the allowed time.
    #[error(
        "live read of {count} referenced object(s) did not finish within {timeout:?}; the Kubernetes API is slow \
         or unreachable, so references cannot be confirmed"
    )]
    Timeout { count: usize, timeout: Duration },
    /// The API server refused or failed a read.
    #[error("live read of {key} failed: {reason}")]
    Read {
        key: ObjectKey,
        /// HTTP status of an API error, when there was one.
        code: Option<u16>,
        reason: String,
    },
    /// The kind is not one the cache reads (see `cluster::WATCHED_KINDS`).
    #[error("{kind} is not a kind the cluster cache reads; only {:?} can be confirmed", WATCHED_KINDS)]
    Unsupported { kind: Kind },
}

impl Cache {
    /// No cluster: an empty, non-authoritative index (every lookup is `Unknown`), always
    /// synced. For `serve --dev`.
    pub fn offline() -> Cache {
        let (synced, _) = watch::channel(true);
        let watches = WATCHED_KINDS.into_iter().map(|k| (k, AtomicBool::new(true))).collect();
        let shared = Shared { index: RwLock::new(Index::new(false)), watches, synced };
        Cache { shared: Arc::new(shared), client: None, tasks: Vec::new() }
    }

    /// Starts one watcher per watched kind, or per kind and namespace when `namespaces` is
    /// given (an empty list means all namespaces). The index is authoritative: a miss is
    /// `Absent`. Must be called within a Tokio runtime; dropping the cache stops the watches.
    ///
    /// With a namespace list, the webhook configuration's `namespaceSelector` should select
    /// the same namespaces: objects elsewhere are not watched, and a miss there is confirmed
    /// with a live read that needs RBAC in that namespace.
    pub fn start(client: Client, namespaces: Option<Vec<String>>) -> Cache {
        let plan = watch_plan(namespaces);
        let (synced, _) = watch::channel(plan.is_empty());
        let watches = plan.iter().map(|(k, _)| (*k, AtomicBool::new(false))).collect();
        let shared = Arc::new(Shared { index: RwLock::new(Index::new(true)), watches, synced });
        let tasks = plan
            .into_iter()
            .enumerate()
            .map(|(slot, (kind, namespace))| {
                let resource = api_resource(kind);
                let api = match &namespace {
                    Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
                    None => Api::<DynamicObject>::all_with(client.clone(), &resource),
                };
                let feed = Feed::new(kind, namespace);
                tokio::spawn(run_watch(api, feed, shared.clone(), slot)).abort_handle()
            })
            .collect();
        Cache { shared, client: Some(client), tasks }
    }

    /// The index, for one synchronous evaluation. Hold it briefly: watches wait for it.
    pub fn lookup(&self) -> impl Deref<Target = Index> + '_ {
        self.shared.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether every watch has completed its first full list. Stays true through later
    /// relists (the index then still holds the previous list).
    pub fn synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Waits until [`Self::synced`]; bound it with a timeout.
    pub async fn wait_synced(&self) {
        let mut rx = self.shared.synced.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// Per watched kind, whether all of its watches have completed a first full list (for a
    /// metric), in `WATCHED_KINDS` order.
    pub fn sync_state(&self) -> Vec<(Kind, bool)> {
        WATCHED_KINDS
            .into_iter()
            .map(|kind| {
                let mut watches = self.shared.watches.iter().filter(|(k, _)| *k == kind).peekable();
                let synced = watches.peek().is_some() && watches.all(|(_, s)| s.load(Ordering::Acquire));
                (kind, synced)
            })
            .collect()
    }

    /// Reads `keys` from the API server now and returns what exists, as an authoritative index
    /// (a key missing from it is absent). A cache miss may be watch lag: confirm before denying.
    /// Offline, returns an empty non-authoritative index (everything stays `Unknown`).
    pub async fn confirm(&self, keys: Vec<ObjectKey>, timeout: Duration) -> Result<Index, ConfirmError> {
        let Some(client) = &self.client else { return Ok(Index::new(false)) };
        let keys: BTreeSet<ObjectKey> = keys.into_iter().collect();
        if let Some(key) = keys.iter().find(|k| !WATCHED_KINDS.contains(&k.kind)) {
            return Err(ConfirmError::Unsupported { kind: key.kind });
        }
        let count = keys.len();
        let reads = futures::stream::iter(keys.into_iter().map(|key| read(client, key)))
            .buffer_unordered(CONFIRM_CONCURRENCY)
            .try_fold(Index::new(true), |mut index, found| async move {
                if let Some((key, value)) = found {
                    index.insert(&value, &key.namespace);
                }
                Ok(index)
            });
        tokio::time::timeout(timeout, reads).await.map_err(|_| ConfirmError::Timeout { count, timeout })?
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.tasks.iter().for_each(AbortHandle::abort);
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("online", &self.client.is_some())
            .field("watches", &self.shared.watches.len())
            .field("synced", &self.synced())
            .finish_non_exhaustive()
    }
}

/// The watches to run: each watched kind, in all namespaces or once per listed namespace
/// (sorted, deduplicated, blanks dropped; an empty list means all namespaces).
fn watch_plan(namespaces: Option<Vec<String>>) -> Vec<(Kind, Option<String>)> {
    let scopes = super::scopes(&namespaces.unwrap_or_default());
    WATCHED_KINDS.into_iter().flat_map(|kind| scopes.iter().map(move |scope| (kind, scope.clone()))).collect()
}

/// Feeds one watcher's events into the shared index until the cache is dropped. Errors are
/// logged and the watcher restarts with kube-runtime's default back-off.
async fn run_watch(api: Api<DynamicObject>, mut feed: Feed, shared: Arc<Shared>, slot: usize) {
    let kind = feed.kind();
    let scope = feed.namespace().unwrap_or("*").to_owned();
    let mut events = watcher(api, super::watch_config()).default_backoff().boxed();
    let mut not_served_logged = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                not_served_logged = false;
                if feed.handle(&shared.index, event) {
                    tracing::info!(%kind, namespace = %scope, "cluster cache: initial list complete");
                    shared.mark_synced(slot);
                }
            }
            Err(watcher::Error::InitialListFailed(kube::Error::Api(status))) if status.is_not_found() => {
                if !not_served_logged {
                    tracing::warn!(
                        %kind,
                        namespace = %scope,
                        "cluster cache: the API server does not serve {}/{} (CRD not installed?); treating it as empty \
                         and retrying",
                        kind.group(),
                        kind.name(),
                    );
                    not_served_logged = true;
                }
                if feed.not_served(&shared.index) {
                    shared.mark_synced(slot);
                }
            }
            Err(error) => {
                tracing::warn!(%kind, namespace = %scope, error = %describe(kind, &error), "cluster cache: watch failed; retrying with back-off");
            }
        }
    }
    tracing::error!(%kind, namespace = %scope, "cluster cache: watch ended; the cache no longer follows this kind");
}

/// A watch error for a log line. Decode errors of Secrets are withheld: serde quotes input.
fn describe(kind: Kind, error: &watcher::Error) -> String {
    let inner = match error {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            Some(e)
        }
        _ => None,
    };
    match inner {
        Some(kube::Error::SerdeError(_)) if kind == Kind::Secret => {
            "a Secret list or event did not decode (details withheld: they may quote Secret data)".to_owned()
        }
        Some(kube::Error::Api(status)) if status.is_forbidden() => {
            format!("{error}; grant get, list and watch on {} (see `cluster::rbac_rules`)", api_resource(kind).plural)
        }
        _ => error.to_string(),
    }
}

/// One live read, reduced for the index; `None` when the object does not exist.
async fn read(client: &Client, key: ObjectKey) -> Result<Option<(ObjectKey, serde_json::Value)>, ConfirmError> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &key.namespace, &api_resource(key.kind));
    let object = match api.get_opt(&key.name).await {
        Ok(Some(object)) => object,
        Ok(None) => return Ok(None),
        Err(error) => return Err(read_error(key, error)),
    };
    match feed::reduce(key.kind, Some(&key.namespace), object) {
        Ok(reduced) => Ok(Some(reduced)),
        Err(skip) => Err(ConfirmError::Read { key, code: None, reason: format!("the object is unusable: {skip}") }),
    }
}

fn read_error(key: ObjectKey, error: kube::Error) -> ConfirmError {
    let (code, reason) = match &error {
        kube::Error::Api(status) if status.is_forbidden() => (
            Some(status.code),
            format!(
                "{}; grant get on {} in namespace {} (see `cluster::rbac_rules`)",
                status.message,
                api_resource(key.kind).plural,
                key.namespace
            ),
        ),
        kube::Error::Api(status) => (Some(status.code), status.message.clone()),
        kube::Error::SerdeError(_) if key.kind == Kind::Secret => {
            (None, "the response did not decode (details withheld: they may quote Secret data)".to_owned())
        }
        other => (None, other.to_string()),
    };
    ConfirmError::Read { key, code, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_one_watch_per_kind_and_namespace() {
        let all = watch_plan(None);
        assert_eq!(all.len(), WATCHED_KINDS.len());
        assert!(all.iter().all(|(_, ns)| ns.is_none()));
        assert_eq!(watch_plan(Some(vec![])), all, "an empty list means all namespaces");

        let plan = watch_plan(Some(vec!["b".into(), "a".into(), " b ".into(), "".into()]));
        assert_eq!(plan.len(), WATCHED_KINDS.len() * 2);
        assert_eq!(plan[..2], [(Kind::Secret, Some("a".into())), (Kind::Secret, Some("b".into()))]);
    }

    #[test]
    fn offline_is_synced_and_answers_unknown() {
        let cache = Cache::offline();
        assert!(cache.synced());
        assert!(cache.sync_state().iter().all(|(_, s)| *s));
        use crate::policy::{Found, Lookup};
        assert_eq!(cache.lookup().secret("ns", "s"), Found::Unknown);
    }

    #[tokio::test]
    async fn offline_confirm_leaves_everything_unknown() {
        let cache = Cache::offline();
        let key = ObjectKey { kind: Kind::Secret, namespace: "ns".into(), name: "s".into() };
        let fresh = cache.confirm(vec![key], Duration::from_secs(1)).await.unwrap();
        use crate::policy::{Found, Lookup};
        assert_eq!(fresh.secret("ns", "s"), Found::Unknown);
        cache.wait_synced().await;
    }

    /// A cache with no watches whose live reads go to `url`.
    fn reading_from(url: &str) -> Cache {
        let client = Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let (synced, _) = watch::channel(true);
        let shared = Shared { index: RwLock::new(Index::new(true)), watches: Vec::new(), synced };
        Cache { shared: Arc::new(shared), client: Some(client), tasks: Vec::new() }
    }

    #[tokio::test]
    async fn confirm_is_bounded_and_reports_failures() {
        let secret = ObjectKey { kind: Kind::Secret, namespace: "ns".into(), name: "s".into() };
        // Accepts connections (the kernel does) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let cache = reading_from(&format!("https://{}", silent.local_addr().unwrap()));
        let late = cache.confirm(vec![secret.clone(), secret.clone()], Duration::from_millis(200)).await;
        assert!(matches!(late, Err(ConfirmError::Timeout { count: 1, .. })), "{late:?}");

        // Nothing listens on port 1.
        let refused = reading_from("https://127.0.0.1:1").confirm(vec![secret.clone()], Duration::from_secs(10)).await;
        match refused {
            Err(ConfirmError::Read { key, code: None, .. }) => assert_eq!(key, secret),
            other => panic!("{other:?}"),
        }

        let deployment = ObjectKey { kind: Kind::Deployment, ..secret };
        let unsupported = cache.confirm(vec![deployment], Duration::from_secs(1)).await;
        assert!(matches!(unsupported, Err(ConfirmError::Unsupported { kind: Kind::Deployment })));
    }

    #[test]
    fn sync_state_needs_every_watch_of_a_kind() {
        let (synced, _) = watch::channel(false);
        let watches = vec![
            (Kind::Secret, AtomicBool::new(true)),
            (Kind::Secret, AtomicBool::new(false)),
            (Kind::CoderInstance, AtomicBool::new(true)),
        ];
        let shared = Shared { index: RwLock::new(Index::new(true)), watches, synced };
        let cache = Cache { shared: Arc::new(shared), client: None, tasks: Vec::new() };
        let state = cache.sync_state();
        assert!(state.contains(&(Kind::Secret, false)));
        assert!(state.contains(&(Kind::CoderInstance, true)));
        assert!(state.contains(&(Kind::CoderControlPlane, false)), "a kind without watches is not synced");
        assert!(!cache.synced());
        cache.shared.mark_synced(1);
        assert!(cache.synced());
        assert!(cache.sync_state().contains(&(Kind::Secret, true)));
    }
}
