//! Which coderd-side objects a resource manages ("claims"), normalized the way coderd compares
//! names. Two resources with the same claim would fight over one coderd object.

use serde_json::Value;

use super::kind::Kind;
use super::lookup::{Claim, Coderd};
use super::subject::Object;
use crate::api::own::CoderInstance;

/// The claims `object` (of `kind`, in `namespace`) makes. Objects that do not decode claim
/// nothing; the engine reports their shape separately.
pub fn claims_of(kind: Kind, object: &Value, namespace: &str) -> Vec<Claim> {
    if !CLAIMING_KINDS.contains(&kind) {
        return Vec::new();
    }
    Object::decode(kind, object).map(|o| claims_of_object(&o, namespace)).unwrap_or_default()
}

/// Kinds whose objects claim coderd objects or Secrets.
const CLAIMING_KINDS: [Kind; 6] = [
    Kind::CoderOrganization,
    Kind::CoderAIProvider,
    Kind::CoderProvisionerKey,
    Kind::CoderProvisioner,
    Kind::CoderControlPlane,
    Kind::CoderInstance,
];

/// The claims of an already decoded object.
pub fn claims_of_object(object: &Object, namespace: &str) -> Vec<Claim> {
    let ns = namespace.to_owned();
    match object {
        Object::Organization(o) => {
            let name = o.spec.name.clone().unwrap_or_else(|| o.metadata.name.clone().unwrap_or_default());
            vec![Claim::Organization {
                namespace: ns,
                instance: o.spec.instance_ref.name.clone(),
                name: name.to_ascii_lowercase(),
            }]
        }
        Object::AiProvider(p) => vec![Claim::AiProvider {
            namespace: ns,
            instance: p.spec.instance_ref.name.clone(),
            name: p.spec.name.clone(),
        }],
        Object::ProvisionerKey(k) => vec![
            Claim::ProvisionerKey {
                namespace: ns.clone(),
                coderd: Coderd::Instance(k.spec.instance_ref.name.clone()),
                organization: k.spec.organization.to_ascii_lowercase(),
                name: k.key_name().to_ascii_lowercase(),
            },
            Claim::WrittenSecret { namespace: ns, name: k.secret_name() },
        ],
        Object::Provisioner(p) => vec![
            Claim::ProvisionerKey {
                namespace: ns.clone(),
                coderd: Coderd::ControlPlane(p.spec.control_plane_ref.name.clone()),
                organization: p.organization().to_ascii_lowercase(),
                name: p.key_name().to_ascii_lowercase(),
            },
            Claim::WrittenSecret { namespace: ns, name: p.key_secret_name() },
        ],
        Object::ControlPlane(cp) => {
            let mut claims = Vec::new();
            if !cp.spec.operator_access.disabled {
                claims.push(Claim::WrittenSecret { namespace: ns.clone(), name: cp.operator_token_secret_name() });
            }
            if cp.spec.license_secret_ref.is_some() {
                claims.push(Claim::License { namespace: ns, control_plane: cp.metadata.name.clone() });
            }
            claims
        }
        Object::Instance(i) => instance_claims(i, &ns),
        Object::WorkspaceProxy(_) | Object::Deployment(_) => Vec::new(),
    }
}

fn instance_claims(instance: &CoderInstance, namespace: &str) -> Vec<Claim> {
    let mut claims = Vec::new();
    let cp = instance.spec.control_plane_ref.as_ref().map(|r| r.name.clone()).filter(|n| !n.is_empty());
    if let Some(cp) = &cp {
        claims.push(Claim::InstanceOf { namespace: namespace.to_owned(), control_plane: cp.clone() });
        if instance.spec.license.is_some() {
            claims.push(Claim::License { namespace: namespace.to_owned(), control_plane: cp.clone() });
        }
    }
    let manages_state = instance.spec.license.is_some()
        || instance.spec.appearance.is_some()
        || instance.spec.organization_sync.is_some();
    if manages_state {
        let coderd = match (&cp, &instance.spec.url) {
            (Some(cp), _) => Some(format!("{namespace}/{cp}")),
            (None, Some(url)) => Some(normalize_url(url)),
            (None, None) => None,
        };
        claims.extend(coderd.map(|coderd| Claim::DeploymentState { coderd }));
    }
    claims
}

/// Lowercased scheme and host, no trailing slash: two spellings of one URL compare equal.
pub fn normalize_url(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            let mut out = format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase());
            if !path.is_empty() {
                out.push('/');
                out.push_str(path);
            }
            out
        }
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn provisioner_key_claims_are_case_insensitive() {
        let k = json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderProvisionerKey",
            "metadata": {"name": "Build-Key"}, "spec": {"instanceRef": {"name": "main"}, "organization": "Data"}});
        assert_eq!(
            claims_of(Kind::CoderProvisionerKey, &k, "ns")[0],
            Claim::ProvisionerKey {
                namespace: "ns".into(),
                coderd: Coderd::Instance("main".into()),
                organization: "data".into(),
                name: "build-key".into()
            }
        );
    }

    #[test]
    fn instance_claims_license_and_deployment_state() {
        let i = json!({"metadata": {"name": "a"}, "spec": {"controlPlaneRef": {"name": "cp"},
            "license": {"secretRef": {"name": "lic"}}}});
        let claims = claims_of(Kind::CoderInstance, &i, "ns");
        assert!(claims.contains(&Claim::License { namespace: "ns".into(), control_plane: "cp".into() }));
        assert!(claims.contains(&Claim::DeploymentState { coderd: "ns/cp".into() }));
        let by_url = json!({"metadata": {"name": "b"}, "spec": {"url": "HTTPS://Coder.Example.com/",
            "tokenSecretRef": {"name": "t"}, "appearance": {"applicationName": "x"}}});
        assert_eq!(
            claims_of(Kind::CoderInstance, &by_url, "other"),
            vec![Claim::DeploymentState { coderd: "https://coder.example.com".into() }]
        );
    }
}
