//! `CoderInstance`: a coderd deployment, how to reach it, and its license, appearance and organization sync.

use super::*;

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
