//! AdmissionReviews as kube-apiserver sends them. The example reviews' objects are created
//! through the e2e harness's real kube-apiserver, whose webhook configurations call a TLS
//! server in this process that keeps each body and allows. What comes back is the object after
//! defaulting, with `managedFields`, `uid`, `creationTimestamp` and the request fields that
//! kube-apiserver fills in (`userInfo` with groups, `options`, `requestKind`, ...).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use base64::Engine as _;
use coder_guard::certs::{self, Source};
use coder_guard::server::{ConnectionLimits, signal, tls};
use serde_json::{Value, json};

use crate::support::apiserver::ApiServer;

/// Longest wait for one review to arrive.
const WAIT: Duration = Duration::from_secs(30);
/// Namespace of the example objects (the benchmark index's objects live there too).
const NAMESPACE: &str = "coder";
/// Name of the capturing webhook configurations.
const CONFIGURATION: &str = "coder-guard-bench-capture";

/// Bodies received, by (hook, object name).
type Received = Arc<Mutex<HashMap<(String, String), Vec<u8>>>>;

/// For each `(hook, example review)`, the body kube-apiserver sends to `hook` when it creates
/// the example's object. Err says why not (no harness here, or a step that failed).
pub fn reviews(runtime: &tokio::runtime::Runtime, examples: &[(&str, &[u8])]) -> Result<Vec<Vec<u8>>, String> {
    let api = ApiServer::shared_or_skip().ok_or("no kube-apiserver here (see SKIP above)")?;
    let received = Received::default();
    let (stop, watch) = signal::signal();
    let (addr, ca) = runtime.block_on(async {
        let cert = certs::start(Source::SelfSigned {
            dns_names: vec!["127.0.0.1".into()],
            validity: certs::DEFAULT_LEAF_VALIDITY,
            renew_before: certs::DEFAULT_RENEW_BEFORE,
        })
        .await
        .map_err(|e| format!("capture certificate: {e}"))?;
        let ca = cert.ca_bundle().ok_or("the self-signed certificate has no CA bundle")?;
        let config = tls::server_config(cert.resolver()).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("capture listener: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Router::new().route("/{hook}", post(keep)).with_state(received.clone());
        tokio::spawn(async move {
            let _renewing = cert;
            tls::serve(listener, config, app, ConnectionLimits::default(), watch).await;
        });
        Ok::<_, String>((addr, ca))
    })?;
    let result = capture(api, &received, addr, &ca, examples);
    api.kubectl([
        "delete",
        "--ignore-not-found",
        "validatingwebhookconfiguration,mutatingwebhookconfiguration",
        CONFIGURATION,
    ]);
    stop.fire();
    result
}

fn capture(
    api: &ApiServer,
    received: &Received,
    addr: SocketAddr,
    ca: &[u8],
    examples: &[(&str, &[u8])],
) -> Result<Vec<Vec<u8>>, String> {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let hook = |name: &str| {
        json!({
            "name": format!("{name}.capture.coder-guard.bench"),
            "clientConfig": {"url": format!("https://{addr}/{name}"), "caBundle": bundle},
            "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["deployments"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
        })
    };
    let configurations = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": CONFIGURATION}, "webhooks": [hook("validate")]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": CONFIGURATION}, "webhooks": [hook("mutate")]},
    ]});
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    applied(&api.apply(&namespace.to_string()))?;
    applied(&api.apply(&configurations.to_string()))?;
    let mut out = Vec::new();
    for (hook, example) in examples {
        let review: Value = serde_json::from_slice(example).map_err(|e| format!("example review: {e}"))?;
        let object = &review["request"]["object"];
        let name = object["metadata"]["name"].as_str().ok_or("example object without a name")?.to_owned();
        let key = ((*hook).to_owned(), name.clone());
        // Configurations take effect in the API server shortly after they are stored: retry the
        // create (deleting what an uncalled attempt created) until the hook has been called.
        let deadline = Instant::now() + WAIT;
        loop {
            api.kubectl(["delete", "deployment", "-n", NAMESPACE, &name, "--ignore-not-found", "--wait=false"]);
            let created = api.kubectl_stdin(["create", "-f", "-"], &object.to_string());
            if let Some(body) = received.lock().unwrap().remove(&key) {
                out.push(body);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver did not call the capturing {hook} hook for {NAMESPACE}/{name} within {WAIT:?}; \
last create: {}; its log is in {}",
                    text(&created),
                    api.log_dir().display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        api.kubectl(["delete", "deployment", "-n", NAMESPACE, &name, "--ignore-not-found", "--wait=false"]);
    }
    Ok(out)
}

/// Ok when kubectl succeeded, else its stderr.
fn applied(out: &std::process::Output) -> Result<(), String> {
    if out.status.success() { Ok(()) } else { Err(text(out)) }
}

/// Stdout of a kubectl run that succeeded, else its stderr.
fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(if out.status.success() { &out.stdout } else { &out.stderr }).trim().to_owned()
}

async fn keep(State(received): State<Received>, Path(hook): Path<String>, body: Bytes) -> axum::Json<Value> {
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let request = &review["request"];
    let name = request["name"].as_str().unwrap_or_default().to_owned();
    received.lock().unwrap().insert((hook, name), body.to_vec());
    axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": request["uid"], "allowed": true}}))
}
