//! The built `coder-guard serve` registered as the admission webhook of the test binary's
//! kube-apiserver, started once per test binary like the API server itself.
//!
//! [`CoderGuard::shared_or_skip`] starts the API server (see [`super::apiserver`]), writes a CA
//! and a serving certificate for `127.0.0.1`, runs `coder-guard serve` in cluster mode (its
//! `KUBECONFIG` is the harness's admin kubeconfig, so the cache is fed by watches and absences
//! are confirmed by live reads), waits for `/readyz`, registers the configurations printed by
//! `coder-guard manifests webhooks --url … --ca-bundle-file …` (they differ from
//! `webhook-config/webhooks.yaml` only in `clientConfig`, which is checked) and waits until the
//! API server calls the webhook.
//!
//! The process runs under a bash watchdog whose stdin is a pipe from the test process. The line
//! `stop` makes it stop coder-guard (SIGTERM to its PID, SIGKILL after a grace period) and exit;
//! EOF on the pipe — the test process is gone, however it ended — does the same and removes the
//! certificate directory. Statics are never dropped, so the end of the test binary is what
//! stops the last process.
//!
//! Failure-safety tests stop coder-guard with [`CoderGuard::outage_or_skip`]: it waits until no
//! other test of the binary holds [`Serving`] (the handle every other test keeps), stops the
//! process, and restarts it when the returned [`Outage`] is dropped, also on panic.
//!
//! Benchmarks start a second process beside it with [`CoderGuard::start_no_op`]
//! (`--no-op-policy`: allows every review without evaluating), registered by the caller.
//!
//! Log: `target/e2e-logs/<test-binary>/coder-guard.log` (restarts append to it).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rcgen::ExtendedKeyUsagePurpose;
use serde_json::{Value, json};

use super::apiserver::ApiServer;
use super::{TestCa, free_ports, poll, run_bounded, say, text, write_file};

pub mod kubectl;
mod startup;

/// coder-guard's own namespace: excluded by the configurations, as in `webhook-config/`.
pub const OWN_NAMESPACE: &str = "coder-guard";

/// `coder-guard serve` under the watchdog (named `name`, writing `pidfile`, SIGKILL
/// `grace_secs` after SIGTERM, removing `remove` on EOF) with what every harness start shares:
/// the serving pair `tls.crt`/`tls.key` in `dir`, the webhook and admin ports on loopback,
/// `api`'s cluster, a quick shutdown, no inherited configuration, stdin piped to the watchdog,
/// and its own process group (Ctrl-C ends the test process; the watchdog then stops
/// coder-guard). The caller adds flags, environment and output, and spawns it.
pub fn serve_command(
    name: &str,
    pidfile: &Path,
    grace_secs: u32,
    remove: Option<&Path>,
    dir: &Path,
    [webhook_port, admin_port]: [u16; 2],
    api: &ApiServer,
) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(super::watchdog::SCRIPT)
        .arg(name)
        .arg(pidfile)
        .arg("")
        .arg(grace_secs.to_string())
        .arg(remove.unwrap_or(Path::new("")))
        .arg(env!("CARGO_BIN_EXE_coder-guard"))
        .arg("serve")
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .arg(format!("--listen=127.0.0.1:{webhook_port}"))
        .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
        .args(["--shutdown-delay=0s", "--drain-timeout=2s"])
        .env("KUBECONFIG", api.kubeconfig())
        .env("POD_NAMESPACE", OWN_NAMESPACE)
        .env_remove("CODER_GUARD_CONFIG")
        .env_remove("CODER_GUARD_NAMESPACES")
        .stdin(Stdio::piped())
        .process_group(0);
    command
}
/// The validating webhook for Coder resources (`failurePolicy: Fail`).
pub const RESOURCES_HOOK: &str = "resources.coderd.coder.com";
/// The validating webhook for Coder Deployments (`failurePolicy: Ignore`).
pub const DEPLOYMENTS_HOOK: &str = "deployments.coderd.coder.com";
/// The mutating webhook for provisioner Deployments (`failurePolicy: Ignore`).
pub const PROVISIONERS_HOOK: &str = "provisioners.coderd.coder.com";

/// From start to `/readyz` answering 200 (2 slow cores, first list of every watch).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// From registering the configurations to the API server calling the webhook.
const EFFECTIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// From `stop` to the watchdog's exit (coder-guard drains for at most 2 s, SIGKILL at 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Seconds coder-guard gets between SIGTERM and SIGKILL.
const GRACE_SECS: u32 = 10;
/// Upper bound for a `coder-guard manifests …` run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// `coder-guard serve` for the test binary's API server.
/// Whether this test binary's coder-guard runs the reconcile loop (set by the first caller).
static RECONCILE: OnceLock<bool> = OnceLock::new();

pub struct CoderGuard {
    api: &'static ApiServer,
    /// Serving certificate, key, CA; removed by the last watchdog.
    dir: PathBuf,
    log: PathBuf,
    webhook_port: u16,
    admin_port: u16,
    /// Namespace of the object the readiness probe applies.
    probe_namespace: String,
    /// Started with `--no-op-policy` (see [`Self::start_no_op`]).
    no_op: bool,
    /// The running watchdog; `None` during an outage.
    watchdog: Mutex<Option<Child>>,
}

enum State {
    Ready(CoderGuard),
    Skip,
    Failed(String),
}

static STATE: OnceLock<State> = OnceLock::new();
/// Read-held by every test that needs coder-guard up, write-held during an outage.
static SERVING: RwLock<()> = RwLock::new(());

/// A test's handle on the running webhook. Hold it for the whole test and take only one per
/// test: an outage waits until every handle is gone.
pub struct Serving {
    guard: &'static CoderGuard,
    _shared: RwLockReadGuard<'static, ()>,
}

impl Deref for Serving {
    type Target = CoderGuard;
    fn deref(&self) -> &CoderGuard {
        self.guard
    }
}

/// coder-guard stopped (the configurations stay registered) until this is dropped, which
/// restarts it and waits until the API server calls it again.
pub struct Outage {
    guard: &'static CoderGuard,
    _exclusive: RwLockWriteGuard<'static, ()>,
}

impl Deref for Outage {
    type Target = CoderGuard;
    fn deref(&self) -> &CoderGuard {
        self.guard
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let restarted = self.guard.spawn().and_then(|()| self.guard.wait_effective());
        if let Err(e) = restarted {
            if std::thread::panicking() {
                say(&format!("e2e: cannot restart coder-guard after the outage: {e}"));
            } else {
                panic!("cannot restart coder-guard after the outage: {e}");
            }
        }
    }
}

impl CoderGuard {
    /// The running webhook, started on first use; `None` when the API server is skipped here.
    /// Panics with the reason (and the log's end) when coder-guard cannot start.
    ///
    /// Runs with `--no-reconcile`: tests name coderd hosts such as `coder.example.com`, and the
    /// loop would call them. Suites that need the loop use [`Self::shared_with_reconcile_or_skip`].
    pub fn shared_or_skip() -> Option<Serving> {
        Self::serving(false)
    }

    /// Like [`Self::shared_or_skip`], with the reconcile loop running (leader of the Lease).
    /// Its CoderInstances must point at loopback coderds (the fake). One test binary uses one
    /// of the two.
    pub fn shared_with_reconcile_or_skip() -> Option<Serving> {
        Self::serving(true)
    }

    fn serving(reconcile: bool) -> Option<Serving> {
        let mode = RECONCILE.get_or_init(|| reconcile);
        assert_eq!(*mode, reconcile, "one test binary starts coder-guard either with or without the reconcile loop");
        let guard = Self::instance()?;
        let shared = SERVING.read().unwrap_or_else(PoisonError::into_inner);
        Some(Serving { guard, _shared: shared })
    }

    /// Waits until no other test holds [`Serving`], then stops coder-guard until the returned
    /// [`Outage`] is dropped. `None` when the API server is skipped here.
    pub fn outage_or_skip() -> Option<Outage> {
        let guard = Self::instance()?;
        let exclusive = SERVING.write().unwrap_or_else(PoisonError::into_inner);
        let outage = Outage { guard, _exclusive: exclusive };
        guard.stop().unwrap_or_else(|e| panic!("{e}"));
        Some(outage)
    }

    fn instance() -> Option<&'static CoderGuard> {
        match STATE.get_or_init(State::start) {
            State::Ready(guard) => Some(guard),
            State::Skip => None,
            State::Failed(why) => panic!("{why}"),
        }
    }

    /// The API server coder-guard serves.
    pub fn api(&self) -> &'static ApiServer {
        self.api
    }

    /// `https://127.0.0.1:<port>`, the webhook's base URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.webhook_port)
    }

    /// `http://127.0.0.1:<admin port>` (probes and `/metrics`).
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// `target/e2e-logs/<test-binary>/coder-guard.log`.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of coder-guard's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
