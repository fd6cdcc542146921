use base64::Engine as _;

use super::*;
use crate::api::own::BannerSpec;

fn jwt(payload: &str) -> Secret {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    Secret::new(format!("{}.{}.{}", b64(r#"{"alg":"EdDSA","kid":"2022-08-12"}"#), b64(payload), b64("sig")))
}

fn license(id: i32, uuid: &str) -> License {
    License { id, uuid: uuid.to_owned() }
}

#[test]
fn the_jti_is_read_from_the_payload() {
    assert_eq!(license_jti(&jwt(r#"{"jti":"3f1c","exp":1}"#)).unwrap(), "3f1c");
    let padded = Secret::new(format!("{}\n", jwt(r#"{"jti":"a"}"#).expose()));
    assert_eq!(license_jti(&padded).unwrap(), "a", "surrounding whitespace from a file is fine");
    for (bad, why) in [
        (Secret::new("only.two"), "three"),
        (Secret::new("a.!!!.c"), "base64url"),
        (jwt("not json"), "JSON"),
        (jwt(r#"{"exp":1}"#), "jti"),
        (jwt(r#"{"jti":""}"#), "jti"),
    ] {
        let err = license_jti(&bad).unwrap_err();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn a_license_coderd_has_is_never_uploaded_again() {
    let plan = plan_license("j1", &[license(1, "other"), license(2, "j1")], &[]);
    assert_eq!(plan, LicensePlan { upload: false, delete: vec![], keep: vec![] });
    let plan = plan_license("j1", &[license(1, "other")], &[]);
    assert!(plan.upload && plan.delete.is_empty());
}

#[test]
fn only_our_replaced_licenses_are_deleted() {
    // "old" was ours and is replaced; "theirs" was never ours; "gone" vanished from coderd.
    let listed = [license(1, "old"), license(2, "theirs"), license(3, "j2")];
    let plan = plan_license("j2", &listed, &["old".into(), "gone".into(), "j2".into()]);
    assert_eq!(plan, LicensePlan { upload: false, delete: vec![(1, "old".into())], keep: vec!["j2".into()] });
}

#[test]
fn appearance_is_the_whole_spec_with_unset_fields_empty() {
    let spec = AppearanceSpec {
        application_name: None,
        logo_url: Some("https://x/logo.png".into()),
        announcement_banners: vec![BannerSpec {
            enabled: false,
            message: "m".into(),
            background_color: "#00ff00".into(),
        }],
    };
    let desired = desired_appearance(&spec);
    assert_eq!(desired.application_name, "");
    assert_eq!(desired.logo_url, "https://x/logo.png");
    assert_eq!(
        desired.announcement_banners,
        [Banner { enabled: false, message: "m".into(), background_color: "#00ff00".into() }]
    );
}

fn org(id: &str, name: &str) -> Organization {
    Organization { id: id.into(), name: name.into(), ..Default::default() }
}

#[test]
fn organization_sync_resolves_names_and_reports_every_missing_one() {
    let orgs = [org("id-a", "alpha"), org("id-b", "beta")];
    let spec = OrganizationSyncSpec {
        field: "groups".into(),
        mapping: BTreeMap::from([("eng".into(), vec!["beta".into(), "alpha".into(), "beta".into()])]),
        assign_default: false,
    };
    let desired = desired_organization_sync(&spec, &orgs).unwrap();
    assert_eq!(desired.mapping["eng"], ["id-a", "id-b"], "sorted and deduplicated");
    assert!(!desired.organization_assign_default);
    let mut spec = spec;
    spec.mapping.insert("ops".into(), vec!["gamma".into(), "delta".into()]);
    assert_eq!(desired_organization_sync(&spec, &orgs).unwrap_err(), ["delta", "gamma"]);
}

#[test]
fn organization_sync_comparison_ignores_order() {
    let a = OrganizationSyncSettings {
        field: "f".into(),
        mapping: BTreeMap::from([("c".into(), vec!["2".into(), "1".into()])]),
        organization_assign_default: true,
    };
    let mut b = a.clone();
    b.mapping.insert("c".into(), vec!["1".into(), "2".into()]);
    assert_eq!(normalise(a.clone()), normalise(b));
    let mut c = a.clone();
    c.organization_assign_default = false;
    assert_ne!(normalise(a), normalise(c));
}

#[test]
fn every_referenced_secret_triggers_a_reconcile() {
    let instance: CoderInstance = serde_json::from_value(serde_json::json!({
        "apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderInstance",
        "metadata": {"name": "c", "namespace": "n"},
        "spec": {"url": "https://c", "tokenSecretRef": {"name": "tok"}, "caSecretRef": {"name": "ca"},
                 "license": {"secretRef": {"name": "lic"}}}
    }))
    .unwrap();
    assert_eq!(instance.secret_names(), ["tok", "ca", "lic"]);
}
