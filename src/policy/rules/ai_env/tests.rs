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
        (json!([ty(0, "google"), nm(0, "gw"), ty(1, "azure"), nm(1, "gw")]), vec![at(Error, 3, "value")], "0 and 1"),
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
