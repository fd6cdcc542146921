//! The rule configuration file (`--config`, a mounted ConfigMap) and its reload loop.
//!
//! The kubelet updates a ConfigMap volume by swapping a `..data` symlink, which file watches
//! miss; so the file is re-read through its path every couple of seconds and reparsed only when
//! its bytes change. A new configuration that does not parse keeps the old one in force: the
//! error (with its line) is logged and counted, and the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{error, info};

use super::metrics::Metrics;
use super::signal::Watch;
use crate::policy::config::ConfigError;
use crate::policy::rules;
use crate::policy::{Engine, Options, RuleConfig};

/// How often `--config` is re-read.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A rule configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleConfigError {
    /// The file cannot be read.
    #[error("cannot read --config {path}: {source}; mount the rule ConfigMap there or drop --config")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid UTF-8.
    #[error("--config {path} is not UTF-8 text")]
    NotText { path: PathBuf },
    /// The file does not parse as a rule configuration (the error names the line).
    #[error("--config {0}")]
    Invalid(#[from] ConfigError),
}

/// A loaded configuration and the bytes it came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: RuleConfig,
    pub bytes: Vec<u8>,
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, RuleConfigError> {
    let bytes = std::fs::read(path).map_err(|source| RuleConfigError::Read { path: path.to_owned(), source })?;
    let config = parse(path, &bytes)?;
    Ok(Loaded { config, bytes })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<RuleConfig, RuleConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RuleConfigError::NotText { path: path.to_owned() })?;
    Ok(RuleConfig::parse(text, &path.display().to_string(), &rules::ids())?)
}

/// The engine behind the webhook, swapped whole when the configuration changes.
pub type SharedEngine = Arc<ArcSwap<Engine>>;

/// An engine for a configuration, with the server's options.
pub fn engine(config: RuleConfig) -> Engine {
    Engine::new(config, Options::default())
}

/// Re-reads `path` every `interval` until `stop` fires; a changed file that parses replaces
/// the engine's configuration, one that does not is logged and counted.
pub async fn watch(
    path: PathBuf,
    mut last: Vec<u8>,
    engine: SharedEngine,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut stop: Watch,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The bytes of the last rejected file, so a bad file is logged once, not every poll.
    let mut rejected: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            () = stop.fired() => return,
            _ = ticker.tick() => {}
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                // Mid-swap or briefly unmounted: keep the configuration in force, retry.
                if rejected.as_deref() != Some(&[]) {
                    error!(path = %path.display(), error = %e, "cannot read the rule configuration; keeping the one in force");
                    metrics.rule_config_reload_errors.inc();
                    rejected = Some(Vec::new());
                }
                continue;
            }
        };
        if bytes == last || rejected.as_ref() == Some(&bytes) {
            continue;
        }
        match parse(&path, &bytes) {
            Ok(config) => {
                engine.store(Arc::new(self::engine(config)));
                metrics.rule_config_reloads.inc();
                info!(path = %path.display(), "rule configuration reloaded");
                last = bytes;
                rejected = None;
            }
            Err(e) => {
                error!(error = %e, "the new rule configuration is invalid; keeping the one in force");
                metrics.rule_config_reload_errors.inc();
                rejected = Some(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    #[tokio::test]
    async fn reloads_good_files_and_keeps_the_old_on_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "rules:\n  secret-ref: warn\n").unwrap();
        let loaded = load(&path).unwrap();
        let engine: SharedEngine = Arc::new(ArcSwap::from_pointee(engine(loaded.config)));
        let metrics = Arc::new(Metrics::new());
        let (trigger, stop) = super::super::signal::signal();
        let task = tokio::spawn(watch(
            path.clone(),
            loaded.bytes,
            engine.clone(),
            metrics.clone(),
            Duration::from_millis(20),
            stop,
        ));
        let mode = |e: &SharedEngine| e.load().config().mode("secret-ref", Mode::Enforce, "ns");
        assert_eq!(mode(&engine), Mode::Warn);

        std::fs::write(&path, "rules:\n  secret-ref: off\n").unwrap();
        wait(|| mode(&engine) == Mode::Off).await;
        assert_eq!(metrics.rule_config_reloads.get(), 1);

        std::fs::write(&path, "rules:\n  secret-ref: off\n  nope: warn\n").unwrap();
        wait(|| metrics.rule_config_reload_errors.get() == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(mode(&engine), Mode::Off, "a bad file keeps the old configuration");
        assert_eq!(metrics.rule_config_reload_errors.get(), 1, "a bad file is reported once");

        trigger.fire();
        task.await.unwrap();
    }

    #[test]
    fn an_invalid_file_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "rules:\n  secret-ref: strict\n").unwrap();
        match load(&path) {
            Err(RuleConfigError::Invalid(e)) => assert_eq!(e.line, 2),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(matches!(load(&dir.path().join("missing")), Err(RuleConfigError::Read { .. })));
    }

    async fn wait(mut done: impl FnMut() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }
}
