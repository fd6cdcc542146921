//! `cluster` against a real kube-apiserver: the watch-fed cache follows creates and deletes,
//! `confirm` reads what the cache has not seen, leader election on a Lease, and caBundle
//! patching of webhook configurations.
//!
//! Skipped (with `SKIP: …` on stderr) where Go is not installed, unless `CI=true`.

mod support;

use std::time::{Duration, Instant};

use coder_guard::cluster::{CaBundleError, CaBundlePatched, Cache, ConfirmError, Leadership, LeaseParams};
use coder_guard::policy::lookup::KeyState;
use coder_guard::policy::{Found, Kind, Lookup, ObjectKey};
use support::apiserver::ApiServer;

/// Upper bound for anything the cache or the election should notice.
const NOTICE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn client(rt: &tokio::runtime::Runtime, api: &ApiServer) -> kube::Client {
    rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(api.kubeconfig()).unwrap();
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
        kube::Client::try_from(config).unwrap()
    })
}

/// Polls `done` every 50 ms until it holds; panics after `timeout`.
fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn instance(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderInstance\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec: {{url: 'https://coder.example.com', tokenSecretRef: {{name: creds}}}}\n"
    )
}

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey { kind, namespace: namespace.into(), name: name.into() }
}

#[test]
fn the_cache_follows_creates_and_deletes() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let ns = api.namespace("cluster-cache");
    let rt = runtime();
    let client = client(&rt, api);
    let cache = {
        let _in_runtime = rt.enter();
        Cache::start(client, Some(vec![ns.clone()]))
    };
    rt.block_on(async { tokio::time::timeout(NOTICE, cache.wait_synced()).await }).expect("cache synced in time");
    assert!(cache.synced());
    assert!(cache.sync_state().iter().all(|(_, synced)| *synced), "{:?}", cache.sync_state());
    assert_eq!(cache.lookup().secret(&ns, "creds"), Found::Absent);

    // `kubectl apply` copies the value into the last-applied-configuration annotation too.
    let value = "s3cr3t-value-e2e";
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {ns}}}\nstringData: {{token: {value}}}\n"
    );
    let out = api.apply(&format!("{secret}---\n{}", instance(&ns, "main")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    eventually("the Secret in the cache", NOTICE, || matches!(cache.lookup().secret(&ns, "creds"), Found::Present(_)));
    let Found::Present(info) = cache.lookup().secret(&ns, "creds") else { unreachable!() };
    assert_eq!(info.key("token"), KeyState::Present);
    assert_eq!(info.key("other"), KeyState::Missing);
    let debug = format!("{:?}", *cache.lookup());
    assert!(!debug.contains(value), "the cache holds a Secret value");
    eventually("the CoderInstance in the cache", NOTICE, || {
        matches!(cache.lookup().object(Kind::CoderInstance, &ns, "main"), Found::Present(_))
    });
    let Found::Present(main) = cache.lookup().object(Kind::CoderInstance, &ns, "main") else { unreachable!() };
    let main: serde_json::Value = serde_json::from_str(&main).expect("stored as JSON text");
    assert_eq!(main["spec"]["url"], "https://coder.example.com");

    // Objects in other namespaces are not watched.
    let other = api.namespace("cluster-cache-other");
    api.kubectl_ok(["-n", &other, "create", "secret", "generic", "creds", "--from-literal=token=x"]);

    api.kubectl_ok(["-n", &ns, "delete", "secret", "creds"]);
    api.kubectl_ok(["-n", &ns, "delete", "coderinstance", "main"]);
    eventually("the Secret gone from the cache", NOTICE, || cache.lookup().secret(&ns, "creds") == Found::Absent);
    eventually("the CoderInstance gone from the cache", NOTICE, || {
        cache.lookup().object(Kind::CoderInstance, &ns, "main") == Found::Absent
    });
    assert_eq!(cache.lookup().secret(&other, "creds"), Found::Absent, "another namespace leaked into the cache");
    drop(cache);
}

#[test]
fn confirm_reads_what_the_cache_has_not_seen() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let watched = api.namespace("confirm-watched");
    let ns = api.namespace("confirm");
    let rt = runtime();
    let client = client(&rt, api);
    let cache = {
        let _in_runtime = rt.enter();
        Cache::start(client, Some(vec![watched]))
    };
    rt.block_on(async { tokio::time::timeout(NOTICE, cache.wait_synced()).await }).expect("cache synced in time");

    // Created after the cache synced, in a namespace it does not watch.
    api.kubectl_ok(["-n", &ns, "create", "secret", "generic", "creds", "--from-literal=token=t"]);
    let out = api.apply(&instance(&ns, "main"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cache.lookup().secret(&ns, "creds"), Found::Absent, "fixture: the cache cannot know it");

    let keys = vec![
        key(Kind::Secret, &ns, "creds"),
        key(Kind::CoderInstance, &ns, "main"),
        key(Kind::CoderControlPlane, &ns, "missing"),
        key(Kind::CoderProvisionerKey, &ns, "missing"),
    ];
    let fresh = rt.block_on(cache.confirm(keys, Duration::from_secs(10))).expect("live reads");
    let Found::Present(creds) = fresh.secret(&ns, "creds") else { panic!("the Secret was read") };
    assert_eq!(creds.key("token"), KeyState::Present);
    assert!(matches!(fresh.object(Kind::CoderInstance, &ns, "main"), Found::Present(_)));
    assert_eq!(fresh.object(Kind::CoderControlPlane, &ns, "missing"), Found::Absent);
    assert_eq!(fresh.object(Kind::CoderProvisionerKey, &ns, "missing"), Found::Absent);

    let unsupported = rt.block_on(cache.confirm(vec![key(Kind::Deployment, &ns, "d")], Duration::from_secs(10)));
    assert!(matches!(unsupported, Err(ConfirmError::Unsupported { kind: Kind::Deployment })), "{unsupported:?}");
}

#[test]
fn one_leader_per_lease_and_takeover_after_release() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let ns = api.namespace("leader");
    let rt = runtime();
    let client = client(&rt, api);
    let params = |identity: &str| LeaseParams {
        duration: Duration::from_secs(3),
        ..LeaseParams::new(ns.clone(), "coder-guard", identity)
    };
    let (a, b) = {
        let _in_runtime = rt.enter();
        (Leadership::start(client.clone(), params("a")).unwrap(), Leadership::start(client, params("b")).unwrap())
    };
    eventually("a leader", NOTICE, || a.is_leader() || b.is_leader());
    // Over two Lease durations, never two leaders and never a change of leader.
    let first_is_a = a.is_leader();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        assert_eq!((a.is_leader(), b.is_leader()), (first_is_a, !first_is_a), "exactly one stable leader");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (leader, follower, leader_id, follower_id) = if first_is_a { (a, b, "a", "b") } else { (b, a, "b", "a") };
    let holder = || api.kubectl_ok(["-n", &ns, "get", "lease", "coder-guard", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(holder(), leader_id);

    let mut was_leading = leader.subscribe();
    rt.block_on(async { tokio::time::timeout(NOTICE, leader.shutdown()).await }).expect("shutdown in time").unwrap();
    assert!(!*was_leading.borrow_and_update(), "the leader stepped down");
    // Released, not expired: the follower takes over within a retry interval, not a Lease
    // duration after the last renewal (allowing for a slow machine).
    eventually("the follower to take over", Duration::from_secs(10), || follower.is_leader());
    assert_eq!(holder(), follower_id);
    rt.block_on(async { tokio::time::timeout(NOTICE, follower.shutdown()).await }).expect("shutdown in time").unwrap();
    assert_eq!(holder(), "", "released on shutdown");
}

fn pem(name: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

fn webhook_configs(name: &str, current: &str, stale: &str) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (current, stale) = (b64(current), b64(stale));
    // Matches a resource that does not exist, so the API server never calls these.
    let webhook = |hook: &str, bundle: &str| {
        format!(
            "- name: {hook}.coder-guard.test\n  admissionReviewVersions: [v1]\n  sideEffects: None\n  \
             failurePolicy: Ignore\n  clientConfig: {{url: 'https://127.0.0.1:1/{hook}', caBundle: {bundle}}}\n  \
             rules: [{{apiGroups: [example.invalid], apiVersions: [v1], resources: [nothings], operations: [CREATE]}}]\n"
        )
    };
    let mut out = String::new();
    for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        out.push_str(&format!(
            "---\napiVersion: admissionregistration.k8s.io/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nwebhooks:\n{}{}",
            webhook("current", &current),
            webhook("stale", &stale)
        ));
    }
    out
}

#[test]
fn ca_bundle_patch_sets_only_differing_bundles() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    // Webhook configurations are cluster-scoped: name them after a namespace of this test.
    let name = api.namespace("ca-bundle");
    let (new, old) = (pem("new"), pem("old"));
    let out = api.apply(&webhook_configs(&name, &new, &old));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rt = runtime();
    let client = client(&rt, api);

    let patched = rt.block_on(coder_guard::cluster::patch_ca_bundle(&client, &name, &name, new.as_bytes())).unwrap();
    assert_eq!(patched, CaBundlePatched { validating: 1, mutating: 1 });
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        let bundles = api.kubectl_ok([
            "get",
            kind,
            &name,
            "-o",
            r#"jsonpath={range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}"#,
        ]);
        use base64::Engine as _;
        let want = base64::engine::general_purpose::STANDARD.encode(&new);
        assert_eq!(bundles.lines().collect::<Vec<_>>(), [want.as_str(), want.as_str()], "{kind}");
        let url = api.kubectl_ok(["get", kind, &name, "-o", "jsonpath={.webhooks[1].clientConfig.url}"]);
        assert_eq!(url, "https://127.0.0.1:1/stale", "the rest of the webhook is untouched");
    }
    let again = rt.block_on(coder_guard::cluster::patch_ca_bundle(&client, &name, &name, new.as_bytes())).unwrap();
    assert_eq!(again, CaBundlePatched::default(), "nothing to do when every bundle matches");

    let missing = rt.block_on(coder_guard::cluster::patch_ca_bundle(&client, "no-such-config", "", new.as_bytes()));
    assert!(matches!(missing, Err(CaBundleError::NotFound { .. })), "{missing:?}");
    api.kubectl_ok(["delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", &name]);
}
