//! Names: organization, provisioner-key, AI-provider, group and daemon names that coderd or the
//! `coder` CLI would reject only at run time, and Kubernetes names the operator derives from
//! `metadata.name`. Lengths are bytes, as coderd (Go `len`) counts them.
//!
//! The predicates live in `policy::names`; this file only decides where they apply and says
//! what to do about a violation.

use super::{Rule, RuleInfo};
use crate::api::coder::nonempty;
use crate::api::common::EnvVar;
use crate::fp;
use crate::policy::config::Mode;
use crate::policy::env::DAEMON_NAME;
use crate::policy::kind::Kind;
use crate::policy::names::{
    ai_provider_name_valid, daemon_name_valid, display_name_valid, dns1035_label_valid, dns1123_subdomain_valid,
    group_name_valid, name_valid, organization_name_valid, provisioner_key_name_valid, provisioner_resource_name,
    provisioner_service_account_name, workspace_proxy_deployment_name,
};
use crate::policy::path::FieldPath;
use crate::policy::subject::{Object, Report, Subject};

/// Rules of this family.
pub const RULES: &[Rule] = &[
    Rule {
        info: RuleInfo {
            id: "organization-name",
            summary: "Organization names follow coderd's name rules",
            explanation: "coderd accepts organization names of 1–32 bytes made of ASCII letters and \
digits with single hyphens between them, and reserves `new` and `create` (and `default` for new \
organizations). A CoderOrganization with another name is never created, and a provisioner, provisioner \
key or organization-sync mapping that names one can never resolve. Set `spec.name` (the CoderOrganization \
falls back to `metadata.name`) or fix the referencing field; `default` is fine where an existing \
organization is referenced.",
            kinds: &[Kind::CoderOrganization, Kind::CoderProvisioner, Kind::CoderProvisionerKey, Kind::CoderInstance],
            default_mode: Mode::Enforce,
        },
        check: organization_names,
    },
    Rule {
        info: RuleInfo {
            id: "provisioner-key-name",
            summary: "Provisioner key names are 1–64 bytes and not reserved",
            explanation: "coderd rejects provisioner key names longer than 64 bytes and the reserved \
names `built-in`, `user-auth` and `psk` in any letter case. The operator's CRD allows 128 bytes for \
`spec.key.name` and falls back to `metadata.name`, so a long resource name leaves the provisioner stuck \
with `ProvisionerKeyFailed`. Set `spec.key.name` (CoderProvisioner) or `spec.name` \
(CoderProvisionerKey) to a short, unreserved name.",
            kinds: &[Kind::CoderProvisioner, Kind::CoderProvisionerKey],
            default_mode: Mode::Enforce,
        },
        check: provisioner_key_names,
    },
    Rule {
        info: RuleInfo {
            id: "ai-provider-name",
            summary: "AI provider names are lowercase letters and digits with single hyphens",
            explanation: "coderd stores AI providers under names matching `^[a-z0-9]+(-[a-z0-9]+)*$` \
(a database constraint as well as an API check) and the name cannot be changed later. Choose a name \
such as `openai-prod` in `spec.name`.",
            kinds: &[Kind::CoderAIProvider],
            default_mode: Mode::Enforce,
        },
        check: ai_provider_name,
    },
    Rule {
        info: RuleInfo {
            id: "kubernetes-names",
            summary: "Names used for, or derived into, Kubernetes objects are valid there",
            explanation: "The operator uses a CoderControlPlane's `metadata.name` verbatim as a Service \
name, which must be a DNS-1035 label, and writes provisioner keys into Secrets named by \
`secretName`. It derives Deployment, Role, RoleBinding and ServiceAccount names from `metadata.name`, \
cutting long names at a fixed byte and appending a hash; a cut that ends on `.` yields an invalid \
name and the reconcile fails. Rename the resource (delete and re-create it) or fix `secretName`.",
            kinds: &[
                Kind::CoderControlPlane,
                Kind::CoderProvisioner,
                Kind::CoderWorkspaceProxy,
                Kind::CoderProvisionerKey,
            ],
            default_mode: Mode::Enforce,
        },
        check: kubernetes_names,
    },
    Rule {
        info: RuleInfo {
            id: "display-names",
            summary: "Organization display names, synced group names and role names are valid",
            explanation: "coderd rejects organization display names over 64 bytes or with leading or \
trailing whitespace, and group names that break its name rules, so the organization or its group sync \
is never applied. An empty role name in role sync maps users to a role that cannot exist. Fix the \
named field.",
            kinds: &[Kind::CoderOrganization],
            default_mode: Mode::Enforce,
        },
        check: display_names,
    },
    Rule {
        info: RuleInfo {
            id: "provisioner-daemon-name",
            summary: "A provisioner daemon name set by env or --name is a valid hostname",
            explanation: "`coder provisioner start` refuses to start when `--name` or \
`CODER_PROVISIONER_DAEMON_NAME` is not 2–63 ASCII letters, digits and hyphens that start and end \
with a letter or digit, so the pods crash-loop. Fix the value, or remove it to use the pod's \
hostname. Values built from `$(VAR)` references are resolved by the kubelet and not checked.",
            kinds: &[Kind::CoderProvisioner, Kind::Deployment],
            default_mode: Mode::Enforce,
        },
        check: daemon_names,
    },
];

const ORG_CHARSET: &str = "1–32 ASCII letters and digits with single hyphens between them";

/// `<what> "<name>" <why>`, or `<what> <why>` when `why` already starts with the quoted name.
fn describe(what: &str, name: &str, why: &str) -> String {
    if why.starts_with('"') { format!("{what} {why}") } else { format!("{what} {name:?} {why}") }
}

// === organization-name ===

fn organization_names(s: &Subject<'_>, r: &mut Report) {
    match s.object {
        Object::Organization(o) => {
            let (path, name, fix) = match &o.spec.name {
                Some(n) => (fp!("spec", "name"), n.as_str(), "Fix spec.name"),
                None => {
                    let name = o.metadata.name.as_deref().unwrap_or_default();
                    (fp!("metadata", "name"), name, "Set spec.name (metadata.name is used when it is unset)")
                }
            };
            if let Some(why) = organization_name_valid(name) {
                let what = describe("organization name", name, &why);
                r.deny(path, format!("{what}. {fix}: {ORG_CHARSET}, other than new, create and default"));
            }
        }
        Object::Provisioner(p) => {
            if let Some(n) = nonempty(p.spec.organization_name.as_deref()) {
                org_reference(r, fp!("spec", "organizationName"), n);
            }
        }
        Object::ProvisionerKey(k) => org_reference(r, fp!("spec", "organization"), &k.spec.organization),
        Object::Instance(i) => {
            for (claim, orgs) in i.spec.organization_sync.iter().flat_map(|sync| &sync.mapping) {
                for (j, org) in orgs.iter().enumerate() {
                    org_reference(r, fp!("spec", "organizationSync", "mapping", claim, j), org);
                }
            }
        }
        _ => {}
    }
}

/// A reference to an existing organization by name: `NameValid` (so `default` is fine).
fn org_reference(r: &mut Report, path: FieldPath, name: &str) {
    if let Some(why) = name_valid(name) {
        let what = describe("organization name", name, &why);
        r.deny(
            path,
            format!("{what}, so no coderd organization has it. Name an existing organization, or \"default\""),
        );
    }
}

// === provisioner-key-name ===

fn provisioner_key_names(s: &Subject<'_>, r: &mut Report) {
    // (field that sets the name, whether it is unset so that metadata.name is used, the name)
    let (field, from_meta, name) = match s.object {
        Object::Provisioner(p) => ("spec.key.name", nonempty(p.spec.key.name.as_deref()).is_none(), p.key_name()),
        Object::ProvisionerKey(k) => match &k.spec.name {
            Some(n) => ("spec.name", false, n.as_str()),
            None => ("spec.name", true, k.metadata.name.as_deref().unwrap_or_default()),
        },
        _ => return,
    };
    let Some(why) = provisioner_key_name_valid(name) else { return };
    let mut message = format!("{}.", describe("provisioner key name", name, &why));
    if matches!(s.object, Object::Provisioner(_)) && name.len() > 64 {
        message.push_str(" The operator's CRD allows up to 128 bytes, but coderd rejects names over 64, so the key is never created.");
    }
    message.push_str(&format!(" Set {field} to a name of at most 64 bytes other than built-in, user-auth or psk"));
    if from_meta {
        message.push_str(" (metadata.name is used when it is unset)");
    }
    r.deny(FieldPath::parse(if from_meta { "metadata.name" } else { field }), message);
}

// === ai-provider-name ===

fn ai_provider_name(s: &Subject<'_>, r: &mut Report) {
    let Object::AiProvider(p) = s.object else { return };
    if let Some(why) = ai_provider_name_valid(&p.spec.name) {
        let what = describe("AI provider name", &p.spec.name, &why);
        r.deny(fp!("spec", "name"), format!("{what}; coderd rejects it. Choose a name such as \"openai-prod\""));
    }
}

// === kubernetes-names ===

/// A name the operator derives from `metadata.name`: what it names, the name, the longest
/// `metadata.name` kept verbatim, and the byte after which longer names are cut.
struct Derived {
    what: &'static str,
    name: String,
    verbatim: usize,
    cut: usize,
}

fn kubernetes_names(s: &Subject<'_>, r: &mut Report) {
    let (name, derived) = match s.object {
        Object::ControlPlane(cp) => {
            let name = &cp.metadata.name;
            if let Some(why) = Some(name).filter(|n| !n.is_empty()).and_then(|n| dns1035_label_valid(n)) {
                r.deny(
                    fp!("metadata", "name"),
                    format!(
                        "control plane name {name:?} {why}. The operator uses it verbatim as a Service name; \
                         re-create the CoderControlPlane under a DNS-1035 name such as \"coder\""
                    ),
                );
            }
            return;
        }
        Object::ProvisionerKey(k) => {
            secret_name(r, fp!("spec", "secretName"), k.spec.secret_name.as_deref());
            return;
        }
        Object::Provisioner(p) => {
            secret_name(r, fp!("spec", "key", "secretName"), p.spec.key.secret_name.as_deref());
            let n = p.metadata.name.as_str();
            let what = "Deployment, Role and RoleBinding";
            let sa = provisioner_service_account_name(n);
            let derived = vec![
                Derived { what, name: provisioner_resource_name(n), verbatim: 51, cut: 42 },
                Derived { what: "ServiceAccount", name: sa, verbatim: 51, cut: 42 },
            ];
            (n, derived)
        }
        Object::WorkspaceProxy(p) => {
            let n = p.metadata.name.as_str();
            (n, vec![Derived { what: "Deployment", name: workspace_proxy_deployment_name(n), verbatim: 55, cut: 46 }])
        }
        _ => return,
    };
    if name.is_empty() {
        return;
    }
    if let Some(why) = dns1123_subdomain_valid(name) {
        let message = format!("metadata.name {name:?} {why}; Kubernetes rejects it. Rename the resource");
        r.deny(fp!("metadata", "name"), message);
        return;
    }
    for d in derived {
        if let Some(why) = dns1123_subdomain_valid(&d.name) {
            r.deny(
                fp!("metadata", "name"),
                format!(
                    "the operator names this resource's {} {:?}, which is not a valid name (it {why}). Names longer \
                     than {} bytes are cut after byte {} and get a hash suffix: re-create the resource with a shorter \
                     name, or one whose first {} bytes do not end in '.'",
                    d.what, d.name, d.verbatim, d.cut, d.cut
                ),
            );
        }
    }
}

fn secret_name(r: &mut Report, path: FieldPath, name: Option<&str>) {
    let Some(name) = nonempty(name) else { return };
    if let Some(why) = dns1123_subdomain_valid(name) {
        let fix = "Use a valid Secret name, or remove the field to use the default";
        r.deny(path, format!("Secret name {name:?} {why}, so the key Secret cannot be written. {fix}"));
    }
}

// === display-names ===

fn display_names(s: &Subject<'_>, r: &mut Report) {
    let Object::Organization(o) = s.object else { return };
    if let Some(d) = &o.spec.display_name
        && let Some(why) = display_name_valid(d)
    {
        let fix = "Use at most 64 bytes with no leading or trailing whitespace";
        r.deny(fp!("spec", "displayName"), format!("display name {d:?} {why}. {fix}"));
    }
    for (idp, groups) in o.spec.group_sync.iter().flat_map(|g| &g.mapping) {
        for (i, group) in groups.iter().enumerate() {
            let why = if group.is_empty() { Some("must not be empty".to_owned()) } else { group_name_valid(group) };
            if let Some(why) = why {
                let what = describe("group name", group, &why);
                let fix = "Map the IdP group to a valid coderd group name";
                r.deny(fp!("spec", "groupSync", "mapping", idp, i), format!("{what}; coderd cannot have it. {fix}"));
            }
        }
    }
    for (value, roles) in o.spec.role_sync.iter().flat_map(|g| &g.mapping) {
        for (i, role) in roles.iter().enumerate().filter(|(_, n)| n.trim().is_empty()) {
            let fix = "name an organization role such as \"organization-admin\", or remove the entry";
            r.deny(fp!("spec", "roleSync", "mapping", value, i), format!("role name {role:?} is blank; {fix}"));
        }
    }
}

// === provisioner-daemon-name ===

fn daemon_names(s: &Subject<'_>, r: &mut Report) {
    match s.object {
        Object::Provisioner(p) => {
            daemon_env(r, &fp!("spec", "extraEnv"), &p.spec.extra_env);
            daemon_args(r, words(&fp!("spec", "extraArgs"), &p.spec.extra_args));
        }
        Object::Deployment(d) => {
            for (path, c) in d.containers().filter(|(_, c)| c.is_provisioner_daemon()) {
                daemon_env(r, &path.key("env"), &c.env);
                let (command, args) = (path.key("command"), path.key("args"));
                daemon_args(r, words(&command, &c.command).chain(words(&args, &c.args)));
            }
        }
        _ => {}
    }
}

/// Each word of a command line with its list's path and index (the word's path is built only
/// for a finding).
fn words<'a>(list: &'a FieldPath, words: &'a [String]) -> impl Iterator<Item = ((&'a FieldPath, usize), &'a str)> {
    words.iter().enumerate().map(move |(i, w)| ((list, i), w.as_str()))
}

fn daemon_env(r: &mut Report, path: &FieldPath, env: &[EnvVar]) {
    for (i, e) in env.iter().enumerate().filter(|(_, e)| e.name == DAEMON_NAME) {
        if let Some(v) = &e.value {
            check_daemon_name(r, || fp!(path, i, "value"), v, DAEMON_NAME);
        }
    }
}

/// `--name=X` and `--name X`, up to a `--` that ends the flags.
fn daemon_args<'a>(r: &mut Report, words: impl Iterator<Item = ((&'a FieldPath, usize), &'a str)>) {
    let mut rest = words.take_while(|(_, w)| *w != "--");
    while let Some(((list, i), word)) = rest.next() {
        if let Some(v) = word.strip_prefix("--name=") {
            check_daemon_name(r, || list.index(i), v, "--name");
        } else if word == "--name"
            && let Some(((list, i), v)) = rest.next()
        {
            check_daemon_name(r, || list.index(i), v, "--name");
        }
    }
}

/// Empty means "use the hostname" to the CLI; `$(VAR)` is expanded by the kubelet.
fn check_daemon_name(r: &mut Report, path: impl FnOnce() -> FieldPath, name: &str, source: &str) {
    if name.is_empty() || name.contains("$(") {
        return;
    }
    if let Some(why) = daemon_name_valid(name) {
        let fix = "Fix it, or remove it to use the pod's hostname";
        let what = format!("provisioner daemon name {name:?} (from {source})");
        r.deny(path(), format!("{what} {why}; `coder provisioner start` refuses to start. {fix}"));
    }
}

#[cfg(test)]
mod tests;
