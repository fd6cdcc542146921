//! AdmissionReviews through the real HTTPS server: deny, warn, allow, mutate, the validating
//! hook never patching, and the `?timeout=` budget.

mod server_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use coder_guard::cluster::ConfirmError;
use coder_guard::policy::{Index, Kind, Lookup, ObjectKey};
use coder_guard::server::{Execution, Limits, Objects};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use server_support::{Options, TestServer, allow_review, deny_review, mutate_review, warn_review};

#[tokio::test]
async fn deny_is_403_forbidden_with_causes_and_the_uid() {
    let server = TestServer::start(Options::default()).await;
    let client = server.client();
    let response = server.review(&client, "/validate", &deny_review("deny-1")).await;
    assert_eq!(response["allowed"], false);
    let status = &response["status"];
    assert_eq!((status["code"].as_u64(), status["reason"].as_str()), (Some(403), Some("Forbidden")));
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("[provisioner-key-name] spec.key.name:"), "{message}");
    assert!(message.contains("[provisioner-key-conflicts] spec.extraEnv[0].name:"), "{message}");
    let fields: Vec<&str> =
        status["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["spec.key.name", "spec.extraEnv[0].name"]);
    assert!(response.get("patch").is_none() && response.get("patchType").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn warn_allows_with_warnings() {
    let server = TestServer::start(Options::default()).await;
    let client = server.client();
    let response = server.review(&client, "/validate", &warn_review("warn-1")).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("status").is_none(), "{response}");
    let warnings = response["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{response}");
    assert!(warnings[0].as_str().unwrap().starts_with("[control-plane-ref] spec.controlPlaneRef.name:"), "{response}");
    server.shutdown().await;
}

#[tokio::test]
async fn allow_is_minimal() {
    let server = TestServer::start(Options::default()).await;
    let client = server.client();
    let response = server.review(&client, "/validate", &allow_review("allow-1")).await;
    assert_eq!(response, json!({"uid": "allow-1", "allowed": true}));
    server.shutdown().await;
}

#[tokio::test]
async fn mutate_sends_a_base64_json_patch_and_validate_never_does() {
    let server = TestServer::start(Options::default()).await;
    let client = server.client();
    let review = mutate_review("mutate-1");
    let response = server.review(&client, "/mutate", &review).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().unwrap()).unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    let paths: Vec<&str> = patch.as_array().unwrap().iter().map(|op| op["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/spec/template/spec/containers/0/env/-", "/spec/template/metadata/annotations"]);
    assert_eq!(patch[0]["value"]["name"], "CODER_PROVISIONER_DAEMON_KEY");
    let checksum = patch[1]["value"]["checksum/provisioner-key"].as_str().unwrap();
    assert!(checksum.starts_with("sha256:") && checksum.len() == 7 + 64, "{checksum}");

    // The same object through the validating hook: allowed, never a patch.
    let validated = server.review(&client, "/validate", &review).await;
    assert_eq!(validated["allowed"], true);
    assert!(validated.get("patch").is_none() && validated.get("patchType").is_none(), "{validated}");

    // The patched object mutated again: nothing left to change, so no patch and no patchType.
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    let mut again = review.clone();
    again["request"]["uid"] = json!("mutate-2");
    json_patch::patch(&mut again["request"]["object"], &patch).unwrap();
    let unchanged = server.review(&client, "/mutate", &again).await;
    assert_eq!(unchanged, json!({"uid": "mutate-2", "allowed": true}));

    // The mutating hook does not run validation rules: a denied object passes it unchanged.
    let unvalidated = server.review(&client, "/mutate", &deny_review("mutate-3")).await;
    assert_eq!(unvalidated, json!({"uid": "mutate-3", "allowed": true}));
    server.shutdown().await;
}

/// Lookups (or live reads) that take a while: they outlive any short budget.
struct Slow {
    index: Index,
    lookup_delay: Duration,
    confirm_delay: Duration,
}

impl Objects for Slow {
    fn with_lookup(&self, f: &mut dyn FnMut(&dyn Lookup)) {
        std::thread::sleep(self.lookup_delay);
        f(&self.index);
    }

    fn synced(&self) -> bool {
        true
    }

    fn sync_state(&self) -> Vec<(Kind, bool)> {
        Vec::new()
    }

    fn confirm(&self, _keys: Vec<ObjectKey>, _timeout: Duration) -> BoxFuture<'_, Result<Index, ConfirmError>> {
        let delay = self.confirm_delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(Index::new(true))
        })
    }
}

#[tokio::test]
async fn the_timeout_query_bounds_a_slow_evaluation() {
    let slow =
        Slow { index: server_support::objects(), lookup_delay: Duration::from_secs(2), confirm_delay: Duration::ZERO };
    // Evaluation on the blocking pool, so the deadline can answer while it still runs.
    let limits = Limits { execution: Execution::Blocking, ..Limits::default() };
    let server = TestServer::start(Options { objects: Arc::new(slow), limits, ..Options::default() }).await;
    let client = server.client();

    // Validate: answered by 80% of 1s with a deny that says why.
    let started = Instant::now();
    let (status, answer) =
        server.post(&client, "/validate?timeout=1s", serde_json::to_vec(&allow_review("late-1")).unwrap()).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert!(took >= Duration::from_millis(750) && took < Duration::from_millis(1000), "answered after {took:?}");
    let response = &answer["response"];
    assert_eq!((response["uid"].as_str(), response["allowed"].as_bool()), (Some("late-1"), Some(false)));
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("[webhook-deadline] <object>: coder-guard ran out of time"), "{message}");
    assert!(message.contains("1s timeout"), "{message}");

    // Mutate: allowed unchanged, with a warning.
    let started = Instant::now();
    let (status, answer) =
        server.post(&client, "/mutate?timeout=1s", serde_json::to_vec(&mutate_review("late-2")).unwrap()).await;
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(status, 200);
    let response = &answer["response"];
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response["warnings"][0].as_str().unwrap().contains("ran out of time"), "{response}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_timeout_query_bounds_a_slow_confirmation() {
    // An authoritative cache without the referenced Secret, and live reads slower than the budget.
    let slow = Slow { index: Index::new(true), lookup_delay: Duration::ZERO, confirm_delay: Duration::from_secs(5) };
    let server = TestServer::start(Options { objects: Arc::new(slow), ..Options::default() }).await;
    let client = server.client();
    let started = Instant::now();
    let (status, answer) =
        server.post(&client, "/validate?timeout=2s", serde_json::to_vec(&allow_review("late-3")).unwrap()).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_millis(2000), "answered after {took:?}");
    let response = &answer["response"];
    assert_eq!(response["allowed"], false, "fail closed: {response}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("[secret-ref]") && message.contains("[webhook-lookup]"), "{message}");
    assert!(message.contains("did not finish within"), "{message}");
    server.shutdown().await;
}
