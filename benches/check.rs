//! `check` throughput on a generated corpus, against a parse-only baseline in the same run.
//!
//! `cargo bench --bench check [-- DOCS]` (default 10,000 documents). Prints documents per
//! second, CPU seconds, peak RSS, and the ratio to the baseline (reading and parsing the same
//! files without evaluating). Memory is measured for two corpus sizes with the same file size
//! to show it follows the largest file, not the corpus. Linux only (reads /proc).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use coder_guard::check::{CheckInput, run};
use coder_guard::policy::Engine;

const DOCS_PER_FILE: usize = 50;

fn main() {
    let docs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let small = tempfile::tempdir().expect("tempdir");
    let large = tempfile::tempdir().expect("tempdir");
    let bytes_small = generate(small.path(), docs / 5);
    let bytes_large = generate(large.path(), docs);

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

/// Writes `docs` documents of mixed kinds, `DOCS_PER_FILE` per file; returns bytes written.
fn generate(dir: &Path, docs: usize) -> usize {
    let mut total = 0;
    for file in 0..docs.div_ceil(DOCS_PER_FILE) {
        let mut text = String::new();
        for d in 0..DOCS_PER_FILE.min(docs - file * DOCS_PER_FILE) {
            let n = file * DOCS_PER_FILE + d;
            let ns = format!("team-{}", (n / 10) % 40);
            text.push_str("---\n");
            text.push_str(&document(n, &ns));
        }
        total += text.len();
        std::fs::write(dir.join(format!("m{file:05}.yaml")), text).expect("write");
    }
    total
}

/// One realistic document; every tenth object carries a mistake.
fn document(n: usize, ns: &str) -> String {
    let mut s = String::new();
    let bad = n % 10 == 9;
    match n % 10 {
        0 | 5 => {
            let _ = write!(
                s,
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{n}\n  namespace: {ns}\n  labels:\n    app: coder\ntype: Opaque\ndata:\n  token: dG9rZW4tdmFsdWUtMDEyMzQ1Njc4OQ==\n  key: cHJvdmlzaW9uZXIta2V5LXZhbHVl\n"
            );
        }
        1 | 6 | 9 => {
            let env_name = if bad { "CODER_PROVISIONERD_TAGS" } else { "CODER_VERBOSE" };
            let _ = write!(
                s,
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: provisioner-{n}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: coder-provisioner\n    app.kubernetes.io/instance: p{n}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: coder-provisioner\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: coder-provisioner\n      annotations:\n        prometheus.io/scrape: \"true\"\n    spec:\n      serviceAccountName: coder-provisioner\n      securityContext:\n        runAsNonRoot: true\n        runAsUser: 1000\n      containers:\n      - name: coder\n        image: ghcr.io/coder/coder:v2.34.0\n        args: [provisioner, start]\n        env:\n        - name: CODER_URL\n          value: https://coder.example.com\n        - name: CODER_PROVISIONER_DAEMON_KEY\n          valueFrom:\n            secretKeyRef:\n              name: s{}\n              key: key\n        - name: {env_name}\n          value: \"true\"\n        resources:\n          requests:\n            cpu: 250m\n            memory: 512Mi\n          limits:\n            cpu: 2\n            memory: 4Gi\n        securityContext:\n          allowPrivilegeEscalation: false\n          readOnlyRootFilesystem: true\n",
                n - n % 5
            );
        }
        2 => {
            let _ = write!(
                s,
                "apiVersion: coder.com/v1alpha1\nkind: CoderControlPlane\nmetadata:\n  name: coder-{n}\n  namespace: {ns}\nspec:\n  image: ghcr.io/coder/coder:v2.34.0\n  replicas: 2\n  extraEnv:\n  - name: CODER_ACCESS_URL\n    value: https://coder-{n}.example.com\n  - name: CODER_PG_CONNECTION_URL\n    valueFrom:\n      secretKeyRef:\n        name: s{}\n        key: token\n  service:\n    type: ClusterIP\n    port: 80\n",
                n - 2
            );
        }
        3 => {
            let _ = write!(
                s,
                "apiVersion: coder.com/v1alpha1\nkind: CoderProvisioner\nmetadata:\n  name: builds-{n}\n  namespace: {ns}\nspec:\n  controlPlaneRef:\n    name: coder-{}\n  organizationName: default\n  tags:\n    scope: organization\n  replicas: 1\n",
                n - 1
            );
        }
        4 => {
            let _ = write!(
                s,
                "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderInstance\nmetadata:\n  name: main-{n}\n  namespace: {ns}\nspec:\n  url: https://coder-{n}.example.com\n  tokenSecretRef:\n    name: s{}\n  appearance:\n    applicationName: Dev Platform\n    announcementBanners:\n    - message: hello\n      backgroundColor: \"#004C99\"\n",
                n - 4
            );
        }
        7 => {
            let _ = write!(
                s,
                "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderOrganization\nmetadata:\n  name: org-{n}\n  namespace: {ns}\nspec:\n  instanceRef:\n    name: main-{}\n  displayName: Org {n}\n  groupSync:\n    field: groups\n    regexFilter: \"^team-.*$\"\n    mapping:\n      admins: [admins]\n",
                n - 3
            );
        }
        _ => {
            let _ = write!(
                s,
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\n  namespace: {ns}\ndata:\n  config.yaml: |\n    log-level: info\n    features: [a, b, c]\n"
            );
        }
    }
    s
}
