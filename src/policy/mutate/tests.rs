use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::policy::Severity::{Error, Warning};
use crate::policy::fixtures::*;
use crate::policy::lookup::Index;
use crate::policy::{Engine, rules};
use sha2::Digest as _;

const KEY_VALUE: &str = "pk-fake-key-material-0001";
const INJECT: &str = "provisioner-key-injection";

fn checksum() -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(KEY_VALUE.as_bytes()))
}

/// The key `pk` (Secret `pk-provisioner-key`, key `key`) and its Secret.
fn world() -> Vec<Value> {
    vec![
        provisioner_key("pk", json!({"instanceRef": {"name": "main"}})),
        secret("pk-provisioner-key", &[("key", KEY_VALUE)]),
    ]
}

fn daemon(env: Value) -> Value {
    json!({"name": "daemon", "image": "ghcr.io/coder/coder:v2.34.0", "command": ["coder"],
        "args": ["provisioner", "start"], "env": env})
}

fn key_env(secret: &str, key: &str) -> Value {
    json!({"name": "CODER_PROVISIONER_DAEMON_KEY", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

/// A Deployment annotated for injection of key `pk`.
fn annotated(containers: Value) -> Value {
    let mut d = deployment("prov", containers);
    d["metadata"]["annotations"] = json!({PROVISIONER_KEY_ANNOTATION: "pk", "team/owner": "a~b"});
    d
}

fn mutate_with(engine: &Engine, op: Operation, object: &Value, dry_run: bool, lookup: &Index) -> Evaluation {
    let old = (op == Operation::Update).then_some(object);
    let req = Request { operation: op, object, old_object: old, namespace: NS, dry_run };
    engine.mutate(&req, lookup)
}

fn mutate(object: &Value, lookup: &Index) -> Evaluation {
    mutate_with(&Engine::default(), Operation::Create, object, false, lookup)
}

fn patch(eval: &Evaluation) -> Value {
    serde_json::to_value(&eval.patch).unwrap()
}

fn apply(object: &Value, eval: &Evaluation) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, &eval.patch).expect("the patch applies");
    out
}

#[test]
fn checksum_annotation_is_placed_whatever_the_template_metadata() {
    let sum = checksum();
    let base = deployment("prov", json!([daemon(json!([key_env("pk-provisioner-key", "key")]))]));
    let with = |template_meta: Option<Value>| {
        let mut d = base.clone();
        if let Some(m) = template_meta {
            d["spec"]["template"]["metadata"] = m;
        }
        d
    };
    let cases = [
        (
            with(None),
            json!([{"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {CHECKSUM_ANNOTATION: sum}}}]),
        ),
        (
            with(Some(json!(null))),
            json!([{"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {CHECKSUM_ANNOTATION: sum}}}]),
        ),
        (
            with(Some(json!({}))),
            json!([{"op": "add", "path": "/spec/template/metadata/annotations", "value": {CHECKSUM_ANNOTATION: sum}}]),
        ),
        (
            with(Some(json!({"annotations": null}))),
            json!([{"op": "add", "path": "/spec/template/metadata/annotations", "value": {CHECKSUM_ANNOTATION: sum}}]),
        ),
        (
            with(Some(json!({"annotations": {}}))),
            json!([{"op": "add", "path": "/spec/template/metadata/annotations/checksum~1provisioner-key", "value": sum}]),
        ),
        (
            with(Some(json!({"annotations": {"a/b~c": "x"}}))),
            json!([{"op": "add", "path": "/spec/template/metadata/annotations/checksum~1provisioner-key", "value": sum}]),
        ),
        (
            with(Some(json!({"annotations": {CHECKSUM_ANNOTATION: "sha256:old"}}))),
            json!([{"op": "replace", "path": "/spec/template/metadata/annotations/checksum~1provisioner-key", "value": sum}]),
        ),
        (with(Some(json!({"annotations": {CHECKSUM_ANNOTATION: sum}}))), json!([])),
    ];
    for (object, want) in cases {
        let eval = mutate(&object, &cluster(&world()));
        assert_eq!(patch(&eval), want, "{object}");
        assert!(eval.findings.is_empty(), "{:?}", eval.findings);
        assert!(mutate(&apply(&object, &eval), &cluster(&world())).patch.is_empty());
    }
}

#[test]
fn injection_adds_the_env_whatever_the_list() {
    let entry = key_env("pk-provisioner-key", "key");
    let other = json!({"name": "CODER_URL", "value": "https://coder.example.com"});
    let env_op = |path: &str, value: &Value| json!({"op": "add", "path": path, "value": value});
    let cases = [
        (
            json!({"name": "daemon", "args": ["provisioner", "start"]}),
            env_op("/spec/template/spec/containers/0/env", &json!([entry])),
        ),
        (daemon(json!(null)), env_op("/spec/template/spec/containers/0/env", &json!([entry]))),
        (daemon(json!([])), env_op("/spec/template/spec/containers/0/env/-", &entry)),
        (daemon(json!([other])), env_op("/spec/template/spec/containers/0/env/-", &entry)),
    ];
    let sum = checksum();
    for (container, want) in cases {
        let object = annotated(json!([container]));
        let eval = mutate(&object, &cluster(&world()));
        let checksum_op = json!({"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {CHECKSUM_ANNOTATION: sum}}});
        assert_eq!(patch(&eval), json!([want, checksum_op]), "{object}");
        assert!(eval.findings.is_empty(), "{:?}", eval.findings);
        let patched = apply(&object, &eval);
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().last(),
            Some(&entry)
        );
        assert!(mutate(&patched, &cluster(&world())).patch.is_empty());
    }
}

#[test]
fn injection_needs_the_annotation() {
    let d = |annotations: Option<Value>| {
        let mut d = deployment("prov", json!([daemon(json!([]))]));
        if let Some(a) = annotations {
            d["metadata"]["annotations"] = a;
        }
        d
    };
    for object in [d(None), d(Some(json!(null))), d(Some(json!({}))), d(Some(json!({"other": "pk"})))] {
        let eval = mutate(&object, &cluster(&world()));
        assert_eq!(eval, Evaluation { kind: Some(Kind::Deployment), ..Evaluation::default() }, "{object}");
    }
    let full = d(Some(json!({PROVISIONER_KEY_ANNOTATION: "pk"})));
    assert_eq!(mutate(&full, &cluster(&world())).patch.len(), 2);
    let empty = mutate(&d(Some(json!({PROVISIONER_KEY_ANNOTATION: ""}))), &cluster(&world()));
    assert_eq!(hits(&empty, INJECT), [(Error, "metadata.annotations[coderd.coder.com/provisioner-key]".into())]);
}

#[test]
fn injection_targets_daemons_or_else_the_first_container() {
    let plain = |name: &str| json!({"name": name, "image": "busybox"});
    let eval = mutate(&annotated(json!([plain("side"), daemon(json!([])), daemon(json!([]))])), &cluster(&world()));
    let paths: Vec<&str> = eval.patch.iter().map(|op| op.path().as_str()).collect();
    assert_eq!(
        paths,
        ["/spec/template/spec/containers/1/env/-", "/spec/template/spec/containers/2/env/-", "/spec/template/metadata"]
    );
    let eval = mutate(&annotated(json!([plain("a"), plain("b")])), &cluster(&world()));
    assert_eq!(eval.patch[0].path().as_str(), "/spec/template/spec/containers/0/env");
    // A Deployment without containers gets nothing (the API server rejects it anyway).
    assert!(mutate(&annotated(json!([])), &cluster(&world())).patch.is_empty());
}

#[test]
fn the_key_chooses_secret_and_key() {
    let key = provisioner_key("pk", json!({"instanceRef": {"name": "main"}, "secretName": "keys", "secretKey": "k"}));
    let lookup = cluster(&[key, secret("keys", &[("k", KEY_VALUE)])]);
    let eval = mutate(&annotated(json!([daemon(json!([]))])), &lookup);
    assert_eq!(patch(&eval)[0]["value"], key_env("keys", "k"));
    assert_eq!(patch(&eval)[1]["value"]["annotations"][CHECKSUM_ANNOTATION], checksum());
}

#[test]
fn existing_correct_env_and_checksum_are_a_no_op() {
    let mut object = annotated(json!([daemon(json!([key_env("pk-provisioner-key", "key")]))]));
    object["spec"]["template"]["metadata"] = json!({"annotations": {CHECKSUM_ANNOTATION: checksum()}});
    for op in [Operation::Create, Operation::Update] {
        let eval = mutate_with(&Engine::default(), op, &object, false, &cluster(&world()));
        assert!(eval.patch.is_empty() && eval.findings.is_empty(), "{eval:?}");
    }
}

#[test]
fn conflicting_env_is_denied_not_overwritten() {
    let literal = json!({"name": "CODER_PROVISIONER_DAEMON_KEY", "value": "literal-key-do-not-print"});
    let cases = [
        (literal, "as a literal value"),
        (key_env("other", "key"), "from key \"key\" of Secret \"other\""),
        (key_env("pk-provisioner-key", "other"), "from key \"other\" of Secret \"pk-provisioner-key\""),
        (
            json!({"name": "CODER_PROVISIONER_DAEMON_KEY", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}),
            "other than",
        ),
        (json!({"name": "CODER_PROVISIONER_DAEMON_KEY"}), "empty value"),
    ];
    for (entry, says) in cases {
        let object = annotated(json!([daemon(json!([{"name": "X", "value": "y"}, entry]))]));
        let eval = mutate(&object, &cluster(&world()));
        assert_eq!(hits(&eval, INJECT), [(Error, "spec.template.spec.containers[0].env[1]".into())], "{entry}");
        let msg = &eval.findings[0].message;
        assert!(msg.contains(says) && msg.contains("remove this env entry"), "{msg}");
        assert!(!msg.contains("literal-key-do-not-print"), "{msg}");
        assert!(eval.patch.iter().all(|op| !op.path().as_str().contains("/env")), "{:?}", eval.patch);
    }
}

#[test]
fn missing_key_denies_and_is_reported_absent() {
    let object = annotated(json!([daemon(json!([]))]));
    let eval = mutate(&object, &cluster(&[]));
    assert_eq!(hits(&eval, INJECT), [(Error, "metadata.annotations[coderd.coder.com/provisioner-key]".into())]);
    assert!(eval.findings[0].message.contains("CoderProvisionerKey coder/pk does not exist"));
    assert_eq!(eval.absent, [ObjectKey { kind: Kind::CoderProvisionerKey, namespace: NS.into(), name: "pk".into() }]);
    assert!(eval.patch.is_empty());
    let dry = mutate_with(&Engine::default(), Operation::Create, &object, true, &cluster(&[]));
    assert_eq!(hits(&dry, INJECT)[0].0, Warning);
    let offline_eval = mutate(&object, &offline(&[]));
    assert_eq!(hits(&offline_eval, INJECT)[0].0, Warning);
    assert!(offline_eval.absent.is_empty() && offline_eval.allowed());
}

#[test]
fn missing_secret_injects_without_checksum() {
    let object = annotated(json!([daemon(json!([]))]));
    let key_only = cluster(&world()[..1]);
    let no_key = cluster(&[world()[0].clone(), secret("pk-provisioner-key", &[("other", "x")])]);
    let empty = cluster(&[world()[0].clone(), secret("pk-provisioner-key", &[("key", "")])]);
    for lookup in [key_only, no_key, empty] {
        let eval = mutate(&object, &lookup);
        let paths: Vec<&str> = eval.patch.iter().map(|op| op.path().as_str()).collect();
        assert_eq!(paths, ["/spec/template/spec/containers/0/env/-"]);
        assert!(eval.findings.is_empty(), "{:?}", eval.findings);
    }
}

#[test]
fn deployments_owned_by_a_coder_provisioner_get_no_checksum() {
    let mut object = deployment("provisioner-p", json!([daemon(json!([key_env("pk-provisioner-key", "key")]))]));
    object["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "coder.com/v1alpha1", "kind": "CoderProvisioner", "name": "p", "uid": "u"}]);
    assert!(mutate(&object, &cluster(&world())).patch.is_empty());
    object["metadata"]["ownerReferences"][0]["apiVersion"] = json!("example.com/v1");
    assert_eq!(mutate(&object, &cluster(&world())).patch.len(), 1);
}

#[test]
fn update_mutates_like_create_and_other_requests_are_left_alone() {
    let object = annotated(json!([daemon(json!([]))]));
    let create = mutate_with(&Engine::default(), Operation::Create, &object, false, &cluster(&world()));
    let update = mutate_with(&Engine::default(), Operation::Update, &object, false, &cluster(&world()));
    assert_eq!(create, update);
    assert_eq!(create.patch.len(), 2);
    let delete = mutate_with(&Engine::default(), Operation::Delete, &object, false, &cluster(&world()));
    assert!(delete.patch.is_empty() && delete.findings.is_empty());
    let key = &world()[0];
    assert!(mutate(key, &cluster(&world())).patch.is_empty());
    assert!(mutate(&json!({"apiVersion": "v1", "kind": "ConfigMap"}), &cluster(&world())).patch.is_empty());
}

#[test]
fn modes_disable_or_soften_each_mutator() {
    let config = |text: &str| RuleConfig::parse(text, "c.yaml", &rules::ids()).unwrap();
    let object = annotated(json!([daemon(json!([]))]));
    let run = |text: &str, lookup: &Index| {
        let engine = Engine::new(config(text), Options::default());
        mutate_with(&engine, Operation::Create, &object, false, lookup)
    };
    let paths = |e: &Evaluation| e.patch.iter().map(|op| op.path().to_string()).collect::<Vec<_>>();
    let off = run("rules:\n  provisioner-key-injection: off\n", &cluster(&world()));
    assert!(off.patch.is_empty(), "no injection and nothing reads the key yet");
    let off = run("rules:\n  provisioner-key-checksum: off\n", &cluster(&world()));
    assert_eq!(paths(&off), ["/spec/template/spec/containers/0/env/-"]);
    let exempt = run("exemptNamespaces: [coder]\n", &cluster(&world()));
    assert!(exempt.patch.is_empty());
    let warn = run("rules:\n  provisioner-key-injection: warn\n", &cluster(&[]));
    assert_eq!(hits(&warn, INJECT)[0].0, Warning);
}

#[test]
fn mutators_are_listed_but_not_in_the_catalog() {
    let ids = rules::ids();
    assert!(ids.contains(&INJECTION.id) && ids.contains(&CHECKSUM.id));
    assert!(rules::CATALOG.iter().all(|r| r.id != INJECTION.id && r.id != CHECKSUM.id));
    // Validation never produces a patch or a mutator finding.
    let e = create(&annotated(json!([daemon(json!([]))])), &world());
    assert!(e.patch.is_empty() && e.findings.iter().all(|f| f.rule != INJECT), "{e:?}");
}

// === property: idempotent, nothing lost ===

/// A map or list field: missing, `null`, or present.
#[derive(Clone, Debug)]
enum Slot<T> {
    Missing,
    Null,
    Present(T),
}

fn slot<T: std::fmt::Debug + Clone>(inner: impl Strategy<Value = T>) -> impl Strategy<Value = Slot<T>> {
    prop_oneof![Just(Slot::Missing), Just(Slot::Null), inner.prop_map(Slot::Present)]
}

fn put<T>(object: &mut Value, field: &str, value: Slot<T>, to_json: impl FnOnce(T) -> Value) {
    match value {
        Slot::Missing => {}
        Slot::Null => object[field] = Value::Null,
        Slot::Present(v) => object[field] = to_json(v),
    }
}

fn annotation_map() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof!["[a-z]{1,6}", "[a-z~/.]{1,8}", Just(CHECKSUM_ANNOTATION.to_owned())];
    let value = prop_oneof!["[a-z0-9:~/]{0,8}", Just(checksum())];
    prop::collection::btree_map(key, value, 0..5)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn env_entry_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!({"name": "CODER_URL", "value": "https://coder.example.com"})),
        1 => Just(key_env("pk-provisioner-key", "key")),
        1 => Just(key_env("other", "key")),
        1 => Just(json!({"name": "CODER_PROVISIONER_DAEMON_KEY", "value": "literal"})),
    ]
}

fn container_strategy() -> impl Strategy<Value = Value> {
    (any::<bool>(), slot(prop::collection::vec(env_entry_strategy(), 0..3))).prop_map(|(runs_daemon, env)| {
        let mut c = json!({"name": "c", "image": "ghcr.io/coder/coder:v2.34.0"});
        if runs_daemon {
            c["args"] = json!(["provisioner", "start"]);
        }
        put(&mut c, "env", env, Value::Array);
        c
    })
}

prop_compose! {
    fn deployment_strategy()(
        trigger in prop::bool::weighted(0.75),
        annotations in slot(annotation_map()),
        template_meta in slot(slot(annotation_map())),
        containers in prop::collection::vec(container_strategy(), 0..4),
        owned in any::<bool>(),
    ) -> Value {
        let mut d = deployment("prov", Value::Array(containers));
        let meta = &mut d["metadata"];
        let annotations = match (trigger, annotations) {
            (true, Slot::Present(mut m)) => {
                m.insert(PROVISIONER_KEY_ANNOTATION.into(), json!("pk"));
                Slot::Present(m)
            }
            (true, _) => Slot::Present(Map::from_iter([(PROVISIONER_KEY_ANNOTATION.into(), json!("pk"))])),
            (false, a) => a,
        };
        put(meta, "annotations", annotations, Value::Object);
        if owned {
            meta["ownerReferences"] = json!([{"apiVersion": "coder.com/v1alpha1", "kind": "CoderProvisioner", "name": "p"}]);
        }
        put(&mut d["spec"]["template"], "metadata", template_meta, |a| {
            let mut m = json!({});
            put(&mut m, "annotations", a, Value::Object);
            m
        });
        d
    }
}

fn lookup_strategy() -> impl Strategy<Value = Index> {
    (prop::bool::weighted(0.8), 0..4u8).prop_map(|(key, secret_state)| {
        let mut objects = Vec::new();
        if key {
            objects.push(world()[0].clone());
        }
        match secret_state {
            0 => {}
            1 => objects.push(secret("pk-provisioner-key", &[("other", "x")])),
            _ => objects.push(world()[1].clone()),
        }
        cluster(&objects)
    })
}

fn annotations_at<'v>(object: &'v Value, pointer: &str) -> Option<&'v Map<String, Value>> {
    object.pointer(pointer).and_then(Value::as_object)
}

#[test]
fn literal_pointers_name_the_keys_walked() {
    let (keys, pointer) = TEMPLATE_ANNOTATIONS;
    assert_eq!(PointerBuf::from_tokens(keys.iter().copied()), pointer.to_buf());
}

proptest! {
    #[test]
    fn mutating_twice_changes_nothing_and_loses_nothing(d in deployment_strategy(), lookup in lookup_strategy()) {
        let first = mutate(&d, &lookup);
        for op in &first.patch {
            prop_assert!(matches!(op, PatchOperation::Add(_) | PatchOperation::Replace(_)), "{op:?}");
        }
        let patched = apply(&d, &first);
        let second = mutate(&patched, &lookup);
        prop_assert!(second.patch.is_empty(), "second patch {:?} after {:?}", second.patch, first.patch);
        prop_assert_eq!(&first.findings, &second.findings);
        for pointer in ["/metadata/annotations", "/spec/template/metadata/annotations"] {
            let after = annotations_at(&patched, pointer);
            for (k, v) in annotations_at(&d, pointer).into_iter().flatten() {
                let kept = after.and_then(|a| a.get(k));
                prop_assert!(kept.is_some(), "{pointer}/{k} lost");
                prop_assert!(kept == Some(v) || k == CHECKSUM_ANNOTATION, "{pointer}/{k} changed");
            }
        }
        let containers = d.pointer("/spec/template/spec/containers").and_then(Value::as_array).unwrap();
        for (i, c) in containers.iter().enumerate() {
            let before = c.get("env").and_then(Value::as_array).cloned().unwrap_or_default();
            let after = patched["spec"]["template"]["spec"]["containers"][i]["env"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(&after[..before.len()], &before[..]);
        }
    }
}
