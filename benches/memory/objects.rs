//! The objects the memory benchmark fills the cluster with, and their creation through kube-rs.
//!
//! Secrets are a realistic mix (Opaque with 1–4 keys, TLS pairs, registry credentials, a few
//! applied by kubectl and so carrying their values again in `last-applied-configuration`), values
//! 100 B – 2 KiB. Coder objects are every kind the cache watches, valid against the rules (their
//! references exist, no two claim the same coderd object) and reconcilable against one fake
//! coderd (globally unique coderd names, instances pointing at it, no deployment-wide state).
//! Each namespace is one tenant: one control plane, one instance, and its share of the rest.
//!
//! The sentinels are one object of each watched kind, created after everything else: a watch
//! delivers events in resourceVersion order, so once a sentinel is in coder-guard's cache, every
//! object of its kind created before it is too.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

/// Requests in flight while filling.
pub const CONCURRENCY: usize = 16;
/// Upper bound for one create (retries included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per object (429, 5xx, timeouts).
const ATTEMPTS: usize = 4;
/// The sentinels' name (and prefix of their coderd names).
pub const SENTINEL: &str = "sentinel";

/// One object to create.
pub struct Item {
    pub kind: Kind,
    pub namespace: String,
    pub body: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Secret,
    ControlPlane,
    Provisioner,
    Instance,
    Organization,
    AiProvider,
    ProvisionerKey,
}

impl Kind {
    /// The Coder kinds, in creation order (referenced kinds first).
    pub const CODER: [Kind; 6] = [
        Kind::ControlPlane,
        Kind::Instance,
        Kind::Provisioner,
        Kind::Organization,
        Kind::AiProvider,
        Kind::ProvisionerKey,
    ];

    pub fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::Secret => ("", "v1", "Secret", "secrets"),
            Kind::ControlPlane => ("coder.com", "v1alpha1", "CoderControlPlane", "codercontrolplanes"),
            Kind::Provisioner => ("coder.com", "v1alpha1", "CoderProvisioner", "coderprovisioners"),
            Kind::Instance => ("coderd.coder.com", "v1alpha1", "CoderInstance", "coderinstances"),
            Kind::Organization => ("coderd.coder.com", "v1alpha1", "CoderOrganization", "coderorganizations"),
            Kind::AiProvider => ("coderd.coder.com", "v1alpha1", "CoderAIProvider", "coderaiproviders"),
            Kind::ProvisionerKey => ("coderd.coder.com", "v1alpha1", "CoderProvisionerKey", "coderprovisionerkeys"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ControlPlane => "CoderControlPlane",
            Kind::Provisioner => "CoderProvisioner",
            Kind::Instance => "CoderInstance",
            Kind::Organization => "CoderOrganization",
            Kind::AiProvider => "CoderAIProvider",
            Kind::ProvisionerKey => "CoderProvisionerKey",
        }
    }

    /// Whether coder-guard's reconcile loop manages (and marks `Ready`) objects of this kind.
    pub fn reconciled(self) -> bool {
        matches!(self, Kind::Instance | Kind::Organization | Kind::AiProvider | Kind::ProvisionerKey)
    }
}

/// How many objects of each Coder kind one namespace holds.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    control_planes: usize,
    instances: usize,
    provisioners: usize,
    organizations: usize,
    ai_providers: usize,
    keys: usize,
}

/// `total` split over `parts`: part `i`'s share.
fn share(total: usize, parts: usize, i: usize) -> usize {
    total / parts + usize::from(i < total % parts)
}

/// The per-kind totals of `coder` Coder objects over `parts` namespaces, sentinels excluded (one
/// per kind): each namespace is one tenant with one control plane and one instance (its coderd);
/// of the rest, 25 % provisioners, 25 % organizations, 15 % AI providers and 35 % provisioner
/// keys.
fn kind_totals(coder: usize, parts: usize) -> Counts {
    let rest = coder.saturating_sub(Kind::CODER.len() + 2 * parts);
    let provisioners = rest / 4;
    let organizations = rest / 4;
    let ai_providers = rest * 3 / 20;
    let keys = rest - provisioners - organizations - ai_providers;
    Counts { control_planes: parts, instances: parts, provisioners, organizations, ai_providers, keys }
}

/// The fill: `secrets` Secrets and `coder` Coder objects (both counts include the sentinels)
/// over `namespaces`, for instances pointing at `coderd_url` with `token`. Secrets a Coder
/// object references are part of the count. Returned in creation order: Secrets, then the Coder
/// kinds, referenced kinds first.
pub fn fill(namespaces: &[String], secrets: usize, coder: usize, coderd_url: &str, token: &str) -> Vec<Item> {
    let parts = namespaces.len();
    let totals = kind_totals(coder, parts);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut secret_items = Vec::new();
    let mut coder_items = Vec::new();
    for (j, ns) in namespaces.iter().enumerate() {
        let c = Counts {
            control_planes: share(totals.control_planes, parts, j),
            instances: share(totals.instances, parts, j),
            provisioners: share(totals.provisioners, parts, j),
            organizations: share(totals.organizations, parts, j),
            ai_providers: share(totals.ai_providers, parts, j),
            keys: share(totals.keys, parts, j),
        };
        let mut referenced = Vec::new();
        for i in 0..c.instances {
            referenced.push(secret(ns, &format!("coder-token-{i}"), json!({"token": token}), &[], None));
        }
        for i in 0..c.control_planes {
            let url = format!("postgres://coder:{}@postgres.{ns}.svc:5432/coder-{i}?sslmode=require", rng.text(24));
            referenced.push(secret(ns, &format!("coder-db-{i}"), json!({"url": url}), &[], None));
        }
        for i in (0..c.ai_providers).filter(|i| ai_type(*i) != "bedrock") {
            referenced.push(secret(ns, &format!("ai-key-{i}"), json!({"apiKey": rng.text(48 + i % 120)}), &[], None));
        }
        let own = share(secrets.saturating_sub(1), parts, j);
        for k in 0..own.saturating_sub(referenced.len()) {
            secret_items.push(mixed_secret(ns, k, &mut rng));
        }
        secret_items.extend(referenced.into_iter().map(|body| Item {
            kind: Kind::Secret,
            namespace: ns.clone(),
            body,
        }));
        coder_items.extend(coder_objects(ns, j, c, coderd_url, &mut rng));
    }
    coder_items.sort_by_key(|item| Kind::CODER.iter().position(|k| *k == item.kind));
    secret_items.extend(coder_items);
    secret_items
}

/// The sentinels in `ns`, in creation order: the Secret first, then one object of each Coder
/// kind. Created after the fill.
pub fn sentinels(ns: &str, coderd_url: &str, token: &str) -> Vec<Item> {
    let instance = json!({"name": SENTINEL});
    let item =
        |kind: Kind, spec: Value| Item { kind, namespace: ns.to_owned(), body: object(kind, ns, SENTINEL, spec) };
    vec![
        Item {
            kind: Kind::Secret,
            namespace: ns.to_owned(),
            body: secret(ns, &format!("{SENTINEL}-token"), json!({"token": token, "apiKey": "sk-sentinel"}), &[], None),
        },
        item(
            Kind::ControlPlane,
            json!({"image": "ghcr.io/coder/coder:v2.34.0",
            "extraEnv": [{"name": "CODER_ACCESS_URL", "value": "https://sentinel.example.com"}]}),
        ),
        item(Kind::Instance, json!({"url": coderd_url, "tokenSecretRef": {"name": format!("{SENTINEL}-token")}})),
        item(
            Kind::Provisioner,
            json!({"controlPlaneRef": {"name": SENTINEL}, "organizationName": "default",
            "key": {"name": format!("{SENTINEL}-prov-key")}}),
        ),
        item(Kind::Organization, json!({"instanceRef": instance, "name": format!("{SENTINEL}-org")})),
        item(
            Kind::AiProvider,
            json!({"instanceRef": instance, "name": format!("{SENTINEL}-ai"), "type": "openai",
            "baseURL": "https://api.openai.com/v1/",
            "apiKeySecretRefs": [{"name": format!("{SENTINEL}-token"), "key": "apiKey"}]}),
        ),
        item(
            Kind::ProvisionerKey,
            json!({"instanceRef": instance, "organization": "default",
            "name": format!("{SENTINEL}-key")}),
        ),
    ]
}

fn object(kind: Kind, ns: &str, name: &str, spec: Value) -> Value {
    let ar = kind.resource();
    json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn ai_type(i: usize) -> &'static str {
    ["openai", "anthropic", "openai", "bedrock"][i % 4]
}

fn coder_objects(ns: &str, j: usize, c: Counts, coderd_url: &str, rng: &mut Rng) -> Vec<Item> {
    let mut out = Vec::new();
    let mut push = |kind: Kind, name: String, spec: Value| {
        out.push(Item { kind, namespace: ns.to_owned(), body: object(kind, ns, &name, spec) });
    };
    let instance = |i: usize| json!({"name": format!("inst-{}", i % c.instances)});
    for i in 0..c.control_planes {
        push(
            Kind::ControlPlane,
            format!("coder-{i}"),
            json!({
                "image": "ghcr.io/coder/coder:v2.34.0",
                "replicas": 2 + i % 2,
                "extraEnv": [
                    {"name": "CODER_ACCESS_URL", "value": format!("https://coder-{j}-{i}.example.com")},
                    {"name": "CODER_WILDCARD_ACCESS_URL", "value": format!("*.coder-{j}-{i}.example.com")},
                    {"name": "CODER_PG_CONNECTION_URL",
                     "valueFrom": {"secretKeyRef": {"name": format!("coder-db-{i}"), "key": "url"}}},
                    {"name": "CODER_PROMETHEUS_ENABLE", "value": "true"},
                    {"name": "CODER_TELEMETRY_ENABLE", "value": "false"},
                ],
                "service": {"type": "ClusterIP", "port": 80},
            }),
        );
    }
    for i in 0..c.instances {
        push(
            Kind::Instance,
            format!("inst-{i}"),
            json!({"url": coderd_url, "tokenSecretRef": {"name": format!("coder-token-{i}")}}),
        );
    }
    for i in 0..c.provisioners {
        push(
            Kind::Provisioner,
            format!("prov-{i}"),
            json!({
                "controlPlaneRef": {"name": format!("coder-{}", i % c.control_planes)},
                "organizationName": "default",
                "key": {"name": format!("prov-{j}-{i}")},
                "tags": {"scope": "organization", "pool": format!("pool-{}", i % 4), "cluster": format!("c{j}")},
                "replicas": 1 + i % 3,
                "extraEnv": [{"name": "CODER_VERBOSE", "value": "true"}],
            }),
        );
    }
    for i in 0..c.organizations {
        push(
            Kind::Organization,
            format!("org-{i}"),
            json!({
                "instanceRef": instance(i),
                "name": format!("o-{j}-{i}"),
                "displayName": format!("Team {j}.{i} {}", rng.text(8)),
                // No groupSync: its groups must exist in coderd, which a person creates.
                "roleSync": {"field": "roles", "mapping": {
                    "platform-admin": ["organization-admin"],
                    format!("team-{j}-{i}-auditors"): ["organization-auditor"],
                    format!("team-{j}-{i}-templates"): ["organization-template-admin"]}},
            }),
        );
    }
    for i in 0..c.ai_providers {
        let name = format!("ai-{j}-{i}");
        let spec = match ai_type(i) {
            "bedrock" => json!({"instanceRef": instance(i), "name": name, "type": "bedrock",
                "displayName": format!("Bedrock {j}.{i}"),
                "baseURL": "https://bedrock-runtime.eu-west-1.amazonaws.com",
                "bedrock": {"region": "eu-west-1", "model": "anthropic.claude-sonnet-4-5",
                            "roleARN": format!("arn:aws:iam::123456789012:role/coder-bedrock-{j}")}}),
            "anthropic" => json!({"instanceRef": instance(i), "name": name, "type": "anthropic",
                "displayName": format!("Claude {j}.{i}"), "baseURL": "https://api.anthropic.com/",
                "apiKeySecretRefs": [{"name": format!("ai-key-{i}"), "key": "apiKey"}]}),
            _ => json!({"instanceRef": instance(i), "name": name, "type": "openai",
                "displayName": format!("OpenAI {j}.{i}"), "baseURL": "https://api.openai.com/v1/",
                "apiKeySecretRefs": [{"name": format!("ai-key-{i}"), "key": "apiKey"}]}),
        };
        push(Kind::AiProvider, format!("ai-{i}"), spec);
    }
    for i in 0..c.keys {
        push(
            Kind::ProvisionerKey,
            format!("key-{i}"),
            json!({
                "instanceRef": instance(i),
                "organization": "default",
                "name": format!("k-{j}-{i}"),
                "tags": {"scope": "organization", "pool": format!("pool-{}", i % 4), "region": "eu-west-1"},
                "rotationPolicy": "OnSecretLoss",
            }),
        );
    }
    out
}

/// A Secret with `data` (string values, base64-encoded here), `labels` and, when given, a
/// `last-applied-configuration` annotation (which repeats the data, as kubectl writes it).
fn secret(ns: &str, name: &str, data: Value, labels: &[(&str, String)], kind: Option<&str>) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let data: serde_json::Map<String, Value> = data
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(b64(v.as_str().unwrap_or_default()))))
        .collect();
    let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                       "type": kind.unwrap_or("Opaque"), "data": data});
    if !labels.is_empty() {
        s["metadata"]["labels"] = Value::Object(labels);
    }
    s
}

const KEY_NAMES: [&str; 8] =
    ["password", "username", "token", "api-key", "config.json", "client-secret", "database-url", "webhook-secret"];

/// Secret `k` of a namespace: 60 % Opaque (1–4 keys, 100 B – 2 KiB each), 25 % TLS, 10 %
/// registry credentials, 5 % Opaque applied by kubectl (values repeated in the annotation).
fn mixed_secret(ns: &str, k: usize, rng: &mut Rng) -> Item {
    let labels = [
        ("app.kubernetes.io/name", format!("app-{}", k % 50)),
        ("app.kubernetes.io/managed-by", if k.is_multiple_of(3) { "Helm" } else { "kustomize" }.to_owned()),
    ];
    let body = match k % 20 {
        0..12 => {
            let keys = 1 + rng.below(4);
            let first = rng.below(KEY_NAMES.len());
            let data: serde_json::Map<String, Value> = (0..keys)
                .map(|n| (KEY_NAMES[(first + n) % KEY_NAMES.len()].to_owned(), json!(rng.sized(100, 1949))))
                .collect();
            secret(ns, &format!("app-{k}"), Value::Object(data), &labels, None)
        }
        12..17 => {
            let mut data = json!({"tls.crt": pem("CERTIFICATE", 1200 + rng.below(849), rng),
                                  "tls.key": pem("PRIVATE KEY", 220 + rng.below(1480), rng)});
            if k.is_multiple_of(2) {
                data["ca.crt"] = json!(pem("CERTIFICATE", 1200 + rng.below(849), rng));
            }
            secret(ns, &format!("tls-{k}"), data, &labels, Some("kubernetes.io/tls"))
        }
        17..19 => {
            let (user, password) = (format!("robot-{k}"), rng.sized(40, 160));
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let config = json!({"auths": {format!("registry-{}.example.com", k % 7):
                                {"username": user, "password": password, "auth": auth}}});
            secret(
                ns,
                &format!("registry-{k}"),
                json!({".dockerconfigjson": config.to_string()}),
                &labels,
                Some("kubernetes.io/dockerconfigjson"),
            )
        }
        _ => {
            let data = json!({"username": format!("svc-{k}"), "password": rng.sized(100, 900)});
            let mut s = secret(ns, &format!("applied-{k}"), data, &labels, None);
            let applied = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": s["data"],
                                 "metadata": {"name": s["metadata"]["name"], "namespace": ns,
                                              "labels": s["metadata"]["labels"], "annotations": {}}});
            s["metadata"]["annotations"] =
                json!({"kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n")});
            s
        }
    };
    Item { kind: Kind::Secret, namespace: ns.to_owned(), body }
}

/// A PEM-shaped text of about `len` bytes (random body; the API server does not parse it).
fn pem(label: &str, len: usize, rng: &mut Rng) -> String {
    let body = rng.text(len.saturating_sub(60));
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// xorshift64*: reproducible sizes and values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Between `min` and `min + spread - 1` random characters.
    fn sized(&mut self, min: usize, spread: usize) -> String {
        let len = min + self.below(spread);
        self.text(len)
    }

    /// `len` random base64-alphabet characters.
    fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..len).map(|_| char::from(ALPHABET[(self.next() >> 58) as usize])).collect()
    }
}

/// What a [`create`] run did.
#[derive(Debug, Default)]
pub struct Created {
    pub ok: usize,
    pub errors: usize,
    pub first_errors: Vec<String>,
    /// Bytes of the JSON bodies sent.
    pub bytes: usize,
    pub elapsed: Duration,
    /// True when `limit` stopped the run early.
    pub cut_short: bool,
}

/// Creates `items` in order with [`CONCURRENCY`] requests in flight, retrying 429s, 5xx and
/// timeouts; stops starting new requests after `limit`.
pub async fn create(client: &kube::Client, items: Vec<Item>, limit: Duration) -> Created {
    let started = Instant::now();
    let mut out = Created::default();
    let results = futures::stream::iter(items)
        .take_while(|_| std::future::ready(started.elapsed() < limit))
        .map(|item| async move {
            let bytes = item.body.to_string().len();
            (bytes, create_one(client, item).await)
        })
        .buffer_unordered(CONCURRENCY);
    let all: Vec<(usize, Result<(), String>)> = results.collect().await;
    for (bytes, result) in all {
        out.bytes += bytes;
        match result {
            Ok(()) => out.ok += 1,
            Err(e) => {
                out.errors += 1;
                if out.first_errors.len() < 3 {
                    out.first_errors.push(e);
                }
            }
        }
    }
    out.elapsed = started.elapsed();
    out.cut_short = started.elapsed() >= limit;
    out
}

async fn create_one(client: &kube::Client, item: Item) -> Result<(), String> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &item.namespace, &item.kind.resource());
    let object: DynamicObject = serde_json::from_value(item.body).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        match tokio::time::timeout(REQUEST_TIMEOUT, api.create(&PostParams::default(), &object)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(kube::Error::Api(status))) if status.is_already_exists() && attempt > 0 => return Ok(()),
            Ok(Err(kube::Error::Api(status))) if status.code != 429 && status.code < 500 => {
                return Err(format!(
                    "{} {}/{}: {}",
                    item.kind.name(),
                    item.namespace,
                    object.metadata.name.clone().unwrap_or_default(),
                    status.message
                ));
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {REQUEST_TIMEOUT:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    Err(format!("{} {}: {last}", item.kind.name(), item.namespace))
}
