use std::marker::PhantomData;

use base64::Engine as _;
use kube::api::ObjectMeta;

use super::*;
use sha2::Digest as _;

const NS: &str = "builds";
const SECRET: &str = "gpu-builds-provisioner-key";

fn checksum(value: &str) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(value.as_bytes()))
}

fn key_env(secret: &str) -> Value {
    json!([
        {"name": "CODER_URL", "value": "https://coder.example.com"},
        {"name": PROVISIONER_KEY, "valueFrom": {"secretKeyRef": {"name": secret, "key": "key"}}},
    ])
}

fn deployment(annotations: Value, template_annotations: Value, env: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "daemon", "namespace": NS, "resourceVersion": "41", "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": "daemon"}},
            "template": {
                "metadata": {"labels": {"app": "daemon"}, "annotations": template_annotations},
                "spec": {"containers": [{
                    "name": "coder",
                    "image": "ghcr.io/coder/coder:v2.34.0",
                    "args": ["provisioner", "start"],
                    "env": env,
                }]},
            },
        },
    })
}

/// A Deployment the webhook stamped while `SECRET` held `value`.
fn stamped(value: &str) -> Value {
    deployment(json!({}), json!({CHECKSUM_ANNOTATION: checksum(value)}), key_env(SECRET))
}

fn secret(name: &str, value: &str) -> Value {
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": {"key": encoded}})
}

fn provisioner_key(name: &str, secret_name: Option<&str>) -> Value {
    let mut spec = json!({"instanceRef": {"name": "main"}});
    if let Some(secret_name) = secret_name {
        spec["secretName"] = json!(secret_name);
    }
    json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderProvisionerKey",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn index(objects: &[Value]) -> Index {
    let mut index = Index::new(true);
    for object in objects {
        index.insert(object, NS);
    }
    index
}

fn decision(deployment: &Value, objects: &[Value]) -> Decision {
    decide(&Engine::default().mutate(&request(deployment, NS), &index(objects)), deployment)
}

fn template_checksum(deployment: &Value) -> Option<&str> {
    deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION].as_str()
}

#[test]
fn only_stamped_deployments_that_read_the_secret_are_considered() {
    let annotated = json!({PROVISIONER_KEY_ANNOTATION: "gpu-builds"});
    let mut owned = stamped("v1");
    owned["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "coder.com/v1alpha1", "kind": "CoderProvisioner", "name": "p", "uid": "u"}]);
    let mut deleting = stamped("v1");
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let cases = [
        ("stamped, reads the Secret", stamped("v1"), Some(SECRET), true),
        ("stamped, full pass", stamped("v1"), None, true),
        ("stamped, another Secret changed", stamped("v1"), Some("other"), false),
        ("not stamped", deployment(json!({}), json!({}), key_env(SECRET)), Some(SECRET), false),
        ("not stamped, full pass", deployment(json!({}), json!(null), key_env(SECRET)), None, false),
        ("owned by a CoderProvisioner", owned, None, false),
        ("being deleted", deleting, Some(SECRET), false),
        (
            "annotated, env not injected yet",
            deployment(annotated.clone(), json!({CHECKSUM_ANNOTATION: "sha256:0"}), json!([])),
            Some("any"),
            true,
        ),
        (
            "annotated, reads another Secret",
            deployment(annotated, json!({CHECKSUM_ANNOTATION: "sha256:0"}), key_env("other")),
            Some(SECRET),
            false,
        ),
        ("not a Deployment shape", json!({"spec": "broken"}), None, false),
    ];
    for (case, object, secret, expect) in cases {
        assert_eq!(considered(&object, secret), expect, "{case}");
    }
}

#[test]
fn reads_name_the_key_secrets_and_the_annotated_key() {
    let mut d = deployment(json!({PROVISIONER_KEY_ANNOTATION: "gpu-builds"}), json!({}), key_env(SECRET));
    d["spec"]["template"]["spec"]["initContainers"] = json!([{"name": "init", "env": key_env("init-secret")}]);
    let expect = Reads {
        secrets: [SECRET.to_owned(), "init-secret".to_owned()].into_iter().collect(),
        key: Some("gpu-builds".to_owned()),
    };
    assert_eq!(reads(&d), expect);
    let literal = deployment(json!({}), json!({}), json!([{"name": PROVISIONER_KEY, "value": "literal"}]));
    assert_eq!(reads(&literal), Reads::default());
}

#[test]
fn a_key_resource_names_its_secret() {
    assert_eq!(key_secret(&provisioner_key("gpu-builds", None)).as_deref(), Some(SECRET));
    assert_eq!(key_secret(&provisioner_key("gpu-builds", Some("custom"))).as_deref(), Some("custom"));
    assert_eq!(key_secret(&json!({"spec": 1})), None);
}

#[test]
fn secret_events_become_work_per_namespace() {
    let meta = |ns: &str, name: &str| PartialObjectMeta::<KubeSecret> {
        types: None,
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..ObjectMeta::default() },
        _phantom: PhantomData,
    };
    let events = vec![
        Ok(watcher::Event::Apply(meta("a", "s1"))),
        Ok(watcher::Event::Apply(meta("a", "s2"))),
        Ok(watcher::Event::Apply(meta("b", "s1"))),
        Ok(watcher::Event::Apply(meta("a", "s1"))),
        Ok(watcher::Event::Delete(meta("c", "gone"))),
        Ok(watcher::Event::Init),
        Ok(watcher::Event::InitApply(meta("d", "listed"))),
    ];
    let trigger = triggers(events);
    assert!(!trigger.full);
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    let expect: BTreeMap<String, BTreeSet<String>> =
        [("a".to_owned(), names(&["s1", "s2"])), ("b".to_owned(), names(&["s1"]))].into_iter().collect();
    assert_eq!(trigger.secrets, expect);
    assert!(triggers(vec![Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)]).full);
}

#[test]
fn re_stamping_is_an_update_of_the_live_object_to_itself() {
    let d = stamped("v1");
    let r = request(&d, NS);
    assert_eq!(r.operation, Operation::Update);
    assert_eq!((r.object, r.old_object, r.namespace, r.dry_run), (&d, Some(&d), NS, false));
}

#[test]
fn a_rotated_secret_gives_a_guarded_patch_and_a_second_pass_writes_nothing() {
    let live = stamped("old-key");
    let objects = [secret(SECRET, "rotated-key")];
    let Decision::Patch { patch, reasons } = decision(&live, &objects) else { panic!("no patch") };
    assert_eq!(reasons, ["the provisioner-key checksum is not the key's"]);
    assert!(
        matches!(&patch.0[0], PatchOperation::Test(t) if t.path.as_str() == "/metadata/resourceVersion" && t.value == json!("41")),
        "{patch:?}"
    );
    assert_eq!(patch.0.len(), 2, "{patch:?}");
    let mut stored = live.clone();
    json_patch::patch(&mut stored, &patch).unwrap();
    assert_eq!(template_checksum(&stored), Some(checksum("rotated-key").as_str()));
    assert_eq!(decision(&stored, &objects), Decision::Unchanged);

    // A concurrent change fails the guard instead of being overwritten.
    let mut moved = live;
    moved["metadata"]["resourceVersion"] = json!("42");
    assert!(json_patch::patch(&mut moved, &patch).is_err());
}

#[test]
fn a_current_stamp_or_a_missing_secret_changes_nothing() {
    assert_eq!(decision(&stamped("v1"), &[secret(SECRET, "v1")]), Decision::Unchanged);
    assert_eq!(decision(&stamped("v1"), &[]), Decision::Unchanged, "the mutator keeps the stamp");
    assert_eq!(decision(&stamped("v1"), &[secret(SECRET, "")]), Decision::Unchanged, "an empty key is no key");
}

#[test]
fn injected_deployments_follow_their_key_resource_secret() {
    let annotations = json!({PROVISIONER_KEY_ANNOTATION: "gpu-builds"});
    let live = deployment(annotations.clone(), json!({CHECKSUM_ANNOTATION: checksum("old")}), key_env("custom"));
    let objects = [provisioner_key("gpu-builds", Some("custom")), secret("custom", "new")];
    let Decision::Patch { patch, .. } = decision(&live, &objects) else { panic!("no patch") };
    let mut stored = live.clone();
    json_patch::patch(&mut stored, &patch).unwrap();
    assert_eq!(template_checksum(&stored), Some(checksum("new").as_str()));
    assert_eq!(decision(&stored, &objects), Decision::Unchanged);

    // Without its CoderProvisionerKey the webhook would deny the update: leave it alone.
    assert_eq!(decision(&live, &objects[1..]), Decision::Denied(vec!["provisioner-key-injection"]));

    // An env var the webhook had injected and someone removed comes back with the stamp.
    let stripped = deployment(annotations, json!({CHECKSUM_ANNOTATION: checksum("new")}), json!([]));
    let Decision::Patch { patch, reasons } = decision(&stripped, &objects) else { panic!("no patch") };
    assert_eq!(reasons, ["the provisioner key's env var is missing"]);
    let mut stored = stripped;
    json_patch::patch(&mut stored, &patch).unwrap();
    assert_eq!(decision(&stored, &objects), Decision::Unchanged);
}

#[test]
fn secret_read_errors_never_quote_the_value() {
    let leaky = serde_json::from_str::<u8>("\"s3cr3t-value\"").unwrap_err();
    assert!(leaky.to_string().contains("s3cr3t-value"), "the case this guards against");
    let text = withheld(kube::Error::SerdeError(leaky)).to_string();
    assert!(!text.contains("s3cr3t-value") && text.contains("withheld"), "{text}");
}
