//! Small shared types: references, env vars and the `metav1.Condition`-based status pieces.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to an object in the same namespace, by name.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[schemars(transform = name_required)]
pub struct LocalObjectRef {
    /// Name of the referenced object in the same namespace.
    #[serde(default)]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key inside a Secret in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[schemars(transform = name_required)]
pub struct SecretKeyRef {
    /// Name of the Secret in the same namespace.
    #[serde(default)]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data. Each field documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Schema of a reference: `name` is required and has no default. Decoding stays tolerant
/// (`#[serde(default)]`) so that rules, not the decoder, report an empty name in objects the
/// API server did not validate (offline input, the operator's CRDs whose `name` defaults to "").
/// A `default: ""` beside `minLength: 1` would make the API server reject the CRD.
fn name_required(schema: &mut schemars::Schema) {
    if let Some(name) = schema.get_mut("properties").and_then(|p| p.get_mut("name")).and_then(|n| n.as_object_mut()) {
        name.remove("default");
    }
    let required = schema.ensure_object().entry("required").or_insert_with(|| serde_json::json!([]));
    if let Some(list) = required.as_array_mut()
        && !list.iter().any(|v| v == "name")
    {
        list.push("name".into());
    }
}

impl SecretKeyRef {
    /// The key to read, falling back to `default` when unset.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().filter(|k| !k.is_empty()).unwrap_or(default)
    }
}

/// A container env var, decoded tolerantly (only what rules read is typed).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

/// Where an env var's value comes from.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub secret_key_ref: Option<KeySelector>,
    pub config_map_key_ref: Option<KeySelector>,
    pub field_ref: Option<serde_json::Value>,
    pub resource_field_ref: Option<serde_json::Value>,
}

/// `secretKeyRef` / `configMapKeyRef` of an env var.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct KeySelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

/// An `envFrom` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    pub prefix: Option<String>,
    pub secret_ref: Option<OptionalRef>,
    pub config_map_ref: Option<OptionalRef>,
}

/// `envFrom[].secretRef` / `configMapRef`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct OptionalRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

/// Object metadata fields the rules read.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub owner_references: Vec<OwnerRef>,
}

/// An owner reference (only what rules read).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OwnerRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// Decodes `null` as the type's default, so `labels: null` or `extraEnv: null` in a manifest
/// reads like an absent field.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
