use serde_json::{Value, json};

use crate::policy::Evaluation;
use crate::policy::fixtures::*;

fn org(spec: Value) -> Value {
    organization("acme", merge(json!({"instanceRef": {"name": "main"}}), spec))
}

fn prov(name: &str, spec: Value) -> Value {
    provisioner(name, merge(json!({"controlPlaneRef": {"name": "cp"}}), spec))
}

fn key(name: &str, spec: Value) -> Value {
    provisioner_key(name, merge(json!({"instanceRef": {"name": "main"}}), spec))
}

/// A valid Kubernetes name of `len` bytes (labels of at most 63).
fn long_name(len: usize) -> String {
    format!("{}.{}", "a".repeat(40), "b".repeat(len - 41))
}

/// The messages of `rule` for `object` on CREATE, joined.
fn messages(object: &Value, rule: &str) -> String {
    let e: Evaluation = create(object, &[]);
    e.findings.iter().filter(|f| f.rule == rule).map(|f| f.message.as_str()).collect::<Vec<_>>().join("\n")
}

/// Asserts the denied paths of `rule` for each object on CREATE.
fn table(rule: &str, cases: &[(Value, &[&str])]) {
    for (object, want) in cases {
        assert_eq!(denied(&create(object, &[]), rule), *want, "{object}\n{}", messages(object, rule));
    }
}

#[test]
fn organization_names_effective_name_and_boundaries() {
    let meta = |name: &str| organization(name, json!({"instanceRef": {"name": "main"}}));
    table(
        "organization-name",
        &[
            (org(json!({"name": "a".repeat(32)})), &[]),
            (org(json!({"name": "a".repeat(33)})), &["spec.name"]),
            (org(json!({"name": "Data-Science"})), &[]),
            (org(json!({"name": "default"})), &["spec.name"]),
            (org(json!({"name": "équipe"})), &["spec.name"]),
            (org(json!({"name": ""})), &["spec.name"]),
            (org(json!({"name": "a--b"})), &["spec.name"]),
            (meta("acme"), &[]),
            (meta("new"), &["metadata.name"]),
        ],
    );
    assert!(messages(&meta("create"), "organization-name").contains("Set spec.name"));
    assert!(messages(&org(json!({"name": "new"})), "organization-name").contains("Fix spec.name"));
}

#[test]
fn organization_references_allow_default() {
    let inst = |mapping: Value| {
        let sync = json!({"field": "groups", "mapping": mapping});
        instance(
            "main",
            json!({"url": "https://c.example.com", "tokenSecretRef": {"name": "t"}, "organizationSync": sync}),
        )
    };
    table(
        "organization-name",
        &[
            (prov("p", json!({})), &[]),
            (prov("p", json!({"organizationName": ""})), &[]),
            (prov("p", json!({"organizationName": "default"})), &[]),
            (prov("p", json!({"organizationName": "a".repeat(32)})), &[]),
            (prov("p", json!({"organizationName": "a".repeat(33)})), &["spec.organizationName"]),
            (key("k", json!({})), &[]),
            (key("k", json!({"organization": "data science"})), &["spec.organization"]),
            (key("k", json!({"organization": ""})), &["spec.organization"]),
            (inst(json!({"eng": ["default", "platform"]})), &[]),
            (inst(json!({"eng": ["ok"], "ops": ["ok", "bad_org"]})), &["spec.organizationSync.mapping.ops[1]"]),
        ],
    );
    assert!(messages(&key("k", json!({"organization": "-x"})), "organization-name").contains("Name an existing"));
}

#[test]
fn provisioner_key_names_count_bytes() {
    let named = |n: &str| prov("p", json!({"key": {"name": n}}));
    table(
        "provisioner-key-name",
        &[
            (prov("build", json!({})), &[]),
            (prov("build", json!({"key": {"name": ""}})), &[]),
            (named(&"k".repeat(64)), &[]),
            (named(&"k".repeat(65)), &["spec.key.name"]),
            (named(&"é".repeat(32)), &[]),
            (named(&"é".repeat(33)), &["spec.key.name"]),
            (named("PSK"), &["spec.key.name"]),
            (named("Built-In"), &["spec.key.name"]),
            (named("psk2"), &[]),
            (prov(&long_name(64), json!({})), &[]),
            (prov(&long_name(65), json!({})), &["metadata.name"]),
            (key("k", json!({"name": "USER-AUTH"})), &["spec.name"]),
            (key("k", json!({"name": ""})), &["spec.name"]),
            (key("k", json!({"name": "x".repeat(64)})), &[]),
            (key("psk", json!({})), &["metadata.name"]),
        ],
    );
    let long = messages(&named(&"k".repeat(65)), "provisioner-key-name");
    assert!(long.contains("128") && long.contains("Set spec.key.name"), "{long}");
    let meta = messages(&prov(&long_name(65), json!({})), "provisioner-key-name");
    assert!(meta.contains("metadata.name is used when it is unset"), "{meta}");
    let reserved = messages(&key("k", json!({"name": "Psk"})), "provisioner-key-name");
    assert!(!reserved.contains("128") && reserved.contains("Set spec.name"), "{reserved}");
}

#[test]
fn ai_provider_names() {
    let p = |name: &str| {
        let spec = json!({"instanceRef": {"name": "main"}, "name": name, "type": "openai", "baseURL": "https://a.b"});
        ai_provider("p", spec)
    };
    table(
        "ai-provider-name",
        &[
            (p("openai-prod"), &[]),
            (p("a1"), &[]),
            (p("OpenAI"), &["spec.name"]),
            (p("a--b"), &["spec.name"]),
            (p("-a"), &["spec.name"]),
            (p(""), &["spec.name"]),
        ],
    );
    assert!(messages(&p("X"), "ai-provider-name").contains("Choose a name"));
}

#[test]
fn control_plane_and_secret_names() {
    let cp = |name: &str| control_plane(name, json!({}));
    table(
        "kubernetes-names",
        &[
            (cp("coder"), &[]),
            (cp(&"a".repeat(63)), &[]),
            (cp(&"a".repeat(64)), &["metadata.name"]),
            (cp("1coder"), &["metadata.name"]),
            (cp("coder.prod"), &["metadata.name"]),
            (prov("p", json!({"key": {"secretName": "keys.build"}})), &[]),
            (prov("p", json!({"key": {"secretName": ""}})), &[]),
            (prov("p", json!({"key": {"secretName": "Build_Key"}})), &["spec.key.secretName"]),
            (key("k", json!({"secretName": "UPPER"})), &["spec.secretName"]),
            (key("k", json!({})), &[]),
        ],
    );
    assert!(messages(&cp("Coder"), "kubernetes-names").contains("Service name"));
}

#[test]
fn derived_names_cut_on_a_dot() {
    let dotted = |head: usize, tail: usize| format!("{}.{}", "a".repeat(head), "b".repeat(tail));
    let proxy = |name: &str| workspace_proxy(name, json!({}));
    table(
        "kubernetes-names",
        &[
            // 51 bytes: kept verbatim, so the dot inside is harmless.
            (prov(&dotted(41, 9), json!({})), &[]),
            // 52 bytes: cut after byte 42, which is the dot.
            (prov(&dotted(41, 10), json!({})), &["metadata.name", "metadata.name"]),
            (prov(&dotted(40, 20), json!({})), &[]),
            (prov("Upper", json!({})), &["metadata.name"]),
            (proxy(&dotted(45, 9)), &[]),
            (proxy(&dotted(45, 10)), &["metadata.name"]),
        ],
    );
    let text = messages(&prov(&dotted(41, 10), json!({})), "kubernetes-names");
    assert!(
        text.contains("ServiceAccount") && text.matches("longer than 51 bytes are cut after byte 42").count() == 2,
        "{text}"
    );
}

#[test]
fn display_group_and_role_names() {
    let groups = json!({"groupSync": {"field": "groups", "mapping": {"idp": ["eng", "new", ""]}}});
    let roles = json!({"roleSync": {"field": "roles", "mapping": {"admins": ["organization-admin", " "]}}});
    table(
        "display-names",
        &[
            (org(json!({"displayName": "Data Science"})), &[]),
            (org(json!({"displayName": ""})), &[]),
            (org(json!({"displayName": " Data"})), &["spec.displayName"]),
            (org(json!({"displayName": "d".repeat(64)})), &[]),
            (org(json!({"displayName": "d".repeat(65)})), &["spec.displayName"]),
            (org(json!({"displayName": "é".repeat(32)})), &[]),
            (org(json!({"displayName": "é".repeat(33)})), &["spec.displayName"]),
            (org(groups), &["spec.groupSync.mapping.idp[1]", "spec.groupSync.mapping.idp[2]"]),
            (org(roles), &["spec.roleSync.mapping.admins[1]"]),
        ],
    );
    assert!(messages(&org(json!({"displayName": "x "})), "display-names").contains("no leading or trailing"));
}

#[test]
fn daemon_names_in_provisioners() {
    let env = |v: &str| prov("p", json!({"extraEnv": [{"name": "CODER_PROVISIONER_DAEMON_NAME", "value": v}]}));
    let args = |a: Value| prov("p", json!({"extraArgs": a}));
    let from = json!({"name": "CODER_PROVISIONER_DAEMON_NAME", "valueFrom": {"fieldRef": {"fieldPath": "x"}}});
    table(
        "provisioner-daemon-name",
        &[
            (env("build-1"), &[]),
            (env(&"a".repeat(63)), &[]),
            (env(&"a".repeat(64)), &["spec.extraEnv[0].value"]),
            (env("a"), &["spec.extraEnv[0].value"]),
            (env("-bad"), &["spec.extraEnv[0].value"]),
            (env(""), &[]),
            (env("$(POD_NAME)"), &[]),
            (prov("p", json!({"extraEnv": [from]})), &[]),
            (args(json!(["--name", "x_y"])), &["spec.extraArgs[1]"]),
            (args(json!(["--name=ok-name"])), &[]),
            (args(json!(["--verbose", "--name=bad.name"])), &["spec.extraArgs[1]"]),
            (args(json!(["--", "--name=bad.name"])), &[]),
        ],
    );
    assert!(messages(&args(json!(["--name=_"])), "provisioner-daemon-name").contains("use the pod's hostname"));
}

#[test]
fn daemon_names_in_deployments() {
    let dep = |command: Value, args: Value| {
        let c = json!([{"name": "p", "image": "ghcr.io/coder/coder:v2.34.0", "command": command, "args": args}]);
        deployment("d", c)
    };
    let at = |field: &str| format!("spec.template.spec.containers[0].{field}");
    table(
        "provisioner-daemon-name",
        &[
            (dep(json!([]), json!(["provisioner", "start", "--name", "ok-1"])), &[]),
            (dep(json!([]), json!(["provisioner", "start", "--name", "bad.name"])), &[&at("args[3]")]),
            (dep(json!(["coder", "provisioner", "start", "--name"]), json!(["x_y"])), &[&at("args[0]")]),
            // Not a provisioner daemon: `--name` means something else there.
            (dep(json!([]), json!(["server", "--name", "bad.name"])), &[]),
        ],
    );
}
