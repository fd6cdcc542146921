//! What the loop writes to coderd: what is needed, once, across restarts, and only the change.

use super::*;

#[test]
fn first_reconcile_writes_what_is_needed_then_nothing_then_only_the_change() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions::default());
    let ns = api.namespace("reconcile-first");
    apply_all(api, &full_setup(&ns, &coderd));
    let running = start_loop(api);
    wait_all_ready(api, &ns, Duration::from_secs(60));

    let first = writes(&coderd);
    let org_id =
        coderd.organizations().iter().find(|o| o["name"] == "platform").unwrap()["id"].as_str().unwrap().to_owned();
    let expected = vec![
        "PATCH /api/v2/organizations/ORG/settings/idpsync/roles".replace("ORG", &org_id),
        "PATCH /api/v2/settings/idpsync/organization".to_owned(),
        "POST /api/v2/ai/providers".to_owned(),
        "POST /api/v2/ai/providers".to_owned(),
        "POST /api/v2/licenses".to_owned(),
        "POST /api/v2/organizations".to_owned(),
        "POST /api/v2/organizations/default/provisionerkeys".to_owned(),
        "PUT /api/v2/appearance".to_owned(),
    ];
    let mut expected = expected;
    expected.sort();
    assert_eq!(first, expected, "first reconcile: exactly the writes needed");
    assert_eq!(coderd.licenses().len(), 1);
    assert_eq!(coderd.ai_provider_keys("openai"), [CANARY_API_KEY]);
    let key = coderd.provisioner_keys("default");
    assert_eq!(key.len(), 1);
    assert_eq!(key[0]["tags"]["pool"], "gpu");
    let stored = api.kubectl_ok(["get", "secret", "builders-provisioner-key", "-n", &ns, "-o", "jsonpath={.data.key}"]);
    let plaintext = coderd.provisioner_key_secret("default", "builders").unwrap();
    assert_eq!(base64_decode(&stored), plaintext, "the key's plaintext is in its Secret");

    // Steady state: several resyncs, no writes at all.
    coderd.clear_log();
    std::thread::sleep(Duration::from_secs(7));
    assert!(coderd.requests().len() > 5, "the loop kept resyncing");
    assert_eq!(writes(&coderd), Vec::<String>::new(), "steady state writes nothing");

    // One change: only its write.
    api.kubectl_ok([
        "patch",
        "coderaiprovider",
        "openai",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"displayName":"OpenAI (prod)"}}"#,
    ]);
    let provider_id =
        coderd.ai_providers().iter().find(|p| p["name"] == "openai").unwrap()["id"].as_str().unwrap().to_owned();
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "the display name to reach coderd", || {
        Ok(coderd.ai_providers().iter().any(|p| p["display_name"] == "OpenAI (prod)"))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(writes(&coderd), [format!("PATCH /api/v2/ai/providers/{provider_id}")], "only the change is written");
    drop(running);
    assert_no_canary(api, &ns, &coderd, &plaintext);
}

#[test]
fn a_license_is_posted_once_across_restarts_and_lost_status() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions::default());
    let ns = api.namespace("reconcile-license");
    apply_all(api, &full_setup(&ns, &coderd)[..5]);
    let wait_instance = || {
        support::poll(Duration::from_secs(60), Duration::from_millis(300), "the license to be applied", || {
            let instance = get(api, "coderinstance", &ns, "coder");
            Ok(condition(&instance, "LicenseApplied").is_some_and(|c| c["status"] == "True"))
        })
        .unwrap()
    };
    let running = start_loop(api);
    wait_instance();
    drop(running);
    // The status is lost (as if the write after the upload had failed) and the loop restarts.
    api.kubectl_ok([
        "patch",
        "coderinstance",
        "coder",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":null}"#,
    ]);
    let running = start_loop(api);
    wait_instance();
    drop(running);
    let running = start_loop(api);
    std::thread::sleep(Duration::from_secs(3));
    wait_instance();
    drop(running);
    let posts = coderd.requests().iter().filter(|r| r.method == "POST" && r.path == "/api/v2/licenses").count();
    assert_eq!(posts, 1, "one license POST per distinct license");
    assert_eq!(coderd.licenses().len(), 1);
}

#[test]
fn a_provisioner_key_is_created_once_and_rotated_only_when_its_secret_is_lost() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions { licensed: true, ..FakeOptions::default() });
    let ns = api.namespace("reconcile-key");
    let setup = full_setup(&ns, &coderd);
    apply_all(api, &[setup[0].clone(), setup[1].clone(), setup[4].clone(), setup[8].clone()]);
    let running = start_loop(api);
    let key_ready = |what: &str| {
        support::poll(Duration::from_secs(60), Duration::from_millis(300), what, || {
            Ok(condition(&get(api, "coderprovisionerkey", &ns, "builders"), "Ready")
                .is_some_and(|c| c["status"] == "True"))
        })
        .unwrap()
    };
    key_ready("the key to be Ready");
    let first = coderd.provisioner_key_secret("default", "builders").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let creates = |c: &FakeCoderd| count(&writes(c), "POST /api/v2/organizations/default/provisionerkeys");
    assert_eq!(creates(&coderd), 1, "one creation while the Secret is kept");

    // OnSecretLoss: losing the Secret rotates the key once.
    api.kubectl_ok(["delete", "secret", "builders-provisioner-key", "-n", &ns]);
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "a rotated key", || {
        Ok(coderd.provisioner_key_secret("default", "builders").is_some_and(|k| k != first))
    })
    .unwrap();
    key_ready("the rotated key to be Ready");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(creates(&coderd), 2, "exactly one rotation");
    let second = coderd.provisioner_key_secret("default", "builders").unwrap();
    let stored = api.kubectl_ok(["get", "secret", "builders-provisioner-key", "-n", &ns, "-o", "jsonpath={.data.key}"]);
    assert_eq!(base64_decode(&stored), second);

    // Never: losing it again is reported, not repaired.
    api.kubectl_ok([
        "patch",
        "coderprovisionerkey",
        "builders",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"rotationPolicy":"Never"}}"#,
    ]);
    api.kubectl_ok(["delete", "secret", "builders-provisioner-key", "-n", &ns]);
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "the SecretLost condition", || {
        let key = get(api, "coderprovisionerkey", &ns, "builders");
        Ok(key["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["reason"] == "SecretLost"))
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(creates(&coderd), 2, "policy Never does not rotate");
    drop(running);
}
