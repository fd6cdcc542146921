//! `coder-guard certs generate`: a CA and a serving certificate as files, for clusters without
//! cert-manager. The files go into a `kubernetes.io/tls` Secret; the CA goes into `caBundle`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use clap::Args;

use super::CertError;
use super::authority::{new_ca, new_leaf, whole_seconds};

/// Writes `ca.crt`, `tls.crt` (serving certificate, then the CA) and `tls.key` (mode 0600) for
/// the webhook Service.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct GenerateArgs {
    /// Name of the webhook's Service.
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: String,
    /// Directory to write the files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Validity of the CA and the serving certificate, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub validity_days: u32,
    /// Replace existing ca.crt, tls.crt and tls.key.
    #[arg(long)]
    pub force: bool,
}

/// The DNS names the API server may use for `service` in `namespace`: `S`, `S.N`, `S.N.svc`,
/// `S.N.svc.cluster.local`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Runs `certs generate`: writes the files, then prints how to create the Secret and the
/// base64 `caBundle`.
pub fn generate(args: GenerateArgs) -> Result<(), CertError> {
    let hint = write_files(&args, SystemTime::now())?;
    print!("{hint}");
    Ok(())
}

/// Writes the three files and returns the hint to print.
pub(crate) fn write_files(args: &GenerateArgs, now: SystemTime) -> Result<String, CertError> {
    let GenerateArgs { service, namespace, out, validity_days, force } = args;
    dns_label("--service", service, true)?;
    dns_label("--namespace", namespace, false)?;
    let names = service_dns_names(service, namespace);
    let validity = Duration::from_secs(u64::from(*validity_days) * 24 * 60 * 60);
    let now = whole_seconds(now);

    let paths = [out.join("ca.crt"), out.join("tls.crt"), out.join("tls.key")];
    let existing: Vec<PathBuf> = paths.iter().filter(|p| p.symlink_metadata().is_ok()).cloned().collect();
    if !existing.is_empty() && !force {
        return Err(CertError::Exists { paths: existing });
    }

    let ca = new_ca(&format!("{service}.{namespace} webhook CA"), now, validity)?;
    let leaf = new_leaf(&ca, &names, now, ca.not_after)?;

    std::fs::create_dir_all(out).map_err(|source| CertError::Write { path: out.clone(), source })?;
    let [ca_path, cert_path, key_path] = &paths;
    write_new(ca_path, ca.pem.as_bytes(), 0o644, *force)?;
    write_new(cert_path, format!("{}{}", leaf.pem, ca.pem).as_bytes(), 0o644, *force)?;
    write_new(key_path, leaf.key.serialize_pem().as_bytes(), 0o600, *force)?;

    let not_after = x509_parser::parse_x509_certificate(&leaf.der)
        .map(|(_, c)| c.validity().not_after.to_string())
        .unwrap_or_else(|_| format!("{validity_days} days from now"));
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca.pem.as_bytes());
    Ok(format!(
        "Wrote {ca}, {cert} (serving certificate, then the CA) and {key} (mode 0600).\n\
         Valid until {not_after} for {names}.\n\
         \n\
         Create the Secret the webhook mounts (--tls-cert-file/--tls-key-file point at its tls.crt/tls.key):\n\
         \x20 kubectl -n {namespace} create secret tls {service}-tls --cert={cert} --key={key}\n\
         \n\
         Set caBundle in both webhook configurations (validating and mutating) to the base64 of {ca}:\n\
         \x20 caBundle: {ca_bundle}\n\
         \n\
         Before {not_after}, run this again with --force and repeat both steps (see certs/README.md).\n",
        ca = ca_path.display(),
        cert = cert_path.display(),
        key = key_path.display(),
        names = names.join(", "),
    ))
}

/// Creates `path` with `mode`, replacing an existing file only with `force`.
fn write_new(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), CertError> {
    let error = |source| CertError::Write { path: path.to_owned(), source };
    if force {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
            _ => {}
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CertError::Exists { paths: vec![path.to_owned()] },
        _ => error(e),
    })?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(error)
}

/// A DNS label (RFC 1123; with `letter_first`, RFC 1035 as Service names require).
fn dns_label(flag: &'static str, value: &str, letter_first: bool) -> Result<(), CertError> {
    let fail = |reason| Err(CertError::InvalidName { flag, value: value.to_owned(), reason });
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return fail("it must be 1 to 63 characters long");
    }
    if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
        return fail("use only lower-case letters, digits and '-'");
    }
    if letter_first && !bytes[0].is_ascii_lowercase() {
        return fail("it must start with a letter");
    }
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return fail("it must start and end with a letter or digit");
    }
    Ok(())
}
