//! Percentiles of each phase and the ratios printed.

use super::*;

pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn report(results: &[Results]) {
    println!();
    println!("| phase | measured | errors | p50 | p99 | max | throughput |");
    println!("|---|---|---|---|---|---|---|");
    let mut stats = Vec::new();
    for (phase, r) in Phase::ALL.iter().zip(results) {
        let mut sorted = r.latencies.clone();
        sorted.sort();
        let (p50, p99) = (percentile(&sorted, 0.50), percentile(&sorted, 0.99));
        let max = sorted.last().copied().unwrap_or_default();
        let throughput = if r.busy.is_zero() { 0.0 } else { sorted.len() as f64 / r.busy.as_secs_f64() };
        println!(
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} req/s |",
            phase.label(),
            sorted.len(),
            r.errors,
            ms(p50),
            ms(p99),
            ms(max),
            throughput
        );
        for e in &r.first_errors {
            println!("  error in {}: {e}", phase.label());
        }
        stats.push((p50, p99));
    }
    let ratio = |x: Duration, y: Duration| if y.is_zero() { f64::NAN } else { x.as_secs_f64() / y.as_secs_f64() };
    let [(a50, a99), (b50, b99), (c50, c99), (d50, d99)] = [stats[0], stats[1], stats[2], stats[3]];
    println!();
    println!("(c)/(a): p50 {:.2}, p99 {:.2}", ratio(c50, a50), ratio(c99, a99));
    println!("(c)/(b): p50 {:.2}, p99 {:.2}", ratio(c50, b50), ratio(c99, b99));
    println!(
        "(d)/(a): p50 {:.2}, p99 {:.2} (the API server calling a webhook at all)",
        ratio(d50, a50),
        ratio(d99, a99)
    );
    println!("(c)/(d): p50 {:.2}, p99 {:.2} (coder-guard's own work)", ratio(c50, d50), ratio(c99, d99));
    let added = |x: Duration, y: Duration| ms(x) - ms(y);
    println!(
        "added over (a): calling a webhook p50 {:+.2} ms, p99 {:+.2} ms; coder-guard's own work p50 {:+.2} ms, p99 {:+.2} ms",
        added(d50, a50),
        added(d99, a99),
        added(c50, d50),
        added(c99, d99)
    );
    let verdict = |value: f64, target: f64| if value <= target { "met" } else { "missed" };
    println!(
        "target (c)/(a) p99 <= 1.10: {} ({:.2}); target (c)/(b) p99 <= 1.05: {} ({:.2})",
        verdict(ratio(c99, a99), 1.10),
        ratio(c99, a99),
        verdict(ratio(c99, b99), 1.05),
        ratio(c99, b99)
    );
}
