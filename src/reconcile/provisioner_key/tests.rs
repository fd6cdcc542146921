use std::collections::BTreeMap;

use super::plan::*;
use super::*;
use crate::api::common::LocalObjectRef;
use crate::api::own::{CoderProvisionerKeySpec, ResourceStatus, RotationPolicy};

const UID: &str = "0b4e6a52-uid";

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn resource(spec: CoderProvisionerKeySpec) -> CoderProvisionerKey {
    let mut key = CoderProvisionerKey::new("gpu-builds", spec);
    key.metadata.namespace = Some("coder".into());
    key.metadata.uid = Some(UID.into());
    key
}

fn spec() -> CoderProvisionerKeySpec {
    CoderProvisionerKeySpec {
        instance_ref: LocalObjectRef { name: "main".into() },
        organization: "default".into(),
        tags: tags(&[("gpu", "true")]),
        ..CoderProvisionerKeySpec::default()
    }
}

fn desired(policy: RotationPolicy) -> Desired {
    Desired::of(&resource(CoderProvisionerKeySpec { rotation_policy: policy, ..spec() }))
}

fn coderd_key(id: &str, name: &str, pairs: &[(&str, &str)]) -> ProvisionerKey {
    ProvisionerKey { id: id.into(), name: name.into(), organization: "org-uuid".into(), tags: tags(pairs) }
}

fn status(organization: &str, name: &str, secret_digest: &str, coderd_id: Option<&str>) -> ResourceStatus {
    ResourceStatus {
        coderd_id: coderd_id.map(Into::into),
        applied: Some(AppliedState {
            organization: Some(organization.into()),
            name: Some(name.into()),
            secret_digest: Some(secret_digest.into()),
            ..AppliedState::default()
        }),
        ..ResourceStatus::default()
    }
}

#[derive(Debug, PartialEq)]
enum Expect {
    Keep,
    Create,
    Rotate(Why),
    /// Condition type and reason of the blocked surface.
    Blocked(&'static str, &'static str),
}

fn summarise(plan: Plan) -> Expect {
    match plan {
        Plan::Keep => Expect::Keep,
        Plan::Create => Expect::Create,
        Plan::Rotate { why } => Expect::Rotate(why),
        Plan::Blocked(s) => {
            assert!(!s.ok && s.wait == Wait::Slow, "{s:?}");
            let reason: &'static str = match s.reason.as_str() {
                "SecretLost" => "SecretLost",
                "ForeignSecret" => "ForeignSecret",
                "TagsDrift" => "TagsDrift",
                other => panic!("unexpected reason {other}"),
            };
            Expect::Blocked(s.type_, reason)
        }
    }
}

#[test]
fn plans_every_combination_of_key_secret_and_policy() {
    use Expect::*;
    use RotationPolicy::{Never, OnSecretLoss};
    use SecretState::{Foreign, Matches, Missing};
    let same = coderd_key("id-1", "gpu-builds", &[("gpu", "true")]);
    let drifted = coderd_key("id-1", "gpu-builds", &[("gpu", "false"), ("zone", "a")]);
    #[rustfmt::skip]
    let table: [(Option<&ProvisionerKey>, SecretState, RotationPolicy, Expect); 18] = [
        (None, Missing, OnSecretLoss, Create),
        (None, Missing, Never, Create),
        (None, Matches, OnSecretLoss, Create),
        (None, Matches, Never, Create),
        (None, Foreign, OnSecretLoss, Create),
        (None, Foreign, Never, Create),
        (Some(&same), Missing, OnSecretLoss, Rotate(Why::SecretLost)),
        (Some(&same), Missing, Never, Blocked(SECRET_READY, "SecretLost")),
        (Some(&same), Matches, OnSecretLoss, Keep),
        (Some(&same), Matches, Never, Keep),
        (Some(&same), Foreign, OnSecretLoss, Rotate(Why::ForeignSecret)),
        (Some(&same), Foreign, Never, Blocked(SECRET_READY, "ForeignSecret")),
        (Some(&drifted), Missing, OnSecretLoss, Rotate(Why::SecretLost)),
        (Some(&drifted), Missing, Never, Blocked(SECRET_READY, "SecretLost")),
        (Some(&drifted), Matches, OnSecretLoss, Rotate(Why::TagsDrift)),
        (Some(&drifted), Matches, Never, Blocked(KEY_READY, "TagsDrift")),
        (Some(&drifted), Foreign, OnSecretLoss, Rotate(Why::ForeignSecret)),
        (Some(&drifted), Foreign, Never, Blocked(SECRET_READY, "ForeignSecret")),
    ];
    for (existing, secret, policy, expect) in table {
        let got = summarise(plan(&desired(policy), existing, secret));
        assert_eq!(got, expect, "existing {:?}, {secret:?}, {policy:?}", existing.map(|k| &k.tags));
    }
}

#[test]
fn blocked_messages_say_what_to_do() {
    let key = coderd_key("id-1", "gpu-builds", &[("gpu", "false")]);
    let message = |secret| match plan(&desired(RotationPolicy::Never), Some(&key), secret) {
        Plan::Blocked(s) => s.message,
        other => panic!("{other:?}"),
    };
    let lost = message(SecretState::Missing);
    assert!(lost.contains("Secret coder/gpu-builds-provisioner-key (key \"key\") lost the key"), "{lost}");
    assert!(lost.contains("coderd never shows it again"), "{lost}");
    assert!(lost.contains("rotationPolicy: OnSecretLoss"), "{lost}");
    assert!(message(SecretState::Foreign).contains("not coderd's key \"gpu-builds\""));
    let drift = message(SecretState::Matches);
    assert!(drift.contains("differing: gpu") && drift.contains("restore spec.tags"), "{drift}");
}

#[test]
fn keys_are_found_by_name_ignoring_case() {
    let keys = [coderd_key("a", "other", &[]), coderd_key("b", "GPU-Builds", &[])];
    assert_eq!(find(&keys, "gpu-builds").map(|k| k.id.as_str()), Some("b"));
    assert_eq!(find(&keys, "gpu"), None);
}

#[test]
fn the_secret_matches_only_as_last_written_for_this_key() {
    let d = desired(RotationPolicy::OnSecretLoss);
    let key = coderd_key("id-1", "gpu-builds", &[("gpu", "true")]);
    let written = digest(UID, &["plaintext"]);
    let other = digest(UID, &["another value"]);
    let applied = |org: &str, name: &str, id: Option<&str>| Some(status(org, name, &written, id));
    let (matches, verify) = (Check::Known(SecretState::Matches), Check::Verify);
    #[rustfmt::skip]
    let cases = [
        ("as written", applied("default", "gpu-builds", Some("id-1")), &written, matches),
        ("as written, id not yet recorded", applied("default", "gpu-builds", None), &written, matches),
        ("name differs in case only", applied("default", "GPU-builds", None), &written, matches),
        ("another value", applied("default", "gpu-builds", None), &other, verify),
        ("coderd's key was re-created", applied("default", "gpu-builds", Some("id-0")), &written, verify),
        ("written for another name", applied("default", "old", None), &written, verify),
        ("written for another organization", applied("team", "gpu-builds", None), &written, verify),
        ("no status", None, &written, verify),
    ];
    for (case, status, value, expect) in cases {
        assert_eq!(check(&d, status.as_ref(), Some(&key), Some(value)), expect, "{case}");
    }
    let recorded = applied("default", "gpu-builds", None);
    assert_eq!(check(&d, recorded.as_ref(), Some(&key), None), Check::Known(SecretState::Missing), "no value");
    let unknown = check(&d, recorded.as_ref(), None, Some(&written));
    assert_eq!(unknown, Check::Known(SecretState::Foreign), "no key in coderd: nothing to match");
}

#[test]
fn coderd_decides_whose_key_a_value_is() {
    let key = coderd_key("id-1", "gpu-builds", &[]);
    assert_eq!(verified(&key, Some(&coderd_key("id-1", "gpu-builds", &[]))), SecretState::Matches);
    assert_eq!(verified(&key, Some(&coderd_key("id-2", "cpu-builds", &[]))), SecretState::Foreign);
    assert_eq!(verified(&key, None), SecretState::Foreign);
}

#[test]
fn a_key_left_under_an_old_organization_or_name_is_stale() {
    let d = desired(RotationPolicy::OnSecretLoss);
    let applied = |org: Option<&str>, name: Option<&str>| AppliedState {
        organization: org.map(Into::into),
        name: name.map(Into::into),
        ..AppliedState::default()
    };
    let pair = |o: &str, n: &str| Some((o.to_owned(), n.to_owned()));
    let cases = [
        (None, None),
        (Some(applied(Some("default"), Some("gpu-builds"))), None),
        (Some(applied(Some("default"), Some("GPU-BUILDS"))), None),
        (Some(applied(Some("default"), None)), None),
        (Some(applied(Some("default"), Some("old"))), pair("default", "old")),
        (Some(applied(Some("team"), Some("gpu-builds"))), pair("team", "gpu-builds")),
        (Some(applied(None, Some("old"))), pair("default", "old")),
    ];
    for (applied, expect) in cases {
        assert_eq!(stale(&d, applied.as_ref()), expect, "{applied:?}");
    }
}

#[test]
fn cleanup_deletes_what_was_applied_else_what_the_spec_names() {
    let mut key = resource(CoderProvisionerKeySpec { name: Some("new-name".into()), ..spec() });
    assert_eq!(cleanup_target(&key), ("default".to_owned(), "new-name".to_owned()));
    key.status = Some(status("team", "old-name", "sha256:x", None));
    assert_eq!(cleanup_target(&key), ("team".to_owned(), "old-name".to_owned()));
}

#[test]
fn spec_defaults_and_dependencies() {
    let key = resource(CoderProvisionerKeySpec { organization: String::new(), ..spec() });
    let d = Desired::of(&key);
    assert_eq!((d.namespace.as_str(), d.organization.as_str(), d.name.as_str()), ("coder", "default", "gpu-builds"));
    assert_eq!((d.secret_name.as_str(), d.secret_key.as_str()), ("gpu-builds-provisioner-key", "key"));
    assert_eq!(d.policy, RotationPolicy::OnSecretLoss);
    assert_eq!(key.secret_names(), ["gpu-builds-provisioner-key"]);
    assert_eq!(key.instance_name(), Some("main"));

    let custom = resource(CoderProvisionerKeySpec {
        secret_name: Some("pk".into()),
        secret_key: Some("daemon-key".into()),
        ..spec()
    });
    let d = Desired::of(&custom);
    assert_eq!((d.secret_name.as_str(), d.secret_key.as_str()), ("pk", "daemon-key"));
    assert_eq!(custom.secret_names(), ["pk"]);
}

#[test]
fn tag_digests_are_salted_and_follow_the_tags() {
    let a = tags(&[("gpu", "true"), ("zone", "a")]);
    assert_eq!(tags_digest(UID, &a), tags_digest(UID, &a.clone()));
    assert_ne!(tags_digest(UID, &a), tags_digest("another-uid", &a));
    assert_ne!(tags_digest(UID, &a), tags_digest(UID, &tags(&[("gpu", "truez"), ("one", "a")])));
    assert_ne!(tags_digest(UID, &tags(&[("ab", "c")])), tags_digest(UID, &tags(&[("a", "bc")])));
}

#[test]
fn a_steady_outcome_records_the_key_and_the_value_digest() {
    let d = desired(RotationPolicy::OnSecretLoss);
    let key = coderd_key("id-1", "gpu-builds", &[("gpu", "true")]);
    let written = digest(UID, &["plaintext"]);
    let outcome = observed(&d, UID, &key, Some(written.clone()), None);
    assert!(outcome.report.ok());
    let types: Vec<&str> = outcome.report.surfaces.iter().map(|s| s.type_).collect();
    assert_eq!(types, [KEY_READY, SECRET_READY]);
    assert_eq!(outcome.coderd_id, Some(Some("id-1".to_owned())));
    let applied = outcome.applied.unwrap();
    assert_eq!(applied.secret_digest, Some(written));
    assert_eq!(applied.tags_digest, Some(tags_digest(UID, &d.tags)));
    assert_eq!((applied.organization.as_deref(), applied.name.as_deref()), (Some("default"), Some("gpu-builds")));

    let Plan::Blocked(surface) = plan(&desired(RotationPolicy::Never), Some(&key), SecretState::Missing) else {
        panic!("not blocked")
    };
    let blocked = observed(&d, UID, &key, None, Some(surface));
    let summary: Vec<(&str, bool)> = blocked.report.surfaces.iter().map(|s| (s.type_, s.ok)).collect();
    assert_eq!(summary, [(KEY_READY, true), (SECRET_READY, false)]);
}

#[test]
fn the_secret_write_owns_one_data_key_a_label_and_a_plain_owner_reference() {
    let key = resource(CoderProvisionerKeySpec { secret_key: Some("daemon-key".into()), ..spec() });
    let body = secret_body(&key, &Desired::of(&key), &Secret::new("plain"));
    let expect = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "gpu-builds-provisioner-key",
            "namespace": "coder",
            "labels": {"app.kubernetes.io/managed-by": "coder-guard"},
            "ownerReferences": [{
                "apiVersion": "coderd.coder.com/v1alpha1",
                "kind": "CoderProvisionerKey",
                "name": "gpu-builds",
                "uid": UID,
            }],
        },
        "data": {"daemon-key": "cGxhaW4="},
    });
    assert_eq!(body, expect);
}
