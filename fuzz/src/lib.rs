//! The fuzz targets' bodies, one function per target. Each feeds arbitrary bytes through the
//! same functions the binary uses and panics when a property that must hold for every input
//! breaks. `tests/fuzz_regressions.rs` includes this file, so saved inputs replay through
//! exactly this code under `cargo test`.

use std::sync::LazyLock;

use base64::Engine as _;
use coder_guard::admission::{self, Hook, MAX_WARNING_BYTES, MAX_WARNINGS, Summary};
use coder_guard::check::{self, report};
use coder_guard::policy::lookup::Overlay;
use coder_guard::policy::{Engine, Evaluation, Index, Lookup, Mode, Request, RuleConfig, rules};
use coder_guard::yaml;
use serde_json::Value;

/// What `serve --dev --dev-objects` would see given the example manifests: the provisioner key
/// and Secret the mutate example names, and the good examples' objects (misses are unknown).
static DEV_OBJECTS: LazyLock<Index> = LazyLock::new(|| {
    let mut index = Index::new(false);
    for text in [
        include_str!("../../examples/admission/objects.yaml"),
        include_str!("../../examples/good/coder-guard.yaml"),
        include_str!("../../examples/good/coder-helm.yaml"),
        include_str!("../../examples/good/operator.yaml"),
        include_str!("../../examples/good/provisioner-deployment.yaml"),
    ] {
        let (docs, error) = yaml::parse_documents(text);
        assert_eq!(error, None, "the examples parse");
        docs.iter().filter(|d| !d.value.is_null()).for_each(|d| index.insert(&d.value, "default"));
    }
    index
});

/// The webhook path: body → `admission::decode` → validate and mutate against three lookups
/// (with the handler's confirmation of absent references) → `admission::respond`.
pub fn admission_review(data: &[u8]) {
    let review = match admission::decode(data) {
        Ok(review) => review,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let engine = Engine::default();
    let request = review.request();
    // Offline with nothing known (misses are unknown), a cluster cache that holds nothing
    // (misses are absent), and the examples as `--dev-objects`.
    let offline = Index::new(false);
    let cluster = Index::new(true);
    for hook in [Hook::Validate, Hook::Mutate] {
        for lookup in [&offline as &dyn Lookup, &cluster, &*DEV_OBJECTS] {
            let eval = evaluate(&engine, hook, &request, lookup);
            if !eval.allowed() && !eval.absent.is_empty() {
                // The handler re-reads absent references before it denies; a live read that
                // finds nothing either must not change the answer.
                let fresh = Index::new(true);
                let overlay = Overlay::new(&fresh, eval.absent.iter().cloned(), lookup);
                assert_eq!(evaluate(&engine, hook, &request, &overlay), eval, "confirming absence changed the answer");
            }
            let body = admission::respond(&review, hook, &eval);
            check_response(&body, &review, hook, &eval);
            let summary = Summary::new(&review, hook, &eval);
            assert_eq!(summary.uid, review.uid());
            if hook == Hook::Mutate && eval.allowed() && !eval.patch.is_empty() {
                check_patch(&engine, &body, &request, lookup);
            }
        }
    }
}

fn evaluate(engine: &Engine, hook: Hook, request: &Request<'_>, lookup: &dyn Lookup) -> Evaluation {
    match hook {
        Hook::Validate => engine.evaluate(request, lookup),
        Hook::Mutate => engine.mutate(request, lookup),
    }
}

/// The response is an AdmissionReview echoing the uid, with the verdict, capped warnings, and a
/// patch only from an allowing mutating hook.
fn check_response(body: &[u8], review: &admission::Review, hook: Hook, eval: &Evaluation) {
    let out: Value = serde_json::from_slice(body).expect("the response is JSON");
    let response = &out["response"];
    assert_eq!(out["apiVersion"], admission::API_VERSION);
    assert_eq!(out["kind"], admission::KIND);
    assert_eq!(response["uid"], review.uid());
    assert_eq!(response["allowed"], eval.allowed());
    let warnings = response.get("warnings").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    assert!(warnings.len() <= MAX_WARNINGS, "{} warnings", warnings.len());
    for w in warnings {
        let w = w.as_str().expect("warnings are strings");
        assert!(w.len() <= MAX_WARNING_BYTES, "warning of {} bytes", w.len());
    }
    let patched = response.get("patch").is_some();
    assert_eq!(patched, hook == Hook::Mutate && eval.allowed() && !eval.patch.is_empty());
    if hook == Hook::Validate {
        assert!(eval.patch.is_empty(), "validation produced a patch");
    }
}

/// The patch as sent (base64 JSON) applies to the object under review, and the mutating hook is
/// idempotent: the patched object needs no further patch (the API server may call it again).
fn check_patch(engine: &Engine, body: &[u8], request: &Request<'_>, lookup: &dyn Lookup) {
    let out: Value = serde_json::from_slice(body).expect("the response is JSON");
    let encoded = out["response"]["patch"].as_str().expect("the patch is a string");
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("the patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("the patch is a JSON patch");
    let mut object = request.object.clone();
    if let Err(e) = json_patch::patch(&mut object, &patch) {
        panic!("the patch does not apply to the object: {e}");
    }
    let again = engine.mutate(&Request { object: &object, ..*request }, lookup);
    assert!(again.patch.is_empty(), "mutating the patched object patches again: {:?}", again.patch);
}

/// `check` on one text (`check -`): YAML documents → objects → index → evaluation → located
/// findings, then every output format.
pub fn check_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let report = check::run_text(&Engine::default(), text, "default");
    let last_line = last_line(text);
    for item in &report.items {
        let line = item.location.line;
        assert!((1..=last_line).contains(&line), "finding at line {line} of a {last_line}-line text");
    }
    for error in &report.errors {
        if let Some(line) = error.line {
            assert!((1..=last_line).contains(&line), "error at line {line} of a {last_line}-line text");
        }
    }
    for format in [report::Format::Text, report::Format::Junit, report::Format::Github] {
        assert!(!report::render(format, &report).is_empty());
    }
    for format in [report::Format::Json, report::Format::Sarif] {
        let rendered = report::render(format, &report);
        if let Err(e) = serde_json::from_str::<Value>(&rendered) {
            panic!("{format:?} output is not JSON: {e}");
        }
    }
}

/// The number of the text's last line (an empty text has line 1). Lines end in LF, CRLF or a
/// lone CR, as YAML has them.
fn last_line(text: &str) -> usize {
    text.replace("\r\n", "\n").replace('\r', "\n").lines().count().max(1)
}

/// The `--config` file parser: an error names a line of the text; a configuration names only
/// known rules and turns every rule off in its exempt namespaces.
pub fn rule_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let known = rules::ids();
    let config = match RuleConfig::parse(text, "fuzz.yaml", &known) {
        Ok(config) => config,
        Err(e) => {
            let last_line = last_line(text);
            assert!((1..=last_line).contains(&e.line), "error at line {} of a {last_line}-line text", e.line);
            assert!(e.to_string().starts_with("fuzz.yaml:"));
            return;
        }
    };
    for (id, setting) in &config.rules {
        assert!(known.contains(&id.as_str()), "unknown rule {id:?} accepted");
        for namespace in &setting.exempt_namespaces {
            assert_eq!(config.mode(id, Mode::Enforce, namespace), Mode::Off);
        }
    }
    for namespace in &config.exempt_namespaces {
        for id in &known {
            assert_eq!(config.mode(id, Mode::Enforce, namespace), Mode::Off);
        }
    }
}
