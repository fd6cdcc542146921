//! Two `coder-guard serve --self-signed` replicas against a real kube-apiserver share one CA
//! through the Secret `coder-guard-ca`, with only the RBAC coder-guard declares (impersonating a
//! service account bound to `cluster::{rbac_rules, lease_rbac_rules, ca_secret_rbac_rules,
//! ca_bundle_rbac_rules}`):
//!
//! - while another holder keeps the Lease, no Secret exists and `/readyz` fails on the
//!   certificate; then the new leader creates the Secret (Opaque, labelled) and both become ready;
//! - a TLS client trusting only the Secret's `ca.crt` gets an AdmissionReview answer from BOTH
//!   replicas, and the API server itself calls the webhook (a server-side dry run is denied);
//! - a 36 s CA (hidden `--self-signed-ca-validity`) rotates: at every sample, each replica's
//!   served leaf verifies against the `caBundle` published at that moment; after the rotation both
//!   replicas answer clients trusting only the new `ca.crt`, the API server still calls the
//!   webhook, and the old CA leaves the Secret and `caBundle` once it expires;
//! - neither replica's log holds the CA key.
//!
//! Loopback only; every wait is bounded. Skipped (with `SKIP: …` on stderr) where Go is not
//! installed, unless `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use coder_guard::cluster;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::{free_ports, poll, text};

const SECRET: &str = "coder-guard-ca";
const SERVICE_ACCOUNT: &str = "coder-guard";
/// CA validity: rotation at 24 s, the old CA expires at 36 s.
const CA_VALIDITY: &str = "36s";
/// Upper bound for start-up, the rotation, and the pruning of the old CA.
const WAIT: Duration = Duration::from_secs(90);

/// A replica; killed if the test ends early.
struct Replica {
    child: Child,
    name: &'static str,
    webhook: SocketAddr,
    admin: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).unwrap_or_default()
}

fn ders(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// === the cluster side ===

/// The RBAC coder-guard declares, bound to `system:serviceaccount:<ns>:coder-guard`: the Lease and
/// the CA Secret in `ns`, the cache in `watched`, caBundle patching cluster-wide.
fn apply_rbac(api: &ApiServer, ns: &str, watched: &str) {
    let subject = json!([{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]);
    let role = |namespace: &str, rules: Value| {
        json!([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "coder-guard", "namespace": namespace}, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "coder-guard", "namespace": namespace}, "subjects": subject,
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "coder-guard"}},
        ])
    };
    let mut own = cluster::lease_rbac_rules("coder-guard");
    own.extend(cluster::ca_secret_rbac_rules(SECRET));
    let cluster_role = format!("coder-guard-e2e-{ns}");
    let mut items: Vec<Value> = Vec::new();
    items.extend(role(ns, json!(own)).as_array().unwrap().clone());
    items.extend(role(watched, json!(cluster::rbac_rules())).as_array().unwrap().clone());
    items.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": cluster_role}, "rules": cluster::ca_bundle_rbac_rules("coder-guard", "coder-guard")}));
    items.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": cluster_role}, "subjects": subject,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role}}));
    let out = api.apply(&json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string());
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The CA Secret's data, labels and type; `None` while it does not exist.
fn secret(api: &ApiServer, ns: &str) -> Option<(BTreeMap<String, Vec<u8>>, Value, String)> {
    let out = api.kubectl(["get", "secret", SECRET, "-n", ns, "-o", "json", "--ignore-not-found"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = text(&out.stdout);
    if body.trim().is_empty() {
        return None;
    }
    let secret: Value = serde_json::from_str(&body).unwrap();
    let data = secret["data"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), b64(v.as_str().unwrap())));
    Some((data.collect(), secret["metadata"]["labels"].clone(), secret["type"].as_str().unwrap_or("").to_owned()))
}

/// Every webhook's caBundle, validating first.
fn published(api: &ApiServer) -> Vec<Vec<u8>> {
    let out = api.kubectl_ok([
        "get",
        "validatingwebhookconfiguration,mutatingwebhookconfiguration",
        "coder-guard",
        "-o",
        "jsonpath={.items[*].webhooks[*].clientConfig.caBundle}",
    ]);
    out.split_whitespace().map(b64).collect()
}

/// A CoderProvisioner the validating webhook denies, applied as a server-side dry run.
fn api_server_calls_the_webhook(api: &ApiServer, namespace: &str) -> Result<(), String> {
    let path = format!("{}/examples/admission/deny-provisioner.json", env!("CARGO_MANIFEST_DIR"));
    let review: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut object = review["request"]["object"].clone();
    object["metadata"]["namespace"] = json!(namespace);
    let out = api.kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &object.to_string());
    let err = text(&out.stderr);
    match out.status.success() {
        false if err.contains("admission webhook \"resources.coderd.coder.com\" denied the request") => Ok(()),
        _ => Err(format!("the API server did not get coder-guard's denial: {err}")),
    }
}

// === the client side ===

/// Records the presented chain and accepts it; the test verifies it separately.
#[derive(Debug)]
struct Capture {
    presented: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTP/1.1 request over TLS with `verifier`; returns the response as text.
fn https(addr: SocketAddr, verifier: Arc<dyn ServerCertVerifier>, request: &[u8]) -> Result<String, String> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request).map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(format!("{addr}: {e}")),
    }
    Ok(text(&answer))
}

/// The leaf `addr` serves now (the handshake accepts anything).
fn presented_leaf(addr: SocketAddr) -> Result<CertificateDer<'static>, String> {
    let capture = Arc::new(Capture { presented: Mutex::new(None), provider: provider() });
    let request = format!("GET /none HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    https(addr, capture.clone(), request.as_bytes())?;
    capture.presented.lock().unwrap().clone().ok_or_else(|| format!("{addr} presented no certificate"))
}

fn verifier(bundle_pem: &[u8]) -> Arc<WebPkiServerVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in ders(bundle_pem) {
        roots.add(ca).unwrap();
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap()
}

/// Whether `leaf` verifies for 127.0.0.1 against `bundle_pem` now.
fn verifies(bundle_pem: &[u8], leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let now = UnixTime::since_unix_epoch(SystemTime::now().duration_since(UNIX_EPOCH).unwrap());
    let name = ServerName::try_from("127.0.0.1").unwrap();
    verifier(bundle_pem).verify_server_cert(leaf, &[], &name, &[], now).map(|_| ())
}

/// POSTs the example AdmissionReview to `/validate`, trusting only `ca_pem`; it must be denied.
fn validate(replica: &Replica, ca_pem: &[u8]) -> Result<(), String> {
    let body =
        std::fs::read(format!("{}/examples/admission/deny-provisioner.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let addr = replica.webhook;
    let mut request = format!(
        "POST /validate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend(body);
    let answer = https(addr, verifier(ca_pem), &request).map_err(|e| format!("{}: {e}", replica.name))?;
    let ok = answer.starts_with("HTTP/1.1 200")
        && answer.contains("4b3c2f9e-6f1d-4a53-9a8e-0d1c7e2b5a01")
        && answer.contains("\"allowed\":false");
    if ok { Ok(()) } else { Err(format!("{}: unexpected answer: {answer}", replica.name)) }
}

/// `/readyz`: status code and body.
fn readyz(admin: SocketAddr) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    Some((status, answer))
}

/// Starts replica `name` with its webhook and admin `ports`.
fn start(api: &ApiServer, name: &'static str, ports: [u16; 2], kubeconfig: &Path, ns: &str, watched: &str) -> Replica {
    let [webhook, admin] = ports;
    let log = api.log_dir().join(format!("shared-ca-{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_coder-guard"))
        .args(["serve", "--self-signed", "--self-signed-dns-name", "127.0.0.1", "--no-reconcile"])
        .args(["--self-signed-ca-validity", CA_VALIDITY, "--namespace", watched])
        .args(["--listen", &format!("127.0.0.1:{webhook}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--shutdown-delay", "0s", "--drain-timeout", "2s"])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", ns)
        .env("POD_NAME", name)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let webhook = SocketAddr::from(([127, 0, 0, 1], webhook));
    Replica { child, name, webhook, admin: SocketAddr::from(([127, 0, 0, 1], admin)), log }
}

#[test]
fn two_replicas_share_one_ca_through_a_rotation() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let started = Instant::now();
    let ns = api.namespace("shared-ca");
    let watched = api.namespace("shared-ca-watched");
    apply_rbac(api, &ns, &watched);
    let kubeconfig = api.kubeconfig_as(&format!("system:serviceaccount:{ns}:{SERVICE_ACCOUNT}"));

    // Another holder keeps the Lease for 6 s, so at first nobody may create the CA.
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "coder-guard", "namespace": ns},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 6}});
    assert!(api.apply(&lease.to_string()).status.success());

    // All four ports at once, so that no two are the same.
    let [a_webhook, a_admin, b_webhook, b_admin] = free_ports().unwrap();
    let a = start(api, "replica-a", [a_webhook, a_admin], kubeconfig.path(), &ns, &watched);
    let b = start(api, "replica-b", [b_webhook, b_admin], kubeconfig.path(), &ns, &watched);
    let hint = format!("logs: {} and {}", a.log.display(), b.log.display());
    // The webhook configurations call replica a; the leader fills in caBundle.
    let manifests = Command::new(env!("CARGO_BIN_EXE_coder-guard"))
        .args(["manifests", "webhooks", "--url", &format!("https://{}", a.webhook), "--namespace", "cg-system"])
        .output()
        .unwrap();
    assert!(manifests.status.success(), "{}", text(&manifests.stderr));
    let applied = api.apply(&text(&manifests.stdout));
    assert!(applied.status.success(), "{}", text(&applied.stderr));

    // Not ready while no CA exists.
    let mut answer = None;
    poll(WAIT, Duration::from_millis(100), "replica a's admin port", || {
        answer = readyz(a.admin);
        Ok(answer.is_some())
    })
    .unwrap_or_else(|e| panic!("{e}; {hint}"));
    let (status, body) = answer.unwrap();
    assert!(secret(api, &ns).is_none(), "the Secret exists while the Lease is someone else's; {hint}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("[-]certificate"), "{body}");

    // The new leader creates the Secret; both replicas become ready on leaves from it.
    for replica in [&a, &b] {
        poll(WAIT, Duration::from_millis(200), &format!("{} to be ready", replica.name), || {
            Ok(readyz(replica.admin).is_some_and(|(s, _)| s == 200))
        })
        .unwrap_or_else(|e| panic!("{e}; {hint}"));
    }
    let ready_after = started.elapsed();
    let (data, labels, type_) = secret(api, &ns).expect("the Secret");
    assert_eq!(type_, "Opaque");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "coder-guard");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["ca.crt", "ca.key"]);
    let first_ca = data["ca.crt"].clone();
    let ca_key_line = text(&data["ca.key"]).lines().nth(1).unwrap().to_owned();

    // A client trusting only ca.crt reaches both replicas; the API server calls the webhook.
    for replica in [&a, &b] {
        validate(replica, &first_ca).unwrap_or_else(|e| panic!("{e}; {hint}"));
    }
    poll(WAIT, Duration::from_millis(250), "caBundle to be patched", || {
        let bundles = published(api);
        Ok(bundles.len() == 3 && bundles.iter().all(|b| ders(b) == ders(&first_ca)))
    })
    .unwrap_or_else(|e| panic!("{e}; {hint}"));
    poll(Duration::from_secs(20), Duration::from_millis(500), "the API server to call the webhook", || {
        Ok(api_server_calls_the_webhook(api, &watched).is_ok())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}; {hint}", api_server_calls_the_webhook(api, &watched)));

    // The rotation: at every sample each replica's leaf verifies against the caBundle published
    // after it was presented.
    let (mut samples, mut saw_staged, mut saw_two_in_bundle) = (0, false, false);
    let rotated_ca = loop {
        assert!(started.elapsed() < 3 * WAIT, "no rotation (staged: {saw_staged}); {hint}");
        let leaves: Vec<_> = [&a, &b].iter().map(|r| (r.name, presented_leaf(r.webhook))).collect();
        let bundle = published(api).swap_remove(0);
        saw_two_in_bundle |= ders(&bundle).len() == 2;
        for (name, leaf) in &leaves {
            let leaf = leaf.as_ref().unwrap_or_else(|e| panic!("{name}: {e}; {hint}"));
            verifies(&bundle, leaf)
                .unwrap_or_else(|e| panic!("{name}'s leaf vs the published caBundle: {e:?}; {hint}"));
        }
        samples += 1;
        let (data, ..) = secret(api, &ns).expect("the Secret");
        saw_staged |= data.contains_key("next.crt");
        let ca = data["ca.crt"].clone();
        if ca != first_ca && leaves.iter().all(|(_, l)| verifies(&ca, l.as_ref().unwrap()).is_ok()) {
            break ca;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let rotated_after = started.elapsed();
    assert!(saw_staged, "the next CA was not staged before it signed");
    assert!(saw_two_in_bundle, "caBundle never held both CAs");
    for replica in [&a, &b] {
        validate(replica, &rotated_ca).unwrap_or_else(|e| panic!("after the rotation: {e}; {hint}"));
    }
    api_server_calls_the_webhook(api, &watched).unwrap_or_else(|e| panic!("after the rotation: {e}; {hint}"));

    // The old CA leaves the Secret and caBundle once it expires; both replicas still answer.
    poll(WAIT, Duration::from_millis(500), "the expired CA to be pruned", || {
        let (data, ..) = secret(api, &ns).expect("the Secret");
        let bundles = published(api);
        Ok(!data.contains_key("previous.crt")
            && bundles.len() == 3
            && bundles.iter().all(|b| ders(b) == ders(&data["ca.crt"])))
    })
    .unwrap_or_else(|e| panic!("{e}; {hint}"));
    let (data, ..) = secret(api, &ns).expect("the Secret");
    for replica in [&a, &b] {
        validate(replica, &data["ca.crt"]).unwrap_or_else(|e| panic!("after pruning: {e}; {hint}"));
    }
    let key_lines = [ca_key_line, text(&data["ca.key"]).lines().nth(1).unwrap().to_owned()];
    eprintln!(
        "shared CA: ready after {:.1}s, rotated after {:.1}s ({samples} samples), pruned after {:.1}s",
        ready_after.as_secs_f64(),
        rotated_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // The CA key never reaches a log.
    drop((a, b));
    for name in ["replica-a", "replica-b"] {
        let log = std::fs::read_to_string(api.log_dir().join(format!("shared-ca-{name}.log"))).unwrap();
        assert!(log.contains("serving certificate issued from the shared CA"), "{name}: {log}");
        let leaked = key_lines.iter().any(|line| log.contains(line.as_str())) || log.contains("PRIVATE KEY");
        assert!(!leaked, "{name}'s log holds key material");
    }
    api.kubectl(["delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration", "coder-guard"]);
}
