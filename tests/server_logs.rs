//! Logs never carry object contents: every log line of the server (all levels, JSON) is
//! captured while it handles reviews holding a Secret's values and literal env values, and
//! none of those values appears, while identities (uid, kind, namespace, name) do.

#[path = "support/log_capture.rs"]
mod log_capture;
mod server_support;

use base64::Engine as _;
use coder_guard::server::{LogFormat, logging};
use log_capture::LogCapture;
use serde_json::json;
use server_support::{Options, TestServer, deny_review, mutate_review};

const SECRET_VALUE: &str = "hunter2-secret-value-5d41402abc";
const STRING_DATA: &str = "plain-string-data-7c9e6679";
const ENV_VALUE: &str = "https://user:env-password-0f8fad5b@coder.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_identities_but_no_values() {
    let capture = LogCapture::default();
    // The production JSON format (`serve --log-format json`), every level.
    let filter = tracing_subscriber::EnvFilter::new("trace");
    tracing::subscriber::set_global_default(logging::subscriber(LogFormat::Json, filter, false, capture.clone()))
        .unwrap();

    let server = TestServer::start(Options::default()).await;
    let client = server.client();

    // A Secret under review, with base64 data and stringData.
    let mut secret = deny_review("log-secret");
    secret["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Secret"});
    secret["request"]["object"] = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "coder"},
        "data": {"password": base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE)},
        "stringData": {"token": STRING_DATA}});
    server.review(&client, "/validate", &secret).await;
    server.review(&client, "/mutate", &secret).await;

    // A denied object and a mutated one, both carrying a literal env value.
    let mut denied = deny_review("log-denied");
    denied["request"]["object"]["spec"]["extraEnv"] =
        json!([{"name": "CODER_PROVISIONERD_TAGS", "value": ENV_VALUE}, {"name": "CODER_URL", "value": ENV_VALUE}]);
    let response = server.review(&client, "/validate", &denied).await;
    assert_eq!(response["allowed"], false);
    let mut mutated = mutate_review("log-mutated");
    mutated["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!(ENV_VALUE);
    server.review(&client, "/mutate", &mutated).await;

    // A body that is not a review, with the value inside.
    let (status, _) =
        server.post(&client, "/validate", format!("{{\"password\": \"{SECRET_VALUE}\"").into_bytes()).await;
    assert_eq!(status, 400);
    server.shutdown().await;

    let logs = capture.text();
    eprintln!("{} log lines captured", logs.lines().count());
    for uid in ["log-secret", "log-denied", "log-mutated"] {
        assert!(logs.contains(uid), "the log misses uid {uid}:\n{logs}");
    }
    assert!(logs.contains("\"verdict\":\"denied\""), "{logs}");
    // The answer's line carries the whole identity in its span, and the verdict.
    let answered: serde_json::Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "admission review answered" && l["span"]["uid"] == "log-denied")
        .unwrap_or_else(|| panic!("no answered line for log-denied:\n{logs}"));
    let span = &answered["span"];
    let identity = ["webhook", "uid", "kind", "namespace", "object", "operation", "dry_run"].map(|f| span[f].clone());
    let expected = ["validate", "log-denied", "CoderProvisioner", "coder", "builds", "CREATE"].map(|s| json!(s));
    assert_eq!(identity[..6], expected, "span fields of {answered}");
    assert_eq!(identity[6], json!(false), "dry_run of {answered}");
    assert_eq!(answered["verdict"], "denied");
    assert!(logs.contains("provisioner-key-conflicts"), "rule ids are logged");
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    for value in [SECRET_VALUE, encoded.as_str(), STRING_DATA, ENV_VALUE, "env-password", "hunter2"] {
        assert!(!logs.contains(value), "the log contains {value:?}");
    }
}
