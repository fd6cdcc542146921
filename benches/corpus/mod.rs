//! The generated `check` corpus shared by the benchmarks (`benches/check.rs`,
//! `benches/kubeconform.rs`): realistic documents of the kinds coder-guard checks, written
//! `DOCS_PER_FILE` to a file, every tenth with a mistake a rule reports.

use std::fmt::Write as _;
use std::path::Path;

pub const DOCS_PER_FILE: usize = 50;

/// Which kinds fill slot 8 of every ten documents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(dead_code)] // each benchmark uses one variant
pub enum Mix {
    /// A ConfigMap (a kind coder-guard reads but no rule checks): the `check` benchmark's corpus.
    WithConfigMaps,
    /// CoderAIProvider, CoderProvisionerKey and CoderWorkspaceProxy in turn, so every document is
    /// of a kind coder-guard checks (nine kinds; the kubeconform comparison).
    Checked,
}

/// Writes `docs` documents of mixed kinds, `DOCS_PER_FILE` per file; returns bytes written.
pub fn generate(dir: &Path, docs: usize, mix: Mix) -> usize {
    let mut total = 0;
    for file in 0..docs.div_ceil(DOCS_PER_FILE) {
        let mut text = String::new();
        for d in 0..DOCS_PER_FILE.min(docs - file * DOCS_PER_FILE) {
            let n = file * DOCS_PER_FILE + d;
            let ns = format!("team-{}", (n / 10) % 40);
            text.push_str("---\n");
            text.push_str(&document(n, &ns, mix));
        }
        total += text.len();
        std::fs::write(dir.join(format!("m{file:05}.yaml")), text).expect("write");
    }
    total
}

/// One realistic document; every tenth object carries a mistake.
fn document(n: usize, ns: &str, mix: Mix) -> String {
    let mut s = String::new();
    let bad = n % 10 == 9;
    match n % 10 {
        0 | 5 => {
            let _ = write!(
                s,
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{n}\n  namespace: {ns}\n  labels:\n    app: coder\ntype: Opaque\ndata:\n  token: dG9rZW4tdmFsdWUtMDEyMzQ1Njc4OQ==\n  key: cHJvdmlzaW9uZXIta2V5LXZhbHVl\n"
            );
        }
        1 | 6 | 9 => {
            let env_name = if bad { "CODER_PROVISIONERD_TAGS" } else { "CODER_VERBOSE" };
            let _ = write!(
                s,
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: provisioner-{n}\n  namespace: {ns}\n  labels:\n    app.kubernetes.io/name: coder-provisioner\n    app.kubernetes.io/instance: p{n}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: coder-provisioner\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: coder-provisioner\n      annotations:\n        prometheus.io/scrape: \"true\"\n    spec:\n      serviceAccountName: coder-provisioner\n      securityContext:\n        runAsNonRoot: true\n        runAsUser: 1000\n      containers:\n      - name: coder\n        image: ghcr.io/coder/coder:v2.34.0\n        args: [provisioner, start]\n        env:\n        - name: CODER_URL\n          value: https://coder.example.com\n        - name: CODER_PROVISIONER_DAEMON_KEY\n          valueFrom:\n            secretKeyRef:\n              name: s{}\n              key: key\n        - name: {env_name}\n          value: \"true\"\n        resources:\n          requests:\n            cpu: 250m\n            memory: 512Mi\n          limits:\n            cpu: 2\n            memory: 4Gi\n        securityContext:\n          allowPrivilegeEscalation: false\n          readOnlyRootFilesystem: true\n",
                n - n % 5
            );
        }
        2 => {
            let _ = write!(
                s,
                "apiVersion: coder.com/v1alpha1\nkind: CoderControlPlane\nmetadata:\n  name: coder-{n}\n  namespace: {ns}\nspec:\n  image: ghcr.io/coder/coder:v2.34.0\n  replicas: 2\n  extraEnv:\n  - name: CODER_ACCESS_URL\n    value: https://coder-{n}.example.com\n  - name: CODER_PG_CONNECTION_URL\n    valueFrom:\n      secretKeyRef:\n        name: s{}\n        key: token\n  service:\n    type: ClusterIP\n    port: 80\n",
                n - 2
            );
        }
        3 => {
            let _ = write!(
                s,
                "apiVersion: coder.com/v1alpha1\nkind: CoderProvisioner\nmetadata:\n  name: builds-{n}\n  namespace: {ns}\nspec:\n  controlPlaneRef:\n    name: coder-{}\n  organizationName: default\n  tags:\n    scope: organization\n  replicas: 1\n",
                n - 1
            );
        }
        4 => {
            let _ = write!(
                s,
                "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderInstance\nmetadata:\n  name: main-{n}\n  namespace: {ns}\nspec:\n  url: https://coder-{n}.example.com\n  tokenSecretRef:\n    name: s{}\n  appearance:\n    applicationName: Dev Platform\n    announcementBanners:\n    - message: hello\n      backgroundColor: \"#004C99\"\n",
                n - 4
            );
        }
        7 => {
            let _ = write!(
                s,
                "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderOrganization\nmetadata:\n  name: org-{n}\n  namespace: {ns}\nspec:\n  instanceRef:\n    name: main-{}\n  displayName: Org {n}\n  groupSync:\n    field: groups\n    regexFilter: \"^team-.*$\"\n    mapping:\n      admins: [admins]\n",
                n - 3
            );
        }
        8 if mix == Mix::Checked => match (n / 10) % 3 {
            0 => {
                let _ = write!(
                    s,
                    "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderAIProvider\nmetadata:\n  name: ai-{n}\n  namespace: {ns}\nspec:\n  instanceRef:\n    name: main-{}\n  name: anthropic-{n}\n  type: anthropic\n  baseURL: https://api.anthropic.com\n  displayName: Claude\n  enabled: true\n",
                    n - 4
                );
            }
            1 => {
                let _ = write!(
                    s,
                    "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderProvisionerKey\nmetadata:\n  name: key-{n}\n  namespace: {ns}\nspec:\n  instanceRef:\n    name: main-{}\n  organization: default\n  secretName: provisioner-key-{n}\n  rotationPolicy: OnSecretLoss\n  tags:\n    scope: organization\n",
                    n - 4
                );
            }
            _ => {
                let _ = write!(
                    s,
                    "apiVersion: coder.com/v1alpha1\nkind: CoderWorkspaceProxy\nmetadata:\n  name: proxy-{n}\n  namespace: {ns}\nspec:\n  image: ghcr.io/coder/coder:v2.34.0\n  replicas: 2\n  primaryAccessURL: https://coder-{n}.example.com\n  bootstrap:\n    coderURL: https://coder-{n}.example.com\n    credentialsSecretRef:\n      name: s{}\n      key: token\n  service:\n    type: ClusterIP\n    port: 80\n",
                    n - 8
                );
            }
        },
        _ => {
            let _ = write!(
                s,
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\n  namespace: {ns}\ndata:\n  config.yaml: |\n    log-level: info\n    features: [a, b, c]\n"
            );
        }
    }
    s
}
