//! The Validating- and MutatingWebhookConfiguration coder-guard registers, with safe defaults:
//! `sideEffects: None` (so `kubectl apply --dry-run=server` works), v1 reviews only, a short
//! timeout, `kube-system` and coder-guard's own namespace excluded by the immutable
//! `kubernetes.io/metadata.name` label, and `matchConditions` that send only Coder-related
//! Deployments.
//!
//! Failure policies:
//! - Coder custom resources: `Fail`. They change rarely, only coder-guard can check them, and
//!   an unchecked one fails later inside the operator or coderd.
//! - Deployments (validating and mutating): `Ignore`. They roll out the Coder stack itself, so
//!   a webhook outage must not block restoring coderd; the same Deployment rules run in CI
//!   (`check --base`), so an outage reduces defense in depth rather than removing it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};

use crate::api::workload::PROVISIONER_KEY_ANNOTATION;

/// Name of both configurations.
pub const CONFIGURATION_NAME: &str = "coder-guard";
/// Webhook for Coder custom resources.
pub const RESOURCES_WEBHOOK: &str = "resources.coderd.coder.com";
/// Validating webhook for Coder Deployments.
pub const DEPLOYMENTS_WEBHOOK: &str = "deployments.coderd.coder.com";
/// Mutating webhook for provisioner Deployments.
pub const PROVISIONER_WEBHOOK: &str = "provisioners.coderd.coder.com";
/// Seconds the API server waits for an answer.
pub const TIMEOUT_SECONDS: i32 = 5;

/// Where the API server reaches coder-guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An in-cluster Service (`port` defaults to 443).
    Service { namespace: String, name: String, port: i32 },
    /// A URL prefix such as `https://127.0.0.1:9443` (tests, out-of-cluster development).
    Url(String),
}

/// Inputs of the generated configurations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub endpoint: Endpoint,
    /// coder-guard's own namespace, excluded from every webhook.
    pub namespace: String,
    /// PEM CA bundle, when known (cert-manager or the self-signed rotator injects it otherwise).
    pub ca_bundle: Option<Vec<u8>>,
}

/// CEL: a Deployment that runs Coder (a `coder/coder` image or `CODER_*` env in any container)
/// or asks for provisioner-key injection.
pub fn coder_deployment_condition() -> String {
    let container = "c, (has(c.image) && c.image.contains('coder/coder')) || \
                     (has(c.env) && c.env.exists(e, e.name.startsWith('CODER_')))";
    format!(
        "object.spec.template.spec.containers.exists({container}) || \
         (has(object.spec.template.spec.initContainers) && object.spec.template.spec.initContainers.exists({container})) || \
         (has(object.metadata.annotations) && '{PROVISIONER_KEY_ANNOTATION}' in object.metadata.annotations)"
    )
}

/// CEL: a Deployment that reads a provisioner key or asks for one to be injected.
pub fn provisioner_deployment_condition() -> String {
    format!(
        "(has(object.metadata.annotations) && '{PROVISIONER_KEY_ANNOTATION}' in object.metadata.annotations) || \
         object.spec.template.spec.containers.exists(c, has(c.env) && \
         c.env.exists(e, e.name == 'CODER_PROVISIONER_DAEMON_KEY' && has(e.valueFrom) && has(e.valueFrom.secretKeyRef)))"
    )
}

fn client_config(options: &Options, path: &str) -> WebhookClientConfig {
    let ca_bundle = options.ca_bundle.clone().map(ByteString);
    match &options.endpoint {
        Endpoint::Service { namespace, name, port } => WebhookClientConfig {
            ca_bundle,
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.to_owned()),
                port: Some(*port),
            }),
            url: None,
        },
        Endpoint::Url(base) => {
            WebhookClientConfig { ca_bundle, service: None, url: Some(format!("{}{path}", base.trim_end_matches('/'))) }
        }
    }
}

fn namespace_selector(own: &str) -> LabelSelector {
    let mut excluded = vec!["kube-system".to_owned(), own.to_owned()];
    excluded.dedup();
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(excluded),
        }]),
        match_labels: None,
    }
}

fn rule(group: &str, resources: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.to_owned()]),
        api_versions: Some(vec![if group == "apps" { "v1" } else { "v1alpha1" }.to_owned()]),
        operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        scope: Some("Namespaced".into()),
    }
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        name: Some(CONFIGURATION_NAME.into()),
        labels: Some(BTreeMap::from([("app.kubernetes.io/name".to_owned(), "coder-guard".to_owned())])),
        ..ObjectMeta::default()
    }
}

fn condition(name: &str, expression: String) -> Option<Vec<MatchCondition>> {
    Some(vec![MatchCondition { name: name.into(), expression }])
}

/// The ValidatingWebhookConfiguration.
pub fn validating(options: &Options) -> ValidatingWebhookConfiguration {
    let common = |name: &str, rules, failure: &str, match_conditions| ValidatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        client_config: client_config(options, "/validate"),
        failure_policy: Some(failure.into()),
        match_policy: Some("Equivalent".into()),
        namespace_selector: Some(namespace_selector(&options.namespace)),
        rules: Some(rules),
        side_effects: "None".into(),
        timeout_seconds: Some(TIMEOUT_SECONDS),
        match_conditions,
        object_selector: None,
    };
    ValidatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![
            common(
                RESOURCES_WEBHOOK,
                vec![
                    rule("coder.com", &["codercontrolplanes", "coderprovisioners", "coderworkspaceproxies"]),
                    rule(
                        "coderd.coder.com",
                        &["coderinstances", "coderorganizations", "coderaiproviders", "coderprovisionerkeys"],
                    ),
                ],
                "Fail",
                None,
            ),
            common(
                DEPLOYMENTS_WEBHOOK,
                vec![rule("apps", &["deployments"])],
                "Ignore",
                condition("coder-deployments-only", coder_deployment_condition()),
            ),
        ]),
    }
}

/// The MutatingWebhookConfiguration.
pub fn mutating(options: &Options) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: meta(),
        webhooks: Some(vec![MutatingWebhook {
            name: PROVISIONER_WEBHOOK.into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config(options, "/mutate"),
            failure_policy: Some("Ignore".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector(&options.namespace)),
            rules: Some(vec![rule("apps", &["deployments"])]),
            side_effects: "None".into(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            reinvocation_policy: Some("IfNeeded".into()),
            match_conditions: condition("provisioner-deployments-only", provisioner_deployment_condition()),
            object_selector: None,
        }]),
    }
}

/// Both configurations as one YAML stream.
pub fn render(options: &Options) -> Result<String, serde_saphyr::SerializeError> {
    Ok(format!(
        "# Generated by `coder-guard manifests webhooks`; do not edit.\n---\n{}---\n{}",
        serde_saphyr::to_string(&validating(options))?,
        serde_saphyr::to_string(&mutating(options))?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(endpoint: Endpoint) -> Options {
        Options { endpoint, namespace: "coder-guard".into(), ca_bundle: Some(b"PEM".to_vec()) }
    }

    #[test]
    fn safe_defaults() {
        let v = validating(&options(Endpoint::Service { namespace: "ns".into(), name: "svc".into(), port: 443 }));
        let hooks = v.webhooks.unwrap();
        assert_eq!(hooks.len(), 2);
        for h in &hooks {
            assert_eq!(h.side_effects, "None");
            assert_eq!(h.admission_review_versions, ["v1"]);
            assert!(h.timeout_seconds.unwrap() <= 10);
            let sel = h.namespace_selector.as_ref().unwrap().match_expressions.as_ref().unwrap();
            assert_eq!(sel[0].values.as_deref().unwrap(), ["kube-system", "coder-guard"]);
            assert_eq!(h.client_config.service.as_ref().unwrap().path.as_deref(), Some("/validate"));
        }
        assert_eq!(hooks[0].failure_policy.as_deref(), Some("Fail"));
        assert_eq!(hooks[1].failure_policy.as_deref(), Some("Ignore"));
        assert!(hooks[1].match_conditions.is_some());
        let m = mutating(&options(Endpoint::Url("https://127.0.0.1:9443/".into())));
        let hook = &m.webhooks.unwrap()[0];
        assert_eq!(hook.client_config.url.as_deref(), Some("https://127.0.0.1:9443/mutate"));
        assert_eq!(hook.reinvocation_policy.as_deref(), Some("IfNeeded"));
        assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    }
}
