//! References: Secrets, control planes and instances a resource points at must exist, and no
//! two resources may manage the same coderd object or write the same Secret.

use super::{Rule, RuleInfo};
use crate::api::common::{EnvFromSource, EnvVar, SecretKeyRef};
use crate::api::{coder, own};
use crate::fp;
use crate::policy::config::Mode;
use crate::policy::kind::Kind;
use crate::policy::lookup::{Claim, Coderd, Found, KeyState, ObjectKey};
use crate::policy::path::FieldPath;
use crate::policy::subject::{Object, Report, Subject};

/// Rules of this family.
pub const RULES: &[Rule] = &[
    Rule {
        info: RuleInfo {
            id: "secret-ref",
            summary: "Referenced Secrets exist and hold a non-empty value at the referenced key",
            explanation: "The operator and coderd read these Secrets at run time; a missing Secret or key \
leaves pods stuck in CreateContainerConfigError or the reconcile loop failing, long after the apply \
succeeded. Create the Secret (or add the key) first, or fix the reference. References marked \
`optional: true` are not checked. On a dry-run request a missing Secret is only a warning, because it may \
be created by the same apply. Offline (`check`), a Secret that is not in the input cannot be verified: \
add it to the input or pass `--assume-secret NAMESPACE/NAME[:KEY]`.",
            kinds: &[
                Kind::CoderControlPlane,
                Kind::CoderProvisioner,
                Kind::CoderWorkspaceProxy,
                Kind::CoderInstance,
                Kind::CoderAIProvider,
                Kind::Deployment,
            ],
            default_mode: Mode::Enforce,
        },
        check: secret_refs,
    },
    Rule {
        info: RuleInfo {
            id: "control-plane-ref",
            summary: "controlPlaneRef names an existing CoderControlPlane in the same namespace",
            explanation: "A CoderProvisioner or CoderInstance whose controlPlaneRef is empty or names no \
CoderControlPlane never becomes ready: the operator (or the reconcile loop) has no URL and no token to \
use. Set `spec.controlPlaneRef.name` to the name of a CoderControlPlane in the same namespace.",
            kinds: &[Kind::CoderProvisioner, Kind::CoderInstance],
            default_mode: Mode::Enforce,
        },
        check: control_plane_ref,
    },
    Rule {
        info: RuleInfo {
            id: "instance-ref",
            summary: "instanceRef names an existing CoderInstance in the same namespace",
            explanation: "CoderOrganization, CoderAIProvider and CoderProvisionerKey are applied to the coderd \
that their `spec.instanceRef` names. Create the CoderInstance first (it can be in the same apply) or fix \
the name.",
            kinds: &[Kind::CoderOrganization, Kind::CoderAIProvider, Kind::CoderProvisionerKey],
            default_mode: Mode::Enforce,
        },
        check: instance_ref,
    },
    Rule {
        info: RuleInfo {
            id: "unique-coderd-object",
            summary: "At most one resource manages each coderd object and each written Secret",
            explanation: "Two resources that manage the same organization, AI provider, provisioner key \
(compared case-insensitively, as coderd does) or deployment-wide settings would overwrite each other on \
every reconcile, and two resources that write the same Secret would rotate each other's keys. Keep one \
resource per coderd object: delete or rename the other one.",
            kinds: &[
                Kind::CoderControlPlane,
                Kind::CoderProvisioner,
                Kind::CoderInstance,
                Kind::CoderOrganization,
                Kind::CoderAIProvider,
                Kind::CoderProvisionerKey,
            ],
            default_mode: Mode::Enforce,
        },
        check: unique_claims,
    },
    Rule {
        info: RuleInfo {
            id: "license-managed-once",
            summary: "A coderd license is managed by either the CoderControlPlane or a CoderInstance, not both",
            explanation: "The operator uploads `CoderControlPlane.spec.licenseSecretRef`; coder-guard uploads \
`CoderInstance.spec.license`. With both set for the same coderd, two controllers upload and track \
licenses independently and a rotation in one undoes the other. Keep the license in one place: remove \
`spec.license` from the CoderInstance, or `spec.licenseSecretRef` from the CoderControlPlane.",
            kinds: &[Kind::CoderControlPlane, Kind::CoderInstance],
            default_mode: Mode::Enforce,
        },
        check: license_once,
    },
    Rule {
        info: RuleInfo {
            id: "written-secret-conflict",
            summary: "A Secret that receives a provisioner key is not one that holds other credentials",
            explanation: "The operator and the reconcile loop overwrite the data (and labels) of the Secret a \
provisioner key is written into. Pointing it at the control plane's operator-token Secret, a license \
Secret or an API token Secret would destroy those credentials. Choose a dedicated Secret name \
(the default `<name>-provisioner-key` is one).",
            kinds: &[Kind::CoderProvisioner, Kind::CoderProvisionerKey],
            default_mode: Mode::Enforce,
        },
        check: written_secret_conflict,
    },
];

// === secret-ref ===

fn secret_refs(s: &Subject<'_>, r: &mut Report) {
    match s.object {
        Object::ControlPlane(cp) => {
            let spec = &cp.spec;
            if let Some(lic) = &spec.license_secret_ref {
                secret_key_ref(s, r, &fp!("spec", "licenseSecretRef"), lic, coder::DEFAULT_LICENSE_KEY);
            }
            env_refs(s, r, &fp!("spec", "extraEnv"), &spec.extra_env);
            env_from_refs(s, r, &fp!("spec", "envFrom"), &spec.env_from);
            for (i, name) in spec.tls.secret_names.iter().enumerate() {
                let path = fp!("spec", "tls", "secretNames", i);
                for key in ["tls.crt", "tls.key"] {
                    check_secret(s, r, &path, name, Some(key));
                }
            }
            for (i, c) in spec.certs.secrets.iter().enumerate() {
                check_secret(s, r, &fp!("spec", "certs", "secrets", i), &c.name, Some(&c.key));
            }
        }
        Object::Provisioner(p) => env_refs(s, r, &fp!("spec", "extraEnv"), &p.spec.extra_env),
        Object::WorkspaceProxy(p) => {
            if let Some(t) = &p.spec.proxy_session_token_secret_ref {
                secret_key_ref(s, r, &fp!("spec", "proxySessionTokenSecretRef"), t, coder::DEFAULT_TOKEN_KEY);
            }
            if let Some(b) = &p.spec.bootstrap {
                let path = fp!("spec", "bootstrap", "credentialsSecretRef");
                secret_key_ref(s, r, &path, &b.credentials_secret_ref, coder::DEFAULT_TOKEN_KEY);
            }
            env_refs(s, r, &fp!("spec", "extraEnv"), &p.spec.extra_env);
        }
        Object::Instance(i) => {
            let spec = &i.spec;
            let refs = [
                (spec.token_secret_ref.as_ref(), "tokenSecretRef", own::DEFAULT_TOKEN_KEY),
                (spec.ca_secret_ref.as_ref(), "caSecretRef", own::DEFAULT_CA_KEY),
            ];
            for (rf, field, default) in refs {
                if let Some(rf) = rf {
                    secret_key_ref(s, r, &fp!("spec", field), rf, default);
                }
            }
            if let Some(lic) = &spec.license {
                secret_key_ref(s, r, &fp!("spec", "license", "secretRef"), &lic.secret_ref, own::DEFAULT_LICENSE_KEY);
            }
        }
        Object::AiProvider(p) => {
            for (i, rf) in p.spec.api_key_secret_refs.iter().enumerate() {
                secret_key_ref(s, r, &fp!("spec", "apiKeySecretRefs", i), rf, own::DEFAULT_API_KEY_KEY);
            }
            if let Some(b) = &p.spec.bedrock {
                if let Some(rf) = &b.access_key_ref {
                    let path = fp!("spec", "bedrock", "accessKeyRef");
                    secret_key_ref(s, r, &path, rf, own::DEFAULT_ACCESS_KEY_ID_KEY);
                }
                if let Some(rf) = &b.access_key_secret_ref {
                    let path = fp!("spec", "bedrock", "accessKeySecretRef");
                    secret_key_ref(s, r, &path, rf, own::DEFAULT_SECRET_ACCESS_KEY_KEY);
                }
            }
        }
        Object::Deployment(d) if d.is_coder() => {
            for (path, c) in d.containers() {
                env_refs(s, r, &path.key("env"), &c.env);
                env_from_refs(s, r, &path.key("envFrom"), &c.env_from);
            }
        }
        _ => {}
    }
}

fn secret_key_ref(s: &Subject<'_>, r: &mut Report, path: &FieldPath, rf: &SecretKeyRef, default_key: &str) {
    check_secret(s, r, path, &rf.name, Some(rf.key_or(default_key)));
}

fn env_refs(s: &Subject<'_>, r: &mut Report, path: &FieldPath, env: &[EnvVar]) {
    for (i, e) in env.iter().enumerate() {
        let Some(sel) = e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()) else { continue };
        if sel.optional != Some(true) {
            check_secret(s, r, &fp!(path, i, "valueFrom", "secretKeyRef"), &sel.name, Some(&sel.key));
        }
    }
}

fn env_from_refs(s: &Subject<'_>, r: &mut Report, path: &FieldPath, env_from: &[EnvFromSource]) {
    for (i, e) in env_from.iter().enumerate() {
        let Some(sel) = &e.secret_ref else { continue };
        if sel.optional != Some(true) {
            check_secret(s, r, &fp!(path, i, "secretRef"), &sel.name, None);
        }
    }
}

/// Checks that Secret `name` exists and, with `key`, that the key holds a non-empty value.
pub fn check_secret(s: &Subject<'_>, r: &mut Report, path: &FieldPath, name: &str, key: Option<&str>) {
    let ns = s.namespace();
    if name.is_empty() {
        r.deny(path.key("name"), "the Secret name is empty; name the Secret to read");
        return;
    }
    if key == Some("") {
        r.deny(path.key("key"), format!("the key of Secret {ns}/{name} is empty; name the key to read"));
        return;
    }
    match s.lookup.secret(ns, name) {
        Found::Present(info) => {
            let Some(key) = key else { return };
            let key_path = path.key("key");
            match info.key(key) {
                KeyState::Present => {}
                KeyState::Missing => r.deny(
                    key_path,
                    format!("Secret {ns}/{name} has no key {key:?}; add the key to the Secret or reference one it has"),
                ),
                KeyState::Empty => r.deny(
                    key_path,
                    format!("key {key:?} of Secret {ns}/{name} is empty; put the value in the Secret"),
                ),
            }
        }
        Found::Absent => {
            r.absent(s.key(Kind::Secret, name));
            let message = format!("Secret {ns}/{name} does not exist; create it before (or with) this object");
            if s.req.dry_run {
                r.warn(path.key("name"), message);
            } else {
                r.deny(path.key("name"), message);
            }
        }
        Found::Unknown => r.push(
            s.options.unverifiable,
            path.key("name"),
            format!(
                "Secret {ns}/{name} is not in the input, so it cannot be verified; include it or pass --assume-secret {ns}/{name}{}",
                key.map(|k| format!(":{k}")).unwrap_or_default()
            ),
        ),
    }
}

// === control-plane-ref / instance-ref ===

fn control_plane_ref(s: &Subject<'_>, r: &mut Report) {
    let (path, name) = match s.object {
        Object::Provisioner(p) => (fp!("spec", "controlPlaneRef", "name"), p.spec.control_plane_ref.name.as_str()),
        Object::Instance(i) => match &i.spec.control_plane_ref {
            Some(rf) => (fp!("spec", "controlPlaneRef", "name"), rf.name.as_str()),
            None => return,
        },
        _ => return,
    };
    check_object(s, r, &path, Kind::CoderControlPlane, name);
}

fn instance_ref(s: &Subject<'_>, r: &mut Report) {
    let name = match s.object {
        Object::Organization(o) => &o.spec.instance_ref.name,
        Object::AiProvider(p) => &p.spec.instance_ref.name,
        Object::ProvisionerKey(k) => &k.spec.instance_ref.name,
        _ => return,
    };
    check_object(s, r, &fp!("spec", "instanceRef", "name"), Kind::CoderInstance, name);
}

fn check_object(s: &Subject<'_>, r: &mut Report, path: &FieldPath, kind: Kind, name: &str) {
    let ns = s.namespace();
    if name.is_empty() {
        r.deny(path.clone(), format!("the {kind} name is empty; name a {kind} in namespace {ns}"));
        return;
    }
    match s.lookup.object(kind, ns, name) {
        Found::Present(_) => {}
        Found::Absent => {
            r.absent(s.key(kind, name));
            let message = format!("{kind} {ns}/{name} does not exist; create it or fix the name");
            if s.req.dry_run { r.warn(path.clone(), message) } else { r.deny(path.clone(), message) }
        }
        Found::Unknown => r.push(
            s.options.unverifiable,
            path.clone(),
            format!("{kind} {ns}/{name} is not in the input, so the reference cannot be verified"),
        ),
    }
}

// === unique-coderd-object / license-managed-once ===

fn self_key(s: &Subject<'_>) -> ObjectKey {
    let name = s.req.object.pointer("/metadata/name").and_then(|v| v.as_str()).unwrap_or_default();
    let kind = crate::policy::Kind::of(s.req.object).unwrap_or(Kind::Secret);
    s.key(kind, name)
}

/// Other objects making `claim`.
fn others(s: &Subject<'_>, claim: &Claim) -> Vec<ObjectKey> {
    let me = self_key(s);
    s.lookup.claimants(claim).into_iter().filter(|k| *k != me).collect()
}

fn unique_claims(s: &Subject<'_>, r: &mut Report) {
    let claims = crate::policy::claims::claims_of_object(s.object, s.namespace());
    for claim in &claims {
        let (path, what) = match claim {
            Claim::Organization { name, .. } => (name_path(s), format!("organization {name:?}")),
            Claim::AiProvider { name, .. } => (fp!("spec", "name"), format!("AI provider {name:?}")),
            Claim::ProvisionerKey { organization, name, .. } => {
                (key_name_path(s), format!("provisioner key {name:?} in organization {organization:?}"))
            }
            Claim::DeploymentState { coderd } => {
                (fp!("spec"), format!("the deployment-wide settings of coderd {coderd}"))
            }
            Claim::WrittenSecret { name, .. } => (written_secret_path(s), format!("Secret {name:?}")),
            Claim::License { .. } | Claim::InstanceOf { .. } => continue,
        };
        let mut holders = others(s, claim);
        holders.extend(cross_coderd_key_holders(s, claim));
        if let Some(other) = holders.first() {
            r.deny(path, format!("{what} is already managed by {other}; keep one resource per coderd object"));
        }
    }
}

/// A provisioner key claimed through a control plane and through a `CoderInstance` that
/// fronts that control plane is the same key.
fn cross_coderd_key_holders(s: &Subject<'_>, claim: &Claim) -> Vec<ObjectKey> {
    let Claim::ProvisionerKey { namespace, coderd, organization, name } = claim else { return Vec::new() };
    let twin = |coderd: Coderd| Claim::ProvisionerKey {
        namespace: namespace.clone(),
        coderd,
        organization: organization.clone(),
        name: name.clone(),
    };
    match coderd {
        Coderd::ControlPlane(cp) => {
            let fronts = Claim::InstanceOf { namespace: namespace.clone(), control_plane: cp.clone() };
            s.lookup
                .claimants(&fronts)
                .into_iter()
                .flat_map(|inst| others(s, &twin(Coderd::Instance(inst.name))))
                .collect()
        }
        Coderd::Instance(inst) => match s.instance(inst) {
            Found::Present(i) => {
                i.spec.control_plane_ref.map(|cp| others(s, &twin(Coderd::ControlPlane(cp.name)))).unwrap_or_default()
            }
            _ => Vec::new(),
        },
    }
}

fn license_once(s: &Subject<'_>, r: &mut Report) {
    let (path, cp) = match s.object {
        Object::ControlPlane(cp) if cp.spec.license_secret_ref.is_some() => {
            (fp!("spec", "licenseSecretRef"), cp.metadata.name.clone())
        }
        Object::Instance(i) if i.spec.license.is_some() => match &i.spec.control_plane_ref {
            Some(rf) => (fp!("spec", "license"), rf.name.clone()),
            None => return,
        },
        _ => return,
    };
    let claim = Claim::License { namespace: s.namespace().to_owned(), control_plane: cp.clone() };
    if let Some(other) = others(s, &claim).first() {
        r.deny(
            path,
            format!("the license of control plane {cp} is also managed by {other}; keep the license in one of them"),
        );
    }
}

fn name_path(s: &Subject<'_>) -> FieldPath {
    match s.object {
        Object::Organization(o) if o.spec.name.is_some() => fp!("spec", "name"),
        _ => fp!("metadata", "name"),
    }
}

fn key_name_path(s: &Subject<'_>) -> FieldPath {
    match s.object {
        Object::Provisioner(p) if p.spec.key.name.as_deref().is_some_and(|n| !n.is_empty()) => {
            fp!("spec", "key", "name")
        }
        Object::ProvisionerKey(k) if k.spec.name.is_some() => fp!("spec", "name"),
        _ => fp!("metadata", "name"),
    }
}

fn written_secret_path(s: &Subject<'_>) -> FieldPath {
    match s.object {
        Object::Provisioner(_) => fp!("spec", "key", "secretName"),
        Object::ProvisionerKey(_) => fp!("spec", "secretName"),
        _ => fp!("spec", "operatorAccess", "generatedTokenSecretName"),
    }
}

// === written-secret-conflict ===

fn written_secret_conflict(s: &Subject<'_>, r: &mut Report) {
    let (target, reads): (String, Vec<(String, String)>) = match s.object {
        Object::Provisioner(p) => {
            let reads = match s.control_plane(&p.spec.control_plane_ref.name) {
                Found::Present(cp) => control_plane_secrets(&cp),
                _ => Vec::new(),
            };
            (p.key_secret_name(), reads)
        }
        Object::ProvisionerKey(k) => {
            let reads = match s.instance(&k.spec.instance_ref.name) {
                Found::Present(i) => instance_secrets(s, &i),
                _ => Vec::new(),
            };
            (k.secret_name(), reads)
        }
        _ => return,
    };
    if let Some((_, what)) = reads.iter().find(|(name, _)| *name == target) {
        r.deny(
            written_secret_path(s),
            format!("Secret {target:?} is {what}; the provisioner key would overwrite it. Use a dedicated Secret"),
        );
    }
}

fn control_plane_secrets(cp: &coder::CoderControlPlane) -> Vec<(String, String)> {
    let mut out = vec![(
        cp.operator_token_secret_name(),
        format!("the operator-token Secret of CoderControlPlane {}", cp.metadata.name),
    )];
    if let Some(lic) = &cp.spec.license_secret_ref {
        out.push((lic.name.clone(), format!("the license Secret of CoderControlPlane {}", cp.metadata.name)));
    }
    out
}

fn instance_secrets(s: &Subject<'_>, i: &own::CoderInstance) -> Vec<(String, String)> {
    let name = i.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    if let Some(t) = &i.spec.token_secret_ref {
        out.push((t.name.clone(), format!("the API token Secret of CoderInstance {name}")));
    }
    if let Some(c) = &i.spec.ca_secret_ref {
        out.push((c.name.clone(), format!("the CA Secret of CoderInstance {name}")));
    }
    if let Some(l) = &i.spec.license {
        out.push((l.secret_ref.name.clone(), format!("the license Secret of CoderInstance {name}")));
    }
    if let Some(cp) = &i.spec.control_plane_ref
        && let Found::Present(cp) = s.control_plane(&cp.name)
    {
        out.extend(control_plane_secrets(&cp));
    }
    out
}

#[cfg(test)]
mod tests;
