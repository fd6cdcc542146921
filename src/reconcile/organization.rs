//! `CoderOrganization`: one coderd organization and its per-organization IdP group and role
//! sync. The planners ([`plan_organization`], [`desired_group_sync`], [`desired_role_sync`],
//! [`plan_removal`], [`deletion_outcome`]) are pure; [`reconcile`] reads coderd, asks them what
//! to write and writes only that.
//!
//! Touches only the organization the spec names (found by `status.coderdID`, else by name) and
//! its sync settings. Never DELETEs the default organization, never writes a partial group
//! mapping. A deletion ends through the shared [`finish_cleanup`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::cleanup::{Removal, finish_cleanup};
use super::outcome::{Report, Surface, Wait};
use super::status::{self, FINALIZER};
use super::{Context, Dependencies, Error};
use crate::api::own::{CoderOrganization, CoderOrganizationSpec, DeletionPolicy, GroupSyncSpec, RoleSyncSpec};
use crate::coderd::types::{
    CreateOrganization, Group, GroupSyncSettings, Organization, RoleSyncSettings, UpdateOrganization,
};
use crate::coderd::{self, Class};

/// The organization exists and matches the spec.
pub const ORGANIZATION_READY: &str = "OrganizationReady";
/// The organization's group sync matches `spec.groupSync`.
pub const GROUP_SYNC_APPLIED: &str = "GroupSyncApplied";
/// The organization's role sync matches `spec.roleSync`.
pub const ROLE_SYNC_APPLIED: &str = "RoleSyncApplied";

impl Dependencies for CoderOrganization {
    const SECRETS: bool = false;
    const DEPENDS_ON_INSTANCE: bool = true;

    fn secret_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn instance_name(&self) -> Option<&str> {
        Some(&self.spec.instance_ref.name)
    }
}

// === plan ===

/// What to do about the organization itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrgPlan {
    /// Neither its ID nor its name is known to coderd: create it.
    Create(CreateOrganization),
    /// It exists: PATCH these fields. An empty patch means in sync (no write).
    Update { id: String, patch: UpdateOrganization },
}

/// The organization name in coderd: `spec.name`, else `metadata.name`.
pub fn org_name(object: &CoderOrganization) -> &str {
    match object.spec.name.as_deref() {
        Some(name) if !name.is_empty() => name,
        _ => object.metadata.name.as_deref().unwrap_or_default(),
    }
}

/// Create the organization when `observed` is `None`; otherwise patch only the fields the spec
/// sets that differ. An empty display name is never sent (coderd reads it as "unchanged").
pub fn plan_organization(spec: &CoderOrganizationSpec, name: &str, observed: Option<&Organization>) -> OrgPlan {
    let display_name = spec.display_name.clone().filter(|d| !d.is_empty());
    let Some(current) = observed else {
        return OrgPlan::Create(CreateOrganization {
            name: name.to_owned(),
            display_name,
            description: spec.description.clone(),
            icon: spec.icon.clone(),
        });
    };
    let differs = |want: &Option<String>, have: &str| want.as_deref().filter(|w| *w != have).map(str::to_owned);
    let patch = UpdateOrganization {
        name: (current.name != name).then(|| name.to_owned()),
        display_name: differs(&display_name, &current.display_name),
        description: differs(&spec.description, &current.description),
        icon: differs(&spec.icon, &current.icon),
    };
    OrgPlan::Update { id: current.id.clone(), patch }
}

/// The group sync settings `spec` asks for, with group names resolved to the IDs in `groups`
/// (exact name match). Any unknown name fails the whole mapping: a partial one is never written.
pub fn desired_group_sync(spec: &GroupSyncSpec, groups: &[Group], org: &str) -> Result<GroupSyncSettings, Surface> {
    let ids: BTreeMap<&str, &str> = groups.iter().map(|g| (g.name.as_str(), g.id.as_str())).collect();
    let mut missing = BTreeSet::new();
    let mut mapping = BTreeMap::new();
    for (idp_group, names) in &spec.mapping {
        let mut resolved = Vec::with_capacity(names.len());
        for name in names {
            match ids.get(name.as_str()) {
                Some(id) => resolved.push((*id).to_owned()),
                None => {
                    missing.insert(format!("{name:?}"));
                }
            }
        }
        mapping.insert(idp_group.clone(), resolved);
    }
    if !missing.is_empty() {
        let names = missing.into_iter().collect::<Vec<_>>().join(", ");
        let message = format!(
            "groups {names} do not exist in organization {org}; create those groups in the organization or remove \
             them from spec.groupSync.mapping (nothing was written)"
        );
        return Err(Surface::failed(GROUP_SYNC_APPLIED, "UnresolvedGroups", message, Wait::Slow));
    }
    Ok(normal_group_sync(GroupSyncSettings {
        field: spec.field.clone(),
        mapping,
        regex_filter: spec.regex_filter.clone(),
        auto_create_missing_groups: spec.auto_create_missing_groups,
    }))
}

/// Whether coderd's group sync (`current`) differs from `desired`, ignoring value order,
/// duplicates, and `null` versus empty.
pub fn group_sync_differs(desired: &GroupSyncSettings, current: &GroupSyncSettings) -> bool {
    normal_group_sync(desired.clone()) != normal_group_sync(current.clone())
}

/// The role sync settings `spec` asks for (role names are used as they are).
pub fn desired_role_sync(spec: &RoleSyncSpec) -> RoleSyncSettings {
    RoleSyncSettings { field: spec.field.clone(), mapping: normal_mapping(spec.mapping.clone()) }
}

/// Whether coderd's role sync (`current`) differs from `desired`, ignoring value order and
/// duplicates.
pub fn role_sync_differs(desired: &RoleSyncSettings, current: &RoleSyncSettings) -> bool {
    let normal = |s: &RoleSyncSettings| (s.field.clone(), normal_mapping(s.mapping.clone()));
    normal(desired) != normal(current)
}

fn normal_group_sync(mut settings: GroupSyncSettings) -> GroupSyncSettings {
    settings.mapping = normal_mapping(settings.mapping);
    settings.regex_filter = settings.regex_filter.filter(|r| !r.is_empty());
    settings
}

/// Each value list sorted and deduplicated.
fn normal_mapping(mut mapping: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    for values in mapping.values_mut() {
        values.sort();
        values.dedup();
    }
    mapping
}

/// Deletion of the organization coderd returned for the resource (by ID, else by name).
pub fn plan_removal(observed: Option<&Organization>) -> Removal {
    match observed {
        None => Removal::Gone,
        Some(org) if org.is_default => Removal::Keep(format!(
            "organization {} is coderd's default organization, which cannot be deleted; it was left in place",
            org.name
        )),
        Some(org) => Removal::Delete(org.id.clone()),
    }
}

/// What a DELETE's answer means: `Ok(None)` deleted, `Ok(Some(note))` left in place with a
/// Warning, `Err` not deleted yet (keep the finalizer).
pub fn deletion_outcome(name: &str, result: Result<(), coderd::Error>) -> Result<Option<String>, Surface> {
    let Err(error) = result else { return Ok(None) };
    match error.api() {
        Some(api) if api.status == 400 => {
            Ok(Some(format!("coderd refused to delete organization {name} ({error}); it was left in place")))
        }
        Some(api)
            if api.status == 500
                && (api.detail.contains("must be deleted first") || api.message == "Error deleting organization.") =>
        {
            let said =
                if api.detail.is_empty() { api.message.clone() } else { format!("{}: {}", api.message, api.detail) };
            let message = format!(
                "coderd cannot delete organization {name}: {said}; delete the organization's workspaces and \
                 templates, or set deletionPolicy: Retain"
            );
            Err(Surface::failed(ORGANIZATION_READY, "DeletionBlocked", message, Wait::Backoff))
        }
        _ => Err(Surface::coderd(ORGANIZATION_READY, &error)),
    }
}

// === act ===

pub(super) async fn reconcile(object: Arc<CoderOrganization>, ctx: Arc<Context>) -> Result<Action, Error> {
    status::dispatch(&*object, apply(&ctx, &object), cleanup(&ctx, &object)).await
}

async fn apply(ctx: &Context, object: &CoderOrganization) -> Result<Action, Error> {
    // Before any create, so a deletion can never miss an organization this resource made.
    status::set_finalizer(ctx, object, object.spec.deletion_policy == DeletionPolicy::Delete).await?;
    let mut report = Report::default();
    let mut found = None;
    match ensure_organization(ctx, object).await {
        Ok((client, org, message)) => {
            report.push(Surface::ok(ORGANIZATION_READY, "Applied", message));
            if let Some(spec) = &object.spec.group_sync {
                report.push(settled(GROUP_SYNC_APPLIED, group_sync(&client, &org, spec).await));
            }
            if let Some(spec) = &object.spec.role_sync {
                report.push(settled(ROLE_SYNC_APPLIED, role_sync(&client, &org, spec).await));
            }
            found = Some(org);
        }
        Err(surface) => report.push(surface),
    }
    status::publish(ctx, object, &report, |status| {
        if let Some(org) = found {
            status.coderd_id = Some(org.id);
            status.applied.get_or_insert_with(Default::default).name = Some(org.name);
        }
    })
    .await
    .map_err(Error::from)
}

fn settled(type_: &'static str, result: Result<String, Surface>) -> Surface {
    result.map_or_else(|failed| failed, |message| Surface::ok(type_, "Applied", message))
}

/// The organization, created or patched to match the spec, with the client and what was done.
async fn ensure_organization(
    ctx: &Context,
    object: &CoderOrganization,
) -> Result<(coderd::Client, Organization, String), Surface> {
    let namespace = object.namespace().unwrap_or_default();
    let instance = ctx.ready_instance(ORGANIZATION_READY, &namespace, &object.spec.instance_ref.name).await?;
    let client = ctx.connect(ORGANIZATION_READY, &instance).await?;
    let failed = |e: coderd::Error| Surface::coderd(ORGANIZATION_READY, &e);
    let name = org_name(object);
    let known_id = object.status.as_ref().and_then(|s| s.coderd_id.as_deref()).filter(|id| !id.is_empty());
    let mut observed = None;
    if let Some(id) = known_id {
        observed = client.organization(id).await.map_err(failed)?;
    }
    if observed.is_none() {
        observed = client.organization(name).await.map_err(failed)?;
    }
    let mut plan = plan_organization(&object.spec, name, observed.as_ref());
    if let OrgPlan::Create(request) = &plan {
        match client.create_organization(request).await {
            Ok(org) => {
                info!(organization = %org.name, id = %org.id, "organization created");
                return Ok((client, org, format!("created organization {name}")));
            }
            // Created since the lookup (or by someone else): adopt it by name.
            Err(e) if e.class() == Class::Conflict => {
                observed = client.organization(name).await.map_err(failed)?;
                plan = plan_organization(&object.spec, name, observed.as_ref());
            }
            Err(e) => return Err(failed(e)),
        }
    }
    let (id, patch) = match plan {
        OrgPlan::Update { id, patch } => (id, patch),
        OrgPlan::Create(_) => {
            let message = format!("coderd says organization {name} exists but does not return it; retrying");
            return Err(Surface::failed(ORGANIZATION_READY, "CoderdConflict", message, Wait::Backoff));
        }
    };
    let current = observed.unwrap_or_default();
    if patch.is_empty() {
        return Ok((client, current, format!("organization {name} matches the spec")));
    }
    match client.update_organization(&id, &patch).await {
        Ok(org) => {
            info!(organization = %org.name, id = %org.id, "organization updated");
            Ok((client, org, format!("updated organization {name}")))
        }
        Err(e) if e.class() == Class::Conflict => {
            let message = format!(
                "another organization in coderd is already named {name}; choose another spec.name or rename that \
                 organization"
            );
            Err(Surface::failed(ORGANIZATION_READY, "NameConflict", message, Wait::Slow))
        }
        Err(e) => Err(failed(e)),
    }
}

async fn group_sync(client: &coderd::Client, org: &Organization, spec: &GroupSyncSpec) -> Result<String, Surface> {
    let failed = |e: coderd::Error| Surface::coderd(GROUP_SYNC_APPLIED, &e);
    let groups = client.groups(&org.id).await.map_err(failed)?;
    let desired = desired_group_sync(spec, &groups, &org.name)?;
    let current = client.group_sync(&org.id).await.map_err(failed)?;
    if !group_sync_differs(&desired, &current) {
        return Ok(format!("group sync of organization {} matches the spec", org.name));
    }
    client.put_group_sync(&org.id, &desired).await.map_err(failed)?;
    info!(organization = %org.name, "group sync updated");
    Ok(format!("updated group sync of organization {}", org.name))
}

async fn role_sync(client: &coderd::Client, org: &Organization, spec: &RoleSyncSpec) -> Result<String, Surface> {
    let failed = |e: coderd::Error| Surface::coderd(ROLE_SYNC_APPLIED, &e);
    let desired = desired_role_sync(spec);
    let current = client.role_sync(&org.id).await.map_err(failed)?;
    if !role_sync_differs(&desired, &current) {
        return Ok(format!("role sync of organization {} matches the spec", org.name));
    }
    client.put_role_sync(&org.id, &desired).await.map_err(failed)?;
    info!(organization = %org.name, "role sync updated");
    Ok(format!("updated role sync of organization {}", org.name))
}

async fn cleanup(ctx: &Context, object: &CoderOrganization) -> Result<Action, Error> {
    if !object.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if object.spec.deletion_policy == DeletionPolicy::Retain {
        status::set_finalizer(ctx, object, false).await?;
        return Ok(Action::await_change());
    }
    let name = org_name(object);
    let result = delete_organization(ctx, object, name).await;
    let what = format!("coderd organization {name}");
    finish_cleanup(ctx, object, &object.spec.instance_ref.name, "OrganizationLeftInPlace", &what, result).await
}

/// Deletes the organization: `Ok(None)` when gone, `Ok(Some(note))` when left in place on purpose.
async fn delete_organization(ctx: &Context, object: &CoderOrganization, name: &str) -> Result<Option<String>, Surface> {
    let namespace = object.namespace().unwrap_or_default();
    let instance = ctx.ready_instance(ORGANIZATION_READY, &namespace, &object.spec.instance_ref.name).await?;
    let client = ctx.connect(ORGANIZATION_READY, &instance).await?;
    let failed = |e: coderd::Error| Surface::coderd(ORGANIZATION_READY, &e);
    // By the recorded ID when there is one (another organization may have taken the name
    // since); by name only when none was recorded (the status write after the create was lost).
    let key = object.status.as_ref().and_then(|s| s.coderd_id.as_deref()).filter(|id| !id.is_empty()).unwrap_or(name);
    let observed = client.organization(key).await.map_err(failed)?;
    match plan_removal(observed.as_ref()) {
        Removal::Gone => Ok(None),
        Removal::Keep(note) => Ok(Some(note)),
        Removal::Delete(id) => {
            let outcome = deletion_outcome(name, client.delete_organization(&id).await);
            if matches!(outcome, Ok(None)) {
                info!(organization = %name, id = %id, "organization deleted");
            }
            outcome
        }
    }
}

#[cfg(test)]
mod tests;
