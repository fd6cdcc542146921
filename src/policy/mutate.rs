//! The mutating webhook's changes to Deployments: provisioner-key injection and the
//! provisioner-key checksum. Pure: reads the raw object (`Request::object`) and a `Lookup`, and
//! returns JSON-patch operations and findings. It never re-serializes a typed struct (a typed
//! view is only read), never sees a Secret value (only its digest) and never runs validation
//! rules: the mutators are listed by `rules::infos()` for `coder-guard rules` and config
//! validation, but are not in `CATALOG`.
//!
//! Patch rules: pointers are built from escaped tokens only (`PointerBuf::from_tokens`); a
//! missing or `null` map or list is added whole, never replaced; an existing key is replaced
//! only when its value differs. Applying the patch and mutating again yields an empty patch.

use std::panic::{AssertUnwindSafe, catch_unwind};

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use serde_json::{Map, Value, json};

use super::config::{Mode, RuleConfig};
use super::env::PROVISIONER_KEY;
use super::kind::Kind;
use super::lookup::{Found, Lookup, ObjectKey};
use super::path::FieldPath;
use super::rules::RuleInfo;
use super::subject::{Report, decode};
use super::{Evaluation, Operation, Options, Request, severity};
use crate::api::common::EnvVar;
use crate::api::own::{CoderProvisionerKey, DEFAULT_PROVISIONER_KEY_KEY};
use crate::api::workload::{Container, Deployment, PROVISIONER_KEY_ANNOTATION};

/// Injects `CODER_PROVISIONER_DAEMON_KEY` from the Secret of the annotated key.
pub const INJECTION: RuleInfo = RuleInfo {
    id: "provisioner-key-injection",
    summary: "Annotated Deployments get a CoderProvisionerKey's key as CODER_PROVISIONER_DAEMON_KEY",
    explanation: "A mutation, not a check. A Deployment annotated `coderd.coder.com/provisioner-key: <name>` \
gets, in every container that runs `coder provisioner start` (or, when none does, in the first container), the \
env var `CODER_PROVISIONER_DAEMON_KEY` read with `valueFrom.secretKeyRef` from the Secret that the \
CoderProvisionerKey `<name>` in the same namespace writes (`spec.secretName`, default `<name>-provisioner-key`; \
key `spec.secretKey`, default `key`). An existing entry of that name with a literal value or another source is \
never overwritten: the request is denied until the entry or the annotation is removed. A CoderProvisionerKey \
that does not exist is denied (a warning on dry-run, where it may be created by the same apply). Mode `warn` \
still injects but reports problems as warnings; `off` disables the injection.",
    kinds: &[Kind::Deployment],
    default_mode: Mode::Enforce,
};

/// Stamps the pod template with a digest of the provisioner key, so a rotation rolls the pods.
pub const CHECKSUM: RuleInfo = RuleInfo {
    id: "provisioner-key-checksum",
    summary: "Deployments reading a provisioner key get its checksum, so a new key rolls the pods",
    explanation: "A mutation, not a check. A Deployment whose pod template reads `CODER_PROVISIONER_DAEMON_KEY` \
from a `secretKeyRef` (including one the injection adds) gets the pod-template annotation \
`checksum/provisioner-key: sha256:<hex>`, the SHA-256 of the key's value, so a new key changes the template and \
Kubernetes restarts the daemons with it. The checksum is computed whenever the Deployment is created or \
updated (a key rotated later is picked up by the next update, or when the reconcile loop re-stamps it). Deployments \
owned by a CoderProvisioner are skipped (the operator sets its own checksum). When the Secret or its key is \
missing no annotation is added (the `secret-ref` rule reports the reference). `off` disables the annotation.",
    kinds: &[Kind::Deployment],
    default_mode: Mode::Enforce,
};

/// Metadata of the mutators, in the order they run.
pub static MUTATORS: [RuleInfo; 2] = [INJECTION, CHECKSUM];

/// Pod-template annotation holding `sha256:<hex>` of the provisioner key.
pub const CHECKSUM_ANNOTATION: &str = "checksum/provisioner-key";

/// Where the pod template's annotations live.
const TEMPLATE_ANNOTATIONS: [&str; 4] = ["spec", "template", "metadata", "annotations"];
/// Where the pod's containers live.
const CONTAINERS: [&str; 4] = ["spec", "template", "spec", "containers"];

/// A Secret key an env var reads.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SecretKey {
    name: String,
    key: String,
}

/// What the injection decided: the key's Secret, and the containers (indices into
/// `spec.template.spec.containers`) that receive a new env entry.
#[derive(Debug, Default)]
struct Injected {
    secret: Option<SecretKey>,
    containers: Vec<usize>,
}

/// The mutating webhook's evaluation of one request: findings of the mutators and the patch.
/// Only CREATE and UPDATE of Deployments are mutated; everything else gets an empty result.
pub(super) fn mutate(config: &RuleConfig, options: Options, req: &Request<'_>, lookup: &dyn Lookup) -> Evaluation {
    let mut eval = Evaluation { kind: Kind::of(req.object), ..Evaluation::default() };
    if eval.kind != Some(Kind::Deployment) || !matches!(req.operation, Operation::Create | Operation::Update) {
        return eval;
    }
    // A Deployment that does not decode is reported by the validating webhook's schema rule.
    let Ok(deployment) = decode::<Deployment>(req.object) else { return eval };
    let cx = Context { req, lookup, options, deployment: &deployment };
    let injected = run(&INJECTION, config, &mut eval, req.namespace, |r, ops| cx.inject(r, ops));
    run(&CHECKSUM, config, &mut eval, req.namespace, |_, ops| cx.checksum(&injected, ops));
    eval.absent.sort();
    eval.absent.dedup();
    eval
}

/// Runs one mutator under its mode: its findings (severity adjusted), absent objects and
/// operations go into `eval`. A panic drops its operations and becomes a denying finding.
fn run<T: Default>(
    info: &RuleInfo,
    config: &RuleConfig,
    eval: &mut Evaluation,
    namespace: &str,
    f: impl FnOnce(&mut Report, &mut Vec<PatchOperation>) -> T,
) -> T {
    let mode = config.mode(info.id, info.default_mode, namespace);
    if mode == Mode::Off {
        return T::default();
    }
    let mut report = Report::new(info.id);
    let mut ops = Vec::new();
    let out = match catch_unwind(AssertUnwindSafe(|| f(&mut report, &mut ops))) {
        Ok(out) => {
            eval.patch.extend(ops);
            out
        }
        Err(_) => {
            report.deny(
                FieldPath::root(),
                "internal error while computing this mutation (a coder-guard bug; please report it with the object)",
            );
            T::default()
        }
    };
    let (findings, audit, absent) = report.finish();
    eval.findings.extend(findings.into_iter().map(|mut f| {
        f.severity = severity(f.severity, mode);
        f
    }));
    eval.audit_annotations.extend(audit);
    eval.absent.extend(absent);
    out
}

/// The input of the mutators.
struct Context<'a> {
    req: &'a Request<'a>,
    lookup: &'a dyn Lookup,
    options: Options,
    deployment: &'a Deployment,
}

impl Context<'_> {
    // === provisioner-key-injection ===

    fn inject(&self, r: &mut Report, ops: &mut Vec<PatchOperation>) -> Injected {
        let d = self.deployment;
        let Some(name) = d.metadata.annotations.get(PROVISIONER_KEY_ANNOTATION) else { return Injected::default() };
        let at = FieldPath::parse("metadata.annotations").key(PROVISIONER_KEY_ANNOTATION);
        let ns = self.req.namespace;
        if name.is_empty() {
            r.deny(
                at,
                "the annotation is empty; set it to the name of a CoderProvisionerKey in this namespace, or remove it",
            );
            return Injected::default();
        }
        let key = match self.lookup.object(Kind::CoderProvisionerKey, ns, name) {
            Found::Present(v) => match decode::<CoderProvisionerKey>(&v) {
                Ok(k) => k,
                Err(e) => {
                    let msg = format!("CoderProvisionerKey {ns}/{name} cannot be read ({}: {})", e.path, e.message);
                    r.deny(at, msg);
                    return Injected::default();
                }
            },
            Found::Absent => {
                r.absent(ObjectKey { kind: Kind::CoderProvisionerKey, namespace: ns.to_owned(), name: name.clone() });
                let msg = format!(
                    "CoderProvisionerKey {ns}/{name} does not exist, so {PROVISIONER_KEY} cannot be injected; create \
the CoderProvisionerKey first (it can be in the same apply) or fix the annotation"
                );
                if self.req.dry_run {
                    r.warn(at, msg)
                } else {
                    r.deny(at, msg)
                }
                return Injected::default();
            }
            Found::Unknown => {
                let msg = format!(
                    "CoderProvisionerKey {ns}/{name} is not in the input, so {PROVISIONER_KEY} is not injected here; \
include the CoderProvisionerKey to see the injected env"
                );
                r.push(self.options.unverifiable, at, msg);
                return Injected::default();
            }
        };
        let want = SecretKey {
            name: key.secret_name(),
            key: key.spec.secret_key.clone().filter(|k| !k.is_empty()).unwrap_or(DEFAULT_PROVISIONER_KEY_KEY.into()),
        };
        let containers = &d.spec.template.spec.containers;
        let mut targets: Vec<usize> =
            (0..containers.len()).filter(|&i| containers[i].is_provisioner_daemon()).collect();
        if targets.is_empty() && !containers.is_empty() {
            targets.push(0);
        }
        let mut injected = Vec::new();
        for i in targets {
            let env_path = FieldPath::parse("spec.template.spec.containers").index(i).key("env");
            let mut present = false;
            for (j, e) in containers[i].env.iter().enumerate().filter(|(_, e)| e.name == PROVISIONER_KEY) {
                present = true;
                if let Some(source) = other_source(e, &want) {
                    r.deny(
                        env_path.index(j),
                        format!(
                            "{PROVISIONER_KEY} is already set here ({source}), but annotation {PROVISIONER_KEY_ANNOTATION} \
asks coder-guard to inject it from key {:?} of Secret {:?} (CoderProvisionerKey {ns}/{name}); remove this env entry \
and coder-guard adds the right one, or remove the annotation to keep it",
                            want.key, want.name
                        ),
                    );
                }
            }
            if present {
                continue;
            }
            let mut container = PointerBuf::from_tokens(CONTAINERS);
            container.push_back(i);
            if let Some(op) = append(self.req.object, &container, "env", env_entry(&want)) {
                ops.push(op);
                injected.push(i);
            }
        }
        Injected { secret: Some(want), containers: injected }
    }

    // === provisioner-key-checksum ===

    fn checksum(&self, injected: &Injected, ops: &mut Vec<PatchOperation>) {
        let d = self.deployment;
        let operator_owned = d
            .metadata
            .owner_references
            .iter()
            .any(|o| o.kind == "CoderProvisioner" && group(&o.api_version) == "coder.com");
        if operator_owned {
            return;
        }
        let Some(secret) = self.key_secret(injected) else { return };
        let Found::Present(info) = self.lookup.secret(self.req.namespace, &secret.name) else { return };
        let Some(digest) = info.digest(&secret.key).filter(|d| !d.empty) else { return };
        let value = Value::String(format!("sha256:{}", digest.hex()));
        ops.extend(set_entry(self.req.object, &TEMPLATE_ANNOTATIONS, CHECKSUM_ANNOTATION, value));
    }

    /// The Secret key the pod template reads `CODER_PROVISIONER_DAEMON_KEY` from once the
    /// injection is applied: the first container's (in order, init containers last) that reads
    /// it from a `secretKeyRef`.
    fn key_secret(&self, injected: &Injected) -> Option<SecretKey> {
        let spec = &self.deployment.spec.template.spec;
        let reads = |c: &Container| {
            let (_, e) = c.env_var(PROVISIONER_KEY)?;
            let sel = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some(SecretKey { name: sel.name.clone(), key: sel.key.clone() })
        };
        let main = spec.containers.iter().enumerate().map(|(i, c)| match &injected.secret {
            Some(s) if injected.containers.contains(&i) => Some(s.clone()),
            _ => reads(c),
        });
        main.chain(spec.init_containers.iter().map(&reads)).flatten().find(|s| !s.name.is_empty() && !s.key.is_empty())
    }
}

/// How an existing `CODER_PROVISIONER_DAEMON_KEY` entry differs from reading `want`, or None
/// when it reads exactly that. Never includes a literal value.
fn other_source(e: &EnvVar, want: &SecretKey) -> Option<String> {
    let literal = e.value.as_deref().is_some_and(|v| !v.is_empty());
    let from = e.value_from.as_ref();
    match from.and_then(|f| f.secret_key_ref.as_ref()) {
        _ if literal => Some("as a literal value".into()),
        Some(sel) if sel.name == want.name && sel.key == want.key => None,
        Some(sel) => Some(format!("from key {:?} of Secret {:?}", sel.key, sel.name)),
        None if from.is_some() => Some("from a source other than the key's Secret".into()),
        None => Some("with an empty value".into()),
    }
}

/// The env entry that reads the provisioner key.
fn env_entry(secret: &SecretKey) -> Value {
    json!({"name": PROVISIONER_KEY, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}})
}

/// The API group of an `apiVersion`.
fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

// === patch building ===

/// The value at `pointer` in `root`, if any.
fn at<'v>(root: &'v Value, pointer: &PointerBuf) -> Option<&'v Value> {
    root.pointer(pointer.as_str())
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// The operation that appends `item` to the list `field` of the map at `parent`: the whole
/// list `[item]` when the field is missing or `null`. None when `parent` is not a map or the
/// field is not a list (the API server rejects such an object; a patch would fail).
fn append(root: &Value, parent: &PointerBuf, field: &str, item: Value) -> Option<PatchOperation> {
    let Some(Value::Object(map)) = at(root, parent) else { return None };
    let mut path = parent.clone();
    path.push_back(field);
    match map.get(field) {
        None | Some(Value::Null) => Some(add(path, Value::Array(vec![item]))),
        Some(Value::Array(_)) => {
            path.push_back(Token::new("-"));
            Some(add(path, item))
        }
        Some(_) => None,
    }
}

/// The operation that makes the map at `parents` hold `key: value`: none when it already does,
/// `replace` when the key holds another value, `add` of the key when it is missing, and `add`
/// of the whole nested map at the first missing or `null` parent. None as well when a parent is
/// not a map.
fn set_entry(root: &Value, parents: &[&str], key: &str, value: Value) -> Option<PatchOperation> {
    let mut node = root.as_object()?;
    for (depth, token) in parents.iter().enumerate() {
        match node.get(*token) {
            Some(Value::Object(map)) => node = map,
            None | Some(Value::Null) => {
                let leaf = Value::Object(Map::from_iter([(key.to_owned(), value)]));
                let whole = parents[depth + 1..]
                    .iter()
                    .rev()
                    .fold(leaf, |inner, p| Value::Object(Map::from_iter([((*p).to_owned(), inner)])));
                return Some(add(PointerBuf::from_tokens(parents[..=depth].iter().copied()), whole));
            }
            Some(_) => return None,
        }
    }
    let mut path = PointerBuf::from_tokens(parents.iter().copied());
    path.push_back(key);
    match node.get(key) {
        Some(v) if *v == value => None,
        Some(_) => Some(PatchOperation::Replace(ReplaceOperation { path, value })),
        None => Some(add(path, value)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::policy::Severity::{Error, Warning};
    use crate::policy::fixtures::*;
    use crate::policy::lookup::{Index, ValueDigest};
    use crate::policy::{Engine, rules};

    const KEY_VALUE: &str = "pk-fake-key-material-0001";
    const INJECT: &str = "provisioner-key-injection";

    fn checksum() -> String {
        format!("sha256:{}", ValueDigest::of(KEY_VALUE.as_bytes()).hex())
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
            [
                "/spec/template/spec/containers/1/env/-",
                "/spec/template/spec/containers/2/env/-",
                "/spec/template/metadata"
            ]
        );
        let eval = mutate(&annotated(json!([plain("a"), plain("b")])), &cluster(&world()));
        assert_eq!(eval.patch[0].path().as_str(), "/spec/template/spec/containers/0/env");
        // A Deployment without containers gets nothing (the API server rejects it anyway).
        assert!(mutate(&annotated(json!([])), &cluster(&world())).patch.is_empty());
    }

    #[test]
    fn the_key_chooses_secret_and_key() {
        let key =
            provisioner_key("pk", json!({"instanceRef": {"name": "main"}, "secretName": "keys", "secretKey": "k"}));
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
        assert_eq!(
            eval.absent,
            [ObjectKey { kind: Kind::CoderProvisionerKey, namespace: NS.into(), name: "pk".into() }]
        );
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
}
