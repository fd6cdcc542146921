use serde_json::{Value, json};

use crate::policy::Operation;
use crate::policy::fixtures::*;

fn aip(spec: Value) -> Value {
    let base = json!({"instanceRef": {"name": "main"}, "name": "p", "type": "openai", "baseURL": "https://a.b"});
    ai_provider("p", merge(base, spec))
}

fn inst(spec: Value) -> Value {
    instance("main", merge(json!({"url": "https://coder.example.com", "tokenSecretRef": {"name": "t"}}), spec))
}

fn org(spec: Value) -> Value {
    organization("acme", merge(json!({"instanceRef": {"name": "main"}}), spec))
}

fn messages(object: &Value, rule: &str) -> String {
    let e = create(object, &[]);
    e.findings.iter().filter(|f| f.rule == rule).map(|f| f.message.as_str()).collect::<Vec<_>>().join("\n")
}

/// Asserts the denied paths of `rule` for each object on CREATE.
fn table(rule: &str, cases: &[(Value, &[&str])]) {
    for (object, want) in cases {
        assert_eq!(denied(&create(object, &[]), rule), *want, "{object}\n{}", messages(object, rule));
    }
}

#[test]
fn control_plane_required_fields() {
    let cp = |spec: Value| control_plane("cp", spec);
    let ingress = |tls: Value, wildcard: Value| {
        cp(json!({"expose": {"ingress": {"host": "c.example.com", "wildcardHost": wildcard, "tls": tls}}}))
    };
    let gateway = |parent: Value| cp(json!({"expose": {"gateway": {"host": "c.example.com", "parentRefs": [parent]}}}));
    let both = json!({"ingress": {"host": "a"}, "gateway": {"host": "a", "parentRefs": [{"name": "gw"}]}});
    let env_from = |e: Value| cp(json!({"envFrom": [{"secretRef": {"name": "s"}}, e]}));
    table(
        "required-fields",
        &[
            (cp(json!({})), &[]),
            (cp(json!({"rbac": {"workspaceNamespaces": ["ws", " "]}})), &["spec.rbac.workspaceNamespaces[1]"]),
            (ingress(json!({"wildcardSecretName": "wc"}), json!(null)), &["spec.expose.ingress.wildcardHost"]),
            (ingress(json!({"wildcardSecretName": "wc"}), json!("")), &["spec.expose.ingress.wildcardHost"]),
            (ingress(json!({"wildcardSecretName": "wc"}), json!("*.c.example.com")), &[]),
            (ingress(json!({"secretName": "tls"}), json!(null)), &[]),
            (gateway(json!({"name": "gw"})), &[]),
            (gateway(json!({"name": "gw", "namespace": "infra", "sectionName": "https"})), &[]),
            (gateway(json!({"name": "gw", "namespace": ""})), &["spec.expose.gateway.parentRefs[0].namespace"]),
            (gateway(json!({"name": "gw", "sectionName": " "})), &["spec.expose.gateway.parentRefs[0].sectionName"]),
            (cp(json!({"expose": both})), &["spec.expose"]),
            (env_from(json!({"configMapRef": {"name": "c"}})), &[]),
            (env_from(json!({"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}})), &["spec.envFrom[1]"]),
        ],
    );
    let text = messages(&ingress(json!({"wildcardSecretName": "wc"}), json!(null)), "required-fields");
    assert!(text.contains("set wildcardHost"), "{text}");
}

#[test]
fn proxy_instance_and_provider_required_fields() {
    let proxy = |spec: Value| workspace_proxy("px", spec);
    let boot = |url: &str| json!({"coderURL": url, "credentialsSecretRef": {"name": "c"}});
    let token = json!({"name": "t"});
    let bare = instance("main", json!({}));
    table(
        "required-fields",
        &[
            (proxy(json!({})), &["spec.primaryAccessURL", "spec.proxySessionTokenSecretRef"]),
            (proxy(json!({"primaryAccessURL": "https://c.example.com", "proxySessionTokenSecretRef": token})), &[]),
            (proxy(json!({"bootstrap": boot("https://c.example.com")})), &[]),
            (proxy(json!({"primaryAccessURL": "", "bootstrap": boot("")})), &["spec.primaryAccessURL"]),
            (inst(json!({})), &[]),
            (inst(json!({"url": null, "tokenSecretRef": null, "controlPlaneRef": {"name": "cp"}})), &[]),
            (inst(json!({"controlPlaneRef": {"name": "cp"}})), &["spec.url"]),
            (bare, &["spec.url", "spec.tokenSecretRef"]),
            (inst(json!({"tokenSecretRef": null})), &["spec.tokenSecretRef"]),
            (aip(json!({"type": "bedrock"})), &["spec.bedrock"]),
            (aip(json!({"type": "bedrock", "bedrock": {"region": ""}})), &["spec.bedrock.region"]),
            (aip(json!({"type": "anthropic", "bedrock": {"region": " "}})), &["spec.bedrock.region"]),
            (aip(json!({"type": "bedrock", "bedrock": {"region": "us-east-1"}})), &[]),
        ],
    );
    assert!(messages(&inst(json!({"controlPlaneRef": {"name": "cp"}})), "required-fields").contains("remove spec.url"));
}

#[test]
fn urls_in_own_kinds_and_proxies() {
    let proxy = |spec: Value| workspace_proxy("px", spec);
    let logo = |url: &str| inst(json!({"appearance": {"logoURL": url}}));
    table(
        "url-format",
        &[
            (inst(json!({})), &[]),
            (inst(json!({"url": "http://10.0.0.1:3000"})), &[]),
            (inst(json!({"url": "coder.example.com"})), &["spec.url"]),
            (inst(json!({"url": "ftp://coder.example.com"})), &["spec.url"]),
            (inst(json!({"url": "https://"})), &["spec.url"]),
            (inst(json!({"url": "https://coder example.com"})), &["spec.url"]),
            (inst(json!({"url": ""})), &["spec.url"]),
            (logo("/icon/coder.svg"), &[]),
            (logo(""), &[]),
            (logo("https://cdn.example.com/logo.png"), &[]),
            (logo("logo.png"), &["spec.appearance.logoURL"]),
            (aip(json!({"baseURL": "https://api.openai.com/v1/"})), &[]),
            (aip(json!({"baseURL": "api.openai.com"})), &["spec.baseURL"]),
            (proxy(json!({"primaryAccessURL": "https://c.example.com"})), &[]),
            (proxy(json!({"primaryAccessURL": "c.example.com"})), &["spec.primaryAccessURL"]),
            (
                proxy(json!({"bootstrap": {"coderURL": "", "credentialsSecretRef": {"name": "c"}}})),
                &["spec.bootstrap.coderURL"],
            ),
        ],
    );
    let text = messages(&inst(json!({"url": "ftp://admin:hunter2@coder.example.com"})), "url-format");
    assert!(text.contains("https://coder.example.com") && !text.contains("hunter2"), "{text}");
}

#[test]
fn urls_in_env() {
    let env = |name: &str, value: &str| {
        control_plane("cp", json!({"extraEnv": [{"name": "X", "value": "x"}, {"name": name, "value": value}]}))
    };
    let dep = |value: &str| {
        let env = json!([{"name": "CODER_ACCESS_URL", "value": value}]);
        deployment("coder", json!([{"name": "coder", "image": "ghcr.io/coder/coder:v2.34.0", "env": env}]))
    };
    table(
        "url-format",
        &[
            (env("CODER_ACCESS_URL", "https://coder.example.com"), &[]),
            (env("CODER_ACCESS_URL", "coder.example.com"), &["spec.extraEnv[1].value"]),
            (env("CODER_ACCESS_URL", ""), &[]),
            (env("CODER_ACCESS_URL", "$(PUBLIC_URL)"), &[]),
            (env("CODER_AIBRIDGE_OPENAI_BASE_URL", "https://api.openai.com/v1/"), &[]),
            (env("CODER_AIBRIDGE_OPENAI_BASE_URL", "api.openai.com"), &["spec.extraEnv[1].value"]),
            (env("CODER_AI_GATEWAY_PROVIDER_0_BASE_URL", "ftp://x"), &["spec.extraEnv[1].value"]),
            (env("CODER_AI_GATEWAY_PROVIDER_0_BEDROCK_BASE_URL", "x"), &["spec.extraEnv[1].value"]),
            (env("CODER_WILDCARD_ACCESS_URL", "*.coder.example.com"), &[]),
            (dep("https://coder.example.com"), &[]),
            (dep("coder.example.com"), &["spec.template.spec.containers[0].env[0].value"]),
        ],
    );
    assert!(messages(&env("CODER_ACCESS_URL", "x"), "url-format").contains("CODER_ACCESS_URL"));
}

#[test]
fn banner_colors_even_when_disabled() {
    let banners = |colors: &[(&str, bool)]| {
        let list: Vec<Value> =
            colors.iter().map(|(c, on)| json!({"enabled": on, "message": "m", "backgroundColor": c})).collect();
        inst(json!({"appearance": {"announcementBanners": list}}))
    };
    let at = |i: usize| format!("spec.appearance.announcementBanners[{i}].backgroundColor");
    table(
        "banner-color",
        &[
            (inst(json!({})), &[]),
            (banners(&[("#00ff00", true), ("#ABCDEF", false)]), &[]),
            (banners(&[("#00ff0", true)]), &[&at(0)]),
            (banners(&[("#00ff00", true), ("00ff00", true), ("#gg0000", true)]), &[&at(1), &at(2)]),
            (banners(&[("red", false)]), &[&at(0)]),
        ],
    );
    assert!(messages(&banners(&[("red", false)]), "banner-color").contains("Use #RRGGBB"));
}

#[test]
fn iam_role_arns() {
    let role = |arn: &str| aip(json!({"type": "bedrock", "bedrock": {"region": "us-east-1", "roleARN": arn}}));
    table(
        "iam-role-arn",
        &[
            (role("arn:aws:iam::123456789012:role/team/Bedrock"), &[]),
            (role("arn:aws-cn:iam::123456789012:role/r"), &[]),
            (role(""), &[]),
            (aip(json!({})), &[]),
            (role("arn:aws:iam::12345:role/r"), &["spec.bedrock.roleARN"]),
            (role("arn:aws:iam::123456789012:user/u"), &["spec.bedrock.roleARN"]),
            (role("Bedrock"), &["spec.bedrock.roleARN"]),
        ],
    );
}

#[test]
fn regex_filters_compile() {
    let filter = |f: &str| org(json!({"groupSync": {"field": "groups", "regexFilter": f}}));
    table(
        "regex-compiles",
        &[
            (org(json!({})), &[]),
            (filter("^eng-.*$"), &[]),
            (filter(""), &[]),
            (filter("(unclosed"), &["spec.groupSync.regexFilter"]),
            (filter("a{2,1}"), &["spec.groupSync.regexFilter"]),
        ],
    );
    let text = messages(&filter("(unclosed"), "regex-compiles");
    assert!(text.contains("unclosed group") && !text.contains('\n') && text.contains("Fix it"), "{text}");
}

#[test]
fn ai_provider_settings_fit_the_type() {
    let keys = |n: usize| json!(vec![json!({"name": "k"}); n]);
    let region = json!({"region": "us-east-1"});
    table(
        "ai-provider-settings",
        &[
            (aip(json!({})), &[]),
            (aip(json!({"bedrock": region})), &["spec.bedrock"]),
            (aip(json!({"type": "anthropic", "bedrock": region})), &[]),
            (aip(json!({"type": "bedrock", "bedrock": region})), &[]),
            (
                aip(json!({"type": "bedrock", "bedrock": region, "apiKeySecretRefs": keys(1)})),
                &["spec.apiKeySecretRefs"],
            ),
            (aip(json!({"type": "copilot", "apiKeySecretRefs": keys(1)})), &["spec.apiKeySecretRefs"]),
            (aip(json!({"type": "copilot"})), &[]),
            (aip(json!({"apiKeySecretRefs": keys(5)})), &[]),
            (aip(json!({"apiKeySecretRefs": keys(6)})), &["spec.apiKeySecretRefs"]),
        ],
    );
    assert!(messages(&aip(json!({"bedrock": region})), "ai-provider-settings").contains("not openai"));
}

#[test]
fn numeric_ranges() {
    let port = |p: i64| control_plane("cp", json!({"service": {"port": p}}));
    let prov = |spec: Value| provisioner("p", merge(json!({"controlPlaneRef": {"name": "cp"}}), spec));
    table(
        "numeric-ranges",
        &[
            (control_plane("cp", json!({})), &[]),
            (control_plane("cp", json!({"replicas": 0})), &[]),
            (control_plane("cp", json!({"replicas": -1})), &["spec.replicas"]),
            (port(1), &[]),
            (port(65535), &[]),
            (port(0), &["spec.service.port"]),
            (port(65536), &["spec.service.port"]),
            (
                workspace_proxy("px", json!({"replicas": -2, "service": {"port": -80}})),
                &["spec.replicas", "spec.service.port"],
            ),
            (prov(json!({"replicas": 0, "terminationGracePeriodSeconds": 0})), &[]),
            (
                prov(json!({"replicas": -1, "terminationGracePeriodSeconds": -1})),
                &["spec.replicas", "spec.terminationGracePeriodSeconds"],
            ),
        ],
    );
    assert!(messages(&port(0), "numeric-ranges").contains("use a port such as 80"));
}

#[test]
fn immutable_fields_on_update_only() {
    let key = |inst: &str| provisioner_key("k", json!({"instanceRef": {"name": inst}}));
    let renamed = aip(json!({"name": "q", "displayName": "Q"}));
    let cases: &[(Value, Value, &[&str])] = &[
        (aip(json!({})), aip(json!({"displayName": "New", "enabled": false})), &[]),
        (aip(json!({})), renamed.clone(), &["spec.name"]),
        (aip(json!({})), aip(json!({"type": "anthropic"})), &["spec.type"]),
        (aip(json!({})), aip(json!({"instanceRef": {"name": "other"}})), &["spec.instanceRef.name"]),
        (org(json!({})), org(json!({"instanceRef": {"name": "other"}, "name": "renamed"})), &["spec.instanceRef.name"]),
        (org(json!({})), org(json!({"name": "renamed"})), &[]),
        (key("main"), key("other"), &["spec.instanceRef.name"]),
        (key("main"), key("main"), &[]),
    ];
    for (old, new, want) in cases {
        assert_eq!(denied(&update(old, new, &[]), "immutable-fields"), *want, "{old} -> {new}");
        assert!(hits(&create(new, &[]), "immutable-fields").is_empty(), "CREATE never fires");
        let odd_create = evaluate(Operation::Create, new, Some(old), false, &cluster(&[]));
        assert!(hits(&odd_create, "immutable-fields").is_empty(), "only UPDATE compares");
    }
    let e = update(&aip(json!({})), &renamed, &[]);
    let text: Vec<_> = e.findings.iter().filter(|f| f.rule == "immutable-fields").map(|f| &f.message).collect();
    assert!(text[0].contains("immutable") && text[0].contains("delete and re-create"), "{text:?}");
}
