//! `check`: the policy engine applied offline to manifests.
