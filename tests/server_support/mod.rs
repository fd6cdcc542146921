//! Helpers for the HTTPS server tests: a test CA, certificate files laid out as the kubelet
//! lays out a Secret volume (`..data` symlink), the real server on 127.0.0.1:0, and clients
//! that trust only the test CA.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coder_guard::certs::{self, CertHandle, Source};
use coder_guard::policy::Index;
use coder_guard::server::{self, ConnectionLimits, Limits, Objects, Running, Settings};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tokio_rustls::rustls;

/// A throwaway CA that issues serving certificates for 127.0.0.1 and localhost.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "coder-guard test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self { ca_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A serving certificate (PEM) and key (PEM) whose common name is `name`.
    pub fn leaf(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A rustls client configuration (ring) trusting only this CA, HTTP/1.1.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

use rustls_pki_types::pem::PemObject as _;

/// Certificate files in a directory laid out as the kubelet lays out a Secret volume:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<version>/`. `swap` replaces the pair with one
/// atomic rename of `..data`, exactly as the kubelet does.
pub struct CertDir {
    pub dir: tempfile::TempDir,
    version: AtomicUsize,
}

impl CertDir {
    pub fn new(cert_pem: &str, key_pem: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let this = Self { dir, version: AtomicUsize::new(0) };
        let first = this.write_version(cert_pem, key_pem);
        std::os::unix::fs::symlink(&first, this.dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/tls.crt", this.cert()).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", this.key()).unwrap();
        this
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    fn write_version(&self, cert_pem: &str, key_pem: &str) -> String {
        let n = self.version.fetch_add(1, Ordering::SeqCst);
        let name = format!("..2026_11_22_00_00_{n:04}");
        let path = self.dir.path().join(&name);
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("tls.crt"), cert_pem).unwrap();
        std::fs::write(path.join("tls.key"), key_pem).unwrap();
        name
    }

    /// The kubelet's update: new version directory, new `..data_tmp` symlink, rename over
    /// `..data`, remove the old directory.
    pub fn swap(&self, cert_pem: &str, key_pem: &str) {
        let old = std::fs::read_link(self.dir.path().join("..data")).unwrap();
        let new = self.write_version(cert_pem, key_pem);
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.path().join(old)).unwrap();
    }
}

/// How to start a test server.
pub struct Options {
    pub limits: Limits,
    pub connections: ConnectionLimits,
    pub objects: Arc<dyn Objects>,
    pub rule_config: Option<PathBuf>,
    pub no_op: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            connections: ConnectionLimits::default(),
            objects: Arc::new(objects()),
            rule_config: None,
            no_op: false,
        }
    }
}

/// The real server, on loopback with ephemeral ports, serving certificate files.
pub struct TestServer {
    pub running: Option<Running>,
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub cert: CertHandle,
    pub pki: Pki,
    pub certs: CertDir,
}

impl TestServer {
    pub async fn start(options: Options) -> Self {
        let pki = Pki::new();
        let (cert_pem, key_pem) = pki.leaf("serving-0");
        let certs = CertDir::new(&cert_pem, &key_pem);
        let cert_options = certs::Options { poll_interval: Duration::from_millis(50), ..certs::Options::default() };
        let cert =
            certs::start_with(Source::Files { cert: certs.cert(), key: certs.key() }, cert_options).await.unwrap();
        let Options { limits, connections, objects, rule_config, no_op } = options;
        let settings = Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits,
            connections,
            rule_config,
            rule_config_poll: Duration::from_millis(50),
            no_op,
        };
        let running = server::start(settings, Some(cert.clone()), objects).await.unwrap();
        let webhook = running.webhook_addr.unwrap();
        let admin = running.admin_addr;
        Self { running: Some(running), webhook, admin, cert, pki, certs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.webhook)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// A keep-alive HTTPS client that trusts only the test CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).unwrap())
            .http1_only()
            .tls_info(true)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    /// POSTs `body` to `path`; the status and the JSON (or text) answer.
    pub async fn post(&self, client: &reqwest::Client, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e:?}"));
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    /// POSTs a review to `path` and returns `response` after checking the HTTP status and the uid.
    pub async fn review(&self, client: &reqwest::Client, path: &str, review: &Value) -> Value {
        let (status, answer) = self.post(client, path, serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], review["request"]["uid"], "uid echo");
        answer["response"].clone()
    }

    /// `/healthz` on the admin port.
    pub async fn healthz(&self) -> u16 {
        reqwest::get(self.admin_url("/healthz")).await.unwrap().status().as_u16()
    }

    /// Health and one ordinary review both work.
    pub async fn assert_healthy(&self) {
        assert_eq!(self.healthz().await, 200);
        let client = self.client();
        let response = self.review(&client, "/validate", &deny_review("healthy")).await;
        assert_eq!(response["allowed"], false);
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::ZERO, Duration::from_secs(5)).await;
        }
    }
}

/// The objects tests look up (non-authoritative, as offline `check` input): the provisioner key
/// of the mutate example and its Secret.
pub fn objects() -> Index {
    let mut index = Index::new(false);
    let text = std::fs::read_to_string(repo().join("examples/admission/objects.yaml")).unwrap();
    let (docs, error) = coder_guard::yaml::parse_documents(&text);
    assert!(error.is_none());
    for doc in docs {
        index.insert(&doc.value, "default");
    }
    index
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An example review from `examples/admission/`, with a fresh uid.
pub fn example(name: &str, uid: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("examples/admission").join(name)).unwrap();
    let mut review: Value = serde_json::from_str(&text).unwrap();
    review["request"]["uid"] = json!(uid);
    review
}

/// A CoderProvisioner review that is denied (reserved key name, tags with a key).
pub fn deny_review(uid: &str) -> Value {
    example("deny-provisioner.json", uid)
}

/// A Deployment review that is allowed without findings.
pub fn allow_review(uid: &str) -> Value {
    example("allow-provisioner-deployment.json", uid)
}

/// A Deployment review the mutating hook patches (env injection and checksum).
pub fn mutate_review(uid: &str) -> Value {
    example("mutate-provisioner-deployment.json", uid)
}

/// A CoderProvisioner review allowed with a warning (its control plane cannot be verified).
pub fn warn_review(uid: &str) -> Value {
    let mut review = deny_review(uid);
    let spec = &mut review["request"]["object"]["spec"];
    spec["key"]["name"] = json!("gpu-builds");
    spec["extraEnv"] = json!([]);
    review
}
