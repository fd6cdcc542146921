//! A tolerant view of `apps/v1` Deployments: the pod template's containers, env and
//! annotations. Everything else in the object is ignored, so any Deployment decodes.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{EnvFromSource, EnvVar, Meta, null_default};

/// `apps/v1` `Deployment` (the parts rules read).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Deployment {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: DeploymentSpec,
}

impl Deployment {
    /// Every container, init containers included, with its path.
    pub fn containers(&self) -> impl Iterator<Item = (crate::policy::FieldPath, &Container)> {
        let spec = &self.spec.template.spec;
        let main = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| (crate::fp!("spec", "template", "spec", "containers", i), c));
        let init = spec.init_containers.iter().enumerate();
        main.chain(init.map(|(i, c)| (crate::fp!("spec", "template", "spec", "initContainers", i), c)))
    }

    /// Containers and init containers, without their paths.
    fn containers_unpathed(&self) -> impl Iterator<Item = &Container> {
        let spec = &self.spec.template.spec;
        spec.containers.iter().chain(&spec.init_containers)
    }

    /// True for Deployments that run Coder: a `coder` image, `CODER_*` env, or the
    /// provisioner-key injection annotation. Other Deployments are left alone.
    pub fn is_coder(&self) -> bool {
        self.metadata.annotations.contains_key(PROVISIONER_KEY_ANNOTATION)
            || self
                .containers_unpathed()
                .any(|c| c.image.contains("coder/coder") || c.env.iter().any(|e| e.name.starts_with("CODER_")))
    }
}

/// Annotation asking the webhook to inject a `CoderProvisionerKey`'s key.
pub const PROVISIONER_KEY_ANNOTATION: &str = "coderd.coder.com/provisioner-key";

/// `Deployment.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeploymentSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub template: PodTemplate,
}

/// `spec.template`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodTemplate {
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: TemplateMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub spec: PodSpec,
}

/// `spec.template.metadata`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TemplateMeta {
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.template.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub containers: Vec<Container>,
    #[serde(default, deserialize_with = "null_default")]
    pub init_containers: Vec<Container>,
}

/// A container.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, deserialize_with = "null_default")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<EnvVar>,
    #[serde(default, deserialize_with = "null_default")]
    pub env_from: Vec<EnvFromSource>,
}

impl Container {
    /// The last env entry named `name` (Kubernetes resolves duplicates to the last one).
    pub fn env_var(&self, name: &str) -> Option<(usize, &EnvVar)> {
        self.env.iter().enumerate().rev().find(|(_, e)| e.name == name)
    }

    /// True when this container runs `coder provisioner start` (or the older
    /// `provisionerd start`), or is configured with a provisioner key.
    pub fn is_provisioner_daemon(&self) -> bool {
        let words = || self.command.iter().chain(&self.args).map(String::as_str);
        let runs_daemon =
            words().zip(words().skip(1)).any(|pair| matches!(pair, ("provisioner" | "provisionerd", "start")));
        runs_daemon || self.env_var(crate::policy::env::PROVISIONER_KEY).is_some()
    }
}
