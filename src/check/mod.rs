//! `check`: the policy engine applied offline to manifests (files, directories, stdin,
//! `helm template` / `kustomize build` output), with CI-native reports.

pub mod input;
pub mod model;
pub mod report;
pub mod run;

pub use model::CheckReport;
pub use run::{AssumedSecret, CheckInput, run, run_text};
