//! The Secret that holds the self-signed CA every replica shares (`serve --self-signed` in a
//! cluster): [`CaSecret`] is the [`CaStore`] the `certs` task reads with `get` and, as leader,
//! writes with `create` and `update`. What is in it and when it changes is decided in `certs`
//! (`shared.rs`); this module only moves bytes.
//!
//! The Secret is `Opaque` (type `kubernetes.io/tls` would require `tls.crt` and `tls.key`, which
//! would read as a serving pair), labelled `app.kubernetes.io/managed-by: coder-guard`. Updates
//! carry the `resourceVersion` read (optimistic concurrency) and keep every label, annotation and
//! data key coder-guard does not own. Errors never carry the Secret's data: API errors are
//! reported by status, anything else (such as a body that does not decode) without details.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::certs::{CaStore, Created, DATA_KEYS, StoreError, Stored};

/// Label put on the Secret.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "coder-guard");
/// Field manager of the writes.
const FIELD_MANAGER: &str = "coder-guard";

/// The shared CA's Secret `namespace/name`.
pub struct CaSecret {
    api: Api<Secret>,
    namespace: String,
    name: String,
    /// The Secret as last read or written: an update starts from it, so metadata and data keys
    /// that are not ours survive.
    last: Mutex<Option<Secret>>,
}

impl std::fmt::Debug for CaSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSecret").field("namespace", &self.namespace).field("name", &self.name).finish()
    }
}

impl CaSecret {
    /// The Secret `name` in `namespace` (coder-guard's own namespace: `POD_NAMESPACE`).
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            last: Mutex::new(None),
        }
    }

    fn remember(&self, secret: Option<Secret>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = secret;
    }

    fn error(&self, verb: &str, e: kube::Error) -> StoreError {
        store_error(&self.namespace, &self.name, verb, e)
    }
}

/// A failed `verb` on the Secret as a [`StoreError`] that says what to do.
fn store_error(namespace: &str, name: &str, verb: &str, e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(status) if status.is_forbidden() => StoreError::Failed(format!(
            "{verb} is forbidden ({}); grant get and update on Secret {name} and create on secrets in namespace \
             {namespace} (cluster::ca_secret_rbac_rules)",
            status.message
        )),
        kube::Error::Api(status) if status.is_conflict() => {
            StoreError::Conflict { what: format!("Secret {namespace}/{name}") }
        }
        kube::Error::Api(status) => {
            StoreError::Failed(format!("{verb} failed: {} {}: {}", status.code, status.reason, status.message))
        }
        kube::Error::SerdeError(_) => {
            StoreError::Failed(format!("{verb}: the API server's answer does not decode (details withheld)"))
        }
        other => StoreError::Failed(format!("{verb}: {}", transport(&other))),
    }
}

/// A transport error's description. Decoding errors could quote the body (the key), so only
/// errors that cannot are described.
fn transport(e: &kube::Error) -> String {
    match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => e.to_string(),
        _ => "request failed (details withheld)".to_owned(),
    }
}

fn stored(secret: &Secret) -> Stored {
    let data = secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    Stored { version: secret.metadata.resource_version.clone().unwrap_or_default(), data }
}

fn labelled(meta: &mut ObjectMeta) {
    meta.labels.get_or_insert_with(BTreeMap::new).insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
}

fn params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() }
}

impl CaStore for CaSecret {
    fn describe(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.name)
    }

    async fn load(&self) -> Result<Option<Stored>, StoreError> {
        let secret = self.api.get_opt(&self.name).await.map_err(|e| self.error("get", e))?;
        let result = secret.as_ref().map(stored);
        self.remember(secret);
        Ok(result)
    }

    async fn create(&self, data: BTreeMap<String, Vec<u8>>) -> Result<Created, StoreError> {
        let mut metadata = ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectMeta::default()
        };
        labelled(&mut metadata);
        let secret = Secret {
            metadata,
            type_: Some("Opaque".to_owned()),
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            ..Secret::default()
        };
        match self.api.create(&params(), &secret).await {
            Ok(created) => {
                let result = stored(&created);
                self.remember(Some(created));
                Ok(Created { stored: result, won: true })
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() => match self.load().await? {
                Some(winner) => Ok(Created { stored: winner, won: false }),
                None => Err(StoreError::Failed("created by another replica and deleted again; retrying".into())),
            },
            Err(e) => Err(self.error("create", e)),
        }
    }

    async fn replace(&self, version: &str, data: BTreeMap<String, Vec<u8>>) -> Result<Stored, StoreError> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(mut secret) = last.filter(|s| s.metadata.resource_version.as_deref() == Some(version)) else {
            return Err(StoreError::Conflict { what: self.describe() });
        };
        let mut all = secret.data.take().unwrap_or_default();
        all.retain(|key, _| !DATA_KEYS.contains(&key.as_str()));
        all.extend(data.into_iter().map(|(k, v)| (k, ByteString(v))));
        secret.data = Some(all);
        secret.string_data = None;
        labelled(&mut secret.metadata);
        secret.metadata.managed_fields = None;
        match self.api.replace(&self.name, &params(), &secret).await {
            Ok(written) => {
                let result = stored(&written);
                self.remember(Some(written));
                Ok(result)
            }
            Err(e) => Err(self.error("update", e)),
        }
    }
}

/// What [`CaSecret`] needs on the Secret `name`, as a Role in coder-guard's namespace: `get` and
/// `update` on it, and `create` (which cannot be limited by name: Kubernetes does not know the
/// name before the object exists).
pub fn ca_secret_rbac_rules(name: &str) -> Vec<PolicyRule> {
    vec![super::rule("", &["secrets"], &[], &["create"]), super::rule("", &["secrets"], &[name], &["get", "update"])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_secret_rules_are_limited_by_name_except_create() {
        let rules = ca_secret_rbac_rules("coder-guard-ca");
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].verbs, ["create"]);
        assert_eq!(rules[0].resource_names, None);
        assert_eq!(rules[1].verbs, ["get", "update"]);
        assert_eq!(rules[1].resource_names.as_deref(), Some(&["coder-guard-ca".to_owned()][..]));
        assert!(rules.iter().all(|r| r.api_groups.as_deref() == Some(&[String::new()][..])));
        assert!(rules.iter().all(|r| r.resources.as_deref() == Some(&["secrets".to_owned()][..])));
    }

    #[test]
    fn errors_do_not_quote_decoded_bodies() {
        let bad: Result<Secret, _> = serde_json::from_str(r#"{"data": {"ca.key": "not base64 SECRET-BYTES"}}"#);
        let e = kube::Error::SerdeError(bad.unwrap_err());
        let message = store_error("ns", "ca", "get", e).to_string();
        assert!(!message.contains("SECRET-BYTES") && message.contains("details withheld"), "{message}");
    }
}
