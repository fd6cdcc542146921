//! Serving-certificate reload seen through real TLS handshakes on 127.0.0.1: the server uses
//! `CertHandle::resolver()`, the client trusts only the test CA (or the published bundle).
//! Covers in-place rewrites, the kubelet's `..data` symlink swap, bad pairs, full chains, a
//! burst of swaps under load, self-signed CA rotation, and `certs generate` output.
//! Every wait and loop is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coder_guard::certs::{self, CertError, CertHandle, GenerateArgs, Options, Source};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "coder-guard.coder-guard.svc";
const WAIT: Duration = Duration::from_secs(10);

fn fast() -> Options {
    Options { poll_interval: Duration::from_millis(25), ..Options::default() }
}

// === test PKI (built here with rcgen, independent of the code under test) ===

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A leaf: chain PEM (leaf first), key PEM, leaf DER.
struct Leaf {
    chain: String,
    key: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        Self::signed(name, None)
    }

    fn signed(name: &str, parent: Option<&TestCa>) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = match parent {
            None => params.self_signed(&key).unwrap(),
            Some(p) => params.signed_by(&key, &p.issuer).unwrap(),
        };
        Self { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![NAME.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { chain: cert.pem(), key: key.serialize_pem(), der: cert.der().clone() }
    }
}

// === TLS server and client ===

/// Accepts on 127.0.0.1 until dropped; each connection handshakes and writes one byte.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(handle: &CertHandle) -> Server {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(handle.resolver());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let accept = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp));
                if let Ok(Ok(mut tls)) = accept.await {
                    let _ = tls.write_all(b"k").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Server { addr, task }
}

/// Handshakes trusting only `roots`; returns the chain the server presented.
async fn handshake(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = connector.connect(ServerName::try_from(NAME).unwrap(), tcp).await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok(tls.get_ref().1.peer_certificates().unwrap_or_default().to_vec())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt).await.map_err(|_| "handshake timed out".to_owned())?
}

async fn served_leaf(addr: SocketAddr, ca: &TestCa) -> CertificateDer<'static> {
    handshake(addr, std::slice::from_ref(&ca.der)).await.expect("handshake")[0].clone()
}

/// Waits (bounded) until the handle serves `want`.
async fn wait_for_leaf(handle: &CertHandle, want: &CertificateDer<'_>) {
    let mut changes = handle.watch_certificate();
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.leaf() != *want {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let changed = tokio::time::timeout(left, changes.changed()).await;
        assert!(matches!(changed, Ok(Ok(()))), "new certificate not served within {WAIT:?}");
    }
}

/// Waits (bounded) until `cond` holds, polling.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// === a Secret volume as the kubelet lays it out ===

/// `tls.crt -> ..data/tls.crt`, `..data -> ..2026_11_22_NN`; updates swap `..data` atomically
/// and delete the old directory, as the kubelet's atomic writer does.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: u32,
}

impl SecretVolume {
    fn new(leaf: &Leaf) -> Self {
        let mut volume = Self { dir: tempfile::tempdir().unwrap(), generation: 0 };
        volume.write(&leaf.chain, &leaf.key);
        for f in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), volume.dir.path().join(f)).unwrap();
        }
        volume
    }

    fn source(&self) -> Source {
        Source::Files { cert: self.dir.path().join("tls.crt"), key: self.dir.path().join("tls.key") }
    }

    fn data_dir(&self, generation: u32) -> PathBuf {
        self.dir.path().join(format!("..2026_11_22_07_50_{generation:02}.000000001"))
    }

    /// Writes a new timestamped directory and swaps `..data` onto it.
    fn write(&mut self, chain: &str, key: &str) {
        let old = self.data_dir(self.generation);
        self.generation += 1;
        let new = self.data_dir(self.generation);
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("tls.crt"), chain).unwrap();
        std::fs::write(new.join("tls.key"), key).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(new.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        if self.generation > 1 {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

// === files mode ===

#[tokio::test]
async fn an_in_place_rewrite_is_served_without_restart() {
    let ca = TestCa::new("test CA");
    let (a, b) = (ca.leaf(), ca.leaf());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &a.chain).unwrap();
    std::fs::write(&key, &a.key).unwrap();
    let handle = certs::start_with(Source::Files { cert: cert.clone(), key: key.clone() }, fast()).await.unwrap();
    let server = serve(&handle).await;
    assert_eq!(served_leaf(server.addr, &ca).await, a.der);
    assert_eq!(handle.ca_bundle(), None);

    std::fs::write(&cert, &b.chain).unwrap();
    std::fs::write(&key, &b.key).unwrap();
    wait_for_leaf(&handle, &b.der).await;
    assert_eq!(served_leaf(server.addr, &ca).await, b.der);
    assert!(handle.reloads() >= 1);
}

#[tokio::test]
async fn a_kubelet_symlink_swap_is_served_without_restart() {
    let ca = TestCa::new("test CA");
    let (a, b) = (ca.leaf(), ca.leaf());
    let mut volume = SecretVolume::new(&a);
    let handle = certs::start_with(volume.source(), fast()).await.unwrap();
    let server = serve(&handle).await;
    assert_eq!(served_leaf(server.addr, &ca).await, a.der);
    let before = handle.not_after();

    volume.write(&b.chain, &b.key);
    wait_for_leaf(&handle, &b.der).await;
    assert_eq!(served_leaf(server.addr, &ca).await, b.der);
    assert_eq!((handle.reloads(), handle.reload_errors()), (1, 0));
    assert!(handle.not_after() >= before);
}

#[tokio::test]
async fn a_bad_pair_keeps_the_old_certificate_serving() {
    let ca = TestCa::new("test CA");
    let (a, b, c) = (ca.leaf(), ca.leaf(), ca.leaf());
    let mut volume = SecretVolume::new(&a);
    let handle = certs::start_with(volume.source(), fast()).await.unwrap();
    let server = serve(&handle).await;

    // Key from another pair, then an unparsable certificate.
    let bad: [(&str, &str); 2] = [(&b.chain, &a.key), ("-----BEGIN CERTIFICATE-----\nnot base64!\n", &b.key)];
    for (i, (chain, key)) in bad.into_iter().enumerate() {
        volume.write(chain, key);
        wait_until("the bad pair to be counted", || handle.reload_errors() > i as u64).await;
        assert_eq!(served_leaf(server.addr, &ca).await, a.der, "old certificate still served");
        assert_eq!(handle.reloads(), 0);
    }
    // Fixed on the next update.
    volume.write(&c.chain, &c.key);
    wait_for_leaf(&handle, &c.der).await;
    assert_eq!(served_leaf(server.addr, &ca).await, c.der);
    assert_eq!((handle.reloads(), handle.reload_errors()), (1, 2));
}

#[tokio::test]
async fn a_full_chain_is_served() {
    let root = TestCa::new("test root");
    let intermediate = TestCa::signed("test intermediate", Some(&root));
    let leaf = intermediate.leaf();
    let chain = format!("{}{}", leaf.chain, intermediate.pem);
    let volume = SecretVolume::new(&Leaf { chain, key: leaf.key, der: leaf.der.clone() });
    let handle = certs::start_with(volume.source(), fast()).await.unwrap();
    let server = serve(&handle).await;
    // The client trusts only the root: the handshake works only if the intermediate is sent.
    let presented = handshake(server.addr, std::slice::from_ref(&root.der)).await.unwrap();
    assert_eq!(presented, vec![leaf.der, intermediate.der.clone()]);
}

#[tokio::test]
async fn twenty_swaps_while_clients_keep_handshaking() {
    const SWAPS: u32 = 20;
    const MAX_HANDSHAKES: u32 = 5_000;
    let started = Instant::now();
    let ca = Arc::new(TestCa::new("test CA"));
    let mut volume = SecretVolume::new(&ca.leaf());
    let handle = certs::start_with(volume.source(), fast()).await.unwrap();
    let server = serve(&handle).await;

    let stop = Arc::new(AtomicBool::new(false));
    let client = tokio::spawn({
        let (stop, ca, addr) = (stop.clone(), ca.clone(), server.addr);
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst)
                && ok + (failed.len() as u32) < MAX_HANDSHAKES
                && Instant::now() < deadline
            {
                match handshake(addr, std::slice::from_ref(&ca.der)).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }
    });

    let mut last = None;
    for i in 1..=SWAPS {
        let leaf = ca.leaf();
        volume.write(&leaf.chain, &leaf.key);
        wait_for_leaf(&handle, &leaf.der).await;
        assert_eq!(handle.reloads(), u64::from(i));
        last = Some(leaf);
    }
    let last = last.unwrap();
    // Let the client run against the final certificate too.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = client.await.unwrap();
    assert!(failed.is_empty(), "{} of {} handshakes failed: {:?}", failed.len(), ok as usize + failed.len(), failed);
    assert!(ok >= SWAPS, "only {ok} handshakes ran");
    assert_eq!(served_leaf(server.addr, &ca).await, last.der);
    assert_eq!((handle.reloads(), handle.reload_errors()), (u64::from(SWAPS), 0));
    eprintln!("twenty swaps: {ok} handshakes, all succeeded, in {:?}", started.elapsed());
}

// === self-signed ===

fn bundle_der(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().unwrap()
}

/// A 9-second CA, 3-second leaves renewed with 1 s left, 1 s publish grace: the CA rotates at
/// ~6 s, signs from ~7 s, and the old one leaves the bundle at ~9 s. A client trusting the
/// current bundle, and one trusting the bundle of the previous iteration (a lagging caBundle),
/// verify the server at every step.
#[tokio::test]
async fn self_signed_rotation_keeps_clients_verifying() {
    let options = Options {
        poll_interval: Duration::from_millis(100),
        ca_validity: Duration::from_secs(9),
        ca_publish_grace: Duration::from_secs(1),
    };
    let source = Source::SelfSigned {
        dns_names: certs::service_dns_names("coder-guard", "coder-guard"),
        validity: Duration::from_secs(3),
        renew_before: Duration::from_secs(1),
    };
    let handle = certs::start_with(source, options).await.unwrap();
    let server = serve(&handle).await;
    let bundle_changes = handle.watch_ca_bundle();
    let first = bundle_der(&handle.ca_bundle().unwrap());
    assert_eq!(first.len(), 1);
    let original_ca = first[0].clone();

    let (mut saw_overlap, mut saw_new_ca_signing, mut saw_old_pruned) = (false, false, false);
    let mut lagged = first;
    let mut leaves = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut steps = 0;
    while !(saw_overlap && saw_new_ca_signing && saw_old_pruned) {
        assert!(
            Instant::now() < deadline,
            "rotation not observed (overlap {saw_overlap}, new CA signing {saw_new_ca_signing}, pruned {saw_old_pruned})"
        );
        let bundle = bundle_der(&handle.ca_bundle().unwrap());
        let presented = handshake(server.addr, &bundle).await.unwrap_or_else(|e| panic!("step {steps}: {e}"));
        handshake(server.addr, &lagged).await.unwrap_or_else(|e| panic!("step {steps}, lagging bundle: {e}"));
        leaves.insert(presented[0].clone());
        if bundle.len() == 2 && bundle.contains(&original_ca) {
            saw_overlap = true;
            let new_ca = bundle.iter().find(|c| **c != original_ca).unwrap();
            if handshake(server.addr, std::slice::from_ref(new_ca)).await.is_ok() {
                saw_new_ca_signing = true;
            }
        }
        if saw_overlap && !bundle.contains(&original_ca) {
            saw_old_pruned = true;
            assert_eq!(bundle.len(), 1);
        }
        lagged = bundle;
        steps += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leaves.len() >= 3, "leaves renewed: {}", leaves.len());
    assert!(handle.reloads() >= 3);
    assert_eq!(handle.reload_errors(), 0);
    assert!(bundle_changes.has_changed().unwrap(), "bundle watchers were told");
}

// === certs generate ===

#[tokio::test]
async fn generated_files_serve_and_verify_for_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let args = GenerateArgs {
        service: "coder-guard".into(),
        namespace: "coder-guard".into(),
        out: out.clone(),
        validity_days: 30,
        force: false,
    };
    certs::generate(args.clone()).unwrap();
    let source = Source::Files { cert: out.join("tls.crt"), key: out.join("tls.key") };
    let handle = certs::start_with(source, fast()).await.unwrap();
    let server = serve(&handle).await;
    let ca = CertificateDer::from_pem_file(out.join("ca.crt")).unwrap();
    let presented = handshake(server.addr, &[ca]).await.unwrap();
    assert_eq!(presented.len(), 2, "tls.crt carries the CA after the leaf");

    let before = std::fs::read(out.join("tls.key")).unwrap();
    let err = certs::generate(args).unwrap_err();
    assert!(matches!(&err, CertError::Exists { paths } if paths.len() == 3), "{err:?}");
    assert_eq!(std::fs::read(out.join("tls.key")).unwrap(), before);
    assert!(Path::new(&out).join("ca.crt").exists());
}
