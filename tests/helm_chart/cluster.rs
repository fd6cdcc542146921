//! The chart against the real API server: dry runs, RBAC as granted, the uninstall hook.

use super::*;

/// Installs the optional integrations' CRDs (once per test binary).
pub fn install_test_crds(api: &ApiServer, helm: &Helm) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        api.install_crds(&helm.crd_files());
    });
}

pub fn label_namespace(api: &ApiServer, namespace: &str, level: &str) {
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

pub fn list(objects: &[&Value]) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string()
}

/// The Pod a workload's template makes, for a dry-run create (Pod Security admission enforces
/// on Pods; on Deployments and Jobs it only warns).
pub fn pod_of(workload: &Value, namespace: &str) -> Value {
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
pub fn can_i(api: &ApiServer, subject: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
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
pub fn can_i_resource(group: &str, resource: &str, name: &str) -> String {
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

pub const CLUSTER_SCOPED: [&str; 2] = ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"];

/// `kubectl auth can-i --list --as=subject -n namespace`: the resource rows as atoms, and the
/// non-resource rows as they are.
pub fn can_i_list(api: &ApiServer, subject: &str, namespace: &str) -> (BTreeSet<Atom>, BTreeSet<String>) {
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
pub fn covered(atom: &Atom, granted: &BTreeSet<Atom>) -> bool {
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

pub fn exists(api: &ApiServer, kind: &str) -> bool {
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
