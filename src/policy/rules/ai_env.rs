//! Frozen AI-provider env: coderd ≥ 2.34 stores AI providers in its database, seeds them from
//! `CODER_AIBRIDGE_*` / `CODER_AI_GATEWAY_*` env once, and refuses to start when the
//! provider-defining env later differs from what it stored. These rules guard coderd
//! Deployments and `CoderControlPlane.spec.extraEnv`.
//!
//! Values are compared, never printed: provider env carries API keys and AWS secrets.

use std::collections::{BTreeMap, BTreeSet};

use super::{Rule, RuleInfo};
use crate::api::common::{EnvVar, EnvVarSource, Meta};
use crate::api::workload::{Container, Deployment};
use crate::fp;
use crate::policy::config::Mode;
use crate::policy::env::{AI_BRIDGE_PREFIX, AI_ENV_BREAK_GLASS_ANNOTATION, AI_GATEWAY_PREFIX};
use crate::policy::kind::Kind;
use crate::policy::path::FieldPath;
use crate::policy::subject::{Object, Report, Subject};

/// Audit annotation key recording a break-glass reason.
const AUDIT_KEY: &str = "ai-env-break-glass";

/// Rules of this family.
pub const RULES: &[Rule] = &[
    Rule {
        info: RuleInfo {
            id: "ai-provider-env-frozen",
            summary: "Provider-defining AI env is not added or changed after coderd seeded it",
            explanation: "coderd 2.34 and newer keep AI providers in the database: they seed them from the \
`CODER_AI_GATEWAY_*` (alias `CODER_AIBRIDGE_*`) env once and then refuse to start when a provider's type, \
name, base URL or Bedrock region and models in env differ from the stored provider. Adding or changing \
such a variable on an existing coderd Deployment or CoderControlPlane is therefore denied; removing one \
is allowed. Manage the provider with a CoderAIProvider resource (or the AI providers API) and remove the \
env var. Changing a key variable is only a warning: coderd ignores it after seeding, so rotate keys through \
the CoderAIProvider. For a deliberate change, annotate the object with \
`coderd.coder.com/ai-env-break-glass: <reason>`; the denial becomes a warning and the reason is recorded \
as an audit annotation. Changes inside a referenced Secret or ConfigMap are not visible to this rule.",
            kinds: &[Kind::CoderControlPlane, Kind::Deployment],
            default_mode: Mode::Enforce,
        },
        check: frozen,
    },
    Rule {
        info: RuleInfo {
            id: "ai-provider-env-consistency",
            summary: "Numbered AI providers use one prefix, indices from 0, unique names and known types",
            explanation: "coderd refuses to start when numbered provider env mixes `CODER_AIBRIDGE_PROVIDER_*` \
and `CODER_AI_GATEWAY_PROVIDER_*`, when the `PROVIDER_<N>` indices do not run from 0 without gaps, when two \
providers end up with the same name (`NAME`, which defaults to `TYPE`), or when `TYPE` is not one of \
openai, anthropic, copilot, azure, google, openai-compat, openrouter, vercel or bedrock. Consolidate onto \
`CODER_AI_GATEWAY_PROVIDER_*`, renumber the providers 0, 1, 2, …, give each a distinct NAME and fix the \
TYPE. Better still, move the providers to CoderAIProvider resources: coderd 2.34 and newer only seed \
providers from env once.",
            kinds: &[Kind::CoderControlPlane, Kind::Deployment],
            default_mode: Mode::Enforce,
        },
        check: consistency,
    },
];

/// Provider types coderd accepts in `PROVIDER_<N>_TYPE`.
const PROVIDER_TYPES: &[&str] =
    &["openai", "anthropic", "copilot", "azure", "google", "openai-compat", "openrouter", "vercel", "bedrock"];

// === recognising provider env ===

/// The two spellings of every AI setting; `Gateway` is the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Prefix {
    Bridge,
    Gateway,
}

/// What a provider variable does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Part of the provider's stored definition; a change stops coderd from starting.
    Defining,
    /// A key; read only when the provider is first seeded.
    Credential,
    /// Another numbered-provider field (e.g. `DUMP_DIR`).
    Other,
}

/// A recognised provider variable.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProviderVar {
    prefix: Prefix,
    /// The setting without its prefix, index normalised: `OPENAI_BASE_URL`, `PROVIDER_0_TYPE`.
    setting: String,
    /// Index of a numbered provider.
    index: Option<u32>,
    role: Role,
}

/// The role of a field of a legacy (`OPENAI_…`) or numbered (`PROVIDER_<N>_…`) provider.
fn role(field: &str, numbered: bool) -> Option<Role> {
    match field {
        "TYPE" | "NAME" | "BASE_URL" if numbered => Some(Role::Defining),
        "KEY" | "KEYS" if numbered => Some(Role::Credential),
        "OPENAI_BASE_URL" | "ANTHROPIC_BASE_URL" if !numbered => Some(Role::Defining),
        "OPENAI_KEY" | "ANTHROPIC_KEY" if !numbered => Some(Role::Credential),
        "BEDROCK_BASE_URL" | "BEDROCK_REGION" | "BEDROCK_MODEL" | "BEDROCK_SMALL_FAST_MODEL" => Some(Role::Defining),
        "BEDROCK_ACCESS_KEY" | "BEDROCK_ACCESS_KEY_SECRET" => Some(Role::Credential),
        _ if numbered => Some(Role::Other),
        _ => None,
    }
}

/// Recognises a provider variable; other AI settings (`*_ENABLED`, `*_PROXY_*`, …) are `None`.
fn parse(name: &str) -> Option<ProviderVar> {
    let (prefix, rest) = if let Some(rest) = name.strip_prefix(AI_GATEWAY_PREFIX) {
        (Prefix::Gateway, rest)
    } else {
        (Prefix::Bridge, name.strip_prefix(AI_BRIDGE_PREFIX)?)
    };
    let Some(numbered) = rest.strip_prefix("PROVIDER_") else {
        let role = role(rest, false)?;
        return Some(ProviderVar { prefix, setting: rest.to_owned(), index: None, role });
    };
    let (digits, field) = numbered.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || field.is_empty() {
        return None;
    }
    // An index too large for u32 is certainly past a gap: saturate rather than ignore it.
    let index = digits.parse::<u32>().unwrap_or(u32::MAX);
    let setting = format!("PROVIDER_{index}_{field}");
    Some(ProviderVar { prefix, setting, index: Some(index), role: role(field, true)? })
}

/// The entry in force for one setting.
struct Effective<'a> {
    index: usize,
    var: ProviderVar,
    entry: &'a EnvVar,
}

/// The entry in force per setting: the last `CODER_AI_GATEWAY_` entry, else the last
/// `CODER_AIBRIDGE_` one (the two prefixes are spellings of one setting).
fn settings(env: &[EnvVar]) -> BTreeMap<String, Effective<'_>> {
    let mut out: BTreeMap<String, Effective<'_>> = BTreeMap::new();
    for (index, entry) in env.iter().enumerate() {
        let Some(var) = parse(&entry.name) else {
            continue;
        };
        let keep_old = out.get(&var.setting).is_some_and(|old| old.var.prefix > var.prefix);
        if !keep_old {
            out.insert(var.setting.clone(), Effective { index, var, entry });
        }
    }
    out
}

/// What an entry gives the process, for comparison: its `valueFrom`, else its literal value.
fn source(e: &EnvVar) -> (Option<&EnvVarSource>, &str) {
    (e.value_from.as_ref(), e.value.as_deref().unwrap_or_default())
}

/// The literal value of an entry, unless it comes from elsewhere.
fn literal<'a>(e: &Effective<'a>) -> Option<&'a str> {
    e.entry.value_from.is_none().then(|| e.entry.value.as_deref().unwrap_or_default())
}

/// The field that holds an entry's value.
fn value_path(path: &FieldPath, eff: &Effective<'_>) -> FieldPath {
    let field = if eff.entry.value_from.is_some() { "valueFrom" } else { "value" };
    fp!(path, eff.index, field)
}

/// A literal value for a message, quoted with a leading space. Only provider types (in any
/// letter case) are shown: a misplaced key could sit in any field.
fn shown(value: &str) -> String {
    if PROVIDER_TYPES.contains(&value.to_ascii_lowercase().as_str()) { format!(" {value:?}") } else { String::new() }
}

/// Env lists to check: `(path of the list, list)` for the object.
fn env_lists(object: &Object) -> Vec<(FieldPath, &[EnvVar])> {
    match object {
        Object::ControlPlane(cp) => vec![(fp!("spec", "extraEnv"), cp.spec.extra_env.as_slice())],
        Object::Deployment(d) if d.is_coder() => {
            d.containers().map(|(p, c)| (p.key("env"), c.env.as_slice())).collect()
        }
        _ => Vec::new(),
    }
}

// === ai-provider-env-frozen ===

/// `(path of the new list, old list, new list)` for each env list present after the update.
type EnvPair<'a> = (FieldPath, &'a [EnvVar], &'a [EnvVar]);

fn frozen(s: &Subject<'_>, r: &mut Report) {
    if !s.is_update() {
        return;
    }
    let (meta, pairs): (&Meta, Vec<EnvPair<'_>>) = match (s.object, s.old) {
        (Object::ControlPlane(new), Some(Object::ControlPlane(old))) => {
            let path = fp!("spec", "extraEnv");
            (&new.metadata, vec![(path, &old.spec.extra_env[..], &new.spec.extra_env[..])])
        }
        (Object::Deployment(new), Some(Object::Deployment(old))) if new.is_coder() => {
            (&new.metadata, container_pairs(old, new))
        }
        _ => return,
    };
    // The break-glass reason: absent, empty (not valid) or given.
    let glass = meta.annotations.get(AI_ENV_BREAK_GLASS_ANNOTATION).map(|v| v.trim());
    let mut glass_used = false;
    for (path, old_env, new_env) in pairs {
        let before = settings(old_env);
        let mut after: Vec<Effective<'_>> = settings(new_env).into_values().collect();
        after.sort_by_key(|e| e.index);
        for now in after {
            let (verb, at) = match before.get(&now.var.setting) {
                None => ("added", fp!(&path, now.index, "name")),
                Some(was) if source(was.entry) != source(now.entry) => ("changed", value_path(&path, &now)),
                Some(_) => continue,
            };
            let name = &now.entry.name;
            match now.var.role {
                Role::Defining => glass_used |= defining_change(r, at, name, verb, glass),
                Role::Credential => r.warn(at, format!("{name} is {verb}, but {CREDENTIAL_NOTE}")),
                Role::Other => {}
            }
        }
    }
    if let (true, Some(reason)) = (glass_used, glass) {
        r.audit(AUDIT_KEY, reason);
    }
}

const CREDENTIAL_NOTE: &str = "coderd ≥ 2.34 reads provider keys from env only when it first seeds a \
provider, so this has no effect on a provider it already stores. Rotate the key through the CoderAIProvider \
resource (spec.apiKeySecretRefs) or the AI providers API, then remove this env var";

const FROZEN_NOTE: &str = "coderd ≥ 2.34 stores AI providers in its database, seeds them from env only \
once, and refuses to start when provider-defining env differs from what it stored";

/// Reports an added or changed provider-defining variable; true when break-glass allowed it.
fn defining_change(r: &mut Report, at: FieldPath, name: &str, verb: &str, glass: Option<&str>) -> bool {
    const ANNOTATION: &str = AI_ENV_BREAK_GLASS_ANNOTATION;
    let glass_note = match glass {
        Some(reason) if !reason.is_empty() => {
            let msg = format!(
                "{name} is {verb} under break-glass ({ANNOTATION}; the reason is recorded as an audit \
annotation). {FROZEN_NOTE}: make the stored provider match before coderd restarts, and move the provider \
to a CoderAIProvider resource"
            );
            r.warn(at, msg);
            return true;
        }
        Some(_) => {
            format!("The {ANNOTATION} annotation is empty: break-glass requires a reason")
        }
        None => {
            format!("For a deliberate change, annotate the object with {ANNOTATION}: <reason>")
        }
    };
    let msg = format!(
        "{name} is {verb}; {FROZEN_NOTE}. Manage the provider with a CoderAIProvider resource (or the AI \
providers API) instead, then remove this env var. {glass_note}"
    );
    r.deny(at, msg);
    false
}

/// Pairs each container of `new` with the container of `old` that has its name. When both
/// Deployments have exactly one container, those two are paired even if it was renamed.
fn container_pairs<'a>(old: &'a Deployment, new: &'a Deployment) -> Vec<EnvPair<'a>> {
    let old_all: Vec<&Container> = old.containers().map(|(_, c)| c).collect();
    let lone = if old_all.len() == 1 && new.containers().count() == 1 { old_all.first() } else { None };
    let pair = |(path, c): (FieldPath, &'a Container)| {
        let before = old_all.iter().find(|o| o.name == c.name).or(lone);
        (path.key("env"), before.map_or(&[][..], |o| o.env.as_slice()), c.env.as_slice())
    };
    new.containers().map(pair).collect()
}

// === ai-provider-env-consistency ===

fn consistency(s: &Subject<'_>, r: &mut Report) {
    for (path, env) in env_lists(s.object) {
        let numbered: Vec<(usize, ProviderVar)> = env
            .iter()
            .enumerate()
            .filter_map(|(i, e)| parse(&e.name).filter(|v| v.index.is_some()).map(|v| (i, v)))
            .collect();
        mixed_prefixes(r, &path, env, &numbered);
        index_gaps(r, &path, env, &numbered);
        names_and_types(r, &path, &settings(env));
    }
}

fn mixed_prefixes(r: &mut Report, path: &FieldPath, env: &[EnvVar], numbered: &[(usize, ProviderVar)]) {
    let first_bridge = numbered.iter().find(|(_, v)| v.prefix == Prefix::Bridge);
    if let Some((i, _)) = first_bridge
        && numbered.iter().any(|(_, v)| v.prefix == Prefix::Gateway)
    {
        let msg = format!(
            "{} mixes numbered-provider prefixes, so coderd refuses to start (\"cannot mix \
CODER_AIBRIDGE_PROVIDER_* and CODER_AI_GATEWAY_PROVIDER_* environment variables, please consolidate onto \
CODER_AI_GATEWAY_PROVIDER_*\"). Rename every CODER_AIBRIDGE_PROVIDER_* variable to CODER_AI_GATEWAY_PROVIDER_*",
            env[*i].name
        );
        r.deny(fp!(path, *i, "name"), msg);
    }
}

fn index_gaps(r: &mut Report, path: &FieldPath, env: &[EnvVar], numbered: &[(usize, ProviderVar)]) {
    // The first entry of each index, in index order.
    let mut first: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, v) in numbered {
        first.entry(v.index.unwrap_or_default()).or_insert(*i);
    }
    let mut expected: u32 = 0;
    for (&index, &at) in &first {
        if index > expected {
            let missing = match index - expected {
                1 => format!("index {expected} is missing"),
                _ => format!("indices {expected} to {} are missing", index - 1),
            };
            let msg = format!(
                "{} follows a gap in the numbered AI providers: {missing}. coderd reads PROVIDER_<N> from 0 \
without gaps and would not start; renumber the providers 0, 1, 2, …",
                env[at].name
            );
            r.deny(fp!(path, at, "name"), msg);
        }
        expected = index.saturating_add(1);
    }
}

fn names_and_types(r: &mut Report, path: &FieldPath, current: &BTreeMap<String, Effective<'_>>) {
    let indices: BTreeSet<u32> = current.values().filter_map(|e| e.var.index).collect();
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for index in indices {
        let field = |f: &str| current.get(&format!("PROVIDER_{index}_{f}"));
        let type_ = field("TYPE");
        if let Some(t) = type_
            && let Some(value) = literal(t)
            && !PROVIDER_TYPES.contains(&value)
        {
            r.deny(
                value_path(path, t),
                format!(
                    "{} is{}, which is not a provider type coderd knows, so it would not start. Use one of: {}",
                    t.entry.name,
                    if value.is_empty() { " empty".to_owned() } else { shown(value) },
                    PROVIDER_TYPES.join(", ")
                ),
            );
        }
        // NAME defaults to TYPE; a value from a Secret or ConfigMap cannot be compared.
        let named = field("NAME").filter(|n| literal(n) != Some(""));
        let Some(by) = named.or(type_) else { continue };
        let Some(name) = literal(by) else { continue };
        if let Some(&other) = seen.get(name) {
            r.deny(
                value_path(path, by),
                format!(
                    "numbered AI providers {other} and {index} have the same name{} (NAME defaults to TYPE); \
coderd requires unique provider names and would not start. Set a distinct PROVIDER_{index}_NAME",
                    shown(name)
                ),
            );
        } else {
            seen.insert(name, index);
        }
    }
}

#[cfg(test)]
mod tests;
