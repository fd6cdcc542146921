//! The Helm chart (`charts/coder-guard`) with the real `helm` (built by `tools/helm/build.sh`
//! from the Go module proxy) and, for the end-to-end tests, the real kube-apiserver of
//! `tests/support/apiserver.rs`:
//!
//! - `helm lint --strict` is clean and `helm template` renders every certificate mode and the
//!   main value combinations ([`CASES`]), byte-identically on every run;
//! - the webhook configurations equal what `coder-guard manifests webhooks` generates, the RBAC
//!   equals what the code declares (`cluster::rbac::grants`) for the flags the chart passes (and
//!   `rbac.create=false` renders none), and `serve --check-args` accepts the chart's arguments;
//! - NOTES.txt's install check runs in a namespace the rendered webhooks see;
//! - every rendered object passes a server-side dry run, in a namespace that enforces the
//!   `restricted` Pod Security Standard (hostNetwork: `privileged`, and `restricted` refuses it);
//! - applied for real, the chart's service accounts may make every API call the code makes
//!   (`kubectl auth can-i --as`), and `kubectl auth can-i --list --as` shows nothing beyond it;
//! - the pre-delete hook's command, run as the hook's service account, deletes both webhook
//!   configurations and succeeds again when they are gone; the main service account, with its
//!   RBAC applied, may not.
//!
//! Skipped (with `SKIP: …` on stderr) where Go is missing or too old, unless `CI=true`.

#[path = "helm_chart/cluster.rs"]
mod cluster;
#[path = "helm_chart/helm.rs"]
mod helm;
#[path = "helm_chart/image.rs"]
mod image;
#[path = "helm_chart/objects.rs"]
mod objects;
#[path = "helm_chart/render.rs"]
mod render;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use coder_guard::cluster::rbac::{self, RbacOptions, Scope};
use serde_json::{Value, json};
use support::apiserver::ApiServer;
use support::{repo_dir, run_bounded, target_dir, text};

use helm::*;
use objects::*;

/// Upper bound for one `helm` run.
const HELM_TIMEOUT: Duration = Duration::from_secs(120);
/// The webhook configurations' (and the Lease's) fixed name.
const CONFIGURATION: &str = "coder-guard";
/// Held while a test has the chart's webhook configurations registered for real (they point at
/// a Service that does not exist), and by tests that must not meet them.
static REAL_WEBHOOKS: Mutex<()> = Mutex::new(());

// === Cases ===

/// A set of values and what the chart must render for it. `{ns}` in `values` stands for the
/// release namespace.
struct Case {
    name: &'static str,
    values: &'static str,
    /// Pod templates meet the `restricted` Pod Security Standard.
    restricted: bool,
    /// Kinds (`Kind` or `Kind/name`) that must be rendered.
    present: &'static [&'static str],
    /// Kinds that must not be.
    absent: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "defaults",
        values: "{}",
        restricted: true,
        present: &[
            "Deployment/coder-guard",
            "Service/coder-guard",
            "ServiceAccount/coder-guard",
            "ConfigMap/coder-guard-config",
            "PodDisruptionBudget/coder-guard",
            "ClusterRole/coder-guard",
            "ClusterRole/coder-guard-ca-bundle",
            "Role/coder-guard-ca-secret",
            "Role/coder-guard-leader-election",
            "ValidatingWebhookConfiguration/coder-guard",
            "MutatingWebhookConfiguration/coder-guard",
            "Job/coder-guard-uninstall",
            "ClusterRole/coder-guard-uninstall",
        ],
        absent: &["Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"],
    },
    Case {
        name: "cert-manager",
        values: "certificates: {mode: certManager}\n",
        restricted: true,
        present: &[
            "Issuer/coder-guard-selfsigned",
            "Certificate/coder-guard-issuer-ca",
            "Issuer/coder-guard-ca",
            "Certificate/coder-guard-tls",
        ],
        absent: &["ClusterRole/coder-guard-ca-bundle", "Role/coder-guard-ca-secret"],
    },
    Case {
        name: "cert-manager-cluster-issuer",
        values: "certificates:\n  mode: certManager\n  certManager:\n    issuerRef: {name: corp-ca, kind: ClusterIssuer, group: cert-manager.io}\n",
        restricted: true,
        present: &["Certificate/coder-guard-tls"],
        absent: &["Issuer", "Certificate/coder-guard-issuer-ca"],
    },
    Case {
        name: "external",
        values: "certificates:\n  mode: external\n  external:\n    secretName: corp-tls\n    caBundle: |\n      -----BEGIN CERTIFICATE-----\n      MIIBdzCCAR2gAwIBAgIUTestOnlyNotARealCertificate0wCgYIKoZIzj0EAwIw\n      -----END CERTIFICATE-----\n",
        restricted: true,
        present: &["Deployment/coder-guard"],
        absent: &["Certificate", "Issuer", "ClusterRole/coder-guard-ca-bundle"],
    },
    Case {
        name: "namespaced-no-reconcile",
        values: "fullnameOverride: guard\nrbac:\n  watchNamespaces: [\"{ns}-team-a\", \"{ns}-team-b\"]\nreconcile: {enabled: false}\ncertificates: {mode: certManager}\nreplicaCount: 3\n",
        restricted: true,
        present: &["Role/guard", "RoleBinding/guard", "Deployment/guard"],
        absent: &["ClusterRole/guard", "Role/guard-leader-election", "ClusterRole/guard-ca-bundle"],
    },
    Case {
        name: "single-replica",
        values: "replicaCount: 1\ncertificates: {selfSigned: {caSecretName: webhook-ca}}\nreconcile: {enabled: false}\n",
        restricted: true,
        present: &[
            "Role/coder-guard-leader-election",
            "ClusterRole/coder-guard-ca-bundle",
            "Role/coder-guard-ca-secret",
        ],
        absent: &["PodDisruptionBudget"],
    },
    Case {
        name: "gke-private-port",
        values: "ports: {webhook: 10250}\nservice: {port: 443}\n",
        restricted: true,
        present: &["Deployment/coder-guard"],
        absent: &[],
    },
    Case {
        name: "host-network",
        values: "hostNetwork: true\nports: {webhook: 10260, admin: 10261}\n",
        restricted: false,
        present: &["Deployment/coder-guard"],
        absent: &[],
    },
    Case {
        name: "monitoring",
        values: "metrics:\n  serviceMonitor: {enabled: true, labels: {release: prometheus}}\n  prometheusRule: {enabled: true}\n",
        restricted: true,
        present: &["ServiceMonitor/coder-guard", "PrometheusRule/coder-guard"],
        absent: &[],
    },
    Case {
        name: "tuned",
        values: r#"
fullnameOverride: cg
image: {repository: registry.example.com/coder-guard, digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: regcred}]
serviceAccount: {name: cg-runner, annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/cg"}}
webhooks:
  timeoutSeconds: 10
  failurePolicy: {resources: Ignore, deployments: Ignore, provisioners: Ignore}
  excludeNamespaces: [sandbox]
  namespaceSelector:
    matchLabels: {coder.com/managed: "true"}
    matchExpressions: [{key: team, operator: Exists}]
  objectSelector: {matchExpressions: [{key: coder-guard.coder.com/skip, operator: DoesNotExist}]}
  matchConditions: [{name: not-ci-bot, expression: "request.userInfo.username != 'system:serviceaccount:ci:bot'"}]
  annotations: {admissions.enforcer/disabled: "true"}
config:
  exemptNamespaces: [sandbox]
  rules:
    provisioner-key-rotation: off
    provisioner-key-checksum: {mode: off}
    secret-ref: {mode: warn, exemptNamespaces: [staging]}
serve: {logFormat: text, maxConcurrency: 64, extraArgs: ["--handshake-timeout=5s"]}
reconcile: {resyncInterval: 10m, coderdTimeout: 30s}
priorityClassName: system-cluster-critical
podAnnotations: {example.com/team: platform}
podLabels: {team: platform}
extraEnv: [{name: RUST_LOG, value: info}]
topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}]
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
uninstallHook: {enabled: false}
"#,
        restricted: true,
        present: &["Deployment/cg", "ServiceAccount/cg-runner", "ClusterRole/cg"],
        absent: &["Job", "ClusterRole/cg-uninstall"],
    },
    Case {
        name: "no-rbac",
        values: "rbac: {create: false}\n",
        restricted: true,
        present: &[
            "Deployment/coder-guard",
            "ServiceAccount/coder-guard",
            "Job/coder-guard-uninstall",
            "ServiceAccount/coder-guard-uninstall",
        ],
        absent: RBAC_KINDS,
    },
];

/// The kinds `rbac.create=false` leaves to the admin.
const RBAC_KINDS: &[&str] = &["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"];

/// Values the chart must refuse, and a part of the reason it must give.
const INVALID: &[(&str, &str)] = &[
    ("certificates: {mode: selfsigned}", "certificates/mode"),
    ("replicas: 2", "additional properties 'replicas' not allowed"),
    ("certificates: {mode: external}", "certificates.external.secretName"),
    ("certificates: {mode: external, external: {secretName: tls, caBundle: nope}}", "certificates.external.caBundle"),
    ("certificates: {selfSigned: {sharedCa: false}}", "additional properties 'sharedCa' not allowed"),
    ("hostNetwork: true\nports: {webhook: 10250}", "kubelet"),
    ("webhooks: {timeoutSeconds: 31}", "webhooks/timeoutSeconds"),
    ("webhooks: {failurePolicy: {resources: Deny, deployments: Ignore, provisioners: Ignore}}", "failurePolicy"),
    ("rbac: {watchNamespaces: [Team_A]}", "watchNamespaces"),
    ("ports: {webhook: 8080, admin: 8080}", "must differ"),
    ("config: {rules: {secret-refs: warn}}", "invalid propertyName 'secret-refs'"),
    ("config: {rules: {secret-ref: {mode: warning}}}", "/config/rules/secret-ref"),
];
