//! `CoderOrganization`: a coderd organization and its group and role sync.

use super::*;

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
