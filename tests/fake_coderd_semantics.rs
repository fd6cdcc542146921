//! The fake coderd behaves as the reference says: auth, licenses, gates, AGPL routing, appearance,
//! organizations, provisioner keys, AI providers, IdP sync, and fault injection.

mod fake_coderd;

use std::time::{Duration, Instant};

use fake_coderd::{Edition, FakeCoderd, FakeOptions, Faults};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("status {} body {:?}: {e}", self.status, self.text))
    }

    fn message(&self) -> String {
        self.json()["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Asserts status and message in one go, with the body in the failure text.
    fn expect(&self, status: u16, message: &str) {
        assert_eq!((self.status, self.message().as_str()), (status, message), "body: {}", self.text);
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    fn new(fake: &FakeCoderd) -> Api {
        Api { client: reqwest::Client::new(), base: fake.url(), token: Some(fake.token()) }
    }

    fn anonymous(fake: &FakeCoderd) -> Api {
        Api { token: None, ..Api::new(fake) }
    }

    async fn try_send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Coder-Session-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Ok(Reply { status, headers, text: response.text().await? })
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.try_send(method, path, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.send("PUT", path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send("PATCH", path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None).await
    }
}

fn fake(edition: Edition, licensed: bool) -> FakeCoderd {
    FakeCoderd::start(FakeOptions { edition, licensed, ..FakeOptions::default() })
}

const JTI: &str = "3f2b6c1e-8a4d-4e2f-9b1a-5c6d7e8f9a0b";
const ALL: [&str; 7] = [
    "external_provisioner_daemons",
    "appearance",
    "multiple_organizations",
    "aibridge",
    "custom_roles",
    "template_rbac",
    "high_availability",
];

#[tokio::test]
async fn auth_healthz_buildinfo_and_routing() {
    let fake = fake(Edition::Premium, false);
    let api = Api::new(&fake);
    let anonymous = Api::anonymous(&fake);

    let health = anonymous.get("/healthz").await;
    assert_eq!((health.status, health.text.as_str()), (200, "OK"));
    assert_eq!(health.headers["x-coder-build-version"], "v2.34.0-fake");

    let info = anonymous.get("/api/v2/buildinfo").await;
    assert_eq!((info.status, info.json()["version"].as_str()), (200, Some("v2.34.0-fake")));

    anonymous.get("/api/v2/users/me").await.expect(401, "You must be signed in to access this resource.");
    let wrong = Api { token: Some("0000000000-wrongwrongwrongwrongwr".into()), ..Api::new(&fake) };
    wrong.get("/api/v2/entitlements").await.expect(401, "You must be signed in to access this resource.");
    let me = api.get("/api/v2/users/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["username"], "automation");
    assert_eq!(me.json()["roles"][0]["name"], "owner");
    assert_eq!(me.headers["x-coder-build-version"], "v2.34.0-fake");

    api.get("/api/v2/no-such-route").await.expect(404, "Route not found.");
    let bad = api.send("POST", "/api/v2/licenses", None).await;
    bad.expect(400, "Request body must be valid JSON.");
    assert_eq!(api.send("PUT", "/api/v2/licenses", None).await.status, 405);

    fake.set_token("0987654321-zyxwvutsrqponmlkjihgfe");
    api.get("/api/v2/users/me").await.expect(401, "You must be signed in to access this resource.");
    assert_eq!(Api::new(&fake).get("/api/v2/users/me").await.status, 200);
}

#[tokio::test]
async fn licenses_lifecycle_flips_entitlements() {
    let fake = fake(Edition::Enterprise, false);
    let api = Api::new(&fake);
    let entitlements = api.get("/api/v2/entitlements").await.json();
    assert_eq!(entitlements["has_license"], false);
    assert_eq!(entitlements["features"]["multiple_organizations"]["entitlement"], "not_entitled");
    assert_eq!(api.get("/api/v2/licenses").await.json(), json!([]));
    api.post("/api/v2/organizations", json!({"name": "team"}))
        .await
        .expect(403, "Multiple Organizations is a Premium feature. Contact sales!");

    let jwt = FakeCoderd::license_jwt(JTI, &ALL);
    let created = api.post("/api/v2/licenses", json!({"license": jwt})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let license = created.json();
    assert_eq!(license["uuid"], JTI);
    assert_eq!(license["claims"]["features"]["aibridge"], 1);
    assert!(!created.text.contains(&jwt), "the JWT is never returned");
    let entitlements = api.get("/api/v2/entitlements").await.json();
    assert_eq!(entitlements["has_license"], true);
    for feature in ALL {
        assert_eq!(entitlements["features"][feature], json!({"entitlement": "entitled", "enabled": true}), "{feature}");
    }
    assert_eq!(api.post("/api/v2/organizations", json!({"name": "team"})).await.status, 201);

    let duplicate = api.post("/api/v2/licenses", json!({"license": jwt})).await;
    duplicate.expect(500, "Unable to add license to database");
    assert!(duplicate.json()["detail"].as_str().unwrap().contains("licenses_jwt_key"));

    let mut parts: Vec<&str> = jwt.split('.').collect();
    parts[2] = "bm90LXRoZS1tYXJrZXI";
    let forged = parts.join(".");
    let invalid = api.post("/api/v2/licenses", json!({"license": forged})).await;
    invalid.expect(400, "Invalid license");
    assert!(!invalid.text.contains(&forged) && !invalid.text.contains(parts[1]), "{}", invalid.text);
    api.post("/api/v2/licenses", json!({"license": "not-a-jwt"})).await.expect(400, "Invalid license");

    let other = api.post("/api/v2/licenses", json!({"license": FakeCoderd::license_jwt("lic-2", &ALL)})).await;
    assert_eq!(other.status, 201);
    let other_uuid = other.json()["uuid"].as_str().unwrap().to_owned();
    assert!(other_uuid.len() == 36 && other_uuid != "lic-2", "a non-UUID jti gets a generated uuid");
    assert_eq!(api.get("/api/v2/licenses").await.json().as_array().unwrap().len(), 2);
    assert_eq!(fake.licenses().len(), 2);

    api.delete("/api/v2/licenses/abc").await.expect(404, "License ID must be an integer");
    api.delete("/api/v2/licenses/999").await.expect(404, "Unknown license ID");
    for license in fake.licenses() {
        let deleted = api.delete(&format!("/api/v2/licenses/{}", license["id"])).await;
        assert_eq!((deleted.status, deleted.text.as_str()), (200, ""));
    }
    let entitlements = api.get("/api/v2/entitlements").await.json();
    assert_eq!(entitlements["has_license"], false);
    assert_eq!(entitlements["features"]["appearance"]["entitlement"], "not_entitled");
    api.post("/api/v2/organizations", json!({"name": "again"}))
        .await
        .expect(403, "Multiple Organizations is a Premium feature. Contact sales!");
}

#[tokio::test]
async fn premium_gates_before_a_license_and_ai_gateway_switch() {
    let unlicensed = fake(Edition::Premium, false);
    let api = Api::new(&unlicensed);
    api.get("/api/v2/organizations/default/provisionerkeys")
        .await
        .expect(403, "External Provisioner Daemons is a Premium feature. Contact sales!");
    api.get("/api/v2/ai/providers").await.expect(403, "AI Gateway is a Premium feature. Contact sales!");
    assert_eq!(api.get("/api/v2/settings/idpsync/organization").await.status, 200, "idpsync has no route gate");

    let disabled =
        FakeCoderd::start(FakeOptions { licensed: true, ai_gateway_enabled: false, ..FakeOptions::default() });
    let api = Api::new(&disabled);
    let entitlements = api.get("/api/v2/entitlements").await.json();
    assert_eq!(entitlements["features"]["aibridge"], json!({"entitlement": "entitled", "enabled": false}));
    api.get("/api/v2/ai/providers").await.expect(403, "AI Gateway is a Premium feature. Contact sales!");
    assert_eq!(api.get("/api/v2/organizations/default/provisionerkeys").await.status, 200);
}

#[tokio::test]
async fn agpl_has_no_enterprise_routes() {
    let fake = fake(Edition::Agpl, true);
    let api = Api::new(&fake);
    for path in [
        "/api/v2/licenses",
        "/api/v2/settings/idpsync/organization",
        "/api/v2/organizations/default/settings/idpsync/groups",
        "/api/v2/organizations/default/provisionerkeys",
        "/api/v2/organizations/default/groups",
        "/api/v2/ai/providers",
    ] {
        api.get(path).await.expect(404, "Route not found.");
    }
    api.delete("/api/v2/licenses/1").await.expect(404, "Route not found.");
    api.put("/api/v2/appearance", json!({})).await.expect(404, "Route not found.");
    let post = api.post("/api/v2/organizations", json!({"name": "team"})).await;
    assert_eq!((post.status, post.text.as_str()), (405, ""));
    assert_eq!(api.patch("/api/v2/organizations/default", json!({"display_name": "x"})).await.status, 405);
    assert_eq!(api.delete("/api/v2/organizations/default").await.status, 405);
    assert_eq!(api.get("/api/v2/appearance").await.status, 200);
    assert_eq!(api.get("/api/v2/organizations").await.json().as_array().unwrap().len(), 1);
    let entitlements = api.get("/api/v2/entitlements").await.json();
    assert_eq!(entitlements["has_license"], false, "licensed is ignored on AGPL");
    assert_eq!(entitlements["features"]["appearance"]["entitlement"], "not_entitled");

    fake.set_edition(Edition::Enterprise);
    assert_eq!(api.get("/api/v2/licenses").await.json(), json!([]));
}

#[tokio::test]
async fn appearance_validates_colors_and_is_soft_gated() {
    let fake = fake(Edition::Enterprise, false);
    let api = Api::new(&fake);
    let banner =
        |color: Value| json!({"announcement_banners": [{"enabled": false, "message": "m", "background_color": color}]});
    for (color, detail) in [
        (json!("#12345"), "expected # prefix and 6 characters"),
        (json!(null), "expected # prefix and 6 characters"),
        (json!("1234567"), "no # prefix"),
        (json!("#12345g"), "encoding/hex: invalid byte: U+0067 'g'"),
    ] {
        let reply = api.put("/api/v2/appearance", banner(color.clone())).await;
        let shown = color.as_str().unwrap_or("");
        reply.expect(400, &format!("Invalid color format: \"{shown}\""));
        assert_eq!(reply.json()["detail"], detail);
    }
    assert_eq!(fake.appearance()["announcement_banners"], json!([]), "rejected PUTs write nothing");

    let desired = json!({
        "application_name": "Acme", "logo_url": "https://acme.test/logo.png",
        "announcement_banners": [{"enabled": true, "message": "hi", "background_color": "#00ff00"}],
    });
    let put = api.put("/api/v2/appearance", desired.clone()).await;
    assert_eq!(put.status, 200);
    assert_eq!(put.json()["application_name"], "Acme");
    assert_eq!(put.json()["announcement_banners"], desired["announcement_banners"]);
    let shown = api.get("/api/v2/appearance").await.json();
    assert_eq!((shown["application_name"].as_str(), shown["announcement_banners"].clone()), (Some(""), json!([])));
    assert_eq!(fake.appearance()["application_name"], "Acme", "written even without a license");

    let jwt = FakeCoderd::license_jwt(JTI, &ALL);
    assert_eq!(api.post("/api/v2/licenses", json!({"license": jwt})).await.status, 201);
    let shown = api.get("/api/v2/appearance").await.json();
    assert_eq!(shown["application_name"], "Acme");
    assert_eq!(shown["service_banner"], desired["announcement_banners"][0]);

    let cleared =
        api.put("/api/v2/appearance", json!({"application_name": "Acme", "announcement_banners": null})).await;
    assert_eq!(cleared.json()["announcement_banners"], json!([]));
    let shown = api.get("/api/v2/appearance").await.json();
    assert_eq!((shown["logo_url"].as_str(), shown["announcement_banners"].clone()), (Some(""), json!([])));
}

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

#[tokio::test]
async fn injected_errors_change_nothing_and_healthz_can_be_exempt() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    fake.set_faults(Faults { error_rate: 1.0, exempt_healthz: true, ..Faults::default() });
    let reply = api.post("/api/v2/organizations", json!({"name": "team"})).await;
    reply.expect(500, "An internal server error occurred.");
    assert_eq!(reply.json()["detail"], "injected fault");
    assert_eq!(fake.organizations().len(), 1);
    assert!(fake.writes().is_empty());
    assert_eq!(api.get("/healthz").await.status, 200);
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].status, log[0].body.clone()), (500, Some(json!({"name": "team"}))));

    fake.set_faults(Faults { error_rate: 1.0, ..Faults::default() });
    assert_eq!(api.get("/healthz").await.status, 500);
    fake.set_faults(Faults::default());
    fake.clear_log();
    assert_eq!(api.post("/api/v2/organizations", json!({"name": "team"})).await.status, 201);
    assert_eq!(fake.writes().len(), 1);
}

/// Sends one raw HTTP/1.1 request and returns everything the server wrote before closing.
async fn raw_exchange(fake: &FakeCoderd, request: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(fake.url().trim_start_matches("http://")).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.expect("no hang");
    buffer.truncate(read.unwrap_or(0));
    (stream, buffer)
}

#[tokio::test]
async fn resets_close_without_a_response() {
    let fake = fake(Edition::Premium, false);
    fake.set_faults(Faults { reset_rate: 1.0, ..Faults::default() });
    let request = format!("GET /api/v2/users/me HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {}\r\n\r\n", fake.token());
    let (_, written) = raw_exchange(&fake, &request).await;
    assert!(written.is_empty(), "got {:?}", String::from_utf8_lossy(&written));
    assert!(Api::new(&fake).try_send("GET", "/api/v2/users/me", None).await.is_err());
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|l| l.status == 0 && l.path == "/api/v2/users/me"));
    fake.set_faults(Faults::default());
    assert_eq!(Api::new(&fake).get("/api/v2/users/me").await.status, 200);
}

#[tokio::test]
async fn lost_responses_still_apply_writes() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    fake.set_faults(Faults { lost_response_rate: 1.0, ..Faults::default() });
    assert!(api.try_send("POST", "/api/v2/organizations", Some(json!({"name": "team"}))).await.is_err());
    assert!(fake.organizations().iter().any(|o| o["name"] == "team"), "the write was applied");
    let writes = fake.writes();
    assert_eq!((writes.len(), writes[0].status, writes[0].path.as_str()), (1, 0, "/api/v2/organizations"));
    assert_eq!(api.get("/api/v2/organizations/team").await.status, 200, "reads are not affected");
}

#[tokio::test]
async fn rate_limit_answers_exactly_n_429s() {
    let fake = fake(Edition::Premium, false);
    let api = Api::new(&fake);
    fake.rate_limit(3, 7);
    for _ in 0..3 {
        let reply = api.get("/api/v2/users/me?x=1").await;
        assert_eq!(reply.status, 429);
        assert!(reply.message().starts_with("You've been rate limited"));
        assert_eq!(reply.headers["retry-after"], "7");
    }
    assert_eq!(api.get("/api/v2/users/me").await.status, 200);
    let log = fake.requests();
    assert_eq!((log[0].query.as_str(), log[0].path.as_str()), ("x=1", "/api/v2/users/me"));
    assert_eq!(log.iter().map(|l| l.status).collect::<Vec<_>>(), [429, 429, 429, 200]);
}

#[tokio::test]
async fn an_owner_bypasses_the_rate_limit_and_anyone_else_is_answered_428() {
    let bypass = |api: &Api, path: &str| {
        let request = api.client.get(format!("{}{path}", api.base)).header("X-Coder-Bypass-Ratelimit", "true");
        let token = api.token.clone().unwrap();
        async move { request.header("Coder-Session-Token", token).send().await.unwrap().status().as_u16() }
    };
    let owner = fake(Edition::Premium, false);
    let api = Api::new(&owner);
    owner.rate_limit(2, 1);
    assert_eq!(bypass(&api, "/api/v2/users/me").await, 200, "an owner's bypass skips the limit");
    assert_eq!(api.get("/api/v2/users/me").await.status, 429, "without the header the limit applies");

    let member = FakeCoderd::start(FakeOptions { owner: false, ..FakeOptions::default() });
    let api = Api::new(&member);
    assert_eq!(bypass(&api, "/api/v2/users/me").await, 428);
    assert_eq!(api.get("/api/v2/users/me").await.status, 200);
    let log = member.requests();
    assert_eq!(log.iter().map(|l| (l.status, l.bypass_ratelimit)).collect::<Vec<_>>(), [(428, true), (200, false)]);
}

#[tokio::test]
async fn latency_is_added_and_faults_are_deterministic_per_seed() {
    let slow = fake(Edition::Premium, false);
    slow.set_faults(Faults { latency: Duration::from_millis(150), ..Faults::default() });
    let started = Instant::now();
    assert_eq!(Api::new(&slow).get("/healthz").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    async fn statuses(seed: u64) -> Vec<u16> {
        let fake = FakeCoderd::start(FakeOptions { seed, ..FakeOptions::default() });
        fake.set_faults(Faults { error_rate: 0.5, ..Faults::default() });
        let api = Api::new(&fake);
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(api.get("/api/v2/users/me").await.status);
        }
        out
    }
    let first = statuses(7).await;
    assert!(first.contains(&500) && first.contains(&200), "{first:?}");
    assert_eq!(statuses(7).await, first);
    assert_ne!(statuses(8).await, first);
}

#[tokio::test]
async fn restart_closes_connections_and_can_wipe_state() {
    let fake = fake(Edition::Premium, true);
    let api = Api::new(&fake);
    let url = fake.url();
    assert_eq!(api.post("/api/v2/organizations", json!({"name": "team"})).await.status, 201);
    let request = format!("GET /api/v2/users/me HTTP/1.1\r\nHost: x\r\nCoder-Session-Token: {}\r\n\r\n", fake.token());
    let (mut stream, first) = raw_exchange(&fake, &request).await;
    assert!(first.starts_with(b"HTTP/1.1 200"));

    fake.restart(false);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await.expect("closed");
    assert!(closed.is_err() || rest.is_empty(), "the kept-alive connection is closed");
    assert_eq!(fake.url(), url);
    assert_eq!(Api::new(&fake).get("/api/v2/organizations/team").await.status, 200, "state survives");

    fake.restart(true);
    assert_eq!(fake.url(), url);
    let fresh = Api::new(&fake);
    let missing = "Resource not found or you do not have access to this resource";
    fresh.get("/api/v2/organizations/team").await.expect(404, missing);
    assert_eq!(fake.organizations().len(), 1);
    assert_eq!(fake.licenses().len(), 1, "the licensed option is re-applied");
    assert_eq!(fresh.get("/api/v2/entitlements").await.json()["has_license"], true);

    let uploaded = enterprise_with_uploaded_state().await;
    uploaded.restart(true);
    assert!(uploaded.licenses().is_empty(), "uploaded licenses are lost");
    assert!(uploaded.ai_providers().is_empty());
}

async fn enterprise_with_uploaded_state() -> FakeCoderd {
    let fake = fake(Edition::Enterprise, false);
    let api = Api::new(&fake);
    let jwt = FakeCoderd::license_jwt(JTI, &ALL);
    assert_eq!(api.post("/api/v2/licenses", json!({"license": jwt})).await.status, 201);
    let body =
        json!({"type": "anthropic", "name": "claude", "base_url": "https://api.anthropic.com/", "api_keys": ["k"]});
    assert_eq!(api.post("/api/v2/ai/providers", body).await.status, 201);
    fake
}
