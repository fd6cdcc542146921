//! The fake coderd behaves as the reference says: auth, licenses, gates, AGPL routing, appearance,
//! organizations, provisioner keys, AI providers, IdP sync, and fault injection.

#[path = "fake_coderd_semantics/deployment.rs"]
mod deployment;
mod fake_coderd;
#[path = "fake_coderd_semantics/faults.rs"]
mod faults;
#[path = "fake_coderd_semantics/resources.rs"]
mod resources;

use std::time::{Duration, Instant};

use fake_coderd::{Edition, FakeCoderd, FakeOptions, Faults};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("status {} body {:?}: {e}", self.status, self.text))
    }

    fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Asserts status and message in one go, with the body in the failure text.
    fn expect(&self, status: u16, message: &str) {
        assert_eq!((self.status, self.message().as_str()), (status, message), "body: {}", self.text);
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(fake: &FakeCoderd) -> Api {
        Api { client: reqwest::Client::new(), base: fake.url(), token: Some(fake.token()) }
    }

    fn anonymous(fake: &FakeCoderd) -> Api {
        Api { token: None, ..Api::new(fake) }
    }

    async fn try_send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Coder-Session-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok(Reply { status, headers, text: response.text().await? })
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.try_send(method, path, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.send("PUT", path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send("PATCH", path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None).await
    }
}

fn fake(edition: Edition, licensed: bool) -> FakeCoderd {
    FakeCoderd::start(FakeOptions { edition, licensed, ..FakeOptions::default() })
}

const JTI: &str = "3f2b6c1e-8a4d-4e2f-9b1a-5c6d7e8f9a0b";
const ALL: [&str; 7] = [
    "external_provisioner_daemons",
    "appearance",
    "multiple_organizations",
    "aibridge",
    "custom_roles",
    "template_rbac",
    "high_availability",
];
