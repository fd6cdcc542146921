//! The coderd error model: what failed, mapped to what the reconcile loop does about it.
//! Secret values sent in a request are scrubbed from any error text coderd echoes back.

use std::time::Duration;

use super::types::{ErrorBody, Validation};

/// A failed coderd call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client, or a request, cannot be built from the given settings (a bad URL or CA
    /// bundle, a token HTTP cannot carry). Not transient: the settings must change.
    #[error("coderd client for {url}: {reason}")]
    Config { url: String, reason: String },
    /// No HTTP answer: connection refused or reset, TLS failure, timeout.
    #[error(
        "cannot reach coderd at {url} ({endpoint}): {reason}; check the CoderInstance URL, the CA and the network \
         path from coder-guard to coderd"
    )]
    Unreachable { url: String, endpoint: String, reason: String },
    /// coderd answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A success status with a body coder-guard cannot read.
    #[error(
        "coderd answered {endpoint} with a body coder-guard cannot read ({reason}); check that the URL points at \
         coderd and that its version is supported"
    )]
    Decode { endpoint: String, reason: String },
}

/// An error status from coderd, with its `codersdk.Response` body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{endpoint} answered {status}: {}", self.summary())]
pub struct ApiError {
    /// `METHOD /path` (the path as requested, never a query string).
    pub endpoint: String,
    pub status: u16,
    pub message: String,
    pub detail: String,
    pub validations: Vec<Validation>,
    /// `Retry-After` of a 429 (seconds form).
    pub retry_after: Option<Duration>,
}

/// What an error means for the reconcile loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Network trouble or a 5xx: retry with back-off.
    Transient,
    /// 429: wait `Retry-After` (or back off).
    RateLimited(Option<Duration>),
    /// 401: the token is not accepted.
    Unauthorized,
    /// 403 premium gate: the license does not cover this.
    NotEntitled,
    /// 404 `Route not found.` (or 405): an open-source coderd or a version without this API.
    NotSupported,
    /// 403 for any other reason: the token's account lacks a permission.
    Forbidden,
    /// 404 of an object.
    NotFound,
    /// 409.
    Conflict,
    /// 400 and other 4xx: the request (i.e. the spec) is invalid.
    Rejected,
    /// No request was made: the settings (URL, CA bundle, token) cannot be used.
    Invalid,
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Unreachable { .. } | Error::Decode { .. } => Class::Transient,
            Error::Config { .. } => Class::Invalid,
            Error::Api(e) => e.class(),
        }
    }

    /// The API error, when coderd answered.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }
}

impl ApiError {
    /// Builds the error from a response body (JSON or not), removing every `secrets` value
    /// coderd may have echoed.
    pub(super) fn new(
        endpoint: String,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
        secrets: &[&str],
    ) -> Self {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let scrub =
            |text: String| secrets.iter().filter(|s| !s.is_empty()).fold(text, |t, s| t.replace(s, "[redacted]"));
        ApiError {
            endpoint,
            status,
            message: scrub(parsed.message),
            detail: scrub(parsed.detail),
            validations: parsed
                .validations
                .into_iter()
                .map(|v| Validation { field: v.field, detail: scrub(v.detail) })
                .collect(),
            retry_after,
        }
    }

    pub fn class(&self) -> Class {
        match self.status {
            429 => Class::RateLimited(self.retry_after),
            401 => Class::Unauthorized,
            403 if self.message.contains("is a Premium feature") => Class::NotEntitled,
            403 => Class::Forbidden,
            404 if self.message == "Route not found." => Class::NotSupported,
            405 => Class::NotSupported,
            404 => Class::NotFound,
            409 => Class::Conflict,
            s if s >= 500 => Class::Transient,
            _ => Class::Rejected,
        }
    }

    /// Whether this is coderd's answer to a license it already has (a unique-constraint 500).
    pub fn is_duplicate_license(&self) -> bool {
        let text = format!("{} {}", self.message, self.detail).to_lowercase();
        ["licenses_jwt_key", "duplicate key", "already exists"].iter().any(|m| text.contains(m))
    }

    /// `message: detail (field: detail, …)`, or a status-based text for a body without JSON.
    fn summary(&self) -> String {
        let mut text =
            if self.message.is_empty() { default_message(self.status).to_owned() } else { self.message.clone() };
        if !self.detail.is_empty() {
            text = format!("{text}: {}", self.detail);
        }
        if !self.validations.is_empty() {
            let fields: Vec<String> = self.validations.iter().map(|v| format!("{}: {}", v.field, v.detail)).collect();
            text = format!("{text} ({})", fields.join("; "));
        }
        text
    }
}

fn default_message(status: u16) -> &'static str {
    match status {
        401 => "the API token is not accepted",
        403 => "forbidden",
        404 => "not found",
        405 => "method not allowed (an open-source coderd has no such route)",
        429 => "rate limited",
        s if s >= 500 => "coderd failed",
        _ => "request rejected",
    }
}

/// `Retry-After` in its seconds form; the HTTP-date form is read as absent (back-off applies).
pub(super) fn retry_after(value: Option<&str>) -> Option<Duration> {
    value.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> ApiError {
        ApiError::new("GET /x".into(), status, body.as_bytes(), None, &["s3cr3t-value"])
    }

    #[test]
    fn statuses_map_to_classes() {
        let cases = [
            (401, r#"{"message":"You must be signed in."}"#, Class::Unauthorized),
            (403, r#"{"message":"AI Gateway is a Premium feature. Contact sales!"}"#, Class::NotEntitled),
            (403, r#"{"message":"Forbidden."}"#, Class::Forbidden),
            (404, r#"{"message":"Route not found."}"#, Class::NotSupported),
            (405, "", Class::NotSupported),
            (404, r#"{"message":"Resource not found or you do not have access to this resource"}"#, Class::NotFound),
            (409, r#"{"message":"exists"}"#, Class::Conflict),
            (400, r#"{"message":"Validation failed."}"#, Class::Rejected),
            (500, "not json", Class::Transient),
            (503, "", Class::Transient),
        ];
        for (status, body, class) in cases {
            assert_eq!(api(status, body).class(), class, "{status} {body}");
        }
        let limited = ApiError::new("GET /x".into(), 429, b"{}", retry_after(Some(" 7 ")), &[]);
        assert_eq!(limited.class(), Class::RateLimited(Some(Duration::from_secs(7))));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }

    #[test]
    fn echoed_secrets_are_scrubbed_everywhere() {
        let body = r#"{"message":"bad s3cr3t-value","detail":"value s3cr3t-value","validations":[{"field":"api_keys","detail":"Validation failed with value: \"s3cr3t-value\""}]}"#;
        let text = Error::Api(api(400, body)).to_string();
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("[redacted]") && text.contains("api_keys"), "{text}");
    }

    #[test]
    fn duplicate_license_is_recognised_by_message_or_detail() {
        let dup = api(
            500,
            r#"{"message":"Unable to add license to database","detail":"duplicate key value violates unique constraint \"licenses_jwt_key\""}"#,
        );
        assert!(dup.is_duplicate_license());
        assert!(!api(500, r#"{"message":"An internal server error occurred."}"#).is_duplicate_license());
    }

    #[test]
    fn a_body_without_json_still_says_what_happened() {
        assert!(api(405, "").to_string().contains("open-source"));
    }
}
