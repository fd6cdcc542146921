//! Organizations, their groups, and IdP sync settings.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::routes::{Handled, Req, Resp, Server, bad_json, decode, tag_failure};
use super::state::{Org, is_uuid};

#[derive(Deserialize)]
struct CreateOrg {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    icon: Option<String>,
}

/// coderd's validator tags on an organization's name and display name (an empty name is
/// "unchanged" unless `required`), then its reserved-name check.
fn validate_names(name: &str, required: bool, display_name: &str) -> Result<(), Resp> {
    let mut invalid = Vec::new();
    if name.is_empty() && required {
        invalid.push(tag_failure("name", "required", ""));
    } else if !name.is_empty() && !name_valid(name) {
        invalid.push(tag_failure("name", "organization_name", name));
    }
    if !display_name_valid(display_name) {
        invalid.push(tag_failure("display_name", "organization_display_name", display_name));
    }
    if !invalid.is_empty() {
        return Err(Resp::validations(400, "Validation failed.", invalid));
    }
    if name == "default" {
        return Err(Resp::message(400, "Organization name \"default\" is reserved."));
    }
    Ok(())
}

pub(super) fn organizations(s: &mut Server, req: &Req) -> Handled {
    if req.method == "GET" {
        let list: Vec<Value> = s.db.orgs.iter().filter(|o| !o.deleted).map(Org::to_json).collect();
        return Ok(Resp::json(200, Value::Array(list)));
    }
    s.gate("multiple_organizations")?;
    let create: CreateOrg = decode(&req.body)?;
    let name = create.name.unwrap_or_default();
    let display_name = create.display_name.unwrap_or_default();
    validate_names(&name, true, &display_name)?;
    if s.db.org_index(&name).is_some() {
        return Err(Resp::message(409, "Organization already exists with that name."));
    }
    let display_name = if display_name.is_empty() { name.clone() } else { display_name };
    let mut org = Org::new(s.new_id(), &name, &display_name, false);
    org.description = create.description.unwrap_or_default();
    org.icon = create.icon.unwrap_or_default();
    let body = org.to_json();
    s.db.orgs.push(org);
    Ok(Resp::json(201, body))
}

#[derive(Deserialize)]
struct UpdateOrg {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    icon: Option<String>,
}

pub(super) fn organization(s: &mut Server, req: &Req, key: &str) -> Handled {
    if req.method == "GET" {
        let index = s.org(key)?;
        return Ok(Resp::json(200, s.db.orgs[index].to_json()));
    }
    s.gate("multiple_organizations")?;
    let index = s.org(key)?;
    if req.method == "DELETE" {
        let org = &mut s.db.orgs[index];
        if org.is_default {
            return Err(Resp::message(400, "Default organization cannot be deleted."));
        }
        if org.workspaces > 0 {
            let detail = format!("This organization has {} workspace(s) that must be deleted first.", org.workspaces);
            return Err(Resp::detail(500, "Error deleting organization.", detail));
        }
        org.deleted = true;
        return Ok(Resp::message(200, "Organization has been deleted."));
    }
    let update: UpdateOrg = decode(&req.body)?;
    let name = update.name.unwrap_or_default();
    let display_name = update.display_name.unwrap_or_default();
    validate_names(&name, false, &display_name)?;
    if !name.is_empty() && s.db.org_index(&name).is_some_and(|other| other != index) {
        let field = ("name".to_owned(), "This value is already in use and should be unique.".to_owned());
        return Err(Resp::validations(
            409,
            &format!("Organization already exists with the name {name:?}."),
            vec![field],
        ));
    }
    let org = &mut s.db.orgs[index];
    if !name.is_empty() {
        org.name = name;
    }
    if !display_name.is_empty() {
        org.display_name = display_name;
    }
    if let Some(description) = update.description {
        org.description = description;
    }
    if let Some(icon) = update.icon {
        org.icon = icon;
    }
    org.updated_at = super::state::now();
    Ok(Resp::json(200, org.to_json()))
}

pub(super) fn groups(s: &mut Server, key: &str) -> Handled {
    let org = &s.db.orgs[s.org(key)?];
    Ok(Resp::json(200, Value::Array(org.groups.iter().map(|g| org.group_json(g)).collect())))
}

/// A claim value mapped to organization or group ids (Go `uuid.UUID`, so other strings fail to decode).
type IdMapping = Option<BTreeMap<String, Option<Vec<String>>>>;

fn id_mapping(mapping: IdMapping) -> Result<Value, Resp> {
    let mut out = serde_json::Map::new();
    for (claim, ids) in mapping.unwrap_or_default() {
        let ids = ids.unwrap_or_default();
        if !ids.iter().all(|id| is_uuid(id)) {
            return Err(bad_json("mapping values must be lists of UUIDs"));
        }
        out.insert(claim, json!(ids.iter().map(|id| id.to_ascii_lowercase()).collect::<Vec<_>>()));
    }
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
struct OrganizationSync {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    mapping: IdMapping,
    #[serde(default)]
    organization_assign_default: Option<bool>,
}

pub(super) fn organization_sync(s: &mut Server, req: &Req) -> Handled {
    if req.method == "PATCH" {
        let sync: OrganizationSync = decode(&req.body)?;
        s.db.org_sync = json!({
            "field": sync.field.unwrap_or_default(), "mapping": id_mapping(sync.mapping)?,
            "organization_assign_default": sync.organization_assign_default.unwrap_or(false),
        });
    }
    Ok(Resp::json(200, s.db.org_sync.clone()))
}

#[derive(Deserialize)]
struct GroupSync {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    mapping: IdMapping,
    #[serde(default)]
    regex_filter: Option<String>,
    #[serde(default)]
    auto_create_missing_groups: Option<bool>,
    #[serde(default)]
    legacy_group_name_mapping: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RoleSync {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    mapping: Option<BTreeMap<String, Option<Vec<String>>>>,
}

pub(super) fn org_idp_sync(s: &mut Server, req: &Req, key: &str, kind: &str) -> Handled {
    let index = s.org(key)?;
    if req.method == "PATCH" {
        let settings = if kind == "groups" { group_sync(&req.body)? } else { role_sync(&req.body)? };
        let org = &mut s.db.orgs[index];
        let slot = if kind == "groups" { &mut org.group_sync } else { &mut org.role_sync };
        *slot = settings;
    }
    let org = &s.db.orgs[index];
    Ok(Resp::json(200, if kind == "groups" { org.group_sync.clone() } else { org.role_sync.clone() }))
}

fn group_sync(body: &[u8]) -> Result<Value, Resp> {
    let sync: GroupSync = decode(body)?;
    if let Some(filter) = &sync.regex_filter
        && regex::Regex::new(filter).is_err()
    {
        return Err(bad_json("regex_filter is not a valid regular expression"));
    }
    if sync.legacy_group_name_mapping.is_some_and(|m| !m.is_empty()) {
        return Err(Resp::message(
            400,
            "Unexpected field 'legacy_group_name_mapping'. Field not allowed, set to null or remove it.",
        ));
    }
    Ok(json!({
        "field": sync.field.unwrap_or_default(), "mapping": id_mapping(sync.mapping)?,
        "regex_filter": sync.regex_filter, "auto_create_missing_groups": sync.auto_create_missing_groups.unwrap_or(false),
    }))
}

fn role_sync(body: &[u8]) -> Result<Value, Resp> {
    let sync: RoleSync = decode(body)?;
    let mapping: BTreeMap<String, Vec<String>> =
        sync.mapping.unwrap_or_default().into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect();
    Ok(json!({"field": sync.field.unwrap_or_default(), "mapping": mapping}))
}

/// `codersdk.NameValid`: 1–32 bytes, not `new`/`create`, ASCII alphanumerics with single inner hyphens.
pub(super) fn name_valid(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name != "new"
        && name != "create"
        && name.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `codersdk.DisplayNameValid`: empty, or ≤ 64 bytes without surrounding whitespace (Go's `.` also excludes `\n`).
fn display_name_valid(name: &str) -> bool {
    let space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    name.is_empty() || (name.len() <= 64 && !name.starts_with(space) && !name.ends_with(space) && !name.contains('\n'))
}
