//! `check` against kubeconform on the same generated corpus, in one run.
//!
//! `cargo bench --bench kubeconform [-- DOCS]` (default 10,000 documents). Builds kubeconform
//! with `tools/kubeconform/build.sh` (pinned in `tools/kubeconform/go.mod`), writes the corpus
//! (`corpus::Mix::Checked`: nine kinds, all checked by coder-guard) and, offline, a JSON schema
//! for every kind in it:
//!
//! - the CRDs' kinds: each version's `openAPIV3Schema`, from `charts/coder-guard/crds/` and
//!   `../shared/reference/coder-k8s/crds/` (override with `CODER_GUARD_REFERENCE`);
//! - Deployment and Secret: the JSON schemas k8s-openapi (feature `schemars`, already a
//!   dependency) derives for `apps/v1 Deployment` and `v1 Secret`, self-contained (`$defs`).
//!
//! The files are named by kubeconform's `-schema-location` template
//! `DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json` (kind lowercased; suffix `-<first label of
//! the group>-<version>`, e.g. `coderinstance-coderd-v1alpha1.json`, `deployment-apps-v1.json`,
//! `secret-v1.json`). kubeconform runs with `-summary`, `-n <CPUs>`, `-strict` off and
//! `-ignore-missing-schemas` off, so a kind without a schema is an error.
//!
//! Then 3 rounds, alternating: kubeconform (a child process: wall time, and CPU time from the
//! children's rusage counters in /proc/self/stat, i.e. getrusage(RUSAGE_CHILDREN)) and coder-guard
//! `check` in-process (`coder_guard::check::run`, as `benches/check.rs` calls it). Prints the
//! ratio of the median walls, coder-guard / kubeconform. Linux only (reads /proc).

mod corpus;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use coder_guard::check::{CheckInput, run};
use coder_guard::policy::Engine;
use corpus::{DOCS_PER_FILE, Mix, generate};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

const ROUNDS: usize = 3;

/// One wrongly typed object per schema source (CRD, k8s-openapi) and group.
const BAD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: two\n  selector: {}\n  template: {}\n---\napiVersion: coderd.coder.com/v1alpha1\nkind: CoderInstance\nmetadata:\n  name: i\nspec:\n  url: [x]\n---\napiVersion: coder.com/v1alpha1\nkind: CoderProvisioner\nmetadata:\n  name: p\nspec:\n  replicas: many\n";

fn main() {
    let docs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let assets = target_dir(repo).join("kubeconform-bench-assets");

    // 1. kubeconform, built from the module proxy by the project's script.
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(repo.join("tools/kubeconform/build.sh"))
        .arg(&assets)
        .output()
        .expect("run bash tools/kubeconform/build.sh");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tools/kubeconform/build.sh failed ({}):\n{log}", out.status);
    let kubeconform = assets.join("kubeconform");
    let version = log.lines().rev().find(|l| l.starts_with("kubeconform v")).unwrap_or("kubeconform ?").to_string();
    println!("{version} (tools/kubeconform/build.sh: {:.1} s)", started.elapsed().as_secs_f64());

    // 2. The corpus.
    let tmp = tempfile::tempdir().expect("tempdir");
    let corpus_dir = tmp.path().join("corpus");
    std::fs::create_dir(&corpus_dir).expect("mkdir corpus");
    let bytes = generate(&corpus_dir, docs, Mix::Checked);

    // 3. Schemas for every kind in it.
    let schemas = tmp.path().join("schemas");
    std::fs::create_dir(&schemas).expect("mkdir schemas");
    let mut written = crd_schemas(&repo.join("charts/coder-guard/crds"), &schemas);
    written.extend(crd_schemas(&reference_dir(repo).join("coder-k8s/crds"), &schemas));
    written.push(builtin_schema::<Deployment>(&schemas, "deployment-apps-v1"));
    written.push(builtin_schema::<Secret>(&schemas, "secret-v1"));
    written.sort();
    println!("schemas: {}", written.join(" "));

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let location = format!("{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json", schemas.display());
    let kubeconform_run = || {
        let mut cmd = Command::new(&kubeconform);
        cmd.args(["-summary", "-n", &cpus.to_string(), "-schema-location", &location]).arg(&corpus_dir);
        let out = cmd.output().expect("run kubeconform");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let summary = stdout.lines().find(|l| l.starts_with("Summary:")).unwrap_or_default().to_string();
        assert!(
            out.status.success() && summary.contains(&format!("{docs} resources")),
            "kubeconform failed ({}):\n{}{}",
            out.status,
            tail(&stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        summary
    };
    let engine = Engine::default();
    let input = CheckInput {
        paths: vec![corpus_dir.display().to_string()],
        namespace: "default".into(),
        ..CheckInput::default()
    };

    // Negative control: the schemas reject wrong types (so "Valid" below means validated).
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, BAD).expect("write bad.yaml");
    let out = Command::new(&kubeconform).args(["-summary", "-schema-location", &location]).arg(&bad).output();
    let out = String::from_utf8_lossy(&out.expect("run kubeconform").stdout).into_owned();
    assert!(out.contains("Valid: 0, Invalid: 3, Errors: 0"), "kubeconform accepted wrongly typed objects:\n{out}");

    // Warm-up (page cache, allocator), untimed; also the correctness checks.
    let summary = kubeconform_run();
    let report = run(&engine, &input);
    assert_eq!(report.documents, docs, "coder-guard read every generated document");
    assert!(report.errors.is_empty(), "{:?}", report.errors.first());

    // 4. Alternating rounds.
    let mut kc = Vec::new();
    let mut cg = Vec::new();
    for _ in 0..ROUNDS {
        let (c0, w0) = (cpu_seconds(Who::Children), Instant::now());
        kubeconform_run();
        kc.push((w0.elapsed().as_secs_f64(), cpu_seconds(Who::Children) - c0));
        let (c0, w0) = (cpu_seconds(Who::SelfOnly), Instant::now());
        let report = run(&engine, &input);
        cg.push((w0.elapsed().as_secs_f64(), cpu_seconds(Who::SelfOnly) - c0));
        assert_eq!(report.documents, docs);
    }

    println!(
        "corpus: {docs} documents in {} files, {:.1} MiB; {cpus} CPUs",
        docs.div_ceil(DOCS_PER_FILE),
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!("kubeconform: {summary}");
    println!("coder-guard: {} objects evaluated, {} findings", report.objects_checked, report.items.len());
    println!("| round | kubeconform wall | kubeconform CPU | coder-guard wall | coder-guard CPU |");
    println!("|---|---|---|---|---|");
    for (i, (k, c)) in kc.iter().zip(&cg).enumerate() {
        println!("| {} | {:.3} s | {:.3} s | {:.3} s | {:.3} s |", i + 1, k.0, k.1, c.0, c.1);
    }
    let (kw, kcpu) = (median(kc.iter().map(|r| r.0)), median(kc.iter().map(|r| r.1)));
    let (cw, ccpu) = (median(cg.iter().map(|r| r.0)), median(cg.iter().map(|r| r.1)));
    println!("| median | {kw:.3} s | {kcpu:.3} s | {cw:.3} s | {ccpu:.3} s |");
    println!("ratio coder-guard wall / kubeconform wall (medians): {:.3} (target <= 0.5)", cw / kw);
    println!("ratio coder-guard CPU / kubeconform CPU (medians): {:.3}", ccpu / kcpu);
}

/// Writes `{kind}-{group's first label}-{version}.json` for every version of every CRD in
/// `dir`; returns the file names.
fn crd_schemas(dir: &Path, out: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read CRD");
        let crd: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let str_at = |ptr: &str| {
            crd.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("{}: no {ptr}", file.display()))
        };
        let kind = str_at("/spec/names/kind").to_lowercase();
        let group = str_at("/spec/group").split('.').next().expect("group").to_lowercase();
        for version in crd.pointer("/spec/versions").and_then(Value::as_array).expect("spec.versions") {
            let name = version["name"].as_str().expect("version name");
            let schema = version.pointer("/schema/openAPIV3Schema").expect("openAPIV3Schema");
            let file_name = format!("{kind}-{group}-{name}.json");
            std::fs::write(out.join(&file_name), serde_json::to_vec(schema).expect("json")).expect("write schema");
            names.push(file_name);
        }
    }
    names
}

/// Writes the schema k8s-openapi derives for `T` (draft 2020-12, definitions under `$defs`).
fn builtin_schema<T: schemars::JsonSchema>(out: &Path, stem: &str) -> String {
    let schema = schemars::schema_for!(T);
    let file_name = format!("{stem}.json");
    std::fs::write(out.join(&file_name), serde_json::to_vec(&schema).expect("json")).expect("write schema");
    file_name
}

fn reference_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CODER_GUARD_REFERENCE").map_or_else(|| repo.join("../shared/reference"), PathBuf::from)
}

fn target_dir(repo: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => repo.join(dir),
        None => repo.join("target"),
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n") + "\n"
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

enum Who {
    SelfOnly,
    /// Waited-for children: the counters getrusage(RUSAGE_CHILDREN) reports.
    Children,
}

/// User + system CPU seconds from /proc/self/stat (10 ms ticks).
fn cpu_seconds(who: Who) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat format").1.split(' ').collect();
    let (u, s) = match who {
        Who::SelfOnly => (11, 12),
        Who::Children => (13, 14),
    };
    (fields[u].parse::<f64>().expect("utime") + fields[s].parse::<f64>().expect("stime")) / 100.0
}
