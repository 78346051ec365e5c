//! Self-signed certificates for a control server that has none from a CA.
//!
//! A facility's operator generates one certificate per `s2cs` and hands the certificate file
//! (not the key) to its users, who pin it ([`Trust::File`](crate::tls::Trust::File)). The
//! certificate names the listener's IP, the given host names, `localhost` and `127.0.0.1`, so
//! clients can reach the server by any of them.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::DnsName;

/// The longest validity [`generate`] accepts, in days (a hundred years).
pub const MAX_DAYS: u32 = 36_500;

/// How far before "now" a certificate becomes valid, to tolerate clients whose clock is behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// The certificate file name [`write_in_dir`] uses.
pub const CERT_FILE: &str = "cert.pem";
/// The key file name [`write_in_dir`] uses.
pub const KEY_FILE: &str = "key.pem";

/// A certificate and its private key, both PEM (the key in PKCS#8).
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedCert {
    /// The self-signed certificate.
    pub cert_pem: String,
    /// The private key: a secret.
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCert").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

/// Why a certificate could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A host name is neither an IP address nor a valid DNS name.
    #[error("hostname {0:?} is not a valid dns name")]
    BadHostname(String),
    /// The validity is outside `1..=MAX_DAYS` days.
    #[error("validity of {0} days is outside 1..=36500")]
    BadValidity(u32),
    /// The system clock reads a time before 1970.
    #[error("system clock is before 1970")]
    Clock,
    /// rcgen failed to build the key or the certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The file exists and overwriting was not asked for.
    #[error("{0} already exists (overwrite it with force)")]
    Exists(PathBuf),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Generates a self-signed ECDSA P-256 certificate for a gateway daemon, for server and client
/// authentication, valid for `days` days (from an hour ago, for clock skew).
///
/// Its subject alternative names are, in this order and each once (DNS names compared without
/// case): `listener_ip` (unless it is the unspecified address, which no client dials), every
/// entry of `hostnames` (an IP literal there becomes an IP name), `localhost` and `127.0.0.1`.
/// The common name is the first host name, or the IP.
pub fn generate(listener_ip: IpAddr, hostnames: &[String], days: u32) -> Result<GeneratedCert, CertError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(CertError::BadValidity(days));
    }
    let mut names = Vec::new();
    if !listener_ip.is_unspecified() {
        names.push(SanType::IpAddress(listener_ip));
    }
    for host in hostnames {
        push_unique(&mut names, san_of(host.trim())?);
    }
    push_unique(&mut names, san_of("localhost")?);
    push_unique(&mut names, SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));

    let common_name = hostnames.first().map_or_else(|| listener_ip.to_string(), |h| h.trim().to_owned());
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.distinguished_name.push(DnType::OrganizationName, "SciStream control server");
    params.subject_alt_names = names;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Client authentication too: a control server presents the same certificate to its data
    // server nodes (mutual TLS on the facility's LAN).
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_err(|_| CertError::Clock)?;
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok(GeneratedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn san_of(host: &str) -> Result<SanType, CertError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = || CertError::BadHostname(host.chars().take(64).collect());
    DnsName::try_from(host).map_err(|_| bad())?;
    let name = host.to_ascii_lowercase().try_into().map_err(|_| bad())?;
    Ok(SanType::DnsName(name))
}

fn push_unique(names: &mut Vec<SanType>, name: SanType) {
    if !names.contains(&name) {
        names.push(name);
    }
}

/// Writes the certificate to `cert_path` and the key to `key_path`, the key readable by its
/// owner only (mode 0600). Without `force`, refuses (before writing anything) if either file
/// exists; with `force`, overwrites them.
pub fn write(cert: &GeneratedCert, cert_path: &Path, key_path: &Path, force: bool) -> Result<(), CertError> {
    if !force {
        for path in [cert_path, key_path] {
            if path.symlink_metadata().is_ok() {
                return Err(CertError::Exists(path.to_owned()));
            }
        }
    }
    write_file(key_path, &cert.key_pem, true, force)?;
    write_file(cert_path, &cert.cert_pem, false, force)
}

/// Writes the certificate and key as [`CERT_FILE`] and [`KEY_FILE`] in `dir`, creating `dir`
/// if needed (see [`write`](fn@write)); returns their paths.
pub fn write_in_dir(cert: &GeneratedCert, dir: &Path, force: bool) -> Result<(PathBuf, PathBuf), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write { path: dir.to_owned(), source })?;
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    write(cert, &cert_path, &key_path, force)?;
    Ok((cert_path, key_path))
}

fn write_file(path: &Path, contents: &str, secret: bool, force: bool) -> Result<(), CertError> {
    let failed = |source: io::Error| CertError::Write { path: path.to_owned(), source };
    let mut opts = OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    let mut file = opts.open(path).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => CertError::Exists(path.to_owned()),
        _ => failed(source),
    })?;
    // The mode above applies only to a new file: tighten an overwritten one before writing.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    }
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)
}

/// This machine's host name: `/proc/sys/kernel/hostname` on Linux, else the `HOSTNAME`
/// environment variable; `None` if neither gives a non-empty name.
pub fn local_hostname() -> Option<String> {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    from_kernel.into_iter().chain(std::env::var("HOSTNAME").ok()).map(|s| s.trim().to_owned()).find(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
