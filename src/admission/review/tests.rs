use serde_json::json;

use super::*;

fn review(request: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": KIND, "request": request})
}

fn request() -> Value {
    json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "name": "prov",
        "namespace": "coder",
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["system:authenticated"], "extra": {"k": ["v"]}},
        "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prov"}},
        "oldObject": null,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
    })
}

fn with(mut base: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, field) = pointer.rsplit_once('/').unwrap();
    let map = base.pointer_mut(parent).and_then(Value::as_object_mut).unwrap();
    match value {
        Some(v) => map.insert(field.to_owned(), v),
        None => map.remove(field),
    };
    base
}

fn decode_value(v: &Value) -> Result<Review, DecodeError> {
    decode(&serde_json::to_vec(v).unwrap())
}

#[test]
fn decodes_a_create() {
    let r = decode_value(&review(request())).unwrap();
    assert_eq!(r.uid(), "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(r.operation(), Operation::Create);
    assert_eq!(r.kind().to_string(), "apps/v1 Deployment");
    assert_eq!(r.resource().resource, "deployments");
    assert_eq!((r.name(), r.namespace(), r.username(), r.dry_run()), ("prov", "coder", "alice", false));
    assert_eq!(r.old_object(), None);
    let req = r.request();
    assert_eq!(req.object["kind"], "Deployment");
    assert_eq!((req.namespace, req.old_object, req.dry_run), ("coder", None, false));
}

#[test]
fn update_delete_dry_run_and_cluster_scoped() {
    let old = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "old"}});
    let update = with(with(request(), "/operation", Some(json!("UPDATE"))), "/oldObject", Some(old.clone()));
    let r = decode_value(&review(with(update, "/dryRun", Some(json!(true))))).unwrap();
    assert_eq!((r.request().old_object, r.dry_run()), (Some(&old), true));
    // DELETE: the object under review is the stored one.
    let delete = with(with(request(), "/operation", Some(json!("DELETE"))), "/object", Some(json!(null)));
    let r = decode_value(&review(with(delete, "/oldObject", Some(old.clone())))).unwrap();
    assert_eq!((r.request().object, r.request().old_object, r.object()), (&old, None, None));
    // Cluster-scoped: no namespace; nullable fields may be null.
    let cluster = with(with(request(), "/namespace", None), "/dryRun", Some(json!(null)));
    let r = decode_value(&review(with(cluster, "/userInfo", Some(json!(null))))).unwrap();
    assert_eq!((r.namespace(), r.dry_run(), r.username()), ("", false, ""));
    // CONNECT without an object.
    let connect = with(with(request(), "/operation", Some(json!("CONNECT"))), "/object", None);
    assert!(decode_value(&review(connect)).unwrap().request().object.is_null());
}

#[test]
fn rejects_what_is_not_a_v1_review_request() {
    let full = serde_json::to_string(&review(request())).unwrap();
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (Vec::new(), DecodeError::Empty),
        (b" \n".to_vec(), DecodeError::Empty),
        (b"[1, 2]".to_vec(), DecodeError::NotAnObject),
        (
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND})).unwrap(),
            DecodeError::ApiVersion { found: Some("admission.k8s.io/v1beta1".into()) },
        ),
        (serde_json::to_vec(&json!({"kind": KIND})).unwrap(), DecodeError::ApiVersion { found: None }),
        (
            serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": "ConversionReview"})).unwrap(),
            DecodeError::Kind { found: Some("ConversionReview".into()) },
        ),
        (serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": KIND})).unwrap(), DecodeError::MissingRequest),
        (
            serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": KIND, "request": null})).unwrap(),
            DecodeError::MissingRequest,
        ),
        (
            serde_json::to_vec(&review(with(request(), "/uid", None))).unwrap(),
            DecodeError::MissingField { field: "uid" },
        ),
        (
            serde_json::to_vec(&review(with(request(), "/uid", Some(json!(""))))).unwrap(),
            DecodeError::MissingField { field: "uid" },
        ),
        (
            serde_json::to_vec(&review(with(request(), "/operation", None))).unwrap(),
            DecodeError::MissingField { field: "operation" },
        ),
        (
            serde_json::to_vec(&review(with(request(), "/operation", Some(json!("PATCH"))))).unwrap(),
            DecodeError::Operation { found: "PATCH".into() },
        ),
        (
            serde_json::to_vec(&review(with(request(), "/kind", None))).unwrap(),
            DecodeError::MissingField { field: "kind.kind" },
        ),
    ];
    for (body, want) in cases {
        assert_eq!(decode(&body), Err(want), "{}", String::from_utf8_lossy(&body));
    }
    // Truncated JSON.
    let truncated = decode(&full.as_bytes()[..full.len() / 2]).unwrap_err();
    assert!(matches!(&truncated, DecodeError::Syntax { message } if message.contains("EOF")), "{truncated}");
}

#[test]
fn wrong_types_name_the_field() {
    let cases = [
        ("/uid", json!(5), "request.uid"),
        ("/dryRun", json!("yes"), "request.dryRun"),
        ("/kind", json!("Deployment"), "request.kind"),
        ("/object", json!([1]), "request.object"),
    ];
    for (pointer, value, path) in cases {
        let err = decode_value(&review(with(request(), pointer, Some(value)))).unwrap_err();
        assert!(matches!(&err, DecodeError::Field { path: p, .. } if p == path), "{err}");
    }
    let err = decode_value(&review(json!("nope"))).unwrap_err();
    assert!(matches!(&err, DecodeError::Field { path, .. } if path == "request"), "{err}");
}

#[test]
fn invalid_utf8_and_deep_nesting_are_errors_not_panics() {
    let mut body = serde_json::to_vec(&review(request())).unwrap();
    let at = body.windows(4).position(|w| w == b"prov").unwrap();
    body[at] = 0xff;
    assert_eq!(decode(&body), Err(DecodeError::Utf8 { offset: at }));
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(decode(deep.as_bytes()), Err(DecodeError::TooDeep { .. })));
    // Deep inside the object of an otherwise valid review.
    let nested = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    let text = serde_json::to_string(&review(request())).unwrap().replacen(
        "\"metadata\"",
        &format!("\"x\":{nested},\"metadata\""),
        1,
    );
    let err = decode(text.as_bytes()).unwrap_err();
    assert!(matches!(err, DecodeError::TooDeep { .. }), "{err}");
    assert!(err.to_string().contains("deeper than"), "{err}");
}

#[test]
fn messages_say_what_to_do() {
    let e = DecodeError::ApiVersion { found: Some("admission.k8s.io/v1beta1".into()) };
    assert_eq!(
        e.to_string(),
        "apiVersion is \"admission.k8s.io/v1beta1\", expected \"admission.k8s.io/v1\"; set admissionReviewVersions: [\"v1\"] in the webhook configuration"
    );
    assert_eq!(DecodeError::Kind { found: None }.to_string(), "kind is missing, expected \"AdmissionReview\"");
    assert_eq!(
        DecodeError::MissingField { field: "uid" }.to_string(),
        "request.uid is missing or empty; the API server always sets it"
    );
}
