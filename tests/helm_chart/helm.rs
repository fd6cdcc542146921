//! Running `helm`: the binary built by `tools/helm/build.sh`, values files, rendered streams.

use super::*;

pub struct Helm {
    pub bin: PathBuf,
    /// cert-manager's and prometheus-operator's CRDs (tools/helm/test-crds.txt).
    pub crds: PathBuf,
    /// HELM_*_HOME, so that nothing is written to the user's home.
    pub home: PathBuf,
}

pub enum HelmState {
    Ready(Helm),
    Skip(String),
    Failed(String),
}

pub static HELM: OnceLock<HelmState> = OnceLock::new();

/// The pinned `helm`, built on first use; `None` (after `SKIP: …`) without Go outside CI.
pub fn helm_or_skip() -> Option<&'static Helm> {
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
    pub fn locate() -> HelmState {
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
    pub fn run(&self, args: &[&str]) -> Output {
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
    pub fn template(&self, values: &str, namespace: &str) -> Result<String, String> {
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
    pub fn notes(&self, values: &str, namespace: &str) -> String {
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

    pub fn render(&self, case: &Case, namespace: &str) -> Vec<Value> {
        let rendered = self
            .template(case.values, namespace)
            .unwrap_or_else(|e| panic!("helm template refused case {:?}:\n{e}", case.name));
        parse_stream(&rendered)
    }

    /// The CRD files for the optional integrations.
    pub fn crd_files(&self) -> Vec<PathBuf> {
        support::yaml_files(&self.crds)
    }
}

pub fn values_file(values: &str, namespace: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().prefix("coder-guard-values-").suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), values.replace("{ns}", namespace)).unwrap();
    file
}

pub fn parse_stream(yaml: &str) -> Vec<Value> {
    let (docs, err) = coder_guard::yaml::parse_documents(yaml);
    assert_eq!(err, None, "helm printed YAML that does not parse:\n{yaml}");
    docs.into_iter().map(|d| d.value).filter(|v| !v.is_null()).collect()
}
