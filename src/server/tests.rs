//! The webhook router in-process (`tower::ServiceExt::oneshot`): limits, panics, overload, and
//! the confirmation of absent references. TLS and the binary are tested in `tests/server_*.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::handler::{App, Execution, Limits};
use super::metrics::Metrics;
use super::objects::Objects;
use super::router;
use super::rule_config::{SharedEngine, engine};
use crate::cluster::ConfirmError;
use crate::policy::{Index, Kind, Lookup, ObjectKey, RuleConfig};

fn example(name: &str, uid: &str) -> Value {
    let path = format!("{}/examples/admission/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut review: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    review["request"]["uid"] = json!(uid);
    review
}

fn shared_engine() -> SharedEngine {
    Arc::new(ArcSwap::from_pointee(engine(RuleConfig::default())))
}

fn app(objects: Arc<dyn Objects>, limits: Limits) -> (App, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (App::new(shared_engine(), objects, metrics.clone(), limits), metrics)
}

async fn call(app: &App, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = HttpRequest::post(path).header("content-type", "application/json").body(body.into()).unwrap();
    let response = router(app.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// A configurable stand-in for the cluster cache.
#[derive(Default)]
struct Fake {
    /// What lookups answer (authoritative: a miss is absent).
    index: Index,
    /// What a live read finds (`None`: the read fails).
    found: Option<Vec<Value>>,
    /// Panic inside the lookup.
    panic: bool,
    /// Block lookups until this is released.
    gate: Option<Arc<Mutex<()>>>,
    confirms: AtomicUsize,
}

impl Objects for Fake {
    fn with_lookup(&self, f: &mut dyn FnMut(&dyn Lookup)) {
        if self.panic {
            panic!("lookup exploded");
        }
        let _held = self.gate.as_ref().map(|g| g.lock().unwrap());
        f(&self.index);
    }

    fn synced(&self) -> bool {
        true
    }

    fn sync_state(&self) -> Vec<(Kind, bool)> {
        Vec::new()
    }

    fn confirm(&self, keys: Vec<ObjectKey>, _timeout: Duration) -> BoxFuture<'_, Result<Index, ConfirmError>> {
        self.confirms.fetch_add(1, Ordering::SeqCst);
        let result = match &self.found {
            Some(objects) => {
                let mut index = Index::new(true);
                objects.iter().for_each(|o| index.insert(o, "default"));
                Ok(index)
            }
            None => Err(ConfirmError::Read {
                key: keys[0].clone(),
                code: Some(403),
                reason: "secrets \"x\" is forbidden".into(),
            }),
        };
        Box::pin(async move { result })
    }
}

fn authoritative() -> Index {
    Index::new(true)
}

#[tokio::test]
async fn non_reviews_get_400_and_unknown_paths_404() {
    let (app, metrics) = app(Arc::new(Index::new(false)), Limits::default());
    let (status, body) = call(&app, "/validate", "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("BadRequest")));
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"), "{body}");
    let (status, _) = call(&app, "/elsewhere", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        metrics.encode().contains(r#"coder_guard_admission_rejected_requests_total{webhook="validate",code="400"} 1"#)
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let limits = Limits { max_body_bytes: 1024, ..Limits::default() };
    let (app, _) = app(Arc::new(Index::new(false)), limits);
    let mut review = example("allow-provisioner-deployment.json", "big");
    review["request"]["object"]["metadata"]["annotations"] = json!({"pad": "x".repeat(1500)});
    let (status, body) = call(&app, "/validate", bytes(&review)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // Far over the limit: refused from Content-Length alone.
    let request = HttpRequest::post("/validate").header("content-length", "999999").body(Body::from("{}")).unwrap();
    assert_eq!(router(app).oneshot(request).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_panic_is_a_500_with_a_json_body_and_counted() {
    for execution in [Execution::Blocking, Execution::Inline] {
        let fake = Fake { panic: true, ..Fake::default() };
        let (app, metrics) = app(Arc::new(fake), Limits { execution, ..Limits::default() });
        let (status, body) = call(&app, "/validate", bytes(&example("deny-provisioner.json", "p"))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{execution:?}");
        assert_eq!(body["code"], 500, "{execution:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("a bug"), "{body}");
        assert!(metrics.encode().contains("coder_guard_admission_panics_total 1"), "{execution:?}");
        assert_eq!(metrics.in_flight.get(), 0, "the in-flight gauge is restored after a panic");
    }
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_on_the_blocking_pool_is_logged_with_the_review_identity() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _default = tracing::subscriber::set_default(subscriber);
    // Other tests of this process may have cached "no interest" for these callsites.
    tracing::callsite::rebuild_interest_cache();
    let fake = Fake { panic: true, ..Fake::default() };
    let (app, metrics) = app(Arc::new(fake), Limits { execution: Execution::Blocking, ..Limits::default() });
    let (status, _) = call(&app, "/validate", bytes(&example("deny-provisioner.json", "uid-of-the-panic"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs.lines().find(|l| l.contains("evaluation panicked")).unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains(r#"uid="uid-of-the-panic""#) && line.contains(r#"webhook="validate""#), "{line}");
    assert!(!logs.contains("rejected without a review"), "one line, not a second without the uid: {logs}");
    let rejections = metrics.encode();
    assert!(rejections.contains(r#"webhook="validate",code="500""#), "{rejections}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock, reason = "the held lock is the point: it keeps the only slot busy")]
async fn excess_requests_get_503_quickly() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let fake = Fake { index: Index::new(false), gate: Some(gate.clone()), ..Fake::default() };
    let limits = Limits { max_concurrency: 1, queue_timeout: Duration::from_millis(100), ..Limits::default() };
    let (app, _) = app(Arc::new(fake), limits);
    let first = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "/validate", bytes(&example("deny-provisioner.json", "a"))).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let (status, body) = call(&app, "/validate", bytes(&example("deny-provisioner.json", "b"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(body["message"].as_str().unwrap().contains("--max-concurrency"), "{body}");
    drop(held);
    let (status, body) = first.await.unwrap();
    assert_eq!((status, body["response"]["uid"].as_str()), (StatusCode::OK, Some("a")));
}

#[tokio::test]
async fn a_deny_on_a_stale_cache_miss_is_confirmed_and_lifted() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "gpu-builds-provisioner-key", "namespace": "coder"}, "data": {"key": "a2V5"}});
    let fake = Arc::new(Fake { index: authoritative(), found: Some(vec![secret]), ..Fake::default() });
    let (app, metrics) = app(fake.clone(), Limits::default());
    let (status, body) = call(&app, "/validate", bytes(&example("allow-provisioner-deployment.json", "c"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true, "{body}");
    assert_eq!(fake.confirms.load(Ordering::SeqCst), 1);
    assert!(metrics.encode().contains(r#"coder_guard_admission_confirmations_total{outcome="found"} 1"#));
}

#[tokio::test]
async fn a_confirmed_absence_still_denies() {
    let fake = Arc::new(Fake { index: authoritative(), found: Some(Vec::new()), ..Fake::default() });
    let (app, metrics) = app(fake.clone(), Limits::default());
    let (_, body) = call(&app, "/validate", bytes(&example("allow-provisioner-deployment.json", "d"))).await;
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("[secret-ref]"), "{message}");
    assert!(metrics.encode().contains(r#"coder_guard_admission_confirmations_total{outcome="confirmed-absent"} 1"#));
}

#[tokio::test]
async fn a_failed_confirmation_fails_closed_and_says_why() {
    let fake = Arc::new(Fake { index: authoritative(), found: None, ..Fake::default() });
    let (app, _) = app(fake, Limits::default());
    let (status, body) = call(&app, "/validate", bytes(&example("allow-provisioner-deployment.json", "e"))).await;
    assert_eq!(status, StatusCode::OK);
    let response = &body["response"];
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("[webhook-lookup]"), "{message}");
    assert!(message.contains("Secret coder/gpu-builds-provisioner-key"), "{message}");
    assert!(message.contains("forbidden"), "{message}");
    assert!(message.contains("check coder-guard's access to the API server"), "{message}");
}

#[tokio::test]
async fn the_no_op_router_allows_without_evaluating() {
    let (app, _) = app(Arc::new(Fake { panic: true, ..Fake::default() }), Limits::default());
    let app = app.without_policy();
    let (status, body) = call(&app, "/validate", bytes(&example("deny-provisioner.json", "n"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"], json!({"uid": "n", "allowed": true}));
}
