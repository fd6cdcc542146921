//! Shared helpers for integration tests.

#![allow(dead_code)]

pub mod apiserver;
pub mod log_capture;
pub mod reconcile_loop;
pub mod watchdog;
pub mod webhook;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// The repository root (this crate's manifest directory).
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/reference` beside the repository (the operator's CRDs and samples live there).
/// Override with `CODER_GUARD_REFERENCE`. A missing directory fails the test: these are real
/// inputs the suite must not silently skip.
pub fn reference_dir() -> PathBuf {
    let dir = std::env::var_os("CODER_GUARD_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"));
    assert!(
        dir.join("coder-k8s/crds").is_dir(),
        "{} has no coder-k8s/crds; set CODER_GUARD_REFERENCE to the shared reference directory",
        dir.display()
    );
    dir
}

/// The `*.yaml` files directly in `dir`, sorted by name.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Polls `check` every `every` until it returns true, for at most `timeout`.
pub fn poll(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(every);
    }
    Err(format!("timed out after {timeout:?} waiting for {what}"))
}

/// Runs `cmd` with `input` on stdin, capturing stdout and stderr; kills it after `timeout`.
pub fn run_bounded(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {shown}: {e}"))?;
    let writer = child.stdin.take().map(|mut stdin| {
        let data = input.unwrap_or_default().to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not finish within {timeout:?}; killed it"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(Output { status, stdout, stderr })
}

/// Lossy UTF-8 of a command's output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether `CI` is `true` or `1`.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `$CARGO_TARGET_DIR`, or `target/` in the repository.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => repo_dir().join(dir),
        None => repo_dir().join("target"),
    }
}

/// Writes a line to the real stderr, past libtest's output capture.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `fs::write` with the path in the error.
pub fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `N` distinct free loopback ports: held open together, then released for the servers.
pub fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let mut listeners = Vec::with_capacity(N);
    for _ in 0..N {
        listeners
            .push(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?);
    }
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().map_err(|e| e.to_string())?.port();
    }
    Ok(ports)
}

/// Upper bound for a `tools/*/build.sh` run: a cold kube-apiserver build takes about 4–6 minutes
/// on 2 cores, helm about 2 with a warm module cache and 5 without.
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The directory of a Go-built test tool (`outputs`, files or directories in it): `$env_var` when
/// set, else `<target>/<subdir>` after running `script` (relative to the repository; a no-op when
/// current) into it, for the tests named `who`. `Ok(None)` to skip: the script exited 2 (Go is
/// missing or too old; its message, which says what to install, goes to stderr) and CI is not
/// set. Under CI that is an error, as is a failed build or a missing output.
pub fn go_tool_assets(
    env_var: &str,
    subdir: &str,
    script: &str,
    outputs: &[&str],
    who: &str,
) -> Result<Option<PathBuf>, String> {
    let dir = match std::env::var_os(env_var).filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dir = target_dir().join(subdir);
            let started = Instant::now();
            let mut cmd = Command::new("bash");
            cmd.arg(repo_dir().join(script)).arg(&dir);
            let out = run_bounded(&mut cmd, None, GO_BUILD_TIMEOUT)?;
            let log = || format!("{}{}", text(&out.stdout), text(&out.stderr));
            match out.status.code() {
                Some(0) => say(&format!("{who}: {script} took {:.1}s", started.elapsed().as_secs_f64())),
                Some(2) if is_ci() => {
                    return Err(format!("CI=true, but {script} found no usable Go for {who} (exit 2):\n{}", log()));
                }
                Some(2) => {
                    say(&format!("{who}: {script} found no usable Go (exit 2):\n{}", text(&out.stderr).trim_end()));
                    return Ok(None);
                }
                _ => return Err(format!("{script} failed ({}):\n{}", out.status, log())),
            }
            dir
        }
    };
    for output in outputs {
        if !dir.join(output).exists() {
            return Err(format!("{} has no {output}; build it with `bash {script} {0}`", dir.display()));
        }
    }
    Ok(Some(dir))
}

/// A CA for tests (ECDSA P-256) that signs leaf certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Result<TestCa, String> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.distinguished_name = distinguished_name(common_name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let pem = params.self_signed(&ca_key).map_err(rcgen_error)?.pem();
        Ok(TestCa { issuer: Issuer::new(params, ca_key), pem })
    }

    /// The CA certificate's PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for `sans` (DNS names or IP addresses), `CN=common_name[, O=organization]`, for
    /// `usage`: its certificate's and its key's PEM.
    pub fn leaf(
        &self,
        sans: &[&str],
        common_name: &str,
        organization: Option<&str>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String), String> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error)?;
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(rcgen_error)?;
        params.distinguished_name = distinguished_name(common_name, organization);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// [`Self::leaf`] written to `<dir>/<cert_file>` and `<dir>/<key_file>`.
    pub fn write_leaf(
        &self,
        dir: &Path,
        (cert_file, key_file): (&str, &str),
        sans: &[&str],
        common_name: &str,
        organization: Option<&str>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(), String> {
        let (cert, key) = self.leaf(sans, common_name, organization, usage)?;
        write_file(&dir.join(cert_file), &cert)?;
        write_file(&dir.join(key_file), &key)
    }
}

fn rcgen_error(e: rcgen::Error) -> String {
    e.to_string()
}

fn distinguished_name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}
