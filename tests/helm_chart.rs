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

// === helm ===

struct Helm {
    bin: PathBuf,
    /// cert-manager's and prometheus-operator's CRDs (tools/helm/test-crds.txt).
    crds: PathBuf,
    /// HELM_*_HOME, so that nothing is written to the user's home.
    home: PathBuf,
}

enum HelmState {
    Ready(Helm),
    Skip(String),
    Failed(String),
}

static HELM: OnceLock<HelmState> = OnceLock::new();

/// The pinned `helm`, built on first use; `None` (after `SKIP: …`) without Go outside CI.
fn helm_or_skip() -> Option<&'static Helm> {
    match HELM.get_or_init(HelmState::locate) {
        HelmState::Ready(helm) => Some(helm),
        HelmState::Skip(why) => {
            let test = std::thread::current().name().unwrap_or("helm test").to_owned();
            eprintln!("SKIP: {test}: {why}");
            None
        }
        HelmState::Failed(why) => panic!("{why}"),
    }
}

impl HelmState {
    fn locate() -> HelmState {
        let dir = match support::go_tool_assets(
            "HELM_TEST_ASSETS",
            "helm-test-assets",
            "tools/helm/build.sh",
            &["helm", "crds"],
            "the chart tests",
        ) {
            Ok(Some(dir)) => dir,
            Ok(None) => {
                return HelmState::Skip(
                    "no usable Go (see above), so helm cannot be built (set CI=true to make this a failure)".into(),
                );
            }
            Err(e) => return HelmState::Failed(e),
        };
        let home = target_dir().join("helm-test-home");
        HelmState::Ready(Helm { bin: dir.join("helm"), crds: dir.join("crds"), home })
    }
}

impl Helm {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(repo_dir())
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env_remove("KUBECONFIG");
        run_bounded(&mut cmd, None, HELM_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `helm template` of the chart with `values` (`{ns}` replaced) as release `coder-guard` in
    /// `namespace`; `Err` with helm's stderr when it refuses.
    fn template(&self, values: &str, namespace: &str) -> Result<String, String> {
        let file = values_file(values, namespace);
        let out = self.run(&[
            "template",
            "coder-guard",
            "charts/coder-guard",
            "--namespace",
            namespace,
            "--values",
            file.path().to_str().unwrap(),
        ]);
        if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
    }

    /// NOTES.txt as `helm install --dry-run=client` renders it for `values` in `namespace`.
    fn notes(&self, values: &str, namespace: &str) -> String {
        let file = values_file(values, namespace);
        let out = self.run(&[
            "install",
            "coder-guard",
            "charts/coder-guard",
            "--dry-run=client",
            "--namespace",
            namespace,
            "--values",
            file.path().to_str().unwrap(),
            "--output",
            "json",
        ]);
        assert!(out.status.success(), "helm install --dry-run=client failed:\n{}", text(&out.stderr));
        let release: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        release["info"]["notes"].as_str().expect("rendered notes").to_owned()
    }

    fn render(&self, case: &Case, namespace: &str) -> Vec<Value> {
        let rendered = self
            .template(case.values, namespace)
            .unwrap_or_else(|e| panic!("helm template refused case {:?}:\n{e}", case.name));
        parse_stream(&rendered)
    }

    /// The CRD files for the optional integrations.
    fn crd_files(&self) -> Vec<PathBuf> {
        support::yaml_files(&self.crds)
    }
}

fn values_file(values: &str, namespace: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().prefix("coder-guard-values-").suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), values.replace("{ns}", namespace)).unwrap();
    file
}

fn parse_stream(yaml: &str) -> Vec<Value> {
    let (docs, err) = coder_guard::yaml::parse_documents(yaml);
    assert_eq!(err, None, "helm printed YAML that does not parse:\n{yaml}");
    docs.into_iter().map(|d| d.value).filter(|v| !v.is_null()).collect()
}

// === Rendered objects ===

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], kind_name: &str) -> Option<&'a Value> {
    let (k, n) = kind_name.split_once('/').map_or((kind_name, None), |(k, n)| (k, Some(n)));
    objects.iter().find(|o| kind(o) == k && n.is_none_or(|n| name(o) == n))
}

fn deployment(objects: &[Value]) -> &Value {
    find(objects, "Deployment").expect("a Deployment")
}

fn container_args(workload: &Value) -> Vec<String> {
    let args = &workload["spec"]["template"]["spec"]["containers"][0]["args"];
    args.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

/// What the code needs for the rendered Deployment's flags (and the hook Job, if any).
fn rbac_options(objects: &[Value], namespace: &str) -> RbacOptions {
    let deployment = deployment(objects);
    let args = container_args(deployment);
    let hook = find(objects, "Job").map(|job| job["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap());
    RbacOptions {
        name: name(deployment).to_owned(),
        namespace: namespace.to_owned(),
        service_account: deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap().to_owned(),
        watch_namespaces: args.iter().filter_map(|a| a.strip_prefix("--namespace=")).map(str::to_owned).collect(),
        reconcile: !args.iter().any(|a| a == "--no-reconcile"),
        self_signed: args.iter().any(|a| a == "--self-signed"),
        ca_secret: args
            .iter()
            .find_map(|a| a.strip_prefix("--self-signed-ca-secret="))
            .unwrap_or(rbac::DEFAULT_CA_SECRET)
            .to_owned(),
        uninstall_service_account: hook.map(str::to_owned),
    }
}

/// One permission: (apiGroup, resource, resourceName or "", verb).
type Atom = (String, String, String, String);

fn atoms(rules: &Value) -> BTreeSet<Atom> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        assert!(rule.get("nonResourceURLs").is_none(), "no non-resource rules: {rule}");
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() { vec![String::new()] } else { names };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for name in &names {
                    for verb in strings(&rule["verbs"]) {
                        out.insert((group.clone(), resource.clone(), name.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

/// (scope, service account) → permissions, as the chart's Roles, ClusterRoles and bindings grant them.
fn chart_grants(objects: &[Value]) -> BTreeMap<(Scope, String), BTreeSet<Atom>> {
    let mut out: BTreeMap<(Scope, String), BTreeSet<Atom>> = BTreeMap::new();
    for binding in objects.iter().filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding")) {
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role_name = binding["roleRef"]["name"].as_str().unwrap();
        let binding_ns = binding["metadata"]["namespace"].as_str();
        let role = objects
            .iter()
            .find(|o| kind(o) == role_kind && name(o) == role_name && o["metadata"]["namespace"].as_str() == binding_ns)
            .unwrap_or_else(|| {
                panic!("{} {} binds a {role_kind} the chart does not render", kind(binding), name(binding))
            });
        let scope = match binding_ns {
            Some(ns) => Scope::Namespace(ns.to_owned()),
            None => Scope::Cluster,
        };
        for subject in binding["subjects"].as_array().unwrap() {
            assert_eq!(subject["kind"], "ServiceAccount", "{binding}");
            let sa = subject["name"].as_str().unwrap().to_owned();
            out.entry((scope.clone(), sa)).or_default().extend(atoms(&role["rules"]));
        }
    }
    out
}

fn code_grants(options: &RbacOptions) -> BTreeMap<(Scope, String), BTreeSet<Atom>> {
    let mut out: BTreeMap<(Scope, String), BTreeSet<Atom>> = BTreeMap::new();
    for grant in rbac::grants(options) {
        let rules = serde_json::to_value(&grant.rules).unwrap();
        out.entry((grant.scope, grant.service_account)).or_default().extend(atoms(&rules));
    }
    out
}

fn coder_guard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coder-guard")).args(args).env_remove("CODER_GUARD_CONFIG").output().unwrap()
}

// === Rendering ===

#[test]
fn lint_is_clean_in_strict_mode_for_every_case() {
    let Some(helm) = helm_or_skip() else { return };
    for case in CASES {
        let file = values_file(case.values, "coder-guard");
        let out = helm.run(&[
            "lint",
            "--strict",
            "charts/coder-guard",
            "--namespace",
            "coder-guard",
            "--values",
            file.path().to_str().unwrap(),
        ]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "helm lint --strict failed for case {:?}:\n{all}", case.name);
        assert!(
            !all.contains("[WARNING]") && !all.contains("[ERROR]"),
            "helm lint reported problems for case {:?}:\n{all}",
            case.name
        );
        assert!(all.contains("1 chart(s) linted, 0 chart(s) failed"), "{all}");
    }
}

#[test]
fn template_renders_each_mode_and_value_combination() {
    let Some(helm) = helm_or_skip() else { return };
    for case in CASES {
        let objects = helm.render(case, "coder-guard");
        for want in case.present {
            assert!(find(&objects, want).is_some(), "case {:?} renders no {want}", case.name);
        }
        for unwanted in case.absent {
            assert!(find(&objects, unwanted).is_none(), "case {:?} renders {unwanted}", case.name);
        }
        for o in &objects {
            let cluster_scoped = matches!(
                kind(o),
                "ClusterRole"
                    | "ClusterRoleBinding"
                    | "ValidatingWebhookConfiguration"
                    | "MutatingWebhookConfiguration"
            );
            assert_eq!(
                o["metadata"]["namespace"].is_string(),
                !cluster_scoped,
                "case {:?}: {} {} namespace",
                case.name,
                kind(o),
                name(o)
            );
        }
        // Certificates come from the cluster, never from the template.
        if let Some(secret) = find(&objects, "Secret") {
            panic!("case {:?} renders Secret {} (no certificates in templates)", case.name, name(secret));
        }
        let spec = &deployment(&objects)["spec"]["template"]["spec"];
        let args = container_args(deployment(&objects));
        let mode = if args.iter().any(|a| a == "--self-signed") { "selfSigned" } else { "files" };
        let mounted = spec["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "certs");
        assert_eq!(mounted, mode == "files", "case {:?}: certs volume only for certManager/external", case.name);
        assert_eq!(spec["hostNetwork"].as_bool().unwrap_or(false), case.name == "host-network");
    }
}

#[test]
fn template_is_byte_identical_across_runs() {
    let Some(helm) = helm_or_skip() else { return };
    for case in CASES {
        let first = helm.template(case.values, "coder-guard").unwrap();
        let second = helm.template(case.values, "coder-guard").unwrap();
        assert!(first == second, "case {:?}: two `helm template` runs differ", case.name);
    }
    // And no template calls a function whose result changes between runs.
    let comment = regex::Regex::new(r"(?s)\{\{-?\s*/\*.*?\*/\s*-?\}\}").unwrap();
    let action = regex::Regex::new(r"(?s)\{\{.*?\}\}").unwrap();
    let unstable = regex::Regex::new(
        r"\b(genCA|genCAWithKey|genSignedCert|genSelfSignedCert|genPrivateKey|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|randInt|uuidv4|now|date|lookup|shuffle)\b",
    )
    .unwrap();
    for entry in std::fs::read_dir(repo_dir().join("charts/coder-guard/templates")).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        let source = comment.replace_all(&source, "");
        for a in action.find_iter(&source) {
            let called = unstable.find(a.as_str()).map(|m| m.as_str());
            assert_eq!(called, None, "{} calls {called:?} in {}", path.display(), a.as_str());
        }
    }
}

#[test]
fn invalid_values_are_refused_with_a_reason() {
    let Some(helm) = helm_or_skip() else { return };
    for (values, reason) in INVALID {
        match helm.template(values, "coder-guard") {
            Ok(_) => panic!("helm template accepted {values:?}"),
            Err(stderr) => assert!(stderr.contains(reason), "{values:?}: expected {reason:?} in:\n{stderr}"),
        }
    }
}

/// The webhooks of the chart with default values are `coder-guard manifests webhooks`' for the
/// same Service, apart from the chart's labels and annotations; a custom Service (name, port,
/// namespace) and a caBundle (external mode) come through the same way.
#[test]
fn webhooks_equal_the_generated_configurations() {
    let Some(helm) = helm_or_skip() else { return };
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUTestOnly\n-----END CERTIFICATE-----\n";
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), pem).unwrap();
    let custom = format!(
        "fullnameOverride: guard\nservice: {{port: 8443}}\ncertificates:\n  mode: external\n  external:\n    secretName: tls\n    caBundle: |\n{}",
        pem.lines().map(|l| format!("      {l}\n")).collect::<String>()
    );
    let variants: [(&str, &str, Vec<&str>); 2] = [
        ("{}", "coder-guard", vec![]),
        (
            &custom,
            "platform",
            vec![
                "--namespace",
                "platform",
                "--service",
                "guard",
                "--port",
                "8443",
                "--ca-bundle-file",
                ca_file.path().to_str().unwrap(),
            ],
        ),
    ];
    for (values, namespace, flags) in variants {
        let chart = parse_stream(&helm.template(values, namespace).unwrap());
        let mut args = vec!["manifests", "webhooks"];
        args.extend(flags);
        let out = coder_guard(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        for generated in parse_stream(&text(&out.stdout)) {
            let rendered = find(&chart, &format!("{}/{}", kind(&generated), name(&generated)))
                .unwrap_or_else(|| panic!("the chart renders no {} {}", kind(&generated), name(&generated)));
            let strip = |o: &Value| {
                let mut o = o.clone();
                o["metadata"] = json!({"name": o["metadata"]["name"]});
                o
            };
            assert_eq!(strip(rendered), strip(&generated), "{} differs from `coder-guard {args:?}`", kind(&generated));
            assert_eq!(rendered["metadata"]["labels"]["app.kubernetes.io/name"], "coder-guard");
        }
    }
    // Values reach every webhook.
    let tuned = helm.render(CASES.iter().find(|c| c.name == "tuned").unwrap(), "coder-guard");
    for config in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        let config = find(&tuned, config).unwrap();
        assert_eq!(config["metadata"]["annotations"]["admissions.enforcer/disabled"], "true");
        for webhook in config["webhooks"].as_array().unwrap() {
            assert_eq!(webhook["timeoutSeconds"], 10);
            assert_eq!(webhook["failurePolicy"], "Ignore");
            let selector = &webhook["namespaceSelector"];
            assert_eq!(selector["matchExpressions"][0]["values"], json!(["kube-system", "coder-guard", "sandbox"]));
            assert_eq!(selector["matchExpressions"][1], json!({"key": "team", "operator": "Exists"}));
            assert_eq!(selector["matchLabels"], json!({"coder.com/managed": "true"}));
            assert_eq!(webhook["objectSelector"]["matchExpressions"][0]["operator"], "DoesNotExist");
            let conditions = webhook["matchConditions"].as_array().unwrap();
            assert_eq!(conditions.last().unwrap()["name"], "not-ci-bot", "{webhook}");
        }
    }
    // With watched namespaces, the webhooks select only those (coder-guard cannot read elsewhere).
    let namespaced = helm.render(CASES.iter().find(|c| c.name == "namespaced-no-reconcile").unwrap(), "cg");
    for config in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        for webhook in find(&namespaced, config).unwrap()["webhooks"].as_array().unwrap() {
            assert_eq!(
                webhook["namespaceSelector"]["matchExpressions"][1],
                json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["cg-team-a", "cg-team-b"]})
            );
        }
    }
    let cert_manager = helm.render(CASES.iter().find(|c| c.name == "cert-manager").unwrap(), "cg");
    for config in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        let config = find(&cert_manager, config).unwrap();
        assert_eq!(config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], "cg/coder-guard-tls");
        let certificate = find(&cert_manager, "Certificate/coder-guard-tls").unwrap();
        assert_eq!(
            certificate["spec"]["dnsNames"],
            json!(coder_guard::certs::service_dns_names("coder-guard", "cg")),
            "the certificate names the Service as `certs generate` does"
        );
    }
}

/// For every case, the Roles and ClusterRoles the chart binds to each service account are
/// exactly what `cluster::rbac::grants` declares for the flags the chart passes.
#[test]
fn rbac_equals_what_the_code_declares() {
    let Some(helm) = helm_or_skip() else { return };
    for case in CASES {
        let objects = helm.render(case, "coder-guard");
        let options = rbac_options(&objects, "coder-guard");
        if case.name == "no-rbac" {
            // rbac.create=false: the admin grants what the code needs.
            assert_eq!(chart_grants(&objects), BTreeMap::new(), "case {:?}", case.name);
            continue;
        }
        assert_eq!(
            chart_grants(&objects),
            code_grants(&options),
            "case {:?}: the chart's RBAC differs from `coder-guard manifests rbac` for {options:?}",
            case.name
        );
    }
}

/// With `rbac.create=false` the chart renders no RBAC object at all, the uninstall hook's
/// included, in every certificate mode and with or without watched namespaces; the hook's
/// service account and Job stay, and values.yaml and the README say what the admin must grant it.
#[test]
fn rbac_create_false_renders_no_rbac_object_at_all() {
    let Some(helm) = helm_or_skip() else { return };
    let variants = [
        "rbac: {create: false}\n",
        "rbac: {create: false, watchNamespaces: [\"{ns}-team-a\"]}\nreconcile: {enabled: false}\n",
        "rbac: {create: false}\ncertificates: {mode: certManager}\nuninstallHook: {enabled: false}\n",
        "fullnameOverride: guard\nrbac: {create: false}\nreplicaCount: 1\n",
    ];
    for values in variants {
        let objects = parse_stream(&helm.template(values, "coder-guard").unwrap());
        let rbac: Vec<String> = objects
            .iter()
            .filter(|o| RBAC_KINDS.contains(&kind(o)))
            .map(|o| format!("{}/{}", kind(o), name(o)))
            .collect();
        assert!(rbac.is_empty(), "{values:?} renders RBAC: {rbac:?}");
        assert!(find(&objects, "Deployment").is_some(), "{values:?}");
        if let Some(job) = find(&objects, "Job") {
            let hook_sa = job["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap();
            assert!(find(&objects, &format!("ServiceAccount/{hook_sa}")).is_some(), "{values:?}");
            assert!(hook_sa.ends_with("-uninstall"), "{hook_sa}");
        }
    }
    for file in ["values.yaml", "README.md"] {
        let text = std::fs::read_to_string(repo_dir().join("charts/coder-guard").join(file)).unwrap();
        assert!(
            text.contains("`<fullname>-uninstall`") && text.contains("delete"),
            "charts/coder-guard/{file} must say what to grant the uninstall hook with rbac.create=false"
        );
    }
}

/// `coder-guard serve <the chart's args> --check-args` accepts the Deployment's arguments:
/// every flag parses, no `requires`/`conflicts_with` is violated and they name a certificate
/// source (all checked before `serve` would start; `--help` would skip the last two). The hook's
/// `uninstall-webhooks` has no such constraints: `--help` parses its arguments.
#[test]
fn every_flag_the_chart_passes_is_accepted_by_the_binary() {
    // The check itself catches what --help lets through.
    let refused = [
        (&["--self-signed", "--tls-cert-file", "x", "--tls-key-file", "y"][..], "cannot be used with"),
        (&["--tls-cert-file", "x"][..], "--tls-key-file"),
        (&["--self-signed-dns-name", "guard"][..], "--self-signed"),
        (&["--listen=127.0.0.1:9443", "--log-format=json"][..], "needs a serving certificate"),
    ];
    for (flags, reason) in refused {
        let help = coder_guard(&[&["serve"][..], flags, &["--help"]].concat());
        assert!(help.status.success(), "serve {flags:?} --help: {}", text(&help.stderr));
        let checked = coder_guard(&[&["serve"][..], flags, &["--check-args"]].concat());
        let stderr = text(&checked.stderr);
        assert!(!checked.status.success(), "serve {flags:?} --check-args is accepted");
        assert!(stderr.contains(reason), "serve {flags:?} --check-args: expected {reason:?} in:\n{stderr}");
    }
    let ok = coder_guard(&["serve", "--self-signed", "--check-args"]);
    assert!(ok.status.success() && ok.stdout.is_empty(), "{}", text(&ok.stderr));

    let Some(helm) = helm_or_skip() else { return };
    for case in CASES {
        let objects = helm.render(case, "coder-guard");
        let workloads = objects.iter().filter(|o| matches!(kind(o), "Deployment" | "Job"));
        for workload in workloads {
            let mut args = container_args(workload);
            args.push(if args[0] == "serve" { "--check-args" } else { "--help" }.into());
            let out = coder_guard(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(
                out.status.success(),
                "case {:?}: `coder-guard {}` is refused:\n{}",
                case.name,
                args.join(" "),
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn rule_config_configmap_is_what_check_reads() {
    let ids = coder_guard::policy::rules::ids();
    // values.schema.json knows exactly the rule ids the binary knows.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_dir().join("charts/coder-guard/values.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        schema["properties"]["config"]["properties"]["rules"]["propertyNames"]["enum"],
        json!(ids),
        "values.schema.json's rule ids are stale; copy them from `coder-guard rules`"
    );
    let Some(helm) = helm_or_skip() else { return };
    for case in CASES {
        let objects = helm.render(case, "coder-guard");
        let config_map = find(&objects, "ConfigMap").unwrap();
        let config = config_map["data"]["config.yaml"].as_str().unwrap();
        let parsed = coder_guard::policy::RuleConfig::parse(config, "config.yaml", &ids)
            .unwrap_or_else(|e| panic!("case {:?}: the ConfigMap's config.yaml is refused: {e}\n{config}", case.name));
        if case.name == "tuned" {
            // An unquoted `off` in values (YAML 1.1: false) still means off.
            let mode = |id| parsed.mode(id, coder_guard::policy::Mode::Enforce, "default");
            assert_eq!(mode("provisioner-key-rotation"), coder_guard::policy::Mode::Off, "{config}");
            assert_eq!(mode("provisioner-key-checksum"), coder_guard::policy::Mode::Off, "{config}");
        }
        let mounted = &deployment(&objects)["spec"]["template"]["spec"]["volumes"][0];
        assert_eq!(mounted["configMap"]["name"].as_str(), Some(name(config_map)));
        assert!(container_args(deployment(&objects)).contains(&"--config=/etc/coder-guard/config.yaml".to_owned()));
    }
}

/// Every metric an alert or the chart's README names is one coder-guard exports.
#[test]
fn alerts_and_docs_name_metrics_that_exist() {
    let Some(helm) = helm_or_skip() else { return };
    use coder_guard::server::metrics::{CacheLabels, ConfirmLabels, FindingLabels, RequestLabels};
    // Families print only once they have a series: give each one.
    let metrics = coder_guard::server::Metrics::new();
    let request =
        RequestLabels { webhook: "validate", kind: "other", operation: "CREATE", verdict: "allowed", dry_run: "false" };
    metrics.observe_request(request, Duration::from_millis(1));
    metrics.reject("validate", "503");
    metrics.findings.get_or_create(&FindingLabels { rule: "schema", severity: "error" }).inc();
    metrics.confirmations.get_or_create(&ConfirmLabels { outcome: "found" }).inc();
    metrics.cache_synced.get_or_create(&CacheLabels { kind: "Secret" }).set(1);
    metrics.reconcile.observe("CoderInstance", Duration::from_millis(1));
    metrics.reconcile.count("CoderInstance", "ready");
    let exported = metrics.encode();
    let families: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let known = |metric: &str| {
        families.contains(metric)
            || ["_bucket", "_count", "_sum", "_total"]
                .iter()
                .any(|s| metric.strip_suffix(s).is_some_and(|base| families.contains(base)))
    };
    let monitoring = helm.render(CASES.iter().find(|c| c.name == "monitoring").unwrap(), "coder-guard");
    let rules = find(&monitoring, "PrometheusRule").unwrap();
    let readme = std::fs::read_to_string(repo_dir().join("charts/coder-guard/README.md")).unwrap();
    let metric = regex::Regex::new(r"coder_guard_[a-z_]+[a-z]").unwrap();
    for (source, text) in [("PrometheusRule", rules.to_string()), ("charts/coder-guard/README.md", readme)] {
        let named: BTreeSet<&str> = metric.find_iter(&text).map(|m| m.as_str()).collect();
        assert!(!named.is_empty(), "{source} names no metric");
        for m in named {
            assert!(known(m), "{source} names {m}, which coder-guard does not export: {families:?}");
        }
    }
}

/// Every value in values.yaml has a row in the chart README's values table.
#[test]
fn readme_documents_every_value() {
    let chart = repo_dir().join("charts/coder-guard");
    let values =
        coder_guard::yaml::parse_single(&std::fs::read_to_string(chart.join("values.yaml")).unwrap()).unwrap().value;
    let readme = std::fs::read_to_string(chart.join("README.md")).unwrap();
    let mut paths = Vec::new();
    // Kubernetes-typed values are documented as a whole.
    const OPAQUE: [&str; 4] = ["resources", "podSecurityContext", "securityContext", "uninstallHook.resources"];
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) if !map.is_empty() && !OPAQUE.contains(&prefix) => {
                for (k, v) in map {
                    walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    walk("", &values, &mut paths);
    let missing: Vec<&String> = paths.iter().filter(|p| !readme.contains(&format!("| `{p}` |"))).collect();
    assert!(missing.is_empty(), "charts/coder-guard/README.md has no `| `value` |` row for {missing:?}");
}

// === Against the API server ===

/// Installs the optional integrations' CRDs (once per test binary).
fn install_test_crds(api: &ApiServer, helm: &Helm) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        api.install_crds(&helm.crd_files());
    });
}

fn label_namespace(api: &ApiServer, namespace: &str, level: &str) {
    api.kubectl_ok([
        "label",
        "namespace",
        namespace,
        "--overwrite",
        &format!("pod-security.kubernetes.io/enforce={level}"),
        "pod-security.kubernetes.io/enforce-version=latest",
        &format!("pod-security.kubernetes.io/warn={level}"),
        &format!("pod-security.kubernetes.io/audit={level}"),
    ]);
}

fn list(objects: &[&Value]) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string()
}

/// The Pod a workload's template makes, for a dry-run create (Pod Security admission enforces
/// on Pods; on Deployments and Jobs it only warns).
fn pod_of(workload: &Value, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{}-{}", name(workload), kind(workload).to_lowercase()),
            "namespace": namespace,
            "labels": workload["spec"]["template"]["metadata"]["labels"],
        },
        "spec": workload["spec"]["template"]["spec"],
    })
}

#[test]
fn manifests_pass_server_side_dry_run_in_a_restricted_namespace() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let Some(helm) = helm_or_skip() else { return };
    // The chart's own Deployment matches the Deployments webhook (image coder/coder-guard); keep
    // the uninstall test's real, unreachable webhooks out of the way.
    let _no_webhooks = REAL_WEBHOOKS.lock().unwrap_or_else(|e| e.into_inner());
    install_test_crds(api, helm);
    for case in CASES {
        let started = Instant::now();
        let ns = api.namespace(&format!("chart-{}", case.name));
        label_namespace(api, &ns, if case.restricted { "restricted" } else { "privileged" });
        let objects = helm.render(case, &ns);
        for watched in rbac_options(&objects, &ns).watch_namespaces {
            api.kubectl_ok(["create", "namespace", &watched]);
        }
        let all: Vec<&Value> = objects.iter().collect();
        let out = api.kubectl_stdin(
            ["apply", "--server-side", "--dry-run=server", "--field-manager=helm", "--validate=strict", "-f", "-"],
            &list(&all),
        );
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "case {:?}: the API server refused the chart:\n{stderr}", case.name);
        assert!(!stderr.contains("PodSecurity"), "case {:?}: Pod Security warnings:\n{stderr}", case.name);
        let applied = text(&out.stdout).lines().filter(|l| l.contains("(server dry run)")).count();
        assert_eq!(applied, objects.len(), "case {:?}: {}", case.name, text(&out.stdout));

        for workload in objects.iter().filter(|o| matches!(kind(o), "Deployment" | "Job")) {
            let pod = pod_of(workload, &ns).to_string();
            let out = api.kubectl_stdin(["create", "--dry-run=server", "-f", "-"], &pod);
            assert!(
                out.status.success(),
                "case {:?}: the {} {}'s Pod is refused in a {} namespace:\n{}",
                case.name,
                kind(workload),
                name(workload),
                if case.restricted { "restricted" } else { "privileged" },
                text(&out.stderr)
            );
            if !case.restricted && kind(workload) == "Deployment" {
                let strict = api.namespace(&format!("chart-{}-restricted", case.name));
                label_namespace(api, &strict, "restricted");
                let out = api
                    .kubectl_stdin(["create", "--dry-run=server", "-f", "-"], &pod_of(workload, &strict).to_string());
                assert!(!out.status.success(), "case {:?}: restricted must refuse hostNetwork", case.name);
                assert!(text(&out.stderr).contains("host namespaces"), "{}", text(&out.stderr));
            }
        }
        eprintln!("dry-run {:?}: {} objects in {:.1}s", case.name, objects.len(), started.elapsed().as_secs_f64());
    }
}

/// `kubectl auth can-i` as `subject`; `true` for "yes".
fn can_i(api: &ApiServer, subject: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let (resource, subresource) = resource.split_once('@').map_or((resource, None), |(r, s)| (r, Some(s)));
    let mut args = vec!["auth".to_owned(), "can-i".into(), verb.into(), resource.into(), format!("--as={subject}")];
    match namespace {
        Some(ns) => args.extend(["-n".into(), ns.into()]),
        None => args.push("--all-namespaces".into()),
    }
    if let Some(sub) = subresource {
        args.push(format!("--subresource={sub}"));
    }
    let out = api.kubectl(&args);
    match text(&out.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl {} answered {other:?}: {}", args.join(" "), text(&out.stderr)),
    }
}

/// `resource.group[/name]@subresource` as `kubectl auth can-i` takes it (the subresource split
/// off again by [`can_i`]).
fn can_i_resource(group: &str, resource: &str, name: &str) -> String {
    let (resource, sub) = resource.split_once('/').map_or((resource, None), |(r, s)| (r, Some(s)));
    let mut out = if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") };
    if !name.is_empty() {
        out.push('/');
        out.push_str(name);
    }
    if let Some(sub) = sub {
        out.push('@');
        out.push_str(sub);
    }
    out
}

const CLUSTER_SCOPED: [&str; 2] = ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"];

/// `kubectl auth can-i --list --as=subject -n namespace`: the resource rows as atoms, and the
/// non-resource rows as they are.
fn can_i_list(api: &ApiServer, subject: &str, namespace: &str) -> (BTreeSet<Atom>, BTreeSet<String>) {
    let out = api.kubectl_ok(["auth", "can-i", "--list", &format!("--as={subject}"), "-n", namespace]);
    let row = regex::Regex::new(r"^(\S*)\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$").unwrap();
    let (mut resources, mut non_resource) = (BTreeSet::new(), BTreeSet::new());
    for line in out.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let c = row.captures(line).unwrap_or_else(|| panic!("unexpected `kubectl auth can-i --list` row {line:?}"));
        let words = |i: usize| c[i].split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        if c[1].is_empty() {
            non_resource.insert(line.split_whitespace().collect::<Vec<_>>().join(" "));
            continue;
        }
        // `resource.group[/subresource]` (core: no group).
        let (base, sub) = c[1].split_once('/').map_or((&c[1], None), |(b, s)| (b, Some(s)));
        let (resource, group) = base.split_once('.').unwrap_or((base, ""));
        let resource = match sub {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        let names = if words(3).is_empty() { vec![String::new()] } else { words(3) };
        for name in names {
            for verb in words(4) {
                resources.insert((group.to_owned(), resource.clone(), name.clone(), verb));
            }
        }
    }
    (resources, non_resource)
}

/// Is `atom` (from a listing) granted by `granted` (a wildcard verb or name in the listing must
/// be granted as such)?
fn covered(atom: &Atom, granted: &BTreeSet<Atom>) -> bool {
    granted.contains(atom)
        || (!atom.2.is_empty() && granted.contains(&(atom.0.clone(), atom.1.clone(), String::new(), atom.3.clone())))
}

#[test]
fn service_accounts_can_do_what_the_code_does_and_nothing_more() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let Some(helm) = helm_or_skip() else { return };
    install_test_crds(api, helm);
    // Cluster-scoped names differ per case (fullnameOverride), so cases do not share roles.
    let cases: [(&str, &str); 3] = [
        ("rbac-defaults", "fullnameOverride: rbac-defaults\n"),
        (
            "rbac-namespaced",
            "fullnameOverride: rbac-namespaced\nrbac: {watchNamespaces: [\"{ns}-team-a\", \"{ns}-team-b\"]}\ncertificates: {mode: certManager}\n",
        ),
        (
            "rbac-no-reconcile",
            "fullnameOverride: rbac-no-reconcile\nreconcile: {enabled: false}\ncertificates: {mode: external, external: {secretName: tls, caBundle: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"}}\nuninstallHook: {enabled: false}\n",
        ),
    ];
    for (case, values) in cases {
        let started = Instant::now();
        let ns = api.namespace(case);
        let objects = parse_stream(&helm.template(values, &ns).unwrap());
        let options = rbac_options(&objects, &ns);
        for watched in &options.watch_namespaces {
            api.kubectl_ok(["create", "namespace", watched]);
        }
        // Everything but the webhook configurations (which would send this API server's Coder
        // resources to a Service that does not exist).
        let applied: Vec<&Value> = objects
            .iter()
            .filter(|o| !matches!(kind(o), "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"))
            .collect();
        let out = api.kubectl_stdin(["apply", "--server-side", "--field-manager=helm", "-f", "-"], &list(&applied));
        assert!(out.status.success(), "{case}: apply failed:\n{}", text(&out.stderr));

        let grants = code_grants(&options);
        let subjects: BTreeSet<&String> = grants.keys().map(|(_, sa)| sa).collect();
        // Every API call the code makes is allowed.
        let mut checks = Vec::new();
        for ((scope, sa), atoms) in &grants {
            let subject = format!("system:serviceaccount:{ns}:{sa}");
            for (group, resource, name, verb) in atoms {
                let target = can_i_resource(group, resource, name);
                let namespaces: Vec<Option<String>> = match scope {
                    _ if CLUSTER_SCOPED.contains(&resource.as_str()) => vec![None],
                    Scope::Cluster => vec![None, Some(ns.clone()), Some("default".into())],
                    Scope::Namespace(n) => vec![Some(n.clone())],
                };
                for namespace in namespaces {
                    checks.push((subject.clone(), verb.clone(), target.clone(), namespace));
                }
            }
        }
        let denied: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = checks
                .chunks(checks.len().div_ceil(6).max(1))
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .filter(|(subject, verb, target, namespace)| {
                                !can_i(api, subject, verb, target, namespace.as_deref())
                            })
                            .map(|(subject, verb, target, namespace)| {
                                format!("{subject} {verb} {target} in {namespace:?}")
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert!(denied.is_empty(), "{case}: the chart does not allow what the code does:\n{}", denied.join("\n"));

        // Nothing broader: in every namespace that matters, each service account's listing
        // minus what any service account may do there is within the code's grants.
        let mut places = vec![ns.clone(), "default".into(), "kube-system".into()];
        places.extend(options.watch_namespaces.iter().cloned());
        for place in &places {
            let (baseline, baseline_urls) = can_i_list(api, &format!("system:serviceaccount:{place}:nobody"), place);
            for sa in &subjects {
                let subject = format!("system:serviceaccount:{ns}:{sa}");
                let (listed, urls) = can_i_list(api, &subject, place);
                let granted: BTreeSet<Atom> = grants
                    .iter()
                    .filter(|((scope, s), _)| {
                        s == *sa && (*scope == Scope::Cluster || *scope == Scope::Namespace(place.clone()))
                    })
                    .flat_map(|(_, atoms)| atoms.iter().cloned())
                    .collect();
                let extra: Vec<&Atom> =
                    listed.iter().filter(|a| !covered(a, &baseline) && !covered(a, &granted)).collect();
                assert!(extra.is_empty(), "{case}: {subject} may do more in {place} than the code needs: {extra:?}");
                assert_eq!(urls, baseline_urls, "{case}: {subject}: non-resource URLs");
            }
        }

        // A few that must stay impossible, spelled out.
        let main = format!("system:serviceaccount:{ns}:{}", options.service_account);
        assert!(!can_i(api, &main, "delete", "secrets", Some(&ns)));
        assert!(!can_i(api, &main, "create", "pods", Some(&ns)));
        assert!(!can_i(api, &main, "update", "leases.coordination.k8s.io/other", Some(&ns)));
        assert!(!can_i(api, &main, "list", "leases.coordination.k8s.io", Some(&ns)));
        assert!(!can_i(
            api,
            &main,
            "patch",
            "validatingwebhookconfigurations.admissionregistration.k8s.io/other",
            None
        ));
        assert!(!can_i(
            api,
            &main,
            "delete",
            "validatingwebhookconfigurations.admissionregistration.k8s.io/coder-guard",
            None
        ));
        assert!(!can_i(api, &main, "create", "validatingwebhookconfigurations.admissionregistration.k8s.io", None));
        if !options.watch_namespaces.is_empty() {
            assert!(
                !can_i(api, &main, "get", "secrets", Some("kube-system")),
                "{case}: Secret reads stay in the watched namespaces"
            );
            assert!(!can_i(api, &main, "list", "secrets", None));
        }
        if let Some(hook) = &options.uninstall_service_account {
            let hook = format!("system:serviceaccount:{ns}:{hook}");
            let config = "validatingwebhookconfigurations.admissionregistration.k8s.io";
            assert!(!can_i(api, &hook, "get", &format!("{config}/coder-guard"), None));
            assert!(!can_i(api, &hook, "delete", &format!("{config}/other"), None));
        }
        eprintln!("rbac {case}: {} can-i checks in {:.1}s", checks.len(), started.elapsed().as_secs_f64());
    }
}

fn exists(api: &ApiServer, kind: &str) -> bool {
    let out = api.kubectl(["get", kind, CONFIGURATION, "-o", "name"]);
    if out.status.success() {
        return true;
    }
    assert!(text(&out.stderr).contains("NotFound"), "{}", text(&out.stderr));
    false
}

/// The hook's own command line (from the rendered Job), run as the hook's service account
/// after the chart's hook RBAC is applied: deletes both configurations; again: nothing to
/// delete, still success; as the main service account, with all of its own RBAC applied (which
/// includes `get` and `patch` on both configurations): refused (it has no delete).
#[test]
fn uninstall_hook_deletes_both_webhook_configurations_idempotently() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let Some(helm) = helm_or_skip() else { return };
    let _webhooks = REAL_WEBHOOKS.lock().unwrap_or_else(|e| e.into_inner());
    let ns = api.namespace("uninstall");
    let objects = parse_stream(&helm.template("fullnameOverride: uninstall-check\n", &ns).unwrap());
    let job = find(&objects, "Job").unwrap();
    let args = container_args(job);
    assert_eq!(args, ["uninstall-webhooks", "--name=coder-guard"]);
    let hook_sa = job["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap();
    let hook_objects: Vec<&Value> = objects
        .iter()
        .filter(|o| o["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete" && kind(o) != "Job")
        .collect();
    assert_eq!(hook_objects.len(), 3, "ServiceAccount, ClusterRole, ClusterRoleBinding");
    let configs: Vec<&Value> = objects
        .iter()
        .filter(|o| matches!(kind(o), "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"))
        .collect();
    let main_sa = find(&objects, "ServiceAccount/uninstall-check").unwrap();
    // The main service account's Roles, ClusterRoles and bindings (not the hook's).
    let main_rbac: Vec<&Value> = objects
        .iter()
        .filter(|o| RBAC_KINDS.contains(&kind(o)) && o["metadata"]["annotations"]["helm.sh/hook"].is_null())
        .collect();
    assert!(
        main_rbac.iter().any(|o| kind(o) == "ClusterRole" && name(o) == "uninstall-check-ca-bundle"),
        "the main service account may get and patch the configurations: {main_rbac:?}"
    );
    let mut apply = hook_objects.clone();
    apply.extend(&configs);
    apply.push(main_sa);
    apply.extend(&main_rbac);
    let out = api.kubectl_stdin(["apply", "--server-side", "--field-manager=helm", "-f", "-"], &list(&apply));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(exists(api, "validatingwebhookconfiguration") && exists(api, "mutatingwebhookconfiguration"));
    // Its RBAC is in effect: what it may do to the configurations, it may do, but not delete them.
    let main = format!("system:serviceaccount:{ns}:uninstall-check");
    for config in ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"] {
        let config = format!("{config}.admissionregistration.k8s.io/{CONFIGURATION}");
        assert!(can_i(api, &main, "patch", &config, None), "{main} may not patch {config}");
        assert!(!can_i(api, &main, "delete", &config, None), "{main} may delete {config}");
    }

    let run_as = |sa: &str| {
        let kubeconfig = api.kubeconfig_as(&format!("system:serviceaccount:{ns}:{sa}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coder-guard"));
        cmd.args(&args).env("KUBECONFIG", kubeconfig.path()).env_remove("KUBERNETES_SERVICE_HOST");
        run_bounded(&mut cmd, None, Duration::from_secs(60)).unwrap()
    };

    // The main service account may not delete them.
    let out = run_as("uninstall-check");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("forbidden") && stderr.contains("manifests rbac"), "{stderr}");
    assert!(exists(api, "validatingwebhookconfiguration") && exists(api, "mutatingwebhookconfiguration"));

    let out = run_as(hook_sa);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "validatingwebhookconfiguration coder-guard: deleted\nmutatingwebhookconfiguration coder-guard: deleted\n"
    );
    assert!(!exists(api, "validatingwebhookconfiguration") && !exists(api, "mutatingwebhookconfiguration"));

    let out = run_as(hook_sa);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "validatingwebhookconfiguration coder-guard: not found (nothing to delete)\n\
         mutatingwebhookconfiguration coder-guard: not found (nothing to delete)\n"
    );
}

// === Container image ===

/// The Dockerfile builds with the toolchain rust-toolchain.toml pins, copies only what the
/// .dockerignore lets through, and runs as the user the chart's security context names.
#[test]
fn dockerfile_uses_the_pinned_toolchain_and_the_charts_user() {
    let read = |path: &str| std::fs::read_to_string(repo_dir().join(path)).unwrap();
    let dockerfile = read("Dockerfile");
    let toolchain = read("rust-toolchain.toml");
    let channel =
        regex::Regex::new(r#"(?m)^channel\s*=\s*"([^"]+)""#).unwrap().captures(&toolchain).unwrap()[1].to_owned();
    assert!(dockerfile.contains(&format!("ARG RUST_VERSION={channel}\n")), "Dockerfile must build with Rust {channel}");
    assert!(dockerfile.contains("cargo build --release --locked --bin coder-guard"));
    let values =
        coder_guard::yaml::parse_single(&read("charts/coder-guard/values.yaml")).unwrap().value["podSecurityContext"]
            .clone();
    let user = format!("USER {}:{}\n", values["runAsUser"], values["runAsGroup"]);
    assert!(dockerfile.contains(&user), "the image runs as {user:?}, like the chart's podSecurityContext");
    let last_from = dockerfile.lines().rfind(|l| l.starts_with("FROM ")).unwrap();
    assert!(last_from.contains("distroless") && last_from.contains(":nonroot"), "{last_from}");

    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            let source = source.trim_end_matches('/');
            assert!(
                allowed.iter().any(|a| a.trim_end_matches('/') == source),
                ".dockerignore leaves {source} out of the build context, but the Dockerfile copies it"
            );
            assert!(repo_dir().join(source).exists(), "the Dockerfile copies {source}, which does not exist");
        }
    }
    let manifest = read("Cargo.toml");
    assert!(
        !manifest.contains("build = ") && !repo_dir().join("build.rs").exists(),
        "a build script needs copying too"
    );
}

/// Whether a webhook's `namespaceSelector` selects `namespace` as far as its name decides:
/// every `matchExpressions` entry on `kubernetes.io/metadata.name` (other labels are not known).
fn selects_namespace(selector: &Value, namespace: &str) -> bool {
    selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name")
        .all(|e| {
            let listed = e["values"].as_array().is_some_and(|names| names.iter().any(|n| n == namespace));
            match e["operator"].as_str() {
                Some("In") => listed,
                Some("NotIn") => !listed,
                other => panic!("unexpected operator {other:?} in {selector}"),
            }
        })
}

/// The install check in NOTES.txt runs in a namespace every webhook is sent: the first watched
/// one the webhooks do not skip, else `default`; when that is skipped too (the release namespace,
/// `webhooks.excludeNamespaces`), a placeholder and the reason. NOTES.txt says that "accepted"
/// means the webhook was not called. The CRD's schema accepts the object (so when it is refused,
/// coder-guard refused it), and coder-guard's rules deny it with the rule NOTES.txt names.
#[test]
fn the_install_check_in_notes_is_denied_by_coder_guard_not_by_the_crd() {
    let Some(helm) = helm_or_skip() else { return };
    // (values, release namespace, the namespace of the check; None: the placeholder)
    let cases: [(&str, &str, Option<&str>); 6] = [
        ("{}", "coder-guard", Some("default")),
        ("rbac: {watchNamespaces: [\"{ns}-team-a\", \"{ns}-team-b\"]}\n", "notes-check", Some("notes-check-team-a")),
        ("rbac: {watchNamespaces: [\"{ns}\", \"{ns}-team-b\"]}\n", "notes-check", Some("notes-check-team-b")),
        ("{}", "default", None),
        ("webhooks: {excludeNamespaces: [default]}\n", "coder-guard", None),
        ("rbac: {watchNamespaces: [\"{ns}\"]}\n", "notes-check", None),
    ];
    let placeholder = "<NAMESPACE>";
    let check_object = regex::Regex::new(r"<<< '(\{.*\})'").unwrap();
    let denied_by = regex::Regex::new(r"denied the request: \[([a-z-]+)\]").unwrap();
    let mut objects = Vec::new();
    for (values, release_ns, expected) in cases {
        let notes = helm.notes(values, release_ns);
        let object = check_object.captures(&notes).expect("a <<< '{…}' object")[1].to_owned();
        let parsed: Value = serde_json::from_str(&object).unwrap_or_else(|e| panic!("{e}: {object}"));
        let namespace = parsed["metadata"]["namespace"].as_str().unwrap();
        assert_eq!(namespace, expected.unwrap_or(placeholder), "{values:?} in {release_ns}:\n{notes}");
        assert!(
            notes.contains("accepted") && notes.contains("the API server did not call the webhook"),
            "NOTES.txt must say what an accepted dry run means:\n{notes}"
        );
        let rule = denied_by.captures(&notes).expect("the denial to expect")[1].to_owned();
        // The rendered webhooks see the check's namespace; with the placeholder, they skip
        // `default`, and NOTES.txt says so.
        let rendered = parse_stream(&helm.template(values, release_ns).unwrap());
        let shown = expected.unwrap_or("default");
        for config in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
            for webhook in find(&rendered, config).unwrap()["webhooks"].as_array().unwrap() {
                assert_eq!(
                    selects_namespace(&webhook["namespaceSelector"], shown),
                    expected.is_some(),
                    "{values:?} in {release_ns}: {} and namespace {shown}:\n{notes}",
                    webhook["name"]
                );
            }
        }
        if expected.is_none() {
            assert!(notes.contains(&format!("replace {placeholder}")), "{values:?} in {release_ns}:\n{notes}");
        }
        objects.push((object, namespace.to_owned(), rule));
    }

    for (object, namespace, rule) in &objects {
        let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(file.path(), object).unwrap();
        let out = coder_guard(&["check", file.path().to_str().unwrap(), "-o", "json"]);
        assert_eq!(out.status.code(), Some(1), "{namespace}: {}", text(&out.stdout));
        let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        let errors: Vec<&Value> =
            report["findings"].as_array().unwrap().iter().filter(|f| f["severity"] == "error").collect();
        assert!(errors.iter().all(|f| f["rule"] == rule.as_str()) && !errors.is_empty(), "{report}");
    }

    let Some(api) = ApiServer::shared_or_skip() else { return };
    let _no_webhooks = REAL_WEBHOOKS.lock().unwrap_or_else(|e| e.into_inner());
    for (object, namespace, _) in objects.iter().filter(|(_, ns, _)| ns != placeholder) {
        let out = api.kubectl(["create", "namespace", namespace]);
        assert!(out.status.success() || text(&out.stderr).contains("AlreadyExists"), "{}", text(&out.stderr));
        let out = api.kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], object);
        assert!(out.status.success(), "the CRD refuses the install check itself:\n{}", text(&out.stderr));
    }
}
