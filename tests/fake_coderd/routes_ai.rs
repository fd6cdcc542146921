//! AI providers (`/api/v2/ai/providers`, coderd v2.34+).

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

use super::routes::{Handled, Req, Resp, Server, bad_json, decode, resource_not_found};
use super::state::{self, AiKey, AiProvider, Bedrock, is_uuid};

const TYPES: [&str; 9] =
    ["openai", "anthropic", "azure", "google", "openai-compat", "openrouter", "vercel", "bedrock", "copilot"];
const MAX_KEYS: usize = 5;
const NAME_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";
const INVALID: &str = "Invalid AI provider request.";
const BEDROCK_NO_KEYS: &str = "Bedrock providers do not accept api_keys; configure access credentials via settings.";
const COPILOT_NO_KEYS: &str =
    "Copilot providers do not accept api_keys; they authenticate via request-time GitHub OAuth tokens.";
const EXTERNAL_ID_READ_ONLY: &str = "The Bedrock external ID is server-generated and cannot be changed.";
static ROLE_ARN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+$").expect("valid regex"));

type Invalid = Vec<(String, String)>;

fn invalid(field: impl Into<String>, detail: impl Into<String>) -> (String, String) {
    (field.into(), detail.into())
}

pub(super) fn providers(s: &mut Server, req: &Req) -> Handled {
    s.gate("aibridge")?;
    if req.method == "GET" {
        let mut live: Vec<&AiProvider> = s.db.ai.iter().filter(|p| !p.deleted).collect();
        live.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(Resp::json(200, Value::Array(live.into_iter().map(AiProvider::to_json).collect())));
    }
    create(s, req)
}

pub(super) fn provider(s: &mut Server, req: &Req, key: &str) -> Handled {
    s.gate("aibridge")?;
    match req.method.as_str() {
        "GET" => Ok(Resp::json(200, s.db.ai[lookup(s, key)?].to_json())),
        "DELETE" => {
            let index = lookup(s, key)?;
            s.db.ai[index].deleted = true;
            Ok(Resp::empty(204))
        }
        _ => update(s, req, key),
    }
}

fn lookup(s: &Server, key: &str) -> Result<usize, Resp> {
    let found = if is_uuid(key) {
        s.db.ai.iter().position(|p| !p.deleted && p.id.eq_ignore_ascii_case(key))
    } else if name_valid(key) {
        s.db.ai_index(key)
    } else {
        return Err(Resp::message(
            400,
            format!("Invalid provider id or name: must be a UUID or match {NAME_PATTERN}."),
        ));
    };
    found.ok_or_else(resource_not_found)
}

fn name_valid(name: &str) -> bool {
    name.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

#[derive(Deserialize)]
struct CreateProvider {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    icon: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_keys: Option<Vec<String>>,
    #[serde(default)]
    settings: Option<Value>,
}

fn create(s: &mut Server, req: &Req) -> Handled {
    let create: CreateProvider = decode(&req.body)?;
    let mut settings = parse_settings(create.settings)?;
    let kind = create.kind.unwrap_or_default();
    let name = create.name.unwrap_or_default();
    let base_url = create.base_url.unwrap_or_default();
    let keys = create.api_keys.unwrap_or_default();
    let mut errors = Invalid::new();
    if kind.is_empty() {
        errors.push(invalid("type", "type is required"));
    } else if !TYPES.contains(&kind.as_str()) {
        errors.push(invalid("type", format!("unsupported provider type; expected one of {}", TYPES.join(", "))));
    }
    if name.is_empty() {
        errors.push(invalid("name", "name is required"));
    } else if !name_valid(&name) {
        let detail = format!("name must match {NAME_PATTERN} (lowercase alphanumeric, hyphens between words)");
        errors.push(invalid("name", detail));
    }
    errors.extend(base_url_errors(&base_url));
    for (i, key) in keys.iter().enumerate() {
        if key.is_empty() {
            errors.push(invalid(format!("api_keys[{i}]"), "api_keys entries must not be empty"));
        } else if key.trim() != key {
            errors.push(invalid(
                format!("api_keys[{i}]"),
                "api_keys entries must not contain leading or trailing whitespace",
            ));
        }
    }
    if keys.len() > MAX_KEYS {
        errors.push(invalid("api_keys", format!("at most {MAX_KEYS} api_keys are allowed per provider")));
    }
    if settings.is_some() && kind != "anthropic" && kind != "bedrock" {
        errors.push(invalid("settings", "bedrock settings are only valid for type=anthropic or type=bedrock"));
    }
    if kind == "bedrock" && settings.as_ref().is_none_or(|b| b.region.is_empty()) {
        errors.push(invalid("settings", "type=bedrock requires bedrock settings"));
    }
    if (kind == "bedrock" || kind == "copilot") && !keys.is_empty() {
        errors.push(invalid("api_keys", format!("type={kind} does not accept api_keys")));
    }
    errors.extend(settings.as_ref().map(settings_errors).unwrap_or_default());
    if !errors.is_empty() {
        return Err(Resp::validations(400, INVALID, errors));
    }
    if settings.is_some() && !keys.is_empty() {
        return Err(Resp::message(400, BEDROCK_NO_KEYS));
    }
    if settings.as_ref().is_some_and(|b| !b.external_id.is_empty()) {
        return Err(Resp::message(400, EXTERNAL_ID_READ_ONLY));
    }
    if s.db.ai_index(&name).is_some() {
        return Err(Resp::message(409, format!("AI provider {name:?} already exists.")));
    }
    if let Some(bedrock) = settings.as_mut() {
        ensure_external_id(s, bedrock);
    }
    let now = state::now();
    let keys = keys.into_iter().map(|secret| AiKey { id: s.new_id(), secret, created_at: now.clone() }).collect();
    let provider = AiProvider {
        id: s.new_id(),
        kind,
        name,
        display_name: create.display_name.unwrap_or_default(),
        icon: create.icon.unwrap_or_default(),
        enabled: create.enabled.unwrap_or(false),
        base_url,
        keys,
        settings,
        created_at: now.clone(),
        updated_at: now,
        deleted: false,
    };
    let body = provider.to_json();
    s.db.ai.push(provider);
    Ok(Resp::json(201, body))
}

#[derive(Deserialize)]
struct KeyMutation {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
}

#[derive(Deserialize)]
struct UpdateProvider {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    icon: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    api_keys: Option<Vec<KeyMutation>>,
    #[serde(default)]
    settings: Option<Value>,
}

fn update(s: &mut Server, req: &Req, key: &str) -> Handled {
    let update: UpdateProvider = decode(&req.body)?;
    let settings = parse_settings(update.settings)?;
    let mutations = update.api_keys;
    if mutations.iter().flatten().any(|m| m.id.as_deref().is_some_and(|id| !is_uuid(id))) {
        return Err(bad_json("api_keys ids must be UUIDs"));
    }
    let nothing = update.display_name.is_none()
        && update.icon.is_none()
        && update.enabled.is_none()
        && update.base_url.is_none()
        && mutations.is_none()
        && settings.is_none();
    if nothing {
        return Err(Resp::message(400, "At least one field must be provided."));
    }
    let mut errors: Invalid = update.base_url.as_deref().map(base_url_errors).unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    for (i, m) in mutations.iter().flatten().enumerate() {
        match (&m.id, m.api_key.as_deref()) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push(invalid(format!("api_keys[{i}]"), "exactly one of id or api_key must be set"));
            }
            (None, Some("")) => errors.push(invalid(format!("api_keys[{i}].api_key"), "api_key must not be empty")),
            (None, Some(k)) if k.trim() != k => errors.push(invalid(
                format!("api_keys[{i}].api_key"),
                "api_key must not contain leading or trailing whitespace",
            )),
            (Some(id), None) if seen.contains(&id.to_ascii_lowercase()) => {
                errors.push(invalid(format!("api_keys[{i}].id"), "id already referenced earlier in api_keys"));
            }
            (Some(id), None) => seen.push(id.to_ascii_lowercase()),
            _ => {}
        }
    }
    errors.extend(settings.as_ref().map(settings_errors).unwrap_or_default());
    if !errors.is_empty() {
        return Err(Resp::validations(400, INVALID, errors));
    }

    let index = lookup(s, key)?;
    let old = &s.db.ai[index];
    let stored_external_id = old.settings.as_ref().map_or("", |b| b.external_id.as_str());
    if settings.as_ref().is_some_and(|b| !b.external_id.is_empty() && b.external_id != stored_external_id) {
        return Err(Resp::message(400, EXTERNAL_ID_READ_ONLY));
    }
    let mut merged = match settings {
        None => old.settings.clone(),
        Some(mut patch) => {
            if let Some(stored) = &old.settings {
                patch.access_key = patch.access_key.or_else(|| stored.access_key.clone());
                patch.access_key_secret = patch.access_key_secret.or_else(|| stored.access_key_secret.clone());
                patch.external_id = stored.external_id.clone();
            }
            Some(patch)
        }
    };
    if merged.is_some() && old.kind != "anthropic" && old.kind != "bedrock" {
        return Err(Resp::message(400, "Bedrock settings are only valid for type=anthropic or type=bedrock."));
    }
    let adds_keys = mutations.as_ref().is_some_and(|m| !m.is_empty());
    if adds_keys && merged.is_some() {
        return Err(Resp::message(400, BEDROCK_NO_KEYS));
    }
    if adds_keys && old.kind == "copilot" {
        return Err(Resp::message(400, COPILOT_NO_KEYS));
    }
    if seen.iter().any(|id| !old.keys.iter().any(|k| k.id == *id)) {
        return Err(Resp::message(400, "api_keys references an unknown id for this provider"));
    }
    if mutations.as_ref().is_some_and(|m| m.len() > MAX_KEYS) {
        let detail = format!("at most {MAX_KEYS} api_keys are allowed per provider");
        return Err(Resp::validations(400, INVALID, vec![invalid("api_keys", detail)]));
    }

    if let Some(bedrock) = merged.as_mut() {
        ensure_external_id(s, bedrock);
    }
    let now = state::now();
    let mut fresh = Vec::new();
    for secret in mutations.iter().flatten().filter_map(|m| m.api_key.clone()) {
        fresh.push(AiKey { id: s.new_id(), secret, created_at: now.clone() });
    }
    let provider = &mut s.db.ai[index];
    if mutations.is_some() {
        provider.keys.retain(|k| seen.contains(&k.id));
        provider.keys.extend(fresh);
    }
    if let Some(display_name) = update.display_name {
        provider.display_name = display_name;
    }
    if let Some(icon) = update.icon {
        provider.icon = icon;
    }
    if let Some(enabled) = update.enabled {
        provider.enabled = enabled;
    }
    if let Some(base_url) = update.base_url {
        provider.base_url = base_url;
    }
    provider.settings = merged;
    provider.updated_at = now;
    Ok(Resp::json(200, provider.to_json()))
}

fn base_url_errors(raw: &str) -> Invalid {
    if raw.is_empty() {
        return vec![invalid("base_url", "base_url is required")];
    }
    match reqwest::Url::parse(raw) {
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => {
            if url.scheme() == "http" || url.scheme() == "https" {
                Vec::new()
            } else {
                vec![invalid("base_url", "base_url scheme must be http or https")]
            }
        }
        _ => vec![invalid("base_url", "base_url must be an absolute URL (e.g. https://api.example.com/)")],
    }
}

#[derive(Deserialize)]
struct RawBedrock {
    #[serde(default, rename = "_type")]
    kind: Option<String>,
    #[serde(default, rename = "_version")]
    version: Option<i64>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    small_fast_model: Option<String>,
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    access_key: Option<String>,
    #[serde(default)]
    access_key_secret: Option<String>,
}

/// The discriminated settings union; decoding failures are JSON errors, as in Go's `UnmarshalJSON`.
fn parse_settings(raw: Option<Value>) -> Result<Option<Bedrock>, Resp> {
    let Some(raw) = raw.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let raw: RawBedrock = serde_json::from_value(raw).map_err(|_| bad_json("settings must be a settings object"))?;
    match raw.kind.as_deref() {
        None | Some("") => return Err(bad_json("settings missing _type discriminator")),
        Some("bedrock") => {}
        Some(_) => return Err(bad_json("unknown settings type")),
    }
    if raw.version != Some(1) {
        return Err(bad_json("unsupported \"bedrock\" settings version (expected 1)"));
    }
    Ok(Some(Bedrock {
        region: raw.region.unwrap_or_default(),
        model: raw.model.unwrap_or_default(),
        small_fast_model: raw.small_fast_model.unwrap_or_default(),
        role_arn: raw.role_arn.unwrap_or_default(),
        external_id: raw.external_id.unwrap_or_default(),
        protocol: raw.protocol.unwrap_or_default(),
        access_key: raw.access_key,
        access_key_secret: raw.access_key_secret,
    }))
}

fn settings_errors(bedrock: &Bedrock) -> Invalid {
    let mut errors = Invalid::new();
    if !bedrock.role_arn.is_empty() && !ROLE_ARN.is_match(&bedrock.role_arn) {
        errors.push(invalid(
            "settings.role_arn",
            "role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
        ));
    }
    if !["", "invoke-model", "mantle"].contains(&bedrock.protocol.as_str()) {
        errors.push(invalid("settings.protocol", "protocol must be invoke-model or mantle"));
    }
    errors
}

/// The server owns the STS external id: generated once a role is assumed, then kept.
fn ensure_external_id(s: &mut Server, bedrock: &mut Bedrock) {
    if !bedrock.role_arn.is_empty() && bedrock.external_id.is_empty() {
        bedrock.external_id = s.new_secret("external-id", 26);
    }
}
