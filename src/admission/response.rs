//! Encoding the answer: an `admission.k8s.io/v1` `AdmissionReview` response built from an
//! `Evaluation`, with our own serde types (kube's `AdmissionResponse` sends the patch as a
//! byte array and a deny without a code).
//!
//! - `response.uid` echoes the request; `allowed` unless a finding is an error.
//! - A deny carries a `metav1.Status`: code 403, reason `Forbidden`, a message listing every
//!   error as `[rule-id] field.path: message` joined by `; `, and one cause per error.
//! - Warnings are `[rule-id] field.path: message`, each at most 256 bytes, at most 16.
//! - Only the mutating hook sends `patchType: JSONPatch` with a base64 `patch`, and only when
//!   the request is allowed and the patch has operations. The validating hook never does.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;

use super::review::{API_VERSION, KIND, Review};
use crate::policy::{Evaluation, Finding, Severity};

/// Which webhook answers: the validating or the mutating one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Validate,
    Mutate,
}

impl Hook {
    /// `validate` or `mutate`, for logs, metrics and URL paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Validate => "validate",
            Hook::Mutate => "mutate",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most bytes of one warning; longer ones end in `…`. The API server truncates at 256.
pub const MAX_WARNING_BYTES: usize = 256;
/// Most warnings in one response (the API server keeps about 4 KiB of them); the last one says
/// how many more there were.
pub const MAX_WARNINGS: usize = 16;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
}

/// A `metav1.Status`. `kind`/`apiVersion`/`metadata` are set when it is a whole body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Empty>,
    status: &'static str,
    message: String,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Cause {
    reason: &'static str,
    message: String,
    /// The field path; omitted when the finding is about the whole object.
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

/// The JSON body answering `review` from `hook` with `eval`.
pub fn respond(review: &Review, hook: Hook, eval: &Evaluation) -> Vec<u8> {
    let allowed = eval.allowed();
    let status = (!allowed).then(|| deny_status(eval));
    let patch = (hook == Hook::Mutate && allowed && !eval.patch.is_empty()).then(|| encode_patch(eval));
    let response = ResponseOut {
        uid: review.uid(),
        allowed,
        status,
        patch_type: patch.as_ref().map(|_| "JSONPatch"),
        patch,
        warnings: warnings(eval),
        audit_annotations: &eval.audit_annotations,
    };
    let out = ReviewOut { api_version: API_VERSION, kind: KIND, response };
    // Sized for the usual answer (an allow is about 130 bytes) plus the patch, so the buffer
    // is not regrown on the way.
    let mut body = Vec::with_capacity(256 + out.response.patch.as_ref().map_or(0, |p| p.get().len()));
    serde_json::to_writer(&mut body, &out)
        .expect("an AdmissionReview of strings, booleans and numbers always serializes");
    body
}

/// A `metav1.Status` body for a request that is not an AdmissionReview (sent with HTTP 400).
pub fn invalid(message: &str) -> Vec<u8> {
    let status = Status {
        kind: Some("Status"),
        api_version: Some("v1"),
        metadata: Some(Empty {}),
        status: "Failure",
        message: message.to_owned(),
        reason: "BadRequest",
        details: None,
        code: 400,
    };
    serde_json::to_vec(&status).expect("a Status of strings always serializes")
}

/// The deny message: every error finding, `[rule-id] field.path: message`, joined by `; `.
pub fn deny_message(eval: &Evaluation) -> String {
    eval.with_severity(Severity::Error).map(Finding::to_string).collect::<Vec<_>>().join("; ")
}

fn deny_status(eval: &Evaluation) -> Status {
    let causes = eval
        .with_severity(Severity::Error)
        .map(|f| Cause {
            reason: "FieldValueInvalid",
            message: format!("[{}] {}", f.rule, f.message),
            field: if f.path.segments().is_empty() { String::new() } else { f.path.to_string() },
        })
        .collect();
    Status {
        kind: None,
        api_version: None,
        metadata: None,
        status: "Failure",
        message: deny_message(eval),
        reason: "Forbidden",
        details: Some(Details { causes }),
        code: 403,
    }
}

/// The patch as a ready JSON string: base64 needs no escaping, and the serializer's escaping,
/// byte by byte, cost more than the encoding itself.
fn encode_patch(eval: &Evaluation) -> Box<RawValue> {
    let mut json = Vec::with_capacity(256 * eval.patch.len());
    serde_json::to_writer(&mut json, &eval.patch).expect("JSON patch operations always serialize");
    let mut quoted = String::with_capacity(json.len().div_ceil(3) * 4 + 2);
    quoted.push('"');
    base64::engine::general_purpose::STANDARD.encode_string(json, &mut quoted);
    quoted.push('"');
    RawValue::from_string(quoted).expect("a quoted base64 string is a JSON string")
}

/// The warnings: each finding `[rule-id] field.path: message`, capped in length and number.
fn warnings(eval: &Evaluation) -> Vec<String> {
    let all: Vec<&Finding> = eval.with_severity(Severity::Warning).collect();
    if all.len() <= MAX_WARNINGS {
        return all.iter().map(|f| cap(f.to_string())).collect();
    }
    let shown = MAX_WARNINGS - 1;
    let mut out: Vec<String> = all[..shown].iter().map(|f| cap(f.to_string())).collect();
    out.push(format!(
        "{} more warnings not shown; `coder-guard check` on the manifest lists them all",
        all.len() - shown
    ));
    out
}

/// `s` cut to at most `MAX_WARNING_BYTES` bytes on a char boundary, ending in `…` when cut.
fn cap(mut s: String) -> String {
    if s.len() <= MAX_WARNING_BYTES {
        return s;
    }
    let mut end = MAX_WARNING_BYTES - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation};
    use serde_json::{Value, json};

    use super::*;
    use crate::admission::decode;
    use crate::policy::FieldPath;

    fn review() -> Review {
        let body = json!({"apiVersion": API_VERSION, "kind": KIND, "request": {
            "uid": "u-1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "operation": "CREATE", "namespace": "coder", "object": {}}});
        decode(&serde_json::to_vec(&body).unwrap()).unwrap()
    }

    fn finding(rule: &'static str, path: &str, message: &str, severity: Severity) -> Finding {
        Finding { rule, path: FieldPath::parse(path), message: message.into(), severity }
    }

    fn answer(hook: Hook, eval: &Evaluation) -> Value {
        serde_json::from_slice(&respond(&review(), hook, eval)).unwrap()
    }

    fn patched() -> Evaluation {
        let op = PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: json!({"a/b": "c"}),
        });
        Evaluation { patch: vec![op], ..Evaluation::default() }
    }

    #[test]
    fn allows_with_only_uid_and_envelope() {
        let out = respond(&review(), Hook::Validate, &Evaluation::default());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":true}}"#
        );
    }

    #[test]
    fn denies_with_403_every_error_and_causes() {
        let eval = Evaluation {
            findings: vec![
                finding("secret-ref", "spec.tokenSecretRef.name", "Secret coder/t does not exist", Severity::Error),
                finding("banner-color", "", "bad colour", Severity::Error),
                finding("provisioner-key-rotation", "spec.tags", "rotates", Severity::Warning),
            ],
            ..Evaluation::default()
        };
        let out = answer(Hook::Validate, &eval);
        assert_eq!(
            out["response"],
            json!({"uid": "u-1", "allowed": false, "status": {
                "status": "Failure", "code": 403, "reason": "Forbidden",
                "message": "[secret-ref] spec.tokenSecretRef.name: Secret coder/t does not exist; [banner-color] <object>: bad colour",
                "details": {"causes": [
                    {"reason": "FieldValueInvalid", "field": "spec.tokenSecretRef.name", "message": "[secret-ref] Secret coder/t does not exist"},
                    {"reason": "FieldValueInvalid", "message": "[banner-color] bad colour"}]}},
                "warnings": ["[provisioner-key-rotation] spec.tags: rotates"]})
        );
    }

    #[test]
    fn only_an_allowed_mutation_with_operations_carries_a_patch() {
        let eval = patched();
        let out = answer(Hook::Mutate, &eval);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(out["response"]["patch"].as_str().unwrap()).unwrap();
        let ops: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ops, json!([{"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}}]));
        // The validating hook never patches, even when handed a patch.
        let out = answer(Hook::Validate, &eval);
        assert!(out["response"].get("patch").is_none() && out["response"].get("patchType").is_none());
        // No operations, no patch; a denied request is not patched either.
        let out = answer(Hook::Mutate, &Evaluation::default());
        assert!(out["response"].get("patch").is_none() && out["response"].get("patchType").is_none());
        let mut denied = patched();
        denied.findings.push(finding("provisioner-key-injection", "metadata", "no key", Severity::Error));
        let out = answer(Hook::Mutate, &denied);
        assert_eq!(out["response"]["allowed"], false);
        assert!(out["response"].get("patch").is_none() && out["response"].get("patchType").is_none());
    }

    #[test]
    fn warnings_are_capped_in_length_on_a_char_boundary_and_in_number() {
        let long = "é".repeat(300);
        let eval = Evaluation {
            findings: (0..20)
                .map(|i| finding("r", "spec", if i == 0 { &long } else { "w" }, Severity::Warning))
                .collect(),
            ..Evaluation::default()
        };
        let out = answer(Hook::Validate, &eval);
        let warnings: Vec<&str> =
            out["response"]["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
        assert_eq!(warnings.len(), MAX_WARNINGS);
        assert!(warnings[0].len() <= MAX_WARNING_BYTES && warnings[0].ends_with("é…"), "{}", warnings[0]);
        assert!(warnings.iter().all(|w| w.len() <= MAX_WARNING_BYTES));
        assert_eq!(warnings[1], "[r] spec: w");
        assert!(warnings[15].starts_with("5 more warnings not shown"), "{}", warnings[15]);
        let exact = "x".repeat(MAX_WARNING_BYTES);
        assert_eq!(cap(exact.clone()), exact);
        assert_eq!(cap(format!("{exact}y")).len(), MAX_WARNING_BYTES);
    }

    #[test]
    fn audit_annotations_are_passed_on() {
        let mut eval = Evaluation::default();
        eval.audit_annotations.insert("ai-env-break-glass".into(), "INC-42".into());
        let out = answer(Hook::Validate, &eval);
        assert_eq!(out["response"]["auditAnnotations"], json!({"ai-env-break-glass": "INC-42"}));
    }

    #[test]
    fn invalid_is_a_400_status() {
        let out: Value = serde_json::from_slice(&invalid("request.uid is missing")).unwrap();
        assert_eq!(
            out,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "request.uid is missing", "reason": "BadRequest", "code": 400})
        );
    }
}
