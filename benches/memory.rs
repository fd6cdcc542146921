//! Memory of `coder-guard serve`: RSS idle on an empty cluster, after its cache has synced
//! 10,000 Secrets and 1,000 Coder objects, and the same cluster seen by a fresh start.
//!
//! `cargo bench --bench memory [-- SECRETS CODER]` (defaults 10,000 and 1,000).
//!
//! The benchmark starts the e2e harness's real kube-apiserver and etcd with coder-guard's and
//! the operator's CRDs, and the fake coderd of the tests in-process. It runs the real release
//! binary (`coder-guard serve`, `RUST_LOG` unset so the default `info` filter applies, text logs
//! to `target/e2e-logs/memory/`) three times against that API server; its webhook
//! configurations are never registered, so the API server admits the fill without calling it
//! and the servers only watch:
//!
//! - **A** `--no-reconcile`, started on the empty cluster: idle RSS once ready; then the fill
//!   (Secrets first, then the Coder kinds, [`objects::CONCURRENCY`] creates in flight from
//!   kube-rs) arrives as watch events; measured once its cache provably holds everything.
//! - **B** `--no-reconcile`, started fresh on the filled cluster: the same objects through the
//!   initial paginated list instead of watch events.
//! - **C** with the reconcile loop (leader of the Lease), started fresh on the filled cluster,
//!   every CoderInstance pointing at the fake coderd: measured once every CoderInstance,
//!   CoderOrganization, CoderAIProvider and CoderProvisionerKey is `Ready`. The loop writes
//!   one Secret per provisioner key, so its cache holds that many more Secrets than A and B.
//!
//! The fill (`memory/objects.rs`) spreads over 20 namespaces, each a tenant with one control
//! plane and one instance (its coderd); Secrets are a realistic mix of 1–4 keys of 100 B – 2 KiB.
//! "Holds everything" is proved, not assumed: after the fill, one sentinel object of each
//! watched kind is created; a watch delivers events in resourceVersion order, so a sentinel in
//! the cache means every earlier object of its kind is too. The sentinels are detected with
//! dry-run AdmissionReviews sent to the server's webhook (see `memory/probe.rs`), and the same
//! probe is run before they exist as a negative control. RSS is then read once it is stable
//! (six samples 0.5 s apart within 1 %). RSS, peak and anonymous RSS are `VmRSS`, `VmHWM` and
//! `RssAnon` of `/proc/PID/status` (`RssAnon` leaves out the mapped binary, about 14 MiB of
//! the idle RSS). Growth per object is RSS over A's idle RSS divided by the fill's objects.
//!
//! Bounded: every wait has a limit; loopback only; no assertions: a table of numbers.

#[path = "../tests/fake_coderd/mod.rs"]
mod fake_coderd;
#[path = "memory/objects.rs"]
mod objects;
#[path = "memory/probe.rs"]
mod probe;
#[path = "procfs/mod.rs"]
mod procfs;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use fake_coderd::{FakeCoderd, FakeOptions};
use kube::api::{Api, DynamicObject, ListParams};
use objects::Kind;
use rcgen::ExtendedKeyUsagePurpose;
use support::apiserver::ApiServer;
use support::webhook::{OWN_NAMESPACE, serve_command};
use support::{TestCa, free_ports, text, write_file};

/// Namespaces the fill is spread over (fewer when there are under 50 Coder objects each).
const NAMESPACES: usize = 20;
/// From start to `/readyz` 200.
const READY_LIMIT: Duration = Duration::from_secs(180);
/// For creating the whole fill.
const FILL_LIMIT: Duration = Duration::from_secs(1200);
/// From the last sentinel created to the probe seeing all of them.
const SYNC_LIMIT: Duration = Duration::from_secs(180);
/// For RSS to become stable.
const STABLE_LIMIT: Duration = Duration::from_secs(60);
/// For the reconcile loop to make every resource it manages `Ready`.
const RECONCILE_LIMIT: Duration = Duration::from_secs(300);
/// From `stop` to the watchdog's exit.
const STOP_LIMIT: Duration = Duration::from_secs(30);
fn main() {
    let counts: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let secrets = counts.first().copied().unwrap_or(10_000).max(1);
    let coder = counts.get(1).copied().unwrap_or(1_000).max(Kind::CODER.len());
    let Some(api) = ApiServer::shared_or_skip() else {
        println!("memory: no kube-apiserver here (see SKIP above); nothing measured");
        return;
    };
    let coderd = FakeCoderd::start(FakeOptions { licensed: true, ai_gateway_enabled: true, ..FakeOptions::default() });
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let client = runtime.block_on(kube_client(api.kubeconfig()));
    let pki = Pki::new();
    let logs = api.log_dir().to_owned();
    let out = api.kubectl(["create", "namespace", OWN_NAMESPACE]);
    if !out.status.success() && !text(&out.stderr).contains("AlreadyExists") {
        println!("cannot create namespace {OWN_NAMESPACE}: {}", text(&out.stderr));
        return;
    }
    println!(
        "memory benchmark: {secrets} Secrets and {coder} Coder objects (sentinels included); {} CPUs; \
         release binary {}",
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        env!("CARGO_BIN_EXE_coder-guard")
    );
    let mut table = Table::default();

    // A: empty cluster, then the fill as watch events.
    let a = Server::start("A", api, &pki, &logs, false).unwrap_or_else(|e| panic!("{e}"));
    let ready_a = a.wait_ready(READY_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    a.wait_stable();
    let idle = a.memory();
    table.row("A --no-reconcile, empty cluster: ready, idle", idle, Some(ready_a), None);

    let parts = NAMESPACES.min((coder / 50).max(1));
    let namespaces: Vec<String> = (0..parts).map(|_| api.namespace("mem")).collect();
    let sentinel_ns = api.namespace("mem-sentinel");
    let probe_client = probe::client(&pki.ca_pem);
    let control = runtime.block_on(probe::round(&probe_client, &a.webhook_url(), &sentinel_ns, || a.confirmations()));
    match &control {
        Ok(round) => println!(
            "negative control, before the sentinels exist: {}/{} kinds seen, {} live confirmations (expected 0/7, 0)",
            round.count(),
            round.present.len(),
            round.confirmations
        ),
        Err(e) => println!("negative control failed: {e}"),
    }

    let fill = objects::fill(&namespaces, secrets, coder, &coderd.url(), &coderd.token());
    let (fill_secrets, fill_coder) = (
        fill.iter().filter(|i| i.kind == Kind::Secret).count(),
        fill.iter().filter(|i| i.kind != Kind::Secret).count(),
    );
    println!(
        "filling {fill_secrets} Secrets and {fill_coder} Coder objects over {parts} namespaces, {} in flight …",
        objects::CONCURRENCY
    );
    let created = runtime.block_on(objects::create(&client, fill, FILL_LIMIT));
    report_created("fill", &created);
    let sentinels = runtime.block_on(objects::create(
        &client,
        objects::sentinels(&sentinel_ns, &coderd.url(), &coderd.token()),
        FILL_LIMIT,
    ));
    report_created("sentinels", &sentinels);
    let (total_secrets, total_coder) = (fill_secrets + 1, fill_coder + Kind::CODER.len());
    let objects_total = total_secrets + total_coder;
    let last_created = Instant::now();
    let during_fill = a.memory();
    match a.wait_synced(&runtime, &probe_client, &sentinel_ns) {
        Ok(()) => println!("A: cache holds every sentinel {:.1?} after the last create", last_created.elapsed()),
        Err(e) => println!("A: {e}"),
    }
    a.wait_stable();
    let synced_a = a.memory();
    table.row(
        &format!("A: after the fill as watch events ({total_secrets} Secrets + {total_coder} Coder objects)"),
        synced_a,
        None,
        Some((synced_a.rss.saturating_sub(idle.rss), objects_total)),
    );
    println!("(A RSS right after the last create, before the sync proof: {:.1} MiB)", mib(during_fill.rss));
    a.stop();

    // B: a fresh start on the filled cluster.
    let b = Server::start("B", api, &pki, &logs, false).unwrap_or_else(|e| panic!("{e}"));
    let ready_b = b.wait_ready(READY_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let at_ready = b.memory();
    match b.wait_synced(&runtime, &probe_client, &sentinel_ns) {
        Ok(()) => println!("B: cache holds every sentinel at /readyz (ready after {ready_b:.1?})"),
        Err(e) => println!("B: {e}"),
    }
    b.wait_stable();
    let synced_b = b.memory();
    table.row("B --no-reconcile, fresh start on the filled cluster: at /readyz", at_ready, Some(ready_b), None);
    table.row("B: synced, stable", synced_b, None, Some((synced_b.rss.saturating_sub(idle.rss), objects_total)));
    b.stop();

    // C: a fresh start with the reconcile loop, against the fake coderd.
    let c = Server::start("C", api, &pki, &logs, true).unwrap_or_else(|e| panic!("{e}"));
    let ready_c = c.wait_ready(READY_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let at_ready = c.memory();
    let converged = runtime.block_on(wait_reconciled(&client, RECONCILE_LIMIT));
    println!("C: {converged}");
    c.wait_stable();
    let steady_c = c.memory();
    table.row("C reconcile on (leader), fresh start: at /readyz", at_ready, Some(ready_c), None);
    table.row(
        "C: every managed resource Ready, stable",
        steady_c,
        None,
        Some((steady_c.rss.saturating_sub(idle.rss), objects_total)),
    );
    c.stop();

    println!(
        "\nsent to the API server: {:.1} MiB of JSON ({total_secrets} Secrets, {total_coder} Coder objects)",
        created.bytes as f64 / 1048576.0
    );
    table.print();
    drop(coderd);
}

fn report_created(what: &str, created: &objects::Created) {
    println!(
        "{what}: {} created, {} errors in {:.1?} ({:.0}/s){}",
        created.ok,
        created.errors,
        created.elapsed,
        created.ok as f64 / created.elapsed.as_secs_f64().max(1e-9),
        if created.cut_short { "; stopped at the time limit" } else { "" }
    );
    for e in &created.first_errors {
        println!("  error: {e}");
    }
}

async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("the harness kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("a kube config");
    kube::Client::try_from(config).expect("a kube client")
}

/// Polls every 2 s until every object of the kinds the reconcile loop manages has condition
/// `Ready=True`; a line saying how many were and when.
async fn wait_reconciled(client: &kube::Client, limit: Duration) -> String {
    let started = Instant::now();
    let kinds: Vec<Kind> = Kind::CODER.into_iter().filter(|k| k.reconciled()).collect();
    let is_ready = |o: &DynamicObject| {
        o.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    let (mut ready, mut total, mut waiting) = (0, 0, Vec::new());
    while started.elapsed() < limit {
        (ready, total) = (0, 0);
        waiting.clear();
        for kind in &kinds {
            let api = Api::<DynamicObject>::all_with(client.clone(), &kind.resource());
            let Ok(list) = api.list(&ListParams::default()).await else { continue };
            total += list.items.len();
            ready += list.items.iter().filter(|o| is_ready(o)).count();
            waiting.extend(list.items.iter().filter(|o| !is_ready(o)).take(3).map(|o| {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                let name = o.metadata.name.clone().unwrap_or_default();
                format!("{} {ns}/{name}: {}", kind.name(), o.data["status"]["conditions"])
            }));
        }
        if total > 0 && ready == total {
            return format!("all {total} managed resources Ready {:.1?} after /readyz", started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    format!("only {ready} of {total} managed resources Ready within {limit:?}; waiting: {}", waiting.join("; "))
}

// === the server process ===

/// A CA and a serving pair for 127.0.0.1 shared by the runs.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new().prefix("coder-guard-memory-").tempdir().expect("a temp dir");
        let ca = TestCa::new("coder-guard-memory-bench-ca").unwrap_or_else(|e| panic!("{e}"));
        ca.write_leaf(
            dir.path(),
            ("tls.crt", "tls.key"),
            &["127.0.0.1"],
            "coder-guard",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        write_file(&dir.path().join("ca.crt"), ca.pem()).unwrap_or_else(|e| panic!("{e}"));
        Pki { ca_pem: ca.pem().to_owned(), dir }
    }
}

/// `coder-guard serve` under the harness's bash watchdog (stopped on `stop` or when this
/// process ends).
struct Server {
    label: &'static str,
    watchdog: Child,
    pid: u32,
    webhook_port: u16,
    admin_port: u16,
    log: PathBuf,
    started: Instant,
}

impl Server {
    fn start(label: &'static str, api: &ApiServer, pki: &Pki, logs: &Path, reconcile: bool) -> Result<Server, String> {
        let [webhook_port, admin_port] = free_ports()?;
        let log = logs.join(format!("coder-guard-{label}.log"));
        let file = std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let file2 = file.try_clone().map_err(|e| e.to_string())?;
        let pidfile = pki.dir.path().join(format!("{label}.pid"));
        let name = format!("coder-guard-memory-watchdog-{label}");
        let started = Instant::now();
        let watchdog = serve_command(&name, &pidfile, 10, None, pki.dir.path(), [webhook_port, admin_port], api)
            .args((!reconcile).then_some("--no-reconcile"))
            .env("POD_NAME", format!("memory-bench-{label}"))
            .env_remove("RUST_LOG")
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| format!("cannot start bash for coder-guard's watchdog: {e}"))?;
        let pid = support::poll(Duration::from_secs(10), Duration::from_millis(20), "the server's pidfile", || {
            Ok(std::fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<u32>().is_ok()))
        })
        .and_then(|()| std::fs::read_to_string(&pidfile).map_err(|e| e.to_string()))?
        .trim()
        .parse()
        .map_err(|e| format!("pidfile: {e}"))?;
        Ok(Server { label, watchdog, pid, webhook_port, admin_port, log, started })
    }

    fn webhook_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.webhook_port)
    }

    /// Waits for `/readyz` 200; the time since start.
    fn wait_ready(&self, limit: Duration) -> Result<Duration, String> {
        support::poll(limit, Duration::from_millis(50), &format!("{} /readyz", self.label), || {
            Ok(http_get(self.admin_port, "/readyz").is_some_and(|(code, _)| code == 200))
        })
        .map_err(|e| format!("{e}; see {}", self.log.display()))?;
        Ok(self.started.elapsed())
    }

    /// `VmRSS`, `VmHWM` and `RssAnon` (heap and stacks, without the mapped binary) in KiB.
    fn memory(&self) -> Memory {
        let field = |name| procfs::status_kib(self.pid, name);
        Memory { rss: field("VmRSS:"), peak: field("VmHWM:"), anon: field("RssAnon:") }
    }

    /// Samples RSS every 0.5 s until six in a row are within 1 % (or [`STABLE_LIMIT`]).
    fn wait_stable(&self) {
        let started = Instant::now();
        let mut window: Vec<u64> = Vec::new();
        while started.elapsed() < STABLE_LIMIT {
            window.push(self.memory().rss);
            if window.len() > 6 {
                window.remove(0);
            }
            let (lo, hi) = (window.iter().min().copied().unwrap_or(0), window.iter().max().copied().unwrap_or(0));
            if window.len() == 6 && hi - lo <= hi / 100 {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        println!("{}: RSS not stable within {STABLE_LIMIT:?}; measuring anyway", self.label);
    }

    /// Probes until the cache provably holds every sentinel.
    fn wait_synced(&self, runtime: &tokio::runtime::Runtime, client: &reqwest::Client, ns: &str) -> Result<(), String> {
        let started = Instant::now();
        let mut last = String::from("no round");
        while started.elapsed() < SYNC_LIMIT {
            match runtime.block_on(probe::round(client, &self.webhook_url(), ns, || self.confirmations())) {
                Ok(round) if round.all_present() => return Ok(()),
                Ok(round) => {
                    let missing: Vec<&str> = round.present.iter().filter(|(_, p)| !p).map(|(k, _)| k.name()).collect();
                    last = format!("missing {missing:?}, {} live confirmations", round.confirmations);
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("the cache did not show every sentinel within {SYNC_LIMIT:?}; last round: {last}"))
    }

    /// Sum of `coder_guard_admission_confirmations_total` over its outcomes.
    fn confirmations(&self) -> u64 {
        let Some((_, body)) = http_get(self.admin_port, "/metrics") else { return u64::MAX };
        body.lines()
            .filter(|l| l.starts_with("coder_guard_admission_confirmations_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Stops the server through its watchdog and waits for it.
    fn stop(mut self) {
        if let Some(mut stdin) = self.watchdog.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let started = Instant::now();
        while started.elapsed() < STOP_LIMIT {
            if let Ok(Some(_)) = self.watchdog.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        println!("{}: the watchdog did not stop within {STOP_LIMIT:?}; killed it", self.label);
    }
}

/// `GET path` on the admin port: status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    let code = response.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}

// === report ===

/// From `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug)]
struct Memory {
    rss: u64,
    peak: u64,
    anon: u64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Default)]
struct Table {
    rows: Vec<String>,
}

impl Table {
    /// `per_object` = (RSS growth KiB, objects).
    fn row(&mut self, what: &str, memory: Memory, ready: Option<Duration>, per_object: Option<(u64, usize)>) {
        let ready = ready.map(|d| format!("{:.2} s", d.as_secs_f64())).unwrap_or_default();
        let per = per_object
            .map(|(kib, n)| format!("+{:.1} MiB, {:.0} B/object", mib(kib), kib as f64 * 1024.0 / n as f64))
            .unwrap_or_default();
        self.rows.push(format!(
            "| {what} | {:.1} | {:.1} | {:.1} | {ready} | {per} |",
            mib(memory.rss),
            mib(memory.anon),
            mib(memory.peak)
        ));
    }

    fn print(&self) {
        println!();
        println!(
            "| server, state | VmRSS MiB | of which RssAnon | VmHWM (peak) MiB | start to /readyz | RSS growth over A idle |"
        );
        println!("|---|---|---|---|---|---|");
        for row in &self.rows {
            println!("{row}");
        }
    }
}
