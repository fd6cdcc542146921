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

mod ai_provider;
mod instance;
mod organization;
mod provisioner_key;

pub use ai_provider::*;
pub use instance::*;
pub use organization::*;
pub use provisioner_key::*;

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
