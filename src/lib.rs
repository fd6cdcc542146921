//! coder-guard: keeps a Coder deployment on Kubernetes correct by construction.
//!
//! One policy engine (`policy`) behind three edges: the admission webhook, the reconcile loop
//! and the offline `check` command.

#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod certs;
pub mod check;
pub mod cluster;
pub mod coderd;
pub mod policy;
pub mod reconcile;
pub mod server;
pub mod yaml;
