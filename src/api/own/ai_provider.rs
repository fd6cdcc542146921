//! `CoderAIProvider`: an AI provider configured in coderd.

use super::*;

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
