//! What a `check` run produced, independent of output format.

use serde::Serialize;

use crate::policy::{Finding, Severity};

/// The object a finding is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    /// `Kind namespace/name`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where an object came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    /// The input path as given (relative paths stay relative; `-` for stdin).
    pub file: String,
    /// 1-based line of the finding's field (or of the document when the field is absent).
    pub line: usize,
    /// 0-based index of the document within the file.
    pub document: usize,
}

/// One finding, located.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    pub location: Location,
    pub object: ObjectRef,
    pub finding: Finding,
}

/// Input that could not be read or understood.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InputError {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// The outcome of a run, in deterministic order (file, document, then catalog order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub items: Vec<Item>,
    pub errors: Vec<InputError>,
    /// Objects the engine evaluated (known kinds).
    pub objects_checked: usize,
    /// Documents read, of any kind.
    pub documents: usize,
    /// Files read.
    pub files: usize,
}

impl CheckReport {
    /// Findings of one severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|i| i.finding.severity == severity).count()
    }
}
