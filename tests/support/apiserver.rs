//! A real etcd and kube-apiserver for end-to-end tests, started once per test binary.
//!
//! [`ApiServer::shared_or_skip`] starts both on first use (later calls, from any test thread,
//! get the same server) and installs coder-guard's CRDs and the Coder operator's CRDs. Tests
//! talk to it through `kubectl`, as a user would, and each test works in its own namespace
//! ([`ApiServer::namespace`]): the server has no controller-manager, so namespaces never finish
//! deleting, nothing is garbage-collected and no Pod runs. Assert on API objects only.
//!
//! Binaries come from `$K8S_TEST_ASSETS`, or else from `tools/k8s/build.sh` (a no-op when
//! current). Without Go the tests print `SKIP: …` and pass, except under `CI=true`, where a
//! missing Go toolchain is a failure.
//!
//! Everything listens on 127.0.0.1 only. Each server runs under a small bash watchdog whose
//! stdin is a pipe from the test process, which never writes to it. When the test process
//! ends, however it ends (normal exit, panic, SIGKILL), the kernel closes the pipe; the
//! watchdogs see EOF and stop kube-apiserver first, then etcd (stopped the other way round
//! kube-apiserver retries etcd for minutes), each with SIGTERM and a SIGKILL after a grace
//! period. Statics are never dropped, so nothing here relies on `Drop`.
//!
//! Logs of both servers and their watchdogs: `target/e2e-logs/<test-binary>/`.
//!
//! Webhooks (later): serve the webhook on `127.0.0.1:<port>` with a certificate the test makes,
//! then register the configuration with [`ApiServer::apply`], using
//! `clientConfig.url: https://127.0.0.1:<port>/<path>` and that certificate's CA as `caBundle`.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{TestCa, free_ports, poll, run_bounded, say, text, write_file as write};
use rcgen::{ExtendedKeyUsagePurpose, KeyPair, PKCS_ECDSA_P256_SHA256};

/// How long etcd, then kube-apiserver, may take to become ready (2 slow cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one `kubectl` run.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(90);
/// Seconds kube-apiserver, then etcd, get between SIGTERM and SIGKILL.
const APISERVER_GRACE_SECS: u32 = 20;
const ETCD_GRACE_SECS: u32 = 10;

/// etcd plus kube-apiserver on 127.0.0.1, with an admin kubeconfig and the CRDs installed.
pub struct ApiServer {
    assets: PathBuf,
    /// Certificates, kubeconfig, etcd data; removed by etcd's watchdog once etcd has stopped.
    dir: PathBuf,
    kubeconfig: PathBuf,
    logs: PathBuf,
    url: String,
    ca_pem: String,
    namespaces: AtomicUsize,
    /// etcd's and kube-apiserver's watchdogs. Never dropped while the test process lives:
    /// closing their stdin is what stops the servers.
    watchdogs: Mutex<Vec<(&'static str, Child)>>,
}

enum State {
    Ready(ApiServer),
    Skip(String),
    Failed(String),
}

static STATE: OnceLock<State> = OnceLock::new();

impl ApiServer {
    /// The test binary's server, started on first use; `None` (after printing `SKIP: …` to
    /// stderr) when the binaries cannot be built here and CI is not set. Panics with the reason
    /// when it cannot start. Use as `let Some(api) = ApiServer::shared_or_skip() else { return };`.
    pub fn shared_or_skip() -> Option<&'static ApiServer> {
        match STATE.get_or_init(State::start) {
            State::Ready(api) => Some(api),
            State::Skip(why) => {
                let test = std::thread::current().name().unwrap_or("e2e test").to_owned();
                say(&format!("SKIP: {test}: {why}"));
                None
            }
            State::Failed(why) => panic!("{why}"),
        }
    }

    /// Like [`Self::shared_or_skip`], but a skip is a failure.
    pub fn shared() -> &'static ApiServer {
        match Self::shared_or_skip() {
            Some(api) => api,
            None => panic!("no kube-apiserver for this test (see SKIP above)"),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Admin kubeconfig (client certificate in `system:masters`), for kubectl or kube-rs.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig of this server that authenticates as admin and acts as `subject` (`as:`,
    /// impersonation), e.g. `system:serviceaccount:<ns>:<name>`, for kubectl or kube-rs. Removed
    /// when the returned file is dropped.
    pub fn kubeconfig_as(&self, subject: &str) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new()
            .prefix("kubeconfig-as-")
            .tempfile_in(&self.dir)
            .unwrap_or_else(|e| panic!("cannot create a kubeconfig in {}: {e}", self.dir.display()));
        write(file.path(), &kubeconfig_yaml(&self.url, &self.dir, Some(subject))).unwrap_or_else(|e| panic!("{e}"));
        file
    }

    /// PEM of the CA that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where etcd's and kube-apiserver's logs go.
    pub fn log_dir(&self) -> &Path {
        &self.logs
    }

    /// Runs `kubectl` as admin; panics only if it cannot run or hangs.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_kubectl(args, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `kubectl` as admin with `input` on its stdin (for `-f -`).
    pub fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_kubectl(args, Some(input)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `kubectl` and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let out = self.kubectl(&args);
        assert!(out.status.success(), "kubectl {} failed ({}):\n{}", show(&args), out.status, text(&out.stderr));
        text(&out.stdout)
    }

    /// `kubectl apply -f -` of `manifest` (YAML or JSON, any number of objects). The hook for
    /// cluster-scoped test setup such as a webhook configuration.
    pub fn apply(&self, manifest: &str) -> Output {
        self.kubectl_stdin(["apply", "-f", "-"], manifest)
    }

    /// Creates a namespace of its own for one test: `<prefix>-<n>`.
    pub fn namespace(&self, prefix: &str) -> String {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let mut base: String =
            prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        base.truncate(50);
        let base = base.trim_matches('-');
        let name = format!("{}-{n}", if base.is_empty() { "test" } else { base });
        self.kubectl_ok(["create", "namespace", &name]);
        name
    }

    /// Applies CRD files (server-side: the operator's CRDs are too large for the last-applied
    /// annotation) and waits until each is `Established` and served by discovery. Returns the
    /// CRD names.
    pub fn install_crds(&self, files: &[PathBuf]) -> Vec<String> {
        self.try_install_crds(files).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_install_crds(&self, files: &[PathBuf]) -> Result<Vec<String>, String> {
        let mut args: Vec<&OsStr> =
            ["apply", "--server-side", "--force-conflicts", "--field-manager=coder-guard-e2e", "-o", "name"]
                .map(OsStr::new)
                .to_vec();
        for file in files {
            args.extend([OsStr::new("-f"), file.as_os_str()]);
        }
        let out = self.run_kubectl(&args, None)?;
        if !out.status.success() {
            return Err(format!(
                "kube-apiserver rejected CRDs (kubectl {}):\n{}{}",
                show(&args),
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        let names: Vec<String> = text(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("customresourcedefinition.apiextensions.k8s.io/"))
            .map(str::to_owned)
            .collect();
        if names.len() != files.len() {
            return Err(format!("applied {} CRD files but kubectl named {names:?}", files.len()));
        }
        let mut wait = vec!["wait".to_owned(), "--for=condition=Established".into(), "--timeout=60s".into()];
        wait.extend(names.iter().map(|n| format!("crd/{n}")));
        let out = self.run_kubectl(&wait, None)?;
        if !out.status.success() {
            return Err(format!("CRDs not Established within 60 s:\n{}", text(&out.stderr)));
        }
        // `plural.group` is both the CRD name and discovery's resource name.
        poll(START_TIMEOUT, Duration::from_millis(200), "discovery to list the new CRDs", || {
            let out = self.run_kubectl(["api-resources", "-o", "name"], None)?;
            let listed = text(&out.stdout);
            Ok(names.iter().all(|n| listed.lines().any(|l| l.trim() == n)))
        })?;
        Ok(names)
    }

    fn run_kubectl<I, S>(&self, args: I, input: Option<&str>) -> Result<Output, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(self.assets.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(self.dir.join("kube-cache")).args(args);
        run_bounded(&mut cmd, input.map(str::as_bytes), KUBECTL_TIMEOUT)
    }
}

// === Start-up ===

impl State {
    fn start() -> State {
        let assets = match super::go_tool_assets(
            "K8S_TEST_ASSETS",
            "k8s-test-assets",
            "tools/k8s/build.sh",
            &["etcd", "kube-apiserver", "kubectl"],
            "the end-to-end tests",
        ) {
            Ok(Some(dir)) => dir,
            Ok(None) => {
                return State::Skip(
                    "no usable Go (see above), so kube-apiserver cannot be built (set CI=true to make this a failure)"
                        .into(),
                );
            }
            Err(e) => return State::Failed(e),
        };
        let started = Instant::now();
        match ApiServer::start(assets) {
            Ok(api) => {
                say(&format!(
                    "e2e: kube-apiserver {} ready with CRDs in {:.1}s",
                    api.url,
                    started.elapsed().as_secs_f64(),
                ));
                State::Ready(api)
            }
            Err(e) => State::Failed(e),
        }
    }
}

impl ApiServer {
    fn start(assets: PathBuf) -> Result<ApiServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("coder-guard-e2e-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?
            .keep();
        let logs = super::target_dir().join("e2e-logs").join(test_binary_name());
        fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
        say(&format!("e2e: starting etcd and kube-apiserver; logs in {}", logs.display()));

        let ca_pem = write_certificates(&dir).map_err(|e| format!("cannot write test certificates: {e}"))?;
        let [etcd_port, peer_port, api_port] = free_ports()?;
        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("kubeconfig");
        write(&kubeconfig, &kubeconfig_yaml(&url, &dir, None))?;
        let api = ApiServer {
            assets,
            dir,
            kubeconfig,
            logs,
            url,
            ca_pem,
            namespaces: AtomicUsize::new(0),
            watchdogs: Mutex::new(Vec::new()),
        };

        // etcd's watchdog waits for kube-apiserver to stop, stops etcd, then removes the run
        // directory.
        let etcd_client = format!("http://127.0.0.1:{etcd_port}");
        let etcd_peer = format!("http://127.0.0.1:{peer_port}");
        let d = &api.dir;
        let etcd_args = [
            "--name=default".to_owned(),
            format!("--data-dir={}", d.join("etcd").display()),
            format!("--listen-client-urls={etcd_client}"),
            format!("--advertise-client-urls={etcd_client}"),
            format!("--listen-peer-urls={etcd_peer}"),
            format!("--initial-advertise-peer-urls={etcd_peer}"),
            format!("--initial-cluster=default={etcd_peer}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        api.spawn_watched("etcd", &etcd_args, Some(&d.join("kube-apiserver.pid")), ETCD_GRACE_SECS, Some(d))?;
        api.wait_ready("etcd /health", || Ok(etcd_healthy(etcd_port)))?;

        let path = |name: &str| d.join(name).display().to_string();
        let api_args = [
            format!("--etcd-servers={etcd_client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", path("certs")),
            format!("--tls-cert-file={}", path("apiserver.crt")),
            format!("--tls-private-key-file={}", path("apiserver.key")),
            format!("--client-ca-file={}", path("ca.crt")),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            format!("--service-account-issuer=https://127.0.0.1:{api_port}/"),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
        ];
        api.spawn_watched("kube-apiserver", &api_args, None, APISERVER_GRACE_SECS, None)?;
        api.wait_ready("kube-apiserver /readyz", || {
            let out = api.run_kubectl(["get", "--raw", "/readyz", "--request-timeout=5s"], None)?;
            Ok(out.status.success() && text(&out.stdout).trim() == "ok")
        })?;
        api.wait_ready("namespace default", || {
            Ok(api.run_kubectl(["get", "namespace", "default", "-o", "name"], None)?.status.success())
        })?;

        api.try_install_crds(&our_crd_files())?;
        api.try_install_crds(&operator_crd_files())?;
        Ok(api)
    }

    /// Starts `assets/<name>` under the watchdog, logging to `<logs>/<name>.log`. The watchdog
    /// lets the process in pidfile `after` stop first, and removes `remove` at the end.
    fn spawn_watched(
        &self,
        name: &'static str,
        args: &[String],
        after: Option<&Path>,
        grace_secs: u32,
        remove: Option<&Path>,
    ) -> Result<(), String> {
        let log_path = self.logs.join(format!("{name}.log"));
        let log = fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
        let child = Command::new("bash")
            .arg("-c")
            .arg(super::watchdog::SCRIPT)
            .arg(format!("coder-guard-e2e-watchdog-{name}"))
            .arg(self.dir.join(format!("{name}.pid")))
            .arg(after.unwrap_or(Path::new("")))
            .arg(grace_secs.to_string())
            .arg(remove.unwrap_or(Path::new("")))
            .arg(self.assets.join(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            // Outside the terminal's process group: Ctrl-C ends the test process, and then the
            // watchdog stops the server in order.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start bash for the {name} watchdog: {e}"))?;
        self.watchdogs.lock().unwrap().push((name, child));
        Ok(())
    }

    /// Polls `ready` for up to [`START_TIMEOUT`], failing early if a server has exited.
    fn wait_ready(&self, what: &str, mut ready: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
        poll(START_TIMEOUT, Duration::from_millis(100), what, || {
            if ready()? {
                return Ok(true);
            }
            self.check_alive().map(|()| false)
        })
        .map_err(|e| format!("{e}; logs in {}", self.logs.display()))
    }

    /// An error with the end of its log if a server (so its watchdog) has exited.
    fn check_alive(&self) -> Result<(), String> {
        for (name, watchdog) in self.watchdogs.lock().unwrap().iter_mut() {
            if let Ok(Some(status)) = watchdog.try_wait() {
                let log = self.logs.join(format!("{name}.log"));
                let text = fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                return Err(format!("{name} exited during start-up ({status}); end of {}:\n{tail}", log.display()));
            }
        }
        Ok(())
    }
}

/// coder-guard's generated CRDs.
pub fn our_crd_files() -> Vec<PathBuf> {
    super::yaml_files(&super::repo_dir().join("charts/coder-guard/crds"))
}

/// The Coder operator's CRDs.
pub fn operator_crd_files() -> Vec<PathBuf> {
    super::yaml_files(&super::reference_dir().join("coder-k8s/crds"))
}

/// `e2e_crds` for `target/debug/deps/e2e_crds-0123456789abcdef`.
fn test_binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe.file_stem().and_then(OsStr::to_str).unwrap_or("e2e");
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_owned(),
        _ => stem.to_owned(),
    }
}

/// `GET /health` on etcd's client port over plain HTTP/1.0.
fn etcd_healthy(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    response.starts_with("HTTP/1.") && response.contains(" 200 ") && response.contains(r#""health":"true""#)
}

/// A CA (also the client CA), the serving pair (SANs 127.0.0.1 and localhost), the admin client
/// pair (CN=admin, O=system:masters) and the service-account key pair; all ECDSA P-256.
/// Returns the CA's PEM.
fn write_certificates(dir: &Path) -> Result<String, String> {
    let ca = TestCa::new("coder-guard-e2e-ca")?;
    let server = ExtendedKeyUsagePurpose::ServerAuth;
    ca.write_leaf(
        dir,
        ("apiserver.crt", "apiserver.key"),
        &["127.0.0.1", "localhost"],
        "kube-apiserver",
        None,
        server,
    )?;
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    ca.write_leaf(dir, ("admin.crt", "admin.key"), &[], "admin", Some("system:masters"), client)?;
    let sa = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    write(&dir.join("sa.key"), &sa.serialize_pem())?;
    write(&dir.join("sa.pub"), &sa.public_key_pem())?;
    write(&dir.join("ca.crt"), ca.pem())?;
    Ok(ca.pem().to_owned())
}

/// The admin kubeconfig; with `act_as`, impersonating that user.
fn kubeconfig_yaml(url: &str, dir: &Path, act_as: Option<&str>) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    let act_as = act_as.map(|subject| format!("    as: {subject:?}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: e2e\n  cluster:\n    server: {url}\n    certificate-authority: {:?}\n\
         users:\n- name: admin\n  user:\n    client-certificate: {:?}\n    client-key: {:?}\n{act_as}\
         contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\n\
         current-context: e2e\n",
        path("ca.crt"),
        path("admin.crt"),
        path("admin.key"),
    )
}

fn show<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter().map(|a| a.as_ref().to_string_lossy()).collect::<Vec<_>>().join(" ")
}
