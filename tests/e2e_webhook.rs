//! coder-guard as the admission webhook of a real kube-apiserver, seen through `kubectl`: every
//! rule family denies with rule ids and field paths and accepts the fix, warn-mode findings
//! arrive as `Warning:` lines, server dry run and server-side apply behave like a plain apply,
//! the operator's samples are accepted, and a bulk apply of 200 objects ends like applying them
//! one by one.
//!
//! Deployments (injection, frozen AI env) and the outage behaviour are in
//! `e2e_webhook_deployments.rs`. Skipped (with `SKIP: …` on stderr) where Go is not installed,
//! unless `CI=true`. Log: `target/e2e-logs/e2e_webhook/coder-guard.log`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use support::webhook::kubectl::Seen;
use support::webhook::{CoderGuard, RESOURCES_HOOK};

/// One rule family: `before` is accepted, `bad` is denied with exactly `findings` (rule id,
/// field path) and changes nothing, then each object of `fix` is accepted.
struct Family {
    family: &'static str,
    before: Vec<Value>,
    bad: Value,
    findings: &'static [(&'static str, &'static str)],
    fix: Vec<Value>,
}

fn families(ns: &dyn Fn(&str) -> String) -> Vec<Family> {
    let ns_names = ns("names");
    let ns_kube = ns("kubernetes-names");
    let ns_refs = ns("references");
    let ns_prov = ns("provisioner");
    let ns_formats = ns("formats");
    let ns_ai = ns("ai-env");
    let access_url = |url: &str| json!([{"name": "CODER_ACCESS_URL", "value": url}]);
    let ai_env = |base_url: Option<&str>| {
        let mut env = vec![json!({"name": "CODER_AI_GATEWAY_PROVIDER_0_TYPE", "value": "openai"})];
        env.extend(base_url.map(|u| json!({"name": "CODER_AI_GATEWAY_PROVIDER_0_BASE_URL", "value": u})));
        Value::Array(env)
    };
    vec![
        Family {
            family: "names (provisioner key name the CRD allows, coderd does not)",
            before: vec![control_plane(&ns_names, "coder", json!([]))],
            bad: provisioner(&ns_names, "builds", json!({"name": "k".repeat(65)}), json!([])),
            findings: &[("provisioner-key-name", "spec.key.name")],
            fix: vec![provisioner(&ns_names, "builds", json!({"name": "k".repeat(64)}), json!([]))],
        },
        Family {
            family: "names (a control plane name that is not a DNS-1035 label)",
            before: vec![],
            bad: control_plane(&ns_kube, "coder.main", json!([])),
            findings: &[("kubernetes-names", "metadata.name")],
            fix: vec![control_plane(&ns_kube, "coder-main", json!([]))],
        },
        Family {
            family: "references (a token Secret that does not exist)",
            before: vec![],
            bad: instance(&ns_refs, "main", "coder-token"),
            findings: &[("secret-ref", "spec.tokenSecretRef.name")],
            fix: vec![secret(&ns_refs, "coder-token", "token"), instance(&ns_refs, "main", "coder-token")],
        },
        Family {
            family: "provisioner (tags with a key; the operator's CODER_URL overridden)",
            before: vec![control_plane(&ns_prov, "coder", json!([]))],
            bad: provisioner(
                &ns_prov,
                "builds",
                json!({"name": "builds"}),
                json!([{"name": "CODER_PROVISIONERD_TAGS", "value": "scope=organization"},
                       {"name": "CODER_URL", "value": "http://coder.coder.svc"}]),
            ),
            findings: &[
                ("provisioner-key-conflicts", "spec.extraEnv[0].name"),
                ("operator-owned-env", "spec.extraEnv[1].name"),
            ],
            fix: vec![provisioner(
                &ns_prov,
                "builds",
                json!({"name": "builds"}),
                json!([{"name": "CODER_VERBOSE", "value": "true"}]),
            )],
        },
        Family {
            family: "formats (an access URL that is not absolute)",
            before: vec![],
            bad: control_plane(&ns_formats, "coder", access_url("coder.example.com")),
            findings: &[("url-format", "spec.extraEnv[0].value")],
            fix: vec![control_plane(&ns_formats, "coder", access_url("https://coder.example.com"))],
        },
        Family {
            family: "ai-env (a seeded provider's base URL changed on a control plane)",
            before: vec![control_plane(&ns_ai, "coder", ai_env(Some("https://api.openai.com/v1/")))],
            bad: control_plane(&ns_ai, "coder", ai_env(Some("https://llm-proxy.example.com/v1/"))),
            findings: &[("ai-provider-env-frozen", "spec.extraEnv[1].value")],
            fix: vec![control_plane(&ns_ai, "coder", ai_env(None))],
        },
    ]
}

#[test]
fn every_rule_family_denies_with_rule_ids_and_paths_then_accepts_the_fix() {
    let Some(cg) = CoderGuard::shared_or_skip() else { return };
    let api = cg.api();
    let mut failures = Vec::new();
    for case in families(&|prefix| api.namespace(&format!("family-{prefix}"))) {
        let mut problems = Vec::new();
        problems.extend(case.before.iter().filter_map(|o| cg.apply(&[], o).accepted().err()));
        let stored_before = stored(&cg, &case.bad);
        problems.extend(cg.apply(&[], &case.bad).denied(RESOURCES_HOOK, case.findings).err());
        if stored(&cg, &case.bad) != stored_before {
            problems.push("the denied request changed the stored object".into());
        }
        problems.extend(case.fix.iter().filter_map(|o| cg.apply(&[], o).accepted().err()));
        if let Some(last) = case.fix.last()
            && !stored(&cg, last).is_some_and(|spec| includes(&spec, &last["spec"]))
        {
            problems.push(format!("the fixed object is not stored as applied: {:?}", stored(&cg, last)));
        }
        if !problems.is_empty() {
            failures.push(format!("{}:\n{}", case.family, problems.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{} rule families misbehaved:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn a_warn_mode_finding_arrives_as_a_kubectl_warning() {
    let Some(cg) = CoderGuard::shared_or_skip() else { return };
    let ns = cg.api().namespace("rotation-warning");
    cg.apply(&[], &control_plane(&ns, "coder", json!([]))).accepted().unwrap();
    let tags = |tags: Value| {
        let mut p = provisioner(&ns, "builds", json!({"name": "builds"}), json!([]));
        p["spec"]["tags"] = tags;
        p
    };
    cg.apply(&[], &tags(json!({"scope": "organization"}))).accepted().unwrap();

    let seen = cg.apply(&[], &tags(json!({"scope": "organization", "cluster": "eu-west"})));
    seen.warned("provisioner-key-rotation", "spec.tags").unwrap();
    assert!(seen.stdout.contains("coderprovisioner.coder.com/builds configured"), "{}", seen.stdout);
    assert!(seen.warnings()[0].contains("written to Secret \"builds-provisioner-key\""), "{}", seen.stderr);
    let stored = cg.get("coderprovisioner", &ns, "builds").unwrap();
    assert_eq!(stored["spec"]["tags"], json!({"scope": "organization", "cluster": "eu-west"}));
}

/// The four ways to apply, and whether the object is stored afterwards.
const MODES: [(&[&str], bool); 4] = [
    (&[], true),
    (&["--dry-run=server"], false),
    (&["--server-side"], true),
    (&["--server-side", "--dry-run=server"], false),
];

#[test]
fn server_dry_run_and_server_side_apply_behave_like_a_plain_apply() {
    let Some(cg) = CoderGuard::shared_or_skip() else { return };
    let ns = cg.api().namespace("apply-modes");
    cg.apply(&[], &control_plane(&ns, "coder", json!([]))).accepted().unwrap();
    let mut failures = Vec::new();
    let mut denials = BTreeSet::new();
    for (i, (flags, stores)) in MODES.into_iter().enumerate() {
        let bad = provisioner(&ns, &format!("bad-{i}"), json!({"name": "k".repeat(65)}), json!([]));
        let seen = cg.apply(flags, &bad);
        failures.extend(seen.denied(RESOURCES_HOOK, &[("provisioner-key-name", "spec.key.name")]).err());
        denials.extend(seen.denial(RESOURCES_HOOK).map(str::to_owned));
        if stored(&cg, &bad).is_some() {
            failures.push(format!("{}: the denied object was stored", seen.what));
        }

        // Each its own key: two resources managing one coderd key would be denied.
        let good = provisioner(&ns, &format!("good-{i}"), json!({"name": format!("builds-{i}")}), json!([]));
        let seen = cg.apply(flags, &good);
        failures.extend(seen.accepted().err());
        let dry_run_said = seen.stdout.contains("(server dry run)");
        if dry_run_said == stores {
            failures.push(format!("{}: stdout does not say whether it was a dry run:\n{}", seen.what, seen.stdout));
        }
        if stored(&cg, &good).is_some() != stores {
            failures.push(format!("{}: stored afterwards: {}, expected {stores}", seen.what, !stores));
        }
    }
    assert_eq!(denials.len(), 1, "the denial differs between apply modes: {denials:#?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The one documented difference: on a dry run a missing Secret is a warning (the same apply
/// may create it); a real apply, client- or server-side, is denied.
#[test]
fn a_missing_secret_is_only_a_warning_on_a_server_dry_run() {
    let Some(cg) = CoderGuard::shared_or_skip() else { return };
    let ns = cg.api().namespace("dry-run-secret");
    let object = instance(&ns, "main", "coder-token");
    for (flags, stores) in MODES {
        let seen = cg.apply(flags, &object);
        if stores {
            seen.denied(RESOURCES_HOOK, &[("secret-ref", "spec.tokenSecretRef.name")]).unwrap();
        } else {
            seen.warned("secret-ref", "spec.tokenSecretRef.name").unwrap();
            assert!(seen.stdout.contains("(server dry run)"), "{}", seen.stdout);
        }
        assert_eq!(stored(&cg, &object), None, "{}", seen.what);
    }
}

#[test]
fn the_operators_samples_with_their_secrets_are_accepted() {
    let Some(cg) = CoderGuard::shared_or_skip() else { return };
    let api = cg.api();
    let ns = api.namespace("webhook-samples");
    let tmp = tempfile::tempdir().unwrap();
    let samples = support::reference_dir().join("coder-k8s/samples");
    let objects = copy_into_namespace(&samples, &ns, tmp.path());
    assert_eq!(objects, 3, "samples in {}", samples.display());
    // The Secret the workspace proxy sample references (proxySessionTokenSecretRef).
    let token = secret(&ns, "coderworkspaceproxy-token", "token");
    std::fs::write(tmp.path().join("00-secrets.json"), token.to_string()).unwrap();
    let dir = tmp.path().to_str().unwrap();

    let seen = Seen::new(format!("kubectl apply -f {dir}"), api.kubectl(["apply", "-f", dir]));
    seen.accepted().unwrap();
    assert_eq!(seen.stdout.lines().filter(|l| l.ends_with(" created")).count(), 4, "{}", seen.stdout);
    let stored =
        api.kubectl_ok(["get", "codercontrolplanes,coderprovisioners,coderworkspaceproxies", "-n", &ns, "-o", "name"]);
    assert_eq!(stored.lines().count(), 3, "{stored}");
}

/// Objects of the bulk apply: Secrets, each followed by the resource that references it.
fn bulk_objects() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..50 {
        out.push(secret("", &format!("token-{i}"), "token"));
        let mut inst = instance("", &format!("instance-{i}"), &format!("token-{i}"));
        inst["spec"]["url"] = json!(format!("https://coder-{i}.example.com"));
        out.push(inst);
    }
    for i in 0..25 {
        out.push(secret("", &format!("proxy-token-{i}"), "token"));
        out.push(object(
            "coder.com",
            "CoderWorkspaceProxy",
            "",
            &format!("proxy-{i}"),
            json!({
                "image": "ghcr.io/coder/coder:v2.34.0",
                "primaryAccessURL": format!("https://coder-{i}.example.com"),
                "proxySessionTokenSecretRef": {"name": format!("proxy-token-{i}"), "key": "token"},
            }),
        ));
    }
    for i in 0..25 {
        out.push(secret("", &format!("openai-{i}"), "apiKey"));
        out.push(object(
            "coderd.coder.com",
            "CoderAIProvider",
            "",
            &format!("openai-{i}"),
            json!({
                "instanceRef": {"name": format!("instance-{i}")},
                "name": "openai",
                "type": "openai",
                "baseURL": "https://api.openai.com/v1/",
                "apiKeySecretRefs": [{"name": format!("openai-{i}"), "key": "apiKey"}],
            }),
        ));
    }
    out
}

#[test]
fn a_bulk_apply_of_200_mixed_objects_ends_like_applying_them_one_by_one() {
    let Some(cg) = CoderGuard::shared_or_skip() else { return };
    let api = cg.api();
    let objects = bulk_objects();
    assert_eq!(objects.len(), 200);
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = tmp.path().join(format!("{i:03}.json"));
            std::fs::write(&path, o.to_string()).unwrap();
            path
        })
        .collect();
    let kinds = "secrets,coderinstances,coderworkspaceproxies,coderaiproviders";
    let stored = |ns: &str| -> BTreeSet<String> {
        api.kubectl_ok(["get", kinds, "-n", ns, "-o", "name"]).lines().map(str::to_owned).collect()
    };

    let bulk_ns = api.namespace("bulk");
    let seen = Seen::new(
        "kubectl apply -f DIR (200 objects)".into(),
        api.kubectl(["apply", "-n", &bulk_ns, "-f", tmp.path().to_str().unwrap()]),
    );
    seen.accepted().unwrap();
    assert_eq!(seen.stdout.lines().filter(|l| l.ends_with(" created")).count(), 200, "{}", seen.stdout);

    let single_ns = api.namespace("one-by-one");
    let mut failures = Vec::new();
    for file in &files {
        let seen = Seen::new(
            format!("kubectl apply -f {}", file.display()),
            api.kubectl(["apply", "-n", &single_ns, "-f", file.to_str().unwrap()]),
        );
        failures.extend(seen.accepted().err());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let (bulk, single) = (stored(&bulk_ns), stored(&single_ns));
    assert_eq!(bulk.len(), 200, "{bulk:#?}");
    assert_eq!(bulk, single);
}

// === Objects ===

fn object(group: &str, kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    let mut metadata = json!({"name": name});
    if !ns.is_empty() {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": format!("{group}/v1alpha1"), "kind": kind, "metadata": metadata, "spec": spec})
}

fn secret(ns: &str, name: &str, key: &str) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                       "stringData": {key: format!("{name}-0123456789abcdef")}});
    if !ns.is_empty() {
        s["metadata"]["namespace"] = json!(ns);
    }
    s
}

fn control_plane(ns: &str, name: &str, extra_env: Value) -> Value {
    object(
        "coder.com",
        "CoderControlPlane",
        ns,
        name,
        json!({"image": "ghcr.io/coder/coder:v2.34.0", "extraEnv": extra_env}),
    )
}

fn provisioner(ns: &str, name: &str, key: Value, extra_env: Value) -> Value {
    object(
        "coder.com",
        "CoderProvisioner",
        ns,
        name,
        json!({"controlPlaneRef": {"name": "coder"}, "key": key, "extraEnv": extra_env}),
    )
}

fn instance(ns: &str, name: &str, token_secret: &str) -> Value {
    object(
        "coderd.coder.com",
        "CoderInstance",
        ns,
        name,
        json!({"url": "https://coder.example.com", "tokenSecretRef": {"name": token_secret}}),
    )
}

/// The stored `spec` of the object named like `like`, `None` when it does not exist.
fn stored(cg: &CoderGuard, like: &Value) -> Option<Value> {
    let kind = like["kind"].as_str().unwrap();
    let ns = like["metadata"]["namespace"].as_str().unwrap();
    cg.get(kind, ns, like["metadata"]["name"].as_str().unwrap()).map(|o| o["spec"].clone())
}

/// Whether `stored` holds every field of `applied` (the API server may add defaults).
fn includes(stored: &Value, applied: &Value) -> bool {
    match (stored, applied) {
        (Value::Object(s), Value::Object(a)) => a.iter().all(|(k, v)| s.get(k).is_some_and(|sv| includes(sv, v))),
        _ => stored == applied,
    }
}

/// Copies the `*.yaml` files of `src` into `dest`, moving every object from namespace `coder`
/// to `ns`. Returns the number of objects.
fn copy_into_namespace(src: &Path, ns: &str, dest: &Path) -> usize {
    let mut objects = 0;
    for file in support::yaml_files(src) {
        let source = std::fs::read_to_string(&file).unwrap();
        let rewritten = source.replace("\n  namespace: coder\n", &format!("\n  namespace: {ns}\n"));
        let (docs, error) = coder_guard::yaml::parse_documents(&rewritten);
        assert!(error.is_none(), "{}: {error:?}", file.display());
        for doc in docs.iter().filter(|d| !d.value.is_null()) {
            assert_eq!(doc.value["metadata"]["namespace"], ns, "{}: left in another namespace", file.display());
            objects += 1;
        }
        std::fs::write(dest.join(file.file_name().unwrap()), rewritten).unwrap();
    }
    objects
}
