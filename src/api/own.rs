//! coder-guard's own kinds (`coderd.coder.com/v1alpha1`): the coderd-side state that the
//! reconcile loop keeps equal to these resources. CRD YAMLs are generated from these types
//! (`coder-guard manifests crds`).
//!
//! Schema constraints that are local to one object live here (lengths, patterns, enums, CEL);
//! rules that need other objects or byte-exact coderd limits live in `policy`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectRef, SecretKeyRef, null_default};

/// API group of coder-guard's kinds.
pub const GROUP: &str = "coderd.coder.com";
/// Default Secret key of a coderd API token.
pub const DEFAULT_TOKEN_KEY: &str = "token";
/// Default Secret key of a CA bundle.
pub const DEFAULT_CA_KEY: &str = "ca.crt";
/// Default Secret key of a license JWT.
pub const DEFAULT_LICENSE_KEY: &str = "license";
/// Default Secret key of an AI provider API key.
pub const DEFAULT_API_KEY_KEY: &str = "apiKey";
/// Default Secret key of an AWS access key ID.
pub const DEFAULT_ACCESS_KEY_ID_KEY: &str = "accessKeyID";
/// Default Secret key of an AWS secret access key.
pub const DEFAULT_SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";
/// Default Secret key of a provisioner key.
pub const DEFAULT_PROVISIONER_KEY_KEY: &str = "key";

/// Status shared by every coder-guard kind.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes-style conditions, one per surface (`Ready`, `LicenseApplied`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The coderd ID of the object this resource manages, once known.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "coderdID")]
    pub coderd_id: Option<String>,
    /// `CoderInstance` only: coderd's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coderd_version: Option<String>,
    /// `CoderInstance` only: feature name to entitlement (`entitled`, `grace_period`,
    /// `not_entitled`), as coderd last reported.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entitlements: BTreeMap<String, String>,
    /// What the reconcile loop last wrote to coderd, as names and salted digests (never values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedState>,
}

/// What the reconcile loop last wrote to coderd for a resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppliedState {
    /// The organization the coderd object lives in (provisioner keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The name the coderd object was created under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Digest of the tags the object was created with (provisioner keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_digest: Option<String>,
    /// Salted SHA-256 of the secret values last sent to coderd or written to a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_digest: Option<String>,
    /// UUIDs of the licenses this resource uploaded (only these are ever deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "licenseUUIDs")]
    pub license_uuids: Vec<String>,
}

// === CoderInstance ===

/// One coderd deployment and its deployment-wide state.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "coderd.coder.com",
    version = "v1alpha1",
    kind = "CoderInstance",
    doc = "One coderd deployment and its deployment-wide state (license, appearance, organization sync).",
    namespaced,
    status = "ResourceStatus",
    shortname = "cdi",
    category = "coder",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"ControlPlane","type":"string","jsonPath":".spec.controlPlaneRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.controlPlaneRef)").message("set exactly one of url or controlPlaneRef"))]
#[x_kube(validation = Rule::new("has(self.tokenSecretRef) || has(self.controlPlaneRef)").message("tokenSecretRef is required unless controlPlaneRef is set"))]
pub struct CoderInstanceSpec {
    /// coderd's URL, e.g. `https://coder.example.com`. Exclusive with `controlPlaneRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/\S*)?$"), length(max = 2048))]
    pub url: Option<String>,
    /// A `coder.com/v1alpha1` `CoderControlPlane` in this namespace: its `status.url` and
    /// `status.operatorTokenSecretRef` are used. Exclusive with `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_ref: Option<LocalObjectRef>,
    /// API token of a dedicated automation account (key default `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// CA bundle that signs coderd's serving certificate (key default `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Enterprise license to upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseSpec>,
    /// Branding: application name, logo and announcement banners (full replace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appearance: Option<AppearanceSpec>,
    /// Deployment-wide IdP organization sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_sync: Option<OrganizationSyncSpec>,
}

/// `CoderInstance.spec.license`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LicenseSpec {
    /// Secret holding the license JWT (key default `license`).
    pub secret_ref: SecretKeyRef,
}

/// `CoderInstance.spec.appearance`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppearanceSpec {
    /// Application name shown in the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// Logo URL.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "logoURL")]
    pub logo_url: Option<String>,
    /// Announcement banners, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announcement_banners: Vec<BannerSpec>,
}

/// One announcement banner.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BannerSpec {
    /// Whether the banner is shown.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Banner text (Markdown).
    #[serde(default)]
    pub message: String,
    /// `#RRGGBB`; coderd rejects any other form, even on disabled banners.
    #[schemars(regex(pattern = r"^#[0-9a-fA-F]{6}$"))]
    pub background_color: String,
}

/// IdP organization sync (deployment-wide).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSyncSpec {
    /// The claim that carries organization memberships.
    pub field: String,
    /// Claim value to organization **names**; resolved to IDs by the reconcile loop.
    #[serde(default)]
    pub mapping: BTreeMap<String, Vec<String>>,
    /// Also add every user to the default organization.
    #[serde(default = "default_true")]
    pub assign_default: bool,
}

// === CoderOrganization ===

/// What happens in coderd when a `CoderOrganization` is deleted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Leave the organization in coderd.
    #[default]
    Retain,
    /// Delete the organization from coderd.
    Delete,
}

/// One coderd organization and its IdP group and role sync.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "coderd.coder.com",
    version = "v1alpha1",
    kind = "CoderOrganization",
    doc = "One coderd organization and its IdP group and role sync.",
    namespaced,
    status = "ResourceStatus",
    shortname = "cdorg",
    category = "coder",
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceRef.name"}"#,
    printcolumn = r#"{"name":"Name","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CoderOrganizationSpec {
    /// The `CoderInstance` in this namespace.
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceRef is immutable"))]
    pub instance_ref: LocalObjectRef,
    /// Organization name in coderd (default: `metadata.name`). 1–32 ASCII letters, digits and
    /// single hyphens; not `new`, `create` or `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$"))]
    #[x_kube(validation = Rule::new("!(self in ['new', 'create', 'default'])").message("new, create and default are reserved organization names"))]
    pub name: Option<String>,
    /// Display name (≤64, no leading or trailing whitespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub display_name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Icon URL or path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// IdP group sync for this organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_sync: Option<GroupSyncSpec>,
    /// IdP role sync for this organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_sync: Option<RoleSyncSpec>,
    /// `Retain` (default) or `Delete` the coderd organization when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// IdP group sync.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupSyncSpec {
    /// The claim that carries group memberships.
    pub field: String,
    /// IdP group to coderd group **names**.
    #[serde(default)]
    pub mapping: BTreeMap<String, Vec<String>>,
    /// Only IdP groups matching this regular expression are synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_filter: Option<String>,
    /// Create coderd groups that do not exist yet.
    #[serde(default)]
    pub auto_create_missing_groups: bool,
}

/// IdP role sync.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleSyncSpec {
    /// The claim that carries roles.
    pub field: String,
    /// IdP value to organization role names.
    #[serde(default)]
    pub mapping: BTreeMap<String, Vec<String>>,
}

// === CoderAIProvider ===

/// AI Gateway provider types coderd accepts.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AiProviderType {
    #[default]
    Openai,
    Anthropic,
    Azure,
    Google,
    OpenaiCompat,
    Openrouter,
    Vercel,
    Bedrock,
    Copilot,
}

impl AiProviderType {
    /// The name in manifests and in coderd's API (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            AiProviderType::Openai => "openai",
            AiProviderType::Anthropic => "anthropic",
            AiProviderType::Azure => "azure",
            AiProviderType::Google => "google",
            AiProviderType::OpenaiCompat => "openai-compat",
            AiProviderType::Openrouter => "openrouter",
            AiProviderType::Vercel => "vercel",
            AiProviderType::Bedrock => "bedrock",
            AiProviderType::Copilot => "copilot",
        }
    }
}

/// Bedrock invocation protocol.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BedrockProtocol {
    #[default]
    InvokeModel,
    Mantle,
}

impl BedrockProtocol {
    /// The name in manifests and in coderd's API (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            BedrockProtocol::InvokeModel => "invoke-model",
            BedrockProtocol::Mantle => "mantle",
        }
    }
}

/// One AI Gateway provider (coderd ≥ 2.34 stores providers in its database).
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "coderd.coder.com",
    version = "v1alpha1",
    kind = "CoderAIProvider",
    doc = "One AI Gateway provider in coderd's database.",
    namespaced,
    status = "ResourceStatus",
    shortname = "cdaip",
    category = "coder",
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceRef.name"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'bedrock' || has(self.bedrock)").message("type bedrock requires the bedrock block"))]
#[x_kube(validation = Rule::new("!has(self.bedrock) || self.type in ['anthropic', 'bedrock']").message("the bedrock block is only allowed with type anthropic or bedrock"))]
#[x_kube(validation = Rule::new("!(self.type in ['bedrock', 'copilot']) || !has(self.apiKeySecretRefs) || size(self.apiKeySecretRefs) == 0").message("types bedrock and copilot take no apiKeySecretRefs"))]
pub struct CoderAIProviderSpec {
    /// The `CoderInstance` in this namespace.
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceRef is immutable"))]
    pub instance_ref: LocalObjectRef,
    /// Provider name in coderd; immutable.
    #[schemars(regex(pattern = r"^[a-z0-9]+(-[a-z0-9]+)*$"), length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("name is immutable"))]
    pub name: String,
    /// Provider type; immutable.
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("type is immutable"))]
    pub type_: AiProviderType,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Icon URL or path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Whether the provider serves requests.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Absolute http(s) URL of the provider's API.
    #[serde(rename = "baseURL")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/\S*)?$"), length(max = 2048))]
    pub base_url: String,
    /// Up to five API keys (failover order), each a Secret key (key default `apiKey`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub api_key_secret_refs: Vec<SecretKeyRef>,
    /// AWS Bedrock settings (types `bedrock` and `anthropic` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock: Option<BedrockSpec>,
}

/// Bedrock settings of an AI provider.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BedrockSpec {
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// Model ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Model ID for small, fast requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_fast_model: Option<String>,
    /// `invoke-model` (default) or `mantle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<BedrockProtocol>,
    /// IAM role to assume: `arn:aws:iam::<account>:role/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "roleARN")]
    #[schemars(regex(pattern = r"^arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$"))]
    pub role_arn: Option<String>,
    /// Secret key holding the AWS access key ID (key default `accessKeyID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_ref: Option<SecretKeyRef>,
    /// Secret key holding the AWS secret access key (key default `secretAccessKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_secret_ref: Option<SecretKeyRef>,
}

// === CoderProvisionerKey ===

/// What the reconcile loop does when a provisioner key's Secret is lost.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RotationPolicy {
    /// Delete and re-create the key in coderd and write the new plaintext.
    #[default]
    OnSecretLoss,
    /// Never rotate; report the lost Secret as a condition.
    Never,
}

/// One external-provisioner key, stored into a Secret.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "coderd.coder.com",
    version = "v1alpha1",
    kind = "CoderProvisionerKey",
    doc = "One external-provisioner key in coderd, with its plaintext stored in a Secret.",
    namespaced,
    status = "ResourceStatus",
    shortname = "cdpk",
    category = "coder",
    printcolumn = r#"{"name":"Instance","type":"string","jsonPath":".spec.instanceRef.name"}"#,
    printcolumn = r#"{"name":"Organization","type":"string","jsonPath":".spec.organization"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".spec.secretName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CoderProvisionerKeySpec {
    /// The `CoderInstance` in this namespace.
    #[x_kube(validation = Rule::new("self == oldSelf").message("instanceRef is immutable"))]
    pub instance_ref: LocalObjectRef,
    /// Organization name (default `default`).
    #[serde(default = "default_organization")]
    #[schemars(length(min = 1, max = 32))]
    pub organization: String,
    /// Key name in coderd (default: `metadata.name`); at most 64 bytes; not `built-in`,
    /// `user-auth` or `psk` in any letter case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("!(self.lowerAscii() in ['built-in', 'user-auth', 'psk'])").message("built-in, user-auth and psk are reserved provisioner key names"))]
    pub name: Option<String>,
    /// Tags attached to the key (changing them re-creates the key).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Secret to write the key into (default `<name>-provisioner-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// Data key inside the Secret (default `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_key: Option<String>,
    /// `OnSecretLoss` (default) re-creates a key whose Secret is gone; `Never` does not.
    #[serde(default)]
    pub rotation_policy: RotationPolicy,
}

impl CoderProvisionerKey {
    /// The key name sent to coderd.
    pub fn key_name(&self) -> &str {
        match self.spec.name.as_deref() {
            Some(n) if !n.is_empty() => n,
            _ => self.metadata.name.as_deref().unwrap_or_default(),
        }
    }

    /// The Secret the key is written into.
    pub fn secret_name(&self) -> String {
        key_secret_name(self.metadata.name.as_deref().unwrap_or_default(), self.spec.secret_name.as_deref())
    }
}

/// The Secret a `CoderProvisionerKey` named `name` writes its key into.
fn key_secret_name(name: &str, secret_name: Option<&str>) -> String {
    match secret_name {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => format!("{name}-provisioner-key"),
    }
}

/// Where a `CoderProvisionerKey` writes its key, and nothing else of it: the mutating webhook
/// decodes this on every review, and the whole resource (`ObjectMeta` above all) costs several
/// times more to decode.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct KeySecretRef {
    #[serde(default, deserialize_with = "null_default")]
    metadata: KeyName,
    #[serde(default, deserialize_with = "null_default")]
    spec: KeySecretSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct KeyName {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeySecretSpec {
    #[serde(default)]
    secret_name: Option<String>,
    #[serde(default)]
    secret_key: Option<String>,
}

impl KeySecretRef {
    /// The Secret the key is written into.
    pub fn secret_name(&self) -> String {
        key_secret_name(&self.metadata.name, self.spec.secret_name.as_deref())
    }

    /// The data key inside that Secret.
    pub fn secret_key(&self) -> &str {
        self.spec.secret_key.as_deref().filter(|k| !k.is_empty()).unwrap_or(DEFAULT_PROVISIONER_KEY_KEY)
    }
}

fn default_true() -> bool {
    true
}

fn default_organization() -> String {
    "default".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        use AiProviderType::*;
        for t in [Openai, Anthropic, Azure, Google, OpenaiCompat, Openrouter, Vercel, Bedrock, Copilot] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str(), "{t:?}");
        }
        for p in [BedrockProtocol::InvokeModel, BedrockProtocol::Mantle] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str(), "{p:?}");
        }
    }
}
