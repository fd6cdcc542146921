//! Time budgets: Go-style durations (`10s`, `1m30s`, `500ms`) as the API server writes them in
//! `?timeout=`, and as the `serve` flags accept them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The budget when the API server sends no `?timeout=` (its own default `timeoutSeconds`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `timeoutSeconds` the API server allows; longer values are clamped to it.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The share of the API server's timeout coder-guard spends before it answers anyway.
const SHARE_NUMERATOR: u32 = 4;
const SHARE_DENOMINATOR: u32 = 5;

/// A duration written the Go way: one or more `<number><unit>` with units `h`, `m`, `s`, `ms`,
/// `us`/`µs`, `ns` (e.g. `10s`, `1m30s`, `1.5s`). A bare `0` is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write e.g. 10s, 500ms or 1m30s)")]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError { input: s.to_owned(), reason };
        if s == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        let mut rest = s;
        let mut total = 0f64;
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            if number_len == 0 {
                return Err(err("expected a number"));
            }
            let number: f64 = rest[..number_len].parse().map_err(|_| err("malformed number"))?;
            rest = &rest[number_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let seconds_per_unit = match &rest[..unit_len] {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            rest = &rest[unit_len..];
            total += number * seconds_per_unit;
        }
        Duration::try_from_secs_f64(total).map(GoDuration).map_err(|_| err("out of range"))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.as_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{:?}", d)
        }
    }
}

/// How long one admission request may take, from the `?timeout=` the API server appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The API server's timeout (or the default when absent or unparsable).
    pub timeout: Duration,
    /// How long coder-guard spends before it answers anyway: 80 % of `timeout`.
    pub answer_by: Duration,
}

impl Budget {
    /// The budget for a request URI's query string (`timeout=10s&…`). A missing or malformed
    /// value gives the default; values above 30 s are clamped.
    pub fn from_query(query: Option<&str>) -> Self {
        let timeout = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|pair| pair.strip_prefix("timeout="))
            .find_map(|v| v.parse::<GoDuration>().ok())
            .map(|d| d.0)
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_TIMEOUT)
            .min(MAX_TIMEOUT);
        Self::of(timeout)
    }

    /// The budget for a timeout.
    pub fn of(timeout: Duration) -> Self {
        Self { timeout, answer_by: timeout * SHARE_NUMERATOR / SHARE_DENOMINATOR }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ok = |s: &str| s.parse::<GoDuration>().unwrap().0;
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("0"), Duration::ZERO);
        for bad in ["", "10", "s", "10x", "1..5s", "-1s", "10 s"] {
            assert!(bad.parse::<GoDuration>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn displays_round_values_simply() {
        assert_eq!(GoDuration(Duration::from_secs(5)).to_string(), "5s");
        assert_eq!(GoDuration(Duration::from_millis(1500)).to_string(), "1500ms");
    }

    #[test]
    fn budget_is_eighty_percent_of_the_timeout() {
        let b = Budget::from_query(Some("timeout=10s"));
        assert_eq!((b.timeout, b.answer_by), (Duration::from_secs(10), Duration::from_secs(8)));
        assert_eq!(Budget::from_query(Some("a=b&timeout=1s")).answer_by, Duration::from_millis(800));
        assert_eq!(Budget::from_query(None).timeout, DEFAULT_TIMEOUT);
        assert_eq!(Budget::from_query(Some("timeout=banana")).timeout, DEFAULT_TIMEOUT);
        assert_eq!(Budget::from_query(Some("timeout=0s")).timeout, DEFAULT_TIMEOUT);
        assert_eq!(Budget::from_query(Some("timeout=5m")).timeout, MAX_TIMEOUT);
    }
}
