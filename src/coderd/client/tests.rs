use super::*;

#[test]
fn path_segments_are_escaped_and_joined_to_the_base() {
    let client = Client::new("https://coder.example.com/", Secret::new("t"), None, Duration::from_secs(1)).unwrap();
    let url = client.endpoint_url(&["api", "v2", "organizations", "default", "provisionerkeys", "a b/c?d"]);
    assert_eq!(url.as_str(), "https://coder.example.com/api/v2/organizations/default/provisionerkeys/a%20b%2Fc%3Fd");
    let client = Client::new("http://127.0.0.1:3000", Secret::new("t"), None, Duration::from_secs(1)).unwrap();
    assert_eq!(client.endpoint_url(&["healthz"]).as_str(), "http://127.0.0.1:3000/healthz");
}

#[test]
fn bad_settings_are_config_errors_that_name_the_url() {
    for url in ["coder.example.com", "ftp://coder.example.com", "mailto:x@example.com"] {
        let err = Client::new(url, Secret::new("t"), None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{url}: {err}");
        assert!(err.to_string().contains(url), "{err}");
    }
    let err = Client::new("https://c", Secret::new("t"), Some(b"not pem"), Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("CA bundle"), "{err}");
}

#[tokio::test]
async fn a_token_http_cannot_carry_is_a_config_error_not_an_unreachable_coderd() {
    // Nothing listens on the port: the request fails before anything is sent.
    let client = Client::new("http://127.0.0.1:9", Secret::new("s3cr3t\nvalue"), None, Duration::from_secs(1)).unwrap();
    let err = client.me().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert_eq!(err.class(), super::super::Class::Invalid);
    assert!(err.to_string().contains("check the token Secret"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    // A provisioner key HTTP cannot carry is no key coderd knows.
    let client = Client::new("http://127.0.0.1:9", Secret::new("t"), None, Duration::from_secs(1)).unwrap();
    assert!(client.verify_provisioner_key(&Secret::new("k\ney")).await.unwrap().is_none());
}

#[test]
fn a_reused_http_client_takes_the_url_and_token_given() {
    let http = Client::http("https://coder.example.com", None, Duration::from_secs(1)).unwrap();
    let client = Client::with_http(http.clone(), "https://coder.example.com/", Secret::new("t")).unwrap();
    assert_eq!(client.url(), "https://coder.example.com/");
    let err = Client::with_http(http, "coder.example.com", Secret::new("t")).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
}

#[test]
fn secrets_serialize_as_values_but_never_debug_print() {
    let request = UpdateAiProvider { api_keys: Some(vec![Secret::new("sk-1")]), ..Default::default() };
    assert_eq!(serde_json::to_value(&request).unwrap()["api_keys"], serde_json::json!([{"api_key": "sk-1"}]));
    assert_eq!(serde_json::to_value(&request).unwrap()["settings"], serde_json::Value::Null);
    assert!(!format!("{request:?}").contains("sk-1"));
}

#[test]
fn empty_success_bodies_decode_as_null() {
    assert_eq!(decode::<serde_json::Value>("DELETE /x", b"").unwrap(), serde_json::Value::Null);
    let err = decode::<Vec<License>>("GET /x", b"{\"secret\": 1").unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
}
