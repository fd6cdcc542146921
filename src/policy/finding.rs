//! Findings: what a rule reports about one object.

use std::fmt;

use serde::Serialize;

use super::path::FieldPath;

/// How serious a finding is, after the rule's mode is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Allowed, reported as an admission warning.
    Warning,
    /// Denied.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem a rule found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's stable id.
    pub rule: &'static str,
    /// The field the finding points at.
    #[serde(serialize_with = "display")]
    pub path: FieldPath,
    /// What is wrong and what to do.
    pub message: String,
    /// Error (deny) or warning (allow with a warning).
    pub severity: Severity,
}

impl fmt::Display for Finding {
    /// `[rule-id] field.path: message`, the form deny messages and warnings use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.path, self.message)
    }
}

fn display<S: serde::Serializer>(p: &FieldPath, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}
