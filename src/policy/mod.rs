//! The policy engine: a pure function from (operation, raw object, old object, namespace,
//! dry-run, `Lookup`) to findings. No I/O, no clock, no globals beyond static tables.
//!
//! The webhook handler and the `check` command translate their inputs into a `Request` and
//! the resulting `Evaluation` into their own wire formats; nothing here knows about either.

pub mod claims;
pub mod config;
pub mod env;
pub mod finding;
pub mod kind;
pub mod lookup;
pub mod mutate;
pub mod names;
pub mod path;
pub mod rules;
pub mod subject;

#[cfg(test)]
pub mod fixtures;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

pub use config::{Mode, RuleConfig};
pub use finding::{Finding, Severity};
pub use kind::Kind;
pub use lookup::{Found, Index, Lookup, ObjectKey};
pub use path::FieldPath;
pub use rules::{CATALOG, Rule};
pub use subject::{Object, Report, Subject};

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// Upper-case name as in `AdmissionRequest.operation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One object to evaluate.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub operation: Operation,
    /// The object as received (raw JSON, never a re-serialized typed struct).
    pub object: &'a Value,
    /// The stored object on UPDATE.
    pub old_object: Option<&'a Value>,
    /// The object's namespace.
    pub namespace: &'a str,
    /// `dryRun` of the admission request.
    pub dry_run: bool,
}

/// Engine-wide options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Severity of references that cannot be resolved from the available input (offline).
    pub unverifiable: Severity,
}

impl Default for Options {
    fn default() -> Self {
        Self { unverifiable: Severity::Warning }
    }
}

/// The result of evaluating one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// The object's kind, when the engine knows it.
    pub kind: Option<Kind>,
    /// Findings in catalog order, then field order.
    pub findings: Vec<Finding>,
    /// Audit annotations to record with the request (e.g. a break-glass reason).
    pub audit_annotations: BTreeMap<String, String>,
    /// Referenced objects that the lookup reported absent. A server with a cache confirms
    /// these with a live read before it denies.
    pub absent: Vec<ObjectKey>,
    /// JSON patch operations of the mutating webhook (always empty for validation).
    pub patch: Vec<json_patch::PatchOperation>,
}

impl Evaluation {
    /// True when no finding denies.
    pub fn allowed(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Findings of one severity.
    pub fn with_severity(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == severity)
    }
}

/// Evaluates requests against the rule catalog under a configuration.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    config: RuleConfig,
    options: Options,
}

impl Engine {
    /// An engine with this configuration and options.
    pub fn new(config: RuleConfig, options: Options) -> Self {
        Self { config, options }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuleConfig {
        &self.config
    }

    /// Evaluates one request. Never panics: a rule that panics becomes a finding.
    pub fn evaluate(&self, req: &Request<'_>, lookup: &dyn Lookup) -> Evaluation {
        let mut eval = Evaluation { kind: Kind::of(req.object), ..Evaluation::default() };
        let Some(kind) = eval.kind else { return eval };
        if matches!(req.operation, Operation::Delete | Operation::Connect) || kind == Kind::Secret {
            return eval;
        }
        let object = match Object::decode(kind, req.object) {
            Ok(o) => o,
            Err(e) => {
                let mode = self.config.mode(rules::SCHEMA_RULE, Mode::Enforce, req.namespace);
                if mode != Mode::Off {
                    eval.findings.push(Finding {
                        rule: rules::SCHEMA_RULE,
                        path: e.path,
                        message: e.message,
                        severity: severity(Severity::Error, mode),
                    });
                }
                return eval;
            }
        };
        let old = req.old_object.and_then(|o| Object::decode(kind, o).ok());
        let subject = Subject { req, lookup, object: &object, old: old.as_ref(), options: self.options };
        for rule in CATALOG.iter().filter(|r| r.kinds.contains(&kind)) {
            let mode = self.config.mode(rule.id, rule.default_mode, req.namespace);
            if mode == Mode::Off {
                continue;
            }
            let mut report = Report::new(rule.id);
            let ran = catch_unwind(AssertUnwindSafe(|| (rule.check)(&subject, &mut report)));
            if ran.is_err() {
                report.deny(
                    FieldPath::root(),
                    "internal error while evaluating this rule (a coder-guard bug; please report it with the object)",
                );
            }
            let (findings, audit, absent) = report.finish();
            eval.findings.extend(findings.into_iter().map(|mut f| {
                f.severity = severity(f.severity, mode);
                f
            }));
            eval.audit_annotations.extend(audit);
            eval.absent.extend(absent);
        }
        eval.absent.sort();
        eval.absent.dedup();
        eval
    }

    /// Computes the mutating webhook's answer for one request: the provisioner-key injection and
    /// checksum patch of a Deployment, with the mutators' findings (see `mutate`). Validation
    /// rules do not run. Never panics.
    pub fn mutate(&self, req: &Request<'_>, lookup: &dyn Lookup) -> Evaluation {
        mutate::mutate(&self.config, self.options, req, lookup)
    }
}

/// A finding's severity under a rule mode: `warn` downgrades errors.
fn severity(level: Severity, mode: Mode) -> Severity {
    match mode {
        Mode::Warn => Severity::Warning,
        Mode::Enforce | Mode::Off => level,
    }
}
