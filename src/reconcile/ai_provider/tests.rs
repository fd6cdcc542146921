use super::*;
use crate::api::common::SecretKeyRef;
use crate::api::own::{AiProviderType, BedrockProtocol};
use crate::coderd::types::AiProviderKey;

fn spec() -> CoderAIProviderSpec {
    CoderAIProviderSpec {
        name: "openai".into(),
        type_: AiProviderType::Openai,
        display_name: Some("OpenAI".into()),
        enabled: true,
        base_url: "https://api.openai.com/v1/".into(),
        api_key_secret_refs: vec![secret_ref("openai")],
        ..CoderAIProviderSpec::default()
    }
}

fn bedrock_spec() -> CoderAIProviderSpec {
    CoderAIProviderSpec {
        name: "claude".into(),
        type_: AiProviderType::Bedrock,
        display_name: None,
        enabled: true,
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
        api_key_secret_refs: Vec::new(),
        bedrock: Some(BedrockSpec {
            region: "us-east-1".into(),
            model: Some("anthropic.claude-sonnet".into()),
            access_key_ref: Some(secret_ref("aws")),
            access_key_secret_ref: Some(secret_ref("aws")),
            ..BedrockSpec::default()
        }),
        ..CoderAIProviderSpec::default()
    }
}

fn secret_ref(name: &str) -> SecretKeyRef {
    SecretKeyRef { name: name.into(), key: None }
}

fn keys(values: &[&str]) -> Credentials {
    Credentials { api_keys: values.iter().map(|v| Secret::new(*v)).collect(), ..Credentials::default() }
}

fn aws() -> Credentials {
    Credentials {
        access_key: Some(Secret::new("AKIA-SECRET")),
        access_key_secret: Some(Secret::new("aws-secret-value")),
        ..Credentials::default()
    }
}

fn provider(key_count: usize) -> AiProvider {
    AiProvider {
        id: "prov-1".into(),
        name: "openai".into(),
        type_: "openai".into(),
        display_name: "OpenAI".into(),
        icon: "/icon/openai.svg".into(),
        enabled: true,
        base_url: "https://api.openai.com/v1/".into(),
        api_keys: (0..key_count).map(|i| AiProviderKey { id: format!("key-{i}") }).collect(),
        settings: None,
    }
}

fn bedrock_provider() -> AiProvider {
    AiProvider {
        name: "claude".into(),
        type_: "bedrock".into(),
        display_name: "claude".into(),
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
        settings: Some(BedrockSettings {
            type_: "bedrock".into(),
            version: 1,
            region: "us-east-1".into(),
            model: "anthropic.claude-sonnet".into(),
            small_fast_model: "anthropic.claude-haiku".into(),
            protocol: "invoke-model".into(),
            ..BedrockSettings::default()
        }),
        ..provider(0)
    }
}

/// The update a plan asks for, or `None` when in sync.
fn update(plan: Result<ProviderPlan, Surface>) -> Option<(UpdateAiProvider, Vec<&'static str>)> {
    match plan.expect("a plan") {
        ProviderPlan::Update { id, request, changed } => {
            assert_eq!(id, "prov-1");
            Some((request, changed))
        }
        ProviderPlan::InSync { id } => {
            assert_eq!(id, "prov-1");
            None
        }
        ProviderPlan::Create(_) => panic!("expected an update"),
    }
}

#[test]
fn an_absent_provider_is_created_with_everything() {
    let Ok(ProviderPlan::Create(request)) = plan_provider(&spec(), &keys(&["sk-1", "sk-2"]), false, None) else {
        panic!("expected a create");
    };
    let body = serde_json::to_value(&request).unwrap();
    assert_eq!(body["type"], "openai");
    assert_eq!(body["name"], "openai");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["api_keys"], serde_json::json!(["sk-1", "sk-2"]));
    assert!(body.get("settings").is_none(), "{body}");
    assert!(!format!("{request:?}").contains("sk-1"), "Debug never shows a key");

    let Ok(ProviderPlan::Create(request)) = plan_provider(&bedrock_spec(), &aws(), false, None) else {
        panic!("expected a create");
    };
    let body = serde_json::to_value(&request).unwrap();
    assert_eq!(
        body["settings"],
        serde_json::json!({
            "_type": "bedrock", "_version": 1, "region": "us-east-1", "model": "anthropic.claude-sonnet",
            "access_key": "AKIA-SECRET", "access_key_secret": "aws-secret-value",
        })
    );
    assert!(body.get("api_keys").is_none(), "{body}");
}

#[test]
fn another_type_in_coderd_is_a_conflict_without_a_write() {
    let observed = AiProvider { type_: "anthropic".into(), ..provider(1) };
    let surface = plan_provider(&spec(), &keys(&["sk-1"]), true, Some(&observed)).unwrap_err();
    assert_eq!((surface.type_, surface.reason.as_str(), surface.wait), (PROVIDER_READY, "TypeConflict", Wait::Slow));
    assert!(surface.message.contains("cannot change") && surface.message.contains("delete it in coderd"));
}

#[test]
fn an_existing_provider_gets_only_the_differing_fields() {
    let full = spec();
    let creds = keys(&["sk-1"]);
    let unset = CoderAIProviderSpec { display_name: None, icon: None, ..spec() };
    let icon = CoderAIProviderSpec { icon: Some("/icon/new.svg".into()), ..spec() };
    let disabled = CoderAIProviderSpec { enabled: false, ..spec() };
    let slashless = CoderAIProviderSpec { base_url: "https://api.openai.com/v1".into(), ..spec() };
    let cleared_name = CoderAIProviderSpec { display_name: Some(String::new()), ..spec() };
    // (case, spec, secrets changed, keys coderd reports, fields to patch)
    let cases: Vec<(&str, &CoderAIProviderSpec, bool, usize, Vec<&str>)> = vec![
        ("steady state", &full, false, 1, vec![]),
        ("unset display name and icon are not managed", &unset, false, 1, vec![]),
        ("icon", &icon, false, 1, vec!["icon"]),
        ("a display name can be cleared", &cleared_name, false, 1, vec!["display_name"]),
        ("enabled", &disabled, false, 1, vec!["enabled"]),
        ("base URL compared exactly", &slashless, false, 1, vec!["base_url"]),
        ("changed key values", &full, true, 1, vec!["api_keys"]),
        ("a key deleted in coderd", &full, false, 0, vec!["api_keys"]),
        ("extra keys in coderd are removed", &full, false, 3, vec!["api_keys"]),
    ];
    for (case, spec, secrets_changed, key_count, want) in cases {
        let got = update(plan_provider(spec, &creds, secrets_changed, Some(&provider(key_count))));
        let changed = got.as_ref().map(|(_, c)| c.clone()).unwrap_or_default();
        assert_eq!(changed, want, "{case}");
        if let Some((request, _)) = got {
            assert_eq!(request.api_keys.is_some(), want.contains(&"api_keys"), "{case}");
            assert_eq!(request.settings, None, "{case}: no Bedrock block to keep");
        }
    }
}

#[test]
fn keys_are_sent_whole_and_only_when_needed() {
    let (request, _) = update(plan_provider(&spec(), &keys(&["sk-new"]), true, Some(&provider(1)))).unwrap();
    assert_eq!(request.api_keys, Some(vec![Secret::new("sk-new")]));
    let body = serde_json::to_string(&request).unwrap();
    assert!(body.contains(r#""api_keys":[{"api_key":"sk-new"}]"#), "{body}");
    assert!(!format!("{request:?}").contains("sk-new"), "Debug never shows a key");

    // No refs and no keys in coderd: a changed digest has nothing to send.
    let copilot = CoderAIProviderSpec { type_: AiProviderType::Copilot, api_key_secret_refs: Vec::new(), ..spec() };
    let observed = AiProvider { type_: "copilot".into(), ..provider(0) };
    assert!(update(plan_provider(&copilot, &Credentials::default(), true, Some(&observed))).is_none());

    // No refs but keys in coderd: clear them.
    let (request, _) = update(plan_provider(
        &copilot,
        &Credentials::default(),
        false,
        Some(&AiProvider { type_: "copilot".into(), ..provider(2) }),
    ))
    .unwrap();
    assert_eq!(request.api_keys, Some(Vec::new()));
}

#[test]
fn bedrock_settings_are_compared_on_readable_fields_and_always_sent() {
    let observed = bedrock_provider();
    assert!(update(plan_provider(&bedrock_spec(), &aws(), false, Some(&observed))).is_none(), "steady state");

    let mut region = bedrock_spec();
    region.bedrock.as_mut().unwrap().region = "eu-west-1".into();
    let (request, changed) = update(plan_provider(&region, &aws(), false, Some(&observed))).unwrap();
    assert_eq!(changed, ["settings"]);
    let settings = request.settings.unwrap();
    assert_eq!(settings.region, "eu-west-1");
    assert_eq!((settings.type_.as_str(), settings.version), ("bedrock", 1));
    assert_eq!(settings.small_fast_model, "anthropic.claude-haiku", "unset fields keep coderd's value");
    assert_eq!(settings.protocol, "invoke-model");
    assert_eq!((settings.access_key, settings.access_key_secret), (None, None), "unchanged keys are kept by coderd");

    let (request, changed) = update(plan_provider(&bedrock_spec(), &aws(), true, Some(&observed))).unwrap();
    assert_eq!(changed, ["settings.access_keys"]);
    let settings = request.settings.unwrap();
    assert_eq!(settings.access_key, Some(Secret::new("AKIA-SECRET")));
    assert_eq!(settings.access_key_secret, Some(Secret::new("aws-secret-value")));
    assert_eq!(request.api_keys, None, "Bedrock takes no api_keys");

    let mut mantle = bedrock_spec();
    mantle.bedrock.as_mut().unwrap().protocol = Some(BedrockProtocol::Mantle);
    let (request, changed) = update(plan_provider(&mantle, &aws(), false, Some(&observed))).unwrap();
    assert_eq!((changed, request.settings.unwrap().protocol.as_str()), (vec!["settings"], "mantle"));

    // A PATCH for another field still carries the whole block, so coderd keeps it.
    let disabled = CoderAIProviderSpec { enabled: false, ..bedrock_spec() };
    let (request, changed) = update(plan_provider(&disabled, &aws(), false, Some(&observed))).unwrap();
    assert_eq!(changed, ["enabled"]);
    assert_eq!(request.settings.unwrap().region, "us-east-1");

    let missing = AiProvider { settings: None, ..bedrock_provider() };
    let (_, changed) = update(plan_provider(&bedrock_spec(), &aws(), false, Some(&missing))).unwrap();
    assert_eq!(changed, ["settings"]);
}

#[test]
fn an_unmanaged_bedrock_block_is_carried_over_not_cleared() {
    let anthropic = CoderAIProviderSpec {
        name: "claude".into(),
        type_: AiProviderType::Anthropic,
        base_url: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
        display_name: None,
        api_key_secret_refs: Vec::new(),
        ..spec()
    };
    let observed = AiProvider { type_: "anthropic".into(), ..bedrock_provider() };
    assert!(update(plan_provider(&anthropic, &Credentials::default(), false, Some(&observed))).is_none());
    let disabled = CoderAIProviderSpec { enabled: false, ..anthropic };
    let (request, _) = update(plan_provider(&disabled, &Credentials::default(), false, Some(&observed))).unwrap();
    assert_eq!(request.settings, observed.settings);
}

#[test]
fn the_digest_covers_every_value_in_order_and_hides_them() {
    let base = keys(&["sk-1", "sk-2"]).digest("uid-1");
    assert!(base.starts_with("sha256:") && !base.contains("sk-1"));
    assert_eq!(base, keys(&["sk-1", "sk-2"]).digest("uid-1"), "stable");
    let others = [
        keys(&["sk-2", "sk-1"]).digest("uid-1"),
        keys(&["sk-1", "sk-3"]).digest("uid-1"),
        keys(&["sk-1"]).digest("uid-1"),
        keys(&["sk-1", "sk-2"]).digest("uid-2"),
        Credentials { access_key: Some(Secret::new("sk-2")), ..keys(&["sk-1"]) }.digest("uid-1"),
    ];
    for (i, other) in others.iter().enumerate() {
        assert_ne!(&base, other, "case {i}");
    }
    let rotated = Credentials { access_key_secret: Some(Secret::new("rotated")), ..aws() };
    assert_ne!(aws().digest("uid-1"), rotated.digest("uid-1"));
}

#[test]
fn removal_without_a_recorded_id_spares_other_types() {
    assert_eq!(plan_removal(&spec(), None), Removal::Gone);
    assert_eq!(plan_removal(&spec(), Some(&provider(1))), Removal::Delete("prov-1".into()));
    let foreign = AiProvider { type_: "anthropic".into(), ..provider(1) };
    assert!(matches!(plan_removal(&spec(), Some(&foreign)), Removal::Keep(note) if note.contains("left in place")));
}

#[test]
fn dependencies_are_the_key_secrets_and_the_instance() {
    let mut with_keys = spec();
    with_keys.instance_ref.name = "coder".into();
    with_keys.api_key_secret_refs.push(secret_ref("backup"));
    let object = CoderAIProvider::new("openai", with_keys);
    assert_eq!(object.secret_names(), ["openai", "backup"]);
    assert_eq!(object.instance_name(), Some("coder"));
    let mut bedrock = bedrock_spec();
    bedrock.bedrock.as_mut().unwrap().access_key_secret_ref = Some(secret_ref("aws-secret"));
    assert_eq!(CoderAIProvider::new("claude", bedrock).secret_names(), ["aws", "aws-secret"]);
}
