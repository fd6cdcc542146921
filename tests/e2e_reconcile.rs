//! The reconcile loop through the real `coder-guard serve` (the Lease leader of the harness's
//! API server), driven as a user would: Secrets and CRs applied with `kubectl apply` through the
//! registered webhook, conditions observed with `kubectl wait` (a watch), deletions with
//! `kubectl delete --wait`. Each test has its own namespace and its own fake coderd; the
//! binary, its log and its metrics are shared by the tests of this binary.
//!
//! Skipped (with `SKIP: …` on stderr) where Go is not installed, unless `CI=true`. Log:
//! `target/e2e-logs/e2e_reconcile/coder-guard.log`.

mod fake_coderd;
mod support;

use std::time::Duration;

use fake_coderd::{FakeCoderd, FakeOptions};
use serde_json::{Value, json};
use support::webhook::CoderGuard;

const FINALIZER: &str = "coderd.coder.com/cleanup";
/// The Secret the loop writes for the `CoderProvisionerKey` `builders`.
const KEY_SECRET: &str = "builders-provisioner-key";
const ALL_KINDS: &str = "coderinstances,coderorganizations,coderaiproviders,coderprovisionerkeys";

/// The secret values one setup uses. The canary test makes every one recognisable.
struct Values {
    token: String,
    license_jti: &'static str,
    api_key: &'static str,
    bedrock: Option<(&'static str, &'static str)>,
}

impl Values {
    fn license(&self) -> String {
        FakeCoderd::license_jwt(self.license_jti, &["multiple_organizations", "external_provisioner_daemons"])
    }
}

fn plain(coderd: &FakeCoderd, license_jti: &'static str) -> Values {
    Values { token: coderd.token(), license_jti, api_key: "sk-e2e-reconcile-plain", bedrock: None }
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data})
}

fn cr(ns: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Secrets first (the webhook denies references to missing Secrets), then the instance with its
/// license, the organization `platform` (`deletionPolicy: Delete`), the AI provider `openai`,
/// the Bedrock provider `claude` when `v.bedrock` is set, and the provisioner key `builders`.
fn setup(ns: &str, coderd: &FakeCoderd, v: &Values) -> Vec<Value> {
    let instance = json!({"name": "coder"});
    let mut objects = vec![
        secret(ns, "coderd-token", &[("token", &v.token)]),
        secret(ns, "coder-license", &[("license", &v.license())]),
        secret(ns, "openai", &[("apiKey", v.api_key)]),
    ];
    if let Some((id, key)) = v.bedrock {
        objects.push(secret(ns, "bedrock", &[("accessKeyID", id), ("secretAccessKey", key)]));
    }
    objects.push(cr(
        ns,
        "CoderInstance",
        "coder",
        json!({"url": coderd.url(), "tokenSecretRef": {"name": "coderd-token"},
               "license": {"secretRef": {"name": "coder-license"}}}),
    ));
    objects.push(cr(
        ns,
        "CoderOrganization",
        "platform",
        json!({"instanceRef": instance, "displayName": "Platform team", "deletionPolicy": "Delete"}),
    ));
    objects.push(cr(
        ns,
        "CoderAIProvider",
        "openai",
        json!({"instanceRef": instance, "name": "openai", "type": "openai",
               "baseURL": "https://api.openai.com/v1/", "apiKeySecretRefs": [{"name": "openai"}]}),
    ));
    if v.bedrock.is_some() {
        objects.push(cr(
            ns,
            "CoderAIProvider",
            "claude",
            json!({"instanceRef": instance, "name": "claude", "type": "bedrock",
                   "baseURL": "https://bedrock-runtime.us-east-1.amazonaws.com",
                   "bedrock": {"region": "us-east-1", "model": "anthropic.claude-v2",
                               "accessKeyRef": {"name": "bedrock"}, "accessKeySecretRef": {"name": "bedrock"}}}),
        ));
    }
    objects.push(cr(ns, "CoderProvisionerKey", "builders", json!({"instanceRef": instance, "tags": {"pool": "gpu"}})));
    objects
}

/// `kubectl apply` of each object; each must be accepted without warnings.
fn apply_all(cg: &CoderGuard, objects: &[Value]) {
    for object in objects {
        cg.apply(&[], object).accepted().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// `kind/name` of every CR in `objects`.
fn targets(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] != "Secret")
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap().to_lowercase(), o["metadata"]["name"].as_str().unwrap()))
        .collect()
}

/// `kubectl wait --for=condition=Ready` (a watch) of each target, 90 s each.
fn wait_ready(cg: &CoderGuard, ns: &str, targets: &[String]) {
    for target in targets {
        let out = cg.api().kubectl(["wait", "--for=condition=Ready", target, "-n", ns, "--timeout=90s"]);
        if !out.status.success() {
            let (kind, name) = target.split_once('/').unwrap();
            let conditions = cg.get(kind, ns, name).map(|o| o["status"]["conditions"].clone());
            panic!(
                "{target} in {ns} did not become Ready: {}\nconditions: {conditions:?}\nend of {}:\n{}",
                support::text(&out.stderr),
                cg.log_path().display(),
                cg.log_tail(40)
            );
        }
    }
}

/// The decoded value at `key` of a Secret; `None` when the Secret or the key is missing.
fn secret_value(cg: &CoderGuard, ns: &str, name: &str, key: &str) -> Option<String> {
    use base64::Engine as _;
    let encoded = cg.get("secret", ns, name)?["data"][key].as_str()?.to_owned();
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("Secret data is base64");
    Some(String::from_utf8(bytes).expect("the key is UTF-8"))
}

/// Accepted provisioner-key creations in coderd's request log.
fn key_creations(coderd: &FakeCoderd) -> usize {
    let writes = coderd.writes();
    writes.iter().filter(|w| w.method == "POST" && w.path.ends_with("/provisionerkeys") && w.status < 300).count()
}

/// Exactly one coderd object per resource, and the key's plaintext in its Secret.
fn assert_state(cg: &CoderGuard, coderd: &FakeCoderd, ns: &str, providers: &[&str]) {
    let orgs: Vec<Value> = coderd.organizations().into_iter().filter(|o| o["is_default"] != true).collect();
    let org_names: Vec<&Value> = orgs.iter().map(|o| &o["name"]).collect();
    assert_eq!(org_names, ["platform"], "one organization besides the default");
    let names: Vec<Value> = coderd.ai_providers().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, providers, "one AI provider per CoderAIProvider");
    let keys = coderd.provisioner_keys("default");
    assert_eq!(keys.len(), 1, "one provisioner key: {keys:?}");
    assert_eq!(keys[0]["tags"]["pool"], "gpu");
    assert_eq!(coderd.licenses().len(), 1, "one license");
    let plaintext = coderd.provisioner_key_secret("default", "builders").expect("the key in coderd");
    assert_eq!(secret_value(cg, ns, KEY_SECRET, "key"), Some(plaintext), "the key's plaintext is in its Secret");
}

/// Deletes the key's Secret; within 60 s coderd has a new key and the Secret holds it. Returns
/// the old and the new plaintext.
fn rotate_key(cg: &CoderGuard, coderd: &FakeCoderd, ns: &str) -> (String, String) {
    let old = coderd.provisioner_key_secret("default", "builders").expect("a key in coderd");
    let creations = key_creations(coderd);
    cg.api().kubectl_ok(["delete", "secret", KEY_SECRET, "-n", ns, "--wait=true", "--timeout=30s"]);
    let mut last = String::new();
    support::poll(Duration::from_secs(60), Duration::from_millis(250), "a new key in coderd and its Secret", || {
        let (now, stored) =
            (coderd.provisioner_key_secret("default", "builders"), secret_value(cg, ns, KEY_SECRET, "key"));
        last = format!(
            "coderd rotated: {}, Secret present: {}",
            now.as_ref().is_some_and(|k| *k != old),
            stored.is_some()
        );
        Ok(now.is_some_and(|k| k != old && Some(&k) == stored.as_ref()))
    })
    .unwrap_or_else(|e| panic!("{e} ({last}); end of {}:\n{}", cg.log_path().display(), cg.log_tail(40)));
    wait_ready(cg, ns, &["coderprovisionerkey/builders".to_owned()]);
    assert_eq!(key_creations(coderd), creations + 1, "exactly one new key");
    assert_eq!(coderd.provisioner_keys("default").len(), 1, "the old key is gone from coderd");
    (old, coderd.provisioner_key_secret("default", "builders").unwrap())
}

/// `GET /metrics` on the admin port.
fn metrics(cg: &CoderGuard) -> String {
    let url = format!("{}/metrics", cg.admin_url());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
        let response = client.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 200, "GET {url}");
        response.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    })
}

#[test]
fn applied_resources_become_ready_and_deleting_them_removes_them_from_coderd() {
    let Some(cg) = CoderGuard::shared_with_reconcile_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions::default());
    let ns = cg.api().namespace("e2e-reconcile-ready");
    let objects = setup(&ns, &coderd, &plain(&coderd, "5b0c1d2e-3f40-4a51-8b62-7c83d94ea5f6"));
    apply_all(&cg, &objects);
    wait_ready(&cg, &ns, &targets(&objects));
    assert_state(&cg, &coderd, &ns, &["openai"]);

    let in_coderd = |kind: &str| match kind {
        "coderaiprovider" => coderd.ai_providers().iter().any(|p| p["name"] == "openai"),
        _ => coderd.organizations().iter().any(|o| o["name"] == "platform"),
    };
    for (kind, name) in [("coderaiprovider", "openai"), ("coderorganization", "platform")] {
        let before = cg.get(kind, &ns, name).expect("the resource exists");
        assert!(before["metadata"]["finalizers"].to_string().contains(FINALIZER), "{kind}/{name}: {before}");
        assert!(in_coderd(kind), "{kind}/{name} is in coderd before the deletion");
        cg.api().kubectl_ok(["delete", kind, name, "-n", &ns, "--wait=true", "--timeout=60s"]);
        assert!(!in_coderd(kind), "{kind}/{name}: deleted in coderd before the finalizer was removed");
        assert!(cg.get(kind, &ns, name).is_none(), "{kind}/{name}: kubectl get says NotFound");
    }
    // The rest is untouched.
    assert_eq!(coderd.provisioner_keys("default").len(), 1);
    assert_eq!(coderd.licenses().len(), 1);
}

#[test]
fn losing_the_key_secret_rotates_the_key_through_the_binary() {
    let Some(cg) = CoderGuard::shared_with_reconcile_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions::default());
    let ns = cg.api().namespace("e2e-reconcile-rotation");
    let objects = setup(&ns, &coderd, &plain(&coderd, "6c1d2e3f-4051-4b62-8c73-8d94ea5fb607"));
    apply_all(&cg, &objects);
    wait_ready(&cg, &ns, &targets(&objects));
    assert_eq!(key_creations(&coderd), 1, "one key creation");
    let (old, new) = rotate_key(&cg, &coderd, &ns);
    assert_ne!(old, new);
    assert_state(&cg, &coderd, &ns, &["openai"]);
}

/// Recognisable secret values: none may show up in anything observable.
const CANARY_TOKEN: &str = "cnry7token-q8w2e4r6t8y0u2i4o6p8a0";
const CANARY_API_KEY: &str = "sk-canary-apikey-one-5d1e8f2a";
const CANARY_API_KEY_2: &str = "sk-canary-apikey-two-9b3c7a4e";
const CANARY_ACCESS_KEY: &str = "AKIACANARYACCESS7Q2W";
const CANARY_SECRET_KEY: &str = "canary/bedrock+secret-Z8x6C4v2B0n";
const CANARY_JTI: &str = "7d2e3f40-5162-4c73-9d84-9ea5fb6c7d18";

#[test]
fn no_secret_value_reaches_the_log_metrics_events_or_statuses() {
    let Some(cg) = CoderGuard::shared_with_reconcile_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions { token: CANARY_TOKEN.into(), ..FakeOptions::default() });
    let ns = cg.api().namespace("e2e-reconcile-canary");
    let values = Values {
        token: CANARY_TOKEN.into(),
        license_jti: CANARY_JTI,
        api_key: CANARY_API_KEY,
        bedrock: Some((CANARY_ACCESS_KEY, CANARY_SECRET_KEY)),
    };
    let objects = setup(&ns, &coderd, &values);
    apply_all(&cg, &objects);
    wait_ready(&cg, &ns, &targets(&objects));
    assert_state(&cg, &coderd, &ns, &["claude", "openai"]);
    // coderd did receive the values (so their absence elsewhere means something).
    assert_eq!(coderd.ai_provider_keys("openai"), [CANARY_API_KEY]);
    let bedrock = (CANARY_ACCESS_KEY.to_owned(), CANARY_SECRET_KEY.to_owned());
    assert_eq!(coderd.ai_provider_settings_secret("claude"), Some(bedrock));

    let (old_key, new_key) = rotate_key(&cg, &coderd, &ns);
    // A changed API key is re-sent.
    apply_all(&cg, &[secret(&ns, "openai", &[("apiKey", CANARY_API_KEY_2)])]);
    support::poll(Duration::from_secs(60), Duration::from_millis(250), "the new API key in coderd", || {
        Ok(coderd.ai_provider_keys("openai") == [CANARY_API_KEY_2])
    })
    .unwrap_or_else(|e| panic!("{e}; end of {}:\n{}", cg.log_path().display(), cg.log_tail(40)));
    wait_ready(&cg, &ns, &targets(&objects));
    let statuses = cg.api().kubectl_ok(["get", ALL_KINDS, "-n", &ns, "-o", "json"]);
    assert!(statuses.contains("secretDigest"), "the statuses record digests: {statuses}");
    // Deletions log and publish too.
    for (kind, name) in [("coderaiprovider", "claude"), ("coderorganization", "platform")] {
        cg.api().kubectl_ok(["delete", kind, name, "-n", &ns, "--wait=true", "--timeout=60s"]);
    }

    let log = std::fs::read_to_string(cg.log_path()).expect("coder-guard's log");
    assert!(log.contains(&ns), "the log mentions the canary namespace's resources");
    let exposition = metrics(&cg);
    let events = cg.api().kubectl_ok(["get", "events", "-n", &ns, "-o", "json"]);
    let published: Value = serde_json::from_str(&events).expect("events as JSON");
    assert!(published["items"].as_array().is_some_and(|i| !i.is_empty()), "Events were published: {events}");
    let license = values.license();
    let token_secret = CANARY_TOKEN.split_once('-').unwrap().1;
    let license_payload = license.split('.').nth(1).unwrap();
    let canaries = [
        ("the token", CANARY_TOKEN),
        ("the token's secret", token_secret),
        ("the API key", CANARY_API_KEY),
        ("the changed API key", CANARY_API_KEY_2),
        ("the Bedrock access key", CANARY_ACCESS_KEY),
        ("the Bedrock secret key", CANARY_SECRET_KEY),
        ("the license", &license),
        ("the license's payload", license_payload),
        ("the first provisioner key", &old_key),
        ("the rotated provisioner key", &new_key),
    ];
    for (what, canary) in canaries {
        for (place, text) in
            [("the log", &log), ("/metrics", &exposition), ("Events", &events), ("statuses", &statuses)]
        {
            assert!(!text.contains(canary), "{what} appears in {place}");
        }
    }

    let has = |name: &str, labels: &[&str]| {
        exposition.lines().any(|l| {
            l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') && labels.iter().all(|x| rest.contains(x)))
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v >= 1.0)
        })
    };
    let results = "coder_guard_reconcile_results_total";
    assert!(has(results, &["kind=\"CoderInstance\"", "result=\"ready\""]), "no ready CoderInstance:\n{exposition}");
    assert!(exposition.lines().any(|l| l == "coder_guard_reconcile_leading 1"), "not leading:\n{exposition}");
}
