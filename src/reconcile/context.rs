//! [`Context`]: what every controller shares — the Kubernetes client, the Event recorder,
//! HTTP clients per `CoderInstance` (without tokens), per-object failure counts — and the reads
//! every controller needs: Secret values (held only for one reconcile) and the instance a
//! resource points at.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::runtime::events::{Recorder, Reporter};

use super::outcome::{Surface, Wait, digest};
use crate::api::coder::CoderControlPlane;
use crate::api::common::SecretKeyRef;
use crate::api::own::{CoderInstance, DEFAULT_CA_KEY, DEFAULT_TOKEN_KEY};
use crate::cluster::api_resource;
use crate::coderd::{self, Secret};
use crate::policy::Kind;

/// Condition types of a `CoderInstance` that other kinds wait for.
pub const CONNECTED: &str = "Connected";
pub const LICENSE_APPLIED: &str = "LicenseApplied";

/// Tunables of the reconcile loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Regular resync of every resource.
    pub resync: Duration,
    /// Re-check of a resource that waits on someone (not entitled, not supported, bad spec).
    pub slow: Duration,
    /// Timeout of one coderd request.
    pub timeout: Duration,
    /// Events' reporting instance (the Pod name).
    pub identity: String,
    /// Reconciles of one kind that run at once (each talks to coderd, whose API is
    /// rate-limited per user).
    pub concurrency: u16,
    /// Watch only these namespaces (`serve --namespace`); empty means all.
    pub namespaces: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resync: Duration::from_secs(300),
            slow: Duration::from_secs(900),
            timeout: Duration::from_secs(15),
            identity: "coder-guard".to_owned(),
            concurrency: 4,
            namespaces: Vec::new(),
        }
    }
}

/// Shared by every controller.
pub struct Context {
    pub kube: kube::Client,
    pub recorder: Recorder,
    pub config: Config,
    pub metrics: super::Metrics,
    /// Per `namespace/instance`: a salted digest of URL, CA and token, the HTTP client built
    /// from URL and CA, and whether coderd refused that token the rate-limit bypass. No token:
    /// that is read for each reconcile and dropped with it.
    clients: Mutex<HashMap<String, (String, reqwest::Client, coderd::Bypass)>>,
    /// Consecutive failures per object UID, for back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(kube: kube::Client, config: Config, metrics: super::Metrics) -> Self {
        let reporter = Reporter { controller: "coder-guard".to_owned(), instance: Some(config.identity.clone()) };
        Context {
            recorder: Recorder::new(kube.clone(), reporter),
            kube,
            config,
            metrics,
            clients: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Records the outcome for `uid` and returns the consecutive failures before this one.
    pub fn count_failure(&self, uid: &str, failed: bool) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failed {
            let count = failures.entry(uid.to_owned()).or_default();
            *count = count.saturating_add(1);
            *count - 1
        } else {
            failures.remove(uid);
            0
        }
    }

    /// The value of `key` in Secret `namespace/name` without surrounding whitespace (see
    /// [`secret_text`]); `Ok(None)` when the Secret or the key is missing or the value is blank.
    pub async fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Result<Option<Secret>, kube::Error> {
        let secret = Api::<KubeSecret>::namespaced(self.kube.clone(), namespace).get_opt(name).await?;
        let value = secret.and_then(|s| s.data).and_then(|mut d| d.remove(key)).map(|v| v.0);
        Ok(value.as_deref().and_then(secret_text))
    }

    /// Like [`Self::secret_value`], but a missing value is a failed `surface` that says which
    /// field points at it.
    pub async fn require_secret(
        &self,
        surface: &'static str,
        namespace: &str,
        reference: &SecretKeyRef,
        default_key: &str,
        field: &str,
    ) -> Result<Secret, Surface> {
        let key = reference.key_or(default_key);
        match self.secret_value(namespace, &reference.name, key).await {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(Surface::failed(
                surface,
                "SecretNotFound",
                format!(
                    "Secret {namespace}/{} has no non-empty key {key:?} ({field}); create it or fix {field}",
                    reference.name
                ),
                Wait::Slow,
            )),
            Err(e) => Err(kube_failure(surface, &e)),
        }
    }

    /// The `CoderInstance` `namespace/name`, ready for dependants: connected, and with its
    /// license applied if it has one. Otherwise a failed `surface` that says what it waits for.
    pub async fn ready_instance(
        &self,
        surface: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<CoderInstance, Surface> {
        let waiting = |why: String| {
            Surface::failed(
                surface,
                "InstanceNotReady",
                format!("waiting for CoderInstance {namespace}/{name}: {why}"),
                Wait::Slow,
            )
        };
        let instance = Api::<CoderInstance>::namespaced(self.kube.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| kube_failure(surface, &e))?
            .ok_or_else(|| waiting("it does not exist; create it or fix spec.instanceRef".to_owned()))?;
        let conditions = instance.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        let mut gates = vec![CONNECTED];
        if instance.spec.license.is_some() {
            gates.push(LICENSE_APPLIED);
        }
        for gate in gates {
            match conditions.iter().find(|c| c.type_ == gate) {
                Some(c) if c.status == "True" => {}
                Some(c) => return Err(waiting(format!("{gate} is {} ({}: {})", c.status, c.reason, c.message))),
                None => return Err(waiting(format!("{gate} is not reported yet"))),
            }
        }
        Ok(instance)
    }

    /// A coderd client for `instance`: its URL and token from the spec or its control plane.
    /// The HTTP client is reused while URL and CA stay the same; the token is the one just read.
    pub async fn connect(&self, surface: &'static str, instance: &CoderInstance) -> Result<coderd::Client, Surface> {
        let namespace = instance.metadata.namespace.clone().unwrap_or_default();
        let name = instance.metadata.name.clone().unwrap_or_default();
        let (url, token_ref, token_field) = match (&instance.spec.url, &instance.spec.control_plane_ref) {
            (Some(url), _) => {
                let token = instance.spec.token_secret_ref.clone().ok_or_else(|| {
                    Surface::failed(surface, "InvalidSpec", "spec.tokenSecretRef is required with spec.url", Wait::Slow)
                })?;
                (url.clone(), token, "spec.tokenSecretRef")
            }
            (None, Some(reference)) => {
                let (url, token) = self.control_plane(surface, &namespace, &reference.name).await?;
                let token = instance.spec.token_secret_ref.clone().unwrap_or(token);
                (url, token, "the control plane's status.operatorTokenSecretRef")
            }
            (None, None) => {
                return Err(Surface::failed(
                    surface,
                    "InvalidSpec",
                    "set spec.url or spec.controlPlaneRef",
                    Wait::Slow,
                ));
            }
        };
        let token = self.require_secret(surface, &namespace, &token_ref, DEFAULT_TOKEN_KEY, token_field).await?;
        let ca = match &instance.spec.ca_secret_ref {
            Some(r) => Some(self.require_secret(surface, &namespace, r, DEFAULT_CA_KEY, "spec.caSecretRef").await?),
            None => None,
        };
        let invalid = |e: coderd::Error| Surface::failed(surface, "InvalidSpec", e.to_string(), Wait::Slow);
        let (http, bypass) =
            self.http_client(&format!("{namespace}/{name}"), &url, ca.as_ref(), &token).map_err(invalid)?;
        coderd::Client::with_http(http, &url, token).map(|c| c.sharing_bypass(&bypass)).map_err(invalid)
    }

    /// The cached HTTP client and rate-limit bypass state of instance `key` (`namespace/name`)
    /// for `url`, `ca` and `token`, made anew when any of them changed.
    fn http_client(
        &self,
        key: &str,
        url: &str,
        ca: Option<&Secret>,
        token: &Secret,
    ) -> Result<(reqwest::Client, coderd::Bypass), coderd::Error> {
        let fingerprint = digest(key, &[url, ca.map(Secret::expose).unwrap_or_default(), token.expose()]);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, http, bypass)) = clients.get(key)
            && *known == fingerprint
        {
            return Ok((http.clone(), bypass.clone()));
        }
        let http = coderd::Client::http(url, ca.map(|c| c.expose().as_bytes()), self.config.timeout)?;
        let bypass = coderd::Bypass::default();
        clients.insert(key.to_owned(), (fingerprint, http.clone(), bypass.clone()));
        Ok((http, bypass))
    }

    /// URL and token reference from a `CoderControlPlane`'s status.
    async fn control_plane(
        &self,
        surface: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<(String, SecretKeyRef), Surface> {
        let api =
            Api::<DynamicObject>::namespaced_with(self.kube.clone(), namespace, &api_resource(Kind::CoderControlPlane));
        let waiting = |why: &str| {
            Surface::failed(
                surface,
                "ControlPlaneNotReady",
                format!("CoderControlPlane {namespace}/{name} {why}; check the operator, or fix spec.controlPlaneRef"),
                Wait::Slow,
            )
        };
        let object =
            api.get_opt(name).await.map_err(|e| kube_failure(surface, &e))?.ok_or_else(|| waiting("does not exist"))?;
        let value = serde_json::to_value(&object).map_err(|_| waiting("cannot be read"))?;
        let plane: CoderControlPlane = serde_json::from_value(value).map_err(|_| waiting("cannot be read"))?;
        let url = plane.status.url.clone().filter(|u| !u.is_empty()).ok_or_else(|| waiting("has no status.url yet"))?;
        let token = plane
            .status
            .operator_token_secret_ref
            .clone()
            .filter(|r| plane.status.operator_access_ready && !r.name.is_empty())
            .ok_or_else(|| waiting("has no operator token yet (status.operatorAccessReady)"))?;
        Ok((url, token))
    }
}

/// A Secret value as text without surrounding whitespace, or `None` when blank. A file-made
/// Secret (`kubectl create secret --from-file`) ends in a newline that no token, key, license or
/// CA bundle contains, and that HTTP cannot carry in a header.
pub fn secret_text(value: &[u8]) -> Option<Secret> {
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    (!text.is_empty()).then(|| Secret::new(text))
}

/// A failed Kubernetes call on `surface`: transient, retried with back-off.
pub fn kube_failure(surface: &'static str, error: &kube::Error) -> Surface {
    let (reason, hint) = match error {
        kube::Error::Api(s) if s.code == 403 => {
            ("KubernetesForbidden", "grant coder-guard's ServiceAccount this access")
        }
        _ => ("KubernetesError", "retrying with back-off"),
    };
    let what = match error {
        // A decode error may quote the body, and the body may be a Secret.
        kube::Error::SerdeError(_) => "an answer could not be decoded (details withheld)".to_owned(),
        other => other.to_string(),
    };
    Surface::failed(surface, reason, format!("Kubernetes API: {what}; {hint}"), Wait::Backoff)
}

/// A number in `[0, 1)` for jitter, from the standard library's randomly seeded hasher.
pub fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_lose_surrounding_whitespace_and_blank_ones_count_as_missing() {
        let text = |v: &[u8]| secret_text(v).map(|s| s.expose().to_owned());
        assert_eq!(text(b"token-123\n").as_deref(), Some("token-123"));
        assert_eq!(text(b" \tsk-1 \r\n").as_deref(), Some("sk-1"));
        assert_eq!(
            text(b"-----BEGIN X-----\nabc\n-----END X-----\n").as_deref(),
            Some("-----BEGIN X-----\nabc\n-----END X-----")
        );
        assert_eq!(text(b""), None);
        assert_eq!(text(b" \n"), None);
    }
}
