//! Reading rendered objects, and the RBAC they grant.

use super::*;

pub fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn find<'a>(objects: &'a [Value], kind_name: &str) -> Option<&'a Value> {
    let (k, n) = kind_name.split_once('/').map_or((kind_name, None), |(k, n)| (k, Some(n)));
    objects.iter().find(|o| kind(o) == k && n.is_none_or(|n| name(o) == n))
}

pub fn deployment(objects: &[Value]) -> &Value {
    find(objects, "Deployment").expect("a Deployment")
}

pub fn container_args(workload: &Value) -> Vec<String> {
    let args = &workload["spec"]["template"]["spec"]["containers"][0]["args"];
    args.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

/// What the code needs for the rendered Deployment's flags (and the hook Job, if any).
pub fn rbac_options(objects: &[Value], namespace: &str) -> RbacOptions {
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
pub type Atom = (String, String, String, String);

pub fn atoms(rules: &Value) -> BTreeSet<Atom> {
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
pub fn chart_grants(objects: &[Value]) -> BTreeMap<(Scope, String), BTreeSet<Atom>> {
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

pub fn code_grants(options: &RbacOptions) -> BTreeMap<(Scope, String), BTreeSet<Atom>> {
    let mut out: BTreeMap<(Scope, String), BTreeSet<Atom>> = BTreeMap::new();
    for grant in rbac::grants(options) {
        let rules = serde_json::to_value(&grant.rules).unwrap();
        out.entry((grant.scope, grant.service_account)).or_default().extend(atoms(&rules));
    }
    out
}

pub fn coder_guard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coder-guard")).args(args).env_remove("CODER_GUARD_CONFIG").output().unwrap()
}
