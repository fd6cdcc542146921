//! The load: the objects created and updated through the API server, in slices.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Organization,
    AiProvider,
    Key,
    ControlPlane,
}

pub const KINDS: [Kind; 4] = [Kind::Organization, Kind::AiProvider, Kind::Key, Kind::ControlPlane];

pub fn resource(kind: Kind) -> ApiResource {
    let (group, kind_name, plural) = match kind {
        Kind::Organization => ("coderd.coder.com", "CoderOrganization", "coderorganizations"),
        Kind::AiProvider => ("coderd.coder.com", "CoderAIProvider", "coderaiproviders"),
        Kind::Key => ("coderd.coder.com", "CoderProvisionerKey", "coderprovisionerkeys"),
        Kind::ControlPlane => ("coder.com", "CoderControlPlane", "codercontrolplanes"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1alpha1", kind_name), plural)
}

pub fn object(ns: &str, kind: Kind, name: &str, spec: Value) -> DynamicObject {
    let ar = resource(kind);
    let value = json!({"apiVersion": ar.api_version, "kind": ar.kind,
                       "metadata": {"name": name, "namespace": ns}, "spec": spec});
    serde_json::from_value(value).expect("a DynamicObject")
}

/// A valid spec of `kind`: immutable fields from `ident`, the others varied by `i`.
pub fn spec(kind: Kind, ident: usize, i: usize) -> Value {
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

pub fn name(kind: Kind, prefix: &str, i: usize) -> String {
    let k = match kind {
        Kind::Organization => "org",
        Kind::AiProvider => "provider",
        Kind::Key => "key",
        Kind::ControlPlane => "coder",
    };
    format!("{k}-{prefix}-{i}")
}

/// The Secrets, the CoderInstance, and [`BASES`] stored objects of each kind for updates.
pub fn setup(api: &ApiServer, ns: &str) {
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

pub async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("the harness kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("a kube config");
    kube::Client::try_from(config).expect("a kube client")
}

/// One request of the mix: request `i` is kind `i % 4`, a dry-run create of a new object on
/// even `i / 4`, else a dry-run server-side apply (update) of a stored base object.
pub async fn request(client: &kube::Client, ns: &str, i: usize) -> Result<(), String> {
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
pub async fn run_slice(client: &kube::Client, ns: &str, next: &mut usize, count: usize) -> Results {
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
