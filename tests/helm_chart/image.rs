//! The container image, and the install check NOTES.txt prints.

use super::*;

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
pub fn selects_namespace(selector: &Value, namespace: &str) -> bool {
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
