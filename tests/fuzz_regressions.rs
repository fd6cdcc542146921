//! Replays saved fuzz inputs through the fuzz targets' own code (`fuzz/src/lib.rs`, included
//! here): every input that once broke a target (`fuzz/regressions/<target>/`) and the seed
//! corpus (`fuzz/seeds/<target>/`). See docs/fuzzing.md.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use coder_guard::check::{self, CheckInput};
use coder_guard::policy::Engine;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs `target` over its saved inputs; fails naming every input that panics.
fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = inputs(&root.join("seeds").join(target));
    assert!(!seeds.is_empty(), "fuzz/seeds/{target} is empty; run `scripts/fuzz.sh seeds`");
    let mut failed = Vec::new();
    for path in inputs(&root.join("regressions").join(target)).into_iter().chain(seeds) {
        let data = std::fs::read(&path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target} fails on: {failed:#?}");
}

#[test]
fn admission_review_inputs() {
    replay("admission_review", harness::admission_review);
}

#[test]
fn check_yaml_inputs() {
    replay("check_yaml", harness::check_yaml);
}

#[test]
fn rule_config_inputs() {
    replay("rule_config", harness::rule_config);
}

/// The check target fuzzes `run_text`; it must find what `check` finds in the same file.
#[test]
fn run_text_matches_a_run_over_the_file() {
    let engine = Engine::default();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut compared = 0;
    for sub in ["bad", "good"] {
        for path in inputs(&dir.join(sub)) {
            let display = path.display().to_string();
            let input =
                CheckInput { paths: vec![display.clone()], namespace: "default".into(), ..CheckInput::default() };
            let mut expected = check::run(&engine, &input);
            for item in &mut expected.items {
                item.location.file = "-".into();
            }
            for error in &mut expected.errors {
                error.file = "-".into();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(check::run_text(&engine, &text, "default"), expected, "{display}");
            compared += usize::from(!expected.items.is_empty());
        }
    }
    assert!(compared > 0, "examples/bad has findings to compare");
}
