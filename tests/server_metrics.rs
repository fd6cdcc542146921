//! The admin port of the real server: `/metrics` exposition (buckets, labels, no object
//! content), `/readyz`, and the rule configuration reloaded from a swapped ConfigMap volume.

mod server_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use server_support::{Options, TestServer, allow_review, deny_review, mutate_review, warn_review};

async fn metrics(server: &TestServer) -> String {
    let response = reqwest::get(server.admin_url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_have_sub_millisecond_buckets_bounded_labels_and_no_content() {
    let server = TestServer::start(Options::default()).await;
    let client = server.client();
    server.review(&client, "/validate", &deny_review("m-1")).await;
    server.review(&client, "/validate", &warn_review("m-2")).await;
    server.review(&client, "/validate", &allow_review("m-3")).await;
    server.review(&client, "/mutate", &mutate_review("m-4")).await;
    let mut dry = allow_review("m-5");
    dry["request"]["dryRun"] = json!(true);
    server.review(&client, "/validate", &dry).await;
    let (status, _) = server.post(&client, "/validate", b"{".to_vec()).await;
    assert_eq!(status, 400);

    let text = metrics(&server).await;
    let family = "coder_guard_admission_request_duration_seconds";
    for le in ["0.0001", "0.00025", "0.0005", "0.001", "0.01", "1.0", "30.0", "+Inf"] {
        let series = format!(
            r#"{family}_bucket{{le="{le}",webhook="validate",kind="CoderProvisioner",operation="CREATE",verdict="denied",dry_run="false"}}"#
        );
        assert!(text.contains(&series), "missing {series}\n{text}");
    }
    for labels in [
        r#"webhook="validate",kind="CoderProvisioner",operation="CREATE",verdict="warned",dry_run="false""#,
        r#"webhook="validate",kind="Deployment",operation="CREATE",verdict="allowed",dry_run="false""#,
        r#"webhook="validate",kind="Deployment",operation="CREATE",verdict="allowed",dry_run="true""#,
        r#"webhook="mutate",kind="Deployment",operation="CREATE",verdict="allowed",dry_run="false""#,
    ] {
        assert!(text.contains(&format!("{family}_count{{{labels}}} 1")), "missing {labels}\n{text}");
    }
    for line in [
        r#"coder_guard_admission_findings_total{rule="provisioner-key-name",severity="error"} 1"#,
        r#"coder_guard_admission_findings_total{rule="control-plane-ref",severity="warning"} 2"#,
        r#"coder_guard_admission_rejected_requests_total{webhook="validate",code="400"} 1"#,
        "coder_guard_admission_requests_in_flight 0",
        "coder_guard_admission_panics_total 0",
        "coder_guard_certificate_reloads_total 0",
        "coder_guard_certificate_reload_errors_total 0",
        "coder_guard_rule_config_reloads_total 0",
        "coder_guard_rule_config_reload_errors_total 0",
        "coder_guard_ready 1",
    ] {
        assert!(text.contains(line), "missing {line:?}\n{text}");
    }
    let expiry = text
        .lines()
        .find_map(|l| l.strip_prefix("coder_guard_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("certificate expiry gauge");
    let want = server.cert.not_after().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((expiry - want).abs() < 1.0, "{expiry} vs {want}");
    assert!(expiry > SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64());

    // Identities and content never become labels.
    for content in ["m-1", "builds", "gpu-provisioner", "coder-provisioner", "alice", "PSK", "example-provisioner-key"]
    {
        assert!(!text.contains(content), "metrics mention {content:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn readiness_lists_its_checks() {
    let server = TestServer::start(Options::default()).await;
    let response = reqwest::get(server.admin_url("/readyz")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    for check in ["[+]certificate", "[+]rule-config", "[+]webhook-listener", "[+]cache", "[+]shutdown"] {
        assert!(body.contains(check), "{body}");
    }
    assert_eq!(reqwest::get(server.admin_url("/healthz")).await.unwrap().status(), 200);
    server.shutdown().await;
}

/// A ConfigMap volume: `config.yaml -> ..data/config.yaml`, updated by swapping `..data`.
struct ConfigDir {
    dir: tempfile::TempDir,
    version: usize,
}

impl ConfigDir {
    fn new(text: &str) -> Self {
        let mut this = Self { dir: tempfile::tempdir().unwrap(), version: 0 };
        let first = this.write(text);
        std::os::unix::fs::symlink(first, this.dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/config.yaml", this.path()).unwrap();
        this
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn write(&mut self, text: &str) -> String {
        self.version += 1;
        let name = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.path().join(&name)).unwrap();
        std::fs::write(self.dir.path().join(&name).join("config.yaml"), text).unwrap();
        name
    }

    fn swap(&mut self, text: &str) {
        let new = self.write(text);
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(new, &tmp).unwrap();
        std::fs::rename(tmp, self.dir.path().join("..data")).unwrap();
    }
}

#[tokio::test]
async fn rule_config_reloads_on_a_volume_swap_and_keeps_the_old_on_errors() {
    let mut config = ConfigDir::new("rules:\n  provisioner-key-conflicts: warn\n");
    let options = Options { rule_config: Some(config.path()), ..Options::default() };
    let server = TestServer::start(options).await;
    let client = server.client();
    let errors_of = |r: &serde_json::Value| r["status"]["details"]["causes"].as_array().map_or(0, Vec::len);
    assert_eq!(errors_of(&server.review(&client, "/validate", &deny_review("c-1")).await), 1);

    // Both rules off: the object is allowed.
    config.swap("rules:\n  provisioner-key-conflicts: off\n  provisioner-key-name: off\n");
    let mut allowed = false;
    for n in 0..100 {
        let response = server.review(&client, "/validate", &deny_review(&format!("c-2-{n}"))).await;
        if response["allowed"] == true {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(allowed, "the new configuration was not applied");

    // An invalid configuration is rejected and counted; the previous one stays.
    config.swap("rules:\n  provisioner-key-name: strict\n");
    let mut counted = false;
    for _ in 0..100 {
        if metrics(&server).await.contains("coder_guard_rule_config_reload_errors_total 1") {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(counted, "the bad configuration was not counted");
    let response = server.review(&client, "/validate", &deny_review("c-3")).await;
    assert_eq!(response["allowed"], true, "the previous configuration stays in force");
    assert!(metrics(&server).await.contains("coder_guard_rule_config_reloads_total 1"));
    assert_eq!(reqwest::get(server.admin_url("/readyz")).await.unwrap().status(), 200);
    server.shutdown().await;
}
