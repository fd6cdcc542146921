//! `--output junit`: JUnit XML for CI test dashboards, built with `quick-junit`.
//!
//! One testsuite per input file (sorted by path). Within it, one testcase per object and rule
//! that reported, named `<rule-id> Kind namespace/name` with the file as classname: a
//! `<failure>` when the rule reported an error (each finding listed as
//! `line N: field.path: message`), a pass with the warnings in `<system-out>` otherwise.
//! The file's input errors become one `input` testcase with an `<error>`. Clean objects carry
//! no items, so they have no testcase; a report with nothing at all gets one passing
//! `coder-guard check` testcase so the XML is never empty. No timestamps or durations.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{files, object_label, one_line, text};
use crate::check::model::{CheckReport, InputError, Item, ObjectRef};
use crate::policy::Severity;

/// The report and fallback testsuite name.
const NAME: &str = "coder-guard";

/// Renders `report` as JUnit XML.
pub fn render(report: &CheckReport) -> String {
    let mut junit = Report::new(NAME);
    for file in files(report) {
        let mut suite = TestSuite::new(file);
        let items: Vec<&Item> = report.items.iter().filter(|i| i.location.file == file).collect();
        for group in groups(&items) {
            suite.add_test_case(rule_case(file, &group));
        }
        let errors: Vec<&InputError> = report.errors.iter().filter(|e| e.file == file).collect();
        if !errors.is_empty() {
            suite.add_test_case(input_case(file, &errors));
        }
        junit.add_test_suite(suite);
    }
    if junit.test_suites.is_empty() {
        let mut case = TestCase::new(format!("{NAME} check"), TestCaseStatus::success());
        case.set_classname(NAME).set_system_out(text::summary(report));
        let mut suite = TestSuite::new(NAME);
        suite.add_test_case(case);
        junit.add_test_suite(suite);
    }
    junit.to_string().expect("serializing JUnit XML to memory cannot fail")
}

/// The file's items grouped by (document, object, rule), in report order.
fn groups<'a>(items: &[&'a Item]) -> Vec<Vec<&'a Item>> {
    let mut groups: Vec<Vec<&Item>> = Vec::new();
    for &item in items {
        match groups.iter_mut().find(|g| key(g[0]) == key(item)) {
            Some(group) => group.push(item),
            None => groups.push(vec![item]),
        }
    }
    groups
}

fn key(item: &Item) -> (usize, &ObjectRef, &'static str) {
    (item.location.document, &item.object, item.finding.rule)
}

/// The testcase of one object and rule (`group` is non-empty).
fn rule_case(file: &str, group: &[&Item]) -> TestCase {
    let first = group[0];
    let name = format!("{} {}", first.finding.rule, object_label(&first.object));
    let (errors, warnings): (Vec<&Item>, Vec<&Item>) =
        group.iter().partition(|i| i.finding.severity == Severity::Error);

    let status = match errors.first() {
        None => TestCaseStatus::success(),
        Some(head) => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let head = format!("{}: {}", head.finding.path, one_line(&head.finding.message));
            status
                .set_message(with_more(head, errors.len()))
                .set_type(first.finding.rule)
                .set_description(listing(&errors, ""));
            status
        }
    };
    let mut case = TestCase::new(name, status);
    case.set_classname(file);
    if !warnings.is_empty() {
        case.set_system_out(listing(&warnings, "warning: "));
    }
    case
}

/// The `input` testcase of a file's input errors (`errors` is non-empty).
fn input_case(file: &str, errors: &[&InputError]) -> TestCase {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    let lines: Vec<String> = errors
        .iter()
        .map(|e| match e.line {
            Some(line) => format!("line {line}: {}", one_line(&e.message)),
            None => one_line(&e.message).into_owned(),
        })
        .collect();
    status
        .set_message(with_more(one_line(&errors[0].message).into_owned(), errors.len()))
        .set_type("input-error")
        .set_description(lines.join("\n"));
    let mut case = TestCase::new("input", status);
    case.set_classname(file);
    case
}

/// `line N: <prefix>field.path: message`, one finding per line.
fn listing(items: &[&Item], prefix: &str) -> String {
    let lines: Vec<String> = items
        .iter()
        .map(|i| format!("line {}: {prefix}{}: {}", i.location.line, i.finding.path, one_line(&i.finding.message)))
        .collect();
    lines.join("\n")
}

/// `head`, plus ` (and N more)` when it stands for `total` entries.
fn with_more(head: String, total: usize) -> String {
    match total {
        0 | 1 => head,
        n => format!("{head} (and {} more)", n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::fixtures;

    #[test]
    fn golden() {
        fixtures::assert_golden("junit", &render(&fixtures::report()));
    }

    #[test]
    fn counts_suites_cases_and_failures() {
        let xml = render(&fixtures::report());
        let parsed = Report::deserialize_from_str(&xml).expect("valid JUnit XML");
        // secret-ref on the control plane (2 findings, one case), control-plane-ref warning,
        // instance-ref, and one `input` case per file with input errors.
        assert_eq!((parsed.tests, parsed.failures, parsed.errors), (5, 2, 2));
        let suites: Vec<(&str, usize, usize, usize)> =
            parsed.test_suites.iter().map(|s| (s.name.as_str(), s.test_cases.len(), s.failures, s.errors)).collect();
        assert_eq!(suites, [("deploy/coder.yaml", 3, 1, 1), (fixtures::ODD_FILE, 2, 1, 1)]);
        let names: Vec<&str> = parsed.test_suites[0].test_cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["secret-ref CoderControlPlane coder/main", "control-plane-ref CoderProvisioner coder/ci", "input"]
        );
        assert!(!xml.contains("timestamp=") && !xml.contains("time=") && !xml.contains("hostname="));
    }

    #[test]
    fn warning_only_case_passes_with_system_out() {
        let report = fixtures::report();
        let parsed = Report::deserialize_from_str(&render(&report)).expect("valid JUnit XML");
        let case = &parsed.test_suites[0].test_cases[1];
        assert!(matches!(case.status, TestCaseStatus::Success { .. }));
        assert_eq!(
            case.system_out.as_ref().map(|s| s.as_str()),
            Some("line 40: warning: spec.controlPlaneRef.name: CoderControlPlane coder/main is not in the input")
        );
    }
}
