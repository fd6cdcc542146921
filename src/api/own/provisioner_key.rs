//! `CoderProvisionerKey`: a provisioner key created in coderd, written into a Secret.

use super::*;

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
