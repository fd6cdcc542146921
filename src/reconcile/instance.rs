//! `CoderInstance`: connects to coderd (URL and token from the spec or a `CoderControlPlane`),
//! then, in this order, applies the license, reads entitlements into status, and keeps
//! appearance and organization sync equal to the spec. Other kinds wait for this resource's
//! `Connected` (and `LicenseApplied`) condition.
//!
//! Licenses: a JWT is uploaded only when no license coderd lists has its `jti` as `uuid`, and
//! coderd's duplicate-license 500 counts as applied. Only licenses this resource uploaded (their
//! UUIDs are in `status.applied.licenseUUIDs`) are ever deleted, once replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::context::{CONNECTED, LICENSE_APPLIED};
use super::outcome::{Report, Surface, Wait};
use super::{Context, Dependencies, Error, status};
use crate::api::own::{AppearanceSpec, CoderInstance, DEFAULT_LICENSE_KEY, LicenseSpec, OrganizationSyncSpec};
use crate::coderd::types::{Appearance, Banner, Entitlements, License, Organization, OrganizationSyncSettings};
use crate::coderd::{self, Secret};

const APPEARANCE_APPLIED: &str = "AppearanceApplied";
const ORGANIZATION_SYNC_APPLIED: &str = "OrganizationSyncApplied";

impl Dependencies for CoderInstance {
    const SECRETS: bool = true;
    const DEPENDS_ON_INSTANCE: bool = false;

    fn secret_names(&self) -> Vec<String> {
        let spec = &self.spec;
        let license = spec.license.as_ref().map(|l| &l.secret_ref);
        [spec.token_secret_ref.as_ref(), spec.ca_secret_ref.as_ref(), license]
            .into_iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect()
    }

    fn instance_name(&self) -> Option<&str> {
        None
    }
}

/// What this reconcile learned, for status.
#[derive(Default)]
struct Learned {
    version: Option<String>,
    entitlements: Option<BTreeMap<String, String>>,
    license_uuids: Option<Vec<String>>,
}

pub(super) async fn reconcile(object: Arc<CoderInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Deleting an instance changes nothing in coderd (and it carries no finalizer): no report,
    // so its conditions do not claim that coderd matches a spec that is going away.
    status::dispatch(&*object, apply(&ctx, &object), async { Ok(Action::await_change()) }).await
}

async fn apply(ctx: &Context, object: &CoderInstance) -> Result<Action, Error> {
    let mut report = Report::default();
    let mut learned = Learned::default();
    converge(ctx, object, &mut report, &mut learned).await;
    status::publish(ctx, object, &report, |status| {
        if let Some(version) = learned.version {
            status.coderd_version = Some(version);
        }
        if let Some(entitlements) = learned.entitlements {
            status.entitlements = entitlements;
        }
        if let Some(uuids) = learned.license_uuids {
            let applied = status.applied.get_or_insert_with(Default::default);
            applied.license_uuids = uuids;
        }
    })
    .await
    .map_err(Error::from)
}

async fn converge(ctx: &Context, object: &CoderInstance, report: &mut Report, learned: &mut Learned) {
    let client = match connected(ctx, object, learned).await {
        Ok(client) => {
            report.push(Surface::ok(CONNECTED, "Connected", format!("coderd at {} accepts the token", client.url())));
            client
        }
        Err(surface) => return report.push(surface),
    };
    if let Some(spec) = &object.spec.license {
        report.push(license(ctx, object, spec, &client, learned).await);
    }
    let entitlements = match client.entitlements().await {
        Ok(e) => {
            learned.entitlements =
                Some(e.features.iter().map(|(name, f)| (name.clone(), f.entitlement.clone())).collect());
            Ok(e)
        }
        Err(e) => Err(e),
    };
    if let Some(spec) = &object.spec.appearance {
        let surface = match &entitlements {
            Ok(e) => appearance(&client, spec, e).await,
            Err(e) => Surface::coderd(APPEARANCE_APPLIED, e),
        };
        report.push(surface);
    }
    if let Some(spec) = &object.spec.organization_sync {
        let surface = match &entitlements {
            Ok(e) => organization_sync(&client, spec, e).await,
            Err(e) => Surface::coderd(ORGANIZATION_SYNC_APPLIED, e),
        };
        report.push(surface);
    }
}

/// A client that reached `/healthz` and whose token authenticates.
async fn connected(ctx: &Context, object: &CoderInstance, learned: &mut Learned) -> Result<coderd::Client, Surface> {
    let client = ctx.connect(CONNECTED, object).await?;
    client.healthz().await.map_err(|e| Surface::coderd(CONNECTED, &e))?;
    client.me().await.map_err(|e| Surface::coderd(CONNECTED, &e))?;
    learned.version = client.build_info().await.ok().map(|b| b.version).filter(|v| !v.is_empty());
    Ok(client)
}

async fn license(
    ctx: &Context,
    object: &CoderInstance,
    spec: &LicenseSpec,
    client: &coderd::Client,
    learned: &mut Learned,
) -> Surface {
    let namespace = object.namespace().unwrap_or_default();
    let field = "spec.license.secretRef";
    let jwt = match ctx.require_secret(LICENSE_APPLIED, &namespace, &spec.secret_ref, DEFAULT_LICENSE_KEY, field).await
    {
        Ok(jwt) => jwt,
        Err(surface) => return surface,
    };
    let jti = match license_jti(&jwt) {
        Ok(jti) => jti,
        Err(why) => {
            let message = format!(
                "the license in Secret {namespace}/{} is not a readable license JWT ({why}); put the license file's \
                 content in the Secret",
                spec.secret_ref.name
            );
            return Surface::failed(LICENSE_APPLIED, "InvalidLicense", message, Wait::Slow);
        }
    };
    let listed = match client.licenses().await {
        Ok(listed) => listed,
        Err(e) => return Surface::coderd(LICENSE_APPLIED, &e),
    };
    let ours =
        object.status.as_ref().and_then(|s| s.applied.as_ref()).map(|a| a.license_uuids.clone()).unwrap_or_default();
    let plan = plan_license(&jti, &listed, &ours);
    let mut kept = plan.keep;
    if plan.upload {
        match client.add_license(&jwt).await {
            Ok(Some(_)) => {
                info!(license = %jti, "license uploaded");
                kept.push(jti.clone());
            }
            Ok(None) => info!(license = %jti, "coderd already had the license"),
            Err(e) => return Surface::coderd(LICENSE_APPLIED, &e),
        }
    }
    for (id, uuid) in plan.delete {
        if let Err(e) = client.delete_license(id).await {
            kept.push(uuid);
            learned.license_uuids = Some(kept);
            return Surface::coderd(LICENSE_APPLIED, &e);
        }
        info!(license = %uuid, "replaced license deleted");
    }
    learned.license_uuids = Some(kept);
    Surface::ok(LICENSE_APPLIED, "Applied", format!("license {jti} is applied"))
}

/// The `jti` claim of a license JWT (coderd lists it as the license's `uuid`).
fn license_jti(jwt: &Secret) -> Result<String, &'static str> {
    let mut parts = jwt.expose().trim().split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("a JWT has three dot-separated parts");
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the payload is not base64url")?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| "the payload is not JSON")?;
    match claims.get("jti").and_then(|j| j.as_str()) {
        Some(jti) if !jti.is_empty() => Ok(jti.to_owned()),
        _ => Err("the payload has no jti claim"),
    }
}

/// What to do about licenses.
#[derive(Debug, PartialEq, Eq)]
struct LicensePlan {
    /// POST the desired license.
    upload: bool,
    /// Licenses this resource uploaded that the desired one replaces: (id, uuid).
    delete: Vec<(i32, String)>,
    /// UUIDs of licenses this resource uploaded that stay.
    keep: Vec<String>,
}

fn plan_license(jti: &str, listed: &[License], ours: &[String]) -> LicensePlan {
    let upload = !listed.iter().any(|l| l.uuid == jti);
    let mut delete = Vec::new();
    let mut keep = Vec::new();
    for uuid in ours {
        match listed.iter().find(|l| l.uuid == *uuid) {
            // Still listed: the desired one stays ours, others were replaced.
            Some(_) if uuid == jti => keep.push(uuid.clone()),
            Some(l) => delete.push((l.id, uuid.clone())),
            // Gone (deleted by someone, or coderd lost it): forget it.
            None => {}
        }
    }
    LicensePlan { upload, delete, keep }
}

async fn appearance(client: &coderd::Client, spec: &AppearanceSpec, entitlements: &Entitlements) -> Surface {
    if !entitlements.entitled("appearance") {
        return not_entitled(APPEARANCE_APPLIED, "appearance");
    }
    let desired = desired_appearance(spec);
    match client.appearance().await {
        Ok(current) if current == desired => Surface::ok(APPEARANCE_APPLIED, "Applied", "appearance matches the spec"),
        Ok(_) => match client.put_appearance(&desired).await {
            Ok(()) => {
                info!("appearance updated");
                Surface::ok(APPEARANCE_APPLIED, "Applied", "appearance matches the spec")
            }
            Err(e) => Surface::coderd(APPEARANCE_APPLIED, &e),
        },
        Err(e) => Surface::coderd(APPEARANCE_APPLIED, &e),
    }
}

/// The spec as coderd's full-replace body: unset fields are empty.
fn desired_appearance(spec: &AppearanceSpec) -> Appearance {
    Appearance {
        application_name: spec.application_name.clone().unwrap_or_default(),
        logo_url: spec.logo_url.clone().unwrap_or_default(),
        announcement_banners: spec
            .announcement_banners
            .iter()
            .map(|b| Banner {
                enabled: b.enabled,
                message: b.message.clone(),
                background_color: b.background_color.clone(),
            })
            .collect(),
    }
}

async fn organization_sync(
    client: &coderd::Client,
    spec: &OrganizationSyncSpec,
    entitlements: &Entitlements,
) -> Surface {
    if !entitlements.entitled("multiple_organizations") {
        return not_entitled(ORGANIZATION_SYNC_APPLIED, "multiple_organizations");
    }
    let organizations = match client.organizations().await {
        Ok(o) => o,
        Err(e) => return Surface::coderd(ORGANIZATION_SYNC_APPLIED, &e),
    };
    let desired = match desired_organization_sync(spec, &organizations) {
        Ok(d) => d,
        Err(missing) => {
            let message = format!(
                "spec.organizationSync.mapping names organizations coderd does not have: {}; create them (a \
                 CoderOrganization) or remove them from the mapping",
                missing.join(", ")
            );
            return Surface::failed(ORGANIZATION_SYNC_APPLIED, "UnresolvedOrganizations", message, Wait::Slow);
        }
    };
    match client.organization_sync().await {
        Ok(current) if normalise(current.clone()) == desired => {
            Surface::ok(ORGANIZATION_SYNC_APPLIED, "Applied", "organization sync matches the spec")
        }
        Ok(_) => match client.put_organization_sync(&desired).await {
            Ok(()) => {
                info!("organization sync updated");
                Surface::ok(ORGANIZATION_SYNC_APPLIED, "Applied", "organization sync matches the spec")
            }
            Err(e) => Surface::coderd(ORGANIZATION_SYNC_APPLIED, &e),
        },
        Err(e) => Surface::coderd(ORGANIZATION_SYNC_APPLIED, &e),
    }
}

/// The spec with organization names resolved to IDs, or the names coderd does not have.
fn desired_organization_sync(
    spec: &OrganizationSyncSpec,
    organizations: &[Organization],
) -> Result<OrganizationSyncSettings, Vec<String>> {
    let mut missing = BTreeSet::new();
    let mut mapping = BTreeMap::new();
    for (claim, names) in &spec.mapping {
        let ids: Vec<String> = names
            .iter()
            .filter_map(|name| {
                let found = organizations.iter().find(|o| o.name == *name).map(|o| o.id.clone());
                if found.is_none() {
                    missing.insert(name.clone());
                }
                found
            })
            .collect();
        mapping.insert(claim.clone(), ids);
    }
    if !missing.is_empty() {
        return Err(missing.into_iter().collect());
    }
    Ok(normalise(OrganizationSyncSettings {
        field: spec.field.clone(),
        mapping,
        organization_assign_default: spec.assign_default,
    }))
}

/// Order-insensitive form for comparison: each ID list sorted and deduplicated.
fn normalise(mut settings: OrganizationSyncSettings) -> OrganizationSyncSettings {
    for ids in settings.mapping.values_mut() {
        ids.sort();
        ids.dedup();
    }
    settings
}

fn not_entitled(type_: &'static str, feature: &str) -> Surface {
    let message = format!(
        "coderd's license does not include {feature:?}, so coder-guard does not write it; upload a license that \
         includes it (spec.license) or remove this part of the spec"
    );
    Surface::failed(type_, "NotEntitled", message, Wait::Slow)
}

#[cfg(test)]
mod tests;
