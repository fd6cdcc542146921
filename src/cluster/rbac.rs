//! The RBAC objects coder-guard needs, assembled from the rules the code declares
//! ([`super::rbac_rules`], [`crate::reconcile::rbac_rules`], [`super::lease_rbac_rules`],
//! [`super::ca_bundle_rbac_rules`], [`super::ca_secret_rbac_rules`], [`super::uninstall_rbac_rules`])
//! and nothing else:
//! `coder-guard manifests rbac` prints them, and the Helm chart's test compares the chart's
//! Roles with [`grants`].
//!
//! | grant | kind | when |
//! |---|---|---|
//! | cache (+ reconcile loop) | ClusterRole, or a Role in each `--namespace` | always (reconcile rules unless `--no-reconcile`) |
//! | leader election | Role in coder-guard's namespace | when something runs on the leader only: the reconcile loop or caBundle patching |
//! | caBundle | ClusterRole | `--self-signed` |
//! | shared CA Secret | Role in coder-guard's namespace | `--self-signed` |
//! | uninstall | ClusterRole for the pre-delete hook's own service account | on request |

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::webhooks::CONFIGURATION_NAME;

pub use crate::certs::DEFAULT_CA_SECRET;

/// What coder-guard runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbacOptions {
    /// Prefix of the object names (the Helm release's full name).
    pub name: String,
    /// coder-guard's namespace: its service account and its leader-election Lease.
    pub namespace: String,
    /// The service account `serve` runs as.
    pub service_account: String,
    /// `serve --namespace`: the cache (and the reconcile loop) only see these; empty means all.
    pub watch_namespaces: Vec<String>,
    /// The reconcile loop runs (no `--no-reconcile`).
    pub reconcile: bool,
    /// `serve --self-signed`: the replicas share a CA through a Secret and the leader patches
    /// caBundle.
    pub self_signed: bool,
    /// `serve --self-signed-ca-secret`: that Secret's name (in [`RbacOptions::namespace`]).
    pub ca_secret: String,
    /// The service account of the pre-delete hook (`uninstall-webhooks`), if any.
    pub uninstall_service_account: Option<String>,
}

impl Default for RbacOptions {
    fn default() -> Self {
        Self {
            name: CONFIGURATION_NAME.into(),
            namespace: CONFIGURATION_NAME.into(),
            service_account: CONFIGURATION_NAME.into(),
            watch_namespaces: Vec::new(),
            reconcile: true,
            self_signed: false,
            ca_secret: DEFAULT_CA_SECRET.into(),
            uninstall_service_account: None,
        }
    }
}

/// Where a grant applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// A ClusterRole with a ClusterRoleBinding.
    Cluster,
    /// A Role with a RoleBinding in this namespace.
    Namespace(String),
}

/// One Role or ClusterRole and whom it is bound to.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// The Role's or ClusterRole's name.
    pub name: String,
    pub scope: Scope,
    /// The bound service account (in [`RbacOptions::namespace`]).
    pub service_account: String,
    /// What it is for (a comment in the output).
    pub purpose: &'static str,
    pub rules: Vec<PolicyRule>,
}

/// Every grant coder-guard needs with `options`.
pub fn grants(options: &RbacOptions) -> Vec<Grant> {
    let RbacOptions { name, namespace, service_account, watch_namespaces, reconcile, self_signed, ca_secret, .. } =
        options;
    let grant = |name: String, scope: Scope, purpose, rules| Grant {
        name,
        scope,
        service_account: service_account.clone(),
        purpose,
        rules,
    };
    let mut out = Vec::new();

    let mut read = super::rbac_rules();
    if *reconcile {
        read.extend(crate::reconcile::rbac_rules());
    }
    let purpose = if *reconcile {
        "watch-fed cache of Secrets and Coder objects (get, list, watch), plus the reconcile loop's writes"
    } else {
        "watch-fed cache of Secrets and Coder objects (get, list, watch)"
    };
    if watch_namespaces.is_empty() {
        out.push(grant(name.clone(), Scope::Cluster, purpose, read));
    } else {
        for ns in watch_namespaces {
            out.push(grant(name.clone(), Scope::Namespace(ns.clone()), purpose, read.clone()));
        }
    }

    // `serve` elects a leader only when there is leader-only work (server::run).
    if *reconcile || *self_signed {
        out.push(grant(
            format!("{name}-leader-election"),
            Scope::Namespace(namespace.clone()),
            "leader election on the Lease of the same name as the webhook configurations",
            super::lease_rbac_rules(CONFIGURATION_NAME),
        ));
    }
    if *self_signed {
        out.push(grant(
            format!("{name}-ca-bundle"),
            Scope::Cluster,
            "the leader keeps caBundle of the webhook configurations equal to the self-signed CA bundle",
            super::ca_bundle_rbac_rules(CONFIGURATION_NAME, CONFIGURATION_NAME),
        ));
        out.push(grant(
            format!("{name}-ca-secret"),
            Scope::Namespace(namespace.clone()),
            "the replicas read the shared self-signed CA from its Secret; the leader creates and rotates it",
            super::ca_secret_rbac_rules(ca_secret),
        ));
    }
    if let Some(hook) = &options.uninstall_service_account {
        out.push(Grant {
            name: format!("{name}-uninstall"),
            scope: Scope::Cluster,
            service_account: hook.clone(),
            purpose: "`coder-guard uninstall-webhooks` (the pre-delete hook) deletes the webhook configurations",
            rules: super::uninstall_rbac_rules(CONFIGURATION_NAME),
        });
    }
    out
}

/// The grants as Roles, ClusterRoles and their bindings, one YAML stream.
pub fn render(options: &RbacOptions) -> Result<String, serde_saphyr::SerializeError> {
    let labels = Some(BTreeMap::from([("app.kubernetes.io/name".to_owned(), "coder-guard".to_owned())]));
    let mut out = String::from("# Generated by `coder-guard manifests rbac`; do not edit.\n");
    for grant in grants(options) {
        let subjects = Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: grant.service_account.clone(),
            namespace: Some(options.namespace.clone()),
            api_group: None,
        }]);
        let meta = |namespace: Option<&String>| ObjectMeta {
            name: Some(grant.name.clone()),
            namespace: namespace.cloned(),
            labels: labels.clone(),
            ..ObjectMeta::default()
        };
        let role_ref = |kind: &str| RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: kind.into(),
            name: grant.name.clone(),
        };
        out.push_str(&format!("# {}\n", grant.purpose));
        match &grant.scope {
            Scope::Cluster => {
                let role =
                    ClusterRole { metadata: meta(None), rules: Some(grant.rules.clone()), aggregation_rule: None };
                let binding = ClusterRoleBinding { metadata: meta(None), role_ref: role_ref("ClusterRole"), subjects };
                out.push_str(&format!(
                    "---\n{}---\n{}",
                    serde_saphyr::to_string(&role)?,
                    serde_saphyr::to_string(&binding)?
                ));
            }
            Scope::Namespace(ns) => {
                let role = Role { metadata: meta(Some(ns)), rules: Some(grant.rules.clone()) };
                let binding = RoleBinding { metadata: meta(Some(ns)), role_ref: role_ref("Role"), subjects };
                out.push_str(&format!(
                    "---\n{}---\n{}",
                    serde_saphyr::to_string(&role)?,
                    serde_saphyr::to_string(&binding)?
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_scopes(options: &RbacOptions) -> Vec<(String, Scope)> {
        grants(options).into_iter().map(|g| (g.name, g.scope)).collect()
    }

    #[test]
    fn default_is_one_cluster_role_and_the_lease_role() {
        let options = RbacOptions::default();
        assert_eq!(
            names_and_scopes(&options),
            [
                ("coder-guard".to_owned(), Scope::Cluster),
                ("coder-guard-leader-election".to_owned(), Scope::Namespace("coder-guard".into())),
            ]
        );
        let read = &grants(&options)[0].rules;
        assert_eq!(read.len(), super::super::rbac_rules().len() + crate::reconcile::rbac_rules().len());
    }

    #[test]
    fn namespaced_self_signed_without_reconcile() {
        let options = RbacOptions {
            watch_namespaces: vec!["a".into(), "b".into()],
            reconcile: false,
            self_signed: true,
            uninstall_service_account: Some("hook".into()),
            ..RbacOptions::default()
        };
        let grants = grants(&options);
        assert_eq!(
            grants.iter().map(|g| (g.name.as_str(), g.scope.clone())).collect::<Vec<_>>(),
            [
                ("coder-guard", Scope::Namespace("a".into())),
                ("coder-guard", Scope::Namespace("b".into())),
                ("coder-guard-leader-election", Scope::Namespace("coder-guard".into())),
                ("coder-guard-ca-bundle", Scope::Cluster),
                ("coder-guard-ca-secret", Scope::Namespace("coder-guard".into())),
                ("coder-guard-uninstall", Scope::Cluster),
            ]
        );
        assert_eq!(grants[0].rules, super::super::rbac_rules(), "no reconcile rules without the loop");
        assert_eq!(grants[4].rules, super::super::ca_secret_rbac_rules("coder-guard-ca"));
        assert_eq!(grants[5].service_account, "hook");
    }

    #[test]
    fn no_leader_work_no_lease_role() {
        let options = RbacOptions { reconcile: false, ..RbacOptions::default() };
        assert_eq!(names_and_scopes(&options), [("coder-guard".to_owned(), Scope::Cluster)]);
    }

    #[test]
    fn renders_roles_and_bindings() {
        let options = RbacOptions { self_signed: true, ..RbacOptions::default() };
        let (docs, err) = crate::yaml::parse_documents(&render(&options).unwrap());
        assert_eq!(err, None);
        let kinds: Vec<(&str, &str)> = docs
            .iter()
            .filter(|d| !d.value.is_null())
            .map(|d| (d.value["kind"].as_str().unwrap(), d.value["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("ClusterRole", "coder-guard"),
                ("ClusterRoleBinding", "coder-guard"),
                ("Role", "coder-guard-leader-election"),
                ("RoleBinding", "coder-guard-leader-election"),
                ("ClusterRole", "coder-guard-ca-bundle"),
                ("ClusterRoleBinding", "coder-guard-ca-bundle"),
                ("Role", "coder-guard-ca-secret"),
                ("RoleBinding", "coder-guard-ca-secret"),
            ]
        );
        let binding = &docs.iter().find(|d| d.value["kind"] == "RoleBinding").unwrap().value;
        assert_eq!(binding["subjects"][0]["namespace"], "coder-guard");
        assert_eq!(binding["metadata"]["namespace"], "coder-guard");
    }
}
