//! The checked-in CRDs are exactly what `coder-guard manifests crds` generates.

use std::path::Path;

use coder_guard::api::crds;

#[test]
fn checked_in_crds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/coder-guard/crds");
    let all = crds::all();
    for crd in &all {
        let path = dir.join(crds::file_name(crd));
        let want = crds::render(crd).unwrap();
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale; regenerate with `cargo run -- manifests crds --out charts/coder-guard/crds`",
            path.display()
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, all.len(), "charts/coder-guard/crds holds files that are not generated CRDs");
}

#[test]
fn crds_round_trip_through_the_yaml_loader() {
    for crd in crds::all() {
        let text = crds::render(&crd).unwrap();
        let doc = coder_guard::yaml::parse_single(&text).unwrap();
        assert_eq!(doc.value, serde_json::to_value(&crd).unwrap(), "{}", crds::file_name(&crd));
    }
}

#[test]
fn crds_carry_schema_constraints_and_printer_columns() {
    let all = serde_json::to_value(crds::all()).unwrap();
    let text = all.to_string();
    for needle in [
        r#""maxLength":32"#,
        r#""maxLength":64"#,
        r#""pattern":"^[a-z0-9]+(-[a-z0-9]+)*$""#,
        r#""rule":"self == oldSelf""#,
        r#""rule":"has(self.url) != has(self.controlPlaneRef)""#,
        r#""enum":["Retain","Delete"]"#,
        r#""enum":["OnSecretLoss","Never"]"#,
        r#""maxItems":5"#,
        r#"".status.conditions[?(@.type==\"Ready\")].status""#,
    ] {
        assert!(text.contains(needle), "generated CRDs lack {needle}");
    }
    for crd in all.as_array().unwrap() {
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["versions"][0]["subresources"]["status"], serde_json::json!({}));
    }
}
