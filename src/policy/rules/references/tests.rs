use serde_json::json;

use crate::policy::Operation;
use crate::policy::finding::Severity;
use crate::policy::fixtures::*;

fn cp() -> serde_json::Value {
    control_plane("cp", json!({}))
}

#[test]
fn secret_key_present_missing_and_empty() {
    let pk = |key: &str| {
        provisioner(
            "p",
            json!({"controlPlaneRef": {"name": "cp"},
            "extraEnv": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": key}}}]}),
        )
    };
    let s = secret("s", &[("good", "v"), ("empty", "")]);
    assert!(hits(&create(&pk("good"), &[cp(), s.clone()]), "secret-ref").is_empty());
    assert_eq!(
        denied(&create(&pk("missing"), &[cp(), s.clone()]), "secret-ref"),
        ["spec.extraEnv[0].valueFrom.secretKeyRef.key"]
    );
    assert_eq!(
        denied(&create(&pk("empty"), &[cp(), s]), "secret-ref"),
        ["spec.extraEnv[0].valueFrom.secretKeyRef.key"]
    );
    let absent = create(&pk("good"), &[cp()]);
    assert_eq!(denied(&absent, "secret-ref"), ["spec.extraEnv[0].valueFrom.secretKeyRef.name"]);
    assert_eq!(absent.absent.len(), 1, "the server confirms absences with a live read");
}

#[test]
fn optional_refs_are_skipped_and_dry_run_downgrades() {
    let p = provisioner(
        "p",
        json!({"controlPlaneRef": {"name": "cp"},
        "extraEnv": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}]}),
    );
    assert!(hits(&create(&p, &[cp()]), "secret-ref").is_empty());
    let i = instance("i", json!({"url": "https://c.example.com", "tokenSecretRef": {"name": "tok"}}));
    let dry = evaluate(Operation::Create, &i, None, true, &cluster(&[]));
    assert_eq!(warned(&dry, "secret-ref"), ["spec.tokenSecretRef.name"]);
    assert!(dry.allowed());
}

#[test]
fn defaults_keys_per_field() {
    let i = instance(
        "i",
        json!({"url": "https://c.example.com", "tokenSecretRef": {"name": "tok"},
        "license": {"secretRef": {"name": "lic"}}}),
    );
    let ok = create(&i, &[secret("tok", &[("token", "t")]), secret("lic", &[("license", "jwt")])]);
    assert!(hits(&ok, "secret-ref").is_empty(), "{:?}", ok.findings);
    let wrong = create(&i, &[secret("tok", &[("api", "t")]), secret("lic", &[("license", "jwt")])]);
    assert_eq!(denied(&wrong, "secret-ref"), ["spec.tokenSecretRef.key"]);
}

#[test]
fn control_plane_tls_and_env_from() {
    let c = control_plane("cp", json!({"tls": {"secretNames": ["tls"]}, "envFrom": [{"secretRef": {"name": "env"}}]}));
    let e = create(&c, &[secret("tls", &[("tls.crt", "c")]), secret("env", &[])]);
    assert_eq!(denied(&e, "secret-ref"), ["spec.tls.secretNames[0].key"]);
}

#[test]
fn offline_refs_are_unverifiable_warnings() {
    let i = instance("i", json!({"url": "https://c.example.com", "tokenSecretRef": {"name": "tok"}}));
    let e = evaluate(Operation::Create, &i, None, false, &offline(&[]));
    assert_eq!(hits(&e, "secret-ref"), [(Severity::Warning, "spec.tokenSecretRef.name".to_owned())]);
    assert!(e.findings[0].message.contains("--assume-secret coder/tok:token"), "{}", e.findings[0].message);
}

#[test]
fn unrelated_deployments_are_not_checked() {
    let env = json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]);
    let plain = deployment("web", json!([{"name": "web", "image": "nginx", "env": env}]));
    assert!(hits(&create(&plain, &[]), "secret-ref").is_empty());
    let coderd = deployment("coder", json!([{"name": "coder", "image": "ghcr.io/coder/coder:v2.34.0", "env": env}]));
    assert_eq!(
        denied(&create(&coderd, &[]), "secret-ref"),
        ["spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name"]
    );
}

#[test]
fn control_plane_and_instance_refs() {
    let p = provisioner("p", json!({"controlPlaneRef": {"name": ""}}));
    assert_eq!(denied(&create(&p, &[]), "control-plane-ref"), ["spec.controlPlaneRef.name"]);
    let p = provisioner("p", json!({"controlPlaneRef": {"name": "cp"}}));
    assert!(hits(&create(&p, &[cp()]), "control-plane-ref").is_empty());
    assert_eq!(denied(&create(&p, &[]), "control-plane-ref"), ["spec.controlPlaneRef.name"]);
    let o = organization("o", json!({"instanceRef": {"name": "main"}}));
    assert_eq!(denied(&create(&o, &[]), "instance-ref"), ["spec.instanceRef.name"]);
    let main = instance("main", json!({"url": "https://c.example.com", "tokenSecretRef": {"name": "t"}}));
    assert!(hits(&create(&o, &[main]), "instance-ref").is_empty());
}

#[test]
fn duplicate_claims_case_insensitive() {
    let a = organization("a", json!({"instanceRef": {"name": "main"}, "name": "Data"}));
    let b = organization("b", json!({"instanceRef": {"name": "main"}, "name": "data"}));
    assert_eq!(denied(&create(&b, std::slice::from_ref(&a)), "unique-coderd-object"), ["spec.name"]);
    // Updating the same object is not a conflict with itself.
    assert!(hits(&update(&a, &a, std::slice::from_ref(&a)), "unique-coderd-object").is_empty());
    let other_instance = organization("c", json!({"instanceRef": {"name": "other"}, "name": "data"}));
    assert!(hits(&create(&other_instance, &[a]), "unique-coderd-object").is_empty());
}

#[test]
fn provisioner_key_claimed_by_operator_and_coder_guard() {
    let prov = provisioner("build", json!({"controlPlaneRef": {"name": "cp"}}));
    let inst = instance("main", json!({"controlPlaneRef": {"name": "cp"}}));
    let key = provisioner_key("k", json!({"instanceRef": {"name": "main"}, "name": "BUILD"}));
    assert_eq!(denied(&create(&key, &[cp(), inst.clone(), prov.clone()]), "unique-coderd-object"), ["spec.name"]);
    assert_eq!(denied(&create(&prov, &[cp(), inst, key]), "unique-coderd-object"), ["metadata.name"]);
}

#[test]
fn license_twice() {
    let c = control_plane("cp", json!({"licenseSecretRef": {"name": "lic"}}));
    let i = instance("main", json!({"controlPlaneRef": {"name": "cp"}, "license": {"secretRef": {"name": "lic2"}}}));
    assert_eq!(denied(&create(&i, std::slice::from_ref(&c)), "license-managed-once"), ["spec.license"]);
    assert_eq!(denied(&create(&c, &[i]), "license-managed-once"), ["spec.licenseSecretRef"]);
    let no_license = instance("main", json!({"controlPlaneRef": {"name": "cp"}}));
    assert!(hits(&create(&c, &[no_license]), "license-managed-once").is_empty());
}

#[test]
fn written_secret_must_not_be_a_credential() {
    let c = control_plane("cp", json!({"licenseSecretRef": {"name": "lic"}}));
    let p = provisioner("p", json!({"controlPlaneRef": {"name": "cp"}, "key": {"secretName": "cp-operator-token"}}));
    assert_eq!(denied(&create(&p, std::slice::from_ref(&c)), "written-secret-conflict"), ["spec.key.secretName"]);
    let p = provisioner("p", json!({"controlPlaneRef": {"name": "cp"}, "key": {"secretName": "lic"}}));
    assert_eq!(denied(&create(&p, std::slice::from_ref(&c)), "written-secret-conflict"), ["spec.key.secretName"]);
    let p = provisioner("p", json!({"controlPlaneRef": {"name": "cp"}}));
    assert!(hits(&create(&p, &[c]), "written-secret-conflict").is_empty());
    let i = instance("main", json!({"url": "https://c.example.com", "tokenSecretRef": {"name": "tok"}}));
    let k = provisioner_key("k", json!({"instanceRef": {"name": "main"}, "secretName": "tok"}));
    assert_eq!(denied(&create(&k, &[i]), "written-secret-conflict"), ["spec.secretName"]);
}

#[test]
fn two_keys_writing_one_secret() {
    let a = provisioner_key("a", json!({"instanceRef": {"name": "main"}, "secretName": "shared"}));
    let b = provisioner_key("b", json!({"instanceRef": {"name": "main"}, "secretName": "shared"}));
    assert_eq!(denied(&create(&b, &[a]), "unique-coderd-object"), ["spec.secretName"]);
}
