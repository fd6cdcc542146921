//! `coder-guard uninstall-webhooks`: deletes coder-guard's ValidatingWebhookConfiguration and
//! MutatingWebhookConfiguration, so that removing coder-guard cannot leave behind a webhook
//! that calls a Service nobody answers any more (with `failurePolicy: Fail` that refuses every
//! create and update of Coder resources until someone deletes it by hand). The Helm chart runs
//! it as its pre-delete hook, before anything else of the release is removed.
//!
//! Idempotent: a configuration that does not exist counts as removed, so the hook can run
//! again after a failed uninstall. Transient failures (no answer, 429, 5xx) are retried a few
//! times; a refusal (403: missing RBAC) is reported at once.
//!
//! RBAC: `delete` on the two configurations by name ([`uninstall_rbac_rules`]), nothing else.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::DeleteParams;
use kube::{Api, Client};

/// Attempts per configuration for transient failures.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled after each.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Upper bound for one delete call.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// What happened to one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// It existed and was deleted.
    Deleted,
    /// It did not exist (already removed, or never installed).
    Absent,
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Removal::Deleted => "deleted",
            Removal::Absent => "not found (nothing to delete)",
        })
    }
}

/// The outcome for both configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uninstalled {
    pub validating: Removal,
    pub mutating: Removal,
}

/// Why a configuration could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    /// The API server refused or failed the delete.
    #[error(
        "cannot delete {kind} {name}: {source}{hint}",
        hint = if is_forbidden(source) { UninstallError::RBAC_HINT } else { "" }
    )]
    Api {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("cannot delete {kind} {name}: no answer within {after:?} ({attempts} attempts)")]
    Timeout { kind: &'static str, name: String, after: Duration, attempts: u32 },
}

impl UninstallError {
    const RBAC_HINT: &str = "; the service account needs `delete` on validatingwebhookconfigurations and \
                             mutatingwebhookconfigurations with this resourceName (see `coder-guard manifests rbac`)";
}

/// Deletes the ValidatingWebhookConfiguration and the MutatingWebhookConfiguration called
/// `name`. Both are attempted even when the first fails; the first error is returned.
pub async fn delete_webhook_configurations(client: &Client, name: &str) -> Result<Uninstalled, UninstallError> {
    let validating =
        delete_one(&Api::<ValidatingWebhookConfiguration>::all(client.clone()), "ValidatingWebhookConfiguration", name)
            .await;
    let mutating =
        delete_one(&Api::<MutatingWebhookConfiguration>::all(client.clone()), "MutatingWebhookConfiguration", name)
            .await;
    Ok(Uninstalled { validating: validating?, mutating: mutating? })
}

async fn delete_one<K>(api: &Api<K>, kind: &'static str, name: &str) -> Result<Removal, UninstallError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let last = attempt == ATTEMPTS;
        match tokio::time::timeout(CALL_TIMEOUT, api.delete(name, &DeleteParams::default())).await {
            Ok(Ok(_)) => {
                tracing::info!(kind, name, "deleted");
                return Ok(Removal::Deleted);
            }
            Ok(Err(kube::Error::Api(status))) if status.is_not_found() => return Ok(Removal::Absent),
            Ok(Err(source)) if last || !transient(&source) => {
                return Err(UninstallError::Api { kind, name: name.to_owned(), source });
            }
            Err(_) if last => {
                return Err(UninstallError::Timeout {
                    kind,
                    name: name.to_owned(),
                    after: CALL_TIMEOUT,
                    attempts: ATTEMPTS,
                });
            }
            Ok(Err(e)) => tracing::warn!(kind, name, error = %e, retry_in = ?wait, "delete failed; retrying"),
            Err(_) => tracing::warn!(kind, name, retry_in = ?wait, "delete timed out; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    unreachable!("the last attempt always returns")
}

/// Worth another try: no answer, throttled, or a server-side failure.
fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}

fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403 || status.is_forbidden())
}

/// What [`delete_webhook_configurations`] needs: `delete` on the two configurations called
/// `name` (a ClusterRole; the Helm chart binds it to its pre-delete hook's own service account).
pub fn uninstall_rbac_rules(name: &str) -> Vec<PolicyRule> {
    ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"]
        .into_iter()
        .map(|resource| super::rule("admissionregistration.k8s.io", &[resource], &[name], &["delete"]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_is_delete_by_name_only() {
        let rules = uninstall_rbac_rules("coder-guard");
        assert_eq!(rules.len(), 2);
        for rule in &rules {
            assert_eq!(rule.api_groups.as_deref(), Some(&["admissionregistration.k8s.io".to_owned()][..]));
            assert_eq!(rule.resource_names.as_deref(), Some(&["coder-guard".to_owned()][..]));
            assert_eq!(rule.verbs, ["delete"]);
        }
    }

    #[test]
    fn only_unanswered_throttled_and_server_errors_are_retried() {
        let status = |code| kube::Error::Api(kube::core::Status::failure("x", "y").with_code(code).boxed());
        assert!(transient(&status(500)));
        assert!(transient(&status(503)));
        assert!(transient(&status(429)));
        assert!(!transient(&status(403)));
        assert!(!transient(&status(409)));
        assert!(is_forbidden(&status(403)));
        assert!(is_forbidden(&kube::Error::Api(kube::core::Status::failure("x", "Forbidden").boxed())));
        assert!(!is_forbidden(&status(500)));
    }
}
