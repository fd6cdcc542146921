//! Fault injection: injected errors, resets, lost responses, rate limits, latency, restarts.

use super::*;

#[tokio::test]
async fn injected_errors_change_nothing_and_healthz_can_be_exempt() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    fake.set_faults(Faults { error_rate: 1.0, exempt_healthz: true, ..Faults::default() });
    let reply = api.post("/api/v2/organizations", json!({"name": "team"})).await;
    reply.expect(500, "An internal server error occurred.");
    assert_eq!(reply.json()["detail"], "injected fault");
    assert_eq!(fake.organizations().len(), 1);
    assert!(fake.writes().is_empty());
    assert_eq!(api.get("/healthz").await.status, 200);
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].status, log[0].body.clone()), (500, Some(json!({"name": "team"}))));

    fake.set_faults(Faults { error_rate: 1.0, ..Faults::default() });
    assert_eq!(api.get("/healthz").await.status, 500);
    fake.set_faults(Faults::default());
    fake.clear_log();
    assert_eq!(api.post("/api/v2/organizations", json!({"name": "team"})).await.status, 201);
    assert_eq!(fake.writes().len(), 1);
}

/// Sends one raw HTTP/1.1 request and returns everything the server wrote before closing.
async fn raw_exchange(fake: &FakeCoderd, request: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(fake.url().trim_start_matches("http://")).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.expect("no hang");
    buffer.truncate(read.unwrap_or(0));
    (stream, buffer)
}

#[tokio::test]
async fn resets_close_without_a_response() {
    let fake = fake(Edition::Premium, false);
    fake.set_faults(Faults { reset_rate: 1.0, ..Faults::default() });
    let request = format!("GET /api/v2/users/me HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {}\r\n\r\n", fake.token());
    let (_, written) = raw_exchange(&fake, &request).await;
    assert!(written.is_empty(), "got {:?}", String::from_utf8_lossy(&written));
    assert!(Api::new(&fake).try_send("GET", "/api/v2/users/me", None).await.is_err());
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|l| l.status == 0 && l.path == "/api/v2/users/me"));
    fake.set_faults(Faults::default());
    assert_eq!(Api::new(&fake).get("/api/v2/users/me").await.status, 200);
}

#[tokio::test]
async fn lost_responses_still_apply_writes() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    fake.set_faults(Faults { lost_response_rate: 1.0, ..Faults::default() });
    assert!(api.try_send("POST", "/api/v2/organizations", Some(json!({"name": "team"}))).await.is_err());
    assert!(fake.organizations().iter().any(|o| o["name"] == "team"), "the write was applied");
    let writes = fake.writes();
    assert_eq!((writes.len(), writes[0].status, writes[0].path.as_str()), (1, 0, "/api/v2/organizations"));
    assert_eq!(api.get("/api/v2/organizations/team").await.status, 200, "reads are not affected");
}

#[tokio::test]
async fn rate_limit_answers_exactly_n_429s() {
    let fake = fake(Edition::Premium, false);
    let api = Api::new(&fake);
    fake.rate_limit(3, 7);
    for _ in 0..3 {
        let reply = api.get("/api/v2/users/me?x=1").await;
        assert_eq!(reply.status, 429);
        assert!(reply.message().starts_with("You've been rate limited"));
        assert_eq!(reply.headers["retry-after"], "7");
    }
    assert_eq!(api.get("/api/v2/users/me").await.status, 200);
    let log = fake.requests();
    assert_eq!((log[0].query.as_str(), log[0].path.as_str()), ("x=1", "/api/v2/users/me"));
    assert_eq!(log.iter().map(|l| l.status).collect::<Vec<_>>(), [429, 429, 429, 200]);
}

#[tokio::test]
async fn an_owner_bypasses_the_rate_limit_and_anyone_else_is_answered_428() {
    let bypass = |api: &Api, path: &str| {
        let request = api.client.get(format!("{}{path}", api.base)).header("X-Coder-Bypass-Ratelimit", "true");
        let token = api.token.clone().unwrap();
        async move { request.header("Coder-Session-Token", token).send().await.unwrap().status().as_u16() }
    };
    let owner = fake(Edition::Premium, false);
    let api = Api::new(&owner);
    owner.rate_limit(2, 1);
    assert_eq!(bypass(&api, "/api/v2/users/me").await, 200, "an owner's bypass skips the limit");
    assert_eq!(api.get("/api/v2/users/me").await.status, 429, "without the header the limit applies");

    let member = FakeCoderd::start(FakeOptions { owner: false, ..FakeOptions::default() });
    let api = Api::new(&member);
    assert_eq!(bypass(&api, "/api/v2/users/me").await, 428);
    assert_eq!(api.get("/api/v2/users/me").await.status, 200);
    let log = member.requests();
    assert_eq!(log.iter().map(|l| (l.status, l.bypass_ratelimit)).collect::<Vec<_>>(), [(428, true), (200, false)]);
}

#[tokio::test]
async fn latency_is_added_and_faults_are_deterministic_per_seed() {
    let slow = fake(Edition::Premium, false);
    slow.set_faults(Faults { latency: Duration::from_millis(150), ..Faults::default() });
    let started = Instant::now();
    assert_eq!(Api::new(&slow).get("/healthz").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    async fn statuses(seed: u64) -> Vec<u16> {
        let fake = FakeCoderd::start(FakeOptions { seed, ..FakeOptions::default() });
        fake.set_faults(Faults { error_rate: 0.5, ..Faults::default() });
        let api = Api::new(&fake);
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(api.get("/api/v2/users/me").await.status);
        }
        out
    }
    let first = statuses(7).await;
    assert!(first.contains(&500) && first.contains(&200), "{first:?}");
    assert_eq!(statuses(7).await, first);
    assert_ne!(statuses(8).await, first);
}

#[tokio::test]
async fn restart_closes_connections_and_can_wipe_state() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    let url = fake.url();
    assert_eq!(api.post("/api/v2/organizations", json!({"name": "team"})).await.status, 201);
    let request = format!("GET /api/v2/users/me HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {}\r\n\r\n", fake.token());
    let (mut stream, first) = raw_exchange(&fake, &request).await;
    assert!(first.starts_with(b"HTTP/1.1 200"));

    fake.restart(false);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await.expect("closed");
    assert!(closed.is_err() || rest.is_empty(), "the kept-alive connection is closed");
    assert_eq!(fake.url(), url);
    assert_eq!(Api::new(&fake).get("/api/v2/organizations/team").await.status, 200, "state survives");

    fake.restart(true);
    assert_eq!(fake.url(), url);
    let fresh = Api::new(&fake);
    let missing = "Resource not found or you do not have access to this resource";
    fresh.get("/api/v2/organizations/team").await.expect(404, missing);
    assert_eq!(fake.organizations().len(), 1);
    assert_eq!(fake.licenses().len(), 1, "the licensed option is re-applied");
    assert_eq!(fresh.get("/api/v2/entitlements").await.json()["has_license"], true);

    let uploaded = enterprise_with_uploaded_state().await;
    uploaded.restart(true);
    assert!(uploaded.licenses().is_empty(), "uploaded licenses are lost");
    assert!(uploaded.ai_providers().is_empty());
}

async fn enterprise_with_uploaded_state() -> FakeCoderd {
    let fake = fake(Edition::Enterprise, false);
    let api = Api::new(&fake);
    let jwt = FakeCoderd::license_jwt(JTI, &ALL);
    assert_eq!(api.post("/api/v2/licenses", json!({"license": jwt})).await.status, 201);
    let body =
        json!({"type": "anthropic", "name": "claude", "base_url": "https://api.anthropic.com/", "api_keys": ["k"]});
    assert_eq!(api.post("/api/v2/ai/providers", body).await.status, 201);
    fake
}
