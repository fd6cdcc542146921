//! `coder-guard check` and `coder-guard rules` as a user runs them: exit codes, output,
//! files, stdin and git.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coder-guard"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).current_dir(repo()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `check --output json` and its parsed report.
fn check_json(args: &[&str], dir: &Path) -> (i32, Value) {
    let o = bin().arg("check").args(args).args(["--output", "json"]).current_dir(dir).output().unwrap();
    let report = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    (o.status.code().unwrap(), report)
}

/// `(file suffix, rule, severity)` of every finding.
fn findings(report: &Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = f["file"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            (file, f["rule"].as_str().unwrap().to_owned(), f["severity"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn good_examples_pass() {
    let o = run(&["check", "examples/good"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("0 errors"), "{}", stdout(&o));
}

#[test]
fn bad_examples_report_each_mistake_at_its_line() {
    let (code, report) = check_json(&["examples/bad"], &repo());
    assert_eq!(code, 1);
    let got = findings(&report);
    let expect = [
        ("operator.yaml", "kubernetes-names", "error"),
        ("operator.yaml", "env-duplicates", "error"),
        ("operator.yaml", "organization-name", "error"),
        ("operator.yaml", "provisioner-key-name", "error"),
        ("operator.yaml", "provisioner-key-conflicts", "error"),
        ("operator.yaml", "operator-owned-env", "error"),
        ("operator.yaml", "required-fields", "error"),
        ("operator.yaml", "control-plane-ref", "warning"),
        ("coder-guard.yaml", "url-format", "error"),
        ("coder-guard.yaml", "banner-color", "error"),
        ("coder-guard.yaml", "secret-ref", "warning"),
        ("coder-guard.yaml", "organization-name", "error"),
        ("coder-guard.yaml", "regex-compiles", "error"),
        ("coder-guard.yaml", "ai-provider-name", "error"),
        ("coder-guard.yaml", "required-fields", "error"),
        ("coder-guard.yaml", "provisioner-key-name", "error"),
        ("coder-helm.yaml", "ai-provider-env-consistency", "error"),
        ("provisioner-deployment.yaml", "provisioner-key-conflicts", "error"),
        ("provisioner-deployment.yaml", "provisioner-daemon-name", "error"),
    ];
    for (file, rule, severity) in expect {
        assert!(
            got.iter().any(|g| g == &(file.to_owned(), rule.to_owned(), severity.to_owned())),
            "missing {severity} {rule} in {file}; got {got:#?}"
        );
    }
    // Lines point at the offending field: the reserved key name in operator.yaml.
    let psk = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "provisioner-key-name" && f["file"].as_str().unwrap().ends_with("operator.yaml"))
        .unwrap();
    let text = std::fs::read_to_string(repo().join("examples/bad/operator.yaml")).unwrap();
    let line = text.lines().nth(psk["line"].as_u64().unwrap() as usize - 1).unwrap();
    assert!(line.contains("name: PSK"), "line {} is {line:?}", psk["line"]);
}

#[test]
fn examples_with_each_bad_manifest_fixed_pass() {
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["good", "bad"] {
        std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo().join("examples").join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, tmp.path().join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    for entry in std::fs::read_dir(repo().join("tests/fixtures/fixed")).unwrap() {
        let path = entry.unwrap().path();
        let target = tmp.path().join("bad").join(path.file_name().unwrap());
        assert!(target.exists(), "fixed {} has no bad counterpart", path.display());
        std::fs::copy(&path, target).unwrap();
    }
    let (code, report) = check_json(&["."], tmp.path());
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["findings"], serde_json::json!([]));
}

#[test]
fn operator_samples_report_only_the_unverifiable_secret() {
    let samples = support::reference_dir().join("coder-k8s/samples");
    let (code, report) = check_json(&[samples.to_str().unwrap()], &repo());
    assert_eq!(code, 0, "{report:#}");
    let got = findings(&report);
    assert_eq!(got, [("coderworkspaceproxy.yaml".to_owned(), "secret-ref".to_owned(), "warning".to_owned())]);
    assert_eq!(report["summary"]["objectsChecked"], 3);
}

#[test]
fn stdin_list_kinds_and_assumed_secrets() {
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "coderd.coder.com/v1alpha1", "kind": "CoderInstance", "metadata": {"name": "i", "namespace": "ns"},
         "spec": {"url": "https://coder.example.com", "tokenSecretRef": {"name": "tok"}}}]}"#;
    let check = |extra: &[&str]| {
        let mut child = bin()
            .args(["check", "-", "--output", "json"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // A usage error exits before reading stdin; the write may then hit a closed pipe.
        let _ = child.stdin.take().unwrap().write_all(list.as_bytes());
        let o = child.wait_with_output().unwrap();
        (o.status.code().unwrap(), serde_json::from_slice::<Value>(&o.stdout).unwrap_or(Value::Null))
    };
    let (code, report) = check(&[]);
    assert_eq!(code, 0);
    assert_eq!(report["findings"][0]["rule"], "secret-ref");
    assert_eq!(report["findings"][0]["path"], "spec.tokenSecretRef.name");
    assert_eq!(report["findings"][0]["file"], "-");
    assert_eq!(check(&["--assume-secret", "ns/tok:token"]).1["findings"], serde_json::json!([]));
    assert_eq!(check(&["--strict-refs"]).0, 1, "unverifiable references deny with --strict-refs");
    assert_eq!(check(&["--fail-on-warn"]).0, 1);
    assert_eq!(check(&["--assume-secret", "ns/"]).0, 2, "malformed flag is a usage error");
}

#[test]
fn bad_input_is_reported_and_the_rest_still_checked() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a-broken.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n labels: b\n");
    write(tmp.path(), "b-nokind.yaml", "metadata:\n  name: x\n");
    std::fs::write(tmp.path().join("c-binary.yaml"), b"\x00\x01\x02").unwrap();
    write(
        tmp.path(),
        "d-real.yaml",
        "apiVersion: coderd.coder.com/v1alpha1\nkind: CoderAIProvider\nmetadata:\n  name: p\nspec:\n  instanceRef: {name: i}\n  name: Not_Valid\n  type: openai\n  baseURL: https://api.openai.com/v1/\n",
    );
    let (code, report) = check_json(&[".", "does-not-exist.yaml"], tmp.path());
    assert_eq!(code, 2, "input errors exit 2");
    let errors: Vec<(String, Value)> = report["inputErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["file"].as_str().unwrap().rsplit('/').next().unwrap().to_owned(), e["line"].clone()))
        .collect();
    assert!(errors.contains(&("a-broken.yaml".into(), serde_json::json!(5))), "{errors:?}");
    assert!(errors.contains(&("b-nokind.yaml".into(), serde_json::json!(1))), "{errors:?}");
    assert!(errors.iter().any(|(f, _)| f == "c-binary.yaml"), "{errors:?}");
    assert!(errors.iter().any(|(f, _)| f == "does-not-exist.yaml"), "{errors:?}");
    assert!(findings(&report).iter().any(|(f, r, _)| f == "d-real.yaml" && r == "ai-provider-name"));
}

#[test]
fn several_outputs_in_one_run_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let sarif = tmp.path().join("out.sarif");
    let junit = tmp.path().join("out.xml");
    let args = |s: &Path, j: &Path| {
        vec![
            "check".to_owned(),
            "examples/bad".to_owned(),
            "-o".to_owned(),
            format!("sarif={}", s.display()),
            "-o".to_owned(),
            format!("junit={}", j.display()),
            "-o".to_owned(),
            "github".to_owned(),
        ]
    };
    let first = bin().args(args(&sarif, &junit)).current_dir(repo()).output().unwrap();
    assert_eq!(first.status.code(), Some(1));
    assert!(stdout(&first).contains("::error file="), "{}", stdout(&first));
    let sarif_doc: Value = serde_json::from_str(&std::fs::read_to_string(&sarif).unwrap()).unwrap();
    assert_eq!(sarif_doc["version"], "2.1.0");
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<testsuite"));
    let (sarif2, junit2) = (tmp.path().join("2.sarif"), tmp.path().join("2.xml"));
    let second = bin().args(args(&sarif2, &junit2)).current_dir(repo()).output().unwrap();
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(std::fs::read(&sarif).unwrap(), std::fs::read(&sarif2).unwrap());
    assert_eq!(std::fs::read(&junit).unwrap(), std::fs::read(&junit2).unwrap());
    assert_eq!(run(&["check", "examples/bad", "-o", "yaml"]).status.code(), Some(2));
}

const CODERD_V1: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: coder\n  namespace: coder\nspec:\n  template:\n    spec:\n      containers:\n      - name: coder\n        image: ghcr.io/coder/coder:v2.34.0\n        env:\n        - name: CODER_AI_GATEWAY_PROVIDER_0_TYPE\n          value: openai\n        - name: CODER_AI_GATEWAY_PROVIDER_0_BASE_URL\n          value: https://api.openai.com/v1/\n";

#[test]
fn previous_and_base_turn_matching_objects_into_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git").args(args).current_dir(tmp.path()).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.email", "t@example.com"]);
    git(&["config", "user.name", "t"]);
    std::fs::create_dir(tmp.path().join("deploy")).unwrap();
    write(&tmp.path().join("deploy"), "coder.yaml", CODERD_V1);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "v1"]);
    let changed = CODERD_V1.replace("https://api.openai.com/v1/", "https://openai-proxy.example.com/v1/");
    write(&tmp.path().join("deploy"), "coder.yaml", &changed);
    write(tmp.path(), "old.yaml", CODERD_V1);

    // As a CREATE the changed base URL is fine.
    let (code, report) = check_json(&["deploy"], tmp.path());
    assert_eq!((code, findings(&report)), (0, vec![]));
    // Against the committed revision or a previous file it is a frozen-env change.
    for extra in [&["--base", "HEAD"][..], &["--previous", "old.yaml"][..]] {
        let mut args = vec!["deploy"];
        args.extend_from_slice(extra);
        let (code, report) = check_json(&args, tmp.path());
        assert_eq!(code, 1, "{extra:?}: {report:#}");
        assert!(findings(&report).iter().any(|(_, r, s)| r == "ai-provider-env-frozen" && s == "error"), "{report:#}");
    }
    let (code, report) = check_json(&["deploy", "--base", "no-such-rev"], tmp.path());
    assert_eq!(code, 2, "{report:#}");
}

#[test]
fn config_file_sets_modes_and_reports_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write(tmp.path(), "c.yaml", "rules:\n  provisioner-key-name: warn\n  url-format: off\n");
    let bad = repo().join("examples/bad/coder-guard.yaml");
    let (_, report) = check_json(&[bad.to_str().unwrap(), "--config", config.to_str().unwrap()], tmp.path());
    let got = findings(&report);
    assert!(got.iter().any(|(_, r, s)| r == "provisioner-key-name" && s == "warning"), "{got:?}");
    assert!(!got.iter().any(|(_, r, _)| r == "url-format"), "{got:?}");
    let broken = write(tmp.path(), "broken.yaml", "rules:\n  url-format: sometimes\n");
    let o = run(&["check", "examples/good", "--config", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.yaml:2:") && err.contains("sometimes"), "{err}");
}

#[test]
fn rules_lists_and_explains() {
    let list = stdout(&run(&["rules"]));
    for id in ["secret-ref", "provisioner-key-name", "ai-provider-env-frozen", "banner-color"] {
        assert!(list.contains(id), "{id} missing from:\n{list}");
    }
    let one = run(&["rules", "provisioner-key-name"]);
    assert_eq!(one.status.code(), Some(0));
    assert!(stdout(&one).contains("Default mode"));
    let unknown = run(&["rules", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("coder-guard rules"));
}

const LITERAL_SECRETS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: prov, namespace: s}
spec:
  template:
    spec:
      containers:
      - name: coder
        image: ghcr.io/coder/coder:v2.34.0
        args: [provisioner, start, --psk, psk-SECRET-0]
        env:
        - {name: CODER_PROVISIONER_DAEMON_KEY, value: pk-SECRET-1}
        - {name: CODER_PROVISIONER_DAEMON_PSK, value: psk-SECRET-2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coderd, namespace: s}
spec:
  template:
    spec:
      containers:
      - name: coder
        image: ghcr.io/coder/coder:v2.34.0
        env:
        - {name: CODER_AIBRIDGE_PROVIDER_0_KEY, value: sk-SECRET-3}
        - {name: CODER_AI_GATEWAY_PROVIDER_1_TYPE, value: sk-SECRET-5}
---
apiVersion: coder.com/v1alpha1
kind: CoderControlPlane
metadata: {name: cp, namespace: s}
spec:
  extraEnv:
  - {name: CODER_PG_CONNECTION_URL, value: "postgres://u:SECRET-4@db/coder"}
  - {name: CODER_PG_CONNECTION_URL, value: "postgres://u:SECRET-4@db/coder"}
"#;

#[test]
fn no_secret_value_reaches_any_report() {
    // Every Secret value in the examples, as written in stringData.
    let mut values = Vec::new();
    for dir in ["examples/good", "examples/bad"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for doc in coder_guard::yaml::parse_documents(&text).0 {
                if doc.value["kind"] == "Secret" {
                    for v in doc.value["stringData"].as_object().unwrap().values() {
                        values.push(v.as_str().unwrap().to_owned());
                    }
                }
            }
        }
    }
    assert!(values.len() >= 5, "the examples hold Secrets");
    // Credentials written as literal env values and flags, in objects that have findings.
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "literal.yaml", LITERAL_SECRETS);
    values.extend(["SECRET-0", "SECRET-1", "SECRET-2", "SECRET-3", "SECRET-4", "SECRET-5"].map(String::from));
    let (_, report) = check_json(&["literal.yaml"], tmp.path());
    let rules: Vec<String> = findings(&report).into_iter().map(|(_, r, _)| r).collect();
    for rule in ["provisioner-key-conflicts", "ai-provider-env-consistency", "env-duplicates"] {
        assert!(rules.iter().any(|r| r == rule), "{rule} should fire on literal.yaml: {rules:?}");
    }
    let literal = tmp.path().join("literal.yaml");
    for format in ["text", "json", "junit", "sarif", "github"] {
        let out = stdout(&run(&["check", "examples", literal.to_str().unwrap(), "--output", format]));
        for v in &values {
            assert!(!out.contains(v.as_str()), "{format} output contains a Secret value");
        }
    }
}

#[test]
fn helm_template_and_kustomize_output_as_they_come() {
    let helm = repo().join("tests/fixtures/rendered/helm-template.yaml");
    let (code, report) = check_json(&[helm.to_str().unwrap(), "-n", "coder"], &repo());
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["summary"]["documents"], 2);
    let f = &report["findings"];
    // The provider gap is found in the rendered Deployment, at its line, in the -n namespace;
    // the DB Secret the chart expects is unverifiable.
    let gap = f.as_array().unwrap().iter().find(|f| f["rule"] == "ai-provider-env-consistency").unwrap();
    assert_eq!(gap["namespace"], "coder");
    let text = std::fs::read_to_string(&helm).unwrap();
    let line = text.lines().nth(gap["line"].as_u64().unwrap() as usize - 1).unwrap();
    assert!(line.contains("CODER_AI_GATEWAY_PROVIDER_2_TYPE"), "{line}");
    assert!(findings(&report).iter().any(|(_, r, s)| r == "secret-ref" && s == "warning"));

    let kustomize = repo().join("tests/fixtures/rendered/kustomize-build.yaml");
    let (code, report) = check_json(&[kustomize.to_str().unwrap()], &repo());
    assert_eq!(code, 1, "{report:#}");
    let rules: Vec<String> = findings(&report).into_iter().map(|(_, r, _)| r).collect();
    assert_eq!(rules, ["provisioner-key-name"], "only the reserved name is wrong: {report:#}");
}
