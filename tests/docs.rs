//! `docs/cli.md` holds the CLI's help and the rule catalog as the binary prints them; this test
//! keeps it current. Regenerate with `UPDATE_DOCS=1 cargo test --test docs`.

use std::path::PathBuf;
use std::process::Command;

fn output(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_coder-guard"))
        .args(args)
        .env("COLUMNS", "100")
        .env_remove("CODER_GUARD_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "coder-guard {args:?} failed");
    String::from_utf8(o.stdout).unwrap()
}

fn render() -> String {
    let mut doc = String::from(
        "# coder-guard command line\n\nGenerated from the binary by `UPDATE_DOCS=1 cargo test --test docs`; a test keeps it current.\n",
    );
    let sections: [(&str, &[&str]); 5] = [
        ("coder-guard --help", &["--help"]),
        ("coder-guard serve --help", &["serve", "--help"]),
        ("coder-guard check --help", &["check", "--help"]),
        ("coder-guard manifests crds --help", &["manifests", "crds", "--help"]),
        ("coder-guard rules", &["rules"]),
    ];
    for (title, args) in sections {
        doc.push_str(&format!("\n## `{title}`\n\n```text\n{}```\n", output(args)));
    }
    doc.push_str("\n## Rules\n");
    let list = output(&["rules"]);
    for id in list.lines().take_while(|l| !l.is_empty()).filter_map(|l| l.split_whitespace().next()) {
        doc.push_str(&format!("\n### `{id}`\n\n```text\n{}```\n", output(&["rules", id])));
    }
    doc
}

#[test]
fn cli_reference_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let want = render();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "docs/cli.md is stale; regenerate with `UPDATE_DOCS=1 cargo test --test docs`");
}
