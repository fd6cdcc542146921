//! The coderd HTTP API as the reconcile loop uses it: a typed [`Client`] (reqwest, rustls) with
//! the `Coder-Session-Token` header and timeouts, coderd's JSON bodies ([`types`]) and its error
//! model ([`Error`], [`Class`]). See `../shared/reference/coderd-api.md` for the contract.
//!
//! This module speaks HTTP only: it never touches Kubernetes and never decides what to write.
//! No secret value (token, license, keys) appears in an error or a `Debug` print: write-only
//! values are [`Secret`]s, and values coderd echoes back in an error are scrubbed.

mod client;
mod error;
pub mod types;

pub use client::{Bypass, Client};
pub use error::{ApiError, Class, Error};
pub use types::Secret;
