//! `--output text`: one line per finding and per input error, then a summary. For people; no
//! colours, and control characters in messages are escaped so each finding stays on one line.

use super::{object_label, one_line, plural};
use crate::check::model::{CheckReport, InputError, Item};
use crate::policy::Severity;

/// Renders `report` as text.
pub fn render(report: &CheckReport) -> String {
    let mut out = String::new();
    for item in &report.items {
        out.push_str(&finding_line(item));
        out.push('\n');
    }
    for error in &report.errors {
        out.push_str(&input_error_line(error));
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&summary(report));
    out.push('\n');
    out
}

/// `FILE:LINE: error [rule-id] Kind namespace/name field.path: message`.
fn finding_line(item: &Item) -> String {
    let Item { location, object, finding } = item;
    format!(
        "{}:{}: {} [{}] {} {}: {}",
        one_line(&location.file),
        location.line,
        finding.severity,
        finding.rule,
        object_label(object),
        finding.path,
        one_line(&finding.message)
    )
}

/// `FILE[:LINE]: input error: message`.
fn input_error_line(error: &InputError) -> String {
    let file = one_line(&error.file);
    let message = one_line(&error.message);
    match error.line {
        Some(line) => format!("{file}:{line}: input error: {message}"),
        None => format!("{file}: input error: {message}"),
    }
}

/// `3 objects checked in 2 files: 1 error, 2 warnings, 0 input errors` (no trailing newline).
pub(super) fn summary(report: &CheckReport) -> String {
    format!(
        "{} checked in {}: {}, {}, {}",
        plural(report.objects_checked, "object"),
        plural(report.files, "file"),
        plural(report.count(Severity::Error), "error"),
        plural(report.count(Severity::Warning), "warning"),
        plural(report.errors.len(), "input error"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::fixtures;

    #[test]
    fn golden() {
        fixtures::assert_golden("text", &render(&fixtures::report()));
    }

    #[test]
    fn one_line_per_finding_and_error_plus_summary() {
        let report = fixtures::report();
        let out = render(&report);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), report.items.len() + report.errors.len() + 2);
        assert_eq!(lines[lines.len() - 2], "");
        assert_eq!(lines[lines.len() - 1], "3 objects checked in 2 files: 3 errors, 1 warning, 2 input errors");
        assert!(!out.contains('\r') && !out.contains('\x1b'));
    }
}
