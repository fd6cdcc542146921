//! The mutating webhook's changes to Deployments: provisioner-key injection and the
//! provisioner-key checksum. Pure: reads the raw object (`Request::object`) and a `Lookup`, and
//! returns JSON-patch operations and findings. It never re-serializes a typed struct (a typed
//! view is only read), never sees a Secret value (only its digest) and never runs validation
//! rules: the mutators are listed by `rules::infos()` for `coder-guard rules` and config
//! validation, but are not in `CATALOG`.
//!
//! Patch rules: pointers are built from escaped tokens only (`push_back` onto a pointer whose
//! prefix is a literal `Pointer::from_static` checks); a
//! missing or `null` map or list is added whole, never replaced; an existing key is replaced
//! only when its value differs. Applying the patch and mutating again yields an empty patch.

use std::panic::{AssertUnwindSafe, catch_unwind};

use json_patch::jsonptr::{Pointer, PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use serde_json::{Map, Value, json};

use super::config::{Mode, RuleConfig};
use super::env::PROVISIONER_KEY;
use super::kind::Kind;
use super::lookup::{Found, Lookup, ObjectKey};
use super::path::FieldPath;
use super::rules::RuleInfo;
use super::subject::{Report, decode, decode_str};
use super::{Evaluation, Operation, Options, Request, severity};
use crate::api::common::EnvVar;
use crate::api::own::KeySecretRef;
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

/// Where the pod template's annotations live, as map keys and as a pointer (a test checks
/// they agree; the pointer is a literal because building it token by token costs more than
/// the rest of the checksum).
const TEMPLATE_ANNOTATIONS: (&[&str], &Pointer) =
    (&["spec", "template", "metadata", "annotations"], Pointer::from_static("/spec/template/metadata/annotations"));
/// Where the pod's containers live.
const CONTAINERS: &Pointer = Pointer::from_static("/spec/template/spec/containers");

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
        let at = crate::fp!("metadata", "annotations", PROVISIONER_KEY_ANNOTATION);
        let ns = self.req.namespace;
        if name.is_empty() {
            r.deny(
                at,
                "the annotation is empty; set it to the name of a CoderProvisionerKey in this namespace, or remove it",
            );
            return Injected::default();
        }
        let key = match self.lookup.object(Kind::CoderProvisionerKey, ns, name) {
            Found::Present(text) => match decode_str::<KeySecretRef>(&text) {
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
        let want = SecretKey { name: key.secret_name(), key: key.secret_key().to_owned() };
        let containers = &d.spec.template.spec.containers;
        let mut targets: Vec<usize> =
            (0..containers.len()).filter(|&i| containers[i].is_provisioner_daemon()).collect();
        if targets.is_empty() && !containers.is_empty() {
            targets.push(0);
        }
        let mut injected = Vec::new();
        for i in targets {
            let env_path = crate::fp!("spec", "template", "spec", "containers", i, "env");
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
            let mut container = CONTAINERS.to_buf();
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
        let value = Value::String(digest.checksum());
        ops.extend(set_entry(self.req.object, TEMPLATE_ANNOTATIONS, CHECKSUM_ANNOTATION, value));
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

/// The value at `pointer` in `root`, if any (`Value::pointer` allocates for every token).
fn at<'v>(root: &'v Value, pointer: &PointerBuf) -> Option<&'v Value> {
    pointer.tokens().try_fold(root, |node, token| match node {
        Value::Object(map) => map.get(token.decoded().as_ref()),
        Value::Array(list) => list.get(token.decoded().parse::<usize>().ok()?),
        _ => None,
    })
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
fn set_entry(root: &Value, (parents, pointer): (&[&str], &Pointer), key: &str, value: Value) -> Option<PatchOperation> {
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
    let mut path = pointer.to_buf();
    path.push_back(key);
    match node.get(key) {
        Some(v) if *v == value => None,
        Some(_) => Some(PatchOperation::Replace(ReplaceOperation { path, value })),
        None => Some(add(path, value)),
    }
}

#[cfg(test)]
mod tests;
