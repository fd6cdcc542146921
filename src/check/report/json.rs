//! `--output json`: a stable, versioned document for scripts.
//!
//! Shape (version 1): `{"version":1,"summary":{…},"findings":[…],"inputErrors":[…]}`, keys in
//! a fixed order, pretty-printed with a two-space indent and a trailing newline. Adding a key
//! is compatible; renaming or removing one needs a new `version`.

use serde::Serialize;

use crate::check::model::{CheckReport, InputError, Item};
use crate::policy::Severity;

/// The schema version of this document.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    version: u32,
    summary: Summary,
    findings: Vec<JsonFinding<'a>>,
    input_errors: Vec<JsonInputError<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    files: usize,
    documents: usize,
    objects_checked: usize,
    errors: usize,
    warnings: usize,
    input_errors: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonFinding<'a> {
    file: &'a str,
    line: usize,
    document: usize,
    api_version: &'a str,
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    rule: &'a str,
    severity: Severity,
    path: String,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonInputError<'a> {
    file: &'a str,
    line: Option<usize>,
    message: &'a str,
}

impl<'a> From<&'a Item> for JsonFinding<'a> {
    fn from(item: &'a Item) -> Self {
        let Item { location, object, finding } = item;
        Self {
            file: &location.file,
            line: location.line,
            document: location.document,
            api_version: &object.api_version,
            kind: &object.kind,
            namespace: &object.namespace,
            name: &object.name,
            rule: finding.rule,
            severity: finding.severity,
            path: finding.path.to_string(),
            message: &finding.message,
        }
    }
}

impl<'a> From<&'a InputError> for JsonInputError<'a> {
    fn from(error: &'a InputError) -> Self {
        let InputError { file, line, message } = error;
        Self { file, line: *line, message }
    }
}

/// Renders `report` as JSON.
pub fn render(report: &CheckReport) -> String {
    let document = Document {
        version: VERSION,
        summary: Summary {
            files: report.files,
            documents: report.documents,
            objects_checked: report.objects_checked,
            errors: report.count(Severity::Error),
            warnings: report.count(Severity::Warning),
            input_errors: report.errors.len(),
        },
        findings: report.items.iter().map(JsonFinding::from).collect(),
        input_errors: report.errors.iter().map(JsonInputError::from).collect(),
    };
    let mut out = serde_json::to_string_pretty(&document).expect("the report serializes to JSON");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::check::report::fixtures;

    #[test]
    fn golden() {
        fixtures::assert_golden("json", &render(&fixtures::report()));
    }

    #[test]
    fn round_trips_every_field() {
        let report = fixtures::report();
        let doc: Value = serde_json::from_str(&render(&report)).expect("valid JSON");
        assert_eq!(doc["version"], 1);
        assert_eq!(
            doc["summary"],
            json!({"files": 2, "documents": 4, "objectsChecked": 3, "errors": 3, "warnings": 1, "inputErrors": 2})
        );
        assert_eq!(
            doc["findings"][3],
            json!({
                "file": fixtures::ODD_FILE, "line": 7, "document": 0,
                "apiVersion": "coder.com/v1alpha1", "kind": "CoderInstance", "namespace": "team-a", "name": "prod",
                "rule": "instance-ref", "severity": "error",
                "path": "metadata.annotations[example.com/owner]",
                "message": "value 100% invalid: expected a,b\r\nsee the docs",
            })
        );
        assert_eq!(doc["inputErrors"][0]["line"], Value::Null);
        assert_eq!(
            doc["inputErrors"][1],
            json!({"file": fixtures::ODD_FILE, "line": 20, "message": "did not find expected key"})
        );
    }
}
