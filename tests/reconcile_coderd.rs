//! The reconcile loop, in-process, against the real kube-apiserver (CRs, Secrets, status,
//! Events) and the fake coderd (request log, faults). Tests take turns: each runs its own loop,
//! which watches every namespace.

#[path = "reconcile_coderd/conditions.rs"]
mod conditions;
mod fake_coderd;
mod support;
#[path = "reconcile_coderd/writes.rs"]
mod writes;

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
