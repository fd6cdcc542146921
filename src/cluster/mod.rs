//! What coder-guard knows about the cluster and how it touches it: the watch-fed [`Cache`]
//! behind the webhook's `Lookup`, live reads that confirm a cache miss before anything is
//! denied ([`Cache::confirm`]), leader election on a Lease ([`Leadership`]) and caBundle
//! patching ([`patch_ca_bundle`]).
//!
//! This module owns every `kube::Client` call the webhook side makes. It must not evaluate
//! rules (that is `policy`, fed through [`Cache::lookup`]) nor speak AdmissionReview.
//!
//! # Secret hygiene
//!
//! Secrets are read as `DynamicObject`s and reduced at once to key names and SHA-256 digests
//! (`policy::lookup::SecretInfo`); the decoded object is dropped with the event. Only a
//! Secret's name and namespace are kept of its metadata (the `last-applied-configuration`
//! annotation would hold the values). Errors that could quote a Secret body (decode errors) are
//! reported without their details.
//!
//! # RBAC
//!
//! Exactly these rules, nothing broader (also as data: [`rbac_rules`], [`lease_rbac_rules`],
//! [`ca_bundle_rbac_rules`], [`ca_secret_rbac_rules`]):
//!
//! | what | apiGroups | resources | resourceNames | verbs |
//! |---|---|---|---|---|
//! | cache | `""` | `secrets` | | get, list, watch |
//! | cache | `coder.com` | `codercontrolplanes`, `coderprovisioners` | | get, list, watch |
//! | cache | `coderd.coder.com` | `coderinstances`, `coderorganizations`, `coderaiproviders`, `coderprovisionerkeys` | | get, list, watch |
//! | leader election | `coordination.k8s.io` | `leases` | | create |
//! | leader election | `coordination.k8s.io` | `leases` | the Lease | get, update |
//! | caBundle | `admissionregistration.k8s.io` | `validatingwebhookconfigurations` | the configuration | get, patch |
//! | caBundle | `admissionregistration.k8s.io` | `mutatingwebhookconfigurations` | the configuration | get, patch |
//! | shared CA | `""` | `secrets` | | create |
//! | shared CA | `""` | `secrets` | the CA Secret (`coder-guard-ca`) | get, update |
//! | uninstall hook | `admissionregistration.k8s.io` | `validatingwebhookconfigurations`, `mutatingwebhookconfigurations` | the configuration | delete |
//!
//! The cache rules go in a ClusterRole, or, when the cache is limited to namespaces
//! (`Cache::start(client, Some(namespaces))`), in a Role in each of them. The lease rules go in
//! a Role in the Lease's namespace (`create` cannot be limited by name: Kubernetes does not
//! know the name before the object exists). The caBundle rules go in a ClusterRole and are only
//! needed when coder-guard manages its own serving certificate. So are the shared-CA rules
//! ([`CaSecret`], `--self-signed`), which go in a Role in coder-guard's namespace: every replica
//! polls the Secret with `get` (no `list`/`watch`, see `certs/shared_run.rs`); the leader
//! `create`s it (not limitable by name) and rotates it with `update`. The uninstall rules
//! ([`uninstall_rbac_rules`]) belong to `coder-guard uninstall-webhooks`, which the Helm chart
//! runs as a pre-delete hook under a service account of its own. [`rbac::grants`] assembles all
//! of them (`coder-guard manifests rbac`).

mod ca_bundle;
mod ca_secret;
mod cache;
mod feed;
mod lease;
pub mod rbac;
mod uninstall;

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::core::{ApiResource, GroupVersionKind};

use crate::policy::Kind;

pub use ca_bundle::{CaBundleError, CaBundlePatched, patch_ca_bundle};
pub use ca_secret::{CaSecret, ca_secret_rbac_rules};
pub use cache::{Cache, ConfirmError};
pub use lease::{Leadership, LeaseError, LeaseParams};
pub use uninstall::{Removal, UninstallError, Uninstalled, delete_webhook_configurations, uninstall_rbac_rules};

/// The kinds the cache watches: every kind a rule looks up or that makes a claim.
pub const WATCHED_KINDS: [Kind; 7] = [
    Kind::Secret,
    Kind::CoderControlPlane,
    Kind::CoderProvisioner,
    Kind::CoderInstance,
    Kind::CoderOrganization,
    Kind::CoderAIProvider,
    Kind::CoderProvisionerKey,
];

/// Where watches run (`serve --namespace`): all namespaces (`[None]`) when `namespaces` lists
/// none, else each listed namespace once (sorted, deduplicated, blanks dropped). The cache and
/// the reconcile loop both use it.
pub fn scopes(namespaces: &[String]) -> Vec<Option<String>> {
    let listed: BTreeSet<&str> = namespaces.iter().map(|n| n.trim()).filter(|n| !n.is_empty()).collect();
    if listed.is_empty() { vec![None] } else { listed.into_iter().map(|n| Some(n.to_owned())).collect() }
}

/// The API version the cache reads `kind` at.
fn version(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret | Kind::Deployment => "v1",
        _ => "v1alpha1",
    }
}

/// The REST resource (plural) of `kind`.
fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::CoderControlPlane => "codercontrolplanes",
        Kind::CoderProvisioner => "coderprovisioners",
        Kind::CoderWorkspaceProxy => "coderworkspaceproxies",
        Kind::CoderInstance => "coderinstances",
        Kind::CoderOrganization => "coderorganizations",
        Kind::CoderAIProvider => "coderaiproviders",
        Kind::CoderProvisionerKey => "coderprovisionerkeys",
        Kind::Deployment => "deployments",
        Kind::Secret => "secrets",
    }
}

/// Objects per page of a watch's initial list and relists. kube-runtime's default, 500, decodes
/// 500 whole Secrets at once: transient heap the allocator keeps as RSS afterwards. With 10,000
/// Secrets and 1,000 Coder objects a fresh start ended at 40–47 MiB RSS with 500 and 31 MiB
/// with 100, for about 110 list requests instead of 25 (`cargo bench --bench memory`).
pub const LIST_PAGE_SIZE: u32 = 100;

/// The watcher configuration of every watch coder-guard runs.
pub fn watch_config() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

/// `kind` as a dynamic resource.
pub fn api_resource(kind: Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(kind.group(), version(kind), kind.name()), plural(kind))
}

fn rule(group: &str, resources: &[&str], names: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |s: &[&str]| s.iter().map(|&s| s.to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        verbs: strings(verbs),
        non_resource_urls: None,
    }
}

/// What the cache needs: get, list and watch on each watched kind, one rule per API group.
pub fn rbac_rules() -> Vec<PolicyRule> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for kind in WATCHED_KINDS {
        match groups.iter_mut().find(|(g, _)| *g == kind.group()) {
            Some((_, resources)) => resources.push(plural(kind)),
            None => groups.push((kind.group(), vec![plural(kind)])),
        }
    }
    groups.into_iter().map(|(group, resources)| rule(group, &resources, &[], &["get", "list", "watch"])).collect()
}

/// What [`Leadership`] needs on its Lease `lease_name` (a Role in the Lease's namespace).
pub fn lease_rbac_rules(lease_name: &str) -> Vec<PolicyRule> {
    vec![
        rule("coordination.k8s.io", &["leases"], &[], &["create"]),
        rule("coordination.k8s.io", &["leases"], &[lease_name], &["get", "update"]),
    ]
}

/// What [`patch_ca_bundle`] needs on the two configurations (an empty name is left out).
pub fn ca_bundle_rbac_rules(validating: &str, mutating: &str) -> Vec<PolicyRule> {
    [("validatingwebhookconfigurations", validating), ("mutatingwebhookconfigurations", mutating)]
        .into_iter()
        .filter(|(_, name)| !name.is_empty())
        .map(|(resource, name)| rule("admissionregistration.k8s.io", &[resource], &[name], &["get", "patch"]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_all_namespaces_or_each_listed_one_once() {
        assert_eq!(scopes(&[]), vec![None]);
        assert_eq!(scopes(&[" ".to_owned(), String::new()]), vec![None], "blanks are dropped");
        let listed = ["b", "a", " b ", ""].map(str::to_owned);
        assert_eq!(scopes(&listed), vec![Some("a".to_owned()), Some("b".to_owned())]);
    }

    #[test]
    fn rbac_is_read_only_on_exactly_the_watched_kinds() {
        let rules = rbac_rules();
        let table: Vec<(String, Vec<String>, Vec<String>)> = rules
            .iter()
            .map(|r| (r.api_groups.clone().unwrap()[0].clone(), r.resources.clone().unwrap(), r.verbs.clone()))
            .collect();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            table,
            vec![
                (String::new(), s(&["secrets"]), s(&["get", "list", "watch"])),
                ("coder.com".into(), s(&["codercontrolplanes", "coderprovisioners"]), s(&["get", "list", "watch"])),
                (
                    "coderd.coder.com".into(),
                    s(&["coderinstances", "coderorganizations", "coderaiproviders", "coderprovisionerkeys"]),
                    s(&["get", "list", "watch"])
                ),
            ]
        );
        assert!(rules.iter().all(|r| r.resource_names.is_none() && r.non_resource_urls.is_none()));
    }

    #[test]
    fn lease_and_ca_bundle_rules_are_limited_by_name() {
        let lease = lease_rbac_rules("coder-guard");
        assert_eq!(lease[0].verbs, ["create"]);
        assert_eq!(lease[0].resource_names, None);
        assert_eq!(lease[1].resource_names.as_deref(), Some(&["coder-guard".to_owned()][..]));
        assert_eq!(lease[1].verbs, ["get", "update"]);

        let ca = ca_bundle_rbac_rules("v", "");
        assert_eq!(ca.len(), 1);
        assert_eq!(ca[0].resources.as_deref(), Some(&["validatingwebhookconfigurations".to_owned()][..]));
        assert_eq!(ca[0].resource_names.as_deref(), Some(&["v".to_owned()][..]));
        assert_eq!(ca[0].verbs, ["get", "patch"]);
    }

    #[test]
    fn api_resources_match_the_kinds() {
        let secret = api_resource(Kind::Secret);
        assert_eq!((secret.api_version.as_str(), secret.plural.as_str()), ("v1", "secrets"));
        let cp = api_resource(Kind::CoderControlPlane);
        assert_eq!(cp.api_version, "coder.com/v1alpha1");
        assert_eq!(cp.kind, "CoderControlPlane");
        let key = api_resource(Kind::CoderAIProvider);
        assert_eq!((key.api_version.as_str(), key.plural.as_str()), ("coderd.coder.com/v1alpha1", "coderaiproviders"));
    }
}
