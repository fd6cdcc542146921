//! Unit tests: parsing, expiry levels, the self-signed state machine with a fake clock (a year
//! of rotations verified by rustls at each simulated instant), `certs generate`, and the task
//! lifetime. Real handshakes and file swaps are in `tests/certs_reload.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::authority::{Authority, Settings, new_ca, new_leaf, whole_seconds};
use super::files::{Pair, Watcher, parse};
use super::generate::write_files;
use super::*;

const NAME: &str = "coder-guard.coder-guard.svc";

fn names() -> Vec<String> {
    service_dns_names("coder-guard", "coder-guard")
}

/// A CA PEM and a leaf (PEM, key PEM) signed by it.
fn pem_pair(now: SystemTime) -> (String, String, String) {
    let ca = new_ca("test CA", now, 30 * DAY).unwrap();
    let leaf = new_leaf(&ca, &names(), now, now + 10 * DAY).unwrap();
    (ca.pem.clone(), leaf.pem, leaf.key.serialize_pem())
}

fn pair(cert: &str, key: &str) -> Pair {
    Pair { cert: cert.as_bytes().to_vec(), key: key.as_bytes().to_vec() }
}

fn load(cert: &str, key: &str) -> Result<files::Loaded, CertError> {
    parse(&pair(cert, key), Path::new("tls.crt"), Path::new("tls.key"))
}

fn verify(bundle: &[CertificateDer<'static>], leaf: &CertificateDer<'_>, at: SystemTime) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    for ca in bundle {
        roots.add(ca.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
    let name = ServerName::try_from(NAME).unwrap();
    let now = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
    verifier.verify_server_cert(leaf, &[], &name, &[], now).map(|_| ())
}

// === parsing ===

#[test]
fn a_full_chain_leaf_first_is_accepted() {
    let (ca, leaf, key) = pem_pair(SystemTime::now());
    let loaded = load(&format!("{leaf}{ca}"), &key).unwrap();
    assert_eq!(loaded.chain_len, 2);
    assert_eq!(loaded.key.cert.len(), 2);
    assert_eq!(loaded.subject, "CN=coder-guard");
}

/// Which error variant a bad pair produced.
#[derive(Debug, PartialEq)]
enum Kind {
    Mismatch,
    Cert,
    Key,
    Other,
}

fn kind(e: &CertError) -> Kind {
    match e {
        CertError::KeyMismatch { .. } => Kind::Mismatch,
        CertError::InvalidCert { .. } => Kind::Cert,
        CertError::InvalidKey { .. } => Kind::Key,
        _ => Kind::Other,
    }
}

#[test]
fn bad_pairs_are_rejected_with_the_right_variant() {
    let now = SystemTime::now();
    let (ca, leaf, key) = pem_pair(now);
    let (_, other_leaf, other_key) = pem_pair(now);
    let cases = [
        ("key of another cert", leaf.clone(), other_key.clone(), Kind::Mismatch),
        ("CA before leaf", format!("{ca}{leaf}"), key.clone(), Kind::Mismatch),
        ("no certificate", String::new(), key.clone(), Kind::Cert),
        ("key in the cert file", key.clone(), key.clone(), Kind::Cert),
        ("half-written cert", leaf[..leaf.len() / 2].to_owned(), key.clone(), Kind::Cert),
        ("empty key", leaf.clone(), String::new(), Kind::Key),
        ("cert in the key file", leaf.clone(), other_leaf.clone(), Kind::Key),
        ("half-written key", leaf.clone(), key[..key.len() / 2].to_owned(), Kind::Key),
    ];
    for (name, cert, key, want) in cases {
        let err = load(&cert, &key).expect_err(name);
        assert_eq!(kind(&err), want, "{name}: {err}");
    }
}

#[test]
fn key_errors_never_quote_the_key() {
    let (_, leaf, key) = pem_pair(SystemTime::now());
    // Corrupt one base64 character in the middle of the key.
    let body_start = key.find('\n').unwrap() + 5;
    let mut corrupt = key.clone();
    corrupt.replace_range(body_start..body_start + 1, "*");
    let err = load(&leaf, &corrupt).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CertError::InvalidKey { .. }), "{err:?}");
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(&line[..8]), "error quotes key material: {text}");
    }
    assert!(text.contains("--tls-key-file tls.key"), "{text}");
}

#[test]
fn expiry_levels() {
    let now = UNIX_EPOCH + 1000 * DAY;
    let cases = [
        (now + 90 * DAY, Expiry::Fine),
        (now + 30 * DAY, Expiry::Fine),
        (now + 29 * DAY, Expiry::Within30Days),
        (now + 7 * DAY, Expiry::Within30Days),
        (now + 6 * DAY, Expiry::Within7Days),
        (now + Duration::from_secs(1), Expiry::Within7Days),
        (now - Duration::from_secs(1), Expiry::Expired),
    ];
    for (not_after, want) in cases {
        assert_eq!(Expiry::of(not_after, now), want, "{:?}", not_after.duration_since(now));
    }
}

// === files watcher ===

#[tokio::test]
async fn a_bad_pair_is_counted_once_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let now = SystemTime::now();
    let (_, leaf, leaf_key) = pem_pair(now);
    std::fs::write(&cert, &leaf).unwrap();
    std::fs::write(&key, &leaf_key).unwrap();
    let mut watcher = Watcher::load(cert.clone(), key.clone()).await.unwrap();
    let shared = Shared::new(watcher.served(), None);
    let first = shared.served.load().key.clone();

    let (_, _, other_key) = pem_pair(now);
    std::fs::write(&key, &other_key).unwrap();
    for _ in 0..3 {
        watcher.poll(&shared).await;
    }
    assert_eq!(shared.reload_errors.load(Ordering::SeqCst), 1, "the same bad pair is reported once");
    assert_eq!(shared.reloads.load(Ordering::SeqCst), 0);
    assert!(Arc::ptr_eq(&shared.served.load().key, &first));

    std::fs::remove_file(&key).unwrap();
    watcher.poll(&shared).await;
    assert_eq!(shared.reload_errors.load(Ordering::SeqCst), 2, "a missing file is a new failure");

    std::fs::write(&key, &leaf_key).unwrap();
    watcher.poll(&shared).await;
    assert_eq!(shared.reloads.load(Ordering::SeqCst), 0, "restoring the served pair is not a reload");

    let (_, leaf2, key2) = pem_pair(now);
    std::fs::write(&cert, &leaf2).unwrap();
    std::fs::write(&key, &key2).unwrap();
    watcher.poll(&shared).await;
    assert_eq!(shared.reloads.load(Ordering::SeqCst), 1);
    assert_eq!(*shared.certificate_tx.borrow(), 1);
    assert!(!Arc::ptr_eq(&shared.served.load().key, &first));
    assert_eq!(shared.reload_errors.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn start_fails_fast_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = Source::Files { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
    let err = start(source).await.unwrap_err();
    assert!(matches!(err, CertError::ReadCert { .. }), "{err:?}");
    assert!(err.to_string().contains("--tls-cert-file"), "{err}");
}

#[tokio::test]
async fn the_task_ends_when_the_last_handle_is_dropped() {
    let options = Options { poll_interval: Duration::from_millis(10), ..Options::default() };
    for self_signed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let source = if self_signed {
            Source::SelfSigned {
                dns_names: names(),
                validity: DEFAULT_LEAF_VALIDITY,
                renew_before: DEFAULT_RENEW_BEFORE,
            }
        } else {
            let (_, leaf, key) = pem_pair(SystemTime::now());
            std::fs::write(dir.path().join("tls.crt"), leaf).unwrap();
            std::fs::write(dir.path().join("tls.key"), key).unwrap();
            Source::Files { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") }
        };
        let handle = start_with(source, options.clone()).await.unwrap();
        let resolver = handle.resolver();
        let clone = handle.clone();
        let shared = Arc::downgrade(&handle.shared);
        drop(handle);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(shared.upgrade().is_some(), "a clone keeps the task alive");
        drop(clone);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while shared.upgrade().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "task still running after the handle was dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(resolver);
    }
}

// === self-signed ===

fn settings(grace: Duration) -> Settings {
    Settings { dns_names: names(), timing: Timing { publish_grace: grace, ..Timing::default() } }
}

#[test]
fn impossible_self_signed_settings_are_refused() {
    let base = settings(Duration::from_secs(600));
    let with = |timing: Timing| Settings { timing, ..base.clone() };
    let t = base.timing;
    let cases = [
        Settings { dns_names: vec![], ..base.clone() },
        with(Timing { renew_before: Duration::ZERO, ..t }),
        with(Timing { renew_before: t.leaf_validity, ..t }),
        with(Timing { renew_before: 130 * DAY, leaf_validity: 200 * DAY, ..t }),
        with(Timing { publish_grace: 120 * DAY, ..t }),
    ];
    for s in cases {
        let err = Authority::new(s.clone(), SystemTime::now()).err();
        assert!(matches!(err, Some(CertError::SelfSignedConfig(_))), "{s:?}: {err:?}");
    }
    Authority::new(base, SystemTime::now()).unwrap();
}

/// Two simulated years in 6-hour steps. At every step the served leaf verifies (with rustls, at
/// the simulated time) against the current bundle and against the bundle of the previous step,
/// as a `caBundle` patcher lagging one step behind would have it; every CA in the bundle is
/// unexpired; a new CA is published before it signs.
fn days(now: SystemTime, start: SystemTime) -> u64 {
    now.duration_since(start).unwrap().as_secs() / 86_400
}

#[test]
fn a_simulated_two_years_of_rotation_never_breaks_verification() {
    let step = Duration::from_secs(6 * 60 * 60);
    let grace = 2 * step;
    let start = whole_seconds(SystemTime::now());
    let mut auth = Authority::new(settings(grace), start).unwrap();
    let mut lagged = auth.bundle_der();
    let (mut ca_rotations, mut leaves, mut max_bundle) = (0, 0, 1);
    let mut last_leaf = auth.leaf_der();
    let mut now = start;
    while now < start + 2 * DEFAULT_CA_VALIDITY {
        now += step;
        let (bundle_before, leaf_before) = (auth.bundle_version(), auth.leaf_version());
        auth.tick(now).unwrap();
        let bundle = auth.bundle_der();
        let leaf = auth.leaf_der();
        if auth.bundle_version() != bundle_before && bundle.len() > lagged.len() {
            ca_rotations += 1;
            assert_eq!(auth.leaf_version(), leaf_before, "a new CA must not sign in the tick that publishes it");
        }
        if auth.leaf_version() != leaf_before {
            leaves += 1;
            last_leaf = leaf.clone();
            let leaf_ca = bundle.iter().find(|ca| verify(&[(*ca).clone()], &leaf, now).is_ok()).unwrap().clone();
            assert!(lagged.contains(&leaf_ca), "leaf signed by a CA the lagging caBundle does not hold yet");
        }
        assert_eq!(leaf, last_leaf);
        verify(&bundle, &leaf, now).unwrap_or_else(|e| panic!("day {}: {e}", days(now, start)));
        verify(&lagged, &leaf, now).unwrap_or_else(|e| panic!("lagged, day {}: {e}", days(now, start)));
        let left = auth.leaf_not_after().duration_since(now).unwrap();
        assert!(left + step > DEFAULT_RENEW_BEFORE, "leaf not renewed in time: {left:?} left");
        for ca in &bundle {
            let (_, c) = x509_parser::parse_x509_certificate(ca).unwrap();
            assert!(c.validity().not_after.timestamp() > unix_seconds(now), "expired CA kept in the bundle");
        }
        max_bundle = max_bundle.max(bundle.len());
        lagged = bundle;
    }
    // CA rotations at 2/3 of 365 days: days ~243 and ~486.
    assert_eq!(ca_rotations, 2);
    assert_eq!(max_bundle, 2, "old and new CA overlap, never more");
    assert!(leaves >= 730 / 20, "leaves renewed every ~20 days, got {leaves}");
}

#[test]
fn the_bundle_holds_old_and_new_ca_during_rotation() {
    let grace = Duration::from_secs(3600);
    let start = whole_seconds(SystemTime::now());
    let mut auth = Authority::new(settings(grace), start).unwrap();
    let old = auth.bundle_der();
    let old_leaf = auth.leaf_der();
    // Just past two thirds of the CA's life.
    let rotation = start + DEFAULT_CA_VALIDITY * 2 / 3 + Duration::from_secs(1);
    auth.tick(rotation - Duration::from_secs(2)).unwrap();
    assert_eq!(auth.bundle_der(), old);
    auth.tick(rotation).unwrap();
    let both = auth.bundle_der();
    assert_eq!(both.len(), 2);
    assert_eq!(both[0], old[0]);
    let pem = String::from_utf8(auth.bundle_pem()).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
    // Still the old CA's leaf until the grace has passed.
    verify(&old, &auth.leaf_der(), rotation).unwrap();
    auth.tick(rotation + grace).unwrap();
    assert_ne!(auth.leaf_der(), old_leaf);
    verify(&both[1..], &auth.leaf_der(), rotation + grace).unwrap();
    assert!(verify(&old, &auth.leaf_der(), rotation + grace).is_err());
    // The old CA leaves the bundle when it expires.
    auth.tick(start + DEFAULT_CA_VALIDITY + Duration::from_secs(1)).unwrap();
    assert_eq!(auth.bundle_der(), both[1..]);
}

// === certs generate ===

fn args(dir: &Path) -> GenerateArgs {
    GenerateArgs {
        service: "coder-guard".into(),
        namespace: "coder-guard".into(),
        out: dir.to_owned(),
        validity_days: 365,
        force: false,
    }
}

#[test]
fn generate_writes_a_verifiable_chain_and_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new");
    let now = SystemTime::now();
    let hint = write_files(&args(&out), now).unwrap();
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let (ca, cert, key) = (read("ca.crt"), read("tls.crt"), read("tls.key"));
    assert!(cert.ends_with(&ca), "tls.crt is the leaf, then the CA");
    let loaded = load(&cert, &key).unwrap();
    assert_eq!(loaded.chain_len, 2);
    let ca_der = CertificateDer::from_pem_slice(ca.as_bytes()).unwrap();
    let leaf = loaded.key.cert[0].clone();
    for name in ["coder-guard", "coder-guard.coder-guard", NAME, "coder-guard.coder-guard.svc.cluster.local"] {
        let mut roots = RootCertStore::empty();
        roots.add(ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        let at = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap());
        v.verify_server_cert(&leaf, &[], &ServerName::try_from(name).unwrap(), &[], at).unwrap();
    }
    assert!(hint.contains(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca.as_bytes())));
    assert!(hint.contains("kubectl -n coder-guard create secret tls coder-guard-tls"), "{hint}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("tls.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn generate_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    std::fs::write(dir.path().join("tls.key"), "keep me").unwrap();
    let err = write_files(&args(dir.path()), now).unwrap_err();
    assert!(matches!(&err, CertError::Exists { paths } if paths == &[dir.path().join("tls.key")]), "{err:?}");
    assert!(err.to_string().contains("--force"));
    assert_eq!(std::fs::read_to_string(dir.path().join("tls.key")).unwrap(), "keep me");
    assert!(!dir.path().join("ca.crt").exists(), "nothing is written when refusing");

    write_files(&GenerateArgs { force: true, ..args(dir.path()) }, now).unwrap();
    assert!(std::fs::read_to_string(dir.path().join("tls.key")).unwrap().contains("PRIVATE KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a replaced key file is 0600 too");
    }
}

#[test]
fn generate_checks_names() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("Coder-Guard", "ns", "--service"),
        ("1guard", "ns", "--service"),
        ("guard-", "ns", "--service"),
        ("", "ns", "--service"),
        ("guard", "ns.x", "--namespace"),
        ("guard", &"n".repeat(64), "--namespace"),
    ];
    for (service, namespace, want) in cases {
        let a = GenerateArgs { service: service.into(), namespace: namespace.into(), ..args(dir.path()) };
        let err = write_files(&a, SystemTime::now()).unwrap_err();
        assert!(matches!(err, CertError::InvalidName { flag, .. } if flag == want), "{service}/{namespace}: {err:?}");
    }
    let ok = GenerateArgs { service: "guard".into(), namespace: "1-ns".into(), ..args(dir.path()) };
    write_files(&ok, SystemTime::now()).unwrap();
}
