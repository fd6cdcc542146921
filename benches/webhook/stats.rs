//! Latency statistics of a step, and the verdict on the p99 target.

use super::*;

#[derive(Clone)]
pub struct Stats {
    pub conc: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub rate: f64,
    /// Server CPU time per request, µs.
    pub cpu_per_request: f64,
    /// Share of wall time the server's threads were on a CPU.
    pub server_busy: f64,
    /// Share of wall time the load generator's threads were on a CPU.
    pub loadgen_busy: f64,
    /// p99 of each round's slice, in round order.
    pub round_p99: Vec<f64>,
}

impl Stats {
    /// This server's p99 over `baseline`'s p99 in the same round: median over the rounds, and
    /// its interval.
    pub fn round_ratios(&self, baseline: &Stats) -> Vec<f64> {
        self.round_p99.iter().zip(&baseline.round_p99).map(|(a, b)| a / b).collect()
    }
}

/// The median of per-round ratios, with a distribution-free interval for it: the order
/// statistics k and n+1-k of the n sorted ratios, for the largest k whose coverage,
/// 1 - 2·P(Binomial(n, ½) < k), is still at least 95 % (k = 4 for 16 rounds: 97.9 %).
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRatio {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    pub confidence: f64,
}

impl RoundRatio {
    pub fn of(mut ratios: Vec<f64>) -> Self {
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        if n == 0 {
            return Self { median: f64::NAN, lo: f64::NAN, hi: f64::NAN, confidence: 0.0 };
        }
        let median = if n % 2 == 1 { ratios[n / 2] } else { (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0 };
        // P(Binomial(n, ½) <= i) for i = 0, 1, ...
        let mut cdf = Vec::with_capacity(n);
        let (mut choose, mut sum) = (1.0_f64, 0.0_f64);
        for i in 0..n {
            sum += choose;
            cdf.push(sum / 2f64.powi(n as i32));
            choose = choose * (n - i) as f64 / (i + 1) as f64;
        }
        let coverage = |k: usize| 1.0 - 2.0 * cdf[k - 1];
        match (1..=n / 2).rev().find(|&k| coverage(k) >= 0.95) {
            Some(k) => Self { median, lo: ratios[k - 1], hi: ratios[n - k], confidence: coverage(k) },
            // Too few rounds for a 95 % interval: one that decides nothing.
            None => Self { median, lo: 0.0, hi: f64::INFINITY, confidence: 0.0 },
        }
    }
}

/// What one server accumulated over a step's slices.
#[derive(Default)]
pub struct Tally {
    pub latencies: Vec<f64>,
    pub round_p99: Vec<f64>,
    pub elapsed: Duration,
    pub server_cpu: Duration,
    pub loadgen_cpu: Duration,
}

impl Tally {
    pub fn stats(mut self, conc: usize) -> Stats {
        let all = &mut self.latencies;
        all.sort_by(f64::total_cmp);
        let at = |q: f64| quantile(all, q);
        let wall = self.elapsed.as_secs_f64();
        Stats {
            conc,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            rate: all.len() as f64 / wall,
            cpu_per_request: self.server_cpu.as_secs_f64() * 1e6 / all.len() as f64,
            server_busy: self.server_cpu.as_secs_f64() / wall,
            loadgen_busy: self.loadgen_cpu.as_secs_f64() / wall,
            round_p99: self.round_p99,
        }
    }
}

/// The `q` quantile of sorted latencies.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// The target, "policy work adds at most 20 % to the no-op p99", judged per step on
/// the median over rounds of the p99 ratio (one slow slice cannot decide it) and its
/// distribution-free confidence interval: a step meets the target when the whole interval is
/// at or below it, misses it when the whole interval is above, and is undecided otherwise.
/// Next to it, the same for the identical `no-op-b` server (the noise of this run), and
/// `policy` over `no-op-b` instead of `no-op` (the same question with another denominator).
pub fn print_p99_verdict(inputs: &[Input], ratios: &[(&str, &str, usize, Vec<f64>)]) {
    let per_step: Vec<(&str, &str, usize, RoundRatio)> =
        ratios.iter().map(|(label, mode, conc, r)| (*label, *mode, *conc, RoundRatio::of(r.clone()))).collect();
    let confidence = per_step.iter().map(|r| r.3.confidence).fold(1.0, f64::min) * 100.0;
    println!();
    println!(
        "p99 / no-op p99 per step: median of the {ROUNDS} rounds' ratios (rnd/noop above), {confidence:.0} % interval"
    );
    println!(
        "{:<8} {:<8} {:>8} {:>8} {:>8} {:>6} {:>10} {:>7}  target <= {P99_TARGET:.2}",
        "review", "server", "median", "worst", "at conc", "met", "undecided", "missed"
    );
    for label in inputs.iter().map(|i| i.label) {
        for mode in VERDICT_ROWS {
            let steps: Vec<(usize, RoundRatio)> =
                per_step.iter().filter(|r| r.0 == label && r.1 == mode).map(|r| (r.2, r.3)).collect();
            let (worst_conc, worst) =
                steps.iter().map(|(c, r)| (*c, r.median)).max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or_default();
            let mut medians: Vec<f64> = steps.iter().map(|(_, r)| r.median).collect();
            medians.sort_by(f64::total_cmp);
            let median = medians.get(medians.len() / 2).copied().unwrap_or_default();
            let met = steps.iter().filter(|(_, r)| r.hi <= P99_TARGET).count();
            let missed = steps.iter().filter(|(_, r)| r.lo > P99_TARGET).count();
            let undecided = steps.len() - met - missed;
            let verdict = match mode {
                "no-op-b" => "(noise: two identical servers)".to_owned(),
                _ if met == steps.len() => "met at every step".to_owned(),
                _ if missed > 0 => format!("missed at {missed} step(s)"),
                _ => format!("missed at no step; undecided (interval straddles {P99_TARGET:.2}) at {undecided}"),
            };
            println!(
                "{label:<8} {mode:<8} {median:>8.2} {worst:>8.2} {worst_conc:>8} {met:>6} {undecided:>10} {missed:>7}  \
{verdict}"
            );
        }
    }
    println!("per step (clients: median [interval]):");
    for label in inputs.iter().map(|i| i.label) {
        for mode in VERDICT_ROWS {
            let steps: Vec<String> = per_step
                .iter()
                .filter(|r| r.0 == label && r.1 == mode)
                .map(|(_, _, conc, r)| format!("{conc}: {:.2} [{:.2}, {:.2}]", r.median, r.lo, r.hi))
                .collect();
            println!("{label:<8} {mode:<8} {}", steps.join("  "));
        }
    }
    // Every round of every step at once: one interval for the whole load range, each step
    // weighing alike.
    println!();
    println!("p99 / no-op p99 over all steps: median of every round's ratio, its interval, and the verdict");
    println!(
        "{:<8} {:<8} {:>6} {:>8} {:>16} {:>11}  target <= {P99_TARGET:.2}",
        "review", "server", "rounds", "median", "interval", "confidence"
    );
    for label in inputs.iter().map(|i| i.label) {
        for mode in VERDICT_ROWS {
            let all: Vec<f64> =
                ratios.iter().filter(|r| r.0 == label && r.1 == mode).flat_map(|r| r.3.iter().copied()).collect();
            let n = all.len();
            let r = RoundRatio::of(all);
            let verdict = match mode {
                "no-op-b" => "(noise: two identical servers)",
                _ if r.hi <= P99_TARGET => "met",
                _ if r.lo > P99_TARGET => "missed",
                _ => "undecided",
            };
            let interval = format!("[{:.2}, {:.2}]", r.lo, r.hi);
            println!(
                "{label:<8} {mode:<8} {n:>6} {:>8.2} {interval:>16} {:>10.1}%  {verdict}",
                r.median,
                r.confidence * 100.0
            );
        }
    }
}

/// `policy` over `no-op-b`, in the verdict.
pub const POLICY_B: &str = "policy/b";
/// The verdict's rows per review.
pub const VERDICT_ROWS: [&str; 3] = ["no-op-b", "policy", POLICY_B];
