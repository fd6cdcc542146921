//! `coder-guard serve --self-signed` against a real kube-apiserver: it finds its CRDs, takes the
//! Lease, patches `caBundle` into the `coder-guard` webhook configurations, becomes ready once
//! its cache has synced, and the API server then calls it: `kubectl apply --dry-run=server` of
//! a bad object is denied with coder-guard's message, and a provisioner Deployment is admitted
//! with the checksum the mutating hook adds. SIGTERM ends it with status 0.
//!
//! Skipped (with `SKIP: …` on stderr) where Go is not installed, unless `CI=true`.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::{poll, text};

/// The server process; killed if the test ends early.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example(name: &str, namespace: &str) -> Value {
    let path = format!("{}/examples/admission/{name}", env!("CARGO_MANIFEST_DIR"));
    let review: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut object = review["request"]["object"].clone();
    object["metadata"]["namespace"] = json!(namespace);
    object
}

fn ready(admin: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(admin) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

#[test]
fn self_signed_serve_is_called_by_the_api_server() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let ns = api.namespace("serve-e2e");
    let [port, admin_port] = support::free_ports::<2>().unwrap();
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));

    // The webhook configurations, without a caBundle: the leader fills it in.
    let manifests = Command::new(env!("CARGO_BIN_EXE_coder-guard"))
        .args(["manifests", "webhooks", "--url", &format!("https://127.0.0.1:{port}"), "--namespace", "cg-system"])
        .output()
        .unwrap();
    assert!(manifests.status.success(), "{}", text(&manifests.stderr));
    let applied = api.apply(&text(&manifests.stdout));
    assert!(applied.status.success(), "{}", text(&applied.stderr));

    let log = std::fs::File::create(api.log_dir().join("coder-guard-serve.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_coder-guard"))
        .args(["serve", "--self-signed", "--self-signed-dns-name", "127.0.0.1", "--namespace", &ns])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &admin.to_string()])
        .args(["--shutdown-delay", "1s", "--drain-timeout", "5s"])
        .env("KUBECONFIG", api.kubeconfig())
        .env("POD_NAMESPACE", &ns)
        .env("POD_NAME", "coder-guard-e2e-0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut serve = Serve(child);
    let log_hint = format!("coder-guard's log: {}", api.log_dir().join("coder-guard-serve.log").display());

    // Leader: the caBundle of every webhook is the self-signed CA.
    poll(Duration::from_secs(60), Duration::from_millis(200), "caBundle to be patched", || {
        let bundles = api.kubectl_ok([
            "get",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            "coder-guard",
            "-o",
            "jsonpath={.items[*].webhooks[*].clientConfig.caBundle}",
        ]);
        let bundles: Vec<&str> = bundles.split_whitespace().collect();
        Ok(bundles.len() == 3
            && bundles.iter().all(|b| {
                let pem = base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default();
                pem.starts_with(b"-----BEGIN CERTIFICATE-----")
            }))
    })
    .unwrap_or_else(|e| panic!("{e}; {log_hint}"));
    let holder = api.kubectl_ok(["get", "lease", "coder-guard", "-n", &ns, "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(holder, "coder-guard-e2e-0");

    poll(Duration::from_secs(60), Duration::from_millis(200), "/readyz", || Ok(ready(admin)))
        .unwrap_or_else(|e| panic!("{e}; {log_hint}"));

    // A bad object, server-side dry run: denied by the validating hook, per field.
    let bad = example("deny-provisioner.json", &ns);
    let out = api.kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &bad.to_string());
    assert!(!out.status.success(), "a bad CoderProvisioner was admitted");
    let err = text(&out.stderr);
    assert!(err.contains("admission webhook \"resources.coderd.coder.com\" denied the request"), "{err}");
    assert!(err.contains("[provisioner-key-name] spec.key.name"), "{err}");

    // A provisioner Deployment reading a Secret: admitted, with the checksum annotation.
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "gpu-builds-provisioner-key", "namespace": ns},
        "stringData": {"key": "e2e-provisioner-key"}});
    api.kubectl_stdin(["apply", "-f", "-"], &secret.to_string());
    std::thread::sleep(Duration::from_millis(500));
    let deployment = example("allow-provisioner-deployment.json", &ns);
    let out = api.kubectl_stdin(["apply", "-f", "-"], &deployment.to_string());
    assert!(out.status.success(), "{}; {log_hint}", text(&out.stderr));
    let annotations = api.kubectl_ok([
        "get",
        "deployment",
        "coder-provisioner",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.template.metadata.annotations}",
    ]);
    assert!(annotations.contains("checksum/provisioner-key") && annotations.contains("sha256:"), "{annotations}");

    // SIGTERM: not ready, then exit 0.
    let kill = Command::new("kill").args(["-TERM", &serve.0.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "coder-guard did not exit; {log_hint}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "{log_hint}");

    // Leave no webhook behind for other tests of this binary.
    api.kubectl(["delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", "coder-guard"]);
}
