//! The webhook over TLS with keep-alive: the real server against the same stack with a no-op
//! handler (decode and answer, no evaluation), in one run, at increasing concurrency until
//! throughput stops growing.
//!
//! `cargo bench --bench webhook [-- SECONDS]` (default 2 s per step), and
//! `cargo bench --bench webhook -- profile [SECONDS]` for a CPU profile of the hot path (needs
//! `perf`; default 10 s per server and hook).
//!
//! Each server runs in its own process (this binary re-executed) with one Tokio worker thread
//! pinned to CPU 1, so its figures are per core, and its RSS and CPU time (from /proc) are its
//! own. The load generator is not pinned (`CODER_GUARD_BENCH_PIN=both` pins it to CPU 0,
//! `none` pins nothing): on this 2-vCPU VM, a client and server kept on separate vCPUs pay a
//! cross-CPU wake-up per request, which doubled p50 and gave a p99 of about 4 ms at every
//! concurrency above 1. On a single-CPU machine nothing is pinned and the table says so.
//! Servers:
//!
//! - `policy`: the real handler as configured by default (`Execution::Adaptive`: these reviews
//!   are small, so decoding and evaluation run on the request's task);
//! - `blocking`: the real handler with evaluation on the blocking pool (`Execution::Blocking`),
//!   to compare the two ways of running it;
//! - `no-op`: the same TLS, HTTP, body limits, decoding, encoding, logging and metrics, allowing
//!   without evaluating;
//! - `no-op-b`: a second `no-op`, the A/A control: how far two identical servers' p99 differ
//!   in the same run is the noise every ratio has to be read against;
//! - `policy+10k`: `policy` with 10,000 Secrets in its index, for memory.
//!
//! Reviews: the examples of `examples/admission/` (`val/min`, `mut/min`: the object as written),
//! and the same objects as kube-apiserver sends them (`val/api`, `mut/api`: defaulted, with
//! `managedFields` and the full `userInfo`), captured at the start of the run through the e2e
//! harness's kube-apiserver (`captured`); without the harness only the examples are measured.
//! All four are saved in `target/webhook-reviews/`. The capture runs in a child process, so
//! the harness's etcd and kube-apiserver are gone before anything is measured.
//!
//! Servers log as in production (`--log-format json`, one line per request, to /dev/null).
//! The servers take turns in `ROUNDS` slices per step (the order reversed every other round),
//! so background load hits them alike. Each step's p99 ratio is given pooled and as the median
//! over rounds of the per-round ratio, which one slow slice cannot decide, with its
//! distribution-free interval (`RoundRatio`); the target is judged on the median and interval
//! of every round's ratio over all steps (a single step's interval is as wide for two identical
//! servers).
//! Every step is bounded by a request count and a time limit. No assertions: numbers only.
//! Linux only (reads /proc; pins with `taskset`).

#[path = "captured/mod.rs"]
mod captured;
#[path = "webhook/inputs.rs"]
mod inputs;
#[path = "webhook/load.rs"]
mod load;
#[path = "procfs/mod.rs"]
mod procfs;
#[path = "webhook/profile.rs"]
mod profile;
#[path = "webhook/servers.rs"]
mod servers;
#[path = "webhook/stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coder_guard::certs::{self, Source};
use coder_guard::policy::Index;
use coder_guard::server::{self, Execution, Limits, LogFormat, Settings};
use serde_json::{Value, json};

use inputs::*;
use load::*;
use profile::*;
use servers::*;
use stats::*;

const CONCURRENCY: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];
const WARM_UP_REQUESTS: usize = 300;
const ROUNDS: u32 = 16;
const CACHED_SECRETS: usize = 10_000;
/// Clients during the profile: enough to keep the server's core busy.
const PROFILE_CONCURRENCY: usize = 8;
/// Requests per second a slice's count bound allows (far above what one core serves): slices
/// end by time, the count only guards against a runaway.
const MAX_RATE: f64 = 200_000.0;
/// CPU the servers are pinned to.
const SERVER_CPU: usize = 1;
/// A core this busy (share of wall time) counts as saturated.
const SATURATED: f64 = 0.9;
/// A step whose throughput is under this multiple of the best so far adds nothing.
const PLATEAU: f64 = 1.05;
/// Upper bound for capturing the reviews from kube-apiserver (harness start included).
const CAPTURE_LIMIT: Duration = Duration::from_secs(300);
/// The issue's target for the policy server's p99 over the no-op server's.
const P99_TARGET: f64 = 1.20;

fn main() {
    if let Ok(mode) = std::env::var("CODER_GUARD_BENCH_SERVER") {
        return serve(&mode);
    }
    if let Ok(dir) = std::env::var("CODER_GUARD_BENCH_CAPTURE") {
        return capture_into(Path::new(&dir));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = args.iter().any(|a| a == "profile");
    let seconds: Option<f64> = args.iter().find_map(|a| a.parse().ok());
    let dir = tempfile::tempdir().expect("tempdir");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin_mode = std::env::var("CODER_GUARD_BENCH_PIN").unwrap_or_else(|_| "server".into());
    let pinned = cores >= 2 && pin_mode != "none" && (pin_mode != "both" || pin(std::process::id(), 0));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if profile {
        return profile_hot_path(&runtime, Duration::from_secs_f64(seconds.unwrap_or(10.0)), pinned, dir.path());
    }
    let seconds = seconds.unwrap_or(2.0);
    let step = Duration::from_secs_f64(seconds);

    let inputs = inputs(dir.path());
    let policy = Server::spawn("policy", 0, pinned, dir.path());
    let blocking = Server::spawn("blocking", 0, pinned, dir.path());
    let no_op = Server::spawn("no-op", 0, pinned, dir.path());
    // A second, identical no-op server: how far two equal servers' figures differ in this run
    // is the noise any ratio below has to be read against.
    let no_op_b = Server::spawn("no-op-b", 0, pinned, dir.path());
    let idle = [("policy", policy.rss()), ("blocking", blocking.rss()), ("no-op", no_op.rss())];

    println!("webhook benchmark: TLS 1.3 keep-alive, HTTP/1.1, {seconds} s per step");
    if pinned {
        let load = if pin_mode == "both" { "pinned to CPU 0" } else { "not pinned" };
        println!("each server: 1 Tokio worker pinned to CPU {SERVER_CPU}; load generator {load}");
    } else {
        println!("NOT pinned ({cores} CPU(s)): servers and load share the CPUs; per-core figures are approximate");
    }
    print_step_header();
    let servers = [&no_op, &no_op_b, &policy, &blocking];
    let mut capacity = Vec::new();
    // Per review, server and step: each round's p99 over no-op's in the same round.
    let mut ratios: Vec<(&str, &str, usize, Vec<f64>)> = Vec::new();
    for input in &inputs {
        let (hook, label) = (input.hook, input.label);
        let mut best: Vec<Option<Stats>> = vec![None; servers.len()];
        for conc in CONCURRENCY {
            let all = runtime.block_on(step_all(&servers, hook, &input.body, conc, step));
            let (baseline, baseline_b) = (all[0].clone(), &all[1]);
            for (i, (server, stats)) in servers.iter().zip(&all).enumerate() {
                let note = if stats.server_busy >= SATURATED {
                    "server core saturated"
                } else if stats.server_busy + stats.loadgen_busy >= SATURATED * cores as f64 {
                    "all CPUs busy"
                } else if best[i].as_ref().is_some_and(|b| stats.rate < b.rate * PLATEAU) {
                    "throughput plateau"
                } else {
                    ""
                };
                let round_ratios = stats.round_ratios(&baseline);
                print_step(label, server.mode, stats, &baseline, RoundRatio::of(round_ratios.clone()).median, note);
                ratios.push((label, server.mode, conc, round_ratios));
                if server.mode == "policy" {
                    // Over the other no-op server: a second estimate, with its own denominator.
                    ratios.push((label, POLICY_B, conc, stats.round_ratios(baseline_b)));
                }
                if best[i].as_ref().is_none_or(|b| stats.rate > b.rate) {
                    best[i] = Some(stats.clone());
                }
            }
        }
        for (server, best) in servers.iter().zip(best) {
            capacity.push((label, server.mode, best.expect("at least one step")));
        }
    }
    print_p99_verdict(&inputs, &ratios);

    println!();
    println!("peak throughput per review and server (the step with the most requests per second)");
    println!(
        "{:<8} {:<8} {:>4} {:>8} {:>9} {:>16} {:>12}",
        "review", "server", "conc", "req/s", "CPU µs/r", "req/s per core", "vs no-op"
    );
    for (hook, mode, stats) in &capacity {
        let baseline = capacity.iter().find(|(h, m, _)| h == hook && *m == "no-op").map(|(_, _, s)| s).unwrap();
        let per_core = 1e6 / stats.cpu_per_request;
        println!(
            "{:<8} {:<8} {:>4} {:>8.0} {:>9.1} {:>16.0} {:>12.2}",
            hook,
            mode,
            stats.conc,
            stats.rate,
            stats.cpu_per_request,
            per_core,
            per_core / (1e6 / baseline.cpu_per_request)
        );
    }

    println!();
    println!(
        "in-process, no HTTP (mean of {ENGINE_ITERATIONS} runs): decode | decode + evaluate | + encode the answer"
    );
    for input in &inputs {
        let [decode, evaluate, encode] = engine_alone(input.hook, &input.body);
        println!("{:<8} {decode:>7.1} µs | {evaluate:>7.1} µs | {encode:>7.1} µs", input.label);
    }

    let loaded = Server::spawn("policy", CACHED_SECRETS, pinned, dir.path());
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

fn print_step_header() {
    println!(
        "{:<8} {:<8} {:>4} {:>8} {:>8} {:>9} {:>8} {:>9} {:>6} {:>6} {:>8} {:>8} {:>8}  note",
        "review",
        "server",
        "conc",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "req/s",
        "CPU µs/r",
        "srv %",
        "gen %",
        "p99/noop",
        "rnd/noop",
        "CPU/noop"
    );
}

fn print_step(label: &str, mode: &str, stats: &Stats, baseline: &Stats, round_ratio: f64, note: &str) {
    println!(
        "{:<8} {:<8} {:>4} {:>8.0} {:>8.0} {:>9.0} {:>8.0} {:>9.1} {:>6.0} {:>6.0} {:>8.2} {:>8.2} {:>8.2}  {note}",
        label,
        mode,
        stats.conc,
        stats.p50,
        stats.p99,
        stats.p999,
        stats.rate,
        stats.cpu_per_request,
        stats.server_busy * 100.0,
        stats.loadgen_busy * 100.0,
        stats.p99 / baseline.p99,
        round_ratio,
        stats.cpu_per_request / baseline.cpu_per_request,
    );
}

const ENGINE_ITERATIONS: u32 = 20_000;

/// Mean µs of decoding, decoding and evaluating, and all that plus encoding, for one review.
fn engine_alone(hook: &str, body: &[u8]) -> [f64; 3] {
    use coder_guard::admission;
    use coder_guard::policy::Engine;
    let index = index(0);
    let engine = Engine::default();
    let h = hook_of(hook);
    let time = |f: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..ENGINE_ITERATIONS {
            f();
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(ENGINE_ITERATIONS)
    };
    let eval = |r: &admission::Review| run_policy(&engine, &index, h, r);
    [
        time(&|| {
            std::hint::black_box(admission::decode(body).unwrap());
        }),
        time(&|| {
            std::hint::black_box(eval(&admission::decode(body).unwrap()));
        }),
        time(&|| {
            let r = admission::decode(body).unwrap();
            std::hint::black_box(admission::respond(&r, h, &eval(&r)));
        }),
    ]
}

fn hook_of(hook: &str) -> coder_guard::admission::Hook {
    use coder_guard::admission::Hook;
    match hook {
        "validate" => Hook::Validate,
        "mutate" => Hook::Mutate,
        other => panic!("no hook {other:?}"),
    }
}

/// What the `policy` server computes for a review, in-process.
fn run_policy(
    engine: &coder_guard::policy::Engine,
    index: &Index,
    hook: coder_guard::admission::Hook,
    review: &coder_guard::admission::Review,
) -> coder_guard::policy::Evaluation {
    use coder_guard::admission::Hook;
    match hook {
        Hook::Validate => engine.evaluate(&review.request(), index),
        Hook::Mutate => engine.mutate(&review.request(), index),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
