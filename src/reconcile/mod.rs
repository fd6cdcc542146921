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
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{debug, warn};

pub use context::{Config, Context};
pub use metrics::Metrics;
use status::Managed;

use crate::api::own::CoderInstance;

/// Why a reconcile could not record its result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A status, finalizer or Secret write to the Kubernetes API failed.
    #[error("Kubernetes API write failed: {0}; retrying with back-off")]
    Kube(#[from] kube::Error),
}

/// What a kind's controller needs to know to be triggered by other objects.
trait Dependencies: Managed {
    /// Names of Secrets (same namespace) whose change should reconcile this object.
    fn secret_names(&self) -> Vec<String>;
    /// The `CoderInstance` (same namespace) this object belongs to.
    fn instance_name(&self) -> Option<&str>;
}

type Reconciler<K> = fn(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>>;

/// Runs every controller until `shutdown` completes.
pub async fn run(
    kube: kube::Client,
    config: Config,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    metrics.leading.set(1);
    let ctx = Arc::new(Context::new(kube, config, metrics));
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    futures::join!(
        drive::<CoderInstance>(ctx.clone(), |o, c| Box::pin(instance::reconcile(o, c)), shutdown.clone()),
        drive::<crate::api::own::CoderOrganization>(
            ctx.clone(),
            |o, c| Box::pin(organization::reconcile(o, c)),
            shutdown.clone()
        ),
        drive::<crate::api::own::CoderAIProvider>(
            ctx.clone(),
            |o, c| Box::pin(ai_provider::reconcile(o, c)),
            shutdown.clone()
        ),
        drive::<crate::api::own::CoderProvisionerKey>(
            ctx.clone(),
            |o, c| Box::pin(provisioner_key::reconcile(o, c)),
            shutdown.clone()
        ),
        restamp::run(ctx.clone(), shutdown.clone()),
    );
    ctx.metrics.leading.set(0);
}

/// One controller: the kind itself, the Secrets it references and (for dependants) its
/// `CoderInstance` trigger reconciles.
async fn drive<K: Dependencies>(
    ctx: Arc<Context>,
    reconcile: Reconciler<K>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let kube = ctx.kube.clone();
    let controller = Controller::new(Api::<K>::all(kube.clone()), watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency));
    let store = controller.store();
    // Metadata only: a Secret's data never reaches this watch.
    let secrets = Api::<PartialObjectMeta<KubeSecret>>::all(kube.clone());
    let by_secret = store.clone();
    let controller = controller.watches(secrets, watcher::Config::default(), move |secret| {
        let (namespace, name) = (secret.namespace(), secret.name_any());
        by_secret
            .state()
            .into_iter()
            .filter(|o| o.namespace() == namespace && o.secret_names().contains(&name))
            .map(|o| ObjectRef::from_obj(&*o))
            .collect::<Vec<_>>()
    });
    let by_instance = store;
    let controller = controller
        .watches(Api::<CoderInstance>::all(kube), watcher::Config::default(), move |instance| {
            let (namespace, name) = (instance.namespace(), instance.name_any());
            by_instance
                .state()
                .into_iter()
                .filter(|o| o.namespace() == namespace && o.instance_name() == Some(name.as_str()))
                .map(|o| ObjectRef::from_obj(&*o))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown);
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
