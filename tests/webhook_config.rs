//! `webhook-config/webhooks.yaml` is exactly what `coder-guard manifests webhooks` generates
//! with its defaults.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn checked_in_webhook_configurations_are_current() {
    let o = Command::new(env!("CARGO_BIN_EXE_coder-guard")).args(["manifests", "webhooks"]).output().unwrap();
    assert!(o.status.success());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("webhook-config/webhooks.yaml");
    let have = std::fs::read_to_string(&path).unwrap();
    assert!(
        have.as_bytes() == o.stdout,
        "webhook-config/webhooks.yaml is stale; regenerate with `cargo run -- manifests webhooks > webhook-config/webhooks.yaml`"
    );
}

#[test]
fn generated_yaml_reads_back_as_the_typed_configurations() {
    use coder_guard::api::webhooks::{Endpoint, Options, mutating, render, validating};
    let options = Options {
        endpoint: Endpoint::Url("https://127.0.0.1:9443".into()),
        namespace: "cg".into(),
        ca_bundle: Some(b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n".to_vec()),
    };
    let (docs, err) = coder_guard::yaml::parse_documents(&render(&options).unwrap());
    assert_eq!(err, None);
    assert_eq!(docs[0].value, serde_json::to_value(validating(&options)).unwrap());
    assert_eq!(docs[1].value, serde_json::to_value(mutating(&options)).unwrap());
}
