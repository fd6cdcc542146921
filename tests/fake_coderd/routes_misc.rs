//! Build info, the current user, entitlements, licenses and appearance.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::BUILD_VERSION;
use super::routes::{Handled, Req, Resp, Server, decode, tag_failure};
use super::state::{self, FEATURES, License};

pub(super) fn buildinfo(s: &mut Server) -> Handled {
    Ok(Resp::json(
        200,
        json!({
            "external_url": s.url, "version": BUILD_VERSION, "dashboard_url": s.url, "telemetry": false,
            "workspace_proxy": false, "agent_api_version": "2.0", "provisioner_api_version": "1.0",
            "upgrade_message": "", "deployment_id": state::DEPLOYMENT_ID,
        }),
    ))
}

pub(super) fn me() -> Resp {
    Resp::json(
        200,
        json!({
            "id": state::USER_ID, "username": "automation", "email": "automation@example.com",
            "roles": [{"name": "owner", "display_name": "Owner"}],
        }),
    )
}

pub(super) fn entitlements(s: &Server) -> Resp {
    let entitlement = if s.entitled() { "entitled" } else { "not_entitled" };
    let features: Map<String, Value> = FEATURES
        .iter()
        .map(|f| ((*f).to_owned(), json!({"entitlement": entitlement, "enabled": s.feature_enabled(f)})))
        .collect();
    Resp::json(
        200,
        json!({
            "features": features, "warnings": [], "errors": [], "has_license": s.entitled(), "trial": false,
            "require_telemetry": false, "refreshed_at": state::now(),
        }),
    )
}

#[derive(Deserialize)]
struct AddLicense {
    #[serde(default)]
    license: Option<String>,
}

pub(super) fn licenses(s: &mut Server, req: &Req) -> Handled {
    if req.method == "GET" {
        return Ok(Resp::json(200, Value::Array(s.db.licenses.iter().map(License::to_json).collect())));
    }
    let jwt = decode::<AddLicense>(&req.body)?.license.unwrap_or_default();
    if jwt.is_empty() {
        return Err(Resp::validations(400, "Validation failed.", vec![tag_failure("license", "required", "")]));
    }
    let claims = state::parse_license(&jwt).map_err(|why| Resp::detail(400, "Invalid license", why))?;
    if s.db.licenses.iter().any(|l| l.jwt == jwt) {
        return Err(Resp::detail(
            500,
            "Unable to add license to database",
            "pq: duplicate key value violates unique constraint \"licenses_jwt_key\"",
        ));
    }
    let uuid = match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if state::is_uuid(jti) => jti.to_ascii_lowercase(),
        _ => s.new_id(),
    };
    let license = License { id: s.db.next_license_id, uuid, jwt, uploaded_at: state::now(), claims };
    s.db.next_license_id += 1;
    let body = license.to_json();
    s.db.licenses.push(license);
    Ok(Resp::json(201, body))
}

pub(super) fn delete_license(s: &mut Server, id: &str) -> Handled {
    let id: i32 = id.parse().map_err(|_| Resp::message(404, "License ID must be an integer"))?;
    let index =
        s.db.licenses.iter().position(|l| l.id == id).ok_or_else(|| Resp::message(404, "Unknown license ID"))?;
    s.db.licenses.remove(index);
    Ok(Resp::empty(200))
}

#[derive(Deserialize)]
struct Banner {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    background_color: Option<String>,
}

impl Banner {
    fn to_json(&self) -> Value {
        let mut out = json!({"enabled": self.enabled.unwrap_or(false)});
        for (key, value) in [("message", &self.message), ("background_color", &self.background_color)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                out[key] = json!(v);
            }
        }
        out
    }
}

#[derive(Deserialize)]
struct UpdateAppearance {
    #[serde(default)]
    application_name: Option<String>,
    #[serde(default)]
    logo_url: Option<String>,
    #[serde(default)]
    service_banner: Option<Banner>,
    #[serde(default)]
    announcement_banners: Option<Vec<Banner>>,
}

pub(super) fn appearance(s: &mut Server, req: &Req) -> Handled {
    if req.method == "GET" {
        return Ok(Resp::json(200, appearance_config(s, s.feature_enabled("appearance"))));
    }
    let update: UpdateAppearance = decode(&req.body)?;
    let banners = update.announcement_banners.unwrap_or_default();
    for banner in &banners {
        let color = banner.background_color.as_deref().unwrap_or("");
        if let Err(detail) = check_hex_color(color) {
            return Err(Resp::detail(400, &format!("Invalid color format: {color:?}"), detail));
        }
    }
    let stored = &mut s.db.appearance;
    stored.application_name = update.application_name.unwrap_or_default();
    stored.logo_url = update.logo_url.unwrap_or_default();
    stored.banners = banners.iter().map(Banner::to_json).collect();
    let service_banner = update.service_banner.map_or_else(|| json!({"enabled": false}), |b| b.to_json());
    Ok(Resp::json(
        200,
        json!({
            "application_name": stored.application_name, "logo_url": stored.logo_url,
            "service_banner": service_banner, "announcement_banners": stored.banners,
        }),
    ))
}

/// What GET returns: the stored values when licensed, AGPL defaults otherwise.
pub(super) fn appearance_config(s: &Server, licensed: bool) -> Value {
    let stored = &s.db.appearance;
    let (name, logo, banners) = if licensed {
        (stored.application_name.as_str(), stored.logo_url.as_str(), stored.banners.clone())
    } else {
        ("", "", Vec::new())
    };
    let service_banner = banners.first().cloned().unwrap_or_else(|| json!({"enabled": false}));
    json!({
        "application_name": name, "logo_url": logo, "docs_url": "https://coder.com/docs/@v2.34.0",
        "service_banner": service_banner, "announcement_banners": banners,
        "support_links": [
            {"name": "Documentation", "target": "https://coder.com/docs/@v2.34.0", "icon": "docs"},
            {"name": "Report a bug", "target": "https://github.com/coder/coder/issues/new", "icon": "bug"},
            {"name": "Join the Coder Discord", "target": "https://coder.com/chat", "icon": "chat"},
            {"name": "Star the Repo", "target": "https://github.com/coder/coder", "icon": "star"},
        ],
    })
}

/// coderd's `validateHexColor`, error texts included.
fn check_hex_color(color: &str) -> Result<(), String> {
    let bytes = color.as_bytes();
    if bytes.len() != 7 {
        return Err("expected # prefix and 6 characters".into());
    }
    if bytes[0] != b'#' {
        return Err("no # prefix".into());
    }
    match bytes[1..].iter().find(|b| !b.is_ascii_hexdigit()) {
        Some(&b) => Err(format!("encoding/hex: invalid byte: U+{:04X} {:?}", b, char::from(b))),
        None => Ok(()),
    }
}
