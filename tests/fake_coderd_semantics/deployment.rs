//! Deployment-wide behaviour: auth, health and build info, licenses and entitlements, premium gates, AGPL routing, appearance.

use super::*;

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
