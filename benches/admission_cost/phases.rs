//! Switching the cluster between the mechanisms measured, and waiting until the switch took.

use super::*;

/// The live `coder-guard` webhook configurations (as the harness registered them from
/// `coder-guard manifests webhooks --url … --ca-bundle-file …`), without server-set metadata.
pub fn saved_webhook_configurations(api: &ApiServer) -> Value {
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
pub fn no_op_configurations(webhooks: &Value, url: &str, no_op_url: &str) -> Result<Value, String> {
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
pub fn cel_policies() -> Value {
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
pub async fn switch(
    api: &ApiServer,
    client: &kube::Client,
    ns: &str,
    phase: Phase,
    m: &Mechanisms,
) -> Result<(), String> {
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
pub async fn wait_probe(client: &kube::Client, ns: &str, denial: Option<&str>) -> Result<(), String> {
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
pub async fn wait_no_op(client: &kube::Client, ns: &str, m: &Mechanisms, called: bool) -> Result<(), String> {
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
pub async fn send_probe(client: &kube::Client, ns: &str) -> kube::Result<DynamicObject> {
    let keys = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource(Kind::Key));
    let probe = object(ns, Kind::Key, "probe", json!({"instanceRef": {"name": "coder"}, "organization": "new"}));
    keys.create(&PostParams { dry_run: true, ..PostParams::default() }, &probe).await
}

/// The no-op server's count of answered CoderProvisionerKey reviews, from its `/metrics`.
pub async fn no_op_reviews(m: &Mechanisms) -> Result<u64, String> {
    let url = &m.no_op_metrics;
    let response = m.http.get(url).send().await.and_then(reqwest::Response::error_for_status);
    let text = response.map_err(|e| format!("GET {url}: {e}"))?.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with(REVIEWS_COUNT) && line.contains(r#"kind="CoderProvisionerKey""#))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum())
}
