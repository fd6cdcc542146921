//! `CoderAIProvider`: one AI Gateway provider in coderd's database (coderd 2.34+). The planner
//! ([`plan_provider`], [`plan_removal`]) is pure; [`reconcile`] reads the Secrets and coderd,
//! asks it what to write and writes only that. Deleting the resource deletes the provider.
//!
//! Keys are write-only in coderd, so `status.applied.secretDigest` (salted with the UID)
//! remembers what was last sent; keys are re-sent when it changes or coderd's key count differs.
//!
//! Hazard: a provider that coderd seeded from `CODER_AI_GATEWAY_PROVIDER_*` / `CODER_AIBRIDGE_*`
//! env vars refuses to start coderd once its `base_url`, type, Bedrock region or models are
//! PATCHed while those env vars are still set (coderd-api.md §7 item 4); the webhook's
//! frozen-env rule covers the env side.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::cleanup::{Removal, finish_cleanup};
use super::outcome::{Report, Surface, Wait, digest};
use super::status::{self, FINALIZER};
use super::{Context, Dependencies, Error};
use crate::api::own::{
    BedrockSpec, CoderAIProvider, CoderAIProviderSpec, DEFAULT_ACCESS_KEY_ID_KEY, DEFAULT_API_KEY_KEY,
    DEFAULT_SECRET_ACCESS_KEY_KEY,
};
use crate::coderd::types::{AiProvider, BedrockSettings, CreateAiProvider, UpdateAiProvider};
use crate::coderd::{self, Class, Secret};

/// The provider exists and matches the spec.
pub const PROVIDER_READY: &str = "ProviderReady";

impl Dependencies for CoderAIProvider {
    const SECRETS: bool = true;
    const DEPENDS_ON_INSTANCE: bool = true;

    fn secret_names(&self) -> Vec<String> {
        let bedrock =
            self.spec.bedrock.iter().flat_map(|b| [b.access_key_ref.as_ref(), b.access_key_secret_ref.as_ref()]);
        self.spec.api_key_secret_refs.iter().chain(bedrock.flatten()).map(|r| r.name.clone()).collect()
    }

    fn instance_name(&self) -> Option<&str> {
        Some(&self.spec.instance_ref.name)
    }
}

// === plan ===

/// The secret values a provider's spec points at, held for one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `spec.apiKeySecretRefs`, in order.
    pub api_keys: Vec<Secret>,
    /// `spec.bedrock.accessKeyRef`.
    pub access_key: Option<Secret>,
    /// `spec.bedrock.accessKeySecretRef`.
    pub access_key_secret: Option<Secret>,
}

impl Credentials {
    /// Salted digest of every value in order (`salt`: the object's UID), for
    /// `status.applied.secretDigest`.
    pub fn digest(&self, salt: &str) -> String {
        let bedrock = [&self.access_key, &self.access_key_secret].map(|v| v.as_ref().map_or("", Secret::expose));
        let parts: Vec<&str> = self.api_keys.iter().map(Secret::expose).chain(bedrock).collect();
        digest(salt, &parts)
    }
}

/// What to do about the provider.
#[derive(Clone, Debug)]
pub enum ProviderPlan {
    /// coderd has no provider of this name: create it with everything.
    Create(CreateAiProvider),
    /// PATCH `request`; `changed` names the fields that differ (for messages).
    Update { id: String, request: UpdateAiProvider, changed: Vec<&'static str> },
    /// Nothing differs: no write.
    InSync { id: String },
}

/// Compares `spec` (with its `credentials`) to `observed`. `secrets_changed`: the credentials'
/// digest differs from the last one applied, so every key is sent again. Fields the spec leaves
/// unset (display name, icon, Bedrock models, role, protocol, the whole Bedrock block) are not
/// managed: coderd's values are kept, and re-sent where the PATCH replaces the block.
pub fn plan_provider(
    spec: &CoderAIProviderSpec,
    credentials: &Credentials,
    secrets_changed: bool,
    observed: Option<&AiProvider>,
) -> Result<ProviderPlan, Surface> {
    let access_keys = |send: bool| {
        if send { (credentials.access_key.clone(), credentials.access_key_secret.clone()) } else { (None, None) }
    };
    let Some(current) = observed else {
        return Ok(ProviderPlan::Create(CreateAiProvider {
            type_: spec.type_.as_str().to_owned(),
            name: spec.name.clone(),
            display_name: spec.display_name.clone(),
            icon: spec.icon.clone(),
            enabled: spec.enabled,
            base_url: spec.base_url.clone(),
            api_keys: credentials.api_keys.clone(),
            settings: spec.bedrock.as_ref().map(|b| bedrock_settings(b, None, access_keys(true))),
        }));
    };
    let want_type = spec.type_.as_str();
    if current.type_ != want_type {
        let message = format!(
            "provider {} exists in coderd with type {:?}, not {want_type:?}; the type of an existing provider cannot \
             change: delete it in coderd or use another name (a new CoderAIProvider, since spec.name is immutable)",
            spec.name, current.type_
        );
        return Err(Surface::failed(PROVIDER_READY, "TypeConflict", message, Wait::Slow));
    }

    let mut changed = Vec::new();
    let mut request = UpdateAiProvider::default();
    if let Some(display_name) = spec.display_name.as_ref().filter(|d| **d != current.display_name) {
        request.display_name = Some(display_name.clone());
        changed.push("display_name");
    }
    if let Some(icon) = spec.icon.as_ref().filter(|i| **i != current.icon) {
        request.icon = Some(icon.clone());
        changed.push("icon");
    }
    if spec.enabled != current.enabled {
        request.enabled = Some(spec.enabled);
        changed.push("enabled");
    }
    if spec.base_url != current.base_url {
        request.base_url = Some(spec.base_url.clone());
        changed.push("base_url");
    }
    let key_count_differs = current.api_keys.len() != credentials.api_keys.len();
    if key_count_differs || (secrets_changed && !credentials.api_keys.is_empty()) {
        request.api_keys = Some(credentials.api_keys.clone());
        changed.push("api_keys");
    }
    // The PATCH always carries a settings block (coderd replaces it): the desired one, or
    // coderd's own when the spec leaves Bedrock unmanaged. Omitted access keys keep the stored.
    request.settings = match &spec.bedrock {
        Some(bedrock) => {
            let has_access_keys = credentials.access_key.is_some() || credentials.access_key_secret.is_some();
            let desired = bedrock_settings(bedrock, current.settings.as_ref(), access_keys(secrets_changed));
            if current.settings.as_ref().is_none_or(|have| !same_bedrock(&desired, have)) {
                changed.push("settings");
            } else if secrets_changed && has_access_keys {
                changed.push("settings.access_keys");
            }
            Some(desired)
        }
        None => current.settings.clone().map(|s| BedrockSettings { access_key: None, access_key_secret: None, ..s }),
    };
    if changed.is_empty() {
        return Ok(ProviderPlan::InSync { id: current.id.clone() });
    }
    Ok(ProviderPlan::Update { id: current.id.clone(), request, changed })
}

/// The Bedrock block for `spec`; optional fields it leaves unset keep coderd's (`current`).
fn bedrock_settings(
    spec: &BedrockSpec,
    current: Option<&BedrockSettings>,
    (access_key, access_key_secret): (Option<Secret>, Option<Secret>),
) -> BedrockSettings {
    let keep = |want: &Option<String>, have: fn(&BedrockSettings) -> &String| {
        want.clone().or_else(|| current.map(|c| have(c).clone())).unwrap_or_default()
    };
    BedrockSettings {
        region: spec.region.clone(),
        model: keep(&spec.model, |c| &c.model),
        small_fast_model: keep(&spec.small_fast_model, |c| &c.small_fast_model),
        role_arn: keep(&spec.role_arn, |c| &c.role_arn),
        protocol: keep(&spec.protocol.map(|p| p.as_str().to_owned()), |c| &c.protocol),
        access_key,
        access_key_secret,
        type_: "bedrock".to_owned(),
        version: 1,
    }
}

/// The readable Bedrock fields (the access keys are write-only).
fn same_bedrock(a: &BedrockSettings, b: &BedrockSettings) -> bool {
    let fields = |s: &BedrockSettings| {
        (
            s.type_.clone(),
            s.region.clone(),
            s.model.clone(),
            s.small_fast_model.clone(),
            s.role_arn.clone(),
            s.protocol.clone(),
        )
    };
    fields(a) == fields(b)
}

/// Deletion of the provider found by name when no coderd ID is recorded: one of another type
/// was never this resource's.
pub fn plan_removal(spec: &CoderAIProviderSpec, observed: Option<&AiProvider>) -> Removal {
    match observed {
        None => Removal::Gone,
        Some(p) if p.type_ != spec.type_.as_str() => Removal::Keep(format!(
            "AI provider {} in coderd has type {:?}, so this resource never managed it; it was left in place",
            p.name, p.type_
        )),
        Some(p) => Removal::Delete(p.id.clone()),
    }
}

// === act ===

pub(super) async fn reconcile(object: Arc<CoderAIProvider>, ctx: Arc<Context>) -> Result<Action, Error> {
    status::dispatch(&*object, apply(&ctx, &object), cleanup(&ctx, &object)).await
}

/// What a successful reconcile records.
struct Applied {
    id: String,
    digest: String,
    message: String,
}

async fn apply(ctx: &Context, object: &CoderAIProvider) -> Result<Action, Error> {
    status::set_finalizer(ctx, object, true).await?;
    let mut report = Report::default();
    let applied = match ensure_provider(ctx, object).await {
        Ok(applied) => {
            report.push(Surface::ok(PROVIDER_READY, "Applied", applied.message.clone()));
            Some(applied)
        }
        Err(surface) => {
            report.push(surface);
            None
        }
    };
    status::publish(ctx, object, &report, |status| {
        if let Some(applied) = applied {
            status.coderd_id = Some(applied.id);
            let record = status.applied.get_or_insert_with(Default::default);
            record.name = Some(object.spec.name.clone());
            record.secret_digest = Some(applied.digest);
        }
    })
    .await
    .map_err(Error::from)
}

async fn ensure_provider(ctx: &Context, object: &CoderAIProvider) -> Result<Applied, Surface> {
    let spec = &object.spec;
    let namespace = object.namespace().unwrap_or_default();
    let instance = ctx.ready_instance(PROVIDER_READY, &namespace, &spec.instance_ref.name).await?;
    let client = ctx.connect(PROVIDER_READY, &instance).await?;
    let credentials = read_credentials(ctx, &namespace, spec).await?;
    let digest = credentials.digest(&object.uid().unwrap_or_default());
    let last = object.status.as_ref().and_then(|s| s.applied.as_ref()).and_then(|a| a.secret_digest.as_deref());
    let failed = |e: coderd::Error| Surface::coderd(PROVIDER_READY, &e);
    let name = &spec.name;

    let observed = client.ai_provider(name).await.map_err(failed)?;
    let mut plan = plan_provider(spec, &credentials, last != Some(digest.as_str()), observed.as_ref())?;
    if let ProviderPlan::Create(request) = &plan {
        match client.create_ai_provider(request).await {
            Ok(created) => {
                info!(provider = %name, id = %created.id, "AI provider created");
                return Ok(Applied { id: created.id, digest, message: format!("created AI provider {name}") });
            }
            // Created since the lookup (or by someone else): adopt it, and send every key.
            Err(e) if e.class() == Class::Conflict => {
                let observed = client.ai_provider(name).await.map_err(failed)?;
                plan = plan_provider(spec, &credentials, true, observed.as_ref())?;
            }
            Err(e) => return Err(failed(e)),
        }
    }
    match plan {
        ProviderPlan::InSync { id } => {
            Ok(Applied { id, digest, message: format!("AI provider {name} matches the spec") })
        }
        ProviderPlan::Update { id, request, changed } => {
            let updated = client.update_ai_provider(&id, &request).await.map_err(failed)?;
            let changed = changed.join(", ");
            info!(provider = %name, id = %updated.id, %changed, "AI provider updated");
            Ok(Applied { id: updated.id, digest, message: format!("updated AI provider {name} ({changed})") })
        }
        ProviderPlan::Create(_) => {
            let message = format!("coderd says AI provider {name} exists but does not return it; retrying");
            Err(Surface::failed(PROVIDER_READY, "CoderdConflict", message, Wait::Backoff))
        }
    }
}

/// Every Secret value the spec points at.
async fn read_credentials(ctx: &Context, namespace: &str, spec: &CoderAIProviderSpec) -> Result<Credentials, Surface> {
    let mut credentials = Credentials::default();
    for (i, reference) in spec.api_key_secret_refs.iter().enumerate() {
        let field = format!("spec.apiKeySecretRefs[{i}]");
        credentials
            .api_keys
            .push(ctx.require_secret(PROVIDER_READY, namespace, reference, DEFAULT_API_KEY_KEY, &field).await?);
    }
    if let Some(bedrock) = &spec.bedrock {
        if let Some(reference) = &bedrock.access_key_ref {
            let field = "spec.bedrock.accessKeyRef";
            credentials.access_key =
                Some(ctx.require_secret(PROVIDER_READY, namespace, reference, DEFAULT_ACCESS_KEY_ID_KEY, field).await?);
        }
        if let Some(reference) = &bedrock.access_key_secret_ref {
            let (key, field) = (DEFAULT_SECRET_ACCESS_KEY_KEY, "spec.bedrock.accessKeySecretRef");
            credentials.access_key_secret =
                Some(ctx.require_secret(PROVIDER_READY, namespace, reference, key, field).await?);
        }
    }
    Ok(credentials)
}

async fn cleanup(ctx: &Context, object: &CoderAIProvider) -> Result<Action, Error> {
    if !object.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let result = delete_provider(ctx, object).await;
    let what = format!("coderd AI provider {}", object.spec.name);
    finish_cleanup(ctx, object, &object.spec.instance_ref.name, "ProviderLeftInPlace", &what, result).await
}

/// Deletes the provider by its recorded ID, else by name: `Ok(None)` when gone, `Ok(Some(note))`
/// when left in place on purpose.
async fn delete_provider(ctx: &Context, object: &CoderAIProvider) -> Result<Option<String>, Surface> {
    let spec = &object.spec;
    let namespace = object.namespace().unwrap_or_default();
    let instance = ctx.ready_instance(PROVIDER_READY, &namespace, &spec.instance_ref.name).await?;
    let client = ctx.connect(PROVIDER_READY, &instance).await?;
    let failed = |e: coderd::Error| Surface::coderd(PROVIDER_READY, &e);
    let known_id = object.status.as_ref().and_then(|s| s.coderd_id.clone()).filter(|id| !id.is_empty());
    let id = match known_id {
        Some(id) => id,
        None => match plan_removal(spec, client.ai_provider(&spec.name).await.map_err(failed)?.as_ref()) {
            Removal::Gone => return Ok(None),
            Removal::Keep(note) => return Ok(Some(note)),
            Removal::Delete(id) => id,
        },
    };
    client.delete_ai_provider(&id).await.map_err(failed)?;
    info!(provider = %spec.name, %id, "AI provider deleted");
    Ok(None)
}

#[cfg(test)]
mod tests;
