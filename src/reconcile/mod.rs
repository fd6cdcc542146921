//! The reconcile loop: one kube-runtime controller per coder-guard kind keeps coderd-side state
//! (license, appearance, organizations, IdP sync, AI providers, provisioner keys) equal to the
//! custom resources, and a re-stamper keeps the provisioner-key checksum on Deployments current.
//!
//! Each controller discovers coderd's state, computes the difference with a pure planner
//! (`plan` functions beside each controller) and writes only that. Creates are guarded by
//! discovery (by name, by license `jti`), never by status, so a lost status write cannot
//! duplicate a create. Results go to status conditions ([`outcome`], [`status`]); failures
//! back off with jitter, `Retry-After` is honoured, and surfaces that wait on a person
//! (`NotEntitled`, `NotSupported`, an invalid spec) are re-checked slowly.
//!
//! Runs inside `serve` on the leader only. Never holds a Secret value beyond one reconcile;
//! status keeps names and salted digests.

mod ai_provider;
mod cleanup;
mod context;
mod instance;
mod metrics;
mod organization;
pub mod outcome;
mod provisioner_key;
mod restamp;
mod status;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

pub use context::{Config, Context};
pub use metrics::Metrics;
use status::Managed;

use crate::api::own::{CoderAIProvider, CoderInstance, CoderOrganization, CoderProvisionerKey};

/// Why a reconcile could not record its result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A status, finalizer or Secret write to the Kubernetes API failed.
    #[error("Kubernetes API write failed: {0}; retrying with back-off")]
    Kube(#[from] kube::Error),
}

/// What a kind's controller needs to know to be triggered by other objects.
trait Dependencies: Managed {
    /// Whether objects of this kind reference Secrets: if so, a (metadata-only) Secret watch
    /// triggers their reconciles.
    const SECRETS: bool;
    /// Whether objects of this kind belong to a `CoderInstance`: if so, a `CoderInstance` watch
    /// triggers their reconciles.
    const DEPENDS_ON_INSTANCE: bool;
    /// Names of Secrets (same namespace) whose change should reconcile this object.
    fn secret_names(&self) -> Vec<String>;
    /// The `CoderInstance` (same namespace) this object belongs to.
    fn instance_name(&self) -> Option<&str>;
}

type Reconciler<K> = fn(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>>;

/// The API of `K` in `scope`: one namespace, or all (`None`).
fn scoped<K>(kube: &kube::Client, scope: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Some(namespace) => Api::namespaced(kube.clone(), namespace),
        None => Api::all(kube.clone()),
    }
}

/// Runs every controller until `shutdown` completes: per scope ([`cluster::scopes`](crate::cluster::scopes) of
/// `Config::namespaces`), one controller per kind and one re-stamper. With namespaces listed,
/// every watch and list is namespaced, so per-namespace Roles suffice.
pub async fn run(
    kube: kube::Client,
    config: Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    metrics.leading.set(1);
    let ctx = Arc::new(Context::new(kube, config, metrics));
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let mut work: Vec<BoxFuture<'static, ()>> = Vec::new();
    for scope in crate::cluster::scopes(&ctx.config.namespaces) {
        let per_scope: [BoxFuture<'static, ()>; 5] = [
            Box::pin(drive::<CoderInstance>(
                ctx.clone(),
                scope.clone(),
                |o, c| Box::pin(instance::reconcile(o, c)),
                shutdown.clone(),
            )),
            Box::pin(drive::<CoderOrganization>(
                ctx.clone(),
                scope.clone(),
                |o, c| Box::pin(organization::reconcile(o, c)),
                shutdown.clone(),
            )),
            Box::pin(drive::<CoderAIProvider>(
                ctx.clone(),
                scope.clone(),
                |o, c| Box::pin(ai_provider::reconcile(o, c)),
                shutdown.clone(),
            )),
            Box::pin(drive::<CoderProvisionerKey>(
                ctx.clone(),
                scope.clone(),
                |o, c| Box::pin(provisioner_key::reconcile(o, c)),
                shutdown.clone(),
            )),
            Box::pin(restamp::run(ctx.clone(), scope, shutdown.clone())),
        ];
        work.extend(per_scope);
    }
    futures::future::join_all(work).await;
    ctx.metrics.leading.set(0);
}

/// One controller in `scope` (a namespace, or all): the kind itself, the Secrets it references
/// and (for dependants) its `CoderInstance` trigger reconciles.
async fn drive<K: Dependencies>(
    ctx: Arc<Context>,
    scope: Option<String>,
    reconcile: Reconciler<K>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let kube = ctx.kube.clone();
    let scope = scope.as_deref();
    let mut controller = Controller::new(scoped::<K>(&kube, scope), crate::cluster::watch_config())
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency));
    let store = controller.store();
    if K::SECRETS {
        // Metadata only: no `data`. (kubectl's last-applied annotation can repeat values; nothing
        // here keeps or logs annotations.)
        let secrets = scoped::<PartialObjectMeta<KubeSecret>>(&kube, scope);
        let by_secret = store.clone();
        controller = controller.watches(secrets, crate::cluster::watch_config(), move |secret| {
            let (namespace, name) = (secret.namespace(), secret.name_any());
            by_secret
                .state()
                .into_iter()
                .filter(|o| o.namespace() == namespace && o.secret_names().contains(&name))
                .map(|o| ObjectRef::from_obj(&*o))
                .collect::<Vec<_>>()
        });
    }
    if K::DEPENDS_ON_INSTANCE {
        let by_instance = store;
        controller = controller.watches(
            scoped::<CoderInstance>(&kube, scope),
            crate::cluster::watch_config(),
            move |instance| {
                let (namespace, name) = (instance.namespace(), instance.name_any());
                by_instance
                    .state()
                    .into_iter()
                    .filter(|o| o.namespace() == namespace && o.instance_name() == Some(name.as_str()))
                    .map(|o| ObjectRef::from_obj(&*o))
                    .collect::<Vec<_>>()
            },
        );
    }
    let timed = move |object: Arc<K>, ctx: Arc<Context>| {
        let started = std::time::Instant::now();
        let metrics = ctx.metrics.clone();
        let work = reconcile(object, ctx);
        async move {
            let result = work.await;
            metrics.observe(K::KIND, started.elapsed());
            result
        }
    };
    controller
        .graceful_shutdown_on(shutdown)
        .run(timed, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(kind = K::kind(&()).as_ref(), object = %object, "reconciled"),
                Err(e) => debug!(kind = K::kind(&()).as_ref(), error = %e, "reconcile did not complete"),
            }
        })
        .await;
}

fn error_policy<K: Managed>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count(K::KIND, "error");
    let failures = ctx.count_failure(&object.uid().unwrap_or_default(), true);
    warn!(
        kind = K::kind(&()).as_ref(),
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        error = %error,
        "reconcile failed"
    );
    let wait = outcome::delay(outcome::Wait::Backoff, failures, ctx.config.resync, ctx.config.slow, context::jitter());
    Action::requeue(wait)
}

/// What the reconcile loop needs beyond the cache's read access (`cluster::rbac_rules`).
pub fn rbac_rules() -> Vec<PolicyRule> {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    };
    let kinds = ["coderinstances", "coderorganizations", "coderaiproviders", "coderprovisionerkeys"];
    let status: Vec<String> = kinds.iter().map(|k| format!("{k}/status")).collect();
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    vec![
        rule(crate::api::own::GROUP, &kinds, &["patch", "update"]),
        rule(crate::api::own::GROUP, &status, &["patch", "update"]),
        rule("", &["secrets"], &["create", "patch", "update"]),
        rule("apps", &["deployments"], &["get", "list", "patch"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind without a Secret or CoderInstance watch must never need one.
    fn watches_cover<K: Dependencies>(object: &K) {
        if !K::SECRETS {
            assert!(object.secret_names().is_empty(), "{}", K::KIND);
        }
        if !K::DEPENDS_ON_INSTANCE {
            assert!(object.instance_name().is_none(), "{}", K::KIND);
        }
    }

    #[test]
    fn only_kinds_that_reference_secrets_or_an_instance_watch_them() {
        let kinds = [
            (CoderInstance::KIND, CoderInstance::SECRETS, CoderInstance::DEPENDS_ON_INSTANCE),
            (CoderOrganization::KIND, CoderOrganization::SECRETS, CoderOrganization::DEPENDS_ON_INSTANCE),
            (CoderAIProvider::KIND, CoderAIProvider::SECRETS, CoderAIProvider::DEPENDS_ON_INSTANCE),
            (CoderProvisionerKey::KIND, CoderProvisionerKey::SECRETS, CoderProvisionerKey::DEPENDS_ON_INSTANCE),
        ];
        assert_eq!(
            kinds,
            [
                ("CoderInstance", true, false),
                ("CoderOrganization", false, true),
                ("CoderAIProvider", true, true),
                ("CoderProvisionerKey", true, true),
            ]
        );
        watches_cover(&CoderInstance::new("coder", Default::default()));
        watches_cover(&CoderOrganization::new("platform", Default::default()));
    }
}
