//! Leader election on a `coordination.k8s.io/v1` Lease, for the work only one replica may do
//! (the reconcile loop, caBundle patching). The webhook itself runs on every replica.
//!
//! The algorithm is client-go's: a replica takes the Lease when it has no holder, or when its
//! record (`resourceVersion`) has not changed for the Lease's duration as measured on this
//! replica's monotonic clock (so clock skew between nodes does not matter); the holder renews
//! every third of the duration and steps down when it could not renew for two thirds of it,
//! before anyone else may take over. Writes are replaces carrying the `resourceVersion` read,
//! so two replicas can never both win one round. On shutdown the holder steps down first,
//! then clears the holder so another replica takes over without waiting for expiry.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Which Lease to hold, as whom, for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseParams {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its Pod name): unique among the replicas.
    pub identity: String,
    /// How long the Lease stays valid without renewal (whole seconds, at least 1). It is
    /// renewed every third of this.
    pub duration: Duration,
}

impl LeaseParams {
    /// Default Lease duration, as client-go's.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(15);

    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Self::DEFAULT_DURATION,
        }
    }
}

/// Why a Lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The parameters cannot work.
    #[error("invalid leader-election settings: {reason}")]
    InvalidParams { reason: String },
    /// The API server refused or failed a Lease read or write.
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The Lease changed between read and write.
    #[error("Lease {namespace}/{name} changed while being renewed; retrying")]
    Conflict { namespace: String, name: String },
    /// The API server did not answer in time.
    #[error("Lease {namespace}/{name}: no answer within {after:?}")]
    Timeout { namespace: String, name: String, after: Duration },
}

/// This replica's leadership: runs the election in a task and publishes whether it leads.
///
/// Dropping it steps down and releases the Lease in the background; [`Leadership::shutdown`]
/// does the same and waits for the release.
#[derive(Debug)]
pub struct Leadership {
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), LeaseError>>>,
}

impl Leadership {
    /// Starts electing. Must be called within a Tokio runtime.
    pub fn start(client: Client, params: LeaseParams) -> Result<Leadership, LeaseError> {
        let invalid = |reason: &str| Err(LeaseError::InvalidParams { reason: reason.to_owned() });
        if params.identity.is_empty() {
            return invalid("the identity is empty; use the Pod name");
        }
        if params.namespace.is_empty() || params.name.is_empty() {
            return invalid("the Lease namespace and name must be set");
        }
        if params.duration.as_secs() < 1 || params.duration.as_secs() > i32::MAX as u64 {
            return invalid("the Lease duration must be at least one second");
        }
        let (tx, leader) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let api = Api::namespaced(client, &params.namespace);
        let elector = Elector { api, params, observed: None, last_renewal: None, tx };
        let task = tokio::spawn(elector.run(stopped));
        Ok(Leadership { leader, stop: Some(stop), task: Some(task) })
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Follows leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Steps down (subscribers see `false` first), releases the Lease if held, and waits
    /// for that to finish.
    pub async fn shutdown(mut self) -> Result<(), LeaseError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "leader election task failed");
                Ok(())
            }),
            None => Ok(()),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Take,
    /// Someone else holds it.
    Wait,
}

/// The step for a Lease held by `spec.holderIdentity`, whose record has not changed for
/// `unchanged_for` as seen here. A Lease without a duration uses `default_duration`.
fn decide(spec: &LeaseSpec, identity: &str, unchanged_for: Duration, default_duration: Duration) -> Step {
    let duration =
        spec.lease_duration_seconds.and_then(|s| u64::try_from(s).ok()).map_or(default_duration, Duration::from_secs);
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Step::Renew,
        None | Some("") => Step::Take,
        Some(_) if unchanged_for >= duration => Step::Take,
        Some(_) => Step::Wait,
    }
}

/// The Lease's record as last seen, and since when (monotonic).
struct Observed {
    resource_version: Option<String>,
    since: Instant,
}

struct Elector {
    api: Api<Lease>,
    params: LeaseParams,
    observed: Option<Observed>,
    last_renewal: Option<Instant>,
    tx: watch::Sender<bool>,
}

impl Elector {
    fn interval(&self) -> Duration {
        self.params.duration / 3
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> Result<(), LeaseError> {
        let interval = self.interval();
        let renew_deadline = self.params.duration * 2 / 3;
        loop {
            let result = match tokio::time::timeout(interval, self.tick()).await {
                Ok(result) => result,
                Err(_) => Err(self.timeout(interval)),
            };
            match result {
                Ok(true) => {
                    self.last_renewal = Some(Instant::now());
                    self.set(true);
                }
                Ok(false) => self.set(false),
                Err(error) => {
                    let overdue = self.last_renewal.is_none_or(|t| t.elapsed() >= renew_deadline);
                    if self.leads() && overdue {
                        tracing::warn!(%error, "leader election: could not renew in time; stepping down");
                        self.set(false);
                    } else {
                        tracing::warn!(%error, "leader election: Lease operation failed; retrying");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                // Sent by `shutdown`, or dropped with the `Leadership`.
                _ = &mut stop => break,
            }
        }
        let held = self.leads();
        self.set(false);
        if !held {
            return Ok(());
        }
        match tokio::time::timeout(interval.max(Duration::from_secs(1)), self.release()).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout(interval)),
        }
    }

    fn leads(&self) -> bool {
        *self.tx.borrow()
    }

    fn set(&self, leader: bool) {
        let changed = self.tx.send_if_modified(|current| std::mem::replace(current, leader) != leader);
        if changed {
            let LeaseParams { namespace, name, identity, .. } = &self.params;
            if leader {
                tracing::info!(lease = %format!("{namespace}/{name}"), %identity, "leader election: leading");
            } else {
                tracing::info!(lease = %format!("{namespace}/{name}"), %identity, "leader election: not leading");
            }
        }
    }

    /// One round: read the Lease and renew, take or wait. `Ok(true)` when we hold it now.
    async fn tick(&mut self) -> Result<bool, LeaseError> {
        let now = Instant::now();
        let Some(mut lease) = self.api.get_opt(&self.params.name).await.map_err(|e| self.api_error(e))? else {
            return self.create().await;
        };
        let resource_version = lease.metadata.resource_version.clone();
        let since = match &self.observed {
            Some(o) if o.resource_version == resource_version => o.since,
            _ => now,
        };
        self.observed = Some(Observed { resource_version, since });

        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let step = decide(spec, &self.params.identity, now - since, self.params.duration);
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        match step {
            Step::Wait => return Ok(false),
            Step::Renew => spec.renew_time = Some(stamp),
            Step::Take => {
                let previous = spec.holder_identity.take().filter(|h| !h.is_empty());
                if previous.is_some() {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                }
                spec.holder_identity = Some(self.params.identity.clone());
                spec.acquire_time = Some(stamp.clone());
                spec.renew_time = Some(stamp);
            }
        }
        spec.lease_duration_seconds = Some(self.duration_seconds());
        // `lease` carries the resourceVersion read: the write fails if anyone wrote since.
        match self.api.replace(&self.params.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_conflict() => match step {
                Step::Renew => Err(self.conflict()),
                _ => Ok(false),
            },
            Err(error) => Err(self.api_error(error)),
        }
    }

    async fn create(&self) -> Result<bool, LeaseError> {
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.params.name.clone()),
                namespace: Some(self.params.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.params.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_already_exists() || status.is_conflict() => Ok(false),
            Err(error) => Err(self.api_error(error)),
        }
    }

    /// Clears the holder (if still us) so another replica takes over at once.
    async fn release(&self) -> Result<(), LeaseError> {
        let Some(mut lease) = self.api.get_opt(&self.params.name).await.map_err(|e| self.api_error(e))? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(&self.params.identity))
        else {
            return Ok(());
        };
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        match self.api.replace(&self.params.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                tracing::info!(lease = %format!("{}/{}", self.params.namespace, self.params.name), "leader election: released");
                Ok(())
            }
            // Someone wrote it since: it is not ours to clear any more.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            Err(error) => Err(self.api_error(error)),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.params.duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn api_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api { namespace: self.params.namespace.clone(), name: self.params.name.clone(), source }
    }

    fn conflict(&self) -> LeaseError {
        LeaseError::Conflict { namespace: self.params.namespace.clone(), name: self.params.name.clone() }
    }

    fn timeout(&self, after: Duration) -> LeaseError {
        LeaseError::Timeout { namespace: self.params.namespace.clone(), name: self.params.name.clone(), after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decides_from_holder_and_how_long_the_record_stood_still() {
        let secs = Duration::from_secs;
        let default = secs(15);
        let cases = [
            // (holder, lease duration, unchanged for, step)
            (Some("me"), Some(15), secs(60), Step::Renew),
            (None, Some(15), secs(0), Step::Take),
            (Some(""), Some(1), secs(0), Step::Take),
            (Some("other"), Some(15), secs(14), Step::Wait),
            (Some("other"), Some(15), secs(15), Step::Take),
            (Some("other"), None, secs(14), Step::Wait),
            (Some("other"), None, secs(15), Step::Take),
            (Some("other"), Some(5), secs(5), Step::Take),
            (Some("other"), Some(-1), secs(14), Step::Wait),
        ];
        for (holder, seconds, unchanged, want) in cases {
            assert_eq!(
                decide(&held_by(holder, seconds), "me", unchanged, default),
                want,
                "{holder:?} {seconds:?} {unchanged:?}"
            );
        }
    }

    #[tokio::test]
    async fn rejects_settings_that_cannot_work() {
        let client = offline_client();
        let mut params = LeaseParams::new("ns", "coder-guard", "");
        assert!(matches!(Leadership::start(client.clone(), params.clone()), Err(LeaseError::InvalidParams { .. })));
        params.identity = "pod-a".into();
        params.duration = Duration::from_millis(500);
        assert!(matches!(Leadership::start(client, params), Err(LeaseError::InvalidParams { .. })));
    }

    /// A client whose every request fails at once (nothing listens on port 1 of loopback).
    fn offline_client() -> Client {
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn never_leads_without_an_api_server_and_shuts_down() {
        let mut params = LeaseParams::new("ns", "coder-guard", "pod-a");
        params.duration = Duration::from_secs(3);
        let leadership = Leadership::start(offline_client(), params).unwrap();
        let mut rx = leadership.subscribe();
        let changed = tokio::time::timeout(Duration::from_millis(1500), rx.changed()).await;
        assert!(changed.is_err(), "leadership never changes");
        assert!(!leadership.is_leader());
        tokio::time::timeout(Duration::from_secs(5), leadership.shutdown()).await.unwrap().unwrap();
    }
}
