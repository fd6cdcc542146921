use proptest::prelude::*;
use tracing::{info, info_span, warn};
use tracing_subscriber::fmt::format::FmtSpan;

use super::*;

#[path = "../../../tests/support/log_capture.rs"]
mod log_capture;
use log_capture::LogCapture;

/// Events of every field type, in and out of spans, with text that needs escaping.
fn emit() {
    warn!(error = %"boom \"quoted\"\n\ttab\u{1}\u{7f}é🦀\\", "outside a span");
    let conn = info_span!("connection", peer = "127.0.0.1:5555");
    let _c = conn.enter();
    info!("in the connection span");
    let span = info_span!(
        "admission",
        webhook = "mutate",
        uid = "705ab4f5-6393",
        kind = "Deployment",
        namespace = "coder",
        object = "a\"b",
        operation = "CREATE",
        dry_run = false
    );
    let _a = span.enter();
    info!(verdict = "allowed", rules = %"", warnings = 0u64, patch_operations = 2u64, duration_us = 17u64,
        ratio = 0.25f64, not_a_number = f64::NAN, negative = -3i64, r#type = "raw", listed = ?vec!["x", "y"],
        "admission review answered");
    let empty = info_span!("empty");
    let _e = empty.enter();
    info!(at = "innermost span without fields", "nested");
}

fn lines(subscriber: impl Subscriber + Send + Sync + 'static, capture: &LogCapture) -> Vec<serde_json::Value> {
    tracing::subscriber::with_default(subscriber, emit);
    capture.text().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn json_lines_have_the_shape_of_tracing_subscribers_json() {
    let ours = LogCapture::default();
    let ours = lines(subscriber(LogFormat::Json, EnvFilter::new("trace"), false, ours.clone()), &ours);
    let theirs = LogCapture::default();
    let reference = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("trace"))
        .with_writer(theirs.clone())
        .with_span_events(FmtSpan::NONE)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish();
    let theirs = lines(reference, &theirs);
    assert_eq!(ours.len(), 4);
    assert_eq!(ours.len(), theirs.len());
    for (mut a, mut b) in ours.into_iter().zip(theirs) {
        let stamp = a["timestamp"].as_str().unwrap().to_owned();
        assert!(stamp.len() > 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
        for line in [&mut a, &mut b] {
            line.as_object_mut().unwrap().remove("timestamp");
        }
        assert_eq!(a, b);
    }
}

#[test]
fn json_lines_name_the_innermost_span_with_its_fields() {
    let capture = LogCapture::default();
    let lines = lines(subscriber(LogFormat::Json, EnvFilter::new("info"), false, capture.clone()), &capture);
    assert!(lines[0].get("span").is_none(), "{}", lines[0]);
    assert_eq!(lines[0]["error"], "boom \"quoted\"\n\ttab\u{1}\u{7f}é🦀\\");
    assert_eq!(lines[2]["span"]["uid"], "705ab4f5-6393");
    assert_eq!(lines[2]["span"]["object"], "a\"b");
    assert_eq!(lines[2]["span"]["name"], "admission");
    assert_eq!(lines[2]["not_a_number"], serde_json::Value::Null);
    assert_eq!(lines[2]["type"], "raw");
    assert_eq!(lines[3]["span"], serde_json::json!({"name": "empty"}));
    assert_eq!(lines[3]["level"], "INFO");
    assert_eq!(lines[3]["target"], module_path!());
}

#[test]
fn json_lines_honour_the_filter() {
    let capture = LogCapture::default();
    let lines = lines(subscriber(LogFormat::Json, EnvFilter::new("warn"), false, capture.clone()), &capture);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], "WARN");
}

proptest! {
    #[test]
    fn escaped_strings_read_back_unchanged(s in any::<String>()) {
        let mut out = String::new();
        string(&mut Writer::new(&mut out), &s).unwrap();
        prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
    }
}
