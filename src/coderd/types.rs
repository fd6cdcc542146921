//! coderd's JSON bodies, as far as the reconcile loop reads or writes them. Decoding is
//! tolerant (unknown fields ignored, `null` read as empty); write-only secrets are [`Secret`]s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::common::null_default;

/// A value coderd must receive but nobody may see: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext, for the one place that must write it (a request body, a Secret).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `codersdk.Response`: every JSON error body.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default, deserialize_with = "null_default")]
    pub validations: Vec<Validation>,
}

/// One field-level validation failure.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Validation {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub detail: String,
}

/// `GET /api/v2/users/me` (only what proves the token works).
#[derive(Clone, Debug, Deserialize)]
pub struct User {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub username: String,
}

/// `GET /api/v2/buildinfo`.
#[derive(Clone, Debug, Deserialize)]
pub struct BuildInfo {
    #[serde(default)]
    pub version: String,
}

/// `GET /api/v2/entitlements`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Entitlements {
    #[serde(default, deserialize_with = "null_default")]
    pub features: BTreeMap<String, Feature>,
    #[serde(default)]
    pub has_license: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub errors: Vec<String>,
}

/// One feature's entitlement.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Feature {
    /// `entitled`, `grace_period` or `not_entitled`.
    #[serde(default)]
    pub entitlement: String,
    #[serde(default)]
    pub enabled: bool,
}

impl Entitlements {
    /// Whether `feature` is licensed (entitled or in its grace period).
    pub fn entitled(&self, feature: &str) -> bool {
        self.features.get(feature).is_some_and(|f| matches!(f.entitlement.as_str(), "entitled" | "grace_period"))
    }
}

/// A license as `GET /api/v2/licenses` lists it (the JWT itself is never returned).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct License {
    pub id: i32,
    /// The JWT's `jti` when it is a UUID.
    #[serde(default)]
    pub uuid: String,
}

/// `POST /api/v2/licenses`.
#[derive(Clone, Debug, Serialize)]
pub struct AddLicense {
    pub license: Secret,
}

/// `AppearanceConfig` / `UpdateAppearanceConfig` (the writable part).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Appearance {
    #[serde(default)]
    pub application_name: String,
    #[serde(default)]
    pub logo_url: String,
    #[serde(default, deserialize_with = "null_default")]
    pub announcement_banners: Vec<Banner>,
}

/// One announcement banner.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Banner {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub background_color: String,
}

/// An organization.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub icon: String,
    #[serde(default)]
    pub is_default: bool,
}

/// `POST /api/v2/organizations`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CreateOrganization {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

/// `PATCH /api/v2/organizations/{org}`: absent fields stay as they are.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct UpdateOrganization {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

impl UpdateOrganization {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A group (only what name resolution needs).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
}

/// Deployment-wide organization sync (full replace).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct OrganizationSyncSettings {
    #[serde(default)]
    pub field: String,
    /// Claim value to organization IDs.
    #[serde(default, deserialize_with = "null_default")]
    pub mapping: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub organization_assign_default: bool,
}

/// Per-organization group sync (full replace; the deprecated legacy mapping is never sent).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupSyncSettings {
    #[serde(default)]
    pub field: String,
    /// IdP group to group IDs.
    #[serde(default, deserialize_with = "null_default")]
    pub mapping: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub regex_filter: Option<String>,
    #[serde(default)]
    pub auto_create_missing_groups: bool,
}

/// Per-organization role sync (full replace).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RoleSyncSettings {
    #[serde(default)]
    pub field: String,
    /// IdP value to organization role names.
    #[serde(default, deserialize_with = "null_default")]
    pub mapping: BTreeMap<String, Vec<String>>,
}

/// A provisioner key (its secret is never returned).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ProvisionerKey {
    pub id: String,
    pub name: String,
    /// The organization's ID.
    #[serde(default)]
    pub organization: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: BTreeMap<String, String>,
}

/// `POST /api/v2/organizations/{org}/provisionerkeys`.
#[derive(Clone, Debug, Serialize)]
pub struct CreateProvisionerKey {
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

/// The 201 body of a key creation: the only time the plaintext exists.
#[derive(Clone, Debug, Deserialize)]
pub struct CreatedProvisionerKey {
    pub key: Secret,
}

/// An AI Gateway provider as coderd returns it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct AiProvider {
    pub id: String,
    pub name: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub icon: String,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub base_url: String,
    #[serde(default, deserialize_with = "null_default")]
    pub api_keys: Vec<AiProviderKey>,
    #[serde(default)]
    pub settings: Option<BedrockSettings>,
}

/// A stored API key: an ID and a mask, never the key.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct AiProviderKey {
    pub id: String,
}

/// Bedrock settings; the access keys are write-only and `external_id` is read-only.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct BedrockSettings {
    #[serde(rename = "_type", default = "bedrock_type")]
    pub type_: String,
    #[serde(rename = "_version", default = "bedrock_version")]
    pub version: u32,
    #[serde(default)]
    pub region: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub small_fast_model: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_secret: Option<Secret>,
}

impl Default for BedrockSettings {
    fn default() -> Self {
        BedrockSettings {
            type_: bedrock_type(),
            version: bedrock_version(),
            region: String::new(),
            model: String::new(),
            small_fast_model: String::new(),
            role_arn: String::new(),
            protocol: String::new(),
            access_key: None,
            access_key_secret: None,
        }
    }
}

fn bedrock_type() -> String {
    "bedrock".to_owned()
}

fn bedrock_version() -> u32 {
    1
}

/// `POST /api/v2/ai/providers`.
#[derive(Clone, Debug, Serialize)]
pub struct CreateAiProvider {
    #[serde(rename = "type")]
    pub type_: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    pub enabled: bool,
    pub base_url: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<BedrockSettings>,
}

/// `PATCH /api/v2/ai/providers/{id}`. `settings` is always sent, the desired block or `null`:
/// the API reference says a missing or `null` block clears Bedrock settings, coderd's current
/// code keeps them; sending what is wanted every time is right under both readings.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct UpdateAiProvider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The key set after the patch, all sent as new keys (`[{"api_key": …}]`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "new_keys")]
    pub api_keys: Option<Vec<Secret>>,
    pub settings: Option<BedrockSettings>,
}

fn new_keys<S: serde::Serializer>(keys: &Option<Vec<Secret>>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct NewKey<'a> {
        api_key: &'a Secret,
    }
    s.collect_seq(keys.iter().flatten().map(|api_key| NewKey { api_key }))
}
