//! HTTP-level answers of the webhook: reading a bounded body, `metav1.Status` bodies for
//! requests answered without a review (400, 408, 413, 503, 500), and the panic guard's answer.

use std::any::Any;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio::time::Instant;
use tracing::error;

use super::budget::{Budget, GoDuration};
use super::metrics::Metrics;

/// A request answered without a review.
#[derive(Debug)]
pub(super) struct Rejection {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl Rejection {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

/// A `metav1.Status` body for an HTTP error.
pub(super) fn status_response(status: StatusCode, message: &str) -> Response {
    let reason = match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::REQUEST_TIMEOUT => "Timeout",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::NOT_FOUND => "NotFound",
        _ => "InternalError",
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": status.as_u16()});
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Reads the body within the deadline and the size limit.
pub(super) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    deadline: Instant,
    budget: Budget,
) -> Result<Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes; an AdmissionReview is at most a few MiB"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    // Far too large: answer at once (the connection closes without reading the rest).
    if declared.is_some_and(|n| n > limit.saturating_mul(2)) {
        return Err(too_large());
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
            seen += chunk.len();
            if seen > limit.saturating_mul(2) {
                return Err(too_large());
            }
            // Over the limit: keep reading (and discarding) so the client sees the 413.
            if seen <= limit {
                buf.extend_from_slice(&chunk);
            }
        }
        if seen > limit { Err(too_large()) } else { Ok(Bytes::from(buf)) }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} (80% of the timeout)", GoDuration(budget.answer_by)),
        )),
    }
}

/// Answers a panic in request handling with 500 and a JSON `Status`, and counts it. Only a
/// literal panic message is logged: a formatted one could quote request data.
pub(super) fn panic_response(metrics: Arc<Metrics>) -> impl Fn(Box<dyn Any + Send + 'static>) -> Response + Clone {
    move |payload: Box<dyn Any + Send + 'static>| {
        metrics.panics.inc();
        metrics.reject("other", "500");
        match payload.downcast_ref::<&'static str>() {
            Some(message) => error!(panic = *message, "request handler panicked"),
            None => error!("request handler panicked (message withheld)"),
        }
        status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "coder-guard failed while handling this request (a bug; please report it)",
        )
    }
}
