//! Rule configuration: per-rule mode (`enforce`, `warn`, `off`) and namespace exemptions,
//! read from the YAML file cluster admins mount (and `check --config` reads).
//!
//! ```yaml
//! exemptNamespaces: [sandbox]          # no rule applies here
//! rules:
//!   provisioner-key-rotation: off
//!   secret-ref:
//!     mode: warn
//!     exemptNamespaces: [staging]
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::yaml;

/// What a rule's findings do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Findings deny (warnings stay warnings).
    Enforce,
    /// Findings are warnings.
    Warn,
    /// The rule does not run.
    Off,
}

impl Mode {
    /// The lowercase name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        match s {
            "enforce" => Some(Mode::Enforce),
            "warn" => Some(Mode::Warn),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

/// A malformed rule configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}:{line}: {message}")]
pub struct ConfigError {
    /// The file (or `<inline>`).
    pub source_name: String,
    /// 1-based line of the offending entry.
    pub line: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Per-rule settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSetting {
    pub mode: Option<Mode>,
    pub exempt_namespaces: BTreeSet<String>,
}

/// The whole configuration. The default runs every rule in its default mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleConfig {
    pub rules: BTreeMap<String, RuleSetting>,
    pub exempt_namespaces: BTreeSet<String>,
}

impl RuleConfig {
    /// Parses a configuration file's text; `known` lists the valid rule ids.
    pub fn parse(text: &str, source_name: &str, known: &[&str]) -> Result<Self, ConfigError> {
        let err = |line: usize, message: String| ConfigError { source_name: source_name.to_owned(), line, message };
        let doc = yaml::parse_single(text).map_err(|e| err(e.line, e.message))?;
        let at = |path: &[&str]| {
            let segs: Vec<_> = path.iter().map(|s| crate::policy::path::Segment::Key((*s).to_owned().into())).collect();
            yaml::locate(text, doc.line, &segs)
        };
        let mut config = RuleConfig::default();
        let top = match &doc.value {
            Value::Null => return Ok(config),
            Value::Object(m) => m,
            _ => {
                return Err(err(
                    doc.line,
                    "the rule config must be a mapping with `rules` and `exemptNamespaces`".into(),
                ));
            }
        };
        for (key, value) in top {
            match key.as_str() {
                "exemptNamespaces" => {
                    config.exempt_namespaces = string_list(value)
                        .ok_or_else(|| err(at(&[key]), "exemptNamespaces must be a list of namespace names".into()))?;
                }
                "rules" => {
                    let Value::Object(rules) = value else {
                        return Err(err(
                            at(&[key]),
                            "rules must map rule ids to a mode or a {mode, exemptNamespaces} mapping".into(),
                        ));
                    };
                    for (id, setting) in rules {
                        let line = at(&["rules", id]);
                        if !known.contains(&id.as_str()) {
                            return Err(err(
                                line,
                                format!("unknown rule {id:?}; `coder-guard rules` lists the rule ids"),
                            ));
                        }
                        config.rules.insert(id.clone(), parse_setting(setting).map_err(|m| err(line, m))?);
                    }
                }
                other => {
                    return Err(err(
                        at(&[other]),
                        format!("unknown key {other:?}; expected `rules` or `exemptNamespaces`"),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// The mode `rule` runs in for `namespace`, given its default.
    pub fn mode(&self, rule: &str, default: Mode, namespace: &str) -> Mode {
        if self.exempt_namespaces.contains(namespace) {
            return Mode::Off;
        }
        match self.rules.get(rule) {
            Some(s) if s.exempt_namespaces.contains(namespace) => Mode::Off,
            Some(RuleSetting { mode: Some(m), .. }) => *m,
            _ => default,
        }
    }
}

fn parse_setting(value: &Value) -> Result<RuleSetting, String> {
    const HINT: &str = "expected enforce, warn, off, or a mapping with `mode` and `exemptNamespaces`";
    let parse_mode = |v: &Value| match v {
        Value::String(s) => Mode::parse(s).ok_or_else(|| format!("unknown mode {s:?}; {HINT}")),
        // YAML reads a bare `off` as false.
        Value::Bool(false) => Ok(Mode::Off),
        other => Err(format!("unknown mode {other}; {HINT}")),
    };
    match value {
        Value::Object(m) => {
            let mut setting = RuleSetting::default();
            for (k, v) in m {
                match k.as_str() {
                    "mode" => setting.mode = Some(parse_mode(v)?),
                    "exemptNamespaces" => {
                        setting.exempt_namespaces =
                            string_list(v).ok_or("exemptNamespaces must be a list of namespace names")?;
                    }
                    other => return Err(format!("unknown key {other:?}; {HINT}")),
                }
            }
            Ok(setting)
        }
        v => Ok(RuleSetting { mode: Some(parse_mode(v)?), exempt_namespaces: BTreeSet::new() }),
    }
}

fn string_list(value: &Value) -> Option<BTreeSet<String>> {
    match value {
        Value::Null => Some(BTreeSet::new()),
        Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["secret-ref", "names"];

    #[test]
    fn parses_modes_and_exemptions() {
        let c = RuleConfig::parse(
            "exemptNamespaces: [sandbox]\nrules:\n  names: off\n  secret-ref:\n    mode: warn\n    exemptNamespaces: [staging]\n",
            "c.yaml",
            KNOWN,
        )
        .unwrap();
        assert_eq!(c.mode("names", Mode::Enforce, "prod"), Mode::Off);
        assert_eq!(c.mode("secret-ref", Mode::Enforce, "prod"), Mode::Warn);
        assert_eq!(c.mode("secret-ref", Mode::Enforce, "staging"), Mode::Off);
        assert_eq!(c.mode("other", Mode::Enforce, "sandbox"), Mode::Off);
        assert_eq!(c.mode("other", Mode::Warn, "prod"), Mode::Warn);
    }

    #[test]
    fn errors_name_the_line() {
        let e = RuleConfig::parse("rules:\n  names: enforce\n  nope: warn\n", "c.yaml", KNOWN).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown rule \"nope\""), "{e}");
        let e = RuleConfig::parse("rules:\n  names: strict\n", "c.yaml", KNOWN).unwrap_err();
        assert_eq!((e.line, e.to_string().starts_with("c.yaml:2:")), (2, true));
        let e = RuleConfig::parse("rules: [a]\n", "c.yaml", KNOWN).unwrap_err();
        assert_eq!(e.line, 1);
        let e = RuleConfig::parse("rules:\n  names: [\n", "c.yaml", KNOWN).unwrap_err();
        assert!(e.line >= 2);
        let e = RuleConfig::parse("rulez: {}\n", "c.yaml", KNOWN).unwrap_err();
        assert!(e.message.contains("rulez"));
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(RuleConfig::parse("# nothing\n", "c.yaml", KNOWN).unwrap(), RuleConfig::default());
    }
}
