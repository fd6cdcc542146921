//! coder-guard's CRDs and the Coder operator's CRDs in a real kube-apiserver: installed and
//! discoverable, accepting the examples and the operator's samples, and rejecting what their
//! schemas and CEL rules forbid with the message `kubectl` shows a user.
//!
//! Skipped (with `SKIP: …` on stderr) where Go is not installed, unless `CI=true`.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use support::apiserver::{self, ApiServer};
use support::text;

/// Namespace the examples and samples are written for.
const SOURCE_NAMESPACE: &str = "coder";

#[test]
fn all_crds_are_established_and_our_kinds_are_discoverable() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let mut names = Vec::new();
    for file in apiserver::our_crd_files().iter().chain(&apiserver::operator_crd_files()) {
        let doc = coder_guard::yaml::parse_single(&std::fs::read_to_string(file).unwrap()).unwrap().value;
        names.push(doc["metadata"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names.len(), 7, "4 coder-guard CRDs and 3 operator CRDs: {names:?}");
    for name in &names {
        let established = api.kubectl_ok([
            "get",
            "crd",
            name,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#,
        ]);
        assert_eq!(established, "True", "{name} is not Established");
    }

    let table = api.kubectl_ok(["api-resources", "--api-group=coderd.coder.com"]);
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 4, "kubectl api-resources --api-group=coderd.coder.com:\n{table}");
    for (plural, short, kind) in [
        ("coderaiproviders", "cdaip", "CoderAIProvider"),
        ("coderinstances", "cdi", "CoderInstance"),
        ("coderorganizations", "cdorg", "CoderOrganization"),
        ("coderprovisionerkeys", "cdpk", "CoderProvisionerKey"),
    ] {
        // NAME SHORTNAMES APIVERSION NAMESPACED KIND
        let want = [plural, short, "coderd.coder.com/v1alpha1", "true", kind];
        assert!(rows.iter().any(|r| r[..] == want), "{want:?} not listed by kubectl api-resources:\n{table}");
    }
}

#[test]
fn good_examples_pass_server_dry_run_and_are_stored() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let ns = api.namespace("good-examples");
    let tmp = tempfile::tempdir().unwrap();
    let objects = copy_into_namespace(&support::repo_dir().join("examples/good"), &ns, tmp.path());
    assert!(objects >= 15, "examples/good holds {objects} objects");
    let dir = tmp.path().to_str().unwrap();

    let dry = ok(api.kubectl(["apply", "--dry-run=server", "-f", dir]));
    assert_eq!(dry.lines().filter(|l| l.ends_with(" created (server dry run)")).count(), objects, "{dry}");
    assert_eq!(api.kubectl_ok(["get", "-f", dir, "-o", "name", "--ignore-not-found"]), "", "dry run stored objects");

    let real = ok(api.kubectl(["apply", "-f", dir]));
    assert_eq!(real.lines().filter(|l| l.ends_with(" created")).count(), objects, "{real}");
    assert_eq!(api.kubectl_ok(["get", "-f", dir, "-o", "name"]).lines().count(), objects);

    // The URL printer column, under its header.
    let table = api.kubectl_ok(["get", "coderinstances", "-n", &ns]);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let column = header.find("URL").unwrap_or_else(|| panic!("no URL column:\n{table}"));
    let main = lines.find(|l| l.starts_with("main ")).unwrap_or_else(|| panic!("no row for main:\n{table}"));
    assert!(main[column..].starts_with("https://coder.example.com "), "URL column of main:\n{table}");
}

#[test]
fn operator_samples_apply() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let ns = api.namespace("operator-samples");
    let tmp = tempfile::tempdir().unwrap();
    let objects = copy_into_namespace(&support::reference_dir().join("coder-k8s/samples"), &ns, tmp.path());
    assert_eq!(objects, 3);
    let dir = tmp.path().to_str().unwrap();

    ok(api.kubectl(["apply", "--dry-run=server", "-f", dir]));
    ok(api.kubectl(["apply", "-f", dir]));
    let stored =
        api.kubectl_ok(["get", "codercontrolplanes,coderprovisioners,coderworkspaceproxies", "-n", &ns, "-o", "name"]);
    assert_eq!(
        stored.lines().collect::<Vec<_>>(),
        [
            "codercontrolplane.coder.com/codercontrolplane-sample",
            "coderprovisioner.coder.com/coderprovisioner-sample",
            "coderworkspaceproxy.coder.com/coderworkspaceproxy-sample",
        ]
    );
}

/// One schema or CEL rule: `good` passes a server dry run; `bad` (good with one change) is
/// refused on a real apply, and kubectl's error names the field and says `says`.
struct Rejection {
    rule: &'static str,
    good: Value,
    bad: Value,
    says: &'static [&'static str],
}

fn rejections(ns: &str) -> Vec<Rejection> {
    let instance = object(
        "CoderInstance",
        "main",
        ns,
        json!({"url": "https://coder.example.com", "tokenSecretRef": {"name": "token"}}),
    );
    let key = object("CoderProvisionerKey", "builds", ns, json!({"instanceRef": {"name": "main"}, "name": "builds"}));
    let org = object("CoderOrganization", "data", ns, json!({"instanceRef": {"name": "main"}, "name": "data"}));
    let bedrock = object(
        "CoderAIProvider",
        "bedrock",
        ns,
        json!({
            "instanceRef": {"name": "main"},
            "name": "bedrock",
            "type": "bedrock",
            "baseURL": "https://bedrock-runtime.eu-west-1.amazonaws.com",
            "bedrock": {"region": "eu-west-1"},
        }),
    );
    let refs = |n: usize| Value::Array((0..n).map(|i| json!({"name": format!("key-{i}")})).collect());
    let openai = object(
        "CoderAIProvider",
        "openai",
        ns,
        json!({
            "instanceRef": {"name": "main"},
            "name": "openai",
            "type": "openai",
            "baseURL": "https://api.openai.com/v1/",
            "apiKeySecretRefs": refs(5),
        }),
    );
    let banner = |color: &str| {
        let mut o = instance.clone();
        o["metadata"]["name"] = json!("banner");
        o["spec"]["appearance"] = json!({"announcementBanners": [{"message": "hi", "backgroundColor": color}]});
        o
    };
    vec![
        Rejection {
            rule: "CoderInstance: exactly one of url or controlPlaneRef",
            bad: with(&instance, "/spec/controlPlaneRef", json!({"name": "coder"})),
            good: instance.clone(),
            says: &["spec: Invalid value", "set exactly one of url or controlPlaneRef"],
        },
        Rejection {
            rule: "CoderProvisionerKey: psk is reserved in any letter case",
            bad: with(&key, "/spec/name", json!("PSK")),
            good: key.clone(),
            says: &["spec.name: Invalid value", "built-in, user-auth and psk are reserved provisioner key names"],
        },
        Rejection {
            rule: "CoderOrganization: default is reserved",
            bad: with(&org, "/spec/name", json!("default")),
            good: org.clone(),
            says: &["spec.name: Invalid value", "new, create and default are reserved organization names"],
        },
        Rejection {
            rule: "CoderOrganization: name maxLength 32",
            bad: with(&org, "/spec/name", json!("a".repeat(33))),
            good: with(&org, "/spec/name", json!("a".repeat(32))),
            says: &["spec.name: Too long: may not be more than 32 bytes"],
        },
        Rejection {
            rule: "CoderAIProvider: type bedrock requires the bedrock block",
            bad: without(&bedrock, "bedrock"),
            good: bedrock.clone(),
            says: &["spec: Invalid value", "type bedrock requires the bedrock block"],
        },
        Rejection {
            rule: "CoderAIProvider: apiKeySecretRefs maxItems 5",
            bad: with(&openai, "/spec/apiKeySecretRefs", refs(6)),
            good: openai.clone(),
            says: &["spec.apiKeySecretRefs: Too many: 6: must have at most 5 items"],
        },
        Rejection {
            rule: "CoderInstance: banner backgroundColor pattern",
            bad: banner("red"),
            good: banner("#004C99"),
            says: &[
                "spec.appearance.announcementBanners[0].backgroundColor: Invalid value: \"red\"",
                "^#[0-9a-fA-F]{6}$",
            ],
        },
    ]
}

#[test]
fn schema_and_cel_rules_reject_invalid_objects() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let ns = api.namespace("rejections");
    let mut failures = Vec::new();
    for case in rejections(&ns) {
        let good = api.kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &case.good.to_string());
        if !good.status.success() {
            failures.push(format!("{}: the valid object was refused:\n{}", case.rule, text(&good.stderr)));
            continue;
        }
        let bad = api.kubectl_stdin(["apply", "-f", "-"], &case.bad.to_string());
        let stderr = text(&bad.stderr);
        if bad.status.success() {
            failures.push(format!("{}: accepted:\n{}", case.rule, text(&bad.stdout)));
        } else if let Some(missing) = case.says.iter().find(|s| !stderr.contains(*s)) {
            failures.push(format!("{}: kubectl's error lacks {missing:?}:\n{stderr}", case.rule));
        }
    }
    assert!(failures.is_empty(), "{} of the rules misbehaved:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn an_ai_providers_name_is_immutable() {
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let ns = api.namespace("immutable-name");
    let provider = object(
        "CoderAIProvider",
        "anthropic",
        &ns,
        json!({
            "instanceRef": {"name": "main"},
            "name": "anthropic",
            "type": "anthropic",
            "baseURL": "https://api.anthropic.com/",
        }),
    );
    ok(api.kubectl_stdin(["apply", "-f", "-"], &provider.to_string()));
    // Other fields may change.
    let renamed_display = with(&provider, "/spec/displayName", json!("Claude"));
    ok(api.kubectl_stdin(["apply", "-f", "-"], &renamed_display.to_string()));

    let renamed = with(&renamed_display, "/spec/name", json!("claude"));
    let out = api.kubectl_stdin(["apply", "-f", "-"], &renamed.to_string());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "changing spec.name was accepted:\n{}", text(&out.stdout));
    assert!(stderr.contains("spec.name: Invalid value") && stderr.contains("name is immutable"), "{stderr}");
    let stored = api.kubectl_ok(["get", "coderaiprovider", "anthropic", "-n", &ns, "-o", "jsonpath={.spec.name}"]);
    assert_eq!(stored, "anthropic");
}

// === helpers ===

/// A `coderd.coder.com/v1alpha1` object.
fn object(kind: &str, name: &str, ns: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "coderd.coder.com/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// `base` with the value at JSON pointer `pointer` set (its parent must exist).
fn with(base: &Value, pointer: &str, value: Value) -> Value {
    let mut out = base.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    out.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.to_owned(), value);
    out
}

/// `base` without `spec.<field>`.
fn without(base: &Value, field: &str) -> Value {
    let mut out = base.clone();
    out["spec"].as_object_mut().unwrap().remove(field);
    out
}

/// Copies the `*.yaml` files of `src` into `dest`, moving every object from namespace `coder`
/// to `ns`. Returns the number of objects.
fn copy_into_namespace(src: &Path, ns: &str, dest: &Path) -> usize {
    let from = format!("namespace: {SOURCE_NAMESPACE}");
    let mut objects = 0;
    for file in support::yaml_files(src) {
        let source = std::fs::read_to_string(&file).unwrap();
        let rewritten: String = source
            .lines()
            .map(|line| match line.trim_start() {
                t if t.trim_end() == from => format!("{}namespace: {ns}\n", &line[..line.len() - t.len()]),
                _ => format!("{line}\n"),
            })
            .collect();
        let (docs, error) = coder_guard::yaml::parse_documents(&rewritten);
        assert!(error.is_none(), "{}: {error:?}", file.display());
        let docs: Vec<_> = docs.into_iter().filter(|d| !d.value.is_null()).collect();
        for doc in &docs {
            assert_eq!(
                doc.value["metadata"]["namespace"],
                ns,
                "{}: an object left in another namespace",
                file.display()
            );
        }
        objects += docs.len();
        std::fs::write(dest.join(file.file_name().unwrap()), rewritten).unwrap();
    }
    objects
}

/// stdout of a successful kubectl run; panics with stderr otherwise.
fn ok(out: Output) -> String {
    assert!(out.status.success(), "kubectl failed ({}):\n{}{}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}
