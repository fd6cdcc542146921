//! Starting coder-guard: certificates, the process under its watchdog, readiness, and the
//! webhook configurations registered and checked.

use super::*;

impl State {
    pub(super) fn start() -> State {
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
    pub(super) fn start(api: &'static ApiServer) -> Result<CoderGuard, String> {
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
    pub(super) fn spawn(&self) -> Result<(), String> {
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
    pub(super) fn stop(&self) -> Result<(), String> {
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
    pub(super) fn check_alive(&self) -> Result<(), String> {
        let mut slot = self.watchdog.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!("coder-guard exited ({status})")),
            Some(Err(e)) => Err(format!("cannot check coder-guard's watchdog: {e}")),
            None => Err("coder-guard is not running".into()),
        }
    }

    /// `GET` on the admin port over plain HTTP; the status code, `None` if unreachable.
    pub(super) fn http_status(&self, path: &str) -> Option<u16> {
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
    pub(super) fn register(&self) -> Result<(), String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coder-guard"));
        cmd.args(["manifests", "webhooks", "--url", &self.url(), "--namespace", OWN_NAMESPACE])
            .arg("--ca-bundle-file")
            .arg(self.dir.join("ca.crt"));
        let out = run_bounded(&mut cmd, None, CLI_TIMEOUT)?;
        if !out.status.success() {
            return Err(format!("coder-guard manifests webhooks failed ({}):\n{}", out.status, text(&out.stderr)));
        }
        let manifest = text(&out.stdout);
        let checked_in = fs::read_to_string(super::super::repo_dir().join("webhook-config/webhooks.yaml"))
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
    pub(super) fn wait_effective(&self) -> Result<(), String> {
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
