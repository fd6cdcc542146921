//! `check` throughput on a generated corpus, against a parse-only baseline in the same run.
//!
//! `cargo bench --bench check [-- DOCS]` (default 10,000 documents). Prints documents per
//! second, CPU seconds, peak RSS, and the ratio to the baseline (reading and parsing the same
//! files without evaluating). Memory is measured for two corpus sizes with the same file size
//! to show it follows the largest file, not the corpus. Linux only (reads /proc).

mod corpus;

use std::path::Path;
use std::time::Instant;

use coder_guard::check::{CheckInput, run};
use coder_guard::policy::Engine;
use corpus::{DOCS_PER_FILE, Mix, generate};

fn main() {
    let docs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let small = tempfile::tempdir().expect("tempdir");
    let large = tempfile::tempdir().expect("tempdir");
    let bytes_small = generate(small.path(), docs / 5, Mix::WithConfigMaps);
    let bytes_large = generate(large.path(), docs, Mix::WithConfigMaps);

    // Warm the page cache so both measurements read from memory.
    baseline(large.path());
    let (base_cpu, base_wall) = measure(|| {
        baseline(large.path());
    });
    let rss_before = peak_rss_kib();
    let input = |dir: &Path| CheckInput {
        paths: vec![dir.display().to_string()],
        namespace: "default".into(),
        ..CheckInput::default()
    };
    let engine = Engine::default();
    let report_small = run(&engine, &input(small.path()));
    let rss_small = peak_rss_kib();
    let mut report = None;
    let (cpu, wall) = measure(|| report = Some(run(&engine, &input(large.path()))));
    let rss_large = peak_rss_kib();
    let report = report.expect("ran");
    assert_eq!(report.documents, docs, "every generated document was read");
    assert!(report.errors.is_empty(), "{:?}", report.errors.first());

    println!("corpus: {docs} documents in {} files, {:.1} MiB", docs / DOCS_PER_FILE, mib(bytes_large));
    println!("objects evaluated: {}, findings: {}", report.objects_checked, report.items.len());
    println!("baseline (read + parse only): {:.3} s CPU, {:.3} s wall", base_cpu, base_wall);
    println!("check (parse, index, evaluate): {:.3} s CPU, {:.3} s wall", cpu, wall);
    println!("throughput: {:.0} documents/s (CPU)", docs as f64 / cpu);
    println!("ratio check/baseline (CPU): {:.2}", cpu / base_cpu);
    println!(
        "peak RSS: {} KiB before, {} KiB after {} docs ({:.1} MiB), {} KiB after {} docs ({:.1} MiB)",
        rss_before,
        rss_small,
        report_small.documents,
        mib(bytes_small),
        rss_large,
        docs,
        mib(bytes_large)
    );
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Reads and parses every file, as `check` does in one pass, without evaluating.
fn baseline(dir: &Path) -> usize {
    let mut docs = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        docs += coder_guard::yaml::parse_documents(&text).0.len();
    }
    docs
}

fn measure(f: impl FnOnce()) -> (f64, f64) {
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    f();
    (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64())
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat format").1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM")
}
