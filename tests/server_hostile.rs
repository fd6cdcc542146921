//! Malformed and hostile input against the real HTTPS server: each gets the right status and
//! leaves the server healthy.

mod server_support;

use std::time::{Duration, Instant};

use coder_guard::server::ConnectionLimits;
use serde_json::{Value, json};
use server_support::{Options, TestServer, deny_review};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// POSTs raw bytes to /validate and checks a 400 `Status` whose message contains `says`.
async fn bad_request(server: &TestServer, body: Vec<u8>, says: &str) {
    let client = server.client();
    let (status, answer) = server.post(&client, "/validate", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!((answer["kind"].as_str(), answer["code"].as_u64()), (Some("Status"), Some(400)), "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains(says), "{message:?} should contain {says:?}");
    server.assert_healthy().await;
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[tokio::test]
async fn bodies_that_are_not_reviews_get_400() {
    let server = TestServer::start(Options::default()).await;
    let full = bytes(&deny_review("bad-1"));
    bad_request(&server, full[..full.len() / 2].to_vec(), "not valid JSON").await;
    bad_request(&server, Vec::new(), "empty").await;

    let mut review = deny_review("bad-2");
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    bad_request(&server, bytes(&review), "admissionReviewVersions").await;

    let mut review = deny_review("bad-3");
    review["kind"] = json!("ConversionReview");
    bad_request(&server, bytes(&review), "expected \"AdmissionReview\"").await;

    let mut review = deny_review("bad-4");
    review["request"].as_object_mut().unwrap().remove("uid");
    bad_request(&server, bytes(&review), "request.uid is missing").await;

    let mut body = bytes(&deny_review("bad-5"));
    let at = body.windows(6).position(|w| w == b"builds").unwrap();
    body[at] = 0xff;
    bad_request(&server, body, "not UTF-8").await;
    server.shutdown().await;
}

#[tokio::test]
async fn ten_thousand_levels_of_nesting_get_400() {
    let server = TestServer::start(Options::default()).await;
    let nested = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let text = serde_json::to_string(&deny_review("deep-1")).unwrap().replacen(
        "\"metadata\"",
        &format!("\"x\":{nested},\"metadata\""),
        1,
    );
    bad_request(&server, text.into_bytes(), "nests deeper").await;
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    bad_request(&server, arrays.into_bytes(), "nests deeper").await;
    server.shutdown().await;
}

#[tokio::test]
async fn eight_mib_gets_413() {
    let server = TestServer::start(Options::default()).await;
    let client = server.client();
    // A valid review padded past the limit with a large annotation.
    let mut review = deny_review("big-1");
    review["request"]["object"]["metadata"]["annotations"] = json!({"pad": "x".repeat(8 * 1024 * 1024)});
    let (status, answer) = server.post(&client, "/validate", bytes(&review)).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["reason"], "RequestEntityTooLarge");
    server.assert_healthy().await;

    // Just under the limit is still a review (allowed or not, HTTP 200).
    review["request"]["uid"] = json!("big-2");
    review["request"]["object"]["metadata"]["annotations"] = json!({"pad": "x".repeat(6 * 1024 * 1024)});
    let response = server.review(&client, "/validate", &review).await;
    assert_eq!(response["allowed"], false);
    server.shutdown().await;
}

/// One ordinary review must be answered quickly while a slow client holds a connection.
async fn others_unaffected(server: &TestServer) {
    let client = server.client();
    for n in 0..3 {
        let started = Instant::now();
        let response = server.review(&client, "/validate", &deny_review(&format!("other-{n}"))).await;
        assert_eq!(response["allowed"], false);
        assert!(started.elapsed() < Duration::from_secs(1), "a normal review took {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether the server closed the connection within `within` (EOF or reset on read).
async fn closed_within<S: AsyncReadExt + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slow_loris_in_the_handshake_is_cut_off() {
    let limits = ConnectionLimits { handshake_timeout: Duration::from_secs(1), header_timeout: Duration::from_secs(2) };
    let server = TestServer::start(Options { connections: limits, ..Options::default() }).await;
    // The ClientHello a real client would send, dribbled out a byte a second.
    let mut hello = Vec::new();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = rustls::ClientConnection::new(server.pki.client_config(), name).unwrap();
    tls.write_tls(&mut hello).unwrap();
    let mut stream = TcpStream::connect(server.webhook).await.unwrap();
    let started = Instant::now();
    let slow = async {
        for byte in hello.iter().take(10) {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::join!(slow, others_unaffected(&server));
    assert!(closed_within(&mut stream, Duration::from_secs(2)).await, "the slow handshake was not cut off");
    assert!(started.elapsed() < Duration::from_secs(12));
    server.assert_healthy().await;
    server.shutdown().await;
}

#[tokio::test]
async fn slow_loris_in_the_headers_is_cut_off() {
    let limits = ConnectionLimits { handshake_timeout: Duration::from_secs(1), header_timeout: Duration::from_secs(2) };
    let server = TestServer::start(Options { connections: limits, ..Options::default() }).await;
    let connector = tokio_rustls::TlsConnector::from(server.pki.client_config());
    let tcp = TcpStream::connect(server.webhook).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let started = Instant::now();
    let request = b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    let mut cut_off = false;
    let slow = async {
        for byte in request.iter().take(8) {
            if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
                cut_off = true;
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::join!(slow, others_unaffected(&server));
    let closed = cut_off || closed_within(&mut tls, Duration::from_secs(2)).await;
    assert!(closed, "the slow request headers were not cut off");
    assert!(started.elapsed() < Duration::from_secs(12));
    server.assert_healthy().await;
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let server = TestServer::start(Options::default()).await;
    let client = server.client();
    let response = client.post(server.url("/nope")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 404);
    let response = client.get(server.url("/validate")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    server.assert_healthy().await;
    server.shutdown().await;
}
