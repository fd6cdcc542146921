//! The CustomResourceDefinitions of coder-guard's kinds, rendered as YAML.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::own::{CoderAIProvider, CoderInstance, CoderOrganization, CoderProvisionerKey};

/// Every CRD coder-guard owns, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        CoderInstance::crd(),
        CoderOrganization::crd(),
        CoderAIProvider::crd(),
        CoderProvisionerKey::crd(),
    ]
}

/// File name of a CRD in `charts/coder-guard/crds/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}
