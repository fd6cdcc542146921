//! `CoderProvisionerKey`: one external-provisioner key in coderd, its plaintext kept in a Secret.
//!
//! coderd shows a key's plaintext once (in the answer to its creation) and cannot change a key:
//! a key is created only when coderd has none under the name, and re-created (rotated) only as
//! `rotationPolicy` allows, when the Secret lost the plaintext or the tags drifted. [`plan()`]
//! (pure) decides from coderd's key, the Secret's state and the policy; [`reconcile`] observes,
//! plans and acts. It writes only the one data key of the target Secret, and never logs or
//! reports a value: status keeps salted digests.

mod plan;

use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use self::plan::{
    Check, Desired, KEY_READY, Plan, SECRET_READY, SecretState, Why, check, cleanup_target, find, plan, stale,
    tags_digest, verified,
};
use super::cleanup::finish_cleanup;
use super::context::kube_failure;
use super::outcome::{Report, Surface, Wait, digest};
use super::status::{FINALIZER, publish, set_finalizer, warn_event};
use super::{Context, Dependencies, Error};
use crate::api::own::{AppliedState, CoderProvisionerKey};
use crate::coderd::types::{CreateProvisionerKey, ProvisionerKey};
use crate::coderd::{self, Class, Secret};

/// Field manager of the Secret writes.
const MANAGER: &str = "coder-guard";
/// Label put on the Secrets this controller writes.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

impl Dependencies for CoderProvisionerKey {
    const SECRETS: bool = true;
    const DEPENDS_ON_INSTANCE: bool = true;

    fn secret_names(&self) -> Vec<String> {
        vec![self.secret_name()]
    }

    fn instance_name(&self) -> Option<&str> {
        Some(self.spec.instance_ref.name.as_str())
    }
}

/// What one reconcile found and wants stored.
#[derive(Debug, Default)]
struct Outcome {
    report: Report,
    /// New `status.coderdID` (`Some(None)` clears it).
    coderd_id: Option<Option<String>>,
    /// New `status.applied`.
    applied: Option<AppliedState>,
    /// A Kubernetes write that failed after coderd changed: returned once status is stored.
    error: Option<kube::Error>,
}

impl Outcome {
    fn failed(surface: Surface) -> Self {
        Outcome { report: Report { surfaces: vec![surface] }, ..Outcome::default() }
    }
}

pub(super) async fn reconcile(object: Arc<CoderProvisionerKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::status::dispatch(&*object, apply(&object, &ctx), cleanup(&object, &ctx)).await
}

async fn apply(object: &CoderProvisionerKey, ctx: &Context) -> Result<Action, Error> {
    let Outcome { report, coderd_id, applied, error } = converge(object, ctx).await?;
    let action = publish(ctx, object, &report, |status| {
        if let Some(id) = coderd_id {
            status.coderd_id = id;
        }
        if let Some(applied) = applied {
            status.applied = Some(applied);
        }
    })
    .await?;
    match error {
        Some(e) => Err(e.into()),
        None => Ok(action),
    }
}

/// Observes coderd and the Secret, plans, and acts.
async fn converge(key: &CoderProvisionerKey, ctx: &Context) -> Result<Outcome, kube::Error> {
    let desired = Desired::of(key);
    let uid = key.uid().unwrap_or_default();
    let instance = match ctx.ready_instance(KEY_READY, &desired.namespace, &key.spec.instance_ref.name).await {
        Ok(instance) => instance,
        Err(surface) => return Ok(Outcome::failed(surface)),
    };
    let client = match ctx.connect(KEY_READY, &instance).await {
        Ok(client) => client,
        Err(surface) => return Ok(Outcome::failed(surface)),
    };
    set_finalizer(ctx, key, true).await?;
    let status = key.status.as_ref();
    if let Some((organization, name)) = stale(&desired, status.and_then(|s| s.applied.as_ref())) {
        delete_stale(ctx, key, &client, &organization, &name).await;
    }
    let value = match ctx.secret_value(&desired.namespace, &desired.secret_name, &desired.secret_key).await {
        Ok(value) => value,
        Err(e) => return Ok(Outcome::failed(kube_failure(SECRET_READY, &e))),
    };
    let value_digest = value.as_ref().map(|v| digest(&uid, &[v.expose()]));
    let mut adopting = false;
    loop {
        let keys = match client.provisioner_keys(&desired.organization).await {
            Ok(keys) => keys,
            Err(e) => return Ok(Outcome::failed(list_failure(&desired, &e))),
        };
        let existing = find(&keys, &desired.name);
        let secret = match (check(&desired, status, existing, value_digest.as_deref()), &value, existing) {
            (Check::Known(state), _, _) => state,
            (Check::Verify, Some(value), Some(existing)) => match client.verify_provisioner_key(value).await {
                Ok(owner) => verified(existing, owner.as_ref()),
                Err(e) => return Ok(Outcome::failed(Surface::coderd(SECRET_READY, &e))),
            },
            (Check::Verify, _, _) => SecretState::Missing,
        };
        let plan = plan(&desired, existing, secret);
        debug!(?plan, ?secret, "planned");
        let (existing, why) = match (plan, existing) {
            (Plan::Keep, Some(existing)) => return Ok(observed(&desired, &uid, existing, value_digest, None)),
            (Plan::Blocked(surface), Some(existing)) => {
                let digest = value_digest.filter(|_| secret == SecretState::Matches);
                return Ok(observed(&desired, &uid, existing, digest, Some(surface)));
            }
            (Plan::Rotate { why }, Some(existing)) => (Some(existing), Some(why)),
            _ => (None, None),
        };
        if let Some(existing) = existing
            && let Err(e) = client.delete_provisioner_key(&desired.organization, &existing.name).await
        {
            return Ok(Outcome::failed(Surface::coderd(KEY_READY, &e)));
        }
        let request = CreateProvisionerKey { name: desired.name.clone(), tags: desired.tags.clone() };
        match client.create_provisioner_key(&desired.organization, &request).await {
            Ok(plaintext) => return Ok(store(ctx, key, &desired, &uid, &plaintext, why).await),
            // Created meanwhile (by another writer): adopt it, going by the Secret's state.
            Err(e) if e.class() == Class::Conflict && !adopting => {
                info!("the key appeared in coderd meanwhile; adopting it");
                adopting = true;
            }
            Err(e) => return Ok(Outcome::failed(Surface::coderd(KEY_READY, &e))),
        }
    }
}

/// The outcome when coderd's key stays as it is: fine, or `blocked` on one surface.
fn observed(
    desired: &Desired,
    uid: &str,
    existing: &ProvisionerKey,
    secret_digest: Option<String>,
    blocked: Option<Surface>,
) -> Outcome {
    let key_ok = Surface::ok(KEY_READY, "Present", format!("coderd has {}", desired.key()));
    let secret_ok = Surface::ok(SECRET_READY, "Matches", format!("the {} holds the key", desired.secret()));
    let surfaces = match blocked {
        None => vec![key_ok, secret_ok],
        Some(s) if s.type_ == KEY_READY => vec![s, secret_ok],
        Some(s) => vec![key_ok, s],
    };
    Outcome {
        report: Report { surfaces },
        coderd_id: Some(Some(existing.id.clone())),
        applied: Some(AppliedState {
            organization: Some(desired.organization.clone()),
            name: Some(desired.name.clone()),
            tags_digest: Some(tags_digest(uid, &existing.tags)),
            secret_digest,
            ..AppliedState::default()
        }),
        error: None,
    }
}

/// Writes a new key's plaintext to the Secret, at once: coderd never shows it again. If the
/// write fails the plaintext is lost; the error is returned (after status records the key), and
/// the next reconcile finds the Secret missing or stale and `rotationPolicy` decides.
async fn store(
    ctx: &Context,
    key: &CoderProvisionerKey,
    desired: &Desired,
    uid: &str,
    plaintext: &Secret,
    why: Option<Why>,
) -> Outcome {
    let key_surface = match why {
        None => Surface::ok(KEY_READY, "Created", format!("created {}", desired.key())),
        Some(why) => Surface::ok(KEY_READY, "Rotated", format!("re-created {}: {}", desired.key(), why.describe())),
    };
    let mut applied = AppliedState {
        organization: Some(desired.organization.clone()),
        name: Some(desired.name.clone()),
        tags_digest: Some(tags_digest(uid, &desired.tags)),
        ..AppliedState::default()
    };
    // The id is recorded by the next reconcile (which this Secret write triggers).
    let mut outcome = Outcome { coderd_id: Some(None), ..Outcome::default() };
    match write_secret(ctx, key, desired, plaintext).await {
        Ok(()) => {
            info!(rotated = why.is_some(), "stored a new provisioner key in its Secret");
            applied.secret_digest = Some(digest(uid, &[plaintext.expose()]));
            let secret = Surface::ok(SECRET_READY, "Written", format!("wrote the key to the {}", desired.secret()));
            outcome.report = Report { surfaces: vec![key_surface, secret] };
        }
        Err(e) => {
            let mut secret = kube_failure(SECRET_READY, &e);
            secret.reason = "SecretWriteFailed".to_owned();
            secret.message = format!(
                "the new key could not be written to the {} and is lost ({}); the next reconcile handles it per \
                 rotationPolicy",
                desired.secret(),
                secret.message
            );
            outcome.report = Report { surfaces: vec![key_surface, secret] };
            outcome.error = Some(e);
        }
    }
    outcome.applied = Some(applied);
    outcome
}

/// Server-side applies [`secret_body`].
async fn write_secret(
    ctx: &Context,
    key: &CoderProvisionerKey,
    desired: &Desired,
    plaintext: &Secret,
) -> Result<(), kube::Error> {
    let body = secret_body(key, desired, plaintext);
    let api = Api::<KubeSecret>::namespaced(ctx.kube.clone(), &desired.namespace);
    // A metadata-only answer: the plaintext does not come back.
    api.patch_metadata(&desired.secret_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await.map(drop)
}

/// What the Secret write owns: the one data key, the managed-by label and a (non-controller)
/// owner reference, so the Secret is garbage-collected with the resource. Other keys, labels
/// and owners of an existing Secret are left alone.
fn secret_body(key: &CoderProvisionerKey, desired: &Desired, plaintext: &Secret) -> serde_json::Value {
    let owner = OwnerReference {
        api_version: CoderProvisionerKey::api_version(&()).into_owned(),
        kind: CoderProvisionerKey::kind(&()).into_owned(),
        name: key.name_any(),
        uid: key.uid().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    };
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": desired.secret_name,
            "namespace": desired.namespace,
            "labels": {MANAGED_BY: MANAGER},
            "ownerReferences": [owner],
        },
        "data": {desired.secret_key.as_str(): base64::engine::general_purpose::STANDARD.encode(plaintext.expose())},
    })
}

/// Deletes the key the spec no longer names; best effort (a failure is a Warning Event).
async fn delete_stale(
    ctx: &Context,
    key: &CoderProvisionerKey,
    client: &coderd::Client,
    organization: &str,
    name: &str,
) {
    match client.delete_provisioner_key(organization, name).await {
        Ok(()) => info!(organization, key = name, "deleted the key the spec no longer names"),
        Err(e) => {
            warn!(organization, key = name, error = %e, "could not delete the key the spec no longer names");
            let note = format!(
                "the previous key {name:?} in organization {organization:?} (spec.organization or spec.name changed) \
                 could not be deleted: {e}; delete it in coderd"
            );
            warn_event(ctx, key, "PreviousKeyNotDeleted", note).await;
        }
    }
}

/// A failed key listing: an unknown organization says so.
fn list_failure(desired: &Desired, error: &coderd::Error) -> Surface {
    if error.class() != Class::NotFound {
        return Surface::coderd(KEY_READY, error);
    }
    let message = format!(
        "coderd has no organization {:?}: create it (a CoderOrganization) or fix spec.organization",
        desired.organization
    );
    Surface::failed(KEY_READY, "OrganizationNotFound", message, Wait::Backoff)
}

/// Deletion: delete coderd's key, then release the resource ([`finish_cleanup`]: retried within
/// the cleanup grace; released with a Warning when overdue or when the instance is gone). The
/// Secret goes with the resource through its owner reference.
async fn cleanup(key: &CoderProvisionerKey, ctx: &Context) -> Result<Action, Error> {
    if !key.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let (organization, name) = cleanup_target(key);
    let result = delete_key(ctx, key, &organization, &name).await;
    let what = format!("provisioner key {name:?} in organization {organization:?} in coderd");
    finish_cleanup(ctx, key, &key.spec.instance_ref.name, "KeyLeftInPlace", &what, result).await
}

/// Deletes coderd's key (an unknown one counts as deleted).
async fn delete_key(
    ctx: &Context,
    key: &CoderProvisionerKey,
    organization: &str,
    name: &str,
) -> Result<Option<String>, Surface> {
    let namespace = key.namespace().unwrap_or_default();
    let instance = ctx.ready_instance(KEY_READY, &namespace, &key.spec.instance_ref.name).await?;
    let client = ctx.connect(KEY_READY, &instance).await?;
    client.delete_provisioner_key(organization, name).await.map_err(|e| Surface::coderd(KEY_READY, &e))?;
    info!(organization, key = name, "deleted the key from coderd");
    Ok(None)
}

#[cfg(test)]
mod tests;
