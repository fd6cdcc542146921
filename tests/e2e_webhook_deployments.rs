//! coder-guard and Deployments in a real kube-apiserver, seen through `kubectl`: a provisioner
//! Deployment annotated with a CoderProvisionerKey is stored with the injected key and its
//! checksum, frozen AI-provider env on a coderd Deployment, and what still works while
//! coder-guard is down (exactly as `webhook-config/README.md` documents).
//!
//! Skipped (with `SKIP: …` on stderr) where Go is not installed, unless `CI=true`. Log:
//! `target/e2e-logs/e2e_webhook_deployments/coder-guard.log`.

mod support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::webhook::kubectl::Seen;
use support::webhook::{CoderGuard, DEPLOYMENTS_HOOK, RESOURCES_HOOK};

const INJECT_ANNOTATION: &str = "coderd.coder.com/provisioner-key";
const CHECKSUM_ANNOTATION: &str = "checksum/provisioner-key";
const BREAK_GLASS_ANNOTATION: &str = "coderd.coder.com/ai-env-break-glass";
const CODER_IMAGE: &str = "ghcr.io/coder/coder:v2.34.0";
const KEY_VALUE: &str = "example-provisioner-key-0123456789abcdef";

#[test]
fn an_annotated_provisioner_deployment_is_stored_with_the_key_and_its_checksum() {
    let Some(cg) = CoderGuard::shared_with_reconcile_or_skip() else { return };
    let ns = cg.api().namespace("injection");
    for object in provisioner_key_with_secret(&ns, KEY_VALUE) {
        cg.apply(&[], &object).accepted().unwrap();
    }
    // Client-side and server-side apply: either way the re-apply reaches the webhooks again (an
    // UPDATE), which find the key and checksum in place and change nothing.
    for (name, flags, verb) in [
        ("coder-provisioner", &[][..], "configured"),
        ("coder-provisioner-ssa", &["--server-side"][..], "serverside-applied"),
    ] {
        let mut manifest = provisioner_deployment(&ns);
        manifest["metadata"]["name"] = json!(name);
        let seen = cg.apply(flags, &manifest);
        seen.accepted().unwrap();
        assert!(seen.stdout.starts_with(&format!("deployment.apps/{name} ")), "{}", seen.stdout);
        let created = cg.get("deployment", &ns, name).unwrap();
        assert_injected(&created, KEY_VALUE);

        // Client-side, kubectl says `configured`: its patch only sets the order of env, which
        // holds an entry the manifest does not list. Nothing is written.
        let seen = cg.apply(flags, &manifest);
        seen.accepted().unwrap();
        assert_eq!(seen.stdout.trim(), format!("deployment.apps/{name} {verb}"));
        let reapplied = cg.get("deployment", &ns, name).unwrap();
        assert_injected(&reapplied, KEY_VALUE);
        let meta = |d: &Value, field: &str| d["metadata"][field].clone();
        assert_eq!(meta(&reapplied, "generation"), meta(&created, "generation"), "{name}: re-apply bumped generation");
        assert_eq!(reapplied["spec"], created["spec"], "{name}: re-apply changed the spec");
        if flags.is_empty() {
            let rv = "resourceVersion";
            assert_eq!(meta(&reapplied, rv), meta(&created, rv), "{name}: re-apply wrote the object");
        }
    }
}

#[test]
fn rotating_the_key_secret_changes_the_checksum() {
    let Some(cg) = CoderGuard::shared_with_reconcile_or_skip() else { return };
    let ns = cg.api().namespace("rotation");
    for object in provisioner_key_with_secret(&ns, KEY_VALUE) {
        cg.apply(&[], &object).accepted().unwrap();
    }
    cg.apply(&[], &provisioner_deployment(&ns)).accepted().unwrap();
    let before = cg.get("deployment", &ns, "coder-provisioner").unwrap();
    assert_injected(&before, KEY_VALUE);

    let rotated = "rotated-provisioner-key-fedcba9876543210";
    cg.apply(&[], &secret(&ns, "gpu-builds-provisioner-key", "key", rotated)).accepted().unwrap();
    let want = checksum(rotated);
    let mut last = Value::Null;
    let rolled = support::poll(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        "the reconcile loop to re-stamp the checksum",
        || {
            last = cg.get("deployment", &ns, "coder-provisioner").unwrap();
            Ok(template_annotation(&last) == Some(want.as_str()))
        },
    );
    rolled.unwrap_or_else(|e| panic!("{e}; last: {}", template_annotation(&last).unwrap_or("none")));
    let generation = |d: &Value| d["metadata"]["generation"].as_i64().unwrap();
    assert_eq!(generation(&last), generation(&before) + 1, "one rollout per rotation");
    assert_injected(&last, rotated);
}

#[test]
fn frozen_ai_provider_env_on_a_coderd_deployment() {
    let Some(cg) = CoderGuard::shared_with_reconcile_or_skip() else { return };
    let ns = cg.api().namespace("frozen-ai-env");
    const BASE_URL: &str = "spec.template.spec.containers[0].env[3]";
    let original = coderd_deployment(&ns, Some("https://api.openai.com/v1/"), None);
    let changed = coderd_deployment(&ns, Some("https://llm-proxy.example.com/v1/"), None);
    let stored_base_url = || {
        let d = cg.get("deployment", &ns, "coder").unwrap();
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
        env.iter().find(|e| e["name"] == "CODER_AI_GATEWAY_PROVIDER_0_BASE_URL").map(|e| e["value"].clone())
    };

    cg.apply(&[], &original).accepted().unwrap();

    cg.apply(&[], &changed)
        .denied(DEPLOYMENTS_HOOK, &[("ai-provider-env-frozen", &format!("{BASE_URL}.value"))])
        .unwrap();
    assert_eq!(stored_base_url(), Some(json!("https://api.openai.com/v1/")));

    let reason = "moving OpenAI traffic to the LLM proxy, CHG-1234";
    let seen = cg.apply(&[], &coderd_deployment(&ns, Some("https://llm-proxy.example.com/v1/"), Some(reason)));
    seen.warned("ai-provider-env-frozen", &format!("{BASE_URL}.value")).unwrap();
    assert!(
        seen.warnings()[0].contains("under break-glass") && seen.warnings()[0].contains(BREAK_GLASS_ANNOTATION),
        "the warning does not say break-glass allowed it:\n{}",
        seen.stderr
    );
    assert_eq!(stored_base_url(), Some(json!("https://llm-proxy.example.com/v1/")));

    cg.apply(&[], &coderd_deployment(&ns, None, None)).accepted().unwrap();
    assert_eq!(stored_base_url(), None);

    // Adding a provider-defining variable back is as frozen as changing it.
    cg.apply(&[], &original)
        .denied(DEPLOYMENTS_HOOK, &[("ai-provider-env-frozen", &format!("{BASE_URL}.name"))])
        .unwrap();
    assert_eq!(stored_base_url(), None);
}

#[test]
fn with_coder_guard_stopped_only_coder_resources_are_refused() {
    let Some(outage) = CoderGuard::outage_or_skip() else { return };
    let api = outage.api();
    let ns = api.namespace("outage");
    let coder_instance = |ns: &str| {
        json!({
            "apiVersion": "coderd.coder.com/v1alpha1",
            "kind": "CoderInstance",
            "metadata": {"name": "outage", "namespace": ns},
            "spec": {"url": "https://127.0.0.1:9", "tokenSecretRef": {"name": "outage-token"}},
        })
    };
    let apply = |object: &Value| outage.apply(&[], object);
    let mut failures = Vec::new();

    // Excluded by the namespaceSelector: kube-system sees no webhook at all.
    for object in [
        secret("kube-system", "outage-token", "token", "outage-token-0123456789"),
        coder_instance("kube-system"),
        coderd_deployment("kube-system", Some("https://api.openai.com/v1/"), None),
    ] {
        failures.extend(apply(&object).accepted().err());
    }
    // Not a Coder Deployment: no webhook matches it.
    failures.extend(apply(&nginx_deployment(&ns)).accepted().err());
    // Coder Deployments: failurePolicy Ignore on both hooks; nothing is injected.
    failures.extend(apply(&coderd_deployment(&ns, Some("https://api.openai.com/v1/"), None)).accepted().err());
    for object in provisioner_key_with_secret(&ns, KEY_VALUE) {
        let refused = apply(&object);
        if object["kind"] == "Secret" {
            failures.extend(refused.accepted().err());
        } else {
            failures.extend(failed_closed(&refused).err());
        }
    }
    failures.extend(apply(&provisioner_deployment(&ns)).accepted().err());
    if let Some(d) = outage.get("deployment", &ns, "coder-provisioner")
        && (template_annotation(&d).is_some() || env_names(&d).iter().any(|n| n == "CODER_PROVISIONER_DAEMON_KEY"))
    {
        failures.push(format!("a mutation happened without coder-guard: {d}"));
    }
    // Coder resources: failurePolicy Fail, on a real apply and on a dry run.
    failures.extend(apply(&secret(&ns, "outage-token", "token", "outage-token-0123456789")).accepted().err());
    for flags in [&[][..], &["--dry-run=server"], &["--server-side"]] {
        failures.extend(failed_closed(&outage.apply(flags, &coder_instance(&ns))).err());
    }
    if outage.get("coderinstance", &ns, "outage").is_some() {
        failures.push("a Coder resource was stored while coder-guard was down".into());
    }

    // Back up: the same CoderInstance is accepted.
    drop(outage);
    let Some(cg) = CoderGuard::shared_with_reconcile_or_skip() else { return };
    failures.extend(cg.apply(&[], &coder_instance(&ns)).accepted().err());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Refused by the API server because it could not call `resources.coderd.coder.com`.
fn failed_closed(seen: &Seen) -> Result<(), String> {
    let want = format!("failed calling webhook \"{RESOURCES_HOOK}\"");
    if seen.success || !seen.stderr.contains(&want) || !seen.stderr.contains("connection refused") {
        return Err(format!("{}: expected a refusal with {want:?} (connection refused):\n{}", seen.what, seen.stderr));
    }
    Ok(())
}

// === Checks ===

/// The Deployment reads `CODER_PROVISIONER_DAEMON_KEY` from the key's Secret (once, in the
/// daemon container) and its pod template carries the checksum of `key`.
fn assert_injected(deployment: &Value, key: &str) {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    let injected: Vec<&Value> = env.iter().filter(|e| e["name"] == "CODER_PROVISIONER_DAEMON_KEY").collect();
    assert_eq!(
        injected,
        [&json!({"name": "CODER_PROVISIONER_DAEMON_KEY",
                 "valueFrom": {"secretKeyRef": {"name": "gpu-builds-provisioner-key", "key": "key"}}})],
        "env of {container}"
    );
    assert_eq!(env_names(deployment), ["CODER_URL", "CODER_PROVISIONER_DAEMON_KEY"], "the manifest's env is kept");
    assert_eq!(template_annotation(deployment), Some(checksum(key).as_str()), "{deployment}");
}

fn template_annotation(deployment: &Value) -> Option<&str> {
    deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION].as_str()
}

fn env_names(deployment: &Value) -> Vec<String> {
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    env.as_array().into_iter().flatten().map(|e| e["name"].as_str().unwrap_or_default().to_owned()).collect()
}

/// `sha256:<hex>` of a key.
fn checksum(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

// === Objects ===

fn secret(ns: &str, name: &str, key: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
           "stringData": {key: value}})
}

/// A CoderInstance, the CoderProvisionerKey `gpu-builds` and the Secret it writes holding `key`.
fn provisioner_key_with_secret(ns: &str, key: &str) -> Vec<Value> {
    vec![
        secret(ns, "coder-token", "token", "coder-token-0123456789abcdef"),
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderInstance",
               "metadata": {"name": "main", "namespace": ns},
               "spec": {"url": "https://127.0.0.1:9", "tokenSecretRef": {"name": "coder-token"}}}),
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderProvisionerKey",
               "metadata": {"name": "gpu-builds", "namespace": ns},
               "spec": {"instanceRef": {"name": "main"}, "tags": {"gpu": "true"}}}),
        secret(ns, "gpu-builds-provisioner-key", "key", key),
    ]
}

fn deployment(ns: &str, name: &str, annotations: Value, container: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [container]},
            },
        },
    })
}

/// An external provisioner daemon annotated to receive the key of CoderProvisionerKey `gpu-builds`.
fn provisioner_deployment(ns: &str) -> Value {
    deployment(
        ns,
        "coder-provisioner",
        json!({INJECT_ANNOTATION: "gpu-builds"}),
        json!({"name": "coder", "image": CODER_IMAGE, "args": ["provisioner", "start"],
               "env": [{"name": "CODER_URL", "value": "https://coder.example.com"}]}),
    )
}

/// coderd with AI Gateway provider 0 (the base URL at env[3] when set), optionally under
/// break-glass with `reason`.
fn coderd_deployment(ns: &str, base_url: Option<&str>, reason: Option<&str>) -> Value {
    let mut env = vec![
        json!({"name": "CODER_ACCESS_URL", "value": "https://coder.example.com"}),
        json!({"name": "CODER_AI_GATEWAY_PROVIDER_0_TYPE", "value": "openai"}),
        json!({"name": "CODER_AI_GATEWAY_PROVIDER_0_NAME", "value": "openai"}),
    ];
    env.extend(base_url.map(|url| json!({"name": "CODER_AI_GATEWAY_PROVIDER_0_BASE_URL", "value": url})));
    let annotations = match reason {
        Some(reason) => json!({BREAK_GLASS_ANNOTATION: reason}),
        None => json!({}),
    };
    deployment(ns, "coder", annotations, json!({"name": "coder", "image": CODER_IMAGE, "args": ["server"], "env": env}))
}

fn nginx_deployment(ns: &str) -> Value {
    deployment(
        ns,
        "nginx",
        json!({}),
        json!({"name": "nginx", "image": "nginx:1.27", "env": [{"name": "PORT", "value": "80"}]}),
    )
}
