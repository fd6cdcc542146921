//! Shared helpers for integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/reference` beside the repository (the operator's CRDs and samples live there).
/// Override with `CODER_GUARD_REFERENCE`. A missing directory fails the test: these are real
/// inputs the suite must not silently skip.
pub fn reference_dir() -> PathBuf {
    let dir = std::env::var_os("CODER_GUARD_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"));
    assert!(
        dir.join("coder-k8s/crds").is_dir(),
        "{} has no coder-k8s/crds; set CODER_GUARD_REFERENCE to the shared reference directory",
        dir.display()
    );
    dir
}
