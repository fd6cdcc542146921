//! The kinds the engine knows, identified from an object's `apiVersion` and `kind`.

use std::fmt;

use serde_json::Value;

/// A kind the rule catalog applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    CoderControlPlane,
    CoderProvisioner,
    CoderWorkspaceProxy,
    CoderInstance,
    CoderOrganization,
    CoderAIProvider,
    CoderProvisionerKey,
    Deployment,
    Secret,
}

impl Kind {
    /// Every kind, in catalog order.
    pub const ALL: [Kind; 9] = [
        Kind::CoderControlPlane,
        Kind::CoderProvisioner,
        Kind::CoderWorkspaceProxy,
        Kind::CoderInstance,
        Kind::CoderOrganization,
        Kind::CoderAIProvider,
        Kind::CoderProvisionerKey,
        Kind::Deployment,
        Kind::Secret,
    ];

    /// The kind of `(apiVersion, kind)`, if the engine knows it.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Kind::ALL.into_iter().find(|k| k.name() == kind && k.group() == group)
    }

    /// The kind of a raw object.
    pub fn of(object: &Value) -> Option<Kind> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        Kind::from_type(api_version, kind)
    }

    /// The `kind` string.
    pub fn name(self) -> &'static str {
        match self {
            Kind::CoderControlPlane => "CoderControlPlane",
            Kind::CoderProvisioner => "CoderProvisioner",
            Kind::CoderWorkspaceProxy => "CoderWorkspaceProxy",
            Kind::CoderInstance => "CoderInstance",
            Kind::CoderOrganization => "CoderOrganization",
            Kind::CoderAIProvider => "CoderAIProvider",
            Kind::CoderProvisionerKey => "CoderProvisionerKey",
            Kind::Deployment => "Deployment",
            Kind::Secret => "Secret",
        }
    }

    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::CoderControlPlane | Kind::CoderProvisioner | Kind::CoderWorkspaceProxy => crate::api::coder::GROUP,
            Kind::CoderInstance | Kind::CoderOrganization | Kind::CoderAIProvider | Kind::CoderProvisionerKey => {
                crate::api::own::GROUP
            }
            Kind::Deployment => "apps",
            Kind::Secret => "",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_kinds_by_group_and_kind() {
        assert_eq!(Kind::from_type("coder.com/v1alpha1", "CoderProvisioner"), Some(Kind::CoderProvisioner));
        assert_eq!(Kind::from_type("coderd.coder.com/v1alpha1", "CoderInstance"), Some(Kind::CoderInstance));
        assert_eq!(Kind::from_type("apps/v1", "Deployment"), Some(Kind::Deployment));
        assert_eq!(Kind::from_type("v1", "Secret"), Some(Kind::Secret));
        // Same kind name in another group is not ours.
        assert_eq!(Kind::from_type("example.com/v1", "CoderInstance"), None);
        assert_eq!(Kind::from_type("extensions/v1beta1", "Deployment"), None);
    }
}
