//! The `admission.k8s.io/v1` wire format at the edge: AdmissionReview in (`decode`), AdmissionReview
//! out (`respond`), and a content-free `Summary` for logs and metrics.
//!
//! Owns the exact wire rules of DESIGN §4: v1 only, uid echo, 403 Forbidden denies with causes,
//! capped warnings, audit annotations, and a base64 JSON patch from the mutating hook only. It
//! knows nothing about HTTP, TLS or the engine's rules: the server feeds `Review::request()` to
//! the engine and sends back what `respond` (or, for an undecodable body, `invalid`) returns.

mod response;
mod review;
mod summary;

pub use response::{Hook, MAX_WARNING_BYTES, MAX_WARNINGS, deny_message, invalid, respond};
pub use review::{API_VERSION, DecodeError, GroupVersionKind, GroupVersionResource, KIND, Review, decode};
pub use summary::{Summary, Verdict};
