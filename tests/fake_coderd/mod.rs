//! A fake coderd for integration tests, written from `../shared/reference/coderd-api.md`.
//!
//! It serves plain HTTP/1.1 with keep-alive from its own runtime thread, keeps an in-memory
//! database, logs every request and injects faults (latency, 429 bursts, resets, 500s, lost
//! responses) from a seeded PRNG so runs are reproducible.

#![allow(dead_code)]

mod routes;
mod routes_ai;
mod routes_keys;
mod routes_misc;
mod routes_orgs;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use routes::{Body, Req, Resp, Server};

/// The version the fake reports in `X-Coder-Build-Version` and `/buildinfo`.
pub const BUILD_VERSION: &str = "v2.34.0-fake";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edition {
    /// Enterprise binary; every feature is entitled once a valid license exists.
    Premium,
    /// Enterprise binary; premium gates answer 403 until a license is uploaded (same behaviour as
    /// `Premium`, the name documents intent).
    Enterprise,
    /// OSS build: enterprise routes are not registered.
    Agpl,
}

#[derive(Clone, Debug)]
pub struct FakeOptions {
    pub edition: Edition,
    pub token: String,
    /// Seed a valid all-features license (enterprise editions only), again after a state-losing restart.
    pub licensed: bool,
    /// `CODER_AI_GATEWAY_ENABLED`: the `aibridge` feature is enabled only if entitled and this is set.
    pub ai_gateway_enabled: bool,
    /// The token's user is an owner: it may send `X-Coder-Bypass-Ratelimit: true` (and then
    /// skips the rate limit); anyone else sending it is answered 428.
    pub owner: bool,
    pub seed: u64,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            edition: Edition::Premium,
            token: "0123456789-abcdefghijklmnopqrstuv".into(),
            licensed: false,
            ai_gateway_enabled: true,
            owner: true,
            seed: 1,
        }
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub query: String,
    /// 0 when the connection was closed without a response.
    pub status: u16,
    /// The request body, if it parsed as JSON.
    pub body: Option<Value>,
    /// Whether it carried `X-Coder-Bypass-Ratelimit: true`.
    pub bypass_ratelimit: bool,
}

impl Logged {
    pub fn is_write(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }
}

#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Fraction of requests answered 500 before the handler runs.
    pub error_rate: f64,
    /// Fraction of requests whose connection is closed without a response, before the handler runs.
    pub reset_rate: f64,
    /// Fraction of writes that are applied, then the connection is closed without a response.
    pub lost_response_rate: f64,
    /// Added before every request.
    pub latency: Duration,
    /// Faults (and rate limiting) skip `GET /healthz`.
    pub exempt_healthz: bool,
}

struct Entry {
    logged: Logged,
    /// Whether the handler ran (pre-handler faults do not count as writes).
    handled: bool,
}

/// xorshift64*: tiny, seeded, good enough for fault rolls.
struct Rng(u64);

impl Rng {
    /// Seeds through splitmix64 so neighbouring seeds give unrelated streams.
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Inner {
    server: Server,
    log: Vec<Entry>,
    faults: Faults,
    rng: Rng,
    rate_limited: u32,
    retry_after: u64,
}

impl Inner {
    fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.next_f64() < rate
    }

    /// Faults, handler, log. `None` means: close the connection without answering.
    fn serve(&mut self, req: &Req, query: &str, exempt: bool) -> Option<Resp> {
        let logged = Logged {
            method: req.method.clone(),
            path: req.path.clone(),
            query: query.to_owned(),
            status: 0,
            body: serde_json::from_slice(&req.body).ok(),
            bypass_ratelimit: req.bypass_ratelimit,
        };
        if req.bypass_ratelimit && !self.server.opts.owner {
            return self.record(logged, false, Some(routes::bypass_refused()));
        }
        // An owner's bypass skips the rate limit, as in coderd; other faults still apply.
        if !exempt {
            if self.rate_limited > 0 && !req.bypass_ratelimit {
                self.rate_limited -= 1;
                return self.record(logged, false, Some(routes::rate_limited(self.retry_after)));
            }
            if self.roll(self.faults.reset_rate) {
                return self.record(logged, false, None);
            }
            if self.roll(self.faults.error_rate) {
                return self.record(logged, false, Some(routes::injected_error()));
            }
        }
        let resp = routes::dispatch(&mut self.server, req);
        if logged.is_write() && !exempt && self.roll(self.faults.lost_response_rate) {
            return self.record(logged, true, None);
        }
        self.record(logged, true, Some(resp))
    }

    fn record(&mut self, mut logged: Logged, handled: bool, resp: Option<Resp>) -> Option<Resp> {
        logged.status = resp.as_ref().map_or(0, |r| r.status);
        self.log.push(Entry { logged, handled });
        resp
    }
}

struct Shared {
    inner: Mutex<Inner>,
    connections: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_connections(&self) -> Vec<AbortHandle> {
        std::mem::take(&mut *self.connections.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The service's error: hyper drops the connection without writing a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

pub struct FakeCoderd {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCoderd {
    pub fn start(options: FakeOptions) -> FakeCoderd {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake coderd");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let rng = Rng::new(options.seed);
        let server = Server::new(options, format!("http://{addr}"));
        let inner = Inner { server, log: Vec::new(), faults: Faults::default(), rng, rate_limited: 0, retry_after: 0 };
        let shared = Arc::new(Shared { inner: Mutex::new(inner), connections: Mutex::default() });
        let (stop, stopped) = oneshot::channel();
        let background = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-coderd".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake coderd runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        () = accept_loop(listener, background.clone()) => {}
                        _ = stopped => {}
                    }
                    background.take_connections().iter().for_each(AbortHandle::abort);
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn the fake coderd thread");
        FakeCoderd { shared, addr, stop: Some(stop), thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> String {
        self.shared.lock().server.opts.token.clone()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.shared.lock().log.iter().map(|e| e.logged.clone()).collect()
    }

    pub fn writes(&self) -> Vec<Logged> {
        let inner = self.shared.lock();
        inner.log.iter().filter(|e| e.handled && e.logged.is_write()).map(|e| e.logged.clone()).collect()
    }

    pub fn clear_log(&self) {
        self.shared.lock().log.clear();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    pub fn rate_limit(&self, requests: u32, retry_after_secs: u64) {
        let mut inner = self.shared.lock();
        inner.rate_limited = requests;
        inner.retry_after = retry_after_secs;
    }

    /// Closes every open connection and, with `lose_state`, goes back to a fresh install.
    /// Returns once the old connections are gone; the port stays the same.
    pub fn restart(&self, lose_state: bool) {
        let connections = self.shared.take_connections();
        connections.iter().for_each(AbortHandle::abort);
        if lose_state {
            self.shared.lock().server.wipe();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while connections.iter().any(|c| !c.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn set_edition(&self, edition: Edition) {
        self.shared.lock().server.opts.edition = edition;
    }

    pub fn set_token(&self, token: &str) {
        self.shared.lock().server.opts.token = token.to_owned();
    }

    pub fn licenses(&self) -> Vec<Value> {
        self.shared.lock().server.db.licenses.iter().map(state::License::to_json).collect()
    }

    /// The stored appearance, whether or not the deployment is licensed to show it.
    pub fn appearance(&self) -> Value {
        routes_misc::appearance_config(&self.shared.lock().server, true)
    }

    pub fn organizations(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        inner.server.db.orgs.iter().filter(|o| !o.deleted).map(state::Org::to_json).collect()
    }

    pub fn organization_sync(&self) -> Value {
        self.shared.lock().server.db.org_sync.clone()
    }

    /// `Value::Null` for an unknown organization.
    pub fn group_sync(&self, org: &str) -> Value {
        self.with_org(org, |o| o.group_sync.clone()).unwrap_or(Value::Null)
    }

    pub fn role_sync(&self, org: &str) -> Value {
        self.with_org(org, |o| o.role_sync.clone()).unwrap_or(Value::Null)
    }

    pub fn provisioner_keys(&self, org: &str) -> Vec<Value> {
        self.with_org(org, |o| o.keys.iter().map(|k| o.key_json(k)).collect()).unwrap_or_default()
    }

    pub fn provisioner_key_secret(&self, org: &str, name: &str) -> Option<String> {
        self.with_org(org, |o| o.keys.iter().find(|k| k.name.eq_ignore_ascii_case(name)).map(|k| k.secret.clone()))
            .flatten()
    }

    pub fn ai_providers(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        let mut live: Vec<&state::AiProvider> = inner.server.db.ai.iter().filter(|p| !p.deleted).collect();
        live.sort_by(|a, b| a.name.cmp(&b.name));
        live.into_iter().map(state::AiProvider::to_json).collect()
    }

    pub fn ai_provider_keys(&self, name: &str) -> Vec<String> {
        self.with_provider(name, |p| p.keys.iter().map(|k| k.secret.clone()).collect()).unwrap_or_default()
    }

    /// The stored Bedrock `(access_key, access_key_secret)`, `None` without Bedrock credentials.
    pub fn ai_provider_settings_secret(&self, name: &str) -> Option<(String, String)> {
        self.with_provider(name, |p| {
            let b = p.settings.as_ref()?;
            if b.access_key.is_none() && b.access_key_secret.is_none() {
                return None;
            }
            Some((b.access_key.clone().unwrap_or_default(), b.access_key_secret.clone().unwrap_or_default()))
        })
        .flatten()
    }

    /// Adds a group to a live organization (panics if there is none) and returns its id.
    pub fn add_group(&self, org: &str, name: &str) -> String {
        let mut inner = self.shared.lock();
        let index = inner.server.db.org_index(org).unwrap_or_else(|| panic!("no organization {org:?}"));
        let id = inner.server.new_id();
        let group = state::Group { id: id.clone(), name: name.to_owned(), display_name: String::new() };
        inner.server.db.orgs[index].groups.push(group);
        id
    }

    /// Pretends the organization still holds `workspaces` workspaces (blocks DELETE).
    pub fn set_org_resources(&self, org: &str, workspaces: u32) {
        let mut inner = self.shared.lock();
        let index = inner.server.db.org_index(org).unwrap_or_else(|| panic!("no organization {org:?}"));
        inner.server.db.orgs[index].workspaces = workspaces;
    }

    /// A license JWT the fake accepts: EdDSA header with `kid`, far-future `exp`, version 3,
    /// `feature_set` premium and `features` `{name: 1}`; the signature is a fixed marker.
    pub fn license_jwt(jti: &str, features: &[&str]) -> String {
        state::license_jwt(jti, features)
    }

    fn with_org<T>(&self, org: &str, f: impl FnOnce(&state::Org) -> T) -> Option<T> {
        let inner = self.shared.lock();
        inner.server.db.org_index(org).map(|i| f(&inner.server.db.orgs[i]))
    }

    fn with_provider<T>(&self, name: &str, f: impl FnOnce(&state::AiProvider) -> T) -> Option<T> {
        let inner = self.shared.lock();
        inner.server.db.ai_index(name).map(|i| f(&inner.server.db.ai[i]))
    }
}

impl Drop for FakeCoderd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let per_connection = shared.clone();
        // Registered before it serves (the task first waits for this lock), so a restart
        // right after a response always finds the connection.
        let mut connections = shared.connections.lock().unwrap_or_else(PoisonError::into_inner);
        let task = tokio::spawn(async move {
            drop(per_connection.connections.lock().unwrap_or_else(PoisonError::into_inner));
            let service = service_fn(move |request| handle(per_connection.clone(), request));
            let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
        drop(connections);
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<HttpBody>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(HttpBody::new(body), 16 << 20).await.map_err(|_| Dropped)?;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let req = Req {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        session_token: header("coder-session-token"),
        daemon_key: header("coder-provisioner-daemon-key"),
        bypass_ratelimit: header("x-coder-bypass-ratelimit").is_some_and(|v| v == "true"),
        body: body.to_vec(),
    };
    let query = parts.uri.query().unwrap_or_default();
    let (exempt, latency) = {
        let inner = shared.lock();
        let exempt = inner.faults.exempt_healthz && req.method == "GET" && req.path == "/healthz";
        (exempt, if exempt { Duration::ZERO } else { inner.faults.latency })
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let resp = shared.lock().serve(&req, query, exempt).ok_or(Dropped)?;
    Ok(to_http(resp))
}

fn to_http(resp: Resp) -> hyper::Response<HttpBody> {
    let mut builder = hyper::Response::builder().status(resp.status).header("X-Coder-Build-Version", BUILD_VERSION);
    if let Some(seconds) = resp.retry_after {
        builder = builder.header("Retry-After", seconds.to_string());
    }
    let body = match resp.body {
        Body::Empty => HttpBody::empty(),
        Body::Text(text) => {
            builder = builder.header("Content-Type", "text/plain; charset=utf-8");
            HttpBody::from(text)
        }
        Body::Json(value) => {
            builder = builder.header("Content-Type", "application/json; charset=utf-8");
            HttpBody::from(value.to_string())
        }
    };
    builder.body(body).expect("valid response")
}
