//! The reconcile loop, in-process, against the real kube-apiserver (CRs, Secrets, status,
//! Events) and the fake coderd (request log, faults). Tests take turns: each runs its own loop,
//! which watches every namespace.

mod fake_coderd;
mod support;

use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use coder_guard::reconcile;
use fake_coderd::{Edition, FakeCoderd, FakeOptions, Faults, Logged};
use serde_json::Value;
use support::apiserver::ApiServer;
use support::log_capture::LogCapture;
use support::reconcile_loop::Loop;

const LICENSE_JTI: &str = "8a7c2e34-5f1b-4c9d-9e2a-0b1c2d3e4f50";
/// Recognisable secret values: none may show up anywhere observable.
const CANARY_API_KEY: &str = "canary-apikey-7f3e9d1c";
const CANARY_ACCESS_KEY: &str = "canary-accesskey-51aa";

static TURN: Mutex<()> = Mutex::new(());
static LOGS: OnceLock<LogCapture> = OnceLock::new();

/// Every log line the loop writes in this process.
fn logs() -> &'static LogCapture {
    LOGS.get_or_init(|| {
        let capture = LogCapture::default();
        tracing_subscriber::fmt()
            .with_env_filter("coder_guard=debug")
            .with_writer(capture.clone())
            .with_ansi(false)
            .try_init()
            .expect("the log capture is this process's only global tracing subscriber, set once here");
        capture
    })
}

/// The loop with short intervals, logging into [`logs`].
fn start_loop(api: &ApiServer) -> Loop {
    logs();
    let config = reconcile::Config {
        resync: Duration::from_secs(2),
        slow: Duration::from_secs(4),
        timeout: Duration::from_secs(3),
        identity: "reconcile-test".into(),
        concurrency: 4,
        namespaces: Vec::new(),
    };
    Loop::start(api.kubeconfig(), config)
}

/// How long one test may hold its turn before the process is stopped with a message (a hang
/// must fail the run, not stall it).
const TURN_LIMIT: Duration = Duration::from_secs(300);
static HOLDER: Mutex<Option<(String, std::time::Instant)>> = Mutex::new(None);

/// The turn to run a loop, released when the guard drops.
struct Turn(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Turn {
    fn drop(&mut self) {
        *HOLDER.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

fn turn() -> Turn {
    static WATCHDOG: OnceLock<()> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                if let Some((test, since)) = &*HOLDER.lock().unwrap_or_else(|p| p.into_inner())
                    && since.elapsed() > TURN_LIMIT
                {
                    let _ =
                        writeln!(std::io::stderr(), "{test} ran longer than {TURN_LIMIT:?}; stopping the test process");
                    std::process::abort();
                }
            }
        });
    });
    let guard = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    *HOLDER.lock().unwrap_or_else(|p| p.into_inner()) = Some((test, std::time::Instant::now()));
    Turn(guard)
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data})
        .to_string()
}

/// The CRs and Secrets of a full setup: instance (license, appearance, org sync), one
/// organization with group and role sync, one AI provider, one provisioner key.
fn full_setup(ns: &str, coderd: &FakeCoderd) -> Vec<String> {
    let jwt = FakeCoderd::license_jwt(LICENSE_JTI, &["multiple_organizations", "appearance"]);
    let cr = |kind: &str, name: &str, spec: Value| {
        serde_json::json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": spec})
        .to_string()
    };
    vec![
        secret(ns, "coderd-token", &[("token", &coderd.token())]),
        secret(ns, "coder-license", &[("license", &jwt)]),
        secret(ns, "openai", &[("apiKey", CANARY_API_KEY)]),
        secret(ns, "bedrock", &[("accessKeyID", CANARY_ACCESS_KEY), ("secretAccessKey", "canary-secretkey-99")]),
        cr(
            "CoderInstance",
            "coder",
            serde_json::json!({
                "url": coderd.url(), "tokenSecretRef": {"name": "coderd-token"},
                "license": {"secretRef": {"name": "coder-license"}},
                "appearance": {"applicationName": "Acme Coder",
                    "announcementBanners": [{"message": "maintenance", "backgroundColor": "#ff8800"}]},
                "organizationSync": {"field": "groups", "mapping": {"platform": ["platform"]}, "assignDefault": true}
            }),
        ),
        cr(
            "CoderOrganization",
            "platform",
            serde_json::json!({
                "instanceRef": {"name": "coder"}, "displayName": "Platform team", "deletionPolicy": "Delete",
                "roleSync": {"field": "roles", "mapping": {"admins": ["organization-admin"]}}
            }),
        ),
        cr(
            "CoderAIProvider",
            "openai",
            serde_json::json!({
                "instanceRef": {"name": "coder"}, "name": "openai", "type": "openai",
                "baseURL": "https://api.openai.com/v1/", "apiKeySecretRefs": [{"name": "openai"}]
            }),
        ),
        cr(
            "CoderAIProvider",
            "claude",
            serde_json::json!({
                "instanceRef": {"name": "coder"}, "name": "claude", "type": "bedrock",
                "baseURL": "https://bedrock-runtime.us-east-1.amazonaws.com",
                "bedrock": {"region": "us-east-1", "model": "anthropic.claude-v2",
                    "accessKeyRef": {"name": "bedrock"}, "accessKeySecretRef": {"name": "bedrock"}}
            }),
        ),
        cr(
            "CoderProvisionerKey",
            "builders",
            serde_json::json!({
                "instanceRef": {"name": "coder"}, "tags": {"pool": "gpu"}
            }),
        ),
    ]
}

fn apply_all(api: &ApiServer, manifests: &[String]) {
    for manifest in manifests {
        let out = api.apply(manifest);
        assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn get(api: &ApiServer, kind: &str, ns: &str, name: &str) -> Value {
    serde_json::from_str(&api.kubectl_ok(["get", kind, name, "-n", ns, "-o", "json"])).unwrap()
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

const KINDS: [(&str, &str); 5] = [
    ("coderinstance", "coder"),
    ("coderorganization", "platform"),
    ("coderaiprovider", "openai"),
    ("coderaiprovider", "claude"),
    ("coderprovisionerkey", "builders"),
];

/// Waits until every object of the full setup is Ready.
fn wait_all_ready(api: &ApiServer, ns: &str, timeout: Duration) {
    let mut last = String::new();
    let ready = support::poll(timeout, Duration::from_millis(300), "every resource to become Ready", || {
        for (kind, name) in KINDS {
            let object = get(api, kind, ns, name);
            match condition(&object, "Ready") {
                Some(c) if c["status"] == "True" => {}
                other => {
                    last = format!("{kind}/{name}: {other:?}; conditions {}", object["status"]["conditions"]);
                    return Ok(false);
                }
            }
        }
        Ok(true)
    });
    ready.unwrap_or_else(|e| panic!("{e}; last: {last}"));
}

/// `METHOD path` of every write coderd accepted (2xx), sorted.
fn writes(coderd: &FakeCoderd) -> Vec<String> {
    let mut writes: Vec<String> = coderd
        .writes()
        .iter()
        .filter(|w| (200..300).contains(&w.status))
        .map(|w: &Logged| format!("{} {}", w.method, w.path))
        .collect();
    writes.sort();
    writes
}

fn count(writes: &[String], prefix: &str) -> usize {
    writes.iter().filter(|w| w.starts_with(prefix)).count()
}

#[test]
fn first_reconcile_writes_what_is_needed_then_nothing_then_only_the_change() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions::default());
    let ns = api.namespace("reconcile-first");
    apply_all(api, &full_setup(&ns, &coderd));
    let running = start_loop(api);
    wait_all_ready(api, &ns, Duration::from_secs(60));

    let first = writes(&coderd);
    let org_id =
        coderd.organizations().iter().find(|o| o["name"] == "platform").unwrap()["id"].as_str().unwrap().to_owned();
    let expected = vec![
        "PATCH /api/v2/organizations/ORG/settings/idpsync/roles".replace("ORG", &org_id),
        "PATCH /api/v2/settings/idpsync/organization".to_owned(),
        "POST /api/v2/ai/providers".to_owned(),
        "POST /api/v2/ai/providers".to_owned(),
        "POST /api/v2/licenses".to_owned(),
        "POST /api/v2/organizations".to_owned(),
        "POST /api/v2/organizations/default/provisionerkeys".to_owned(),
        "PUT /api/v2/appearance".to_owned(),
    ];
    let mut expected = expected;
    expected.sort();
    assert_eq!(first, expected, "first reconcile: exactly the writes needed");
    assert_eq!(coderd.licenses().len(), 1);
    assert_eq!(coderd.ai_provider_keys("openai"), [CANARY_API_KEY]);
    let key = coderd.provisioner_keys("default");
    assert_eq!(key.len(), 1);
    assert_eq!(key[0]["tags"]["pool"], "gpu");
    let stored = api.kubectl_ok(["get", "secret", "builders-provisioner-key", "-n", &ns, "-o", "jsonpath={.data.key}"]);
    let plaintext = coderd.provisioner_key_secret("default", "builders").unwrap();
    assert_eq!(base64_decode(&stored), plaintext, "the key's plaintext is in its Secret");

    // Steady state: several resyncs, no writes at all.
    coderd.clear_log();
    std::thread::sleep(Duration::from_secs(7));
    assert!(coderd.requests().len() > 5, "the loop kept resyncing");
    assert_eq!(writes(&coderd), Vec::<String>::new(), "steady state writes nothing");

    // One change: only its write.
    api.kubectl_ok([
        "patch",
        "coderaiprovider",
        "openai",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"displayName":"OpenAI (prod)"}}"#,
    ]);
    let provider_id =
        coderd.ai_providers().iter().find(|p| p["name"] == "openai").unwrap()["id"].as_str().unwrap().to_owned();
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "the display name to reach coderd", || {
        Ok(coderd.ai_providers().iter().any(|p| p["display_name"] == "OpenAI (prod)"))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(writes(&coderd), [format!("PATCH /api/v2/ai/providers/{provider_id}")], "only the change is written");
    drop(running);
    assert_no_canary(api, &ns, &coderd, &plaintext);
}

#[test]
fn a_license_is_posted_once_across_restarts_and_lost_status() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions::default());
    let ns = api.namespace("reconcile-license");
    apply_all(api, &full_setup(&ns, &coderd)[..5]);
    let wait_instance = || {
        support::poll(Duration::from_secs(60), Duration::from_millis(300), "the license to be applied", || {
            let instance = get(api, "coderinstance", &ns, "coder");
            Ok(condition(&instance, "LicenseApplied").is_some_and(|c| c["status"] == "True"))
        })
        .unwrap()
    };
    let running = start_loop(api);
    wait_instance();
    drop(running);
    // The status is lost (as if the write after the upload had failed) and the loop restarts.
    api.kubectl_ok([
        "patch",
        "coderinstance",
        "coder",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":null}"#,
    ]);
    let running = start_loop(api);
    wait_instance();
    drop(running);
    let running = start_loop(api);
    std::thread::sleep(Duration::from_secs(3));
    wait_instance();
    drop(running);
    let posts = coderd.requests().iter().filter(|r| r.method == "POST" && r.path == "/api/v2/licenses").count();
    assert_eq!(posts, 1, "one license POST per distinct license");
    assert_eq!(coderd.licenses().len(), 1);
}

#[test]
fn a_provisioner_key_is_created_once_and_rotated_only_when_its_secret_is_lost() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions { licensed: true, ..FakeOptions::default() });
    let ns = api.namespace("reconcile-key");
    let setup = full_setup(&ns, &coderd);
    apply_all(api, &[setup[0].clone(), setup[1].clone(), setup[4].clone(), setup[8].clone()]);
    let running = start_loop(api);
    let key_ready = |what: &str| {
        support::poll(Duration::from_secs(60), Duration::from_millis(300), what, || {
            Ok(condition(&get(api, "coderprovisionerkey", &ns, "builders"), "Ready")
                .is_some_and(|c| c["status"] == "True"))
        })
        .unwrap()
    };
    key_ready("the key to be Ready");
    let first = coderd.provisioner_key_secret("default", "builders").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let creates = |c: &FakeCoderd| count(&writes(c), "POST /api/v2/organizations/default/provisionerkeys");
    assert_eq!(creates(&coderd), 1, "one creation while the Secret is kept");

    // OnSecretLoss: losing the Secret rotates the key once.
    api.kubectl_ok(["delete", "secret", "builders-provisioner-key", "-n", &ns]);
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "a rotated key", || {
        Ok(coderd.provisioner_key_secret("default", "builders").is_some_and(|k| k != first))
    })
    .unwrap();
    key_ready("the rotated key to be Ready");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(creates(&coderd), 2, "exactly one rotation");
    let second = coderd.provisioner_key_secret("default", "builders").unwrap();
    let stored = api.kubectl_ok(["get", "secret", "builders-provisioner-key", "-n", &ns, "-o", "jsonpath={.data.key}"]);
    assert_eq!(base64_decode(&stored), second);

    // Never: losing it again is reported, not repaired.
    api.kubectl_ok([
        "patch",
        "coderprovisionerkey",
        "builders",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"rotationPolicy":"Never"}}"#,
    ]);
    api.kubectl_ok(["delete", "secret", "builders-provisioner-key", "-n", &ns]);
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "the SecretLost condition", || {
        let key = get(api, "coderprovisionerkey", &ns, "builders");
        Ok(key["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["reason"] == "SecretLost"))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(creates(&coderd), 2, "policy Never does not rotate");
    drop(running);
}

#[test]
fn everything_converges_under_faults_without_duplicate_creates() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    // Not an owner: the bypass is refused (428) and the injected 429 bursts reach the loop.
    let coderd = FakeCoderd::start(FakeOptions { seed: 7, owner: false, ..FakeOptions::default() });
    coderd.set_faults(Faults { error_rate: 0.2, reset_rate: 0.05, exempt_healthz: false, ..Faults::default() });
    coderd.rate_limit(10, 1);
    let ns = api.namespace("reconcile-faults");
    apply_all(api, &full_setup(&ns, &coderd));
    let running = start_loop(api);
    wait_all_ready(api, &ns, Duration::from_secs(150));
    assert_single_objects(&coderd);
    let before = count(&writes(&coderd), "POST /api/v2/organizations/default/provisionerkeys");
    assert_eq!(before, 1, "one key creation despite faults");

    // coderd restarts and loses its database: everything is re-created once.
    coderd.restart(true);
    coderd.rate_limit(5, 1);
    support::poll(Duration::from_secs(150), Duration::from_millis(500), "coderd to be repopulated", || {
        Ok(coderd.licenses().len() == 1
            && coderd.ai_providers().len() == 2
            && coderd.organizations().iter().any(|o| o["name"] == "platform")
            && coderd.provisioner_keys("default").len() == 1)
    })
    .unwrap();
    wait_all_ready(api, &ns, Duration::from_secs(150));
    let key = coderd.provisioner_key_secret("default", "builders").unwrap();
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "the new key in its Secret", || {
        let stored =
            api.kubectl_ok(["get", "secret", "builders-provisioner-key", "-n", &ns, "-o", "jsonpath={.data.key}"]);
        Ok(base64_decode(&stored) == key)
    })
    .unwrap();
    assert_single_objects(&coderd);
    drop(running);
    assert_no_canary(api, &ns, &coderd, &key);
}

#[test]
fn premium_surfaces_without_a_license_and_an_open_source_coderd_become_conditions() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    for (edition, reason) in [(Edition::Enterprise, "NotEntitled"), (Edition::Agpl, "NotSupported")] {
        let coderd = FakeCoderd::start(FakeOptions { edition, ..FakeOptions::default() });
        let ns = api.namespace("reconcile-unlicensed");
        let setup = full_setup(&ns, &coderd);
        // No license in the instance.
        let mut instance: Value = serde_json::from_str(&setup[4]).unwrap();
        instance["spec"].as_object_mut().unwrap().remove("license");
        apply_all(api, &[setup[0].clone(), instance.to_string(), setup[5].clone(), setup[8].clone()]);
        let running = start_loop(api);
        support::poll(Duration::from_secs(60), Duration::from_millis(300), reason, || {
            let org = get(api, "coderorganization", &ns, "platform");
            let key = get(api, "coderprovisionerkey", &ns, "builders");
            Ok([org, key].iter().all(|o| condition(o, "Ready").is_some_and(|c| c["reason"] == reason)))
        })
        .unwrap();
        coderd.clear_log();
        std::thread::sleep(Duration::from_secs(3));
        let calls = coderd.requests().len();
        assert!(calls < 40, "{edition:?}: no hot loop on {reason} ({calls} requests in 3s)");
        assert_eq!(writes(&coderd), Vec::<String>::new(), "{edition:?}: nothing written");
        let refused = coderd.writes().len();
        assert!(refused <= 4, "{edition:?}: refused writes are not hammered ({refused} in 3s)");
        let org = get(api, "coderorganization", &ns, "platform");
        let message = condition(&org, "Ready").unwrap()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("license") || message.contains("open-source"), "{message}");
        drop(running);
    }
}

#[test]
fn deleting_an_organization_with_policy_delete_removes_it_from_coderd() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions { licensed: true, ..FakeOptions::default() });
    let ns = api.namespace("reconcile-delete");
    let setup = full_setup(&ns, &coderd);
    let mut instance: Value = serde_json::from_str(&setup[4]).unwrap();
    instance["spec"].as_object_mut().unwrap().remove("license");
    apply_all(api, &[setup[0].clone(), instance.to_string(), setup[5].clone()]);
    let running = start_loop(api);
    // `kubectl wait` observes the condition through a watch.
    api.kubectl_ok(["wait", "--for=condition=Ready", "coderorganization/platform", "-n", &ns, "--timeout=60s"]);
    let org = get(api, "coderorganization", &ns, "platform");
    assert!(org["metadata"]["finalizers"].to_string().contains("coderd.coder.com/cleanup"));
    api.kubectl_ok(["delete", "coderorganization", "platform", "-n", &ns, "--wait=true", "--timeout=60s"]);
    assert!(!coderd.organizations().iter().any(|o| o["name"] == "platform"), "deleted in coderd");
    drop(running);
}

/// Exactly one coderd object per resource (no duplicate creates).
fn assert_single_objects(coderd: &FakeCoderd) {
    let orgs = coderd.organizations();
    assert_eq!(orgs.iter().filter(|o| o["name"] == "platform").count(), 1, "{orgs:?}");
    assert_eq!(coderd.ai_providers().len(), 2);
    assert_eq!(coderd.provisioner_keys("default").len(), 1);
    assert_eq!(coderd.licenses().len(), 1);
}

/// No secret value in logs, Events, statuses: the AI provider keys, coderd's session token and
/// its secret part, and `provisioner_key`, the plaintext of the test's provisioner key (read
/// from the fake while the loop ran).
fn assert_no_canary(api: &ApiServer, ns: &str, coderd: &FakeCoderd, provisioner_key: &str) {
    let token = coderd.token();
    let (_, token_secret) = token.split_once('-').expect("a coderd session token is <id>-<secret>");
    let canaries = [CANARY_API_KEY, CANARY_ACCESS_KEY, "canary-secretkey-99", &token, token_secret, provisioner_key];
    for canary in canaries {
        assert!(canary.len() >= 16, "{canary:?} is too short to be a canary");
    }
    let logs = logs().text();
    assert!(logs.contains(ns), "the captured logs do not mention namespace {ns}: the capture missed this test's loop");
    let events = api.kubectl_ok(["get", "events", "-n", ns, "-o", "json"]);
    let statuses = api.kubectl_ok([
        "get",
        "coderinstances,coderorganizations,coderaiproviders,coderprovisionerkeys",
        "-n",
        ns,
        "-o",
        "json",
    ]);
    assert!(events.contains("Reconcile") || events.contains("reason"), "Events were published: {events}");
    for canary in canaries {
        for (what, text) in [("logs", &logs), ("events", &events), ("resources", &statuses)] {
            assert!(!text.contains(canary), "{canary} appears in {what}");
        }
    }
    let jwt = FakeCoderd::license_jwt(LICENSE_JTI, &["multiple_organizations", "appearance"]);
    let signature = jwt.rsplit('.').next().unwrap();
    assert!(!logs.contains(&jwt) && !logs.contains(signature), "the license appears in the logs");
}

fn base64_decode(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap()).unwrap()
}
