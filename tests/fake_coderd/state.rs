//! The fake's in-memory database and the small helpers around it (ids, clocks, licenses).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

pub(super) const DEFAULT_ORG_ID: &str = "0000000d-0000-4000-8000-000000000001";
pub(super) const USER_ID: &str = "0000000a-0000-4000-8000-000000000001";
pub(super) const DEPLOYMENT_ID: &str = "0000000e-0000-4000-8000-000000000001";
/// The jti of the license that `FakeOptions::licensed` seeds.
pub(super) const SEEDED_LICENSE_JTI: &str = "0000000c-0000-4000-8000-000000000001";
/// The signature part of every license the fake accepts is this, base64url-encoded.
const SIGNATURE_MARKER: &[u8] = b"coder-guard fake coderd license signature";
pub(super) const FEATURES: [&str; 7] = [
    "external_provisioner_daemons",
    "appearance",
    "multiple_organizations",
    "aibridge",
    "custom_roles",
    "template_rbac",
    "high_availability",
];

pub(super) struct License {
    pub id: i32,
    pub uuid: String,
    pub jwt: String,
    pub uploaded_at: String,
    pub claims: Value,
}

impl License {
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "uuid": self.uuid, "uploaded_at": self.uploaded_at, "claims": self.claims})
    }
}

#[derive(Default)]
pub(super) struct Appearance {
    pub application_name: String,
    pub logo_url: String,
    pub banners: Vec<Value>,
}

pub(super) struct Group {
    pub id: String,
    pub name: String,
    pub display_name: String,
}

pub(super) struct ProvisionerKey {
    pub id: String,
    pub created_at: String,
    pub name: String,
    pub tags: Value,
    pub secret: String,
}

pub(super) struct Org {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub icon: String,
    pub created_at: String,
    pub updated_at: String,
    pub is_default: bool,
    pub deleted: bool,
    pub workspaces: u32,
    pub groups: Vec<Group>,
    pub group_sync: Value,
    pub role_sync: Value,
    pub keys: Vec<ProvisionerKey>,
}

impl Org {
    pub fn new(id: String, name: &str, display_name: &str, is_default: bool) -> Org {
        let now = now();
        let everyone = Group { id: id.clone(), name: "Everyone".into(), display_name: String::new() };
        Org {
            id,
            name: name.into(),
            display_name: display_name.into(),
            description: String::new(),
            icon: String::new(),
            created_at: now.clone(),
            updated_at: now,
            is_default,
            deleted: false,
            workspaces: 0,
            groups: vec![everyone],
            group_sync: json!({"field": "", "mapping": {}, "regex_filter": null, "auto_create_missing_groups": false}),
            role_sync: json!({"field": "", "mapping": {}}),
            keys: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "display_name": self.display_name, "description": self.description,
            "icon": self.icon, "created_at": self.created_at, "updated_at": self.updated_at,
            "is_default": self.is_default,
        })
    }

    pub fn group_json(&self, group: &Group) -> Value {
        json!({
            "id": group.id, "name": group.name, "display_name": group.display_name, "organization_id": self.id,
            "organization_name": self.name, "organization_display_name": self.display_name, "members": [],
            "total_member_count": 0, "avatar_url": "", "quota_allowance": 0, "source": "user",
        })
    }

    pub fn key_json(&self, key: &ProvisionerKey) -> Value {
        json!({"id": key.id, "created_at": key.created_at, "organization": self.id, "name": key.name, "tags": key.tags})
    }
}

/// Bedrock settings as stored (write-only credentials included).
#[derive(Clone, Default)]
pub(super) struct Bedrock {
    pub region: String,
    pub model: String,
    pub small_fast_model: String,
    pub role_arn: String,
    pub external_id: String,
    pub protocol: String,
    pub access_key: Option<String>,
    pub access_key_secret: Option<String>,
}

impl Bedrock {
    /// The response form: discriminated, without the write-only credentials.
    pub fn to_json(&self) -> Value {
        json!({
            "_type": "bedrock", "_version": 1, "region": self.region, "model": self.model,
            "small_fast_model": self.small_fast_model, "role_arn": self.role_arn, "external_id": self.external_id,
            "protocol": self.protocol,
        })
    }
}

pub(super) struct AiKey {
    pub id: String,
    pub secret: String,
    pub created_at: String,
}

pub(super) struct AiProvider {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub display_name: String,
    pub icon: String,
    pub enabled: bool,
    pub base_url: String,
    pub keys: Vec<AiKey>,
    pub settings: Option<Bedrock>,
    pub created_at: String,
    pub updated_at: String,
    pub deleted: bool,
}

impl AiProvider {
    pub fn to_json(&self) -> Value {
        let keys: Vec<Value> =
            self.keys.iter().map(|k| json!({"id": k.id, "masked": "****", "created_at": k.created_at})).collect();
        json!({
            "id": self.id, "type": self.kind, "name": self.name, "display_name": self.display_name,
            "icon": self.icon, "enabled": self.enabled, "base_url": self.base_url, "api_keys": keys,
            "settings": self.settings.as_ref().map(Bedrock::to_json), "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

/// Everything a real deployment keeps in PostgreSQL.
pub(super) struct Db {
    pub next_license_id: i32,
    pub licenses: Vec<License>,
    pub appearance: Appearance,
    pub orgs: Vec<Org>,
    pub org_sync: Value,
    pub ai: Vec<AiProvider>,
}

impl Db {
    /// A fresh install: only the default organization.
    pub fn fresh() -> Db {
        Db {
            next_license_id: 1,
            licenses: Vec::new(),
            appearance: Appearance::default(),
            orgs: vec![Org::new(DEFAULT_ORG_ID.into(), "coder", "Coder", true)],
            org_sync: json!({"field": "", "mapping": {}, "organization_assign_default": false}),
            ai: Vec::new(),
        }
    }

    /// Index of a live organization by id, name (case-insensitive) or the `default` alias.
    pub fn org_index(&self, key: &str) -> Option<usize> {
        self.orgs.iter().position(|o| {
            !o.deleted
                && if key == "default" {
                    o.is_default
                } else if is_uuid(key) {
                    o.id.eq_ignore_ascii_case(key)
                } else {
                    o.name.eq_ignore_ascii_case(key)
                }
        })
    }

    /// Index of a live AI provider by name.
    pub fn ai_index(&self, name: &str) -> Option<usize> {
        self.ai.iter().position(|p| !p.deleted && p.name == name)
    }
}

pub(super) fn uuid_from(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

pub(super) fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// Current time as RFC 3339 with microseconds, like PostgreSQL timestamps through Go.
pub(super) fn now() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// A license JWT the fake accepts (see `FakeCoderd::license_jwt`).
pub(super) fn license_jwt(jti: &str, features: &[&str]) -> String {
    let header = json!({"alg": "EdDSA", "kid": "2022-08-12", "typ": "JWT"});
    let features: Map<String, Value> = features.iter().map(|f| ((*f).to_owned(), json!(1))).collect();
    let payload = json!({
        "jti": jti, "iss": "fake-coderd@coder.com", "sub": "fake-coderd", "iat": 1_767_225_600u64,
        "nbf": 1_767_225_600u64, "exp": 4_102_444_800u64, "license_expires": 4_099_766_400u64, "version": 3,
        "feature_set": "premium", "features": features, "account_type": "salesforce",
        "account_id": "fake-account", "trial": false, "require_telemetry": false, "deployment_ids": [],
    });
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{}", part(&header), part(&payload), URL_SAFE_NO_PAD.encode(SIGNATURE_MARKER))
}

/// Verifies a license the way the fake signs them and returns its claims. Errors never quote the JWT.
pub(super) fn parse_license(jwt: &str) -> Result<Value, &'static str> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("token is malformed: token contains an invalid number of segments");
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let header = decode(header).filter(Value::is_object).ok_or("token is malformed: could not decode header")?;
    if header.get("kid").and_then(Value::as_str).is_none() {
        return Err("token has no kid header");
    }
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err("token is unverifiable: signing method is not EdDSA");
    }
    if *signature != URL_SAFE_NO_PAD.encode(SIGNATURE_MARKER) {
        return Err("token signature is invalid");
    }
    let claims = decode(payload).filter(Value::is_object).ok_or("token is malformed: could not decode claims")?;
    let exp = claims.get("exp").and_then(Value::as_f64).ok_or("license has no valid expiration")?;
    if exp < unix_now() as f64 {
        return Err("token has invalid claims: token is expired");
    }
    if claims.get("version").and_then(Value::as_u64) != Some(3) {
        return Err("license version is not supported");
    }
    Ok(claims)
}

/// A deterministic, unguessable-looking secret of `len` alphanumerics.
pub(super) fn derive_secret(seed: u64, counter: u64, purpose: &str, len: usize) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut block = 0u32;
    while out.len() < len {
        let digest = Sha256::digest(format!("{purpose}:{seed}:{counter}:{block}"));
        out.extend(digest.iter().filter(|b| **b < 248).map(|b| ALPHABET[usize::from(*b) % 62] as char));
        block += 1;
    }
    out.truncate(len);
    out
}
