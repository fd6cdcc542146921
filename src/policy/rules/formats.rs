//! Value formats and required fields: URLs, colours, ARNs, regexes, enum combinations, numeric
//! ranges, fields that must be set together, and fields that must not change on UPDATE. Each
//! is something coderd or the operator rejects only at run time (or that the CRD schema checks
//! only in a cluster, not in `check`).
//!
//! Empty Secret names are left to `secret-ref`. Messages never repeat a URL, which may carry
//! credentials.

use super::{Rule, RuleInfo};
use crate::api::coder::{ControlPlaneSpec, nonempty};
use crate::api::common::EnvVar;
use crate::api::own::AiProviderType;
use crate::fp;
use crate::policy::config::Mode;
use crate::policy::kind::Kind;
use crate::policy::names::{banner_color_valid, http_url_valid, iam_role_arn_valid, is_url_env, regex_valid};
use crate::policy::path::FieldPath;
use crate::policy::subject::{Object, Report, Subject};

/// Rules of this family.
pub const RULES: &[Rule] = &[
    Rule {
        info: RuleInfo {
            id: "required-fields",
            summary: "Fields that must be set, set together, or not set together",
            explanation: "The operator stops reconciling (with an assertion error) on blank workspace \
namespaces or gateway parent fields and on a wildcard TLS Secret without a wildcard host, and a workspace \
proxy without an access URL or a session token never starts. A CoderInstance needs exactly one of \
`url` and `controlPlaneRef` and a token unless it uses the control plane's; an AI provider of type \
`bedrock` needs `bedrock.region`. Set the field the finding names, or remove the one it conflicts with.",
            kinds: &[Kind::CoderControlPlane, Kind::CoderWorkspaceProxy, Kind::CoderInstance, Kind::CoderAIProvider],
            default_mode: Mode::Enforce,
        },
        check: required_fields,
    },
    Rule {
        info: RuleInfo {
            id: "url-format",
            summary: "URLs are absolute http(s) URLs with a host",
            explanation: "coderd, the workspace proxy and the reconcile loop parse these values as \
absolute `http` or `https` URLs; anything else fails at start-up or on every reconcile. Write the full \
URL, scheme included, e.g. `https://coder.example.com`. A logo may also be a path on coderd starting with \
`/`. Env values built from `$(VAR)` references are resolved by the kubelet and not checked.",
            kinds: &[
                Kind::CoderInstance,
                Kind::CoderAIProvider,
                Kind::CoderWorkspaceProxy,
                Kind::CoderControlPlane,
                Kind::Deployment,
            ],
            default_mode: Mode::Enforce,
        },
        check: url_formats,
    },
    Rule {
        info: RuleInfo {
            id: "banner-color",
            summary: "Announcement banner colours are #RRGGBB",
            explanation: "coderd rejects the whole appearance update when any banner's background colour \
is not `#` followed by six hex digits, disabled banners included, so no appearance setting is applied. \
Write colours such as `#004852`.",
            kinds: &[Kind::CoderInstance],
            default_mode: Mode::Enforce,
        },
        check: banner_colors,
    },
    Rule {
        info: RuleInfo {
            id: "iam-role-arn",
            summary: "Bedrock role ARNs are IAM role ARNs",
            explanation: "coderd rejects a Bedrock provider whose role ARN is not an IAM role ARN, so the \
provider is never created or updated. Use the form `arn:aws:iam::<12-digit account ID>:role/<name>` \
(other AWS partitions such as `aws-cn` are fine).",
            kinds: &[Kind::CoderAIProvider],
            default_mode: Mode::Enforce,
        },
        check: iam_role_arns,
    },
    Rule {
        info: RuleInfo {
            id: "regex-compiles",
            summary: "Group sync regex filters compile",
            explanation: "coderd compiles `groupSync.regexFilter` as a Go (RE2) regular expression and \
rejects the group sync settings when it does not compile, so no group sync is applied. Fix the \
expression; the finding quotes the compiler's error.",
            kinds: &[Kind::CoderOrganization],
            default_mode: Mode::Enforce,
        },
        check: regexes_compile,
    },
    Rule {
        info: RuleInfo {
            id: "ai-provider-settings",
            summary: "AI provider settings fit the provider type",
            explanation: "coderd accepts Bedrock settings only for types `anthropic` and `bedrock`, \
rejects API keys for types `bedrock` and `copilot`, and keeps at most five keys per provider. A \
provider that breaks these rules is never created or updated. Remove the settings the type does not take.",
            kinds: &[Kind::CoderAIProvider],
            default_mode: Mode::Enforce,
        },
        check: ai_provider_settings,
    },
    Rule {
        info: RuleInfo {
            id: "numeric-ranges",
            summary: "Replicas, grace periods and ports are in range",
            explanation: "The operator copies these numbers into Deployments and Services, where Kubernetes \
rejects negative replica counts and grace periods and ports outside 1–65535; the operator's reconcile \
then fails on every attempt. Use a value in range.",
            kinds: &[Kind::CoderControlPlane, Kind::CoderProvisioner, Kind::CoderWorkspaceProxy],
            default_mode: Mode::Enforce,
        },
        check: numeric_ranges,
    },
    Rule {
        info: RuleInfo {
            id: "immutable-fields",
            summary: "Identity fields do not change on UPDATE",
            explanation: "coderd cannot rename an AI provider or change its type, and a resource's \
`instanceRef` decides which coderd owns the object, so changing these fields would orphan the old \
object. To change one, delete the resource and create it again.",
            kinds: &[Kind::CoderOrganization, Kind::CoderAIProvider, Kind::CoderProvisionerKey],
            default_mode: Mode::Enforce,
        },
        check: immutable_fields,
    },
];

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

// === required-fields ===

fn required_fields(s: &Subject<'_>, r: &mut Report) {
    match s.object {
        Object::ControlPlane(cp) => control_plane_required(&cp.spec, r),
        Object::WorkspaceProxy(p) => {
            let spec = &p.spec;
            let bootstrap_url = spec.bootstrap.as_ref().is_some_and(|b| !b.coder_url.is_empty());
            if nonempty(spec.primary_access_url.as_deref()).is_none() && !bootstrap_url {
                let fix = "set spec.primaryAccessURL to coderd's URL, or spec.bootstrap.coderURL";
                r.deny(fp!("spec", "primaryAccessURL"), format!("the proxy has no primary access URL; {fix}"));
            }
            if spec.proxy_session_token_secret_ref.is_none() && spec.bootstrap.is_none() {
                r.deny(
                    fp!("spec", "proxySessionTokenSecretRef"),
                    "the proxy has no session token; set spec.proxySessionTokenSecretRef, or spec.bootstrap to \
                     have the operator register the proxy and create one",
                );
            }
        }
        Object::Instance(i) => {
            let (url, cp) = (&i.spec.url, &i.spec.control_plane_ref);
            if url.is_some() && cp.is_some() {
                r.deny(
                    fp!("spec", "url"),
                    "spec.url and spec.controlPlaneRef are mutually exclusive; remove spec.url to use the control \
                     plane's URL, or remove spec.controlPlaneRef",
                );
            } else if url.is_none() && cp.is_none() {
                let fix = "set spec.url to coderd's URL, or spec.controlPlaneRef to a CoderControlPlane";
                r.deny(fp!("spec", "url"), format!("the instance has no coderd to talk to; {fix}"));
            }
            if i.spec.token_secret_ref.is_none() && cp.is_none() {
                r.deny(
                    fp!("spec", "tokenSecretRef"),
                    "a token is required unless spec.controlPlaneRef is set; reference a Secret holding the API \
                     token of a dedicated automation account",
                );
            }
        }
        Object::AiProvider(p) => {
            if p.spec.type_ == AiProviderType::Bedrock && p.spec.bedrock.is_none() {
                let fix = "add spec.bedrock with at least region";
                r.deny(fp!("spec", "bedrock"), format!("type bedrock requires Bedrock settings; {fix}"));
            }
            if let Some(b) = &p.spec.bedrock
                && blank(&b.region)
            {
                let fix = "set the AWS region, e.g. us-east-1";
                r.deny(fp!("spec", "bedrock", "region"), format!("the Bedrock region is empty; {fix}"));
            }
        }
        _ => {}
    }
}

fn control_plane_required(spec: &ControlPlaneSpec, r: &mut Report) {
    for (i, ns) in spec.rbac.workspace_namespaces.iter().enumerate().filter(|(_, n)| blank(n)) {
        let fix = "name a namespace or remove the entry";
        r.deny(
            fp!("spec", "rbac", "workspaceNamespaces", i),
            format!("workspace namespace {ns:?} is blank and stops the operator's reconcile; {fix}"),
        );
    }
    if let Some(expose) = &spec.expose {
        if expose.ingress.is_some() && expose.gateway.is_some() {
            let fix = "remove one of spec.expose.ingress and spec.expose.gateway";
            r.deny(fp!("spec", "expose"), format!("only one of ingress or gateway may be set; {fix}"));
        }
        if let Some(ing) = &expose.ingress
            && ing.tls.as_ref().is_some_and(|t| nonempty(t.wildcard_secret_name.as_deref()).is_some())
            && nonempty(ing.wildcard_host.as_deref()).is_none()
        {
            r.deny(
                fp!("spec", "expose", "ingress", "wildcardHost"),
                "tls.wildcardSecretName is set but wildcardHost is empty; set wildcardHost (e.g. \
                 *.coder.example.com) or remove tls.wildcardSecretName",
            );
        }
        for (i, p) in expose.gateway.iter().flat_map(|g| g.parent_refs.iter().enumerate()) {
            for (field, value) in [("namespace", &p.namespace), ("sectionName", &p.section_name)] {
                if value.as_deref().is_some_and(blank) {
                    r.deny(
                        fp!("spec", "expose", "gateway", "parentRefs", i, field),
                        format!(
                            "{field} is set but blank and stops the operator's reconcile; set a value or remove it"
                        ),
                    );
                }
            }
        }
    }
    for (i, _) in spec.env_from.iter().enumerate().filter(|(_, e)| e.config_map_ref.is_some() && e.secret_ref.is_some())
    {
        r.deny(
            fp!("spec", "envFrom", i),
            "an envFrom entry may set configMapRef or secretRef, not both; split it into two entries",
        );
    }
}

// === url-format ===

fn url_formats(s: &Subject<'_>, r: &mut Report) {
    match s.object {
        Object::Instance(i) => {
            if let Some(url) = &i.spec.url {
                check_url(r, fp!("spec", "url"), url, "coderd's URL");
            }
            let logo = i.spec.appearance.as_ref().and_then(|a| nonempty(a.logo_url.as_deref()));
            if let Some(why) = logo.filter(|l| !l.starts_with('/')).and_then(http_url_valid) {
                let fix = "write an absolute http(s) URL, or a path on coderd starting with /";
                r.deny(fp!("spec", "appearance", "logoURL"), format!("the logo URL {why}; {fix}"));
            }
        }
        Object::AiProvider(p) => check_url(r, fp!("spec", "baseURL"), &p.spec.base_url, "the provider's API URL"),
        Object::WorkspaceProxy(p) => {
            if let Some(url) = nonempty(p.spec.primary_access_url.as_deref()) {
                check_url(r, fp!("spec", "primaryAccessURL"), url, "coderd's URL");
            }
            if let Some(b) = &p.spec.bootstrap {
                check_url(r, fp!("spec", "bootstrap", "coderURL"), &b.coder_url, "coderd's URL");
            }
        }
        Object::ControlPlane(cp) => env_urls(r, &fp!("spec", "extraEnv"), &cp.spec.extra_env),
        Object::Deployment(d) if d.is_coder() => {
            for (path, c) in d.containers() {
                env_urls(r, &path.key("env"), &c.env);
            }
        }
        _ => {}
    }
}

/// Literal, non-empty values of URL env vars (empty means "unset" to coderd).
fn env_urls(r: &mut Report, path: &FieldPath, env: &[EnvVar]) {
    for (i, e) in env.iter().enumerate().filter(|(_, e)| is_url_env(&e.name)) {
        if let Some(v) = nonempty(e.value.as_deref()).filter(|v| !v.contains("$(")) {
            check_url(r, fp!(path, i, "value"), v, &e.name);
        }
    }
}

fn check_url(r: &mut Report, path: FieldPath, url: &str, what: &str) {
    if let Some(why) = http_url_valid(url) {
        let fix = "write an absolute http(s) URL with a host, e.g. https://coder.example.com";
        r.deny(path, format!("{what} {why}; {fix}"));
    }
}

// === banner-color / iam-role-arn / regex-compiles ===

fn banner_colors(s: &Subject<'_>, r: &mut Report) {
    let Object::Instance(i) = s.object else { return };
    let banners = i.spec.appearance.iter().flat_map(|a| a.announcement_banners.iter().enumerate());
    for (n, b) in banners {
        if let Some(why) = banner_color_valid(&b.background_color) {
            let color = &b.background_color;
            r.deny(
                fp!("spec", "appearance", "announcementBanners", n, "backgroundColor"),
                format!(
                    "background colour {color:?} {why}; coderd rejects the whole appearance update, even for a \
                     disabled banner. Use #RRGGBB, e.g. #004852"
                ),
            );
        }
    }
}

fn iam_role_arns(s: &Subject<'_>, r: &mut Report) {
    let Object::AiProvider(p) = s.object else { return };
    let arn = p.spec.bedrock.as_ref().and_then(|b| nonempty(b.role_arn.as_deref()));
    if let Some(why) = arn.and_then(iam_role_arn_valid) {
        r.deny(
            fp!("spec", "bedrock", "roleARN"),
            format!("roleARN {why}; coderd rejects it. Copy the role's ARN from the IAM console"),
        );
    }
}

fn regexes_compile(s: &Subject<'_>, r: &mut Report) {
    let Object::Organization(o) = s.object else { return };
    let Some(filter) = o.spec.group_sync.as_ref().and_then(|g| g.regex_filter.as_deref()) else { return };
    if let Some(why) = regex_valid(filter) {
        let fix = "Fix it (Go RE2 syntax) or remove it";
        r.deny(
            fp!("spec", "groupSync", "regexFilter"),
            format!("the regular expression does not compile: {why}. {fix}"),
        );
    }
}

// === ai-provider-settings ===

fn ai_provider_settings(s: &Subject<'_>, r: &mut Report) {
    let Object::AiProvider(p) = s.object else { return };
    let (t, spec) = (p.spec.type_, &p.spec);
    if spec.bedrock.is_some() && !matches!(t, AiProviderType::Anthropic | AiProviderType::Bedrock) {
        let fix = "remove spec.bedrock, or use type anthropic or bedrock";
        let what = format!("Bedrock settings are only allowed with type anthropic or bedrock, not {}", t.as_str());
        r.deny(fp!("spec", "bedrock"), format!("{what}; {fix}"));
    }
    let keys = spec.api_key_secret_refs.len();
    if keys > 0 && matches!(t, AiProviderType::Bedrock | AiProviderType::Copilot) {
        let fix = "remove spec.apiKeySecretRefs";
        r.deny(fp!("spec", "apiKeySecretRefs"), format!("coderd takes no API keys for type {}; {fix}", t.as_str()));
    } else if keys > 5 {
        let fix = "remove the extra entries";
        let what = format!("{keys} API keys are listed; coderd keeps at most 5 per provider");
        r.deny(fp!("spec", "apiKeySecretRefs"), format!("{what}; {fix}"));
    }
}

// === numeric-ranges ===

fn numeric_ranges(s: &Subject<'_>, r: &mut Report) {
    let (replicas, port, grace) = match s.object {
        Object::ControlPlane(cp) => (cp.spec.replicas, cp.spec.service.port, None),
        Object::WorkspaceProxy(p) => (p.spec.replicas, p.spec.service.port, None),
        Object::Provisioner(p) => (p.spec.replicas, None, p.spec.termination_grace_period_seconds),
        _ => return,
    };
    if let Some(n) = replicas.filter(|n| *n < 0) {
        r.deny(fp!("spec", "replicas"), format!("replicas is {n}; use 0 or more"));
    }
    if let Some(n) = grace.filter(|n| *n < 0) {
        r.deny(fp!("spec", "terminationGracePeriodSeconds"), format!("the grace period is {n}; use 0 or more seconds"));
    }
    if let Some(p) = port.filter(|p| !(1..=65535).contains(p)) {
        r.deny(fp!("spec", "service", "port"), format!("service port {p} is outside 1–65535; use a port such as 80"));
    }
}

// === immutable-fields ===

fn immutable_fields(s: &Subject<'_>, r: &mut Report) {
    let Some(old) = s.old.filter(|_| s.is_update()) else { return };
    let instance = fp!("spec", "instanceRef", "name");
    // (path, old value, new value)
    let fields: Vec<(FieldPath, String, String)> = match (old, s.object) {
        (Object::AiProvider(o), Object::AiProvider(n)) => vec![
            (fp!("spec", "name"), o.spec.name.clone(), n.spec.name.clone()),
            (fp!("spec", "type"), o.spec.type_.as_str().to_owned(), n.spec.type_.as_str().to_owned()),
            (instance, o.spec.instance_ref.name.clone(), n.spec.instance_ref.name.clone()),
        ],
        (Object::Organization(o), Object::Organization(n)) => {
            vec![(instance, o.spec.instance_ref.name.clone(), n.spec.instance_ref.name.clone())]
        }
        (Object::ProvisionerKey(o), Object::ProvisionerKey(n)) => {
            vec![(instance, o.spec.instance_ref.name.clone(), n.spec.instance_ref.name.clone())]
        }
        _ => return,
    };
    for (path, before, after) in fields.into_iter().filter(|(_, before, after)| before != after) {
        r.deny(
            path.clone(),
            format!(
                "{path} is immutable (it was {before:?}, now {after:?}); set it back, or delete and re-create the \
                 resource to change it"
            ),
        );
    }
}

#[cfg(test)]
mod tests;
