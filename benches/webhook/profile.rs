//! The CPU profile of the hot path (`-- profile`).

use super::*;

/// Where a sample's CPU time went, by the first rule its stack matches.
pub const BUCKETS: [(&str, &[&str]); 9] = [
    ("JSON log line (tracing)", &["tracing_subscriber::", "tracing_core::"]),
    ("policy: evaluate / mutate", &["policy::Engine::evaluate", "policy::Engine::mutate", "policy::mutate::"]),
    ("decode the review", &["admission::review::decode"]),
    ("encode the answer", &["admission::response::respond"]),
    ("metrics and summary", &["handler::App::record"]),
    ("TLS (rustls)", &["rustls::"]),
    ("HTTP (hyper, axum, tower)", &["hyper::", "axum::", "tower::", "tower_http::"]),
    ("runtime (tokio)", &["tokio::"]),
    ("other", &[""]),
];
pub const KERNEL: &str = "kernel: syscalls, network, scheduling";
pub const ALLOCATOR: [&str; 9] =
    ["malloc", "_int_free", "_int_malloc", "realloc", "cfree", "tcache", "unlink_chunk", "malloc_consolidate", "free"];

/// Runs `policy` and `no-op` under load while `perf record` samples them, and prints where their
/// CPU time goes per request, in buckets, plus the policy server's hottest functions.
pub fn profile_hot_path(runtime: &tokio::runtime::Runtime, seconds: Duration, pinned: bool, dir: &Path) {
    if !Command::new("perf").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("profile: `perf` not found; install it (Debian: linux-perf) and run again");
        std::process::exit(2);
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/webhook-profile");
    std::fs::create_dir_all(&out).unwrap();
    println!(
        "CPU profile: perf record -e cpu-clock --call-graph dwarf, {} s per server and hook, {PROFILE_CONCURRENCY} clients{}",
        seconds.as_secs_f64(),
        if pinned { ", server pinned to one core" } else { "" }
    );
    for hook in HOOKS {
        let body = Arc::new(review(hook));
        let mut columns = Vec::new();
        for mode in ["no-op", "policy"] {
            let server = Server::spawn(mode, 0, pinned, dir);
            let url = format!("https://{}/{hook}", server.webhook);
            let data = out.join(format!("{mode}-{hook}.data"));
            let (requests, cpu) = runtime.block_on(async {
                let clients = warm_clients(&server, &url, &body, PROFILE_CONCURRENCY).await;
                let mut perf = Command::new("perf")
                    // A large ring buffer: with both vCPUs busy, perf itself drains it late, and with
                    // the default size most samples were dropped.
                    .args(["record", "-q", "-e", "cpu-clock", "-F", "499", "--mmap-pages", "4096"])
                    .args(["--call-graph", "dwarf,16384", "-p"])
                    .arg(server.child.id().to_string())
                    .arg("-o")
                    .arg(&data)
                    .args(["--", "sleep"])
                    .arg(format!("{}", seconds.as_secs_f64() + 1.0))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("perf record");
                tokio::time::sleep(Duration::from_millis(500)).await;
                let before = cpu_time(server.child.id());
                // Bounded by time; the count bound only guards against a runaway.
                let max = (seconds.as_secs_f64() * MAX_RATE) as usize;
                let n = slice(&url, &clients, &body, seconds, max).await.len();
                let cpu = cpu_time(server.child.id()).saturating_sub(before);
                tokio::task::spawn_blocking(move || perf.wait()).await.unwrap().expect("perf record");
                (n, cpu)
            });
            let per_request = cpu.as_secs_f64() * 1e6 / requests as f64;
            let samples = perf_samples(&data);
            columns.push((mode, per_request, samples));
        }
        print_profile(hook, &columns, &out);
    }
}

/// One sample's stack: (address, symbol), leaf first.
type Stack = Vec<(u64, String)>;

/// The stacks of a `perf record` file.
pub fn perf_samples(data: &Path) -> Vec<Stack> {
    let output = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .expect("perf script");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut samples = Vec::new();
    let mut stack = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !stack.is_empty() {
                samples.push(std::mem::take(&mut stack));
            }
            continue;
        }
        let (addr, sym) = line.split_once(' ').unwrap_or((line, ""));
        stack.push((u64::from_str_radix(addr, 16).unwrap_or(0), sym.to_owned()));
    }
    if !stack.is_empty() {
        samples.push(stack);
    }
    samples
}

/// The bucket of one sample.
pub fn bucket(stack: &[(u64, String)]) -> &'static str {
    if stack.first().is_some_and(|(addr, _)| *addr >= 0xffff_0000_0000_0000) {
        return KERNEL;
    }
    BUCKETS
        .iter()
        .find(|(_, needles)| stack.iter().any(|(_, sym)| needles.iter().any(|n| sym.contains(n))))
        .map_or("other", |(name, _)| name)
}

pub fn print_profile(hook: &str, columns: &[(&str, f64, Vec<Stack>)], out: &Path) {
    println!();
    let counts: Vec<String> = columns.iter().map(|(mode, _, samples)| format!("{mode} {}", samples.len())).collect();
    println!("{hook}: server CPU µs per request, by where it went (samples: {})", counts.join(", "));
    print!("{:<40}", "bucket");
    for (mode, _, _) in columns {
        print!(" {:>10} {:>6}", format!("{mode} µs"), "%");
    }
    println!();
    let mut names: Vec<&str> = vec![KERNEL];
    names.extend(BUCKETS.iter().map(|(n, _)| *n));
    let shares: Vec<BTreeMap<&str, f64>> = columns
        .iter()
        .map(|(_, _, samples)| {
            let mut counts = BTreeMap::new();
            for s in samples {
                *counts.entry(bucket(s)).or_insert(0.0) += 1.0;
            }
            counts.values_mut().for_each(|c| *c /= samples.len().max(1) as f64);
            counts
        })
        .collect();
    for name in names.iter().chain([&"total"]) {
        print!("{name:<40}");
        for ((_, per_request, _), share) in columns.iter().zip(&shares) {
            let s = if *name == "total" { 1.0 } else { share.get(name).copied().unwrap_or(0.0) };
            print!(" {:>10.1} {:>5.1}%", s * per_request, s * 100.0);
        }
        println!();
    }
    print!("{:<40}", "of which the allocator (malloc/free)");
    for (_, per_request, samples) in columns {
        let n = samples.iter().filter(|s| s.first().is_some_and(|(_, sym)| is_allocator(sym))).count();
        let s = n as f64 / samples.len().max(1) as f64;
        print!(" {:>10.1} {:>5.1}%", s * per_request, s * 100.0);
    }
    println!();
    if let Some((mode, _, samples)) = columns.iter().find(|(m, _, _)| *m == "policy") {
        let mut own: BTreeMap<&str, usize> = BTreeMap::new();
        for s in samples {
            if let Some((_, sym)) = s.first() {
                *own.entry(sym.as_str()).or_default() += 1;
            }
        }
        let mut top: Vec<_> = own.into_iter().collect();
        top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        println!("{hook}: {mode}'s hottest functions (self time)");
        for (sym, n) in top.into_iter().take(12) {
            let short: String = sym.chars().take(100).collect();
            println!("  {:>5.1}%  {short}", n as f64 * 100.0 / samples.len().max(1) as f64);
        }
    }
    println!("(perf data: {}; `perf report -i FILE` for the call graph)", out.display());
}

pub fn is_allocator(sym: &str) -> bool {
    let sym = sym.trim_start_matches("__GI___libc_").trim_start_matches("__libc_");
    ALLOCATOR.iter().any(|a| sym.starts_with(a))
}
