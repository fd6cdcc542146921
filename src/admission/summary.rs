//! `Summary`: what logs and metrics record about one admission request. Identity, verdict and
//! the ids of the rules that fired; never object content, finding messages or patch values.

use std::fmt;

use super::response::Hook;
use super::review::Review;
use crate::policy::{Evaluation, Operation};

/// The outcome of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    /// `allowed` or `denied`, for log fields and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One admission request, as logs and metrics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub uid: String,
    pub hook: Hook,
    /// `request.kind.kind`, e.g. `Deployment`.
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// Empty on a CREATE that uses `generateName`.
    pub name: String,
    pub operation: Operation,
    pub verdict: Verdict,
    pub dry_run: bool,
    /// Ids of the rules with findings, each once, in finding order.
    pub rules: Vec<&'static str>,
    /// Number of warnings in the evaluation (before the response caps them).
    pub warnings: usize,
    /// Number of JSON-patch operations sent (0 unless an allowed mutation changed something).
    pub patch_operations: usize,
}

impl Summary {
    /// Summarizes the answer `respond(review, hook, eval)` gives.
    pub fn new(review: &Review, hook: Hook, eval: &Evaluation) -> Self {
        let allowed = eval.allowed();
        let mut rules: Vec<&'static str> = Vec::new();
        for f in &eval.findings {
            if !rules.contains(&f.rule) {
                rules.push(f.rule);
            }
        }
        let patch_operations = if hook == Hook::Mutate && allowed { eval.patch.len() } else { 0 };
        Self {
            uid: review.uid().to_owned(),
            hook,
            kind: review.kind().kind.clone(),
            namespace: review.namespace().to_owned(),
            name: review.name().to_owned(),
            operation: review.operation(),
            verdict: if allowed { Verdict::Allowed } else { Verdict::Denied },
            dry_run: review.dry_run(),
            rules,
            warnings: eval.with_severity(crate::policy::Severity::Warning).count(),
            patch_operations,
        }
    }
}

impl fmt::Display for Summary {
    /// `mutate CREATE Deployment coder/prov uid=… allowed dry_run=false rules=[a,b] warnings=0 patch=2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let object =
            if self.namespace.is_empty() { self.name.clone() } else { format!("{}/{}", self.namespace, self.name) };
        write!(
            f,
            "{} {} {} {object} uid={} {} dry_run={} rules=[{}] warnings={} patch={}",
            self.hook,
            self.operation.as_str(),
            self.kind,
            self.uid,
            self.verdict,
            self.dry_run,
            self.rules.join(","),
            self.warnings,
            self.patch_operations
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::decode;
    use crate::policy::{FieldPath, Finding, Severity};

    #[test]
    fn summarizes_without_content() {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-9", "kind": {"group": "coderd.coder.com", "version": "v1alpha1", "kind": "CoderInstance"},
            "operation": "UPDATE", "namespace": "coder", "name": "main", "dryRun": true,
            "object": {"spec": {"url": "https://secret.example.com"}}}});
        let review = decode(&serde_json::to_vec(&body).unwrap()).unwrap();
        let finding =
            |rule, severity| Finding { rule, path: FieldPath::parse("spec.url"), message: "m".into(), severity };
        let eval = Evaluation {
            findings: vec![
                finding("url-format", Severity::Error),
                finding("url-format", Severity::Error),
                finding("secret-ref", Severity::Warning),
            ],
            ..Evaluation::default()
        };
        let s = Summary::new(&review, Hook::Validate, &eval);
        assert_eq!(
            (s.verdict, s.rules.clone(), s.warnings, s.patch_operations),
            (Verdict::Denied, vec!["url-format", "secret-ref"], 1, 0)
        );
        let line = s.to_string();
        assert_eq!(
            line,
            "validate UPDATE CoderInstance coder/main uid=u-9 denied dry_run=true rules=[url-format,secret-ref] warnings=1 patch=0"
        );
        assert!(!line.contains("secret.example.com"));
    }
}
