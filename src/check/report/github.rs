//! `--output github`: GitHub Actions workflow commands, so findings show as annotations on the
//! pull request's files.
//!
//! Per file (sorted): `::group::coder-guard <file>`, one `::error` or `::warning` command per
//! finding and input error, `::endgroup::`; then the plain summary line. Every value is escaped
//! with [`escape_data`] or [`escape_property`], so no message can end a command early or start
//! a new one.

use super::{files, object_label, text};
use crate::check::model::{CheckReport, InputError, Item};

/// Renders `report` as GitHub Actions workflow commands.
pub fn render(report: &CheckReport) -> String {
    let mut out = String::new();
    for file in files(report) {
        out.push_str(&format!("::group::coder-guard {}\n", escape_data(file)));
        for item in report.items.iter().filter(|i| i.location.file == file) {
            out.push_str(&finding_command(item));
        }
        for error in report.errors.iter().filter(|e| e.file == file) {
            out.push_str(&input_error_command(error));
        }
        out.push_str("::endgroup::\n");
    }
    out.push_str(&text::summary(report));
    out.push('\n');
    out
}

/// `::error file=F,line=L,title=[rule-id] Kind ns/name::field.path: message`.
fn finding_command(item: &Item) -> String {
    let Item { location, object, finding } = item;
    let title = format!("[{}] {}", finding.rule, object_label(object));
    let message = format!("{}: {}", finding.path, finding.message);
    format!(
        "::{} file={},line={},title={}::{}\n",
        finding.severity,
        escape_property(&location.file),
        location.line.max(1),
        escape_property(&title),
        escape_data(&message)
    )
}

/// `::error file=F[,line=L],title=input error::message`.
fn input_error_command(error: &InputError) -> String {
    let line = error.line.map(|l| format!(",line={}", l.max(1))).unwrap_or_default();
    format!(
        "::error file={}{line},title={}::{}\n",
        escape_property(&error.file),
        escape_property("input error"),
        escape_data(&error.message)
    )
}

/// Escapes a command's message (the part after the final `::`): `%` → `%25`, CR → `%0D`,
/// LF → `%0A`.
pub fn escape_data(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a command property value (`file=`, `title=`): as [`escape_data`], plus `:` → `%3A`
/// and `,` → `%2C`, which would otherwise end the value.
pub fn escape_property(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ':' => out.push_str("%3A"),
            ',' => out.push_str("%2C"),
            c => out.push_str(&escape_data(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::report::fixtures;

    #[test]
    fn golden() {
        fixtures::assert_golden("github", &render(&fixtures::report()));
    }

    #[test]
    fn data_escapes_percent_cr_lf_only() {
        let cases = [
            ("plain", "plain"),
            ("100%", "100%25"),
            ("a\rb", "a%0Db"),
            ("a\nb", "a%0Ab"),
            ("a\r\nb", "a%0D%0Ab"),
            ("%0A", "%250A"),
            ("k: v, w", "k: v, w"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(escape_data(input), want, "{input:?}");
        }
    }

    #[test]
    fn properties_also_escape_colon_and_comma() {
        let cases = [
            ("plain/path.yaml", "plain/path.yaml"),
            ("100%", "100%25"),
            ("a\rb", "a%0Db"),
            ("a\nb", "a%0Ab"),
            ("a:b", "a%3Ab"),
            ("a,b", "a%2Cb"),
            ("team a,b 100%.yaml", "team a%2Cb 100%25.yaml"),
            ("::x,line=9", "%3A%3Ax%2Cline=9"),
        ];
        for (input, want) in cases {
            assert_eq!(escape_property(input), want, "{input:?}");
        }
    }

    #[test]
    fn one_command_per_line() {
        let report = fixtures::report();
        let out = render(&report);
        let commands = out.lines().filter(|l| l.starts_with("::error ") || l.starts_with("::warning ")).count();
        assert_eq!(commands, report.items.len() + report.errors.len());
        assert_eq!(out.matches("::group::").count(), out.matches("::endgroup::").count());
        assert!(!out.contains('\r'));
        assert!(out.ends_with("3 objects checked in 2 files: 3 errors, 1 warning, 2 input errors\n"));
    }
}
