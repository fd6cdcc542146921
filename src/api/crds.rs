//! The CustomResourceDefinitions of coder-guard's kinds, rendered as YAML.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::own::{CoderAIProvider, CoderInstance, CoderOrganization, CoderProvisionerKey};

/// Every CRD coder-guard owns, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![CoderInstance::crd(), CoderOrganization::crd(), CoderAIProvider::crd(), CoderProvisionerKey::crd()]
}

/// File name of a CRD in `charts/coder-guard/crds/`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// A CRD as a YAML document.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// All CRDs as one YAML stream.
pub fn render_stream(crds: &[CustomResourceDefinition]) -> Result<String, serde_saphyr::SerializeError> {
    let docs = crds.iter().map(render).collect::<Result<Vec<_>, _>>()?;
    Ok(docs.iter().map(|d| format!("---\n{d}")).collect())
}
