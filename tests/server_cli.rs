//! `coder-guard serve` and `certs generate` as a black box: start-up fails fast, with messages
//! that name the flag or file and say what to do.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn coder_guard(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coder-guard"));
    cmd.args(args).env("RUST_LOG", "error").env_remove("KUBERNETES_SERVICE_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Bounded: these runs end at start-up; one that does not is killed (outputs are small, so
    // polling cannot block on a full pipe).
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_needs_a_certificate_source() {
    let out = coder_guard(&["serve"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--tls-cert-file and --tls-key-file, or --self-signed"), "{err}");
    assert!(err.contains("--dev"), "{err}");
}

#[test]
fn conflicting_flags_are_usage_errors() {
    for args in [
        &["serve", "--self-signed", "--tls-cert-file", "a", "--tls-key-file", "b"][..],
        &["serve", "--tls-cert-file", "a"][..],
        &["serve", "--dev", "--self-signed"][..],
        &["serve", "--no-webhook", "--dev"][..],
        &["serve", "--dev-objects", "x.yaml"][..],
        &["serve", "--dev", "--shutdown-delay", "5 seconds"][..],
    ] {
        let out = coder_guard(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn unreadable_certificate_files_fail_before_binding() {
    let out = coder_guard(
        &["serve", "--tls-cert-file", "/nonexistent/tls.crt", "--tls-key-file", "/nonexistent/tls.key"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot read --tls-cert-file /nonexistent/tls.crt"), "{err}");
}

#[test]
fn no_cluster_says_how_to_run_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-kubeconfig");
    let out = coder_guard(&["serve", "--self-signed"], &[("KUBECONFIG", missing.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot reach the Kubernetes API"), "{err}");
    assert!(err.contains("coder-guard serve --dev"), "{err}");
}

#[test]
fn an_invalid_rule_config_fails_start_up_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "rules:\n  secret-ref: warn\n  no-such-rule: off\n").unwrap();
    let want = format!("--config {}:3: unknown rule \"no-such-rule\"", config.display());
    // From the environment, as in a Pod spec…
    let out = coder_guard(
        &["serve", "--dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[("CODER_GUARD_CONFIG", config.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    // …and from the flag.
    let out = coder_guard(
        &[
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&want), "{err}");
}

#[test]
fn certs_generate_writes_a_ca_and_a_serving_pair() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let out = coder_guard(
        &["certs", "generate", "--service", "coder-guard", "--namespace", "coder", "--out", out_dir.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(out_dir.join(file).is_file(), "{file} missing");
    }
    // The written pair serves: `serve` loads it.
    let cert = out_dir.join("tls.crt");
    let key = out_dir.join("tls.key");
    let loaded = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(coder_guard::certs::start(coder_guard::certs::Source::Files { cert, key }));
    assert!(loaded.is_ok(), "{loaded:?}");
}
