//! Re-stamper: keeps the `checksum/provisioner-key` pod-template annotation current on
//! Deployments that already carry it (the webhook stamped them), so a new key in the Secret,
//! written by the key controller or by a person, rolls the pods without anyone re-applying.
//!
//! Runs once per scope of the loop (all namespaces, or each `--namespace`). Triggers: a
//! metadata-only watch of Secrets in the scope (an applied Secret looks at the Deployments of its
//! namespace that read it), a full pass whenever that watch has listed (at start and after it
//! lost track), and one every resync. Per Deployment: live reads of exactly what the mutators
//! need into an authoritative `Index`, the webhook's own `Engine::mutate` for an UPDATE of the
//! live object, and its patch sent as a JSON patch guarded by the resourceVersion. Idempotent:
//! a second pass writes nothing. Sees Secret values only as digests in the index; logs names
//! and reasons, never values. Does not touch Deployments owned by a `CoderProvisioner`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, TestOperation};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta, TypeMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{Instrument, debug, info, info_span, warn};

use super::Context;
use crate::api::own::CoderProvisionerKey;
use crate::api::workload::{Container, Deployment, PROVISIONER_KEY_ANNOTATION};
use crate::cluster::api_resource;
use crate::policy::env::PROVISIONER_KEY;
use crate::policy::mutate::CHECKSUM_ANNOTATION;
use crate::policy::{Engine, Evaluation, Index, Kind, Operation, Request};

/// Field manager of the patches.
const MANAGER: &str = "coder-guard";
/// Attempts per Deployment (a conflict, or the webhook's cache lagging behind the Secret).
const ATTEMPTS: u32 = 5;
/// Pause before attempt `n + 1` is `n` times this.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Page size of Deployment lists.
const PAGE: u32 = 200;

/// Runs in `scope` (one namespace, or all) until `shutdown` completes.
pub(super) async fn run(ctx: Arc<Context>, scope: Option<String>, shutdown: impl Future<Output = ()>) {
    let scope = scope.as_deref();
    let work = async {
        // `Api<PartialObjectMeta<_>>` makes metadata-only requests: no Secret data reaches this watch.
        let secrets =
            watcher(super::scoped::<PartialObjectMeta<KubeSecret>>(&ctx.kube, scope), crate::cluster::watch_config());
        let mut events = pin!(secrets.default_backoff().ready_chunks(256));
        let mut watching = true;
        let start = tokio::time::Instant::now() + ctx.config.resync;
        let mut resync = tokio::time::interval_at(start, ctx.config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let engine = Engine::default();
        loop {
            let trigger = tokio::select! {
                _ = resync.tick() => Trigger { full: true, ..Trigger::default() },
                chunk = events.next(), if watching => match chunk {
                    Some(chunk) => triggers(chunk),
                    None => {
                        warn!("the Secret watch ended; re-stamping only every resync");
                        watching = false;
                        continue;
                    }
                },
            };
            if trigger.full {
                pass(&ctx, &engine, Pass::Full(scope)).await;
                continue;
            }
            for (namespace, names) in trigger.secrets {
                pass(&ctx, &engine, Pass::Secrets(&namespace, &names)).await;
            }
        }
    };
    futures::future::select(pin!(shutdown), pin!(work)).await;
}

// === pure parts ===

/// What a batch of Secret watch events asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Trigger {
    /// Look at every stamped Deployment (the watch has listed: events may have been missed).
    pub full: bool,
    /// Applied Secrets by namespace.
    pub secrets: BTreeMap<String, BTreeSet<String>>,
}

/// The work a batch of watch events asks for. Deletions change no checksum (the mutator keeps
/// the annotation when the Secret is gone); listed objects are covered by the full pass that
/// follows the list.
pub(super) fn triggers(events: Vec<Result<watcher::Event<PartialObjectMeta<KubeSecret>>, watcher::Error>>) -> Trigger {
    let mut trigger = Trigger::default();
    for event in events {
        match event {
            Ok(watcher::Event::Apply(secret)) => {
                let namespace = secret.namespace().unwrap_or_default();
                trigger.secrets.entry(namespace).or_default().insert(secret.name_any());
            }
            Ok(watcher::Event::InitDone) => trigger.full = true,
            Ok(watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(e) => warn!(error = %e, "the Secret watch failed; retrying with back-off"),
        }
    }
    trigger
}

/// Whether to look at `deployment`: the webhook stamped it, no `CoderProvisioner` owns it, it
/// is not being deleted, and (for a change of Secret `secret`) it reads its key from that
/// Secret, or names a CoderProvisionerKey and reads no key yet.
pub(super) fn considered(deployment: &Value, secret: Option<&str>) -> bool {
    let Ok(d) = Deployment::deserialize(deployment) else { return false };
    let stamped = d.spec.template.metadata.annotations.contains_key(CHECKSUM_ANNOTATION);
    let operator_owned =
        d.metadata.owner_references.iter().any(|o| {
            o.kind == "CoderProvisioner" && o.api_version.rsplit_once('/').is_some_and(|(g, _)| g == "coder.com")
        });
    if !stamped || operator_owned || deployment.pointer("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    let Some(secret) = secret else { return true };
    let reads = reads_of(&d);
    reads.secrets.contains(secret) || (reads.secrets.is_empty() && reads.key.is_some())
}

/// What the mutators read for a Deployment.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Reads {
    /// Secrets its containers read `CODER_PROVISIONER_DAEMON_KEY` from.
    pub secrets: BTreeSet<String>,
    /// The CoderProvisionerKey its injection annotation names.
    pub key: Option<String>,
}

pub(super) fn reads(deployment: &Value) -> Reads {
    Deployment::deserialize(deployment).map(|d| reads_of(&d)).unwrap_or_default()
}

fn reads_of(d: &Deployment) -> Reads {
    let from = |c: &Container| {
        let (_, e) = c.env_var(PROVISIONER_KEY)?;
        let name = &e.value_from.as_ref()?.secret_key_ref.as_ref()?.name;
        (!name.is_empty()).then(|| name.clone())
    };
    let key = d.metadata.annotations.get(PROVISIONER_KEY_ANNOTATION).filter(|n| !n.is_empty()).cloned();
    Reads { secrets: d.containers().filter_map(|(_, c)| from(c)).collect(), key }
}

/// The Secret a CoderProvisionerKey (raw JSON) writes its key into.
pub(super) fn key_secret(key: &Value) -> Option<String> {
    CoderProvisionerKey::deserialize(key).ok().map(|k| k.secret_name())
}

/// The webhook's view of re-stamping: an UPDATE of the live object to itself.
pub(super) fn request<'a>(deployment: &'a Value, namespace: &'a str) -> Request<'a> {
    Request {
        operation: Operation::Update,
        object: deployment,
        old_object: Some(deployment),
        namespace,
        dry_run: false,
    }
}

/// What to do with a Deployment, from the mutators' evaluation of it.
#[derive(Debug, PartialEq)]
pub(super) enum Decision {
    /// Nothing to change.
    Unchanged,
    /// The webhook would deny the change (rule ids); leave it to whoever fixes that.
    Denied(Vec<&'static str>),
    /// Send this JSON patch (its first operation tests the resourceVersion).
    Patch { patch: json_patch::Patch, reasons: Vec<&'static str> },
}

pub(super) fn decide(eval: &Evaluation, deployment: &Value) -> Decision {
    if !eval.allowed() {
        let rules = eval.findings.iter().filter(|f| f.severity == crate::policy::Severity::Error).map(|f| f.rule);
        return Decision::Denied(rules.collect::<BTreeSet<_>>().into_iter().collect());
    }
    if eval.patch.is_empty() {
        return Decision::Unchanged;
    }
    let mut reasons: Vec<&'static str> = eval
        .patch
        .iter()
        .map(|op| match op.path().as_str() {
            p if p.starts_with("/spec/template/metadata") => "the provisioner-key checksum is not the key's",
            _ => "the provisioner key's env var is missing",
        })
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    let guard = deployment.pointer("/metadata/resourceVersion").cloned().map(|value| {
        PatchOperation::Test(TestOperation { path: PointerBuf::from_tokens(["metadata", "resourceVersion"]), value })
    });
    let patch = json_patch::Patch(guard.into_iter().chain(eval.patch.iter().cloned()).collect());
    Decision::Patch { patch, reasons }
}

// === I/O ===

/// Which Deployments a pass looks at.
#[derive(Clone, Copy, Debug)]
enum Pass<'a> {
    /// Every stamped one in a namespace, or in all (`None`).
    Full(Option<&'a str>),
    /// Those of one namespace that read one of these Secrets.
    Secrets(&'a str, &'a BTreeSet<String>),
}

/// Re-stamps the Deployments `what` names.
async fn pass(ctx: &Context, engine: &Engine, what: Pass<'_>) {
    let resource = api_resource(Kind::Deployment);
    let namespace = match what {
        Pass::Full(scope) => scope,
        Pass::Secrets(namespace, _) => Some(namespace),
    };
    let api = match namespace {
        Some(namespace) => Api::<DynamicObject>::namespaced_with(ctx.kube.clone(), namespace, &resource),
        None => Api::<DynamicObject>::all_with(ctx.kube.clone(), &resource),
    };
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(e) => {
                warn!(namespace, error = %e, "cannot list Deployments; retrying on the next trigger");
                return;
            }
        };
        for object in page.items {
            let deployment = to_json(object, &resource);
            let wanted = match what {
                Pass::Full(_) => considered(&deployment, None),
                Pass::Secrets(_, secrets) => secrets.iter().any(|s| considered(&deployment, Some(s))),
            };
            if wanted {
                let field = |f: &str| deployment.pointer(f).and_then(Value::as_str).unwrap_or_default().to_owned();
                let (namespace, name) = (field("/metadata/namespace"), field("/metadata/name"));
                let span = info_span!("restamp", kind = "Deployment", namespace, name);
                restamp(ctx, engine, namespace, name, deployment).instrument(span).await;
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return,
        }
    }
}

/// Brings one Deployment's stamp up to date, re-reading it after a conflict.
async fn restamp(ctx: &Context, engine: &Engine, namespace: String, name: String, mut deployment: Value) {
    let resource = api_resource(Kind::Deployment);
    let api = Api::<DynamicObject>::namespaced_with(ctx.kube.clone(), &namespace, &resource);
    let params = PatchParams { field_manager: Some(MANAGER.to_owned()), ..PatchParams::default() };
    for attempt in 1..=ATTEMPTS {
        let index = match dependencies(ctx, &namespace, &deployment).await {
            Ok(index) => index,
            Err(e) => {
                warn!(error = %e, "cannot read what the checksum depends on; retrying on the next trigger");
                return;
            }
        };
        let (patch, reasons) = match decide(&engine.mutate(&request(&deployment, &namespace), &index), &deployment) {
            Decision::Unchanged => {
                debug!("the provisioner-key checksum is current");
                return;
            }
            Decision::Denied(rules) => {
                debug!(?rules, "not re-stamped: the webhook would deny the change");
                return;
            }
            Decision::Patch { patch, reasons } => (patch, reasons),
        };
        match api.patch(&name, &params, &Patch::Json::<()>(patch)).await {
            Ok(stored) => {
                info!(?reasons, "re-stamped the provisioner-key checksum");
                // The webhook mutates this update too, from its own cache: one that has not seen
                // the new Secret yet puts the old checksum back (no rollout). Look again shortly.
                let stored = to_json(stored, &resource);
                if engine.mutate(&request(&stored, &namespace), &index).patch.is_empty() {
                    return;
                }
                debug!(attempt, "the stored checksum is not the key's yet; retrying");
            }
            // 409: changed meanwhile; 422: the resourceVersion test failed.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422 => {
                debug!(attempt, "changed meanwhile; retrying")
            }
            Err(e) => {
                warn!(error = %e, "cannot patch the Deployment; retrying on the next trigger");
                return;
            }
        }
        tokio::time::sleep(RETRY_DELAY * attempt).await;
        deployment = match api.get_opt(&name).await {
            Ok(Some(object)) => to_json(object, &resource),
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot read the Deployment; retrying on the next trigger");
                return;
            }
        };
    }
    warn!(attempts = ATTEMPTS, "the provisioner-key checksum is still not current; retrying on the next trigger");
}

/// An authoritative index of what the mutators read for `deployment`, read live: its
/// CoderProvisionerKey and the Secrets it (or that key) names. Secrets enter as digests.
async fn dependencies(ctx: &Context, namespace: &str, deployment: &Value) -> Result<Index, kube::Error> {
    let Reads { mut secrets, key } = reads(deployment);
    let mut index = Index::new(true);
    if let Some(key) = key {
        let resource = api_resource(Kind::CoderProvisionerKey);
        let api = Api::<DynamicObject>::namespaced_with(ctx.kube.clone(), namespace, &resource);
        if let Some(object) = api.get_opt(&key).await? {
            let object = to_json(object, &resource);
            secrets.extend(key_secret(&object));
            index.insert(&object, namespace);
        }
    }
    let api = Api::<KubeSecret>::namespaced(ctx.kube.clone(), namespace);
    for name in secrets {
        if let Some(secret) = api.get_opt(&name).await.map_err(withheld)? {
            let object = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "data": secret.data.unwrap_or_default(),
            });
            index.insert(&object, namespace);
        }
    }
    Ok(index)
}

/// A Secret read's error without decoding details (they may quote Secret data).
fn withheld(error: kube::Error) -> kube::Error {
    match error {
        kube::Error::SerdeError(_) => kube::Error::SerdeError(serde::de::Error::custom(
            "a Secret did not decode (details withheld: they may quote Secret data)",
        )),
        other => other,
    }
}

/// The object as raw JSON with its type (list items of built-in kinds carry none).
fn to_json(mut object: DynamicObject, resource: &ApiResource) -> Value {
    object.types = Some(TypeMeta { api_version: resource.api_version.clone(), kind: resource.kind.clone() });
    serde_json::to_value(object).unwrap_or_default()
}

#[cfg(test)]
mod tests;
