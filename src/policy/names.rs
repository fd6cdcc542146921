//! Name rules of coderd (`codersdk/name.go`, provisioner-key handler) and of the names the
//! operator derives, plus the value formats coderd checks (URLs, banner colours, IAM role
//! ARNs). Pure predicates returning what is wrong, for the rules to report.

use std::sync::LazyLock;

use regex::Regex;

static USERNAME_VALID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$").expect("static regex"));
static AI_PROVIDER_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(-[a-z0-9]+)*$").expect("static regex"));
static DNS1035_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));
static DNS1123_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));
static DAEMON_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,61}[a-zA-Z0-9]$").expect("static regex"));
static URL_ENV: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!("^(?:{}|CODER_(?:AIBRIDGE|AI_GATEWAY)_[A-Z0-9_]*BASE_URL)$", super::env::ACCESS_URL);
    Regex::new(&pattern).expect("static regex")
});
static IAM_ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/(?:[A-Za-z0-9_+=,.@-]+/)*[A-Za-z0-9_+=,.@-]+$")
        .expect("static regex")
});

/// Reserved provisioner key names (compared case-insensitively by coderd).
pub const RESERVED_PROVISIONER_KEY_NAMES: [&str; 3] = ["built-in", "user-auth", "psk"];

/// coderd `NameValid` (organization, user, template names): why `name` is invalid, if it is.
pub fn name_valid(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 32 {
        return Some(format!("is {} bytes long; coderd allows at most 32", name.len()));
    }
    if name == "new" || name == "create" {
        return Some(format!("{name:?} is reserved by coderd"));
    }
    if !USERNAME_VALID.is_match(name) {
        return Some(
            "must be ASCII letters and digits, with single hyphens between them (no leading, trailing or double hyphens)"
                .into(),
        );
    }
    None
}

/// An organization name coderd would create: `NameValid` and not `default`.
pub fn organization_name_valid(name: &str) -> Option<String> {
    if name == "default" {
        return Some("\"default\" is reserved by coderd for the default organization".into());
    }
    name_valid(name)
}

/// coderd `DisplayNameValid`: ≤64 bytes, no leading or trailing whitespace.
pub fn display_name_valid(name: &str) -> Option<String> {
    if name.len() > 64 {
        return Some(format!("is {} bytes long; coderd allows at most 64", name.len()));
    }
    if name.trim() != name {
        return Some("must not start or end with whitespace".into());
    }
    None
}

/// coderd `GroupNameValid`: ≤255 bytes, the username pattern, not `new`/`create`.
pub fn group_name_valid(name: &str) -> Option<String> {
    if name.len() > 255 {
        return Some(format!("is {} bytes long; coderd allows at most 255", name.len()));
    }
    if name == "new" || name == "create" {
        return Some(format!("{name:?} is reserved by coderd"));
    }
    if !USERNAME_VALID.is_match(name) {
        return Some("must be ASCII letters and digits, with single hyphens between them".into());
    }
    None
}

/// A provisioner key name coderd accepts: 1–64 bytes, not reserved in any letter case.
pub fn provisioner_key_name_valid(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 64 {
        return Some(format!("is {} bytes long; coderd allows at most 64 bytes", name.len()));
    }
    if let Some(r) = RESERVED_PROVISIONER_KEY_NAMES.iter().find(|r| r.eq_ignore_ascii_case(name)) {
        return Some(format!("{name:?} is reserved by coderd (as {r:?}, compared case-insensitively)"));
    }
    None
}

/// An AI provider name: `^[a-z0-9]+(-[a-z0-9]+)*$`.
pub fn ai_provider_name_valid(name: &str) -> Option<String> {
    (!AI_PROVIDER_NAME.is_match(name))
        .then(|| "must be lowercase letters and digits with single hyphens between them".into())
}

/// The `--name` / `CODER_PROVISIONER_DAEMON_NAME` rule of `coder provisioner start`.
pub fn daemon_name_valid(name: &str) -> Option<String> {
    if name.len() > 64 || !DAEMON_NAME.is_match(name) {
        return Some(
            "must be 2–63 ASCII letters, digits and hyphens, starting and ending with a letter or digit".into(),
        );
    }
    None
}

/// DNS-1035 label (Service names): ≤63, lowercase, starts with a letter.
pub fn dns1035_label_valid(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some(format!("is {} characters long; a DNS-1035 label allows at most 63", name.len()));
    }
    (!DNS1035_LABEL.is_match(name)).then(|| {
        "must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit".into()
    })
}

/// DNS-1123 subdomain (most object names): ≤253, dot-separated DNS-1123 labels.
pub fn dns1123_subdomain_valid(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some(format!("is {} characters long; a DNS subdomain allows at most 253", name.len()));
    }
    name.split('.').any(|label| label.len() > 63 || !DNS1123_LABEL.is_match(label)).then(|| {
        "must be a DNS subdomain: lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit".into()
    })
}

/// FNV-1a 32-bit, as the operator uses to shorten names.
pub fn fnv32a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The operator's byte-slicing truncation: `prefix + name[..keep] + "-" + hash + suffix`
/// when `prefix + name + suffix` is longer than `max`.
fn truncated(prefix: &str, name: &str, suffix: &str, max: usize, keep: usize) -> String {
    let full = format!("{prefix}{name}{suffix}");
    if full.len() <= max {
        return full;
    }
    let cut = &name.as_bytes()[..keep.min(name.len())];
    format!("{prefix}{}-{:08x}{suffix}", String::from_utf8_lossy(cut), fnv32a(name.as_bytes()))
}

/// Name of the operator's provisioner Deployment, Role and RoleBinding.
pub fn provisioner_resource_name(name: &str) -> String {
    truncated("provisioner-", name, "", 63, 42)
}

/// Name of the operator's provisioner ServiceAccount.
pub fn provisioner_service_account_name(name: &str) -> String {
    truncated("", name, "-provisioner", 63, 42)
}

/// Name of the operator's workspace proxy Deployment.
pub fn workspace_proxy_deployment_name(name: &str) -> String {
    truncated("wsproxy-", name, "", 63, 46)
}

/// Name of the Secret the operator writes a control plane's token into.
pub fn operator_token_secret_name(name: &str) -> String {
    truncated("", name, "-operator-token", 63, 39)
}

// === value formats ===

/// An absolute `http`/`https` URL with a host, as coderd requires: why `url` is not one.
/// The scheme is compared case-insensitively (Go's `url.Parse` lowercases it). The message
/// never repeats the URL, which may carry credentials.
pub fn http_url_valid(url: &str) -> Option<String> {
    if url.is_empty() {
        return Some("is empty".into());
    }
    if url.chars().any(char::is_whitespace) {
        return Some("contains whitespace".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("is not an absolute URL (it must start with http:// or https://)".into());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Some(format!("has scheme {scheme:?} (only http and https are accepted)"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => return Some("has an unterminated IPv6 host".into()),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Some("has no host".into());
    }
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
        return Some("has a port that is not a number".into());
    }
    None
}

/// True for env vars whose value coderd parses as an absolute URL: the access URL and the AI
/// provider base URLs (`CODER_AIBRIDGE_…_BASE_URL`, `CODER_AI_GATEWAY_…_BASE_URL`).
pub fn is_url_env(name: &str) -> bool {
    URL_ENV.is_match(name)
}

/// Why `expr` does not compile as a regular expression, on one line (the `regex` crate's
/// syntax, which is close to Go's RE2). An expression that only exceeds this crate's size
/// limit is not judged, since Go's limits differ.
pub fn regex_valid(expr: &str) -> Option<String> {
    let e = match Regex::new(expr) {
        Ok(_) | Err(regex::Error::CompiledTooBig(_)) => return None,
        Err(e) => e.to_string(),
    };
    Some(match e.lines().find_map(|l| l.trim().strip_prefix("error: ")) {
        Some(line) => line.trim().to_owned(),
        None => e.split_whitespace().collect::<Vec<_>>().join(" "),
    })
}

/// coderd's announcement-banner colour: `#` followed by exactly six hex digits.
pub fn banner_color_valid(color: &str) -> Option<String> {
    let Some(hex) = color.strip_prefix('#') else {
        return Some("has no '#' prefix".into());
    };
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some("must be '#' followed by exactly 6 hex digits".into());
    }
    None
}

/// An IAM role ARN: `arn:<aws partition>:iam::<12-digit account>:role/<optional path/><name>`.
pub fn iam_role_arn_valid(arn: &str) -> Option<String> {
    (!IAM_ROLE_ARN.is_match(arn))
        .then(|| "is not an IAM role ARN of the form arn:aws:iam::<12-digit account ID>:role/<path/>name".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_valid_boundaries() {
        assert_eq!(name_valid(&"a".repeat(32)), None);
        assert!(name_valid(&"a".repeat(33)).is_some());
        assert!(name_valid("").is_some());
        assert!(name_valid("new").is_some());
        assert_eq!(name_valid("New"), None, "reserved words are compared exactly");
        assert!(name_valid("a--b").is_some());
        assert!(name_valid("-a").is_some());
        assert!(name_valid("ü").is_some(), "multi-byte letters are not ASCII alphanumerics");
        assert!(organization_name_valid("default").is_some());
        assert_eq!(organization_name_valid("Data-Science"), None);
    }

    #[test]
    fn provisioner_key_names_count_bytes_and_fold_case() {
        assert_eq!(provisioner_key_name_valid(&"k".repeat(64)), None);
        assert!(provisioner_key_name_valid(&"k".repeat(65)).is_some());
        // 32 two-byte characters are 64 bytes: accepted; 33 are 66 bytes: rejected.
        assert_eq!(provisioner_key_name_valid(&"é".repeat(32)), None);
        assert!(provisioner_key_name_valid(&"é".repeat(33)).is_some());
        for reserved in ["psk", "PSK", "Built-In", "USER-AUTH"] {
            assert!(provisioner_key_name_valid(reserved).is_some(), "{reserved}");
        }
        assert_eq!(provisioner_key_name_valid("psk2"), None);
    }

    #[test]
    fn derived_names_match_the_operator() {
        assert_eq!(provisioner_resource_name("abc"), "provisioner-abc");
        let long = "a".repeat(60);
        let derived = provisioner_resource_name(&long);
        assert_eq!(derived.len(), 63);
        assert!(derived.starts_with(&format!("provisioner-{}-", "a".repeat(42))));
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(operator_token_secret_name("cp"), "cp-operator-token");
    }

    #[test]
    fn dns_names() {
        assert_eq!(dns1035_label_valid("coder"), None);
        assert!(dns1035_label_valid("1coder").is_some());
        assert!(dns1035_label_valid("coder.example").is_some());
        assert!(dns1035_label_valid(&"a".repeat(64)).is_some());
        assert_eq!(dns1123_subdomain_valid("a.b-c"), None);
        assert!(dns1123_subdomain_valid("a.-b").is_some());
        assert!(dns1123_subdomain_valid("Upper").is_some());
    }

    #[test]
    fn http_urls() {
        for ok in
            ["https://coder.example.com", "http://10.0.0.1:8080/path?q=1", "HTTPS://c.example", "https://[::1]:443/"]
        {
            assert_eq!(http_url_valid(ok), None, "{ok}");
        }
        for bad in [
            "",
            "coder.example.com",
            "ftp://c.example",
            "https://",
            "https:///path",
            "https://c .example",
            "https://c:x/",
            "https://@/",
        ] {
            assert!(http_url_valid(bad).is_some(), "{bad}");
        }
        let why = http_url_valid("ftp://user:hunter2@host").unwrap_or_default();
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn url_env_names_and_regexes() {
        for name in
            ["CODER_ACCESS_URL", "CODER_AIBRIDGE_OPENAI_BASE_URL", "CODER_AI_GATEWAY_PROVIDER_3_BEDROCK_BASE_URL"]
        {
            assert!(is_url_env(name), "{name}");
        }
        for name in ["CODER_WILDCARD_ACCESS_URL", "CODER_AIBRIDGE_OPENAI_KEY", "X_CODER_ACCESS_URL", "CODER_BASE_URL"] {
            assert!(!is_url_env(name), "{name}");
        }
        assert_eq!(regex_valid("^eng-(a|b)+$"), None);
        assert_eq!(regex_valid("(open").as_deref(), Some("unclosed group"));
        assert!(regex_valid("[z-a]").is_some_and(|e| !e.contains('\n')));
    }

    #[test]
    fn banner_colors_and_role_arns() {
        assert_eq!(banner_color_valid("#00ff0A"), None);
        for bad in ["00ff00", "#00ff0", "#00ff000", "#gg0000", "red", ""] {
            assert!(banner_color_valid(bad).is_some(), "{bad}");
        }
        for ok in ["arn:aws:iam::123456789012:role/Bedrock", "arn:aws-us-gov:iam::123456789012:role/a/b/c_d+=,.@-"] {
            assert_eq!(iam_role_arn_valid(ok), None, "{ok}");
        }
        for bad in [
            "arn:aws:iam::12345678901:role/r",
            "arn:aws:iam::123456789012:user/u",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a//b",
            "arn:gcp:iam::123456789012:role/r",
        ] {
            assert!(iam_role_arn_valid(bad).is_some(), "{bad}");
        }
    }
}
