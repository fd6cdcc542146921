//! Test-only builders for objects, lookups and evaluations.

use serde_json::{Value, json};

use super::finding::Severity;
use super::lookup::Index;
use super::{Engine, Evaluation, Operation, Request};

/// Namespace every fixture lives in.
pub const NS: &str = "coder";

fn object(api_version: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

pub fn control_plane(name: &str, spec: Value) -> Value {
    object("coder.com/v1alpha1", "CoderControlPlane", name, spec)
}

pub fn provisioner(name: &str, spec: Value) -> Value {
    object("coder.com/v1alpha1", "CoderProvisioner", name, spec)
}

pub fn workspace_proxy(name: &str, spec: Value) -> Value {
    object("coder.com/v1alpha1", "CoderWorkspaceProxy", name, spec)
}

pub fn instance(name: &str, spec: Value) -> Value {
    object("coderd.coder.com/v1alpha1", "CoderInstance", name, spec)
}

pub fn organization(name: &str, spec: Value) -> Value {
    object("coderd.coder.com/v1alpha1", "CoderOrganization", name, spec)
}

pub fn ai_provider(name: &str, spec: Value) -> Value {
    object("coderd.coder.com/v1alpha1", "CoderAIProvider", name, spec)
}

pub fn provisioner_key(name: &str, spec: Value) -> Value {
    object("coderd.coder.com/v1alpha1", "CoderProvisionerKey", name, spec)
}

/// A Deployment with these containers (`[{name, image, env, args}]`).
pub fn deployment(name: &str, containers: Value) -> Value {
    object("apps/v1", "Deployment", name, json!({"template": {"spec": {"containers": containers}}}))
}

/// A Secret with `stringData`.
pub fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "stringData": data})
}

/// `base` with the keys of `extra` added (or replaced).
pub fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// An authoritative lookup (a synced cluster cache) holding `objects`.
pub fn cluster(objects: &[Value]) -> Index {
    let mut index = Index::new(true);
    objects.iter().for_each(|o| index.insert(o, NS));
    index
}

/// A non-authoritative lookup (offline input) holding `objects`.
pub fn offline(objects: &[Value]) -> Index {
    let mut index = Index::new(false);
    objects.iter().for_each(|o| index.insert(o, NS));
    index
}

/// Evaluates a request with the default engine.
pub fn evaluate(op: Operation, object: &Value, old: Option<&Value>, dry_run: bool, lookup: &Index) -> Evaluation {
    let req = Request { operation: op, object, old_object: old, namespace: NS, dry_run };
    Engine::default().evaluate(&req, lookup)
}

/// CREATE against an authoritative lookup of `others`.
pub fn create(object: &Value, others: &[Value]) -> Evaluation {
    evaluate(Operation::Create, object, None, false, &cluster(others))
}

/// UPDATE from `old` to `new` against an authoritative lookup of `others`.
pub fn update(old: &Value, new: &Value, others: &[Value]) -> Evaluation {
    evaluate(Operation::Update, new, Some(old), false, &cluster(others))
}

/// `(severity, path)` of the findings of `rule`, in order.
pub fn hits(eval: &Evaluation, rule: &str) -> Vec<(Severity, String)> {
    eval.findings.iter().filter(|f| f.rule == rule).map(|f| (f.severity, f.path.to_string())).collect()
}

/// Paths of the denying findings of `rule`.
pub fn denied(eval: &Evaluation, rule: &str) -> Vec<String> {
    severity_paths(eval, rule, Severity::Error)
}

/// Paths of the warnings of `rule`.
pub fn warned(eval: &Evaluation, rule: &str) -> Vec<String> {
    severity_paths(eval, rule, Severity::Warning)
}

fn severity_paths(eval: &Evaluation, rule: &str, severity: Severity) -> Vec<String> {
    eval.findings.iter().filter(|f| f.rule == rule && f.severity == severity).map(|f| f.path.to_string()).collect()
}
