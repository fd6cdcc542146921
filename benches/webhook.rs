//! The webhook over TLS with keep-alive: the real server against the same stack with a no-op
//! handler (decode and answer, no evaluation), in one run.
//!
//! `cargo bench --bench webhook [-- SECONDS]` (default 2 s per step). Each server runs in its own
//! process (this binary re-executed), so its RSS is measured alone and the load generator's CPU
//! is not counted in it. Servers:
//!
//! - `policy`: the real handler as configured by default (`Execution::Adaptive`: these reviews
//!   are small, so decoding and evaluation run on the request's task);
//! - `blocking`: the real handler with evaluation on the blocking pool (`Execution::Blocking`),
//!   to compare the two ways of running it;
//! - `no-op`: the same TLS, HTTP, body limits, decoding and encoding, allowing without evaluating;
//! - `policy+10k`: `policy` with 10,000 Secrets in its index, for memory.
//!
//! For validate and mutate, at concurrency 1, 4, 16, 64 (one keep-alive connection per client;
//! the servers take turns in four slices per step, so background load hits them alike),
//! it prints p50/p99/p99.9 latency, requests per second, and the ratio of each p99 to the no-op
//! p99 at the same step; and the servers' RSS idle and after load. Servers format their
//! per-request log lines as in production (JSON) and discard them. Every step is bounded by a
//! request count and a time limit. No assertions: numbers only. Linux only (reads /proc).

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coder_guard::certs::{self, Source};
use coder_guard::policy::Index;
use coder_guard::server::{self, Execution, Limits, Settings};
use serde_json::{Value, json};

const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];
const MAX_REQUESTS_PER_STEP: usize = 50_000;
const WARM_UP_REQUESTS: usize = 300;
const ROUNDS: u32 = 4;
const CACHED_SECRETS: usize = 10_000;

fn main() {
    if let Ok(mode) = std::env::var("CODER_GUARD_BENCH_SERVER") {
        return serve(&mode);
    }
    let seconds: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2.0);
    let step = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir().expect("tempdir");

    let policy = Server::spawn("policy", 0, dir.path());
    let blocking = Server::spawn("blocking", 0, dir.path());
    let no_op = Server::spawn("no-op", 0, dir.path());
    let idle = [("policy", policy.rss()), ("blocking", blocking.rss()), ("no-op", no_op.rss())];

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "webhook benchmark: TLS 1.3 keep-alive, HTTP/1.1, {seconds} s per step, {cores} CPUs shared by servers and load"
    );
    println!(
        "{:<8} {:<8} {:>4} {:>9} {:>9} {:>9} {:>9} {:>8} {:>12}",
        "hook", "server", "conc", "p50 µs", "p99 µs", "p99.9 µs", "req/s", "p99/no-op", "note"
    );
    let servers = [&no_op, &policy, &blocking];
    for hook in ["validate", "mutate"] {
        let body = Arc::new(review(hook));
        let mut best = [0.0f64; 3];
        for conc in CONCURRENCY {
            let stats = runtime.block_on(step_all(&servers, hook, &body, conc, step));
            let baseline_p99 = stats[0].p99;
            for (i, (server, stats)) in servers.iter().zip(&stats).enumerate() {
                let note = if stats.rate < best[i] * 1.1 { "saturated" } else { "" };
                best[i] = best[i].max(stats.rate);
                println!(
                    "{:<8} {:<8} {:>4} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>8.2} {:>12}",
                    hook,
                    server.mode,
                    conc,
                    stats.p50,
                    stats.p99,
                    stats.p999,
                    stats.rate,
                    stats.p99 / baseline_p99,
                    note
                );
            }
        }
    }

    println!();
    println!(
        "in-process, no HTTP (mean of {ENGINE_ITERATIONS} runs): decode | decode + evaluate | + encode the answer"
    );
    for hook in ["validate", "mutate"] {
        let [decode, evaluate, encode] = engine_alone(hook);
        println!("{hook:<8} {decode:>7.1} µs | {evaluate:>7.1} µs | {encode:>7.1} µs");
    }

    let loaded = Server::spawn("policy", CACHED_SECRETS, dir.path());
    println!();
    println!("{:<32} {:>10} {:>10}", "RSS (MiB)", "current", "peak");
    for (mode, (rss, _)) in idle {
        println!("{:<32} {:>10.1} {:>10}", format!("{mode}: idle after start"), mib(rss), "");
    }
    for server in [&policy, &blocking, &no_op] {
        let (rss, peak) = server.rss();
        println!("{:<32} {:>10.1} {:>10.1}", format!("{}: after the load", server.mode), mib(rss), mib(peak));
    }
    let (rss, peak) = loaded.rss();
    println!("{:<32} {:>10.1} {:>10.1}", format!("policy: {CACHED_SECRETS} Secrets cached, idle"), mib(rss), mib(peak));
}

const ENGINE_ITERATIONS: u32 = 20_000;

/// Mean µs of decoding, decoding and evaluating, and all that plus encoding, for one review.
fn engine_alone(hook: &str) -> [f64; 3] {
    use coder_guard::admission::{self, Hook};
    use coder_guard::policy::Engine;
    let body = review(hook);
    let index = index(0);
    let engine = Engine::default();
    let h = if hook == "validate" { Hook::Validate } else { Hook::Mutate };
    let time = |f: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..ENGINE_ITERATIONS {
            f();
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(ENGINE_ITERATIONS)
    };
    let eval = |r: &admission::Review| match h {
        Hook::Validate => engine.evaluate(&r.request(), &index),
        Hook::Mutate => engine.mutate(&r.request(), &index),
    };
    [
        time(&|| {
            std::hint::black_box(admission::decode(&body).unwrap());
        }),
        time(&|| {
            std::hint::black_box(eval(&admission::decode(&body).unwrap()));
        }),
        time(&|| {
            let r = admission::decode(&body).unwrap();
            std::hint::black_box(admission::respond(&r, h, &eval(&r)));
        }),
    ]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// === the load ===

struct Stats {
    p50: f64,
    p99: f64,
    p999: f64,
    rate: f64,
}

/// One step: `conc` clients per server, each on its own keep-alive connection. The servers take
/// turns in `ROUNDS` slices of `step / ROUNDS`, so background load on the machine hits them
/// alike and the ratios stay meaningful.
async fn step_all(servers: &[&Server], hook: &str, body: &Arc<Vec<u8>>, conc: usize, step: Duration) -> Vec<Stats> {
    let mut prepared = Vec::new();
    for server in servers {
        let url = format!("https://{}/{hook}", server.webhook);
        let clients: Vec<reqwest::Client> = (0..conc).map(|_| server.client()).collect();
        // Warm up: connections open, code paths hot.
        for client in &clients {
            for _ in 0..(WARM_UP_REQUESTS / conc).max(2) {
                send(client, &url, body).await;
            }
        }
        prepared.push((url, clients, Vec::new(), Duration::ZERO));
    }
    for _ in 0..ROUNDS {
        for (url, clients, latencies, elapsed) in &mut prepared {
            let started = Instant::now();
            latencies.extend(slice(url, clients, body, step / ROUNDS).await);
            *elapsed += started.elapsed();
        }
    }
    prepared
        .into_iter()
        .map(|(_, _, mut all, elapsed)| {
            all.sort_by(f64::total_cmp);
            let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
            Stats { p50: at(0.50), p99: at(0.99), p999: at(0.999), rate: all.len() as f64 / elapsed.as_secs_f64() }
        })
        .collect()
}

/// Every client sends requests back to back until `time` (or a count) is up; the latencies.
async fn slice(url: &str, clients: &[reqwest::Client], body: &Arc<Vec<u8>>, time: Duration) -> Vec<f64> {
    let started = Instant::now();
    let per_client = MAX_REQUESTS_PER_STEP / ROUNDS as usize / clients.len();
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    if started.elapsed() > time {
                        break;
                    }
                    let t = Instant::now();
                    send(&client, &url, &body).await;
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

async fn send(client: &reqwest::Client, url: &str, body: &Arc<Vec<u8>>) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.as_ref().clone())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
}

fn review(hook: &str) -> Vec<u8> {
    let name = match hook {
        "validate" => "allow-provisioner-deployment.json",
        _ => "mutate-provisioner-deployment.json",
    };
    std::fs::read(format!("{}/examples/admission/{name}", env!("CARGO_MANIFEST_DIR"))).expect("example review")
}

// === the servers, one process each ===

struct Server {
    mode: &'static str,
    child: Child,
    webhook: SocketAddr,
    ca_pem: Vec<u8>,
}

impl Server {
    fn spawn(mode: &'static str, secrets: usize, dir: &std::path::Path) -> Server {
        let ca = dir.join(format!("{mode}-{secrets}-ca.pem"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("CODER_GUARD_BENCH_SERVER", mode)
            .env("CODER_GUARD_BENCH_SECRETS", secrets.to_string())
            .env("CODER_GUARD_BENCH_CA", &ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let webhook = line.trim().strip_prefix("ready ").expect("ready line").parse().unwrap();
        let ca_pem = std::fs::read(&ca).unwrap();
        // Let start-up allocations settle before the idle measurement.
        std::thread::sleep(Duration::from_millis(300));
        Server { mode, child, webhook, ca_pem }
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// `VmRSS` and `VmHWM` in KiB.
    fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The server process: starts the real server on 127.0.0.1:0, prints `ready ADDR`, and runs
/// until its stdin closes.
fn serve(mode: &str) {
    let secrets: usize = std::env::var("CODER_GUARD_BENCH_SECRETS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let ca_path = std::env::var("CODER_GUARD_BENCH_CA").expect("CA path");
    // Per-request log lines are formatted as in production (JSON, info), then discarded.
    tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).with_writer(std::io::sink).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let source = Source::SelfSigned {
            dns_names: vec!["127.0.0.1".into()],
            validity: certs::DEFAULT_LEAF_VALIDITY,
            renew_before: certs::DEFAULT_RENEW_BEFORE,
        };
        let cert = certs::start(source).await.expect("certificate");
        std::fs::write(&ca_path, cert.ca_bundle().unwrap()).unwrap();
        let settings = Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits {
                execution: if mode == "blocking" { Execution::Blocking } else { Execution::Adaptive },
                max_concurrency: 256,
                ..Limits::default()
            },
            no_op: mode == "no-op",
            ..Settings::default()
        };
        let running = server::start(settings, Some(cert), Arc::new(index(secrets))).await.expect("server");
        println!("ready {}", running.webhook_addr.unwrap());
        std::io::stdout().flush().unwrap();
        // Until the parent closes stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await
        .unwrap();
    });
}

/// The example objects plus `secrets` Secrets of two keys each.
fn index(secrets: usize) -> Index {
    let mut index = Index::new(false);
    let text =
        std::fs::read_to_string(format!("{}/examples/admission/objects.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for doc in coder_guard::yaml::parse_documents(&text).0 {
        index.insert(&doc.value, "default");
    }
    for n in 0..secrets {
        let secret: Value = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("workspace-{n:05}-credentials"), "namespace": format!("team-{}", n % 50)},
            "data": {"token": "dG9rZW4tdmFsdWUtMTIzNDU2Nzg5MA==", "ca.crt": "LS0tLS1CRUdJTi0tLS0tCg=="}});
        index.insert(&secret, "default");
    }
    index
}
