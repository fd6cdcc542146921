//! Proof that a coder-guard server's cache holds the sentinels (and so, by watch order, every
//! object created before them): dry-run AdmissionReviews sent straight to its webhook, whose
//! answers depend on what the cache holds.
//!
//! - Secret and CoderInstance: a CoderAIProvider referencing the sentinel Secret and instance;
//!   a cache miss gives a "… does not exist" warning (dry run: a warning, not a deny).
//! - CoderControlPlane: a CoderProvisioner referencing the sentinel control plane, likewise.
//! - CoderOrganization, CoderAIProvider, CoderProvisionerKey, CoderProvisioner: a twin that
//!   claims the same coderd object as the sentinel; a hit gives "… already managed by <kind>
//!   <ns>/sentinel".
//!
//! A deny with absent references makes the server confirm them with a live read, which would
//! hide a cache miss; a round therefore counts only if the server's
//! `coder_guard_admission_confirmations` did not move during it.

use serde_json::{Value, json};

use super::objects::{Kind, SENTINEL};

/// One probe round's answer per kind, in [`KINDS`] order.
pub struct Round {
    pub present: Vec<(Kind, bool)>,
    /// Live confirmations the server made during the round (must be 0 for the round to count).
    pub confirmations: u64,
}

impl Round {
    pub fn all_present(&self) -> bool {
        self.confirmations == 0 && self.present.iter().all(|(_, p)| *p)
    }

    pub fn count(&self) -> usize {
        self.present.iter().filter(|(_, p)| *p).count()
    }
}

/// A reqwest client trusting `ca_pem` only.
pub fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the bench CA"))
        .http1_only()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

/// One round against the server at `webhook` (`https://127.0.0.1:PORT`) whose admin port
/// answers `/metrics` through `confirmations`. Sentinels live in `ns`.
pub async fn round(
    client: &reqwest::Client,
    webhook: &str,
    ns: &str,
    confirmations: impl Fn() -> u64,
) -> Result<Round, String> {
    let before = confirmations();
    let instance = json!({"name": SENTINEL});
    let token = format!("{SENTINEL}-token");
    let missing = |text: &str, what: &str| text.contains(&format!("{ns}/{what} does not exist"));
    let claimed =
        |text: &str, kind: Kind| text.contains(&format!("already managed by {} {ns}/{SENTINEL}", kind.name()));

    let refs = answer(
        client,
        webhook,
        ns,
        Kind::AiProvider,
        "probe-refs",
        json!({"instanceRef": instance, "name": "probe-refs", "type": "openai", "baseURL": "https://api.openai.com/v1/",
               "apiKeySecretRefs": [{"name": token, "key": "apiKey"}]}),
    )
    .await?;
    let cp = answer(
        client,
        webhook,
        ns,
        Kind::Provisioner,
        "probe-refs",
        json!({"controlPlaneRef": {"name": SENTINEL}, "organizationName": "default", "key": {"name": "probe-refs"}}),
    )
    .await?;
    let org = answer(
        client,
        webhook,
        ns,
        Kind::Organization,
        "probe-twin",
        json!({"instanceRef": instance, "name": format!("{SENTINEL}-org")}),
    )
    .await?;
    let ai = answer(
        client,
        webhook,
        ns,
        Kind::AiProvider,
        "probe-twin",
        json!({"instanceRef": instance, "name": format!("{SENTINEL}-ai"), "type": "openai",
               "baseURL": "https://api.openai.com/v1/", "apiKeySecretRefs": [{"name": token, "key": "apiKey"}]}),
    )
    .await?;
    let key = answer(
        client,
        webhook,
        ns,
        Kind::ProvisionerKey,
        "probe-twin",
        json!({"instanceRef": instance, "organization": "default", "name": format!("{SENTINEL}-key")}),
    )
    .await?;
    let prov = answer(
        client,
        webhook,
        ns,
        Kind::Provisioner,
        "probe-twin",
        json!({"controlPlaneRef": {"name": SENTINEL}, "organizationName": "default",
               "key": {"name": format!("{SENTINEL}-prov-key")}}),
    )
    .await?;
    let after = confirmations();
    Ok(Round {
        present: vec![
            (Kind::Secret, !missing(&refs, &token)),
            (Kind::Instance, !missing(&refs, SENTINEL)),
            (Kind::ControlPlane, !missing(&cp, SENTINEL)),
            (Kind::Organization, claimed(&org, Kind::Organization)),
            (Kind::AiProvider, claimed(&ai, Kind::AiProvider)),
            (Kind::ProvisionerKey, claimed(&key, Kind::ProvisionerKey)),
            (Kind::Provisioner, claimed(&prov, Kind::Provisioner)),
        ],
        confirmations: after.saturating_sub(before),
    })
}

/// The warnings and the deny message of a dry-run CREATE review of `spec` as `kind` `name`.
async fn answer(
    client: &reqwest::Client,
    webhook: &str,
    ns: &str,
    kind: Kind,
    name: &str,
    spec: Value,
) -> Result<String, String> {
    let ar = kind.resource();
    let gvk = json!({"group": ar.group, "version": ar.version, "kind": ar.kind});
    let gvr = json!({"group": ar.group, "version": ar.version, "resource": ar.plural});
    let object = json!({"apiVersion": ar.api_version, "kind": ar.kind,
                        "metadata": {"name": name, "namespace": ns}, "spec": spec});
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("memory-bench-{name}"),
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": name, "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "memory-bench", "groups": ["system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": true,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    });
    let response = client
        .post(format!("{webhook}/validate"))
        .header("content-type", "application/json")
        .body(review.to_string())
        .send()
        .await
        .map_err(|e| format!("POST /validate: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("POST /validate ({status}): {e}"))?;
    if !status.is_success() {
        return Err(format!("POST /validate: {status}: {body}"));
    }
    let answer = &body["response"];
    let mut text: Vec<String> =
        answer["warnings"].as_array().into_iter().flatten().filter_map(|w| w.as_str().map(str::to_owned)).collect();
    text.extend(answer["status"]["message"].as_str().map(str::to_owned));
    Ok(text.join("\n"))
}
