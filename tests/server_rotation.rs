//! Certificate rotation under load: the kubelet's `..data` symlink swap, 20 times, while four
//! clients send reviews (two on keep-alive connections, two opening a connection per request
//! so handshakes run during the swaps). Zero requests may fail, and afterwards new connections
//! get the last certificate.

mod server_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use server_support::{Options, TestServer, deny_review};

const SWAPS: usize = 20;
const MAX_REQUESTS_PER_CLIENT: usize = 2_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_swaps_under_load_fail_no_request() {
    let server = Arc::new(TestServer::start(Options::default()).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));

    let mut load = Vec::new();
    for n in 0..4 {
        let (server, stop, ok, failed) = (server.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let keep_alive = n % 2 == 0;
            let mut client = server.client();
            let started = Instant::now();
            for i in 0..MAX_REQUESTS_PER_CLIENT {
                if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_LOAD_TIME {
                    break;
                }
                if !keep_alive {
                    client = server.client();
                }
                let body = serde_json::to_vec(&deny_review(&format!("rot-{n}-{i}"))).unwrap();
                let sent = client.post(server.url("/validate")).body(body).send().await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        let answer: serde_json::Value = r.json().await.unwrap();
                        assert_eq!(answer["response"]["uid"], format!("rot-{n}-{i}"));
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => {
                        eprintln!("client {n} request {i}: HTTP {}", r.status());
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        eprintln!("client {n} request {i}: {e:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }

    let mut last = String::new();
    for swap in 1..=SWAPS {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (cert, key) = server.pki.leaf(&format!("serving-{swap}"));
        server.certs.swap(&cert, &key);
        last = cert;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }

    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!(
        "requests: {ok} ok, {failed} failed; certificate reloads {}, reload errors {}",
        server.cert.reloads(),
        server.cert.reload_errors()
    );
    assert_eq!(failed, 0, "requests failed during rotation");
    assert!(ok >= 100, "the load was too light to mean anything: {ok} requests");
    assert!(server.cert.reloads() >= 1);

    // A new connection is served the last certificate.
    let want = CertificateDer::from_pem_slice(last.as_bytes()).unwrap();
    let mut served = None;
    for _ in 0..50 {
        let response = server
            .client()
            .post(server.url("/validate"))
            .body(serde_json::to_vec(&deny_review("after")).unwrap())
            .send()
            .await
            .unwrap();
        let info = response.extensions().get::<reqwest::tls::TlsInfo>().cloned();
        served = info.and_then(|i| i.peer_certificate().map(<[u8]>::to_vec));
        if served.as_deref() == Some(want.as_ref()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some(want.as_ref()), "the last certificate is not being served");
    assert_eq!(server.cert.leaf().as_ref(), want.as_ref());
}
