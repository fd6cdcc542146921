//! `helm lint` and `helm template`: what the chart renders, against what the code generates.

use super::*;

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
    pub fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
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
