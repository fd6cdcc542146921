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

// === Start-up ===

impl State {
    fn start() -> State {
        let Some(api) = ApiServer::shared_or_skip() else { return State::Skip };
        let started = Instant::now();
        match CoderGuard::start(api) {
            Ok(guard) => {
                say(&format!(
                    "e2e: coder-guard {} registered and called by the API server in {:.1}s; log {}",
                    guard.url(),
                    started.elapsed().as_secs_f64(),
                    guard.log.display(),
                ));
                State::Ready(guard)
            }
            Err(e) => State::Failed(e),
        }
    }
}

impl CoderGuard {
    fn start(api: &'static ApiServer) -> Result<CoderGuard, String> {
        let dir = tempfile::Builder::new()
            .prefix("coder-guard-e2e-webhook-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?
            .keep();
        write_certificates(&dir).map_err(|e| format!("cannot write coder-guard's test certificates: {e}"))?;
        let [webhook_port, admin_port] = free_ports()?;
        let log = api.log_dir().join("coder-guard.log");
        fs::write(&log, "").map_err(|e| format!("cannot create {}: {e}", log.display()))?;

        let out = api.kubectl(["create", "namespace", OWN_NAMESPACE]);
        if !out.status.success() && !text(&out.stderr).contains("AlreadyExists") {
            return Err(format!("cannot create namespace {OWN_NAMESPACE}: {}", text(&out.stderr)));
        }
        let probe_namespace = api.namespace("coder-guard-probe");
        for object in probe_prerequisites(&probe_namespace) {
            let out = api.apply(&object.to_string());
            if !out.status.success() {
                return Err(format!("cannot create the probe's prerequisites: {}", text(&out.stderr)));
            }
        }
        let guard = CoderGuard {
            api,
            dir,
            log,
            webhook_port,
            admin_port,
            probe_namespace,
            no_op: false,
            watchdog: Mutex::new(None),
        };
        guard.spawn()?;
        guard.register()?;
        guard.wait_effective()?;
        Ok(guard)
    }

    /// A second `coder-guard serve` beside this one with `--no-op-policy` (every review allowed
    /// without evaluating), for benchmarks: the same API server, flags and serving certificate
    /// (so the same `caBundle`), its own ports, directory and log (`coder-guard-no-op.log`),
    /// always `--no-reconcile`. Returned once `/readyz` answers; registered nowhere. Dropping it
    /// closes its watchdog's pipe, which stops it and removes its directory.
    pub fn start_no_op(&self) -> Result<CoderGuard, String> {
        let dir = tempfile::Builder::new()
            .prefix("coder-guard-e2e-no-op-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?
            .keep();
        for file in ["tls.crt", "tls.key", "ca.crt"] {
            fs::copy(self.dir.join(file), dir.join(file)).map_err(|e| format!("cannot copy {file}: {e}"))?;
        }
        let [webhook_port, admin_port] = free_ports()?;
        let log = self.api.log_dir().join("coder-guard-no-op.log");
        fs::write(&log, "").map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let guard = CoderGuard {
            api: self.api,
            dir,
            log,
            webhook_port,
            admin_port,
            probe_namespace: self.probe_namespace.clone(),
            no_op: true,
            watchdog: Mutex::new(None),
        };
        guard.spawn()?;
        Ok(guard)
    }

    /// Starts coder-guard under a new watchdog and waits for `/readyz`.
    fn spawn(&self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
        let d = &self.dir;
        let pidfile = d.join("coder-guard.pid");
        let child = serve_command(
            "coder-guard-e2e-watchdog",
            &pidfile,
            GRACE_SECS,
            Some(d),
            d,
            [self.webhook_port, self.admin_port],
            self.api,
        )
        .args((self.no_op || !RECONCILE.get().copied().unwrap_or(false)).then_some("--no-reconcile"))
        .args(self.no_op.then_some("--no-op-policy"))
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("cannot start bash for coder-guard's watchdog: {e}"))?;
        *self.watchdog.lock().unwrap_or_else(PoisonError::into_inner) = Some(child);
        poll(READY_TIMEOUT, Duration::from_millis(100), "coder-guard /readyz", || {
            if self.http_status("/readyz") == Some(200) {
                return Ok(true);
            }
            self.check_alive().map(|()| false)
        })
        .map_err(|e| format!("{e}; end of {}:\n{}", self.log.display(), self.log_tail(40)))
    }

    /// Stops coder-guard by its PID (through the watchdog) and waits until it has exited.
    fn stop(&self) -> Result<(), String> {
        let Some(mut child) = self.watchdog.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return Err("coder-guard is not running".into());
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() < STOP_TIMEOUT => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("coder-guard's watchdog did not stop within {STOP_TIMEOUT:?}; killed it"));
                }
                Err(e) => return Err(format!("waiting for coder-guard's watchdog: {e}")),
            }
        }
        // The listener is gone once the process is: nothing answers on the webhook port.
        match TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, self.webhook_port)), SECOND) {
            Ok(_) => Err(format!("something still listens on 127.0.0.1:{} after the stop", self.webhook_port)),
            Err(_) => Ok(()),
        }
    }

    /// An error with the log's end if coder-guard (so its watchdog) has exited.
    fn check_alive(&self) -> Result<(), String> {
        let mut slot = self.watchdog.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!("coder-guard exited ({status})")),
            Some(Err(e)) => Err(format!("cannot check coder-guard's watchdog: {e}")),
            None => Err("coder-guard is not running".into()),
        }
    }

    /// `GET` on the admin port over plain HTTP; the status code, `None` if unreachable.
    fn http_status(&self, path: &str) -> Option<u16> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.admin_port));
        let mut conn = TcpStream::connect_timeout(&addr, SECOND).ok()?;
        conn.set_read_timeout(Some(2 * SECOND)).ok()?;
        conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
            .ok()?;
        let mut response = String::new();
        let _ = conn.read_to_string(&mut response);
        response.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    /// Applies the configurations of `coder-guard manifests webhooks --url … --ca-bundle-file …`
    /// after checking they match `webhook-config/webhooks.yaml` apart from `clientConfig`.
    fn register(&self) -> Result<(), String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coder-guard"));
        cmd.args(["manifests", "webhooks", "--url", &self.url(), "--namespace", OWN_NAMESPACE])
            .arg("--ca-bundle-file")
            .arg(self.dir.join("ca.crt"));
        let out = run_bounded(&mut cmd, None, CLI_TIMEOUT)?;
        if !out.status.success() {
            return Err(format!("coder-guard manifests webhooks failed ({}):\n{}", out.status, text(&out.stderr)));
        }
        let manifest = text(&out.stdout);
        let checked_in = fs::read_to_string(super::repo_dir().join("webhook-config/webhooks.yaml"))
            .map_err(|e| format!("cannot read webhook-config/webhooks.yaml: {e}"))?;
        let (ours, theirs) = (without_client_config(&manifest)?, without_client_config(&checked_in)?);
        if ours != theirs {
            return Err(format!(
                "`coder-guard manifests webhooks --url` differs from webhook-config/webhooks.yaml beyond \
                 clientConfig:\n{manifest}"
            ));
        }
        let out = self.api.apply(&manifest);
        if !out.status.success() {
            return Err(format!("kube-apiserver refused the webhook configurations:\n{}", text(&out.stderr)));
        }
        Ok(())
    }

    /// Polls until the API server calls both webhooks: a server dry run of a provisioner key
    /// name coderd rejects is denied by coder-guard, and one of an annotated Deployment comes
    /// back with the injected key.
    fn wait_effective(&self) -> Result<(), String> {
        let ns = &self.probe_namespace;
        let mut denied = false;
        let mut last = String::new();
        poll(EFFECTIVE_TIMEOUT, Duration::from_millis(200), "the API server to call coder-guard", || {
            if !denied {
                let out = self.api.kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &probe_provisioner(ns));
                last = text(&out.stderr);
                denied = !out.status.success()
                    && last.contains(&format!("admission webhook \"{RESOURCES_HOOK}\" denied the request"));
                if !denied {
                    return self.check_alive().map(|()| false);
                }
            }
            let out =
                self.api.kubectl_stdin(["create", "--dry-run=server", "-o", "json", "-f", "-"], &probe_mutation(ns));
            last = text(&out.stderr);
            Ok(out.status.success() && text(&out.stdout).contains("CODER_PROVISIONER_DAEMON_KEY"))
        })
        .map_err(|e| {
            format!("{e}; last kubectl stderr:\n{last}\nend of {}:\n{}", self.log.display(), self.log_tail(40))
        })
    }
}

/// A CoderProvisioner whose 65-byte key name the operator's CRD allows and coderd rejects.
fn probe_provisioner(ns: &str) -> String {
    json!({
        "apiVersion": "coder.com/v1alpha1",
        "kind": "CoderProvisioner",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {"controlPlaneRef": {"name": "coder"}, "key": {"name": "k".repeat(65)}},
    })
    .to_string()
}

/// A Deployment annotated with the CoderProvisionerKey of [`probe_prerequisites`].
fn probe_mutation(ns: &str) -> String {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": ns, "annotations": {"coderd.coder.com/provisioner-key": "probe"}},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"containers": [{"name": "coder", "image": "ghcr.io/coder/coder:v2.34.0",
                                         "args": ["provisioner", "start"]}]},
            },
        },
    });
    deployment.to_string()
}

/// The objects [`probe_mutation`] needs; applied once, before the configurations exist.
fn probe_prerequisites(ns: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "probe-token", "namespace": ns},
               "stringData": {"token": "probe-token-value"}}),
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderInstance",
               "metadata": {"name": "main", "namespace": ns},
               "spec": {"url": "https://127.0.0.1:9", "tokenSecretRef": {"name": "probe-token"}}}),
        json!({"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderProvisionerKey",
               "metadata": {"name": "probe", "namespace": ns}, "spec": {"instanceRef": {"name": "main"}}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "probe-provisioner-key", "namespace": ns},
               "stringData": {"key": "probe-key-value"}}),
    ]
}

const SECOND: Duration = Duration::from_secs(1);

/// The documents of a webhook configuration stream without `webhooks[].clientConfig`.
fn without_client_config(stream: &str) -> Result<Vec<Value>, String> {
    let (docs, error) = coder_guard::yaml::parse_documents(stream);
    if let Some(e) = error {
        return Err(format!("webhook configuration YAML: line {}: {}", e.line, e.message));
    }
    let mut out = Vec::new();
    for doc in docs.into_iter().map(|d| d.value).filter(|v| !v.is_null()) {
        let mut doc = doc;
        for hook in doc["webhooks"].as_array_mut().into_iter().flatten() {
            hook.as_object_mut().map(|h| h.remove("clientConfig"));
        }
        out.push(doc);
    }
    Ok(out)
}

/// A CA (`ca.crt`) and a serving pair for `127.0.0.1` (`tls.crt`, `tls.key`); ECDSA P-256.
fn write_certificates(dir: &Path) -> Result<(), String> {
    let ca = TestCa::new("coder-guard-e2e-webhook-ca")?;
    let usage = ExtendedKeyUsagePurpose::ServerAuth;
    ca.write_leaf(dir, ("tls.crt", "tls.key"), &["127.0.0.1"], "coder-guard", None, usage)?;
    write_file(&dir.join("ca.crt"), ca.pem())
}
