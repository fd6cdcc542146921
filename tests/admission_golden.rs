//! Admission golden files: an AdmissionReview request in, the webhook's response out, for one
//! case per rule family and for each wire rule (warn mode, dry-run, audit annotations, both
//! mutations, DELETE, unknown kinds). Each `tests/golden/admission/<case>.json` holds the
//! hook, the keys of the cluster objects the lookup held (never Secret data), the request, the
//! response and, for a mutation, the patch decoded from base64.
//!
//! `UPDATE_GOLDEN=1 cargo test --test admission_golden` rewrites the files; review the diff.
//! `the_real_https_server_answers_every_case_like_the_golden` replays each case through the
//! server over TLS, with a client that trusts only the test CA.

mod server_support;

use std::path::PathBuf;

use base64::Engine as _;
use coder_guard::admission::{Hook, decode, respond};
use coder_guard::policy::{Engine, Evaluation, Index, Kind, Options, RuleConfig, rules};
use serde_json::{Value, json};

const NS: &str = "coder";

// === objects ===

fn object(api_version: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// A Secret with fake values (only their digests reach the lookup).
fn secret(name: &str, keys: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = keys.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "stringData": data})
}

fn instance() -> Value {
    object(
        "coderd.coder.com/v1alpha1",
        "CoderInstance",
        "main",
        json!({"url": "https://coder.example.com", "tokenSecretRef": {"name": "coder-token"}}),
    )
}

fn control_plane() -> Value {
    object("coder.com/v1alpha1", "CoderControlPlane", "cp", json!({"image": "ghcr.io/coder/coder:v2.34.0"}))
}

fn provisioner_key(tags: Value) -> Value {
    object(
        "coderd.coder.com/v1alpha1",
        "CoderProvisionerKey",
        "pk",
        json!({"instanceRef": {"name": "main"}, "tags": tags}),
    )
}

fn deployment(name: &str, annotations: Value, template_meta: Option<Value>, containers: Value) -> Value {
    let mut d =
        object("apps/v1", "Deployment", name, json!({"replicas": 1, "template": {"spec": {"containers": containers}}}));
    if !annotations.is_null() {
        d["metadata"]["annotations"] = annotations;
    }
    if let Some(m) = template_meta {
        d["spec"]["template"]["metadata"] = m;
    }
    d
}

fn coderd(env: Value) -> Value {
    json!({"name": "coder", "image": "ghcr.io/coder/coder:v2.34.0", "args": ["server"], "env": env})
}

fn daemon(env: Value) -> Value {
    json!({"name": "provisioner", "image": "ghcr.io/coder/coder:v2.34.0", "command": ["coder"], "args": ["provisioner", "start"], "env": env})
}

fn env(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn env_secret(name: &str, secret: &str, key: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

/// The cluster every case runs against (plus its own objects).
fn base_cluster() -> Vec<Value> {
    vec![
        instance(),
        control_plane(),
        secret("coder-token", &[("token", "fake-token")]),
        secret("coder-db", &[("url", "postgres://fake")]),
    ]
}

// === requests ===

/// An AdmissionReview request for `object` (or, on DELETE, `old`).
fn review(n: usize, operation: &str, object: Option<&Value>, old: Option<&Value>, dry_run: bool) -> Value {
    let subject = object.or(old).expect("an object or an old object");
    let api_version = subject["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = subject["kind"].as_str().unwrap();
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let resource = json!({"group": group, "version": version, "resource": format!("{}s", kind.to_ascii_lowercase())});
    let options_kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let mut request = json!({
        "uid": format!("00000000-0000-4000-8000-{n:012}"),
        "kind": gvk,
        "resource": resource,
        "requestKind": gvk,
        "requestResource": resource,
        "name": subject["metadata"]["name"],
        "operation": operation,
        "userInfo": {"username": "alice@example.com", "uid": "1", "groups": ["platform", "system:authenticated"]},
        "object": object,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
    });
    if let Some(ns) = subject["metadata"]["namespace"].as_str() {
        request["namespace"] = json!(ns);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

// === cases ===

struct Case {
    name: &'static str,
    /// Which engine entry point runs: `Validate` evaluates, `Mutate` mutates.
    run: Hook,
    /// Which hook answers (differs from `run` only to show a validate answer never patches).
    answer: Hook,
    config: &'static str,
    cluster: Vec<Value>,
    review: Value,
}

fn case(name: &'static str, hook: Hook, cluster: Vec<Value>, review: Value) -> Case {
    Case { name, run: hook, answer: hook, config: "", cluster, review }
}

fn cases() -> Vec<Case> {
    use Hook::{Mutate, Validate};
    let org = |name: &str| {
        object(
            "coderd.coder.com/v1alpha1",
            "CoderOrganization",
            "acme",
            json!({"instanceRef": {"name": "main"}, "name": name}),
        )
    };
    let bad_org = org("Platform Team!");
    let coder_env = json!([
        env("CODER_ACCESS_URL", "https://coder.example.com"),
        env_secret("CODER_PG_CONNECTION_URL", "coder-db", "url")
    ]);
    let coder = |env: Value, annotations: Value| deployment("coder", annotations, None, json!([coderd(env)]));
    let with_provider = {
        let mut e = coder_env.as_array().unwrap().clone();
        e.push(env("CODER_AI_GATEWAY_OPENAI_BASE_URL", "https://llm.example.com/v1"));
        Value::Array(e)
    };
    let glass = json!({"coderd.coder.com/ai-env-break-glass": "INC-4711 move the OpenAI proxy"});
    let key_secret = secret("pk-provisioner-key", &[("key", "fake-provisioner-key")]);
    let annotated = deployment(
        "provisioner",
        json!({"coderd.coder.com/provisioner-key": "pk", "example.com/team~x": "build"}),
        Some(json!({"labels": {"app": "provisioner"}})),
        json!([daemon(json!([env("CODER_URL", "https://coder.example.com")])), {"name": "sidecar", "image": "busybox"}]),
    );
    let reads_key = deployment(
        "provisioner",
        Value::Null,
        Some(json!({"annotations": {"checksum/provisioner-key": "sha256:before-rotation", "a/b~c": "kept"}})),
        json!([daemon(json!([
            env("CODER_URL", "https://coder.example.com"),
            env_secret("CODER_PROVISIONER_DAEMON_KEY", "pk-provisioner-key", "key")
        ]))]),
    );
    let with_key = |mut extra: Vec<Value>| {
        extra.extend([provisioner_key(json!({})), key_secret.clone()]);
        extra
    };
    let old_key = provisioner_key(json!({"pool": "a"}));
    let new_key = provisioner_key(json!({"pool": "b"}));
    let bad_banner = object(
        "coderd.coder.com/v1alpha1",
        "CoderInstance",
        "branding",
        json!({"url": "https://coder.example.com", "tokenSecretRef": {"name": "coder-token"},
            "appearance": {"announcementBanners": [{"message": "Maintenance", "backgroundColor": "red"}]}}),
    );
    let prov = object(
        "coder.com/v1alpha1",
        "CoderProvisioner",
        "builders",
        json!({"controlPlaneRef": {"name": "cp"}, "extraEnv": [env("CODER_ORGANIZATION", "platform")], "extraArgs": ["--tag", "pool=a"]}),
    );
    let refs = deployment(
        "coder",
        Value::Null,
        None,
        json!([{"name": "coder", "image": "ghcr.io/coder/coder:v2.34.0",
            "env": [env_secret("CODER_PG_CONNECTION_URL", "coder-db", "password"), env_secret("CODER_OIDC_CLIENT_SECRET", "oidc", "secret")],
            "envFrom": [{"secretRef": {"name": "coder-extra"}}]}]),
    );
    let dry = deployment(
        "coder",
        Value::Null,
        None,
        json!([coderd(json!([env_secret("CODER_OIDC_CLIENT_SECRET", "oidc", "secret")]))]),
    );
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "coder-ws"}});

    vec![
        case("names-organization", Validate, vec![], review(1, "CREATE", Some(&bad_org), None, false)),
        case("references-secret-ref", Validate, vec![], review(2, "CREATE", Some(&refs), None, false)),
        case("provisioner-conflicts", Validate, vec![], review(3, "CREATE", Some(&prov), None, false)),
        case(
            "ai-env-frozen-update",
            Validate,
            vec![],
            review(
                4,
                "UPDATE",
                Some(&coder(with_provider.clone(), Value::Null)),
                Some(&coder(coder_env.clone(), Value::Null)),
                false,
            ),
        ),
        case("formats-banner-color", Validate, vec![], review(5, "CREATE", Some(&bad_banner), None, false)),
        case("rotation-warning", Validate, vec![], review(6, "UPDATE", Some(&new_key), Some(&old_key), false)),
        Case {
            config: "rules:\n  organization-name: warn\n",
            ..case("warn-mode", Validate, vec![], review(7, "CREATE", Some(&bad_org), None, false))
        },
        case("dry-run-missing-secret", Validate, vec![], review(8, "CREATE", Some(&dry), None, true)),
        case(
            "break-glass-audit",
            Validate,
            vec![],
            review(9, "UPDATE", Some(&coder(with_provider, glass.clone())), Some(&coder(coder_env, glass)), false),
        ),
        case("mutate-injection", Mutate, with_key(vec![]), review(10, "CREATE", Some(&annotated), None, false)),
        case(
            "mutate-checksum",
            Mutate,
            with_key(vec![]),
            review(11, "UPDATE", Some(&reads_key), Some(&reads_key), false),
        ),
        case("mutate-missing-key", Mutate, vec![], review(12, "CREATE", Some(&annotated), None, false)),
        case("mutate-unchanged", Mutate, with_key(vec![]), review(13, "CREATE", Some(&instance()), None, false)),
        Case {
            answer: Validate,
            ..case(
                "validate-never-patches",
                Mutate,
                with_key(vec![]),
                review(14, "CREATE", Some(&annotated), None, false),
            )
        },
        case("delete-allowed", Validate, vec![], review(15, "DELETE", None, Some(&bad_org), false)),
        case("cluster-scoped-unknown-kind", Validate, vec![], review(16, "CREATE", Some(&namespace), None, false)),
    ]
}

// === running ===

fn lookup(objects: &[Value]) -> Index {
    let mut index = Index::new(true);
    objects.iter().for_each(|o| index.insert(o, NS));
    index
}

/// `Kind namespace/name` of each object (what the golden shows of the lookup; never data).
fn keys(objects: &[Value]) -> Vec<String> {
    let mut keys: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["namespace"].as_str().unwrap_or(NS),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    keys.sort();
    keys
}

fn engine(config: &str) -> Engine {
    let config = RuleConfig::parse(config, "config.yaml", &rules::ids()).expect("valid test config");
    Engine::new(config, Options::default())
}

fn evaluate(engine: &Engine, run: Hook, body: &[u8], lookup: &Index) -> (coder_guard::admission::Review, Evaluation) {
    let review = decode(body).expect("the case is a valid review");
    let eval = match run {
        Hook::Validate => engine.evaluate(&review.request(), lookup),
        Hook::Mutate => engine.mutate(&review.request(), lookup),
    };
    (review, eval)
}

/// The decoded patch of a response, if it carries one.
fn decoded_patch(response: &Value) -> Option<Value> {
    let patch = response["response"].get("patch")?.as_str().expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is a JSON array"))
}

/// Runs a case: the golden document, after checking the wire rules every response obeys.
fn render(case: &Case) -> String {
    let mut cluster = base_cluster();
    cluster.extend(case.cluster.iter().cloned());
    let index = lookup(&cluster);
    let engine = engine(case.config);
    let body = serde_json::to_vec(&case.review).unwrap();
    let (review, eval) = evaluate(&engine, case.run, &body, &index);
    let out = respond(&review, case.answer, &eval);
    let response: Value = serde_json::from_slice(&out).expect("the response is JSON");
    let r = &response["response"];
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1", "{}", case.name);
    assert_eq!(response["kind"], "AdmissionReview", "{}", case.name);
    assert_eq!(r["uid"], case.review["request"]["uid"], "{}: uid echoed", case.name);
    assert_eq!(r.get("patch").is_some(), r.get("patchType").is_some(), "{}: patch and patchType together", case.name);
    if case.answer == Hook::Validate {
        assert!(r.get("patch").is_none(), "{}: a validating response never patches", case.name);
    }
    if r["allowed"] == false {
        assert_eq!((&r["status"]["code"], &r["status"]["reason"]), (&json!(403), &json!("Forbidden")), "{}", case.name);
    }
    let patch = decoded_patch(&response);
    if let Some(ops) = &patch {
        assert_eq!(r["patchType"], "JSONPatch");
        // Applying the patch and mutating again changes nothing.
        let ops: json_patch::Patch = serde_json::from_value(ops.clone()).unwrap();
        let mut patched = case.review["request"]["object"].clone();
        json_patch::patch(&mut patched, &ops).expect("the patch applies to the object");
        let mut again = case.review.clone();
        again["request"]["object"] = patched;
        let (_, second) = evaluate(&engine, Hook::Mutate, &serde_json::to_vec(&again).unwrap(), &index);
        assert!(second.patch.is_empty(), "{}: second mutation {:?}", case.name, second.patch);
    }
    let mut doc = json!({
        "hook": case.answer.as_str(),
        "lookup": keys(&cluster),
        "request": case.review,
        "response": response,
    });
    if !case.config.is_empty() {
        doc["config"] = json!(case.config);
    }
    if let Some(p) = patch {
        doc["patch"] = p;
    }
    let mut text = serde_json::to_string_pretty(&doc).unwrap();
    text.push('\n');
    text
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/admission")
}

#[test]
fn responses_match_the_golden_files() {
    let dir = golden_dir();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let cases = cases();
    for case in &cases {
        let want = render(case);
        let path = dir.join(format!("{}.json", case.name));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(case.name);
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ: {stale:?}; run with UPDATE_GOLDEN=1 to refresh, then review the diff"
    );
    // No golden file is left over from a removed case.
    let mut names: Vec<String> = cases.iter().map(|c| format!("{}.json", c.name)).collect();
    names.sort();
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, names, "tests/golden/admission holds exactly one file per case");
}

#[test]
fn each_case_shows_what_it_is_named_for() {
    let verdicts: Vec<(&str, Value)> = cases()
        .iter()
        .map(|c| {
            let doc: Value = serde_json::from_str(&render(c)).unwrap();
            (c.name, doc)
        })
        .collect();
    let get = |name: &str| &verdicts.iter().find(|(n, _)| *n == name).unwrap().1["response"]["response"];
    let denied_by = |name: &str, rule: &str| {
        let r = get(name);
        assert_eq!(r["allowed"], false, "{name}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("[{rule}]")), "{name}: {message}");
    };
    denied_by("names-organization", "organization-name");
    denied_by("references-secret-ref", "secret-ref");
    denied_by("provisioner-conflicts", "provisioner-key-conflicts");
    denied_by("ai-env-frozen-update", "ai-provider-env-frozen");
    denied_by("formats-banner-color", "banner-color");
    denied_by("mutate-missing-key", "provisioner-key-injection");
    let warned = |name: &str, rule: &str| {
        let r = get(name);
        assert_eq!(r["allowed"], true, "{name}");
        let warnings = r["warnings"].as_array().unwrap();
        assert!(warnings.iter().any(|w| w.as_str().unwrap().starts_with(&format!("[{rule}]"))), "{name}: {warnings:?}");
    };
    warned("rotation-warning", "provisioner-key-rotation");
    warned("warn-mode", "organization-name");
    warned("dry-run-missing-secret", "secret-ref");
    warned("break-glass-audit", "ai-provider-env-frozen");
    assert_eq!(get("break-glass-audit")["auditAnnotations"]["ai-env-break-glass"], "INC-4711 move the OpenAI proxy");
    for name in ["mutate-injection", "mutate-checksum"] {
        assert_eq!(get(name)["patchType"], "JSONPatch", "{name}");
    }
    for name in ["mutate-unchanged", "validate-never-patches", "delete-allowed", "cluster-scoped-unknown-kind"] {
        let r = get(name);
        assert_eq!(r["allowed"], true, "{name}");
        assert!(r.get("patch").is_none() && r.get("warnings").is_none() && r.get("status").is_none(), "{name}: {r}");
    }
    // Kind::of knows nothing of Namespaces: the unknown-kind case is really unknown.
    assert_eq!(Kind::of(&json!({"apiVersion": "v1", "kind": "Namespace"})), None);
}

#[test]
fn goldens_hold_no_secret_values() {
    for case in cases() {
        let text = render(&case);
        for value in ["fake-token", "postgres://fake", "fake-provisioner-key"] {
            assert!(!text.contains(value), "{}: Secret value {value:?} in the golden", case.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_https_server_answers_every_case_like_the_golden() {
    let dir = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for case in cases().into_iter().filter(|c| c.run == c.answer) {
        let rule_config = (!case.config.is_empty()).then(|| {
            let path = dir.path().join(format!("{}.yaml", case.name));
            std::fs::write(&path, case.config).unwrap();
            path
        });
        let mut cluster = base_cluster();
        cluster.extend(case.cluster.iter().cloned());
        let options = server_support::Options {
            objects: std::sync::Arc::new(lookup(&cluster)),
            rule_config,
            ..server_support::Options::default()
        };
        let server = server_support::TestServer::start(options).await;
        let client = server.client();
        let path = match case.answer {
            Hook::Validate => "/validate",
            Hook::Mutate => "/mutate",
        };
        let got = server.review(&client, path, &case.review).await;
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(golden_dir().join(format!("{}.json", case.name))).unwrap())
                .unwrap();
        assert_eq!(got, golden["response"]["response"], "{}: the HTTPS answer differs from the golden", case.name);
        server.shutdown().await;
        replayed += 1;
    }
    assert!(replayed >= 14, "replayed only {replayed} cases");
}
