//! [`Client`]: one coderd, one token. Idempotent calls (GET, PUT, PATCH, DELETE) are retried
//! twice at once on a transient failure (no answer, a 5xx); POSTs never are, since a
//! lost answer may hide an applied create. Longer back-off and `Retry-After` are the reconcile
//! loop's (it requeues instead of blocking a worker).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Error, retry_after};
use super::types::*;

/// Header carrying the API token.
const TOKEN_HEADER: &str = "Coder-Session-Token";
/// Header carrying a provisioner key's plaintext.
const DAEMON_KEY_HEADER: &str = "Coder-Provisioner-Daemon-Key";
/// Header asking coderd to skip its API rate limit (512 requests a minute per user by
/// default); only owners may send it, anyone else is answered 428 without the request being
/// handled.
const BYPASS_RATELIMIT_HEADER: &str = "X-Coder-Bypass-Ratelimit";
/// Connect timeout; the whole request is bounded by the client's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of an idempotent call.
const IDEMPOTENT_ATTEMPTS: u32 = 3;
/// Pause before a repeated attempt (times the attempt number).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A coderd API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    bypass_ratelimit: Bypass,
}

/// Whether API calls still ask coderd to bypass its rate limit: until coderd answers 428 (the
/// token's user is not an owner). Shared by clones, and by the clients of one coderd and token
/// that are given the same one ([`Client::sharing_bypass`]), so a refusal is remembered.
#[derive(Clone, Debug)]
pub struct Bypass(Arc<AtomicBool>);

impl Default for Bypass {
    fn default() -> Self {
        Bypass(Arc::new(AtomicBool::new(true)))
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

impl Client {
    /// A client for coderd at `url`. With `ca_pem`, only that CA bundle is trusted; without it,
    /// the bundled Mozilla roots are.
    pub fn new(url: &str, token: Secret, ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, Error> {
        let base = base_url(url)?;
        Ok(Client { http: Client::http(url, ca_pem, timeout)?, base, token, bypass_ratelimit: Bypass::default() })
    }

    /// The HTTP client [`Client::new`] builds for coderd at `url` (trusting `ca_pem` only, when
    /// given). It holds no token, so it can be kept and reused with [`Client::with_http`].
    pub fn http(url: &str, ca_pem: Option<&[u8]>, timeout: Duration) -> Result<reqwest::Client, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .user_agent(concat!("coder-guard/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| config(url, "the CA bundle holds no readable PEM certificate"))?;
            if certs.is_empty() {
                return Err(config(url, "the CA bundle holds no PEM certificate"));
            }
            builder = certs.into_iter().fold(builder.tls_built_in_root_certs(false), |b, c| b.add_root_certificate(c));
        }
        builder.build().map_err(|e| config(url, e.to_string()))
    }

    /// A client for coderd at `url` that sends `token` over `http` (from [`Client::http`]).
    pub fn with_http(http: reqwest::Client, url: &str, token: Secret) -> Result<Self, Error> {
        Ok(Client { http, base: base_url(url)?, token, bypass_ratelimit: Bypass::default() })
    }

    /// This client, remembering in `bypass` whether coderd refused the rate-limit bypass.
    #[must_use]
    pub fn sharing_bypass(mut self, bypass: &Bypass) -> Self {
        self.bypass_ratelimit = bypass.clone();
        self
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    // === readiness and identity ===

    /// `GET /healthz`: coderd is up.
    pub async fn healthz(&self) -> Result<(), Error> {
        self.send(Method::GET, &["healthz"], None, &[]).await.map(drop)
    }

    /// `GET /api/v2/buildinfo`.
    pub async fn build_info(&self) -> Result<BuildInfo, Error> {
        self.get(&["api", "v2", "buildinfo"]).await
    }

    /// `GET /api/v2/users/me`: the token authenticates.
    pub async fn me(&self) -> Result<User, Error> {
        self.get(&["api", "v2", "users", "me"]).await
    }

    /// `GET /api/v2/entitlements`.
    pub async fn entitlements(&self) -> Result<Entitlements, Error> {
        self.get(&["api", "v2", "entitlements"]).await
    }

    // === licenses ===

    pub async fn licenses(&self) -> Result<Vec<License>, Error> {
        self.get(&["api", "v2", "licenses"]).await
    }

    /// `POST /api/v2/licenses`. coderd's unique-constraint 500 for a license it already has is
    /// returned as `Ok(None)`.
    pub async fn add_license(&self, jwt: &Secret) -> Result<Option<License>, Error> {
        let body = AddLicense { license: jwt.clone() };
        match self.write(Method::POST, &["api", "v2", "licenses"], &body, &[jwt.expose()]).await {
            Ok(license) => Ok(Some(license)),
            Err(Error::Api(e)) if e.is_duplicate_license() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /api/v2/licenses/{id}`; an unknown ID counts as deleted.
    pub async fn delete_license(&self, id: i32) -> Result<(), Error> {
        let id = id.to_string();
        gone_is_ok(self.send(Method::DELETE, &["api", "v2", "licenses", &id], None, &[]).await)
    }

    // === appearance ===

    pub async fn appearance(&self) -> Result<Appearance, Error> {
        self.get(&["api", "v2", "appearance"]).await
    }

    /// `PUT /api/v2/appearance` (full replace).
    pub async fn put_appearance(&self, appearance: &Appearance) -> Result<(), Error> {
        self.write::<serde_json::Value>(Method::PUT, &["api", "v2", "appearance"], appearance, &[]).await.map(drop)
    }

    // === organizations and groups ===

    pub async fn organizations(&self) -> Result<Vec<Organization>, Error> {
        self.get(&["api", "v2", "organizations"]).await
    }

    /// `GET /api/v2/organizations/{id or name}`; `None` when it does not exist.
    pub async fn organization(&self, id_or_name: &str) -> Result<Option<Organization>, Error> {
        absent_is_none(self.get(&["api", "v2", "organizations", id_or_name]).await)
    }

    pub async fn create_organization(&self, request: &CreateOrganization) -> Result<Organization, Error> {
        self.write(Method::POST, &["api", "v2", "organizations"], request, &[]).await
    }

    pub async fn update_organization(&self, id: &str, request: &UpdateOrganization) -> Result<Organization, Error> {
        self.write(Method::PATCH, &["api", "v2", "organizations", id], request, &[]).await
    }

    /// `DELETE /api/v2/organizations/{id}`; an unknown organization counts as deleted.
    pub async fn delete_organization(&self, id: &str) -> Result<(), Error> {
        gone_is_ok(self.send(Method::DELETE, &["api", "v2", "organizations", id], None, &[]).await)
    }

    pub async fn groups(&self, org: &str) -> Result<Vec<Group>, Error> {
        self.get(&["api", "v2", "organizations", org, "groups"]).await
    }

    // === IdP sync (full-replace PATCHes) ===

    pub async fn organization_sync(&self) -> Result<OrganizationSyncSettings, Error> {
        self.get(&["api", "v2", "settings", "idpsync", "organization"]).await
    }

    pub async fn put_organization_sync(&self, settings: &OrganizationSyncSettings) -> Result<(), Error> {
        let path = ["api", "v2", "settings", "idpsync", "organization"];
        self.write::<serde_json::Value>(Method::PATCH, &path, settings, &[]).await.map(drop)
    }

    pub async fn group_sync(&self, org: &str) -> Result<GroupSyncSettings, Error> {
        self.get(&["api", "v2", "organizations", org, "settings", "idpsync", "groups"]).await
    }

    pub async fn put_group_sync(&self, org: &str, settings: &GroupSyncSettings) -> Result<(), Error> {
        let path = ["api", "v2", "organizations", org, "settings", "idpsync", "groups"];
        self.write::<serde_json::Value>(Method::PATCH, &path, settings, &[]).await.map(drop)
    }

    pub async fn role_sync(&self, org: &str) -> Result<RoleSyncSettings, Error> {
        self.get(&["api", "v2", "organizations", org, "settings", "idpsync", "roles"]).await
    }

    pub async fn put_role_sync(&self, org: &str, settings: &RoleSyncSettings) -> Result<(), Error> {
        let path = ["api", "v2", "organizations", org, "settings", "idpsync", "roles"];
        self.write::<serde_json::Value>(Method::PATCH, &path, settings, &[]).await.map(drop)
    }

    // === provisioner keys ===

    pub async fn provisioner_keys(&self, org: &str) -> Result<Vec<ProvisionerKey>, Error> {
        self.get(&["api", "v2", "organizations", org, "provisionerkeys"]).await
    }

    /// `POST …/provisionerkeys`: the plaintext exists only in this answer.
    pub async fn create_provisioner_key(&self, org: &str, request: &CreateProvisionerKey) -> Result<Secret, Error> {
        let path = ["api", "v2", "organizations", org, "provisionerkeys"];
        let created: CreatedProvisionerKey = self.write(Method::POST, &path, request, &[]).await?;
        Ok(created.key)
    }

    /// `DELETE …/provisionerkeys/{name}`; an unknown key counts as deleted.
    pub async fn delete_provisioner_key(&self, org: &str, name: &str) -> Result<(), Error> {
        let path = ["api", "v2", "organizations", org, "provisionerkeys", name];
        gone_is_ok(self.send(Method::DELETE, &path, None, &[]).await)
    }

    /// `GET /api/v2/provisionerkeys/{key}` authenticated by the key itself: the key coderd
    /// knows under this plaintext, or `None` if it knows none.
    pub async fn verify_provisioner_key(&self, plaintext: &Secret) -> Result<Option<ProvisionerKey>, Error> {
        // A value HTTP cannot carry in a header is no key coderd made (and would be mistaken
        // for a bad token below).
        if reqwest::header::HeaderValue::from_str(plaintext.expose()).is_err() {
            return Ok(None);
        }
        let url = self.endpoint_url(&["api", "v2", "provisionerkeys", plaintext.expose()]);
        let request = self.http.get(url).header(DAEMON_KEY_HEADER, plaintext.expose());
        let endpoint = "GET /api/v2/provisionerkeys/[redacted]".to_owned();
        match self.execute(request, endpoint.clone(), &[plaintext.expose()]).await {
            Ok(body) => decode(&endpoint, &body).map(Some),
            Err(Error::Api(e)) if matches!(e.status, 401 | 403 | 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // === AI providers ===

    /// `GET /api/v2/ai/providers/{name}`; `None` when it does not exist.
    pub async fn ai_provider(&self, id_or_name: &str) -> Result<Option<AiProvider>, Error> {
        absent_is_none(self.get(&["api", "v2", "ai", "providers", id_or_name]).await)
    }

    pub async fn create_ai_provider(&self, request: &CreateAiProvider) -> Result<AiProvider, Error> {
        let secrets = provider_secrets(&request.api_keys, request.settings.as_ref());
        self.write(Method::POST, &["api", "v2", "ai", "providers"], request, &secrets).await
    }

    pub async fn update_ai_provider(&self, id: &str, request: &UpdateAiProvider) -> Result<AiProvider, Error> {
        let keys = request.api_keys.as_deref().unwrap_or_default();
        let secrets = provider_secrets(keys, request.settings.as_ref());
        self.write(Method::PATCH, &["api", "v2", "ai", "providers", id], request, &secrets).await
    }

    /// `DELETE /api/v2/ai/providers/{id}`; an unknown provider counts as deleted.
    pub async fn delete_ai_provider(&self, id: &str) -> Result<(), Error> {
        gone_is_ok(self.send(Method::DELETE, &["api", "v2", "ai", "providers", id], None, &[]).await)
    }

    // === plumbing ===

    fn endpoint_url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, Error> {
        let body = self.send(Method::GET, segments, None, &[]).await?;
        decode(&endpoint(&Method::GET, segments), &body)
    }

    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        request: &impl Serialize,
        secrets: &[&str],
    ) -> Result<T, Error> {
        let json = serde_json::to_vec(request).map_err(|e| Error::Decode {
            endpoint: endpoint(&method, segments),
            reason: format!("cannot encode the request: {e}"),
        })?;
        let body = self.send(method.clone(), segments, Some(json), secrets).await?;
        decode(&endpoint(&method, segments), &body)
    }

    /// One request; the body of a 2xx answer, or the error.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        json: Option<Vec<u8>>,
        secrets: &[&str],
    ) -> Result<Vec<u8>, Error> {
        let attempts = if method == Method::POST { 1 } else { IDEMPOTENT_ATTEMPTS };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(method.clone(), self.endpoint_url(segments));
            if let Some(json) = &json {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(json.clone());
            }
            let bypass = self.bypass_ratelimit.0.load(Ordering::Relaxed);
            if bypass {
                request = request.header(BYPASS_RATELIMIT_HEADER, "true");
            }
            match self.execute(request, endpoint(&method, segments), secrets).await {
                // Refused before the request was handled (so safe to send again, POSTs too).
                Err(Error::Api(e)) if bypass && e.status == 428 => {
                    self.bypass_ratelimit.0.store(false, Ordering::Relaxed);
                    tracing::debug!(url = %self.base, "coderd refused {BYPASS_RATELIMIT_HEADER} (the token's user is not an owner); calling without it, within coderd's API rate limit");
                    attempt -= 1;
                }
                Err(e) if attempt < attempts && retry_at_once(&e) => {
                    tokio::time::sleep(RETRY_PAUSE * attempt).await;
                }
                result => return result,
            }
        }
    }

    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: String,
        secrets: &[&str],
    ) -> Result<Vec<u8>, Error> {
        let request =
            request.header(TOKEN_HEADER, self.token.expose()).header(reqwest::header::ACCEPT, "application/json");
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: self.base.to_string(),
            endpoint: endpoint.clone(),
            reason: describe(&e),
        };
        let response = request.send().await.map_err(|e| {
            if e.is_builder() {
                // Nothing was sent: a value HTTP cannot carry (the token from a Secret) is no
                // network trouble and does not go away by retrying.
                config(
                    self.base.as_str(),
                    "the token or a header value contains characters HTTP does not allow; check the token Secret",
                )
            } else {
                unreachable(e)
            }
        })?;
        let status = response.status();
        let after = retry_after(response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()));
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            let mut secrets = secrets.to_vec();
            secrets.push(self.token.expose());
            Err(ApiError::new(endpoint, status.as_u16(), &body, after, &secrets).into())
        }
    }
}

/// `url` checked as a base for coderd's API: absolute, http or https.
fn base_url(url: &str) -> Result<Url, Error> {
    let base = Url::parse(url).map_err(|e| config(url, format!("not an absolute URL: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err(config(url, "the URL must be http:// or https://"));
    }
    Ok(base)
}

fn config(url: &str, reason: impl Into<String>) -> Error {
    Error::Config { url: url.to_owned(), reason: reason.into() }
}

/// Whether a failed idempotent call is worth repeating at once: no answer, or a 5xx.
fn retry_at_once(error: &Error) -> bool {
    match error {
        Error::Unreachable { .. } => true,
        Error::Api(e) => e.status >= 500,
        _ => false,
    }
}

/// `METHOD /path` for messages.
fn endpoint(method: &Method, segments: &[&str]) -> String {
    format!("{method} /{}", segments.join("/"))
}

fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, Error> {
    // An empty 2xx body (DELETE, some PUTs) reads as JSON null.
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"null".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        endpoint: endpoint.to_owned(),
        // Position only: the body may hold values.
        reason: format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()),
    })
}

/// A reqwest error without its URL (the path may carry a key name) and with its cause chain.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn absent_is_none<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::Api(e)) if e.class() == super::Class::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn gone_is_ok(result: Result<Vec<u8>, Error>) -> Result<(), Error> {
    absent_is_none(result).map(drop)
}

fn provider_secrets<'a>(keys: &'a [Secret], settings: Option<&'a BedrockSettings>) -> Vec<&'a str> {
    let bedrock = settings.into_iter().flat_map(|s| [s.access_key.as_ref(), s.access_key_secret.as_ref()]).flatten();
    keys.iter().chain(bedrock).map(Secret::expose).collect()
}

#[cfg(test)]
mod tests;
