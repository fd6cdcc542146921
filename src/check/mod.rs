//! `check`: the policy engine applied offline to manifests (files, directories, stdin,
//! `helm template` / `kustomize build` output), with CI-native reports.

pub mod model;
pub mod report;
