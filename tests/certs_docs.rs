//! Keeps `certs/cert-manager.yaml` and `certs/README.md` consistent with the code: the serving
//! Certificate names exactly what `certs generate` and `--self-signed` use, the issuer chain
//! references resolve, and the README's commands match what the binary prints.

use std::path::PathBuf;

use coder_guard::certs::service_dns_names;
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn objects() -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read("certs/cert-manager.yaml"))
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in certs/cert-manager.yaml"))
}

#[test]
fn cert_manager_chain_is_complete_and_names_the_service() {
    let objects = objects();
    assert_eq!(objects.len(), 4);
    for o in &objects {
        assert_eq!(o["apiVersion"], "cert-manager.io/v1");
        assert_eq!(o["metadata"]["namespace"], "coder-guard");
    }
    let bootstrap = find(&objects, "Issuer", "coder-guard-selfsigned");
    assert!(bootstrap["spec"]["selfSigned"].is_object());
    let ca = find(&objects, "Certificate", "coder-guard-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["issuerRef"]["name"], "coder-guard-selfsigned");
    assert_eq!(ca["spec"]["privateKey"]["rotationPolicy"], "Never");
    let ca_issuer = find(&objects, "Issuer", "coder-guard-ca");
    assert_eq!(ca_issuer["spec"]["ca"]["secretName"], ca["spec"]["secretName"]);
    let serving = find(&objects, "Certificate", "coder-guard-tls");
    assert_eq!(serving["spec"]["issuerRef"]["name"], "coder-guard-ca");
    assert_eq!(serving["spec"]["secretName"], "coder-guard-tls");
    let names: Vec<&str> =
        serving["spec"]["dnsNames"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(names, service_dns_names("coder-guard", "coder-guard"));
}

#[test]
fn readme_matches_the_manifests_and_the_commands() {
    let readme = read("certs/README.md");
    for needle in [
        "cert-manager.io/inject-ca-from: coder-guard/coder-guard-tls",
        "kubectl -n coder-guard create secret tls coder-guard-tls",
        "coder-guard certs generate --service coder-guard --namespace coder-guard --out",
        "--ca-bundle-file",
        "--tls-cert-file /certs/tls.crt --tls-key-file /certs/tls.key",
        "Argo CD",
    ] {
        assert!(readme.contains(needle), "certs/README.md lacks {needle:?}");
    }
    assert!(read("certs/cert-manager.yaml").contains("cert-manager.io/inject-ca-from: coder-guard/coder-guard-tls"));
}
