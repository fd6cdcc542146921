//! Writing what a reconcile found: the status subresource (conditions, observed generation,
//! coderd IDs, applied digests), Events on condition transitions, the requeue delay, and the
//! cleanup finalizer.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{Instrument, debug, warn};

use super::Error;
use super::context::{Context, jitter};
use super::outcome::{Report, Wait, delay, transitions};
use crate::api::own::{CoderAIProvider, CoderInstance, CoderOrganization, CoderProvisionerKey, ResourceStatus};

/// Finalizer that makes deletion wait for coderd-side cleanup.
pub const FINALIZER: &str = "coderd.coder.com/cleanup";
/// Attempts of one status write (conflicts and transient errors are retried at once).
const STATUS_ATTEMPTS: u32 = 4;

/// A coder-guard kind the reconcile loop manages.
pub trait Managed:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's name, for metrics.
    const KIND: &'static str;

    fn resource_status(&self) -> Option<&ResourceStatus>;
}

macro_rules! managed {
    ($($kind:ident),*) => {$(
        impl Managed for $kind {
            const KIND: &'static str = stringify!($kind);

            fn resource_status(&self) -> Option<&ResourceStatus> {
                self.status.as_ref()
            }
        }
    )*};
}
managed!(CoderInstance, CoderOrganization, CoderAIProvider, CoderProvisionerKey);

/// The namespaced API of `object`'s kind.
pub fn api<K: Managed>(ctx: &Context, object: &K) -> Api<K> {
    Api::namespaced(ctx.kube.clone(), &object.namespace().unwrap_or_default())
}

/// Stores `report` (and whatever `update` sets) in `object`'s status if anything changed,
/// publishes Events for transitions, and returns when to reconcile again.
pub async fn publish<K: Managed>(
    ctx: &Context,
    object: &K,
    report: &Report,
    update: impl FnOnce(&mut ResourceStatus),
) -> Result<Action, kube::Error> {
    let previous = object.resource_status().cloned().unwrap_or_default();
    let mut next = previous.clone();
    next.observed_generation = object.meta().generation;
    next.conditions = report.conditions(&previous.conditions, object.meta().generation, Timestamp::now());
    update(&mut next);
    if next != previous {
        write_status(ctx, object, &previous, &next).await?;
        for transition in transitions(&previous.conditions, &next.conditions) {
            let event = Event {
                type_: if transition.warning { EventType::Warning } else { EventType::Normal },
                reason: transition.reason,
                note: Some(transition.note),
                action: "Reconcile".to_owned(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
                warn!(error = %e, "could not publish an Event");
            }
        }
    }
    ctx.metrics.count(K::KIND, if report.ok() { "ready" } else { "not_ready" });
    let uid = object.uid().unwrap_or_default();
    let wait = report.wait();
    let failures = ctx.count_failure(&uid, matches!(wait, Wait::Backoff | Wait::After(_)));
    Ok(Action::requeue(delay(wait, failures, ctx.config.resync, ctx.config.slow, jitter())))
}

/// A merge patch of the status subresource that sets `next` and removes what `previous` had
/// and `next` has not. Retried on conflicts and transient errors.
async fn write_status<K: Managed>(
    ctx: &Context,
    object: &K,
    previous: &ResourceStatus,
    next: &ResourceStatus,
) -> Result<(), kube::Error> {
    let mut status = serde_json::to_value(next).unwrap_or_default();
    if let (Value::Object(next_fields), Value::Object(old)) =
        (&mut status, serde_json::to_value(previous).unwrap_or_default())
    {
        for key in old.keys() {
            next_fields.entry(key.clone()).or_insert(Value::Null);
        }
    }
    let patch = Patch::Merge(json!({ "status": status }));
    let name = object.name_any();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match api(ctx, object).patch_status(&name, &PatchParams::default(), &patch).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < STATUS_ATTEMPTS && retriable(&e) => {
                debug!(error = %e, attempt, "status write failed; retrying");
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn retriable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Adds or removes [`FINALIZER`] with optimistic concurrency (the resourceVersion is sent, so a
/// concurrent change fails the write and the reconcile runs again).
pub async fn set_finalizer<K: Managed>(ctx: &Context, object: &K, wanted: bool) -> Result<(), kube::Error> {
    let finalizers = object.finalizers();
    let has = finalizers.iter().any(|f| f == FINALIZER);
    if has == wanted {
        return Ok(());
    }
    let mut next: Vec<String> = finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect();
    if wanted {
        next.push(FINALIZER.to_owned());
    }
    let patch = json!({"metadata": {"finalizers": next, "resourceVersion": object.resource_version()}});
    api(ctx, object).patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map(drop)
}

/// How long a deletion may wait for coderd-side cleanup before the finalizer is removed anyway
/// (with a Warning Event), so an unreachable coderd cannot block a namespace's deletion forever.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(300);

/// Whether `object` is being deleted and has waited longer than [`CLEANUP_GRACE`].
pub fn cleanup_overdue<K: Managed>(object: &K) -> bool {
    object.meta().deletion_timestamp.as_ref().is_some_and(|since| {
        let waited = Timestamp::now().duration_since(since.0);
        waited.as_secs() >= CLEANUP_GRACE.as_secs() as i64
    })
}

/// Publishes a Warning Event on `object` (for outcomes that have no condition, such as a
/// cleanup given up during deletion).
pub async fn warn_event<K: Managed>(ctx: &Context, object: &K, reason: &str, note: String) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Cleanup".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        warn!(error = %e, "could not publish an Event");
    }
}

/// Runs `apply`, or `cleanup` while `object` is being deleted, inside a span that names the
/// object and the operation.
pub async fn dispatch<K: Managed>(
    object: &K,
    apply: impl Future<Output = Result<Action, Error>>,
    cleanup: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let deleting = object.meta().deletion_timestamp.is_some();
    let span = tracing::info_span!(
        "reconcile",
        kind = K::kind(&()).as_ref(),
        namespace = object.namespace().unwrap_or_default(),
        object = object.name_any(),
        uid = object.uid().unwrap_or_default(),
        operation = if deleting { "cleanup" } else { "apply" },
    );
    if deleting { cleanup.instrument(span).await } else { apply.instrument(span).await }
}
