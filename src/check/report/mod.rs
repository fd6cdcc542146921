//! Output formats of `check`. Each renders a whole `CheckReport` to a string.
//!
//! Owns the translation from the format-independent `CheckReport` to bytes; it must not
//! evaluate policy, read files or add anything that varies between runs (timestamps,
//! durations, hostnames, absolute paths). The same report always renders to the same bytes.
//! One file per format; the helpers here are the parts the formats share.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::model::{CheckReport, ObjectRef};

pub mod github;
pub mod json;
pub mod junit;
pub mod sarif;
pub mod text;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per finding, then a summary (for people).
    Text,
    /// A stable JSON document (`"version": 1`).
    Json,
    /// JUnit XML: a testsuite per file, a testcase per object and rule.
    Junit,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// GitHub Actions workflow commands (annotations), grouped per file.
    Github,
}

/// Renders `report` in `format`.
pub fn render(format: Format, report: &CheckReport) -> String {
    match format {
        Format::Text => text::render(report),
        Format::Json => json::render(report),
        Format::Junit => junit::render(report),
        Format::Sarif => sarif::render(report),
        Format::Github => github::render(report),
    }
}

// === shared helpers ===

/// `namespace/name`, or just `name` for an object without a namespace.
fn object_name(object: &ObjectRef) -> String {
    if object.namespace.is_empty() { object.name.clone() } else { format!("{}/{}", object.namespace, object.name) }
}

/// `Kind namespace/name`.
fn object_label(object: &ObjectRef) -> String {
    format!("{} {}", object.kind, object_name(object))
}

/// Every file named by a finding or an input error, sorted and deduplicated.
fn files(report: &CheckReport) -> Vec<&str> {
    let items = report.items.iter().map(|i| i.location.file.as_str());
    let errors = report.errors.iter().map(|e| e.file.as_str());
    items.chain(errors).collect::<BTreeSet<_>>().into_iter().collect()
}

/// `s` with control characters other than tab escaped (`\n`, `\r`, `\u{7}`), so that one
/// finding stays on one line in line-oriented output.
fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// `1 error`, `2 errors`.
fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod fixtures {
    //! The one representative report every format's golden file is rendered from, and the
    //! golden-file comparison.

    use std::path::PathBuf;

    use crate::check::model::{CheckReport, InputError, Item, Location, ObjectRef};
    use crate::policy::config::Mode;
    use crate::policy::kind::Kind;
    use crate::policy::rules::{RuleInfo, SCHEMA_RULE};
    use crate::policy::{FieldPath, Finding, Severity};

    /// The file whose name needs escaping in every format that escapes.
    pub const ODD_FILE: &str = "manifests/team a,b 100%.yaml";

    fn object(api_version: &str, kind: &str, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn item(file: &str, line: usize, document: usize, object: &ObjectRef, finding: Finding) -> Item {
        Item { location: Location { file: file.to_owned(), line, document }, object: object.clone(), finding }
    }

    fn finding(rule: &'static str, path: FieldPath, message: &str, severity: Severity) -> Finding {
        Finding { rule, path, message: message.to_owned(), severity }
    }

    /// Two files (one with a space, `,` and `%` in its name); an object with two error findings
    /// of one rule; a warning; a message with `%`, `:`, `,`, CR and LF; input errors with and
    /// without a line.
    pub fn report() -> CheckReport {
        let cp = object("coder.com/v1alpha1", "CoderControlPlane", "coder", "main");
        let prov = object("coder.com/v1alpha1", "CoderProvisioner", "coder", "ci");
        let inst = object("coder.com/v1alpha1", "CoderInstance", "team-a", "prod");
        let env = FieldPath::parse("spec.extraEnv");
        CheckReport {
            items: vec![
                item(
                    "deploy/coder.yaml",
                    12,
                    0,
                    &cp,
                    finding(
                        "secret-ref",
                        env.index(2).key("valueFrom").key("secretKeyRef"),
                        "Secret coder/db-url does not exist",
                        Severity::Error,
                    ),
                ),
                item(
                    "deploy/coder.yaml",
                    17,
                    0,
                    &cp,
                    finding(
                        "secret-ref",
                        env.index(3).key("valueFrom").key("secretKeyRef").key("key"),
                        "Secret coder/oidc has no key \"client-secret\"",
                        Severity::Error,
                    ),
                ),
                item(
                    "deploy/coder.yaml",
                    40,
                    1,
                    &prov,
                    finding(
                        "control-plane-ref",
                        FieldPath::parse("spec.controlPlaneRef.name"),
                        "CoderControlPlane coder/main is not in the input",
                        Severity::Warning,
                    ),
                ),
                item(
                    ODD_FILE,
                    7,
                    0,
                    &inst,
                    finding(
                        "instance-ref",
                        FieldPath::parse("metadata.annotations").key("example.com/owner"),
                        "value 100% invalid: expected a,b\r\nsee the docs",
                        Severity::Error,
                    ),
                ),
            ],
            errors: vec![
                InputError {
                    file: "deploy/coder.yaml".to_owned(),
                    line: None,
                    message: "stream is not valid UTF-8 after document 1".to_owned(),
                },
                InputError {
                    file: ODD_FILE.to_owned(),
                    line: Some(20),
                    message: "did not find expected key".to_owned(),
                },
            ],
            objects_checked: 3,
            documents: 4,
            files: 2,
        }
    }

    const SCHEMA: RuleInfo = RuleInfo {
        id: SCHEMA_RULE,
        summary: "The object has the shape of its kind's schema",
        explanation: "Fix the field named in the finding.",
        kinds: &[Kind::Deployment],
        default_mode: Mode::Enforce,
    };
    const OFF: RuleInfo = RuleInfo {
        id: "example-off",
        summary: "A rule that is off unless configured",
        explanation: "Exists so the golden file shows a rule whose default level is none.",
        kinds: &[Kind::Deployment],
        default_mode: Mode::Off,
    };
    const SECRET_REF: RuleInfo = RuleInfo {
        id: "secret-ref",
        summary: "Referenced Secrets exist",
        explanation: "Create the Secret first, or fix the reference.",
        kinds: &[Kind::CoderControlPlane],
        default_mode: Mode::Enforce,
    };
    const CONTROL_PLANE_REF: RuleInfo = RuleInfo {
        id: "control-plane-ref",
        summary: "controlPlaneRef names an existing CoderControlPlane",
        explanation: "Set spec.controlPlaneRef.name to a CoderControlPlane in the same namespace.",
        kinds: &[Kind::CoderProvisioner],
        default_mode: Mode::Warn,
    };
    const INSTANCE_REF: RuleInfo = RuleInfo {
        id: "instance-ref",
        summary: "instanceRef names an existing CoderInstance",
        explanation: "Create the CoderInstance first or fix the name.",
        kinds: &[Kind::CoderInstance],
        default_mode: Mode::Enforce,
    };

    /// A fixed rule catalog, so the SARIF golden file does not change whenever a rule is added
    /// or reworded elsewhere (the real catalog is checked structurally in `sarif::tests`).
    pub fn catalog() -> Vec<&'static RuleInfo> {
        vec![&SCHEMA, &OFF, &SECRET_REF, &CONTROL_PLANE_REF, &INSTANCE_REF]
    }

    /// Compares `actual` with `tests/golden/report/<name>.golden` byte for byte, or writes the
    /// file when `UPDATE_GOLDEN=1`.
    pub fn assert_golden(name: &str, actual: &str) {
        let path: PathBuf =
            [env!("CARGO_MANIFEST_DIR"), "tests", "golden", "report", &format!("{name}.golden")].iter().collect();
        if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().expect("golden path has a parent")).expect("create golden dir");
            std::fs::write(&path, actual).expect("write golden file");
            return;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
        assert!(
            expected == actual,
            "{} differs from the rendered output (run with UPDATE_GOLDEN=1 to refresh, then review the diff)\n\
             --- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Format; 5] = [Format::Text, Format::Json, Format::Junit, Format::Sarif, Format::Github];

    #[test]
    fn rendering_is_deterministic() {
        let report = fixtures::report();
        for format in ALL {
            let first = render(format, &report);
            assert!(!first.is_empty(), "{format:?} rendered nothing");
            assert_eq!(first, render(format, &report.clone()), "{format:?} is not deterministic");
            assert!(first.ends_with('\n'), "{format:?} output lacks a trailing newline");
        }
    }

    #[test]
    fn empty_report_renders_valid_output() {
        let empty = CheckReport::default();
        assert_eq!(
            render(Format::Text, &empty),
            "0 objects checked in 0 files: 0 errors, 0 warnings, 0 input errors\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render(Format::Json, &empty)).expect("json parses");
        assert_eq!(json["findings"], serde_json::json!([]));
        assert_eq!(json["summary"]["errors"], 0);
        let junit = quick_junit::Report::deserialize_from_str(&render(Format::Junit, &empty)).expect("junit parses");
        assert_eq!((junit.tests, junit.failures, junit.errors), (1, 0, 0));
        let sarif: serde_json::Value = serde_json::from_str(&render(Format::Sarif, &empty)).expect("sarif parses");
        assert_eq!(sarif["runs"][0]["results"], serde_json::json!([]));
        assert_eq!(sarif["runs"][0]["invocations"][0]["executionSuccessful"], true);
        let github = render(Format::Github, &empty);
        assert!(!github.contains("::"), "{github}");
        assert_eq!(github.lines().count(), 1);
    }

    #[test]
    fn helpers() {
        assert_eq!(one_line("a\r\nb\tc\u{7}"), "a\\r\\nb\tc\\u{7}");
        assert!(matches!(one_line("plain"), Cow::Borrowed(_)));
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "input error"), "0 input errors");
        let mut o = ObjectRef { kind: "Deployment".into(), name: "coder".into(), ..Default::default() };
        assert_eq!(object_label(&o), "Deployment coder");
        o.namespace = "ns".into();
        assert_eq!(object_label(&o), "Deployment ns/coder");
        assert_eq!(files(&fixtures::report()), ["deploy/coder.yaml", fixtures::ODD_FILE]);
    }
}
