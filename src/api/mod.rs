//! Resource types: read views of the Coder operator's kinds (`coder.com/v1alpha1`), the
//! custom resources coder-guard owns (`coderd.coder.com/v1alpha1`), and tolerant views of the
//! built-in workloads the rules inspect.
//!
//! Views decode tolerantly: unknown fields are ignored and parts no rule reads stay raw JSON.
//! Nothing here performs I/O.

pub mod coder;
pub mod common;
pub mod crds;
pub mod own;
pub mod webhooks;
pub mod workload;

pub use common::{EnvFromSource, EnvVar, LocalObjectRef, SecretKeyRef};
