//! Read views of the Coder operator's kinds (`coder.com/v1alpha1`, coder/coder-k8s).
//!
//! coder-guard validates these objects but never writes them. Fields the rules read are typed;
//! pod-level passthrough (resources, affinity, volumes, …) stays raw JSON so that any value the
//! operator's CRD schema admits decodes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::common::{EnvFromSource, EnvVar, LocalObjectRef, Meta, SecretKeyRef, null_default};

/// API group of the operator's kinds.
pub const GROUP: &str = "coder.com";
/// Default Secret key of operator tokens and proxy session tokens.
pub const DEFAULT_TOKEN_KEY: &str = "token";
/// Default Secret key of a license.
pub const DEFAULT_LICENSE_KEY: &str = "license";
/// Default Secret key of a provisioner key.
pub const DEFAULT_PROVISIONER_KEY_KEY: &str = "key";

/// `CoderControlPlane`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CoderControlPlane {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: ControlPlaneSpec,
    #[serde(default, deserialize_with = "null_default")]
    pub status: ControlPlaneStatus,
}

/// `CoderControlPlane.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneSpec {
    pub image: Option<String>,
    pub replicas: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub service: ServiceSpec,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_args: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_env: Vec<EnvVar>,
    #[serde(default, deserialize_with = "null_default")]
    pub image_pull_secrets: Vec<LocalObjectRef>,
    #[serde(default, deserialize_with = "null_default")]
    pub operator_access: OperatorAccessSpec,
    pub license_secret_ref: Option<SecretKeyRef>,
    pub service_account: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub rbac: RbacSpec,
    pub resources: Option<Value>,
    pub security_context: Option<Value>,
    pub pod_security_context: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub tls: TlsSpec,
    pub readiness_probe: Option<Value>,
    pub liveness_probe: Option<Value>,
    pub env_use_cluster_access_url: Option<bool>,
    pub expose: Option<ExposeSpec>,
    #[serde(default, deserialize_with = "null_default")]
    pub env_from: Vec<EnvFromSource>,
    pub volumes: Option<Value>,
    pub volume_mounts: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub certs: CertsSpec,
    pub node_selector: Option<Value>,
    pub tolerations: Option<Value>,
    pub affinity: Option<Value>,
    pub topology_spread_constraints: Option<Value>,
}

/// `service` of a control plane or workspace proxy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub port: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.operatorAccess`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorAccessSpec {
    #[serde(default)]
    pub disabled: bool,
    pub generated_token_secret_name: Option<String>,
}

/// `spec.rbac` (only the fields rules read are typed).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RbacSpec {
    pub workspace_perms: Option<bool>,
    pub enable_deployments: Option<bool>,
    pub extra_rules: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub workspace_namespaces: Vec<String>,
}

/// `spec.tls`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub secret_names: Vec<String>,
}

/// `spec.certs`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CertsSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub secrets: Vec<CertSecretSelector>,
}

/// `spec.certs.secrets[]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CertSecretSelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
}

/// `spec.expose`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ExposeSpec {
    pub ingress: Option<IngressExpose>,
    pub gateway: Option<GatewayExpose>,
}

/// `spec.expose.ingress`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressExpose {
    pub class_name: Option<String>,
    #[serde(default)]
    pub host: String,
    pub wildcard_host: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
    pub tls: Option<IngressTls>,
}

/// `spec.expose.ingress.tls`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    pub secret_name: Option<String>,
    pub wildcard_secret_name: Option<String>,
}

/// `spec.expose.gateway`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayExpose {
    #[serde(default)]
    pub host: String,
    pub wildcard_host: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub parent_refs: Vec<GatewayParentRef>,
}

/// `spec.expose.gateway.parentRefs[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
}

/// `CoderControlPlane.status` (what coder-guard reuses).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneStatus {
    pub url: Option<String>,
    pub operator_token_secret_ref: Option<SecretKeyRef>,
    #[serde(default)]
    pub operator_access_ready: bool,
}

impl CoderControlPlane {
    /// Name of the Secret the operator writes its token into.
    pub fn operator_token_secret_name(&self) -> String {
        match &self.spec.operator_access.generated_token_secret_name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => crate::policy::names::operator_token_secret_name(&self.metadata.name),
        }
    }
}

/// `CoderProvisioner`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CoderProvisioner {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: ProvisionerSpec,
}

/// `CoderProvisioner.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionerSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub control_plane_ref: LocalObjectRef,
    pub organization_name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub key: ProvisionerKeySpec,
    pub replicas: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: BTreeMap<String, String>,
    pub image: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_args: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_env: Vec<EnvVar>,
    pub resources: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub image_pull_secrets: Vec<LocalObjectRef>,
    pub termination_grace_period_seconds: Option<i64>,
}

/// `CoderProvisioner.spec.key`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionerKeySpec {
    pub name: Option<String>,
    pub secret_name: Option<String>,
    pub secret_key: Option<String>,
}

impl CoderProvisioner {
    /// The organization the key lives in (`default` when unset).
    pub fn organization(&self) -> &str {
        nonempty(self.spec.organization_name.as_deref()).unwrap_or("default")
    }

    /// The provisioner key name the operator sends to coderd, before its 128-byte truncation.
    pub fn key_name(&self) -> &str {
        nonempty(self.spec.key.name.as_deref()).unwrap_or(&self.metadata.name)
    }

    /// The Secret the operator writes the key into.
    pub fn key_secret_name(&self) -> String {
        match nonempty(self.spec.key.secret_name.as_deref()) {
            Some(n) => n.to_owned(),
            None => format!("{}-provisioner-key", self.metadata.name),
        }
    }
}

/// `CoderWorkspaceProxy`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CoderWorkspaceProxy {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: WorkspaceProxySpec,
}

/// `CoderWorkspaceProxy.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceProxySpec {
    pub image: Option<String>,
    pub replicas: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub service: ServiceSpec,
    #[serde(rename = "primaryAccessURL")]
    pub primary_access_url: Option<String>,
    pub proxy_session_token_secret_ref: Option<SecretKeyRef>,
    pub bootstrap: Option<ProxyBootstrap>,
    #[serde(default)]
    pub derp_only: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_args: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_env: Vec<EnvVar>,
    #[serde(default, deserialize_with = "null_default")]
    pub image_pull_secrets: Vec<LocalObjectRef>,
}

/// `CoderWorkspaceProxy.spec.bootstrap`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyBootstrap {
    #[serde(rename = "coderURL", default)]
    pub coder_url: String,
    #[serde(default, deserialize_with = "null_default")]
    pub credentials_secret_ref: SecretKeyRef,
    pub proxy_name: Option<String>,
    pub display_name: Option<String>,
    pub icon: Option<String>,
    pub generated_token_secret_name: Option<String>,
}

/// `Some(s)` unless `s` is absent or empty.
pub fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}
