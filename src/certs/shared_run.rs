//! The shared CA's background task, run by every replica, and the store it reads and writes
//! ([`CaStore`], a Secret in a cluster: `cluster::CaSecret`). The rules are in `shared.rs`.
//!
//! Each tick the task reads the store; as leader it then takes the steps [`plan`] asks for (one
//! write each, re-reading on a conflict); then, like every replica, it publishes the stored
//! bundle ([`CertHandle::ca_bundle`](super::CertHandle::ca_bundle), which the leader patches
//! into `caBundle`) and issues itself a new leaf when [`leaf_due`] says so.
//!
//! # Poll, not watch
//!
//! Replicas read the store with a `get` every [`Timing::poll_interval`] (30 s), once a second
//! until the first leaf, and at once when leadership or the confirmed `caBundle` changes. A
//! watch would see changes sooner, but nothing waits on replicas: a new CA signs only after it
//! has been in the published bundle for the grace period (10 minutes), and an old one stays
//! there until it expires, so a replica that notices a promotion 30 s late serves a leaf that is
//! still trusted. Polling needs only `get` and `update` on the one Secret (plus `create`, which
//! cannot be limited by name); a watch would add `list` and `watch` (which `resourceNames` does
//! limit, but only for requests carrying the `metadata.name` field selector), and reconnect,
//! relist and bookmark handling for an object that changes about twice a year. The cost is one
//! small GET per replica per 30 s.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::authority::{issue_certified, whole_seconds};
use super::shared::{CaSet, LeafState, Published, Step, leaf_due, plan};
use super::{CertError, Served, Shared, SharedCa, unix_seconds};

/// Upper bound of one store operation.
const STORE_TIMEOUT: Duration = Duration::from_secs(15);
/// Poll interval until the first leaf from the shared CA is served.
const WAITING_POLL: Duration = Duration::from_secs(1);
/// Writes the leader makes in one tick at most (create or prune, stage, promote; plus a retry).
const MAX_STEPS: usize = 5;

/// What a store holds: its version (a Secret's `resourceVersion`) and data.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: String,
    pub data: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored").field("version", &self.version).field("keys", &self.data.keys()).finish()
    }
}

/// The outcome of [`CaStore::create`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// What is stored now.
    pub stored: Stored,
    /// `false` when another replica had created it first and `stored` is theirs.
    pub won: bool,
}

/// Why a store operation failed. Messages never hold stored values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored version changed since it was read: re-read.
    #[error("{what} changed since it was read")]
    Conflict { what: String },
    /// Any other failure; the message says what to do.
    #[error("{0}")]
    Failed(String),
}

/// Where the shared CA is kept. Implemented by `cluster::CaSecret`; tests use memory.
pub trait CaStore: Send + Sync + 'static {
    /// Names the store in logs and errors, e.g. `Secret coder-guard/coder-guard-ca`.
    fn describe(&self) -> String;
    /// The stored data, `None` when there is none.
    fn load(&self) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;
    /// Creates the store holding `data`. When it exists already (another replica won the race),
    /// returns what is stored instead, with `won: false`.
    fn create(&self, data: BTreeMap<String, Vec<u8>>) -> impl Future<Output = Result<Created, StoreError>> + Send;
    /// Sets the keys of [`DATA_KEYS`](super::DATA_KEYS) to `data` (removing those it lacks;
    /// other keys stay) if the store is still at `version`; [`StoreError::Conflict`] otherwise.
    fn replace(
        &self,
        version: &str,
        data: BTreeMap<String, Vec<u8>>,
    ) -> impl Future<Output = Result<Stored, StoreError>> + Send;
}

/// Whether this replica leads, and the `caBundle` it has confirmed as leader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderView {
    pub(crate) leading: bool,
    pub(crate) published: Option<Published>,
}

/// A replica's state between ticks.
struct Replica {
    config: SharedCa,
    store: String,
    /// The last parsed data and its version.
    parsed: Option<(String, CaSet)>,
    /// The bundle published to the handle.
    bundle: Option<Vec<u8>>,
    /// The leaf served, once one from the shared CA is.
    leaf: Option<LeafState>,
    /// The last problem reported, so each is logged once.
    problem: Option<String>,
    waiting_logged: bool,
}

/// The task: ticks until the handle's stop sender is dropped.
pub(crate) async fn run<S: CaStore>(store: S, shared: Arc<Shared>, config: SharedCa, mut stop: oneshot::Receiver<()>) {
    let mut leader = shared.leader.subscribe();
    let mut replica = Replica {
        config,
        store: store.describe(),
        parsed: None,
        bundle: None,
        leaf: None,
        problem: None,
        waiting_logged: false,
    };
    loop {
        let view = leader.borrow_and_update().clone();
        let result = replica.tick(&store, &shared, &view, SystemTime::now()).await;
        replica.report(&shared, result);
        let wait = match replica.leaf {
            None => replica.config.timing.poll_interval.min(WAITING_POLL),
            Some(_) => replica.config.timing.poll_interval,
        };
        tokio::select! {
            _ = &mut stop => break,
            _ = leader.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::debug!(store = %replica.store, "shared CA task stopped");
}

async fn timed<T>(what: &str, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(STORE_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| Err(StoreError::Failed(format!("{what}: no answer within {}s", STORE_TIMEOUT.as_secs()))))
}

impl Replica {
    fn store_error(&self, e: StoreError) -> CertError {
        CertError::CaStore { store: self.store.clone(), reason: e.to_string() }
    }

    /// Parses `stored`, reusing the last parse of the same version.
    fn parse(&mut self, stored: &Stored) -> Result<CaSet, CertError> {
        if let Some((version, set)) = &self.parsed
            && *version == stored.version
        {
            return Ok(set.clone());
        }
        let set = CaSet::from_data(&stored.data)
            .map_err(|reason| CertError::CaInvalid { store: self.store.clone(), reason })?;
        self.parsed = Some((stored.version.clone(), set.clone()));
        Ok(set)
    }

    async fn tick<S: CaStore>(
        &mut self,
        store: &S,
        shared: &Shared,
        view: &LeaderView,
        now: SystemTime,
    ) -> Result<(), CertError> {
        let mut stored = timed("read", store.load()).await.map_err(|e| self.store_error(e))?;
        // A leader whose write fails still serves from what it last read (or wrote); the
        // failure is reported after that.
        let led = if view.leading { self.lead(store, &mut stored, view, now).await } else { Ok(()) };
        let Some(stored) = stored else {
            led?;
            if !self.waiting_logged {
                self.waiting_logged = true;
                tracing::info!(
                    store = %self.store,
                    "waiting for the leader to create the shared CA; not ready until a serving certificate from it is loaded"
                );
            }
            return Ok(());
        };
        let adopted = self.parse(&stored).and_then(|set| self.adopt(&set, shared, now));
        led.and(adopted)
    }

    /// The leader's writes: the steps [`plan`] asks for, until it waits or is idle. `stored` is
    /// kept current with every write and re-read, also when a later step fails.
    async fn lead<S: CaStore>(
        &mut self,
        store: &S,
        stored: &mut Option<Stored>,
        view: &LeaderView,
        now: SystemTime,
    ) -> Result<(), CertError> {
        let timing = self.config.timing;
        for _ in 0..MAX_STEPS {
            let set = match &*stored {
                Some(s) => Some(self.parse(s)?),
                None => None,
            };
            let step = plan(set.as_ref(), view.published.as_ref(), now, &timing);
            let (set, version) = match (step.clone(), set, &*stored) {
                (Step::Create, _, _) => {
                    let new = CaSet::create(now, &timing)?;
                    let created =
                        timed("create", store.create(new.to_data())).await.map_err(|e| self.store_error(e))?;
                    if created.won {
                        tracing::info!(
                            store = %self.store,
                            ca = %new.current().subject,
                            not_after = unix_seconds(new.current().not_after),
                            "shared CA created"
                        );
                    } else {
                        tracing::info!(store = %self.store, "another replica created the shared CA first; using it");
                    }
                    *stored = Some(created.stored);
                    continue;
                }
                (Step::WaitForPublication, ..) => {
                    tracing::debug!(store = %self.store, "CA rotation: waiting for caBundle to hold the next CA");
                    break;
                }
                (Step::WaitForGrace { until }, ..) => {
                    tracing::debug!(store = %self.store, until = unix_seconds(until), "CA rotation: publish grace");
                    break;
                }
                (Step::Idle, ..) | (_, None, _) | (_, _, None) => break,
                (_, Some(set), Some(s)) => (set, s.version.clone()),
            };
            let Some(new) = set.apply(&step, now, &timing)? else { break };
            match timed("update", store.replace(&version, new.to_data())).await {
                Ok(written) => {
                    log_step(&self.store, &step, &new);
                    *stored = Some(written);
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(store = %self.store, "changed while being rotated; re-reading");
                    *stored = timed("read", store.load()).await.map_err(|e| self.store_error(e))?;
                }
                Err(e) => return Err(self.store_error(e)),
            }
        }
        Ok(())
    }

    /// Publishes the bundle, then (never before) serves a new leaf when one is due.
    fn adopt(&mut self, set: &CaSet, shared: &Shared, now: SystemTime) -> Result<(), CertError> {
        let bundle = set.bundle_pem();
        if self.bundle.as_ref() != Some(&bundle) {
            shared.publish_bundle(bundle.clone());
            self.bundle = Some(bundle);
            tracing::info!(
                store = %self.store,
                cas = set.bundle().count(),
                current = %set.current().subject,
                current_not_after = unix_seconds(set.current().not_after),
                next = set.next().map(|n| n.subject.as_str()),
                "shared CA bundle loaded"
            );
        }
        let timing = &self.config.timing;
        if !leaf_due(set, self.leaf.as_ref(), now, timing) {
            return Ok(());
        }
        let now = whole_seconds(now);
        let ca = set.current.ca()?;
        let (key, not_after) = issue_certified(&self.config.dns_names, timing.leaf_validity, &ca, now)?;
        let first = self.leaf.is_none();
        shared.serve_counted(Served { key, not_after }, !first);
        self.leaf = Some(LeafState { ca: set.current().der.clone(), not_after });
        tracing::info!(
            store = %self.store,
            ca = %set.current().subject,
            not_after = unix_seconds(not_after),
            "serving certificate issued from the shared CA"
        );
        Ok(())
    }

    /// Logs a problem once (and counts it), and the recovery.
    fn report(&mut self, shared: &Shared, result: Result<(), CertError>) {
        match result {
            Ok(()) => {
                if self.problem.take().is_some() {
                    tracing::info!(store = %self.store, "shared CA usable again");
                }
            }
            Err(e) => {
                let message = e.to_string();
                if self.problem.as_deref() != Some(message.as_str()) {
                    shared.count_error();
                    let serving =
                        if self.leaf.is_some() { "still serving the previous certificate" } else { "not ready" };
                    tracing::warn!(error = %message, serving, "shared CA: retrying");
                    self.problem = Some(message);
                }
            }
        }
    }
}

fn log_step(store: &str, step: &Step, new: &CaSet) {
    let current = new.current();
    match step {
        Step::Prune => {
            tracing::info!(%store, cas = new.bundle().count(), "expired CAs removed from the shared CA bundle")
        }
        Step::Stage => tracing::info!(
            %store,
            next = new.next().map(|n| n.subject.as_str()),
            "CA rotation: next CA added to the bundle; it signs once caBundle holds it"
        ),
        Step::Promote { forced: false } => tracing::info!(
            %store,
            current = %current.subject,
            not_after = unix_seconds(current.not_after),
            "CA rotation: the next CA, confirmed in caBundle, now signs"
        ),
        Step::Promote { forced: true } => tracing::warn!(
            %store,
            current = %current.subject,
            "CA rotation: the old CA is about to expire and caBundle was never confirmed to hold the next one; it signs \
             now anyway. Check that the leader can patch the webhook configurations"
        ),
        _ => {}
    }
}
