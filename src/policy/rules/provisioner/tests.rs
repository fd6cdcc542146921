use serde_json::{Value, json};

use crate::policy::finding::Severity::{self, Error, Warning};
use crate::policy::fixtures::*;

const CONFLICTS: &str = "provisioner-key-conflicts";
const OWNED: &str = "operator-owned-env";
const DUPS: &str = "env-duplicates";
const PSK_VALUE: &str = "psk-s3cr3t-4f9a";
const KEY_VALUE: &str = "key-s3cr3t-77b1";

fn prov(env: Value, args: Value) -> Value {
    let spec = json!({"controlPlaneRef": {"name": "cp"}, "extraEnv": env, "extraArgs": args});
    provisioner("p", spec)
}

/// A Deployment running `coder provisioner start ARGS` with `env`.
fn daemon(env: Value, args: &[&str]) -> Value {
    let args: Vec<&str> = ["provisioner", "start"].iter().chain(args).copied().collect();
    let c = json!({"name": "d", "image": "ghcr.io/coder/coder", "command": ["coder"], "args": args, "env": env});
    deployment("prov", json!([c]))
}

fn v(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn from_secret(name: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": "k", "key": "key"}}})
}

fn at(sev: Severity, path: &str) -> (Severity, String) {
    (sev, path.to_owned())
}

fn messages(e: &crate::policy::Evaluation, rule: &str) -> Vec<String> {
    let mine = e.findings.iter().filter(|f| f.rule == rule);
    mine.map(|f| f.message.clone()).collect()
}

/// Paths `rule` denies when `object` is created.
fn deny(object: &Value, rule: &str) -> Vec<String> {
    denied(&create(object, &[]), rule)
}

/// True when `rule` reports nothing when `object` is created.
fn clean(object: &Value, rule: &str) -> bool {
    hits(&create(object, &[]), rule).is_empty()
}

#[test]
fn provisioner_flag_spellings() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--org", "x"], &["spec.extraArgs[0]"]),
        (&["--org=x"], &["spec.extraArgs[0]"]),
        (&["-O", "x"], &["spec.extraArgs[0]"]),
        (&["-O=x"], &["spec.extraArgs[0]"]),
        (&["-Ox"], &["spec.extraArgs[0]"]),
        (&["--verbose", "--tag", "a=b"], &["spec.extraArgs[1]"]),
        (&["--tag=a=b", "-t", "c=d"], &["spec.extraArgs[0]", "spec.extraArgs[1]"]),
        (&["--psk", "x"], &["spec.extraArgs[0]"]),
        (&["--org", "-t"], &["spec.extraArgs[0]"]), // a flag's value is not a flag
        (&["--organization-x", "--tags", "--pskx"], &[]),
        (&["--", "--org", "x"], &[]),
    ];
    for (args, want) in cases {
        let e = create(&prov(json!([]), json!(args)), &[]);
        assert_eq!(denied(&e, CONFLICTS), *want, "{args:?}");
    }
}

#[test]
fn provisioner_env_conflicts() {
    let env = json!([
        v("CODER_ORGANIZATION", "eng"),
        v("CODER_PROVISIONERD_TAGS", "a=b"),
        from_secret("CODER_PROVISIONER_DAEMON_PSK"),
        v("CODER_VERBOSE", "true"),
    ]);
    let e = create(&prov(env, json!([])), &[]);
    let want = [0, 1, 2].map(|i| at(Error, &format!("spec.extraEnv[{i}].name")));
    assert_eq!(hits(&e, CONFLICTS), want);
    let msgs = messages(&e, CONFLICTS);
    assert!(msgs[0].contains("cannot provide --org value with --psk or --key flags"));
    assert!(msgs[1].contains("cannot provide tags when using provisioner key"));
    assert!(msgs[1].contains("CoderProvisioner spec.tags"), "{}", msgs[1]);
    assert!(msgs[2].contains("cannot provide both provisioner key --key and pre-shared key"));
    // The last entry is in force: an empty value unsets the variable.
    let unset = json!([v("CODER_ORGANIZATION", "eng"), v("CODER_ORGANIZATION", "")]);
    assert!(clean(&prov(unset, json!([])), CONFLICTS));
    let reset = json!([v("CODER_ORGANIZATION", ""), v("CODER_ORGANIZATION", "eng")]);
    assert_eq!(deny(&prov(reset, json!([])), CONFLICTS), ["spec.extraEnv[1].name"]);
}

#[test]
fn deployment_daemons_with_a_key() {
    let c = "spec.template.spec.containers[0]";
    let key = from_secret("CODER_PROVISIONER_DAEMON_KEY");
    let org = v("CODER_ORGANIZATION", "eng");
    // Key from env: env and flag conflicts are denied.
    let d = daemon(json!([key, org]), &["--tag", "a=b"]);
    assert_eq!(deny(&d, CONFLICTS), [format!("{c}.env[1].name"), format!("{c}.args[2]")]);
    // Key from a flag.
    let d = daemon(json!([org]), &["--key=abc"]);
    assert_eq!(deny(&d, CONFLICTS), [format!("{c}.env[0].name")]);
    // No key (or an empty one): PSK daemons may set an organization and tags.
    assert!(clean(&daemon(json!([org]), &["-t", "a=b"]), CONFLICTS));
    let empty = daemon(json!([v("CODER_PROVISIONER_DAEMON_KEY", ""), org]), &[]);
    assert!(clean(&empty, CONFLICTS));
    // A container that is not a daemon is left alone.
    let web = json!([{"name": "web", "image": "nginx", "args": ["--org", "x", "--key", "k"]}]);
    assert!(clean(&deployment("web", web), CONFLICTS));
    // Updates are checked too.
    let bad = daemon(json!([key]), &["--psk", "x"]);
    let e = update(&daemon(json!([key]), &[]), &bad, &[]);
    assert_eq!(denied(&e, CONFLICTS), [format!("{c}.args[2]")]);
}

#[test]
fn operator_owned_provisioner_env_and_args() {
    let env =
        json!([v("CODER_URL", "https://x"), v("CODER_VERBOSE", "1"), from_secret("CODER_PROVISIONER_DAEMON_KEY")]);
    let args = json!(["--url=https://x", "--verbose", "--key", "abc", "--keys"]);
    let e = create(&prov(env, args), &[]);
    let want = ["extraEnv[0].name", "extraArgs[0]", "extraEnv[2].name", "extraArgs[2]"];
    assert_eq!(hits(&e, OWNED), want.map(|p| at(Error, &format!("spec.{p}"))));
    assert!(messages(&e, OWNED)[0].contains("spec.controlPlaneRef"));
    let fine = prov(json!([v("CODER_VERBOSE", "1")]), json!(["--verbose"]));
    assert!(clean(&fine, OWNED));
}

#[test]
fn operator_owned_proxy_env() {
    let px = |env: Value| workspace_proxy("px", json!({ "extraEnv": env }));
    let bad = px(json!([v("CODER_PROXY_SESSION_TOKEN", "t"), v("CODER_PRIMARY_ACCESS_URL", "u")]));
    assert_eq!(deny(&bad, OWNED), ["spec.extraEnv[1].name", "spec.extraEnv[0].name"]);
    assert!(clean(&px(json!([v("CODER_URL", "u")])), OWNED));
    let flags = workspace_proxy("px", json!({"extraArgs": ["--proxy-session-token=x"]}));
    assert_eq!(deny(&flags, OWNED), ["spec.extraArgs[0]"]);
}

#[test]
fn control_plane_single_names_and_warnings() {
    let cp = |env: Value| control_plane("cp", json!({ "extraEnv": env }));
    let pg = from_secret("CODER_PG_CONNECTION_URL");
    let (url, verbose) = (v("CODER_ACCESS_URL", "https://a"), v("CODER_VERBOSE", "1"));
    let e = create(&cp(json!([url, verbose, url, verbose, pg, pg])), &[]);
    let want = [(Error, 2), (Warning, 3), (Error, 5)];
    assert_eq!(hits(&e, DUPS), want.map(|(s, i)| at(s, &format!("spec.extraEnv[{i}].name"))));
    assert!(messages(&e, DUPS)[0].contains("configured more than once"));
    assert!(clean(&cp(json!([url, v("CODER_PG_CONNECTION_URL", "postgres://x")])), DUPS));
}

#[test]
fn pg_url_needs_a_readable_source_unless_operator_access_is_off() {
    let name = "CODER_PG_CONNECTION_URL";
    let config_map = json!({"name": name, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "u"}}});
    let cases = [
        (config_map, false, vec!["spec.extraEnv[0].valueFrom"]),
        (v(name, ""), false, vec!["spec.extraEnv[0].value"]),
        (json!({ "name": name }), false, vec!["spec.extraEnv[0].value"]),
        (json!({ "name": name }), true, vec![]),
        (v(name, "postgres://db"), false, vec![]),
        (from_secret(name), false, vec![]),
    ];
    for (entry, disabled, want) in cases {
        let spec = json!({"extraEnv": [entry], "operatorAccess": {"disabled": disabled}});
        assert_eq!(deny(&control_plane("cp", spec), DUPS), want, "{entry}");
    }
}

#[test]
fn duplicate_warnings_in_other_kinds() {
    let twice = json!([v("CODER_VERBOSE", "1"), v("CODER_VERBOSE", "0")]);
    let e = create(&prov(twice.clone(), json!([])), &[]);
    assert_eq!(hits(&e, DUPS), [at(Warning, "spec.extraEnv[1].name")]);
    let px = workspace_proxy("px", json!({ "extraEnv": twice }));
    assert_eq!(warned(&create(&px, &[]), DUPS), ["spec.extraEnv[1].name"]);
    // A repeated access URL outside a control plane is only a warning.
    let c = |n: &str, env: Value| json!({"name": n, "image": "ghcr.io/coder/coder", "env": env});
    let env = json!([v("CODER_ACCESS_URL", "a"), v("X", "1"), v("CODER_ACCESS_URL", "b")]);
    let e = create(&deployment("coder", json!([c("coder", env)])), &[]);
    let want = at(Warning, "spec.template.spec.containers[0].env[2].name");
    assert_eq!(hits(&e, DUPS), [want]);
    // Non-coder Deployments, and names in separate containers, are not compared.
    let plain = json!([v("VERBOSE", "1"), v("VERBOSE", "0")]);
    assert!(clean(&deployment("web", json!([{"name": "web", "image": "nginx", "env": plain}])), DUPS));
    let one = json!([v("CODER_X", "1")]);
    assert!(clean(&deployment("coder", json!([c("a", one.clone()), c("b", one)])), DUPS));
}

#[test]
fn messages_never_contain_secret_values() {
    let psk = v("CODER_PROVISIONER_DAEMON_PSK", PSK_VALUE);
    let env = json!([psk, v("CODER_PROVISIONER_DAEMON_KEY", KEY_VALUE), psk]);
    let (psk_arg, key_arg) = (format!("--psk={PSK_VALUE}"), format!("--key={KEY_VALUE}"));
    let args = json!([psk_arg, "--key", KEY_VALUE, key_arg]);
    let evals = [create(&prov(env.clone(), args), &[]), create(&daemon(env, &[&psk_arg, &key_arg]), &[])];
    for e in &evals {
        assert!(e.findings.len() >= 3, "{:?}", e.findings);
        for f in &e.findings {
            let leaked = f.message.contains(PSK_VALUE) || f.message.contains(KEY_VALUE);
            assert!(!leaked, "{f}");
        }
    }
}
