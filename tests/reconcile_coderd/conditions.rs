//! Faults, premium features without a license, an open-source coderd, and deletion policy.

use super::*;

#[test]
fn everything_converges_under_faults_without_duplicate_creates() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    // Not an owner: the bypass is refused (428) and the injected 429 bursts reach the loop.
    let coderd = FakeCoderd::start(FakeOptions { seed: 7, owner: false, ..FakeOptions::default() });
    coderd.set_faults(Faults { error_rate: 0.2, reset_rate: 0.05, exempt_healthz: false, ..Faults::default() });
    coderd.rate_limit(10, 1);
    let ns = api.namespace("reconcile-faults");
    apply_all(api, &full_setup(&ns, &coderd));
    let running = start_loop(api);
    wait_all_ready(api, &ns, Duration::from_secs(150));
    assert_single_objects(&coderd);
    let before = count(&writes(&coderd), "POST /api/v2/organizations/default/provisionerkeys");
    assert_eq!(before, 1, "one key creation despite faults");

    // coderd restarts and loses its database: everything is re-created once.
    coderd.restart(true);
    coderd.rate_limit(5, 1);
    support::poll(Duration::from_secs(150), Duration::from_millis(500), "coderd to be repopulated", || {
        Ok(coderd.licenses().len() == 1
            && coderd.ai_providers().len() == 2
            && coderd.organizations().iter().any(|o| o["name"] == "platform")
            && coderd.provisioner_keys("default").len() == 1)
    })
    .unwrap();
    wait_all_ready(api, &ns, Duration::from_secs(150));
    let key = coderd.provisioner_key_secret("default", "builders").unwrap();
    support::poll(Duration::from_secs(30), Duration::from_millis(300), "the new key in its Secret", || {
        let stored =
            api.kubectl_ok(["get", "secret", "builders-provisioner-key", "-n", &ns, "-o", "jsonpath={.data.key}"]);
        Ok(base64_decode(&stored) == key)
    })
    .unwrap();
    assert_single_objects(&coderd);
    drop(running);
    assert_no_canary(api, &ns, &coderd, &key);
}

#[test]
fn premium_surfaces_without_a_license_and_an_open_source_coderd_become_conditions() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    for (edition, reason) in [(Edition::Enterprise, "NotEntitled"), (Edition::Agpl, "NotSupported")] {
        let coderd = FakeCoderd::start(FakeOptions { edition, ..FakeOptions::default() });
        let ns = api.namespace("reconcile-unlicensed");
        let setup = full_setup(&ns, &coderd);
        // No license in the instance.
        let mut instance: Value = serde_json::from_str(&setup[4]).unwrap();
        instance["spec"].as_object_mut().unwrap().remove("license");
        apply_all(api, &[setup[0].clone(), instance.to_string(), setup[5].clone(), setup[8].clone()]);
        let running = start_loop(api);
        support::poll(Duration::from_secs(60), Duration::from_millis(300), reason, || {
            let org = get(api, "coderorganization", &ns, "platform");
            let key = get(api, "coderprovisionerkey", &ns, "builders");
            Ok([org, key].iter().all(|o| condition(o, "Ready").is_some_and(|c| c["reason"] == reason)))
        })
        .unwrap();
        coderd.clear_log();
        std::thread::sleep(Duration::from_secs(3));
        let calls = coderd.requests().len();
        assert!(calls < 40, "{edition:?}: no hot loop on {reason} ({calls} requests in 3s)");
        assert_eq!(writes(&coderd), Vec::<String>::new(), "{edition:?}: nothing written");
        let refused = coderd.writes().len();
        assert!(refused <= 4, "{edition:?}: refused writes are not hammered ({refused} in 3s)");
        let org = get(api, "coderorganization", &ns, "platform");
        let message = condition(&org, "Ready").unwrap()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("license") || message.contains("open-source"), "{message}");
        drop(running);
    }
}

#[test]
fn deleting_an_organization_with_policy_delete_removes_it_from_coderd() {
    let _turn = turn();
    let Some(api) = ApiServer::shared_or_skip() else { return };
    let coderd = FakeCoderd::start(FakeOptions { licensed: true, ..FakeOptions::default() });
    let ns = api.namespace("reconcile-delete");
    let setup = full_setup(&ns, &coderd);
    let mut instance: Value = serde_json::from_str(&setup[4]).unwrap();
    instance["spec"].as_object_mut().unwrap().remove("license");
    apply_all(api, &[setup[0].clone(), instance.to_string(), setup[5].clone()]);
    let running = start_loop(api);
    // `kubectl wait` observes the condition through a watch.
    api.kubectl_ok(["wait", "--for=condition=Ready", "coderorganization/platform", "-n", &ns, "--timeout=60s"]);
    let org = get(api, "coderorganization", &ns, "platform");
    assert!(org["metadata"]["finalizers"].to_string().contains("coderd.coder.com/cleanup"));
    api.kubectl_ok(["delete", "coderorganization", "platform", "-n", &ns, "--wait=true", "--timeout=60s"]);
    assert!(!coderd.organizations().iter().any(|o| o["name"] == "platform"), "deleted in coderd");
    drop(running);
}
