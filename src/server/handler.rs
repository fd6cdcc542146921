//! `POST /validate` and `POST /mutate`: body → `Review` → evaluation → AdmissionReview.
//!
//! The order of work, and why:
//!
//! 1. **Budget.** The API server appends `?timeout=Ns`; everything below runs against a deadline
//!    at 80 % of it (10 s when absent), so the answer arrives before the API server gives up.
//! 2. **Body.** At most `max_body_bytes` (7 MiB); beyond that, 413. A body a little over the
//!    limit is read and discarded first, so the client reads the 413 instead of a reset.
//! 3. **Slot.** Decoding and evaluation (CPU work) take a permit from a semaphore of
//!    `max_concurrency`; a request that cannot get one within `queue_timeout` gets 503.
//! 4. **Decode.** A body that is not an AdmissionReview gets 400 with a `Status` saying why.
//!    From here on the answer is always HTTP 200 with a review echoing the uid.
//! 5. **Evaluate** inline for ordinary bodies, on the blocking pool for large ones (see
//!    `Execution`), against the deadline. Late: validate denies saying coder-guard ran out of
//!    time; mutate allows unchanged, with a warning.
//! 6. **Confirm.** A deny that rests on objects the cache reported absent is re-checked with
//!    live reads (within the remaining budget) and re-evaluated over them; if the reads fail,
//!    the request is denied with a message that says so and what to do (fail closed).
//!
//! Logs and metrics carry identities (uid, kind, namespace, name), operation, verdict and rule
//! ids: never object contents.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

use super::budget::{Budget, GoDuration};
use super::http::{Rejection, read_body, status_response};
use super::metrics::{ConfirmLabels, FindingLabels, Metrics, RequestLabels};
use super::objects::Objects;
use super::rule_config::SharedEngine;
use crate::admission::{self, Hook, Review, Summary};
use crate::cluster::ConfirmError;
use crate::policy::lookup::Overlay;
use crate::policy::{Engine, Evaluation, FieldPath, Finding, Index, Kind, Lookup, ObjectKey, Request, Severity};

/// Pseudo-rule id of the answer given when the deadline passes.
pub const DEADLINE_RULE: &str = "webhook-deadline";
/// Pseudo-rule id of the deny given when absent references cannot be confirmed.
pub const LOOKUP_RULE: &str = "webhook-lookup";

/// Largest body `Execution::Adaptive` decodes and evaluates inline.
pub const INLINE_MAX_BYTES: usize = 64 * 1024;

/// Where decoding and evaluation run.
///
/// Measured with `cargo bench --bench webhook` (2 vCPUs, TLS keep-alive): decoding and
/// evaluating an ordinary review (a few KiB) takes 15–25 µs, and handing it to the blocking pool
/// costs as much again or more: at one client the blocking pool roughly doubled p50 and halved
/// requests per second, at 4–64 clients it cost 20–50 % of throughput, and it left 2–3 times
/// the RSS after the load (pool threads). A multi-MiB object takes milliseconds to parse and
/// evaluate, which inline would steal from every connection on the same worker thread. Hence
/// the default: inline up to `INLINE_MAX_BYTES`, the blocking pool above.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Execution {
    /// Inline up to `INLINE_MAX_BYTES`, the blocking pool above.
    #[default]
    Adaptive,
    /// Always on Tokio's blocking pool (`spawn_blocking`): the deadline can answer while an
    /// evaluation still runs (the evaluation keeps its concurrency slot until it ends).
    Blocking,
    /// Always on the request's task: cheapest, but the deadline cannot interrupt it.
    Inline,
}

impl Execution {
    /// Whether a body of `len` bytes is handled inline.
    fn inline(self, len: usize) -> bool {
        match self {
            Execution::Adaptive => len <= INLINE_MAX_BYTES,
            Execution::Blocking => false,
            Execution::Inline => true,
        }
    }
}

/// Request-level limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body; larger gets 413.
    pub max_body_bytes: usize,
    /// Requests decoded and evaluated at once.
    pub max_concurrency: usize,
    /// Longest wait for a slot before 503.
    pub queue_timeout: Duration,
    /// Where evaluation runs.
    pub execution: Execution,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 7 * 1024 * 1024,
            max_concurrency: 32,
            queue_timeout: Duration::from_secs(1),
            execution: Execution::Adaptive,
        }
    }
}

/// The webhook router's state.
#[derive(Clone)]
pub struct App {
    pub(super) engine: SharedEngine,
    pub(super) objects: Arc<dyn Objects>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) limits: Limits,
    slots: Arc<Semaphore>,
    /// False in the no-op baseline: decode and answer, but allow without evaluating.
    policy: bool,
}

impl App {
    /// State for `router`.
    pub fn new(engine: SharedEngine, objects: Arc<dyn Objects>, metrics: Arc<Metrics>, limits: Limits) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_concurrency.max(1)));
        Self { engine, objects, metrics, limits, slots, policy: true }
    }

    /// The same state, answering every review with an allow without evaluating (the
    /// benchmark's baseline: same TLS, body handling, decoding and encoding).
    #[must_use]
    pub fn without_policy(mut self) -> Self {
        self.policy = false;
        self
    }
}

pub(super) async fn validate(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    app.handle(Hook::Validate, uri.query(), &headers, body).await
}

pub(super) async fn mutate(State(app): State<App>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    app.handle(Hook::Mutate, uri.query(), &headers, body).await
}

/// Decrements the in-flight gauge when a request ends, however it ends.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn enter(metrics: &Arc<Metrics>) -> Self {
        metrics.in_flight.inc();
        Self(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Why evaluation produced no result.
enum Failed {
    /// The deadline passed first.
    Late,
    /// The evaluation panicked (a bug); answered with 500.
    Panicked,
}

// === impl App ===

impl App {
    async fn handle(&self, hook: Hook, query: Option<&str>, headers: &HeaderMap, body: Body) -> Response {
        let started = Instant::now();
        let budget = Budget::from_query(query);
        let deadline = started + budget.answer_by;
        let _in_flight = InFlight::enter(&self.metrics);
        let answered = async {
            let (review, permit, inline) = self.receive(budget, deadline, headers, body).await?;
            // The request's identity, known once decoded. The span is created with every field:
            // recording fields into an open span re-encodes its fields each time (JSON logs).
            // `object`, not `name`: JSON logs put the span's own name under `name`.
            let span = info_span!(
                "admission",
                webhook = hook.as_str(),
                uid = review.uid(),
                kind = review.kind().kind.as_str(),
                namespace = review.namespace(),
                object = review.name(),
                operation = review.operation().as_str(),
                dry_run = review.dry_run(),
            );
            Ok::<_, Rejection>(self.answer(hook, budget, deadline, review, permit, inline).instrument(span).await)
        };
        match answered.await {
            Ok(response) => response,
            Err(rejection) => {
                let code = match rejection.status {
                    StatusCode::BAD_REQUEST => "400",
                    StatusCode::PAYLOAD_TOO_LARGE => "413",
                    StatusCode::REQUEST_TIMEOUT => "408",
                    StatusCode::SERVICE_UNAVAILABLE => "503",
                    _ => "500",
                };
                self.metrics.reject(hook.as_str(), code);
                let _span = info_span!("admission", webhook = hook.as_str()).entered();
                warn!(status = rejection.status.as_u16(), reason = %rejection.message, "request rejected without a review");
                status_response(rejection.status, &rejection.message)
            }
        }
    }

    /// Body, concurrency slot and decoding: the review, its slot, and whether it runs inline.
    async fn receive(
        &self,
        budget: Budget,
        deadline: Instant,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Review, OwnedSemaphorePermit, bool), Rejection> {
        let bytes = read_body(body, headers, self.limits.max_body_bytes, deadline, budget).await?;
        let wait_until = deadline.min(Instant::now() + self.limits.queue_timeout);
        let permit = match tokio::time::timeout_at(wait_until, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "coder-guard is evaluating {} requests (--max-concurrency) and none finished within {}; retry",
                        self.limits.max_concurrency,
                        GoDuration(self.limits.queue_timeout)
                    ),
                ));
            }
        };
        let inline = self.limits.execution.inline(bytes.len());
        let (review, permit) = self.decode(bytes, inline, permit).await?;
        Ok((review, permit, inline))
    }

    /// Evaluation (or the no-op allow), the answer, its log line and metrics. Runs in the
    /// request's span, so whatever it logs carries the review's identity.
    async fn answer(
        &self,
        hook: Hook,
        budget: Budget,
        deadline: Instant,
        review: Review,
        permit: OwnedSemaphorePermit,
        inline: bool,
    ) -> Response {
        let started = deadline - budget.answer_by;
        let review = Arc::new(review);
        let (eval, verdict) = if self.policy {
            match self.evaluate(hook, &review, inline, permit, deadline).await {
                Ok(eval) => {
                    let verdict = verdict(&eval);
                    (eval, verdict)
                }
                Err(Failed::Late) => (late(hook, budget), "timeout"),
                Err(Failed::Panicked) => {
                    self.metrics.reject(hook.as_str(), "500");
                    error!(status = 500, "evaluation panicked (a bug); answered without a review");
                    return status_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "coder-guard failed while evaluating this request (a bug; please report it)",
                    );
                }
            }
        } else {
            drop(permit);
            (Evaluation::default(), "allowed")
        };

        let body = admission::respond(&review, hook, &eval);
        let elapsed = started.elapsed();
        self.record(hook, &review, &eval, verdict, elapsed);
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    /// Decodes inline or on the blocking pool.
    async fn decode(
        &self,
        bytes: Bytes,
        inline: bool,
        permit: OwnedSemaphorePermit,
    ) -> Result<(Review, OwnedSemaphorePermit), Rejection> {
        let decoded = if !inline {
            tokio::task::spawn_blocking(move || admission::decode(&bytes)).await.map_err(|_| {
                self.metrics.panics.inc();
                Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "coder-guard failed while decoding this request")
            })?
        } else {
            admission::decode(&bytes)
        };
        decoded.map(|review| (review, permit)).map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.to_string()))
    }

    /// Evaluates, then confirms absent references of a deny and re-evaluates over them.
    async fn evaluate(
        &self,
        hook: Hook,
        review: &Arc<Review>,
        inline: bool,
        permit: OwnedSemaphorePermit,
        deadline: Instant,
    ) -> Result<Evaluation, Failed> {
        let (eval, permit) = self.run(hook, review, None, inline, permit, deadline).await?;
        if eval.allowed() || eval.absent.is_empty() {
            return Ok(eval);
        }
        let keys = eval.absent.clone();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let confirmed = match tokio::time::timeout_at(deadline, self.objects.confirm(keys.clone(), remaining)).await {
            Ok(result) => result,
            Err(_) => Err(ConfirmError::Timeout { count: keys.len(), timeout: remaining }),
        };
        match confirmed {
            Ok(fresh) => {
                let (again, _permit) =
                    self.run(hook, review, Some((Arc::new(fresh), keys)), inline, permit, deadline).await?;
                let outcome = if again.allowed() { "found" } else { "confirmed-absent" };
                self.metrics.confirmations.get_or_create(&ConfirmLabels { outcome }).inc();
                Ok(again)
            }
            Err(e) => {
                self.metrics.confirmations.get_or_create(&ConfirmLabels { outcome: "error" }).inc();
                warn!(error = %e, "cannot confirm absent references; denying");
                Ok(unconfirmed(eval, &keys, &e))
            }
        }
    }

    /// One evaluation under the deadline, over `fresh` (confirmed keys) when given. The permit
    /// travels with the work, so an evaluation that outlives its deadline still holds its slot.
    async fn run(
        &self,
        hook: Hook,
        review: &Arc<Review>,
        fresh: Option<(Arc<Index>, Vec<ObjectKey>)>,
        inline: bool,
        permit: OwnedSemaphorePermit,
        deadline: Instant,
    ) -> Result<(Evaluation, OwnedSemaphorePermit), Failed> {
        let engine = self.engine.load_full();
        let objects = self.objects.clone();
        let review = review.clone();
        let work = move || {
            let eval = evaluate(&engine, &*objects, hook, &review, fresh.as_ref().map(|(i, k)| (&**i, &k[..])));
            (eval, permit)
        };
        if inline {
            // Not preemptible; a result that arrives late is still better than a timeout answer.
            return Ok(work());
        }
        match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(work)).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(join)) => {
                if join.is_panic() {
                    self.metrics.panics.inc();
                }
                Err(Failed::Panicked)
            }
            Err(_) => Err(Failed::Late),
        }
    }

    /// Logs the request and records its metrics.
    fn record(&self, hook: Hook, review: &Review, eval: &Evaluation, verdict: &'static str, elapsed: Duration) {
        let kind = known_kind(review);
        let labels = RequestLabels {
            webhook: hook.as_str(),
            kind,
            operation: review.operation().as_str(),
            verdict,
            dry_run: if review.dry_run() { "true" } else { "false" },
        };
        self.metrics.observe_request(labels, elapsed);
        for f in &eval.findings {
            let severity = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            self.metrics.findings.get_or_create(&FindingLabels { rule: f.rule, severity }).inc();
        }
        let summary = Summary::new(review, hook, eval);
        info!(
            verdict,
            rules = %summary.rules.join(","),
            warnings = summary.warnings,
            patch_operations = summary.patch_operations,
            duration_us = elapsed.as_micros() as u64,
            "admission review answered"
        );
    }
}

/// The request's kind if the engine knows it (a bounded label), else `other`.
fn known_kind(review: &Review) -> &'static str {
    let gvk = review.kind();
    Kind::from_type(&gvk.api_version(), &gvk.kind).map_or("other", Kind::name)
}

fn verdict(eval: &Evaluation) -> &'static str {
    if !eval.allowed() {
        "denied"
    } else if eval.findings.iter().any(|f| f.severity == Severity::Warning) {
        "warned"
    } else {
        "allowed"
    }
}

/// Runs the engine for `hook` over the objects (and `fresh` for confirmed keys).
fn evaluate(
    engine: &Engine,
    objects: &dyn Objects,
    hook: Hook,
    review: &Review,
    fresh: Option<(&Index, &[ObjectKey])>,
) -> Evaluation {
    let request = review.request();
    let mut out = None;
    objects.with_lookup(&mut |base: &dyn Lookup| {
        out = Some(match fresh {
            Some((index, keys)) => {
                let overlay = Overlay::new(index, keys.iter().cloned(), base);
                run_engine(engine, hook, &request, &overlay)
            }
            None => run_engine(engine, hook, &request, base),
        });
    });
    out.unwrap_or_default()
}

fn run_engine(engine: &Engine, hook: Hook, request: &Request<'_>, lookup: &dyn Lookup) -> Evaluation {
    match hook {
        Hook::Validate => engine.evaluate(request, lookup),
        Hook::Mutate => engine.mutate(request, lookup),
    }
}

/// The answer when the deadline passed: validate denies (the API server would otherwise apply
/// its failurePolicy with a vaguer message), mutate admits the object unchanged.
fn late(hook: Hook, budget: Budget) -> Evaluation {
    let (severity, message) = match hook {
        Hook::Validate => (
            Severity::Error,
            format!(
                "coder-guard ran out of time: it answers within 80% of the API server's {} timeout and could not \
                 evaluate this request in {}; retry, and if it persists check coder-guard's CPU limits and logs",
                GoDuration(budget.timeout),
                GoDuration(budget.answer_by)
            ),
        ),
        Hook::Mutate => (
            Severity::Warning,
            format!(
                "coder-guard ran out of time ({} of the {} timeout) and admitted this object without its mutations; \
                 re-apply it to get them",
                GoDuration(budget.answer_by),
                GoDuration(budget.timeout)
            ),
        ),
    };
    Evaluation {
        findings: vec![Finding { rule: DEADLINE_RULE, path: FieldPath::root(), message, severity }],
        ..Evaluation::default()
    }
}

/// A deny whose absent references could not be confirmed: kept, with a finding that says why
/// coder-guard is not sure and what to do.
fn unconfirmed(mut eval: Evaluation, keys: &[ObjectKey], error: &ConfirmError) -> Evaluation {
    let listed = keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    eval.findings.push(Finding {
        rule: LOOKUP_RULE,
        path: FieldPath::root(),
        message: format!(
            "coder-guard's cache says {listed} does not exist, and a live read to confirm it failed ({error}); the \
             request is denied to be safe. Retry; if it persists, check coder-guard's access to the API server"
        ),
        severity: Severity::Error,
    });
    eval
}
