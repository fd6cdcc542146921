//! SIGTERM to the real binary (`serve --dev`) under bounded load: readiness turns 503 at once,
//! requests keep succeeding during `--shutdown-delay`, then the listener closes, a request in
//! flight is still answered, and the process exits 0. Zero requests may fail.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DELAY: Duration = Duration::from_secs(2);
const MAX_REQUESTS_PER_CLIENT: usize = 5_000;

/// The started binary and what its banner says.
struct Served {
    child: Child,
    webhook: SocketAddr,
    admin: SocketAddr,
    ca_pem: Vec<u8>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Served {
    let repo = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coder-guard"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--shutdown-delay", "2s", "--drain-timeout", "5s", "--dev-objects"])
        .arg(format!("{repo}/examples/admission/objects.yaml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut webhook, mut admin, mut ca) = (None, None, None);
    for line in stdout.by_ref().take(20) {
        let line = line.unwrap();
        let word = |n: usize| line.split_whitespace().nth(n).unwrap_or_default().to_owned();
        if line.starts_with("webhook:") {
            webhook = Some(word(1).trim_start_matches("https://").trim_end_matches("/validate").parse().unwrap());
        } else if line.starts_with("admin:") {
            admin = Some(word(1).trim_start_matches("http://").trim_end_matches("/healthz,").parse().unwrap());
        } else if line.starts_with("CA file:") {
            ca = Some(word(2));
        } else if line.starts_with("try:") {
            break;
        }
    }
    // Keep reading, so the server never writes into a closed pipe.
    std::thread::spawn(move || stdout.for_each(drop));
    let ca_pem = std::fs::read(ca.expect("the banner names the CA file")).unwrap();
    Served { child, webhook: webhook.expect("webhook address"), admin: admin.expect("admin address"), ca_pem }
}

fn review(uid: &str) -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/admission/deny-provisioner.json"));
    let mut review: Value = serde_json::from_str(&text.unwrap()).unwrap();
    review["request"]["uid"] = json!(uid);
    review
}

async fn readyz(admin: SocketAddr) -> Option<u16> {
    let response = reqwest::Client::new().get(format!("http://{admin}/readyz")).send().await.ok()?;
    Some(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drops_nothing_and_exits_zero() {
    let mut served = start();
    let (webhook, admin) = (served.webhook, served.admin);
    for _ in 0..100 {
        if readyz(admin).await == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readyz(admin).await, Some(200));

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&served.ca_pem).unwrap())
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Bounded load: four clients until told to stop (or a count, or a time limit).
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for n in 0..4 {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let started = Instant::now();
            for i in 0..MAX_REQUESTS_PER_CLIENT {
                if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(20) {
                    break;
                }
                let uid = format!("term-{n}-{i}");
                let sent = client.post(format!("https://{webhook}/validate")).json(&review(&uid)).send().await;
                let answered = match sent {
                    Ok(r) if r.status() == 200 => r.json::<Value>().await.map_err(|e| format!("{e:?}")),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(format!("{e:?}")),
                };
                match answered {
                    Ok(a) if a["response"]["uid"] == uid.as_str() => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        eprintln!("client {n} request {i}: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }

    // A request in flight across the end of the delay: headers and half the body now.
    let body = serde_json::to_vec(&review("in-flight")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&served.ca_pem).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(webhook).await.unwrap_or_else(|e| panic!("connect {webhook}: {e}"));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut slow = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS to {webhook}: {e}"));
    let head = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..body.len() / 2]).await.unwrap();
    slow.flush().await.unwrap();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let term_at = Instant::now();
    let status = Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    assert!(status.success());

    // Not ready at once, while still serving.
    let mut went_unready = false;
    for _ in 0..20 {
        if readyz(admin).await == Some(503) {
            went_unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(went_unready, "/readyz did not turn 503 after SIGTERM");
    assert!(term_at.elapsed() < DELAY / 2, "readiness took too long to turn");

    // Keep the load on for half the delay, then stop it.
    tokio::time::sleep((DELAY / 2).saturating_sub(term_at.elapsed())).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let ok_during = ok.load(Ordering::SeqCst);

    // After the delay the listener is closed…
    tokio::time::sleep((DELAY + Duration::from_millis(400)).saturating_sub(term_at.elapsed())).await;
    assert!(tokio::net::TcpStream::connect(webhook).await.is_err(), "still accepting after the shutdown delay");

    // …but the request in flight is finished and answered.
    slow.write_all(&body[body.len() / 2..]).await.unwrap();
    slow.flush().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await.unwrap().ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"uid\":\"in-flight\""), "{answer}");

    // And the process exits 0.
    let started = Instant::now();
    let code = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the process did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code.code(), Some(0), "exit status {code:?}");
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("requests: {ok} ok ({ok_during} by the end of the load), {failed} failed");
    assert_eq!(failed, 0, "requests failed during shutdown");
    assert!(ok >= 20, "the load was too light to mean anything: {ok}");
}
