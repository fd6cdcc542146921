//! `--output sarif`: SARIF 2.1.0 for code-scanning dashboards (GitHub code scanning and
//! others), built from typed structs with serde so key order never depends on serde_json
//! features.
//!
//! One run. `tool.driver.rules` lists every rule of the catalog, so a dashboard can show rules
//! that reported nothing; each result points at its rule by `ruleId` and `ruleIndex`, at the
//! file and 1-based line of the field, and at the object as a logical location. A
//! `partialFingerprints` hash that leaves the line out lets dashboards follow a finding across
//! edits. Input errors become tool execution notifications.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::object_name;
use crate::check::model::{CheckReport, InputError, Item};
use crate::policy::config::Mode;
use crate::policy::rules::{self, RuleInfo};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const SARIF_VERSION: &str = "2.1.0";
const TOOL_NAME: &str = "coder-guard";
/// Where people learn about the tool (shown by dashboards next to the rules).
const INFORMATION_URI: &str = "https://github.com/coder/coder-guard";
/// The `partialFingerprints` key; bump the suffix if the hashed fields ever change.
const FINGERPRINT_KEY: &str = "coderGuard/v1";

#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [Run<'a>; 1],
}

#[derive(Serialize)]
struct Run<'a> {
    tool: Tool<'a>,
    invocations: [Invocation<'a>; 1],
    results: Vec<SarifResult<'a>>,
}

#[derive(Serialize)]
struct Tool<'a> {
    driver: Driver<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver<'a> {
    name: &'static str,
    information_uri: &'static str,
    version: &'static str,
    rules: Vec<Rule<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule<'a> {
    id: &'a str,
    short_description: Message<'a>,
    full_description: Message<'a>,
    help: Message<'a>,
    default_configuration: Configuration,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    text: Cow<'a, str>,
}

impl<'a> Message<'a> {
    fn new(text: impl Into<Cow<'a, str>>) -> Self {
        Self { text: text.into() }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation<'a> {
    execution_successful: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_execution_notifications: Vec<Notification<'a>>,
}

#[derive(Serialize)]
struct Notification<'a> {
    level: &'static str,
    message: Message<'a>,
    locations: [Location; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    rule_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
    level: String,
    message: Message<'a>,
    locations: [Location; 1],
    partial_fingerprints: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: PhysicalLocation,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logical_locations: Vec<LogicalLocation>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation {
    name: String,
    kind: &'static str,
    fully_qualified_name: String,
}

/// Renders `report` as SARIF, listing every rule of the catalog.
pub fn render(report: &CheckReport) -> String {
    let catalog: Vec<&RuleInfo> = rules::infos().collect();
    render_with(report, &catalog, env!("CARGO_PKG_VERSION"))
}

/// Renders `report` as SARIF with `catalog` as the driver's rules and `version` as its version.
pub(super) fn render_with(report: &CheckReport, catalog: &[&RuleInfo], version: &'static str) -> String {
    let log = Log {
        schema: SCHEMA,
        version: SARIF_VERSION,
        runs: [Run {
            tool: Tool {
                driver: Driver {
                    name: TOOL_NAME,
                    information_uri: INFORMATION_URI,
                    version,
                    rules: catalog.iter().map(|r| rule(r)).collect(),
                },
            },
            invocations: [Invocation {
                execution_successful: report.errors.is_empty(),
                tool_execution_notifications: report.errors.iter().map(notification).collect(),
            }],
            results: report.items.iter().map(|i| result(i, catalog)).collect(),
        }],
    };
    let mut out = serde_json::to_string_pretty(&log).expect("the SARIF log serializes to JSON");
    out.push('\n');
    out
}

fn rule(info: &RuleInfo) -> Rule<'_> {
    Rule {
        id: info.id,
        short_description: Message::new(info.summary),
        full_description: Message::new(info.explanation),
        help: Message::new(info.explanation),
        default_configuration: Configuration { level: level(info.default_mode) },
    }
}

/// The SARIF level of a rule mode.
fn level(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "error",
        Mode::Warn => "warning",
        Mode::Off => "none",
    }
}

fn result<'a>(item: &'a Item, catalog: &[&RuleInfo]) -> SarifResult<'a> {
    let Item { location, object, finding } = item;
    let name = object_name(object);
    SarifResult {
        rule_id: finding.rule,
        rule_index: catalog.iter().position(|r| r.id == finding.rule),
        level: finding.severity.to_string(),
        message: Message::new(format!("{}: {}", finding.path, finding.message)),
        locations: [Location {
            physical_location: physical(&location.file, Some(location.line)),
            logical_locations: vec![LogicalLocation {
                fully_qualified_name: format!("{}/{name}", object.kind),
                name,
                kind: "resource",
            }],
        }],
        partial_fingerprints: BTreeMap::from([(FINGERPRINT_KEY, fingerprint(item))]),
    }
}

fn notification(error: &InputError) -> Notification<'_> {
    Notification {
        level: "error",
        message: Message::new(error.message.as_str()),
        locations: [Location { physical_location: physical(&error.file, error.line), logical_locations: vec![] }],
    }
}

fn physical(file: &str, line: Option<usize>) -> PhysicalLocation {
    PhysicalLocation {
        artifact_location: ArtifactLocation { uri: file_uri(file) },
        // SARIF lines are 1-based; clamp so a consumer never sees an invalid region.
        region: line.map(|l| Region { start_line: l.max(1) }),
    }
}

/// Hex SHA-256 of the fields that identify a finding apart from its line.
fn fingerprint(item: &Item) -> String {
    let Item { location, object, finding } = item;
    let path = finding.path.to_string();
    let fields = [finding.rule, &location.file, &object.kind, &object.namespace, &object.name, &path];
    let mut hasher = Sha256::new();
    for field in fields {
        // Length-prefixed, so no two field lists hash the same bytes.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `file` as a relative (or absolute-path) URI reference: `\` becomes `/`, and every byte
/// outside the unreserved and path-safe sub-delimiter characters is percent-encoded, `%`,
/// space, `#`, `?` and non-ASCII included. `:` is encoded too, so a first segment like
/// `c:` is never read as a URI scheme.
pub fn file_uri(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for b in file.bytes() {
        match b {
            b'\\' => out.push('/'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => out.push(char::from(b)),
            b'-' | b'.' | b'_' | b'~' | b'/' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';'
            | b'=' | b'@' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::check::report::fixtures;

    #[test]
    fn golden() {
        let catalog = fixtures::catalog();
        fixtures::assert_golden("sarif", &render_with(&fixtures::report(), &catalog, "0.0.0-golden"));
    }

    #[test]
    fn results_point_at_rules_files_and_lines() {
        let report = fixtures::report();
        let log: Value = serde_json::from_str(&render(&report)).expect("valid JSON");
        assert_eq!(log["$schema"], SCHEMA);
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["version"], env!("CARGO_PKG_VERSION"));
        let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
        let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().expect("rule id")).collect();
        assert_eq!(ids, rules::ids(), "every catalog rule, in catalog order");
        for (rule, info) in rules.iter().zip(rules::infos()) {
            assert_eq!(rule["shortDescription"]["text"], info.summary);
            assert_eq!(rule["help"]["text"], info.explanation);
            assert_eq!(rule["defaultConfiguration"]["level"], level(info.default_mode));
        }
        let results = run["results"].as_array().expect("results");
        assert_eq!(results.len(), report.items.len());
        for r in results {
            let id = r["ruleId"].as_str().expect("ruleId");
            let index = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
            assert_eq!(rules[index]["id"], id, "ruleIndex of {id}");
            assert!(matches!(r["level"].as_str(), Some("error" | "warning")), "{r}");
            let physical = &r["locations"][0]["physicalLocation"];
            assert!(physical["artifactLocation"]["uri"].as_str().is_some_and(|u| !u.is_empty()));
            assert!(physical["region"]["startLine"].as_u64().is_some_and(|l| l >= 1));
            assert_eq!(r["partialFingerprints"][FINGERPRINT_KEY].as_str().map(str::len), Some(64));
        }
        assert_eq!(
            results[3]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "manifests/team%20a,b%20100%25.yaml"
        );
        assert_eq!(
            results[3]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
            "CoderInstance/team-a/prod"
        );
        let invocation = &run["invocations"][0];
        assert_eq!(invocation["executionSuccessful"], false);
        let notes = invocation["toolExecutionNotifications"].as_array().expect("notifications");
        assert_eq!(notes.len(), 2);
        assert!(notes[0]["locations"][0]["physicalLocation"].get("region").is_none());
        assert_eq!(notes[1]["locations"][0]["physicalLocation"]["region"]["startLine"], 20);
    }

    #[test]
    fn fingerprints_ignore_the_line_but_not_the_path() {
        let report = fixtures::report();
        let mut moved = report.items[0].clone();
        moved.location.line += 10;
        assert_eq!(fingerprint(&report.items[0]), fingerprint(&moved));
        assert_ne!(fingerprint(&report.items[0]), fingerprint(&report.items[1]));
    }

    #[test]
    fn file_uris_are_escaped() {
        let cases = [
            ("deploy/coder.yaml", "deploy/coder.yaml"),
            ("a b%c#d?e", "a%20b%25c%23d%3Fe"),
            ("dir\\win.yaml", "dir/win.yaml"),
            ("c:/x [1].yaml", "c%3A/x%20%5B1%5D.yaml"),
            ("naïve,ok;=@.yaml", "na%C3%AFve,ok;=@.yaml"),
            ("/abs/path.yaml", "/abs/path.yaml"),
            ("-", "-"),
        ];
        for (file, uri) in cases {
            assert_eq!(file_uri(file), uri, "{file}");
        }
    }
}
