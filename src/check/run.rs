//! The `check` pipeline: index every input (pass 1), then evaluate each object against that
//! index (pass 2). Each pass runs files on up to one thread per CPU, and results are merged in
//! input order, so output does not depend on the thread count. Files are read once per pass
//! and dropped, so memory follows the largest files in flight plus the small index, not the
//! corpus.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::input::{self, Source};
use super::model::{CheckReport, InputError, Item, Location, ObjectRef};
use crate::policy::path::{FieldPath, Segment};
use crate::policy::{Engine, Index, Kind, Operation, Request};
use crate::yaml;

/// A Secret assumed to exist (`--assume-secret NS/NAME[:KEY]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumedSecret {
    pub namespace: String,
    pub name: String,
    pub key: Option<String>,
}

impl AssumedSecret {
    /// Parses `NS/NAME[:KEY]`; without `NS/` the default namespace applies.
    pub fn parse(s: &str, default_namespace: &str) -> Result<Self, String> {
        let (ns_name, key) = match s.split_once(':') {
            Some((a, k)) => (a, Some(k)),
            None => (s, None),
        };
        let (namespace, name) = ns_name.split_once('/').unwrap_or((default_namespace, ns_name));
        if namespace.is_empty() || name.is_empty() || key == Some("") {
            return Err(format!("--assume-secret {s:?}: expected NAMESPACE/NAME or NAMESPACE/NAME:KEY"));
        }
        Ok(Self { namespace: namespace.into(), name: name.into(), key: key.map(str::to_owned) })
    }
}

/// Inputs of one run.
#[derive(Clone, Debug, Default)]
pub struct CheckInput {
    /// Paths as given (`-` is stdin).
    pub paths: Vec<String>,
    /// Namespace of objects that name none.
    pub namespace: String,
    pub assume_secrets: Vec<AssumedSecret>,
    /// Evaluate objects that also exist at this git revision as UPDATEs.
    pub base: Option<String>,
    /// Evaluate objects that also exist in these paths as UPDATEs.
    pub previous: Vec<String>,
}

/// One object found in a document: itself, or an item of a `List`.
struct Embedded<'a> {
    value: &'a Value,
    /// Path of the object inside its document (`items[3]` for list items).
    prefix: FieldPath,
}

/// Runs `check` over `input` with `engine`.
pub fn run(engine: &Engine, input: &CheckInput) -> CheckReport {
    let mut report = CheckReport::default();
    let (sources, errors) = input::discover(&input.paths);
    report.errors.extend(errors);
    let stdin = if sources.iter().any(|s| s.origin == input::Origin::Stdin) {
        input::read_stdin().unwrap_or_else(|e| {
            report.errors.push(e);
            String::new()
        })
    } else {
        String::new()
    };

    let mut index = Index::new(false);
    for secret in &input.assume_secrets {
        index.assume_secret(&secret.namespace, &secret.name, secret.key.as_deref());
    }
    // Per-file indexes, absorbed in input order: a later file's object replaces an earlier
    // one with the same key (even one that claims nothing), as inserting them one by one does.
    for file_index in in_parallel(&sources, |source| index_source(source, &stdin, &input.namespace)) {
        index.absorb(file_index);
    }
    let old = previous_objects(input, &mut report.errors);

    let checked = in_parallel(&sources, |source| check_source(engine, &index, &old, source, &stdin, &input.namespace));
    for file in checked {
        report.files += 1;
        report.documents += file.documents;
        report.objects_checked += file.objects_checked;
        report.items.extend(file.items);
        report.errors.extend(file.errors);
    }
    report.errors.sort();
    report
}

/// `check` over one text already in memory, as `check -` reads stdin: both passes over that
/// text alone, with no file or git access and no threads. Used by the fuzz target and its
/// regression test.
pub fn run_text(engine: &Engine, text: &str, namespace: &str) -> CheckReport {
    let source = Source { display: "-".into(), origin: input::Origin::Stdin };
    let index = index_source(&source, text, namespace);
    let file = check_source(engine, &index, &HashMap::new(), &source, text, namespace);
    let mut errors = file.errors;
    errors.sort();
    CheckReport {
        items: file.items,
        errors,
        objects_checked: file.objects_checked,
        documents: file.documents,
        files: 1,
    }
}

/// What pass 2 found in one file.
#[derive(Default)]
struct FileReport {
    documents: usize,
    objects_checked: usize,
    items: Vec<Item>,
    errors: Vec<InputError>,
}

/// Pass 2 for one file: evaluates each object against the complete index and locates its
/// findings.
fn check_source(
    engine: &Engine,
    index: &Index,
    old: &HashMap<Identity, Value>,
    source: &Source,
    stdin: &str,
    namespace: &str,
) -> FileReport {
    let mut report = FileReport::default();
    let text = match input::read(source, stdin) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    let (docs, parse_error) = yaml::parse_documents(&text);
    report.documents = docs.iter().filter(|d| !d.value.is_null()).count();
    if let Some(e) = parse_error {
        report.errors.push(InputError { file: source.display.clone(), line: Some(e.line), message: e.message });
    }
    for (n, doc) in docs.iter().enumerate() {
        let mut objects = Vec::new();
        if let Err(e) = objects_of(&doc.value, &mut objects) {
            report.errors.push(InputError { file: source.display.clone(), line: Some(doc.line), message: e });
            continue;
        }
        // The document's findings with their paths, located together in one read of it.
        let mut found = Vec::new();
        for obj in objects {
            let Some(kind) = Kind::of(obj.value) else { continue };
            if kind == Kind::Secret {
                continue;
            }
            report.objects_checked += 1;
            let object = object_ref(obj.value, namespace);
            let old_object = old.get(&identity(obj.value, namespace));
            let req = Request {
                operation: if old_object.is_some() { Operation::Update } else { Operation::Create },
                object: obj.value,
                old_object,
                namespace: &object.namespace,
                dry_run: false,
            };
            let eval = engine.evaluate(&req, index);
            for finding in eval.findings {
                let segments: Vec<Segment> =
                    obj.prefix.segments().iter().chain(finding.path.segments()).cloned().collect();
                found.push((segments, object.clone(), finding));
            }
        }
        let paths: Vec<&[Segment]> = found.iter().map(|(segments, ..)| segments.as_slice()).collect();
        let lines = yaml::locate_all(&text, doc.line, &paths);
        for ((_, object, finding), line) in found.into_iter().zip(lines) {
            let location = Location { file: source.display.clone(), line, document: n };
            report.items.push(Item { location, object, finding });
        }
    }
    // Within a file, findings read top to bottom; ties keep catalog order.
    report.items.sort_by_key(|i| (i.location.document, i.location.line));
    report
}

/// `work` applied to every source on up to one thread per CPU; results in input order.
fn in_parallel<T: Send>(sources: &[Source], work: impl Fn(&Source) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(sources.len());
    if workers <= 1 {
        return sources.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(source) = sources.get(i) else { return mine };
                        mine.push((i, work(source)));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

/// Pass 1: the index of the objects of `source`; parse problems are reported in pass 2.
fn index_source(source: &Source, stdin: &str, namespace: &str) -> Index {
    let mut index = Index::new(false);
    let Ok(text) = input::read(source, stdin) else { return index };
    let (docs, _) = yaml::parse_documents(&text);
    for doc in &docs {
        let mut objects = Vec::new();
        if objects_of(&doc.value, &mut objects).is_ok() {
            objects.iter().for_each(|obj| index.insert(obj.value, namespace));
        }
    }
    index
}

/// The objects in one document: the document itself, or the items of a `*List`.
fn objects_of<'a>(value: &'a Value, out: &mut Vec<Embedded<'a>>) -> Result<(), String> {
    match value {
        Value::Null => Ok(()),
        Value::Object(map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind.is_empty() || map.get("apiVersion").and_then(Value::as_str).unwrap_or_default().is_empty() {
                return Err("document has no apiVersion or kind; every Kubernetes object needs both".into());
            }
            if kind.ends_with("List")
                && let Some(Value::Array(items)) = map.get("items")
            {
                for (i, item) in items.iter().enumerate() {
                    if !item.get("kind").is_some_and(Value::is_string) {
                        return Err(format!("items[{i}] of the {kind} is not a Kubernetes object"));
                    }
                    out.push(Embedded { value: item, prefix: FieldPath::root().key("items").index(i) });
                }
                return Ok(());
            }
            out.push(Embedded { value, prefix: FieldPath::root() });
            Ok(())
        }
        _ => Err("document is not a mapping; expected a Kubernetes object".into()),
    }
}

/// `(apiVersion, kind, namespace, name)`: how `--base`/`--previous` objects are matched.
type Identity = (String, String, String, String);

fn identity(value: &Value, default_namespace: &str) -> Identity {
    let r = object_ref(value, default_namespace);
    (r.api_version, r.kind, r.namespace, r.name)
}

fn object_ref(value: &Value, default_namespace: &str) -> ObjectRef {
    let s = |p: &str| value.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
    let namespace =
        Some(s("/metadata/namespace")).filter(|n| !n.is_empty()).unwrap_or_else(|| default_namespace.to_owned());
    ObjectRef { api_version: s("/apiVersion"), kind: s("/kind"), namespace, name: s("/metadata/name") }
}

/// Objects of known kinds from `--base` and `--previous`, by identity.
fn previous_objects(input: &CheckInput, errors: &mut Vec<InputError>) -> HashMap<Identity, Value> {
    let mut sources = Vec::new();
    if let Some(rev) = &input.base {
        let (s, e) = input::at_revision(rev, &input.paths);
        sources.extend(s);
        errors.extend(e);
    }
    if !input.previous.is_empty() {
        let (s, e) = input::discover(&input.previous);
        sources.extend(s);
        errors.extend(e);
    }
    let mut old = HashMap::new();
    for source in &sources {
        let text = match input::read(source, "") {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let (docs, parse_error) = yaml::parse_documents(&text);
        if let Some(e) = parse_error {
            errors.push(InputError { file: source.display.clone(), line: Some(e.line), message: e.message });
        }
        for doc in docs {
            let mut objects = Vec::new();
            if objects_of(&doc.value, &mut objects).is_err() {
                continue;
            }
            for obj in objects.into_iter().filter(|o| Kind::of(o.value).is_some_and(|k| k != Kind::Secret)) {
                old.insert(identity(obj.value, &input.namespace), obj.value.clone());
            }
        }
    }
    old
}
