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
mod tests {
    use serde_json::{Value, json};

    use crate::policy::finding::Severity::{self, Error, Warning};
    use crate::policy::fixtures::*;
    use crate::policy::{Evaluation, Operation};

    type Hit = (Severity, String);

    const FROZEN: &str = "ai-provider-env-frozen";
    const CONSISTENT: &str = "ai-provider-env-consistency";
    const BASE: &str = "CODER_AI_GATEWAY_OPENAI_BASE_URL";
    const OLD_BASE: &str = "CODER_AIBRIDGE_OPENAI_BASE_URL";
    const SECRET_A: &str = "sk-live-0123456789abcdef";
    const SECRET_B: &str = "aws-secret-zyx987";

    fn cp(env: Value) -> Value {
        control_plane("cp", json!({ "extraEnv": env }))
    }

    fn coderd(env: Value) -> Value {
        json!({"name": "coder", "image": "ghcr.io/coder/coder:v2.34.0", "env": env})
    }

    fn v(name: &str, value: &str) -> Value {
        json!({"name": name, "value": value})
    }

    /// Numbered provider variable under the current prefix.
    fn gw(n: u32, field: &str, value: &str) -> Value {
        v(&format!("CODER_AI_GATEWAY_PROVIDER_{n}_{field}"), value)
    }

    fn from_secret(name: &str) -> Value {
        json!({"name": name, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
    }

    fn glass(mut object: Value, reason: &str) -> Value {
        object["metadata"]["annotations"] = json!({"coderd.coder.com/ai-env-break-glass": reason});
        object
    }

    fn at(sev: Severity, i: usize, field: &str) -> Hit {
        (sev, format!("spec.extraEnv[{i}].{field}"))
    }

    fn messages<'a>(e: &'a Evaluation, rule: &str) -> Vec<&'a str> {
        let mine = e.findings.iter().filter(|f| f.rule == rule);
        mine.map(|f| f.message.as_str()).collect()
    }

    #[test]
    fn frozen_changes_on_control_plane_update() {
        let (a, on) = (v(BASE, "https://a/v1"), v("CODER_AI_GATEWAY_ENABLED", "true"));
        let cases: Vec<(Value, Vec<Hit>)> = vec![
            (json!([a, v("CODER_AI_GATEWAY_ENABLED", "false")]), vec![]),
            (json!([v(BASE, "https://b/v1")]), vec![at(Error, 0, "value")]),
            (json!([from_secret(BASE)]), vec![at(Error, 0, "valueFrom")]),
            (json!([on]), vec![]), // removed
            (
                json!([a, gw(0, "TYPE", "openai"), v("CODER_AIBRIDGE_BEDROCK_REGION", "eu")]),
                vec![at(Error, 1, "name"), at(Error, 2, "name")],
            ),
            (json!([v(OLD_BASE, "https://a/v1")]), vec![]), // prefix renamed
            (json!([v(OLD_BASE, "https://c")]), vec![at(Error, 0, "value")]),
            (json!([v(BASE, "https://x"), a]), vec![]), // the last entry is in force
            (json!([a, v(OLD_BASE, "https://z")]), vec![]), // the current prefix wins over the alias
        ];
        for (after, want) in cases {
            let e = update(&cp(json!([a, on])), &cp(after.clone()), &[]);
            assert_eq!(hits(&e, FROZEN), want, "{after}");
        }
        let e = update(&cp(json!([a])), &cp(json!([v(BASE, "https://b")])), &[]);
        let msg = messages(&e, FROZEN)[0];
        assert!(msg.contains("refuses to start") && msg.contains("CoderAIProvider"), "{msg}");
        assert!(msg.contains("remove this env var"), "{msg}");
    }

    #[test]
    fn create_never_freezes() {
        let env = json!([v(BASE, "https://a"), v("CODER_AI_GATEWAY_OPENAI_KEY", SECRET_A)]);
        let (old_cp, old_d) = (cp(json!([])), deployment("coder", json!([coderd(json!([]))])));
        let new_d = deployment("coder", json!([coderd(env.clone())]));
        for (old, new) in [(old_cp, cp(env)), (old_d, new_d)] {
            // Even with an old object at hand, only an UPDATE is judged.
            let e = evaluate(Operation::Create, &new, Some(&old), false, &cluster(&[]));
            assert!(hits(&e, FROZEN).is_empty(), "{:?}", e.findings);
            assert_eq!(hits(&update(&old, &new, &[]), FROZEN).len(), 2);
        }
    }

    #[test]
    fn credentials_warn_without_their_value() {
        let key = "CODER_AIBRIDGE_PROVIDER_0_KEY";
        let ty = v("CODER_AIBRIDGE_PROVIDER_0_TYPE", "openai");
        let old = cp(json!([ty, v(key, "k0")]));
        let e = update(&old, &cp(json!([ty, v(key, SECRET_A)])), &[]);
        assert_eq!(hits(&e, FROZEN), [at(Warning, 1, "value")]);
        assert!(messages(&e, FROZEN)[0].contains("no effect"));
        let added = cp(json!([ty, v(key, "k0"), from_secret("CODER_AIBRIDGE_BEDROCK_ACCESS_KEY")]));
        assert_eq!(hits(&update(&old, &added, &[]), FROZEN), [at(Warning, 2, "name")]);
        assert!(hits(&update(&old, &cp(json!([ty])), &[]), FROZEN).is_empty());
    }

    #[test]
    fn break_glass_needs_a_reason_and_is_audited() {
        let (old, new) = (cp(json!([v(BASE, "https://a")])), cp(json!([v(BASE, "https://b")])));
        let e = update(&old, &glass(new.clone(), "  INC-42 new proxy "), &[]);
        assert_eq!(hits(&e, FROZEN), [at(Warning, 0, "value")]);
        assert!(messages(&e, FROZEN)[0].contains("under break-glass"));
        let audit = e.audit_annotations.get("ai-env-break-glass");
        assert_eq!(audit.map(String::as_str), Some("INC-42 new proxy"));
        let e = update(&old, &glass(new.clone(), " "), &[]);
        assert_eq!(denied(&e, FROZEN), ["spec.extraEnv[0].value"]);
        assert!(messages(&e, FROZEN)[0].contains("requires a reason"));
        assert!(e.audit_annotations.is_empty());
        // Nothing to allow, nothing to record.
        assert!(update(&old, &glass(old.clone(), "x"), &[]).audit_annotations.is_empty());
        let plain = update(&old, &new, &[]);
        assert!(messages(&plain, FROZEN)[0].contains("ai-env-break-glass: <reason>"));
    }

    #[test]
    fn deployments_compare_containers_by_name() {
        let path = |i: usize, f: &str| format!("spec.template.spec.containers[{i}].env[0].{f}");
        let side = json!({"name": "side", "image": "busybox", "env": [v(BASE, "https://a")]});
        let main = |url: &str| coderd(json!([v(BASE, url)]));
        let old = deployment("coder", json!([main("https://a"), side]));
        let reordered = deployment("coder", json!([side, main("https://a")]));
        assert!(hits(&update(&old, &reordered, &[]), FROZEN).is_empty());
        let changed = deployment("coder", json!([side, main("https://b")]));
        assert_eq!(denied(&update(&old, &changed, &[]), FROZEN), [path(1, "value")]);
        // A new container is compared with nothing: its provider env is added.
        let extra = json!({"name": "extra", "image": "x", "env": [v(BASE, "https://a")]});
        let added = deployment("coder", json!([main("https://a"), side, extra]));
        assert_eq!(denied(&update(&old, &added, &[]), FROZEN), [path(2, "name")]);
        // A lone container that was renamed keeps its identity.
        let one = |name: &str, url: &str| {
            let c = json!({"name": name, "image": "ghcr.io/coder/coder", "env": [v(BASE, url)]});
            deployment("coder", json!([c]))
        };
        let renamed = update(&one("coder", "https://a"), &one("coderd", "https://a"), &[]);
        assert!(hits(&renamed, FROZEN).is_empty());
        let renamed = update(&one("coder", "https://a"), &one("coderd", "https://b"), &[]);
        assert_eq!(denied(&renamed, FROZEN), [path(0, "value")]);
        // Deployments that do not run Coder are ignored.
        let web = |url: &str| deployment("web", json!([{"name": "web", "image": "nginx", "env": [v("URL", url)]}]));
        assert!(hits(&update(&web("a"), &web("b"), &[]), FROZEN).is_empty());
    }

    #[test]
    fn mixed_prefixes_are_denied_on_any_operation() {
        let mixed = cp(json!([gw(0, "TYPE", "openai"), v("CODER_AIBRIDGE_PROVIDER_0_KEY", "k")]));
        let e = create(&mixed, &[]);
        assert_eq!(denied(&e, CONSISTENT), ["spec.extraEnv[1].name"]);
        let coderd_error = "cannot mix CODER_AIBRIDGE_PROVIDER_* and CODER_AI_GATEWAY_PROVIDER_*";
        assert!(messages(&e, CONSISTENT)[0].contains(coderd_error));
        assert_eq!(denied(&update(&mixed, &mixed, &[]), CONSISTENT), ["spec.extraEnv[1].name"]);
        // Legacy variables under the old prefix are not numbered providers.
        let legacy = cp(json!([gw(0, "TYPE", "openai"), v("CODER_AIBRIDGE_ANTHROPIC_KEY", "k")]));
        assert!(hits(&create(&legacy, &[]), CONSISTENT).is_empty());
    }

    #[test]
    fn indices_names_and_types() {
        let (ty, nm) = (|n, t| gw(n, "TYPE", t), |n, name| gw(n, "NAME", name));
        let cases: Vec<(Value, Vec<Hit>, &str)> = vec![
            (json!([ty(0, "openai"), ty(1, "anthropic"), nm(1, "claude")]), vec![], ""),
            (json!([ty(0, "openai"), ty(2, "bedrock")]), vec![at(Error, 1, "name")], "index 1 is missing"),
            (json!([ty(3, "openai")]), vec![at(Error, 0, "name")], "indices 0 to 2 are missing"),
            (json!([ty(0, "openai"), ty(1, "openai")]), vec![at(Error, 1, "value")], "same name \"openai\""),
            (
                json!([ty(0, "google"), nm(0, "gw"), ty(1, "azure"), nm(1, "gw")]),
                vec![at(Error, 3, "value")],
                "0 and 1",
            ),
            (json!([ty(0, "openai"), nm(1, "openai"), ty(1, "azure")]), vec![at(Error, 1, "value")], "PROVIDER_1_NAME"),
            (json!([ty(0, "OpenAI")]), vec![at(Error, 0, "value")], "is \"OpenAI\""),
            (json!([ty(0, "")]), vec![at(Error, 0, "value")], "is empty"),
            (json!([from_secret("CODER_AI_GATEWAY_PROVIDER_0_TYPE"), ty(1, "vercel")]), vec![], ""),
        ];
        for (env, want, text) in cases {
            let e = create(&cp(env.clone()), &[]);
            assert_eq!(hits(&e, CONSISTENT), want, "{env}");
            assert!(messages(&e, CONSISTENT).iter().all(|m| m.contains(text)), "{env}: {:?}", e.findings);
        }
        let d = deployment("coder", json!([coderd(json!([ty(1, "openai")]))]));
        let want = ["spec.template.spec.containers[0].env[0].name"];
        assert_eq!(denied(&create(&d, &[]), CONSISTENT), want);
    }

    #[test]
    fn messages_never_contain_secret_values() {
        let old = cp(json!([v("CODER_AI_GATEWAY_OPENAI_KEY", "k0"), gw(0, "TYPE", SECRET_B)]));
        let new = cp(json!([
            v("CODER_AI_GATEWAY_OPENAI_KEY", SECRET_A),
            gw(0, "TYPE", SECRET_A),
            v("CODER_AIBRIDGE_PROVIDER_1_BEDROCK_ACCESS_KEY_SECRET", SECRET_B),
            gw(3, "NAME", SECRET_A),
        ]));
        let e = update(&old, &new, &[]);
        assert!(e.findings.len() >= 4, "{:?}", e.findings);
        for f in &e.findings {
            assert!(!f.message.contains(SECRET_A) && !f.message.contains(SECRET_B), "{f}");
        }
    }
}
