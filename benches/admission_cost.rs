//! Cost of admission through a real API server: server-side dry-run creates and updates of
//! CoderOrganization, CoderAIProvider, CoderProvisionerKey and CoderControlPlane sent through
//! the e2e harness's kube-apiserver with kube-rs, at a fixed concurrency, in four phases:
//!
//! - (a) no admission: coder-guard's webhook configurations removed;
//! - (b) an in-tree `ValidatingAdmissionPolicy` per kind with the rules CEL can express;
//! - (c) coder-guard's webhooks registered (the real binary, as in `tests/e2e_webhook.rs`);
//! - (d) a no-op webhook on the same stack: a second process of the same binary with
//!   `serve --no-op-policy` (same TLS, HTTP, body limits, decoding, encoding, logging and
//!   metrics; allows every review without evaluating), registered with configurations equal to
//!   coder-guard's (rules, matchConditions, failurePolicy, timeouts, `caBundle`) but for their
//!   names and URLs. (d)/(a) is what the API server pays to call a webhook at all; (c)/(d) is
//!   coder-guard's own share (evaluation, lookups, patches).
//!
//! `cargo bench --bench admission_cost [-- N]` (N measured requests per phase, default 4,000).
//! The phases run interleaved in slices (a, b, c, d, d, c, b, a, …) so background noise hits
//! them alike; each slice starts with a warm-up. Every request object is valid (its Secrets and
//! instance exist), so nothing should be denied; errors are counted and printed. Bounded by
//! count and time; loopback only; no assertions: numbers only.

#[path = "admission_cost/load.rs"]
mod load;
#[path = "admission_cost/phases.rs"]
mod phases;
#[path = "admission_cost/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::text;
use support::webhook::{CoderGuard, RESOURCES_HOOK};

use load::*;
use phases::*;
use report::*;

/// Requests in flight.
const CONCURRENCY: usize = 4;
/// Interleaved rounds of (a, b, c, d), every other one reversed.
const ROUNDS: usize = 8;
/// Warm-up requests at the start of every slice (not measured).
const WARMUP: usize = 100;
/// Upper bound for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for one slice (warm-up included); a slice stops early when it is reached.
const SLICE_LIMIT: Duration = Duration::from_secs(180);
/// Upper bound for a phase switch to take effect in the API server.
const SWITCH_LIMIT: Duration = Duration::from_secs(60);
/// Base objects per kind that updates apply to.
const BASES: usize = 8;
/// Label on the bench's admission policies and bindings.
const POLICY_LABEL: &str = "coder-guard-bench=admission-cost";
const CEL_MESSAGE: &str = "denied by the coder-guard-bench CEL policy";
/// Name of the no-op server's Validating- and MutatingWebhookConfiguration.
const NO_OP_CONFIGURATION: &str = "coder-guard-bench-no-op";
/// Upper bound for one `GET /metrics` on the no-op server's admin port.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);
/// The no-op server's histogram count of answered reviews (one line per label set).
const REVIEWS_COUNT: &str = "coder_guard_admission_request_duration_seconds_count{";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    None,
    Cel,
    Webhook,
    NoOp,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::None, Phase::Cel, Phase::Webhook, Phase::NoOp];
    fn label(self) -> &'static str {
        match self {
            Phase::None => "(a) no admission webhook",
            Phase::Cel => "(b) ValidatingAdmissionPolicy (CEL)",
            Phase::Webhook => "(c) coder-guard webhook",
            Phase::NoOp => "(d) no-op webhook (--no-op-policy)",
        }
    }
}

/// What the phases install, and how to tell the no-op server is called.
struct Mechanisms {
    /// coder-guard's configurations as the harness registered them.
    webhooks: Value,
    /// The same, named [`NO_OP_CONFIGURATION`], calling the no-op server.
    no_op_webhooks: Value,
    /// The CEL policies and bindings.
    policies: Value,
    /// The no-op server's `/metrics`.
    no_op_metrics: String,
    http: reqwest::Client,
}

#[derive(Default)]
struct Results {
    latencies: Vec<Duration>,
    busy: Duration,
    errors: usize,
    first_errors: Vec<String>,
}

fn main() {
    let per_phase: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(4_000);
    let per_slice = per_phase.div_ceil(ROUNDS);
    let Some(cg) = CoderGuard::shared_or_skip() else {
        println!("admission_cost: no kube-apiserver here (see SKIP above); nothing measured");
        return;
    };
    let api = cg.api();
    let no_op = match cg.start_no_op() {
        Ok(no_op) => no_op,
        Err(e) => {
            println!("admission_cost: cannot start the no-op coder-guard: {e}; nothing measured");
            return;
        }
    };
    println!(
        "admission cost benchmark: {per_slice} measured requests per slice, {ROUNDS} rounds of (a, b, c, d) alternating with (d, c, b, a), \
         {WARMUP} warm-up requests per slice, {CONCURRENCY} in flight; {} CPUs shared by the load, \
         kube-apiserver, etcd and both coder-guard processes (coder-guard {}, no-op {}, log {})",
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        cg.url(),
        no_op.url(),
        no_op.log_path().display()
    );

    let webhooks = saved_webhook_configurations(api);
    let no_op_webhooks = match no_op_configurations(&webhooks, &cg.url(), &no_op.url()) {
        Ok(configurations) => configurations,
        Err(e) => {
            println!("admission_cost: {e}; nothing measured");
            return;
        }
    };
    let ns = api.namespace("bench-admission");
    setup(api, &ns);
    let http = reqwest::Client::builder().no_proxy().timeout(METRICS_TIMEOUT).build().expect("an HTTP client");
    let mechanisms = Mechanisms {
        webhooks,
        no_op_webhooks,
        policies: cel_policies(),
        no_op_metrics: format!("{}/metrics", no_op.admin_url()),
        http,
    };

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let client = runtime.block_on(client(api.kubeconfig()));

    let mut results: Vec<Results> = Phase::ALL.iter().map(|_| Results::default()).collect();
    let mut next = 0usize;
    let mut switch_times = Vec::new();
    'rounds: for round in 0..ROUNDS {
        // Forward in even rounds, backward in odd ones, so periodic background work (Go GC in
        // kube-apiserver, say) cannot line up with one phase's slot.
        let mut order: Vec<(usize, Phase)> = Phase::ALL.into_iter().enumerate().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (p, phase) in order {
            let switched = Instant::now();
            if let Err(e) = runtime.block_on(switch(api, &client, &ns, phase, &mechanisms)) {
                println!("cannot switch to {}: {e}; stopping", phase.label());
                break 'rounds;
            }
            switch_times.push(switched.elapsed());
            let slice = runtime.block_on(run_slice(&client, &ns, &mut next, per_slice));
            println!(
                "round {} {}: {} measured in {:.1?}, {} errors",
                round + 1,
                phase.label(),
                slice.latencies.len(),
                slice.busy,
                slice.errors
            );
            let r = &mut results[p];
            r.latencies.extend(slice.latencies);
            r.busy += slice.busy;
            r.errors += slice.errors;
            r.first_errors.extend(slice.first_errors.into_iter().take(3usize.saturating_sub(r.first_errors.len())));
        }
    }
    // Leave the cluster as the harness registered it: coder-guard's webhooks, no policy.
    if let Err(e) = runtime.block_on(switch(api, &client, &ns, Phase::Webhook, &mechanisms)) {
        println!("cannot restore coder-guard's webhooks: {e}");
    }
    let slowest = switch_times.iter().max().copied().unwrap_or_default();
    println!("phase switches: {} (slowest {slowest:.1?}, limit {SWITCH_LIMIT:?})", switch_times.len());

    report(&results);
    drop(no_op);
    drop(cg);
}
