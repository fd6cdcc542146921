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

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::text;
use support::webhook::{CoderGuard, RESOURCES_HOOK};

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

// === Phases ===

/// The live `coder-guard` webhook configurations (as the harness registered them from
/// `coder-guard manifests webhooks --url … --ca-bundle-file …`), without server-set metadata.
fn saved_webhook_configurations(api: &ApiServer) -> Value {
    let out = api.kubectl_ok([
        "get",
        "validatingwebhookconfiguration/coder-guard",
        "mutatingwebhookconfiguration/coder-guard",
        "-o",
        "json",
    ]);
    let mut list: Value = serde_json::from_str(&out).expect("kubectl get -o json");
    for item in list["items"].as_array_mut().into_iter().flatten() {
        let meta = &item["metadata"];
        item["metadata"] = json!({"name": meta["name"], "labels": meta["labels"]});
    }
    list
}

/// `webhooks` renamed [`NO_OP_CONFIGURATION`], every `clientConfig.url` moved from `url` to
/// `no_op_url` (same path, same `caBundle`: the no-op server serves the same certificate).
fn no_op_configurations(webhooks: &Value, url: &str, no_op_url: &str) -> Result<Value, String> {
    let mut list = webhooks.clone();
    for item in list["items"].as_array_mut().into_iter().flatten() {
        item["metadata"]["name"] = json!(NO_OP_CONFIGURATION);
        for hook in item["webhooks"].as_array_mut().into_iter().flatten() {
            let target = &mut hook["clientConfig"]["url"];
            let path = target
                .as_str()
                .and_then(|u| u.strip_prefix(url))
                .ok_or_else(|| format!("a coder-guard webhook's clientConfig.url is {target}, not under {url}"))?;
            *target = json!(format!("{no_op_url}{path}"));
        }
    }
    Ok(list)
}

/// One ValidatingAdmissionPolicy (and binding) per kind: the subset of coder-guard's rules on
/// these kinds that CEL can express.
fn cel_policies() -> Value {
    let not_system = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                  "values": ["kube-system", "coder-guard"]}]});
    let policy = |name: &str, group: &str, resource: &str, validations: Vec<(&str, &str)>, variables: Value| {
        let validations: Vec<Value> = validations
            .into_iter()
            .map(|(expression, why)| {
                json!({"expression": expression, "message": format!("{CEL_MESSAGE}: {why}"), "reason": "Invalid"})
            })
            .collect();
        let (key, value) = POLICY_LABEL.split_once('=').unwrap();
        let labels = json!({key: value});
        [
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "namespaceSelector": not_system,
                        "resourceRules": [{"apiGroups": [group], "apiVersions": ["v1alpha1"],
                                           "operations": ["CREATE", "UPDATE"], "resources": [resource]}],
                    },
                    "variables": variables,
                    "validations": validations,
                },
            }),
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": name, "labels": labels},
                "spec": {"policyName": name, "validationActions": ["Deny"],
                         "matchResources": {"namespaceSelector": not_system}},
            }),
        ]
    };
    let mut items = Vec::new();
    items.extend(policy(
        "bench-provisioner-keys",
        "coderd.coder.com",
        "coderprovisionerkeys",
        vec![
            (
                "bytes(variables.name).size() >= 1 && bytes(variables.name).size() <= 64",
                "provisioner key name 1-64 bytes",
            ),
            ("!(variables.name.lowerAscii() in ['built-in', 'user-auth', 'psk'])", "reserved provisioner key name"),
            (
                "object.spec.organization == 'default' || (object.spec.organization.size() <= 32 && \
                 !(object.spec.organization in ['new', 'create']) && \
                 object.spec.organization.matches('^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$'))",
                "organization reference is not a valid coderd name",
            ),
        ],
        json!([{"name": "name",
                "expression": "has(object.spec.name) ? object.spec.name : object.metadata.name"}]),
    ));
    items.extend(policy(
        "bench-ai-providers",
        "coderd.coder.com",
        "coderaiproviders",
        vec![
            ("object.spec.name.matches('^[a-z0-9]+(-[a-z0-9]+)*$')", "AI provider name"),
            (
                "!has(object.spec.bedrock) || !has(object.spec.bedrock.roleARN) || object.spec.bedrock.roleARN == '' \
                 || object.spec.bedrock.roleARN.matches(\
                 '^arn:aws[a-z-]*:iam::[0-9]{12}:role/(?:[A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]+$')",
                "bedrock roleARN",
            ),
            (
                "!has(object.spec.bedrock) || object.spec.type in ['anthropic', 'bedrock']",
                "bedrock settings only with type anthropic or bedrock",
            ),
            (
                "object.spec.type != 'bedrock' || (has(object.spec.bedrock) && object.spec.bedrock.region.trim() != '')",
                "type bedrock requires a region",
            ),
            (
                "!has(object.spec.apiKeySecretRefs) || (object.spec.apiKeySecretRefs.size() <= 5 && \
                 (object.spec.apiKeySecretRefs.size() == 0 || !(object.spec.type in ['bedrock', 'copilot'])))",
                "API keys: at most 5, none for bedrock or copilot",
            ),
        ],
        json!([]),
    ));
    items.extend(policy(
        "bench-organizations",
        "coderd.coder.com",
        "coderorganizations",
        vec![
            ("variables.name.size() >= 1 && variables.name.size() <= 32", "organization name 1-32 bytes"),
            ("!(variables.name in ['new', 'create', 'default'])", "reserved organization name"),
            ("variables.name.matches('^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$')", "organization name characters"),
            (
                "!has(object.spec.displayName) || (bytes(object.spec.displayName).size() <= 64 && \
                 object.spec.displayName.trim() == object.spec.displayName)",
                "display name",
            ),
        ],
        json!([{"name": "name",
                "expression": "has(object.spec.name) ? object.spec.name : object.metadata.name"}]),
    ));
    items.extend(policy(
        "bench-control-planes",
        "coder.com",
        "codercontrolplanes",
        vec![
            (
                "object.metadata.name.size() <= 63 && object.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "control plane name is not a DNS-1035 label",
            ),
            (
                "!has(object.spec.extraEnv) || object.spec.extraEnv.all(e, e.name != 'CODER_ACCESS_URL' || \
                 !has(e.value) || e.value.matches('^https?://[^/?#]+'))",
                "CODER_ACCESS_URL is not an absolute http(s) URL",
            ),
        ],
        json!([]),
    ));
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// Makes `phase` the admission in force: removes every mechanism, waits until a probe the
/// rules deny is admitted without calling the no-op server, installs the phase's mechanism and
/// waits until it denies the probe ((b), (c)) or the no-op server answers it ((d)).
async fn switch(api: &ApiServer, client: &kube::Client, ns: &str, phase: Phase, m: &Mechanisms) -> Result<(), String> {
    let (api, ns_owned) = (api, ns.to_owned());
    let kubectl = |args: Vec<String>, input: Option<String>| {
        let out = match &input {
            Some(input) => api.kubectl_stdin(&args, input),
            None => api.kubectl(&args),
        };
        if out.status.success() { Ok(()) } else { Err(format!("kubectl {args:?}: {}", text(&out.stderr))) }
    };
    let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    kubectl(
        args(&format!(
            "delete validatingwebhookconfiguration/coder-guard mutatingwebhookconfiguration/coder-guard \
             validatingwebhookconfiguration/{NO_OP_CONFIGURATION} mutatingwebhookconfiguration/{NO_OP_CONFIGURATION} \
             --ignore-not-found"
        )),
        None,
    )?;
    kubectl(
        args(&format!("delete validatingadmissionpolicybinding,validatingadmissionpolicy -l {POLICY_LABEL}")),
        None,
    )?;
    wait_probe(client, &ns_owned, None).await?;
    wait_no_op(client, &ns_owned, m, false).await?;
    match phase {
        Phase::None => Ok(()),
        Phase::Cel => {
            kubectl(args("apply -f -"), Some(m.policies.to_string()))?;
            wait_probe(client, &ns_owned, Some(CEL_MESSAGE)).await
        }
        Phase::Webhook => {
            kubectl(args("apply -f -"), Some(m.webhooks.to_string()))?;
            let denied = format!("admission webhook \"{RESOURCES_HOOK}\" denied the request");
            wait_probe(client, &ns_owned, Some(&denied)).await
        }
        Phase::NoOp => {
            kubectl(args("apply -f -"), Some(m.no_op_webhooks.to_string()))?;
            wait_no_op(client, &ns_owned, m, true).await
        }
    }
}

/// Polls a dry-run create of a provisioner key for organization `new` (the CRD allows it,
/// coderd reserves the name; both (b) and (c) deny it) until it is
/// admitted (`denial` `None`) or denied with a message containing `denial`.
async fn wait_probe(client: &kube::Client, ns: &str, denial: Option<&str>) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < SWITCH_LIMIT {
        let outcome = send_probe(client, ns).await;
        match (&outcome, denial) {
            (Ok(_), None) => return Ok(()),
            (Err(e), Some(want)) if e.to_string().contains(want) => return Ok(()),
            (Ok(_), Some(_)) => last = "admitted".into(),
            (Err(e), _) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the probe did not reach {denial:?} within {SWITCH_LIMIT:?}; last: {last}"))
}

/// Polls the probe of [`wait_probe`] until it is admitted and the no-op server's count of
/// answered provisioner-key reviews went up across it (`called`) or stayed put (`!called`).
/// The server counts a review before answering it, so before the API server answers the probe.
async fn wait_no_op(client: &kube::Client, ns: &str, m: &Mechanisms, called: bool) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < SWITCH_LIMIT {
        let before = no_op_reviews(m).await;
        let outcome = send_probe(client, ns).await;
        let after = no_op_reviews(m).await;
        match (before, outcome, after) {
            (Ok(b), Ok(_), Ok(a)) if (a > b) == called => return Ok(()),
            (Ok(_), Ok(_), Ok(_)) if called => last = "admitted without calling the no-op server".into(),
            (Ok(_), Ok(_), Ok(_)) => last = "admitted, still calling the no-op server".into(),
            (_, Err(e), _) => last = e.to_string(),
            (Err(e), _, _) | (_, _, Err(e)) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let want = if called { "be answered by" } else { "stop calling" };
    Err(format!("the probe did not {want} the no-op server within {SWITCH_LIMIT:?}; last: {last}"))
}

/// The dry-run create of [`wait_probe`].
async fn send_probe(client: &kube::Client, ns: &str) -> kube::Result<DynamicObject> {
    let keys = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource(Kind::Key));
    let probe = object(ns, Kind::Key, "probe", json!({"instanceRef": {"name": "coder"}, "organization": "new"}));
    keys.create(&PostParams { dry_run: true, ..PostParams::default() }, &probe).await
}

/// The no-op server's count of answered CoderProvisionerKey reviews, from its `/metrics`.
async fn no_op_reviews(m: &Mechanisms) -> Result<u64, String> {
    let url = &m.no_op_metrics;
    let response = m.http.get(url).send().await.and_then(reqwest::Response::error_for_status);
    let text = response.map_err(|e| format!("GET {url}: {e}"))?.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with(REVIEWS_COUNT) && line.contains(r#"kind="CoderProvisionerKey""#))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum())
}

// === Load ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Organization,
    AiProvider,
    Key,
    ControlPlane,
}

const KINDS: [Kind; 4] = [Kind::Organization, Kind::AiProvider, Kind::Key, Kind::ControlPlane];

fn resource(kind: Kind) -> ApiResource {
    let (group, kind_name, plural) = match kind {
        Kind::Organization => ("coderd.coder.com", "CoderOrganization", "coderorganizations"),
        Kind::AiProvider => ("coderd.coder.com", "CoderAIProvider", "coderaiproviders"),
        Kind::Key => ("coderd.coder.com", "CoderProvisionerKey", "coderprovisionerkeys"),
        Kind::ControlPlane => ("coder.com", "CoderControlPlane", "codercontrolplanes"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1alpha1", kind_name), plural)
}

fn object(ns: &str, kind: Kind, name: &str, spec: Value) -> DynamicObject {
    let ar = resource(kind);
    let value = json!({"apiVersion": ar.api_version, "kind": ar.kind,
                       "metadata": {"name": name, "namespace": ns}, "spec": spec});
    serde_json::from_value(value).expect("a DynamicObject")
}

/// A valid spec of `kind`: immutable fields from `ident`, the others varied by `i`.
fn spec(kind: Kind, ident: usize, i: usize) -> Value {
    let instance = json!({"name": "coder"});
    match kind {
        Kind::Organization => json!({"instanceRef": instance, "name": format!("team-{ident}"),
                                     "displayName": format!("Team {i}"),
                                     "roleSync": {"field": "roles", "mapping": {"admins": ["organization-admin"]}}}),
        Kind::AiProvider if ident.is_multiple_of(2) => {
            json!({"instanceRef": instance, "name": format!("openai-{ident}"),
            "type": "openai", "displayName": format!("OpenAI {i}"), "baseURL": "https://api.openai.com/v1/",
            "apiKeySecretRefs": [{"name": "openai"}]})
        }
        Kind::AiProvider => json!({"instanceRef": instance, "name": format!("bedrock-{ident}"),
            "type": "bedrock", "displayName": format!("Bedrock {i}"),
            "baseURL": "https://bedrock-runtime.us-east-1.amazonaws.com",
            "bedrock": {"region": "us-east-1", "roleARN": "arn:aws:iam::123456789012:role/coder/Bedrock"}}),
        Kind::Key => json!({"instanceRef": instance, "organization": "default",
                            "tags": {"pool": format!("{}", i % 4)}}),
        Kind::ControlPlane => json!({"image": "ghcr.io/coder/coder:v2.34.0", "extraEnv": [
            {"name": "CODER_ACCESS_URL", "value": format!("https://coder-{}.example.com", i % 97)}]}),
    }
}

fn name(kind: Kind, prefix: &str, i: usize) -> String {
    let k = match kind {
        Kind::Organization => "org",
        Kind::AiProvider => "provider",
        Kind::Key => "key",
        Kind::ControlPlane => "coder",
    };
    format!("{k}-{prefix}-{i}")
}

/// The Secrets, the CoderInstance, and [`BASES`] stored objects of each kind for updates.
fn setup(api: &ApiServer, ns: &str) {
    let secret = |name: &str, data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data});
    let mut items = vec![
        secret("coder-token", json!({"token": "bench-token-0123456789abcdef"})),
        secret("openai", json!({"apiKey": "sk-bench-0123456789abcdef"})),
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderInstance",
               "metadata": {"name": "coder", "namespace": ns},
               "spec": {"url": "https://127.0.0.1:9", "tokenSecretRef": {"name": "coder-token"}}}),
    ];
    for kind in KINDS {
        for i in 0..BASES {
            let o = object(ns, kind, &name(kind, "base", i), spec(kind, i, i));
            items.push(serde_json::to_value(o).unwrap());
        }
    }
    let out = api
        .kubectl_stdin(["apply", "-f", "-"], &json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string());
    if !out.status.success() {
        println!(
            "setup: kubectl apply failed (requests to missing objects will count as errors):\n{}",
            text(&out.stderr)
        );
    }
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("the harness kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("a kube config");
    kube::Client::try_from(config).expect("a kube client")
}

/// One request of the mix: request `i` is kind `i % 4`, a dry-run create of a new object on
/// even `i / 4`, else a dry-run server-side apply (update) of a stored base object.
async fn request(client: &kube::Client, ns: &str, i: usize) -> Result<(), String> {
    let kind = KINDS[i % 4];
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource(kind));
    let call = async {
        if (i / 4).is_multiple_of(2) {
            let o = object(ns, kind, &name(kind, "new", i % 512), spec(kind, BASES + i % 89, i));
            api.create(&PostParams { dry_run: true, ..PostParams::default() }, &o).await.map(drop)
        } else {
            let base = (i / 8) % BASES;
            let o = object(ns, kind, &name(kind, "base", base), spec(kind, base, i));
            let params = PatchParams::apply("bench").force().dry_run();
            api.patch(&name(kind, "base", base), &params, &Patch::Apply(&o)).await.map(drop)
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// [`WARMUP`] unmeasured requests, then `count` measured ones, [`CONCURRENCY`] in flight;
/// continues the mix at `*next`.
async fn run_slice(client: &kube::Client, ns: &str, next: &mut usize, count: usize) -> Results {
    let started = Instant::now();
    let mut out = Results::default();
    for (n, measured) in [(WARMUP, false), (count, true)] {
        let first = *next;
        *next += n;
        let timed = futures::stream::iter(first..first + n)
            .take_while(|_| std::future::ready(started.elapsed() < SLICE_LIMIT))
            .map(|i| async move {
                let sent = Instant::now();
                let outcome = request(client, ns, i).await;
                (sent.elapsed(), outcome)
            })
            .buffer_unordered(CONCURRENCY);
        let began = Instant::now();
        let all: Vec<(Duration, Result<(), String>)> = timed.collect().await;
        if !measured {
            continue;
        }
        out.busy = began.elapsed();
        for (latency, outcome) in all {
            match outcome {
                Ok(()) => out.latencies.push(latency),
                Err(e) => {
                    out.errors += 1;
                    if out.first_errors.len() < 3 {
                        out.first_errors.push(e);
                    }
                }
            }
        }
    }
    out
}

// === Report ===

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(results: &[Results]) {
    println!();
    println!("| phase | measured | errors | p50 | p99 | max | throughput |");
    println!("|---|---|---|---|---|---|---|");
    let mut stats = Vec::new();
    for (phase, r) in Phase::ALL.iter().zip(results) {
        let mut sorted = r.latencies.clone();
        sorted.sort();
        let (p50, p99) = (percentile(&sorted, 0.50), percentile(&sorted, 0.99));
        let max = sorted.last().copied().unwrap_or_default();
        let throughput = if r.busy.is_zero() { 0.0 } else { sorted.len() as f64 / r.busy.as_secs_f64() };
        println!(
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} req/s |",
            phase.label(),
            sorted.len(),
            r.errors,
            ms(p50),
            ms(p99),
            ms(max),
            throughput
        );
        for e in &r.first_errors {
            println!("  error in {}: {e}", phase.label());
        }
        stats.push((p50, p99));
    }
    let ratio = |x: Duration, y: Duration| if y.is_zero() { f64::NAN } else { x.as_secs_f64() / y.as_secs_f64() };
    let [(a50, a99), (b50, b99), (c50, c99), (d50, d99)] = [stats[0], stats[1], stats[2], stats[3]];
    println!();
    println!("(c)/(a): p50 {:.2}, p99 {:.2}", ratio(c50, a50), ratio(c99, a99));
    println!("(c)/(b): p50 {:.2}, p99 {:.2}", ratio(c50, b50), ratio(c99, b99));
    println!(
        "(d)/(a): p50 {:.2}, p99 {:.2} (the API server calling a webhook at all)",
        ratio(d50, a50),
        ratio(d99, a99)
    );
    println!("(c)/(d): p50 {:.2}, p99 {:.2} (coder-guard's own work)", ratio(c50, d50), ratio(c99, d99));
    let added = |x: Duration, y: Duration| ms(x) - ms(y);
    println!(
        "added over (a): calling a webhook p50 {:+.2} ms, p99 {:+.2} ms; coder-guard's own work p50 {:+.2} ms, p99 {:+.2} ms",
        added(d50, a50),
        added(d99, a99),
        added(c50, d50),
        added(c99, d99)
    );
    let verdict = |value: f64, target: f64| if value <= target { "met" } else { "missed" };
    println!(
        "target (c)/(a) p99 <= 1.10: {} ({:.2}); target (c)/(b) p99 <= 1.05: {} ({:.2})",
        verdict(ratio(c99, a99), 1.10),
        ratio(c99, a99),
        verdict(ratio(c99, b99), 1.05),
        ratio(c99, b99)
    );
}
