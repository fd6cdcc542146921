//! Keeps `webhooks[*].clientConfig.caBundle` of coder-guard's webhook configurations equal to
//! the CA that signs its serving certificate (self-managed certificates; run by the leader).
//!
//! The patch is a strategic merge patch keyed by webhook `name` (what the API declares as the
//! list's merge key) carrying only the caBundles that differ, with the `resourceVersion` read
//! as a precondition: nothing else in the configurations is touched, and a configuration that
//! changed in between is left for the next attempt.

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Field manager of the patches.
const FIELD_MANAGER: &str = "coder-guard";

/// How many webhooks got a new caBundle, per configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaBundlePatched {
    pub validating: usize,
    pub mutating: usize,
}

/// Why the caBundle could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// The configuration does not exist (yet).
    #[error("{kind} {name} not found; install the webhook configurations (`coder-guard manifests webhooks`)")]
    NotFound { kind: &'static str, name: String },
    /// The configuration changed between read and patch.
    #[error("{kind} {name} changed while its caBundle was being patched; will retry")]
    Conflict { kind: &'static str, name: String },
    /// The API server refused or failed a read or the patch.
    #[error("cannot update the caBundle of {kind} {name}: {source}")]
    Api {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Sets the caBundle of every webhook in the ValidatingWebhookConfiguration `validating` and the
/// MutatingWebhookConfiguration `mutating` to `bundle_pem`, patching only when one differs. An
/// empty name skips that configuration.
pub async fn patch_ca_bundle(
    client: &Client,
    validating: &str,
    mutating: &str,
    bundle_pem: &[u8],
) -> Result<CaBundlePatched, CaBundleError> {
    let mut patched = CaBundlePatched::default();
    if !validating.is_empty() {
        let api = Api::<ValidatingWebhookConfiguration>::all(client.clone());
        patched.validating = patch_one(&api, "ValidatingWebhookConfiguration", validating, bundle_pem, |c| {
            let bundles = c.webhooks.iter().flatten().map(|w| (w.name.clone(), w.client_config.ca_bundle.clone()));
            (c.metadata.resource_version.clone(), bundles.map(|(n, b)| (n, b.map(|b| b.0))).collect())
        })
        .await?;
    }
    if !mutating.is_empty() {
        let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
        patched.mutating = patch_one(&api, "MutatingWebhookConfiguration", mutating, bundle_pem, |c| {
            let bundles = c.webhooks.iter().flatten().map(|w| (w.name.clone(), w.client_config.ca_bundle.clone()));
            (c.metadata.resource_version.clone(), bundles.map(|(n, b)| (n, b.map(|b| b.0))).collect())
        })
        .await?;
    }
    Ok(patched)
}

/// A configuration's `resourceVersion` and each webhook's name and caBundle.
type Observed = (Option<String>, Vec<(String, Option<Vec<u8>>)>);

async fn patch_one<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    bundle_pem: &[u8],
    observe: impl FnOnce(&K) -> Observed,
) -> Result<usize, CaBundleError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api_error = |source| CaBundleError::Api { kind, name: name.to_owned(), source };
    let config = api.get_opt(name).await.map_err(api_error)?;
    let config = config.ok_or_else(|| CaBundleError::NotFound { kind, name: name.to_owned() })?;
    let (resource_version, webhooks) = observe(&config);
    let Some((patch, count)) = plan(resource_version.as_deref(), &webhooks, bundle_pem) else { return Ok(0) };
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    match api.patch(name, &params, &Patch::Strategic(patch)).await {
        Ok(_) => {
            tracing::info!(kind, name, webhooks = count, "caBundle updated");
            Ok(count)
        }
        Err(kube::Error::Api(status)) if status.is_conflict() => {
            Err(CaBundleError::Conflict { kind, name: name.to_owned() })
        }
        Err(source) => Err(api_error(source)),
    }
}

/// The strategic merge patch that sets the caBundle of each webhook whose bundle differs from
/// `bundle_pem`, and how many that is; `None` when all match.
fn plan(
    resource_version: Option<&str>,
    webhooks: &[(String, Option<Vec<u8>>)],
    bundle_pem: &[u8],
) -> Option<(Value, usize)> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle_pem);
    let changes: Vec<Value> = webhooks
        .iter()
        .filter(|(_, current)| current.as_deref() != Some(bundle_pem))
        .map(|(name, _)| json!({"name": name, "clientConfig": {"caBundle": encoded}}))
        .collect();
    if changes.is_empty() {
        return None;
    }
    let count = changes.len();
    let mut patch = json!({"webhooks": changes});
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    Some((patch, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_only_the_webhooks_whose_bundle_differs() {
        let pem = b"-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n";
        let webhooks = vec![
            ("current.coder.com".to_owned(), Some(pem.to_vec())),
            ("stale.coder.com".to_owned(), Some(b"old".to_vec())),
            ("empty.coder.com".to_owned(), None),
        ];
        let (patch, count) = plan(Some("42"), &webhooks, pem).unwrap();
        assert_eq!(count, 2);
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "42"}, "webhooks": [
                {"name": "stale.coder.com", "clientConfig": {"caBundle": b64}},
                {"name": "empty.coder.com", "clientConfig": {"caBundle": b64}},
            ]})
        );
    }

    #[test]
    fn nothing_to_patch_when_every_bundle_matches() {
        let webhooks = vec![("a".to_owned(), Some(b"pem".to_vec()))];
        assert_eq!(plan(Some("1"), &webhooks, b"pem"), None);
        assert_eq!(plan(Some("1"), &[], b"pem"), None, "no webhooks, nothing to do");
    }
}
