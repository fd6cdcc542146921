//! Reconcile efficiency: the reconcile loop in-process against the e2e harness's real
//! kube-apiserver and the fake coderd, with N resources (default 1,000).
//!
//! `cargo bench --bench reconcile [-- N]`. Reports, from the fake coderd's request log: requests
//! and writes of the first reconcile and the time until every resource is Ready; requests and
//! writes of one full steady-state resync (target: zero writes); requests and writes after one
//! resource changes (target: only that resource's write). Bounded: every wait has a limit. No
//! assertions: numbers only.

#[path = "../tests/fake_coderd/mod.rs"]
mod fake_coderd;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use coder_guard::reconcile;
use fake_coderd::{FakeCoderd, FakeOptions};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::reconcile_loop::Loop;

const RESYNC: Duration = Duration::from_secs(30);
const CONVERGE_LIMIT: Duration = Duration::from_secs(600);

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000);
    let api = ApiServer::shared();
    let coderd = FakeCoderd::start(FakeOptions { licensed: true, ..FakeOptions::default() });
    let ns = api.namespace("bench-reconcile");
    let (providers, organizations) = (n * 2 / 5, n * 3 / 10);
    let keys = n - 1 - providers - organizations;
    println!(
        "reconcile benchmark: {n} resources (1 CoderInstance, {providers} CoderAIProvider, {organizations} \
         CoderOrganization, {keys} CoderProvisionerKey); resync {RESYNC:?}; {} CPUs",
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    apply(api, &objects(&ns, &coderd, providers, organizations, keys));

    let config = reconcile::Config { resync: RESYNC, identity: "bench".into(), ..reconcile::Config::default() };
    let running = Loop::start(api.kubeconfig(), config);
    let converged = wait_ready(api, &ns, n, CONVERGE_LIMIT);
    let first = summary(&coderd);
    println!("first reconcile: {first}; all {n} Ready after {converged:.1?} (limit {CONVERGE_LIMIT:?})");

    coderd.clear_log();
    std::thread::sleep(RESYNC + RESYNC / 2);
    println!("steady state, one resync ({:?} window): {}", RESYNC + RESYNC / 2, summary(&coderd));

    coderd.clear_log();
    let changed = Instant::now();
    api.kubectl_ok([
        "patch",
        "coderaiprovider",
        "p-0",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"displayName":"changed"}}"#,
    ]);
    let seen = poll(Duration::from_secs(60), || coderd.ai_providers().iter().any(|p| p["display_name"] == "changed"));
    let applied = changed.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    println!("one changed resource: {}; applied after {applied:.1?} (seen: {seen})", summary(&coderd));
    drop(running);
}

/// `requests (writes: METHOD path-kind × count, …)`.
fn summary(coderd: &FakeCoderd) -> String {
    let requests = coderd.requests();
    let mut writes = std::collections::BTreeMap::<String, usize>::new();
    for w in coderd.writes().iter().filter(|w| (200..300).contains(&w.status)) {
        let shape: Vec<&str> =
            w.path.split('/').map(|s| if s.len() > 30 || s.contains('-') { "{id}" } else { s }).collect();
        *writes.entry(format!("{} {}", w.method, shape.join("/"))).or_default() += 1;
    }
    let total: usize = writes.values().sum();
    let list: Vec<String> = writes.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
    format!("{} requests, {total} writes [{}]", requests.len(), list.join(", "))
}

fn objects(ns: &str, coderd: &FakeCoderd, providers: usize, organizations: usize, keys: usize) -> Vec<Value> {
    let secret = |name: &str, data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data});
    let cr = |kind: &str, name: String, spec: Value| {
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": spec})
    };
    let mut objects = vec![
        secret("coderd-token", json!({"token": coderd.token()})),
        secret("openai", json!({"apiKey": "sk-bench"})),
        cr("CoderInstance", "coder".into(), json!({"url": coderd.url(), "tokenSecretRef": {"name": "coderd-token"}})),
    ];
    objects.extend((0..providers).map(|i| {
        cr(
            "CoderAIProvider",
            format!("p-{i}"),
            json!({"instanceRef": {"name": "coder"}, "name": format!("p-{i}"),
            "type": "openai", "baseURL": "https://api.openai.com/v1/", "apiKeySecretRefs": [{"name": "openai"}]}),
        )
    }));
    objects.extend((0..organizations).map(|i| {
        cr("CoderOrganization", format!("org-{i}"), json!({"instanceRef": {"name": "coder"},
            "displayName": format!("Team {i}"), "roleSync": {"field": "roles", "mapping": {"admins": ["organization-admin"]}}}))
    }));
    objects.extend((0..keys).map(|i| {
        cr(
            "CoderProvisionerKey",
            format!("k-{i}"),
            json!({"instanceRef": {"name": "coder"}, "tags": {"pool": format!("{}", i % 4)}}),
        )
    }));
    objects
}

fn apply(api: &ApiServer, objects: &[Value]) {
    for chunk in objects.chunks(200) {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": chunk});
        let out = api.kubectl_stdin(["apply", "-f", "-"], &list.to_string());
        assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Polls every second until all `n` resources are Ready; returns the time taken.
fn wait_ready(api: &ApiServer, ns: &str, n: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    let kinds = "coderinstances,coderaiproviders,coderorganizations,coderprovisionerkeys";
    loop {
        let out = api.kubectl_ok(["get", kinds, "-n", ns, "-o", "json"]);
        let list: Value = serde_json::from_str(&out).unwrap();
        let ready = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                o["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        if ready >= n || started.elapsed() > limit {
            if ready < n {
                println!("only {ready} of {n} Ready within {limit:?}");
            }
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn poll(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
