//! What one reconcile found, as data: per-surface results ([`Surface`]), when to look again
//! ([`Wait`]), and the pure steps that turn them into status conditions, Events and a requeue
//! delay. No I/O here.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::coderd::{self, Class};

/// Condition type summarising every surface.
pub const READY: &str = "Ready";

/// When to reconcile again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wait {
    /// After a retry delay: an explicit `Retry-After`.
    After(Duration),
    /// Soon, with per-object exponential back-off (a transient failure).
    Backoff,
    /// Much later: nothing will change until someone acts (not entitled, not supported, an
    /// invalid spec). Spec and Secret changes still trigger a reconcile at once.
    Slow,
    /// At the regular resync.
    Resync,
}

/// The result for one surface of a resource (one condition type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Surface {
    /// Condition type, e.g. `LicenseApplied`.
    pub type_: &'static str,
    pub ok: bool,
    /// PascalCase reason.
    pub reason: String,
    /// What is wrong and what to do (never a secret value).
    pub message: String,
    pub wait: Wait,
}

impl Surface {
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Surface { type_, ok: true, reason: reason.to_owned(), message: message.into(), wait: Wait::Resync }
    }

    pub fn failed(type_: &'static str, reason: &str, message: impl Into<String>, wait: Wait) -> Self {
        Surface { type_, ok: false, reason: reason.to_owned(), message: message.into(), wait }
    }

    /// A failed coderd call on this surface, with the reason and wait its class implies.
    pub fn coderd(type_: &'static str, error: &coderd::Error) -> Self {
        let (reason, hint, wait) = match error.class() {
            Class::Transient => ("CoderdUnavailable", "retrying with back-off", Wait::Backoff),
            Class::RateLimited(after) => {
                ("RateLimited", "retrying after the delay coderd asked for", after.map_or(Wait::Backoff, Wait::After))
            }
            Class::Unauthorized => (
                "Unauthorized",
                "coderd does not accept the API token: create a new token for the automation account and update the \
                 token Secret",
                Wait::Slow,
            ),
            Class::NotEntitled => {
                ("NotEntitled", "upload a license that includes this feature (CoderInstance spec.license)", Wait::Slow)
            }
            Class::NotSupported => (
                "NotSupported",
                "this coderd has no such API: it is an open-source build or a version without it; use an enterprise \
                 coderd (AI providers need coderd 2.34 or later)",
                Wait::Slow,
            ),
            Class::Forbidden => {
                ("Forbidden", "the token's account lacks the permission: use a token of an Owner account", Wait::Slow)
            }
            Class::Rejected => ("Rejected", "fix the spec field coderd names", Wait::Slow),
            Class::Invalid => ("InvalidSpec", "fix the CoderInstance's settings or the Secret they name", Wait::Slow),
            Class::Conflict | Class::NotFound => ("CoderdConflict", "retrying with back-off", Wait::Backoff),
        };
        Surface::failed(type_, reason, format!("{error}; {hint}"), wait)
    }
}

/// Everything one reconcile reports about a resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub surfaces: Vec<Surface>,
}

impl Report {
    pub fn push(&mut self, surface: Surface) {
        self.surfaces.push(surface);
    }

    /// Whether every surface is fine.
    pub fn ok(&self) -> bool {
        self.surfaces.iter().all(|s| s.ok)
    }

    /// The soonest wait any surface asks for (`Resync` when there are none).
    pub fn wait(&self) -> Wait {
        self.surfaces.iter().map(|s| s.wait).min().unwrap_or(Wait::Resync)
    }

    /// The conditions to store: one per surface plus `Ready`, keeping `lastTransitionTime`
    /// of conditions whose status did not change.
    pub fn conditions(&self, previous: &[Condition], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
        let ready = match self.surfaces.iter().find(|s| !s.ok) {
            None => Surface::ok(READY, "Reconciled", "coderd matches the spec"),
            Some(first) => {
                Surface::failed(READY, &first.reason, format!("{}: {}", first.type_, first.message), first.wait)
            }
        };
        self.surfaces
            .iter()
            .chain(std::iter::once(&ready))
            .map(|s| {
                let status = if s.ok { "True" } else { "False" };
                let since = previous
                    .iter()
                    .find(|c| c.type_ == s.type_ && c.status == status)
                    .map_or_else(|| Time(now), |c| c.last_transition_time.clone());
                Condition {
                    type_: s.type_.to_owned(),
                    status: status.to_owned(),
                    reason: s.reason.clone(),
                    message: truncate(&s.message, 32 * 1024),
                    observed_generation: generation,
                    last_transition_time: since,
                }
            })
            .collect()
    }
}

/// A condition that changed status or reason since `previous`: the Events to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The transitions from `previous` to `next` (new condition types count as transitions).
pub fn transitions(previous: &[Condition], next: &[Condition]) -> Vec<Transition> {
    next.iter()
        .filter(|c| c.type_ != READY || c.status == "True")
        .filter(|c| !previous.iter().any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason))
        .map(|c| Transition {
            warning: c.status != "True",
            reason: c.reason.clone(),
            note: truncate(&format!("{}: {}", c.type_, c.message), 1000),
        })
        .collect()
}

/// The requeue delay for `wait`: resync and slow come from the config; back-off doubles per
/// consecutive failure from 2 s up to 5 min; `jitter` (in `[0, 1)`) spreads ±20 %.
pub fn delay(wait: Wait, failures: u32, resync: Duration, slow: Duration, jitter: f64) -> Duration {
    let base = match wait {
        Wait::Resync => resync,
        Wait::Slow => slow,
        Wait::After(after) => after.max(Duration::from_secs(1)),
        Wait::Backoff => Duration::from_secs(2).saturating_mul(1 << failures.min(8)).min(Duration::from_secs(300)),
    };
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// A salted SHA-256 of secret values (`sha256:<hex>`): equal inputs give equal digests for one
/// resource (`salt` is its UID), and the digest of a value is useless for guessing it elsewhere.
pub fn digest(salt: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"coder-guard/v1\0");
    hasher.update(salt.as_bytes());
    for part in parts {
        hasher.update([0u8]);
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests;
