//! Provisioner keys (`enterprise/coderd/provisionerkeys.go`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::routes::{Handled, Req, Resp, Server, decode, resource_not_found};
use super::state::{self, ProvisionerKey};

const RESERVED: [&str; 3] = ["built-in", "user-auth", "psk"];

#[derive(Deserialize)]
struct CreateKey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
}

pub(super) fn provisioner_keys(s: &mut Server, req: &Req, org: &str) -> Handled {
    let index = s.org(org)?;
    s.gate("external_provisioner_daemons")?;
    if req.method == "GET" {
        let org = &s.db.orgs[index];
        return Ok(Resp::json(200, Value::Array(org.keys.iter().map(|k| org.key_json(k)).collect())));
    }
    let create: CreateKey = decode(&req.body)?;
    let name = create.name.unwrap_or_default();
    let invalid = |message: String| Resp::validations(400, &message, vec![("name".to_owned(), message.clone())]);
    if name.is_empty() {
        return Err(invalid("Name is required".into()));
    }
    if name.len() > 64 {
        return Err(invalid("Name must be at most 64 characters".into()));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
        return Err(invalid(format!("Name cannot be reserved name '{name}'")));
    }
    if s.db.orgs[index].keys.iter().any(|k| k.name.eq_ignore_ascii_case(&name)) {
        return Err(Resp::message(409, format!("Provisioner key with name '{name}' already exists in organization")));
    }
    let secret = s.new_secret("provisioner-key", 43);
    let key = ProvisionerKey {
        id: s.new_id(),
        created_at: state::now(),
        name,
        tags: json!(create.tags.unwrap_or_default()),
        secret: secret.clone(),
    };
    s.db.orgs[index].keys.push(key);
    Ok(Resp::json(201, json!({"key": secret})))
}

pub(super) fn delete_provisioner_key(s: &mut Server, org: &str, name: &str) -> Handled {
    let index = s.org(org)?;
    s.gate("external_provisioner_daemons")?;
    if let Some(reserved) = RESERVED.iter().find(|r| r.eq_ignore_ascii_case(name)) {
        return Err(Resp::message(400, format!("Cannot delete reserved '{reserved}' provisioner key")));
    }
    let keys = &mut s.db.orgs[index].keys;
    let position = keys.iter().position(|k| k.name.eq_ignore_ascii_case(name)).ok_or_else(resource_not_found)?;
    keys.remove(position);
    Ok(Resp::empty(204))
}

/// `GET /api/v2/provisionerkeys/{key}`: authenticated by the daemon key header alone.
pub(super) fn daemon_key(s: &mut Server, req: &Req) -> Handled {
    let presented = req.daemon_key.as_deref().filter(|k| !k.is_empty());
    let presented = presented.ok_or_else(|| Resp::message(403, "provisioner daemon key required"))?;
    for org in s.db.orgs.iter().filter(|o| !o.deleted) {
        if let Some(key) = org.keys.iter().find(|k| k.secret == presented) {
            return Ok(Resp::json(200, org.key_json(key)));
        }
    }
    Err(Resp::message(401, "provisioner daemon key invalid"))
}
