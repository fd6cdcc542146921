//! Organizations, provisioner keys, AI providers and IdP sync settings.

use super::*;

#[tokio::test]
async fn organizations_create_patch_delete() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    let default = api.get("/api/v2/organizations/default").await.json();
    assert_eq!(default["is_default"], true);
    let by_id = api.get(&format!("/api/v2/organizations/{}", default["id"].as_str().unwrap())).await;
    assert_eq!(by_id.json(), default);

    let created = api.post("/api/v2/organizations", json!({"name": "team-a", "description": "d"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let org = created.json();
    assert_eq!((org["display_name"].as_str(), org["is_default"].as_bool()), (Some("team-a"), Some(false)));
    let groups = api.get("/api/v2/organizations/team-a/groups").await.json();
    assert_eq!(groups[0]["name"], "Everyone");
    assert_eq!(groups[0]["organization_id"], org["id"]);
    let group_id = fake.add_group("team-a", "devs");
    assert_eq!(api.get("/api/v2/organizations/team-a/groups").await.json()[1]["id"], group_id);

    let conflict = "Organization already exists with that name.";
    api.post("/api/v2/organizations", json!({"name": "team-a"})).await.expect(409, conflict);
    api.post("/api/v2/organizations", json!({"name": "TEAM-A"})).await.expect(409, conflict);
    api.post("/api/v2/organizations", json!({"name": "default"}))
        .await
        .expect(400, "Organization name \"default\" is reserved.");
    for bad in ["bad name", "-lead", "a--b", "new", "", &"x".repeat(33)] {
        let reply = api.post("/api/v2/organizations", json!({"name": bad})).await;
        reply.expect(400, "Validation failed.");
        assert_eq!(reply.json()["validations"][0]["field"], "name", "{bad:?}");
    }
    let spaced = api.post("/api/v2/organizations", json!({"name": "ok", "display_name": " padded"})).await;
    assert_eq!(spaced.json()["validations"][0]["field"], "display_name");

    let patched = api
        .patch("/api/v2/organizations/team-a", json!({"display_name": "", "description": null, "icon": "/icon.svg"}))
        .await
        .json();
    assert_eq!(
        (&patched["display_name"], &patched["description"], &patched["icon"]),
        (&json!("team-a"), &json!("d"), &json!("/icon.svg"))
    );
    let patched = api.patch("/api/v2/organizations/team-a", json!({"description": "", "display_name": "Team A"})).await;
    assert_eq!(
        (patched.json()["description"].as_str(), patched.json()["display_name"].as_str()),
        (Some(""), Some("Team A"))
    );
    let collision = api.patch("/api/v2/organizations/team-a", json!({"name": "coder"})).await;
    collision.expect(409, "Organization already exists with the name \"coder\".");
    assert_eq!(collision.json()["validations"][0]["field"], "name");
    api.patch("/api/v2/organizations/team-a", json!({"name": "default"}))
        .await
        .expect(400, "Organization name \"default\" is reserved.");
    let renamed =
        api.patch(&format!("/api/v2/organizations/{}", org["id"].as_str().unwrap()), json!({"name": "team-b"})).await;
    assert_eq!(renamed.json()["name"], "team-b");
    let missing = "Resource not found or you do not have access to this resource";
    api.patch("/api/v2/organizations/team-a", json!({"icon": ""})).await.expect(404, missing);

    fake.set_org_resources("team-b", 2);
    let blocked = api.delete("/api/v2/organizations/team-b").await;
    blocked.expect(500, "Error deleting organization.");
    assert_eq!(blocked.json()["detail"], "This organization has 2 workspace(s) that must be deleted first.");
    fake.set_org_resources("team-b", 0);
    api.delete("/api/v2/organizations/team-b").await.expect(200, "Organization has been deleted.");
    api.get("/api/v2/organizations/team-b").await.expect(404, missing);
    api.delete("/api/v2/organizations/default").await.expect(400, "Default organization cannot be deleted.");
    assert_eq!(fake.organizations().len(), 1);
    assert_eq!(api.post("/api/v2/organizations", json!({"name": "team-b"})).await.status, 201, "name is free again");
}

#[tokio::test]
async fn provisioner_keys_rules_and_daemon_lookup() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    let path = "/api/v2/organizations/default/provisionerkeys";
    let created = api.post(path, json!({"name": "k8s", "tags": {"cluster": "east"}})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let secret = created.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43);
    assert_eq!(fake.provisioner_key_secret("default", "k8s").as_deref(), Some(secret.as_str()));
    let other = api.post(path, json!({"name": "other"})).await.json()["key"].as_str().unwrap().to_owned();
    assert_ne!(other, secret);

    api.post(path, json!({"name": "K8S"}))
        .await
        .expect(409, "Provisioner key with name 'K8S' already exists in organization");
    api.post(path, json!({"name": "Built-In"})).await.expect(400, "Name cannot be reserved name 'Built-In'");
    api.post(path, json!({"name": ""})).await.expect(400, "Name is required");
    api.post(path, json!({"name": "é".repeat(32) + "x"})).await.expect(400, "Name must be at most 64 characters");
    assert_eq!(api.post(path, json!({"name": "é".repeat(32)})).await.status, 201, "64 bytes is the limit");

    let list = api.get(path).await;
    let keys = list.json();
    let names: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["k8s", "other", "é".repeat(32).as_str()]);
    let default_id = fake.organizations()[0]["id"].clone();
    assert_eq!(keys[0]["organization"], default_id);
    assert_eq!(keys[0]["tags"], json!({"cluster": "east"}));
    assert!(!list.text.contains(&secret), "secrets are never listed");
    assert_eq!(fake.provisioner_keys("default"), keys.as_array().unwrap().clone());

    let lookup = |key: Option<&str>| {
        let mut request =
            reqwest::Client::new().get(format!("{}/api/v2/provisionerkeys/{}", fake.url(), key.unwrap_or("x")));
        if let Some(key) = key {
            request = request.header("Coder-Provisioner-Daemon-Key", key);
        }
        async move { request.send().await.unwrap() }
    };
    let found = lookup(Some(&secret)).await;
    assert_eq!(found.status(), 200);
    assert_eq!(found.json::<Value>().await.unwrap()["name"], "k8s");
    assert_eq!(lookup(None).await.status(), 403);
    assert_eq!(lookup(Some("not-a-key")).await.status(), 401);

    api.delete(&format!("{path}/PSK")).await.expect(400, "Cannot delete reserved 'psk' provisioner key");
    let deleted = api.delete(&format!("{path}/K8s")).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    api.delete(&format!("{path}/k8s"))
        .await
        .expect(404, "Resource not found or you do not have access to this resource");
    assert_eq!(lookup(Some(&secret)).await.status(), 401);
    api.get("/api/v2/organizations/nope/provisionerkeys")
        .await
        .expect(404, "Resource not found or you do not have access to this resource");
}

#[tokio::test]
async fn ai_providers_crud_and_key_sets() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    let base = "/api/v2/ai/providers";
    let (one, two, three) = ("sk-first-0001", "sk-second-0002", "sk-third-0003");
    let created = api
        .post(base, json!({"type": "openai", "name": "openai", "enabled": true, "base_url": "https://api.openai.com/v1/", "api_keys": [one, two]}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let provider = created.json();
    assert_eq!(provider["api_keys"].as_array().unwrap().len(), 2);
    assert_eq!(provider["api_keys"][0]["masked"], "****");
    assert!(!created.text.contains("sk-"), "no plaintext or partial key in {}", created.text);

    let invalid = "Invalid AI provider request.";
    api.post(base, json!({"type": "openai", "name": "openai", "base_url": "https://x.test/"}))
        .await
        .expect(409, "AI provider \"openai\" already exists.");
    for (body, field) in [
        (json!({"type": "openai", "name": "Bad_Name", "base_url": "https://x.test/"}), "name"),
        (json!({"type": "nope", "name": "n", "base_url": "https://x.test/"}), "type"),
        (json!({"type": "openai", "name": "n", "base_url": "ftp://x.test/"}), "base_url"),
        (json!({"type": "openai", "name": "n", "base_url": "not a url"}), "base_url"),
        (
            json!({"type": "openai", "name": "n", "base_url": "https://x.test/", "api_keys": [" sk-padded"]}),
            "api_keys[0]",
        ),
        (
            json!({"type": "openai", "name": "n", "base_url": "https://x.test/", "api_keys": ["a", "b", "c", "d", "e", "f"]}),
            "api_keys",
        ),
        (json!({"type": "copilot", "name": "n", "base_url": "https://x.test/", "api_keys": ["k"]}), "api_keys"),
        (json!({"type": "bedrock", "name": "n", "base_url": "https://x.test/"}), "settings"),
        (
            json!({"type": "openai", "name": "n", "base_url": "https://x.test/", "settings": {"_type": "bedrock", "_version": 1, "region": "us-east-1"}}),
            "settings",
        ),
        (
            json!({"type": "bedrock", "name": "n", "base_url": "https://x.test/", "settings": {"_type": "bedrock", "_version": 1, "region": "r", "role_arn": "nope"}}),
            "settings.role_arn",
        ),
    ] {
        let reply = api.post(base, body.clone()).await;
        reply.expect(400, invalid);
        let fields: Vec<Value> =
            reply.json()["validations"].as_array().unwrap().iter().map(|v| v["field"].clone()).collect();
        assert!(fields.contains(&json!(field)), "{body}: {}", reply.text);
        assert!(!reply.text.contains("sk-padded"), "errors never echo keys");
    }
    let external = json!({"type": "bedrock", "name": "n", "base_url": "https://x.test/", "settings": {"_type": "bedrock", "_version": 1, "region": "r", "external_id": "mine"}});
    assert_eq!(api.post(base, external).await.status, 400);

    let bedrock = api
        .post(base, json!({
            "type": "bedrock", "name": "aws", "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com",
            "settings": {"_type": "bedrock", "_version": 1, "region": "us-east-1", "access_key": "AKIAFAKE", "access_key_secret": "s3cr3t",
                "role_arn": "arn:aws:iam::123456789012:role/coder"},
        }))
        .await;
    assert_eq!(bedrock.status, 201, "{}", bedrock.text);
    let settings = bedrock.json()["settings"].clone();
    assert!(
        settings.get("access_key").is_none() && !bedrock.text.contains("s3cr3t") && !bedrock.text.contains("AKIAFAKE")
    );
    let external_id = settings["external_id"].as_str().unwrap().to_owned();
    assert!(!external_id.is_empty());
    let region_only = json!({"settings": {"_type": "bedrock", "_version": 1, "region": "eu-west-1", "access_key": null,
        "role_arn": "arn:aws:iam::123456789012:role/coder"}});
    let patched = api.patch(&format!("{base}/aws"), region_only).await.json();
    assert_eq!(
        (patched["settings"]["region"].as_str(), patched["settings"]["external_id"].as_str()),
        (Some("eu-west-1"), Some(external_id.as_str()))
    );
    assert_eq!(
        fake.ai_provider_settings_secret("aws"),
        Some(("AKIAFAKE".into(), "s3cr3t".into())),
        "null keeps stored credentials"
    );
    api.patch(&format!("{base}/aws"), json!({"api_keys": [{"api_key": "k"}]}))
        .await
        .expect(400, "Bedrock providers do not accept api_keys; configure access credentials via settings.");

    let first_id = provider["api_keys"][0]["id"].clone();
    let patched =
        api.patch(&format!("{base}/openai"), json!({"api_keys": [{"id": first_id}, {"api_key": three}]})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json()["api_keys"][0]["id"], first_id);
    assert_eq!(patched.json()["api_keys"].as_array().unwrap().len(), 2);
    assert_eq!(fake.ai_provider_keys("openai"), [one, three]);
    let unknown = api
        .patch(&format!("{base}/openai"), json!({"api_keys": [{"id": "00000000-0000-4000-8000-0000000fffff"}]}))
        .await;
    unknown.expect(400, "api_keys references an unknown id for this provider");
    assert_eq!(fake.ai_provider_keys("openai"), [one, three], "a rejected PATCH changes nothing");
    api.patch(&format!("{base}/openai"), json!({})).await.expect(400, "At least one field must be provided.");
    api.patch(&format!("{base}/openai"), json!({"name": "renamed", "type": "anthropic"}))
        .await
        .expect(400, "At least one field must be provided.");
    let cleared = api.patch(&format!("{base}/openai"), json!({"api_keys": [], "display_name": "OpenAI"})).await.json();
    assert_eq!((cleared["api_keys"].clone(), cleared["display_name"].as_str()), (json!([]), Some("OpenAI")));
    assert!(fake.ai_provider_keys("openai").is_empty());

    let listed: Vec<Value> = api.get(base).await.json().as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(listed, [json!("aws"), json!("openai")]);
    assert_eq!(fake.ai_providers().len(), 2);
    api.get(&format!("{base}/Bad_Name"))
        .await
        .expect(400, "Invalid provider id or name: must be a UUID or match ^[a-z0-9]+(-[a-z0-9]+)*$.");
    let by_id = api.get(&format!("{base}/{}", provider["id"].as_str().unwrap())).await;
    assert_eq!(by_id.json()["name"], "openai");
    let deleted = api.delete(&format!("{base}/openai")).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    let gone = "Resource not found or you do not have access to this resource";
    api.get(&format!("{base}/openai")).await.expect(404, gone);
    api.delete(&format!("{base}/openai")).await.expect(404, gone);
}

#[tokio::test]
async fn idp_sync_settings_are_full_replace() {
    let fake = fake(Edition::Enterprise, false);
    let api = Api::new(&fake);
    let org_path = "/api/v2/settings/idpsync/organization";
    assert_eq!(
        api.get(org_path).await.json(),
        json!({"field": "", "mapping": {}, "organization_assign_default": false})
    );
    let default_id = fake.organizations()[0]["id"].as_str().unwrap().to_owned();
    let desired = json!({"field": "orgs", "mapping": {"eng": [default_id]}, "organization_assign_default": true});
    assert_eq!(api.patch(org_path, desired.clone()).await.json(), desired);
    assert_eq!(api.get(org_path).await.json(), desired);
    let replaced = api.patch(org_path, json!({"field": "other"})).await.json();
    assert_eq!(replaced, json!({"field": "other", "mapping": {}, "organization_assign_default": false}));
    assert_eq!(fake.organization_sync(), replaced);
    api.patch(org_path, json!({"mapping": {"eng": ["not-a-uuid"]}}))
        .await
        .expect(400, "Request body must be valid JSON.");

    let groups = format!("/api/v2/organizations/{default_id}/settings/idpsync/groups");
    let defaults = json!({"field": "", "mapping": {}, "regex_filter": null, "auto_create_missing_groups": false});
    assert_eq!(api.get(&groups).await.json(), defaults);
    let group_id = fake.add_group("default", "devs");
    let desired = json!({"field": "groups", "mapping": {"devs": [group_id]}, "regex_filter": "^dev-.*$", "auto_create_missing_groups": true});
    assert_eq!(api.patch(&groups, desired.clone()).await.json(), desired);
    assert_eq!(api.get("/api/v2/organizations/coder/settings/idpsync/groups").await.json(), desired);
    assert_eq!(fake.group_sync("default"), desired);
    api.patch(&groups, json!({"regex_filter": "(unclosed"})).await.expect(400, "Request body must be valid JSON.");
    api.patch(&groups, json!({"legacy_group_name_mapping": {"a": "b"}}))
        .await
        .expect(400, "Unexpected field 'legacy_group_name_mapping'. Field not allowed, set to null or remove it.");
    assert_eq!(fake.group_sync("default"), desired, "rejected PATCHes change nothing");
    assert_eq!(api.patch(&groups, json!({"legacy_group_name_mapping": null})).await.json(), defaults);

    let roles = "/api/v2/organizations/default/settings/idpsync/roles";
    assert_eq!(api.get(roles).await.json(), json!({"field": "", "mapping": {}}));
    let desired = json!({"field": "roles", "mapping": {"admins": ["organization-admin"]}});
    assert_eq!(api.patch(roles, desired.clone()).await.json(), desired);
    assert_eq!(fake.role_sync("default"), desired);
    api.get("/api/v2/organizations/nope/settings/idpsync/roles")
        .await
        .expect(404, "Resource not found or you do not have access to this resource");
}
