//! The rule catalog. One file per rule family; each family exports `RULES`.
//!
//! A rule is metadata plus a pure `check` function of a `Subject` that writes findings into a
//! `Report`. Rules never fail: anything that cannot be judged is a finding or nothing.

use std::sync::LazyLock;

use super::config::Mode;
use super::kind::Kind;
use super::subject::{Report, Subject};

pub mod ai_env;
pub mod formats;
pub mod names;
pub mod provisioner;
pub mod references;
pub mod rotation;

/// Id of the pseudo-rule that reports objects whose shape does not match their kind.
pub const SCHEMA_RULE: &str = "schema";

/// A rule's metadata.
#[derive(Clone, Copy, Debug)]
pub struct RuleInfo {
    /// Stable kebab-case id.
    pub id: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Why it matters and how to fix a finding.
    pub explanation: &'static str,
    /// Kinds it applies to.
    pub kinds: &'static [Kind],
    /// Mode when the config says nothing.
    pub default_mode: Mode,
}

/// A rule: metadata and its check.
#[derive(Clone, Copy)]
pub struct Rule {
    pub info: RuleInfo,
    pub check: fn(&Subject<'_>, &mut Report),
}

impl std::ops::Deref for Rule {
    type Target = RuleInfo;
    fn deref(&self) -> &RuleInfo {
        &self.info
    }
}

/// Every kind the engine evaluates: all it knows but `Secret` (last in `Kind::ALL`), which
/// only feeds lookups.
pub const EVALUATED_KINDS: &[Kind] = match Kind::ALL.split_last() {
    Some((Kind::Secret, evaluated)) => evaluated,
    _ => panic!("Kind::ALL must end with Secret"),
};

/// The schema pseudo-rule (decode failures are reported by the engine before rules run).
pub const SCHEMA: RuleInfo = RuleInfo {
    id: SCHEMA_RULE,
    summary: "The object has the shape of its kind's schema",
    explanation: "coder-guard decodes each object into its kind's schema before any rule runs. A field with \
the wrong type (a string where a number belongs, a map where a list belongs) would be rejected by the API \
server or break the operator. Fix the field named in the finding; `kubectl explain <kind>.<field>` shows \
the expected type.",
    kinds: EVALUATED_KINDS,
    default_mode: Mode::Enforce,
};

/// The catalog, in evaluation order.
pub static CATALOG: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    [names::RULES, references::RULES, provisioner::RULES, ai_env::RULES, formats::RULES, rotation::RULES].concat()
});

/// Metadata of every rule, the schema pseudo-rule first and the mutators (which are not in
/// `CATALOG`: validation does not run them) last.
pub fn infos() -> impl Iterator<Item = &'static RuleInfo> {
    std::iter::once(&SCHEMA).chain(CATALOG.iter().map(|r| &r.info)).chain(super::mutate::MUTATORS.iter())
}

/// The metadata of rule `id`.
pub fn info(id: &str) -> Option<&'static RuleInfo> {
    infos().find(|r| r.id == id)
}

/// Every rule id, for config validation.
pub fn ids() -> Vec<&'static str> {
    infos().map(|r| r.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_documented() {
        let ids = ids();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "duplicate rule id");
        for info in infos() {
            assert!(info.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{}", info.id);
            assert!(!info.summary.is_empty() && info.explanation.len() > 80, "{} needs docs", info.id);
            assert!(!info.kinds.is_empty(), "{} applies to no kind", info.id);
        }
    }
}
