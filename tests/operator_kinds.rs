//! The read views of the Coder operator's kinds accept the operator's own samples and every
//! field its CRD schemas define.

mod support;

use coder_guard::policy::subject::Object;
use coder_guard::policy::{Engine, Evaluation, Index, Kind, Operation, Request};
use serde_json::{Map, Value, json};

fn crd_schemas() -> Vec<(Kind, Value)> {
    let dir = support::reference_dir().join("coder-k8s/crds");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let crd = coder_guard::yaml::parse_single(&text).unwrap().value;
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        let kind = Kind::from_type("coder.com/v1alpha1", kind).unwrap();
        out.push((kind, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()));
    }
    out.sort_by_key(|(k, _)| *k);
    out
}

/// A value using every field `schema` defines. Int-or-string fields get integers (as a
/// manifest with `cpu: 1` stores them), the shape most likely to trip a typed decoder.
fn every_field(schema: &Value) -> Value {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return json!(1);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") | None => {
            let mut out = Map::new();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, v) in props {
                    out.insert(k.clone(), every_field(v));
                }
            }
            if let Some(ap @ Value::Object(_)) = schema.get("additionalProperties") {
                out.insert("extra-key".into(), every_field(ap));
            }
            if out.is_empty() && schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                out.insert("anything".into(), json!({"nested": [1, "two"]}));
            }
            Value::Object(out)
        }
        Some("array") => json!([every_field(&schema["items"])]),
        Some("string") => match schema.get("enum").and_then(|e| e.get(0)) {
            Some(v) => v.clone(),
            None if schema.get("format") == Some(&json!("date-time")) => json!("2026-01-01T00:00:00Z"),
            None => json!("value"),
        },
        Some("integer") => json!(3),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some(other) => panic!("schema type {other} not handled"),
    }
}

/// A CREATE in namespace `coder` against an empty offline lookup.
fn create_offline(object: &Value) -> Evaluation {
    let req = Request { operation: Operation::Create, object, old_object: None, namespace: "coder", dry_run: false };
    Engine::default().evaluate(&req, &Index::new(false))
}

fn leaf_count(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaf_count).sum(),
        Value::Array(a) => a.iter().map(leaf_count).sum(),
        _ => 1,
    }
}

#[test]
fn objects_with_every_schema_field_decode() {
    let schemas = crd_schemas();
    assert_eq!(schemas.len(), 3);
    for (kind, schema) in schemas {
        let mut object = every_field(&schema);
        object["apiVersion"] = json!("coder.com/v1alpha1");
        object["kind"] = json!(kind.name());
        object["metadata"] = json!({"name": "full", "namespace": "coder"});
        assert!(leaf_count(&object["spec"]) > 20, "{kind}: generator produced too little");
        if let Err(e) = Object::decode(kind, &object) {
            panic!("{kind} with every field does not decode at {}: {}", e.path, e.message);
        }
        let eval = create_offline(&object);
        assert!(eval.findings.iter().all(|f| f.rule != "schema"), "{kind}: {:?}", eval.findings);
    }
}

#[test]
fn operator_samples_decode() {
    let dir = support::reference_dir().join("coder-k8s/samples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in coder_guard::yaml::parse_documents(&text).0 {
            let kind = Kind::of(&doc.value).expect("sample of a known kind");
            Object::decode(kind, &doc.value).unwrap_or_else(|e| panic!("{kind}: {} {}", e.path, e.message));
            seen.push(kind);
        }
    }
    seen.sort();
    assert_eq!(seen, [Kind::CoderControlPlane, Kind::CoderProvisioner, Kind::CoderWorkspaceProxy]);
}

#[test]
fn a_wrong_type_is_a_schema_finding_with_its_path() {
    let object = json!({"apiVersion": "coder.com/v1alpha1", "kind": "CoderProvisioner",
        "metadata": {"name": "p"}, "spec": {"controlPlaneRef": {"name": "cp"}, "replicas": "two"}});
    let eval = create_offline(&object);
    assert_eq!(eval.findings.len(), 1);
    assert_eq!(eval.findings[0].rule, "schema");
    assert_eq!(eval.findings[0].path.to_string(), "spec.replicas");
    assert!(!eval.allowed());
}

#[test]
fn schema_findings_never_quote_the_value() {
    let cases = [
        json!({"apiVersion": "coder.com/v1alpha1", "kind": "CoderProvisioner", "metadata": {"name": "p"},
            "spec": {"controlPlaneRef": {"name": "cp"}, "extraEnv": [{"name": "CODER_PROVISIONER_DAEMON_PSK", "value": 918273645}]}}),
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderAIProvider", "metadata": {"name": "p"},
            "spec": {"instanceRef": {"name": "i"}, "name": "p", "type": "sk-918273645", "baseURL": "https://a.example.com"}}),
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderInstance", "metadata": {"name": "i"},
            "spec": {"url": "https://c.example.com", "tokenSecretRef": "918273645"}}),
    ];
    for object in cases {
        let eval = create_offline(&object);
        let schema: Vec<_> = eval.findings.iter().filter(|f| f.rule == "schema").collect();
        assert_eq!(schema.len(), 1, "{:?}", eval.findings);
        assert!(!schema[0].message.contains("918273645"), "{}", schema[0].message);
        assert!(schema[0].message.contains("expected"), "says what is expected: {}", schema[0].message);
    }
}
