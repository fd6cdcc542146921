//! Request routing, authentication, feature gates and the shared response helpers.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::state::{self, Db};
use super::{Edition, FakeOptions, routes_ai as ai, routes_keys as keys, routes_misc as misc, routes_orgs as orgs};

/// One parsed request, as the handlers see it.
pub(super) struct Req {
    pub method: String,
    pub path: String,
    pub session_token: Option<String>,
    pub daemon_key: Option<String>,
    pub bypass_ratelimit: bool,
    pub body: Vec<u8>,
}

pub(super) enum Body {
    Empty,
    Json(Value),
    Text(&'static str),
}

pub(super) struct Resp {
    pub status: u16,
    pub body: Body,
    pub retry_after: Option<u64>,
}

/// Handlers return early with the error response.
pub(super) type Handled = Result<Resp, Resp>;

impl Resp {
    pub fn json(status: u16, value: Value) -> Resp {
        Resp { status, body: Body::Json(value), retry_after: None }
    }

    pub fn empty(status: u16) -> Resp {
        Resp { status, body: Body::Empty, retry_after: None }
    }

    pub fn text(status: u16, text: &'static str) -> Resp {
        Resp { status, body: Body::Text(text), retry_after: None }
    }

    pub fn message(status: u16, message: impl Into<String>) -> Resp {
        Resp::json(status, json!({"message": message.into()}))
    }

    pub fn detail(status: u16, message: &str, detail: impl Into<String>) -> Resp {
        Resp::json(status, json!({"message": message, "detail": detail.into()}))
    }

    pub fn validations(status: u16, message: &str, fields: Vec<(String, String)>) -> Resp {
        let list: Vec<Value> =
            fields.into_iter().map(|(field, detail)| json!({"field": field, "detail": detail})).collect();
        Resp::json(status, json!({"message": message, "validations": list}))
    }
}

pub(super) fn resource_not_found() -> Resp {
    Resp::message(404, "Resource not found or you do not have access to this resource")
}

pub(super) fn route_not_found() -> Resp {
    Resp::message(404, "Route not found.")
}

/// coderd's answer to `X-Coder-Bypass-Ratelimit` from a user who is not an owner.
pub(super) fn bypass_refused() -> Resp {
    Resp::message(428, "Bypassing rate limits is only allowed for owners.")
}

pub(super) fn rate_limited(retry_after: u64) -> Resp {
    let mut resp = Resp::message(429, "You've been rate limited for sending more than 512 requests in 1m0s.");
    resp.retry_after = Some(retry_after);
    resp
}

pub(super) fn injected_error() -> Resp {
    Resp::detail(500, "An internal server error occurred.", "injected fault")
}

/// Decodes a JSON body like Go's `httpapi.Read`; the detail never quotes the body.
pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Resp> {
    serde_json::from_slice(body).map_err(|e| {
        let detail = match e.classify() {
            serde_json::error::Category::Eof if body.iter().all(u8::is_ascii_whitespace) => "EOF".to_owned(),
            serde_json::error::Category::Data => {
                format!("unexpected value type or shape at line {} column {}", e.line(), e.column())
            }
            _ => format!("malformed JSON at line {} column {}", e.line(), e.column()),
        };
        bad_json(detail)
    })
}

pub(super) fn bad_json(detail: impl Into<String>) -> Resp {
    Resp::detail(400, "Request body must be valid JSON.", detail)
}

/// A go-validator tag failure for one field (the reference quotes coderd echoing the value here).
pub(super) fn tag_failure(field: &str, tag: &str, value: &str) -> (String, String) {
    (field.to_owned(), format!("Validation failed for tag {tag:?} with value: {value:?}"))
}

/// The deployment: its database plus process configuration.
pub(super) struct Server {
    pub db: Db,
    pub opts: FakeOptions,
    pub url: String,
    next_id: u64,
    secrets: u64,
}

impl Server {
    pub fn new(opts: FakeOptions, url: String) -> Server {
        let mut server = Server { db: Db::fresh(), opts, url, next_id: 0x100, secrets: 0 };
        server.wipe();
        server
    }

    /// Back to a fresh install; ids keep counting so stale ids never resolve again.
    pub fn wipe(&mut self) {
        self.db = Db::fresh();
        if self.opts.licensed && self.opts.edition != Edition::Agpl {
            let jwt = state::license_jwt(state::SEEDED_LICENSE_JTI, &state::FEATURES);
            let claims = state::parse_license(&jwt).expect("seeded license is valid");
            self.db.licenses.push(state::License {
                id: 1,
                uuid: state::SEEDED_LICENSE_JTI.into(),
                jwt,
                uploaded_at: state::now(),
                claims,
            });
            self.db.next_license_id = 2;
        }
    }

    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        state::uuid_from(self.next_id)
    }

    pub fn new_secret(&mut self, purpose: &str, len: usize) -> String {
        self.secrets += 1;
        state::derive_secret(self.opts.seed, self.secrets, purpose, len)
    }

    pub fn enterprise(&self) -> bool {
        self.opts.edition != Edition::Agpl
    }

    pub fn entitled(&self) -> bool {
        self.enterprise() && !self.db.licenses.is_empty()
    }

    pub fn feature_enabled(&self, feature: &str) -> bool {
        self.entitled() && (feature != "aibridge" || self.opts.ai_gateway_enabled)
    }

    /// `RequireFeatureMW`: 403 unless the feature is enabled.
    pub fn gate(&self, feature: &str) -> Result<(), Resp> {
        if self.feature_enabled(feature) {
            return Ok(());
        }
        let human = match feature {
            "multiple_organizations" => "Multiple Organizations",
            "external_provisioner_daemons" => "External Provisioner Daemons",
            "aibridge" => "AI Gateway",
            other => other,
        };
        Err(Resp::message(403, format!("{human} is a Premium feature. Contact sales!")))
    }

    /// `ExtractOrganizationParam`: 404 for an unknown or deleted organization.
    pub fn org(&self, key: &str) -> Result<usize, Resp> {
        self.db.org_index(key).ok_or_else(resource_not_found)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Public,
    Session,
}

/// Method check (405, as chi does before any middleware), then authentication, then the handler.
fn on(s: &mut Server, req: &Req, methods: &[&str], auth: Auth, handler: impl FnOnce(&mut Server) -> Handled) -> Resp {
    if !methods.contains(&req.method.as_str()) {
        return Resp::empty(405);
    }
    if auth == Auth::Session && req.session_token.as_deref() != Some(s.opts.token.as_str()) {
        return Resp::message(401, "You must be signed in to access this resource.");
    }
    handler(s).unwrap_or_else(|e| e)
}

pub(super) fn dispatch(s: &mut Server, req: &Req) -> Resp {
    if req.path == "/healthz" {
        return if req.method == "GET" { Resp::text(200, "OK") } else { Resp::empty(405) };
    }
    let Some(rest) = req.path.strip_prefix("/api/v2/") else {
        return Resp::text(404, "404 page not found\n");
    };
    let decoded: Vec<String> = rest.trim_end_matches('/').split('/').map(percent_decode).collect();
    let seg: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let ent = s.enterprise();
    let m = req.method.as_str();
    let get = &["GET"][..];
    use Auth::{Public, Session};
    match seg.as_slice() {
        ["buildinfo"] => on(s, req, get, Public, misc::buildinfo),
        ["users", "me"] => on(s, req, get, Session, |_| Ok(misc::me())),
        ["entitlements"] => on(s, req, get, Session, |s| Ok(misc::entitlements(s))),
        ["licenses"] if ent => on(s, req, &["GET", "POST"], Session, |s| misc::licenses(s, req)),
        ["licenses", "refresh-entitlements"] if ent => {
            on(s, req, &["POST"], Session, |_| Ok(Resp::message(200, "Entitlements updated")))
        }
        ["licenses", id] if ent => on(s, req, &["DELETE"], Session, |s| misc::delete_license(s, id)),
        ["appearance"] if ent => on(s, req, &["GET", "PUT"], Session, |s| misc::appearance(s, req)),
        ["appearance"] if m == "PUT" => route_not_found(),
        ["appearance"] => on(s, req, get, Session, |s| misc::appearance(s, req)),
        ["organizations"] => {
            let methods = if ent { &["GET", "POST"][..] } else { get };
            on(s, req, methods, Session, |s| orgs::organizations(s, req))
        }
        ["organizations", org] => {
            let methods = if ent { &["GET", "PATCH", "DELETE"][..] } else { get };
            on(s, req, methods, Session, |s| orgs::organization(s, req, org))
        }
        ["organizations", org, "groups"] if ent => on(s, req, get, Session, |s| orgs::groups(s, org)),
        ["organizations", org, "settings", "idpsync", kind @ ("groups" | "roles")] if ent => {
            on(s, req, &["GET", "PATCH"], Session, |s| orgs::org_idp_sync(s, req, org, kind))
        }
        ["settings", "idpsync", "organization"] if ent => {
            on(s, req, &["GET", "PATCH"], Session, |s| orgs::organization_sync(s, req))
        }
        ["organizations", org, "provisionerkeys"] if ent => {
            on(s, req, &["GET", "POST"], Session, |s| keys::provisioner_keys(s, req, org))
        }
        ["organizations", org, "provisionerkeys", name] if ent => {
            on(s, req, &["DELETE"], Session, |s| keys::delete_provisioner_key(s, org, name))
        }
        ["provisionerkeys", _] if ent => on(s, req, get, Public, |s| keys::daemon_key(s, req)),
        ["ai", "providers"] if ent => on(s, req, &["GET", "POST"], Session, |s| ai::providers(s, req)),
        ["ai", "providers", id] if ent => {
            on(s, req, &["GET", "PATCH", "DELETE"], Session, |s| ai::provider(s, req, id))
        }
        _ => route_not_found(),
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
