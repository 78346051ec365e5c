//! Tests of `certgen`: what a generated certificate names, how its files are written.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use super::*;
use crate::tls;

/// The subject alternative names of a PEM certificate, as text (IPs in their usual form).
fn sans(cert_pem: &str) -> Vec<String> {
    let (_, pem) = parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let ext = cert.subject_alternative_name().unwrap().expect("certificate has SANs");
    ext.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => (*dns).to_owned(),
            GeneralName::IPAddress(b) if b.len() == 4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
            GeneralName::IPAddress(b) => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

#[test]
fn sans_hold_listener_ip_hostnames_localhost_and_loopback() {
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let cert = generate(ip, &["gw.example.org".to_owned(), "gw2".to_owned()], 30).unwrap();
    assert_eq!(sans(&cert.cert_pem), ["192.0.2.7", "gw.example.org", "gw2", "localhost", "127.0.0.1"]);
}

#[test]
fn sans_are_deduplicated_and_dns_names_compared_without_case() {
    let hosts = ["localhost", "GW.example.org", "gw.example.org", "127.0.0.1", "::1"].map(str::to_owned);
    let cert = generate(Ipv4Addr::LOCALHOST.into(), &hosts, 1).unwrap();
    assert_eq!(sans(&cert.cert_pem), ["127.0.0.1", "localhost", "gw.example.org", "::1"]);
}

#[test]
fn unspecified_listener_ip_is_left_out() {
    let cert = generate(Ipv4Addr::UNSPECIFIED.into(), &[], 1).unwrap();
    assert_eq!(sans(&cert.cert_pem), ["localhost", "127.0.0.1"]);
}

#[test]
fn certificate_is_ecdsa_p256_self_signed_and_valid_for_the_given_days() {
    let cert = generate(Ipv4Addr::LOCALHOST.into(), &[], 10).unwrap();
    let (_, pem) = parse_x509_pem(cert.cert_pem.as_bytes()).unwrap();
    let x509 = pem.parse_x509().unwrap();
    assert_eq!(x509.subject(), x509.issuer());
    assert_eq!(x509.public_key().algorithm.algorithm, x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY);
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let validity = x509.validity();
    assert!(validity.not_before.timestamp() < now);
    let days_left = (validity.not_after.timestamp() - now) as f64 / 86_400.0;
    assert!((9.99..=10.01).contains(&days_left), "{days_left}");
    assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn tls_server_config_accepts_a_generated_pair() {
    let cert = generate(Ipv4Addr::LOCALHOST.into(), &["gw.example.org".to_owned()], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = write_in_dir(&cert, dir.path(), false).unwrap();
    let cfg = tls::server_config(&cert_path, &key_path).unwrap();
    assert_eq!(cfg.alpn_protocols, [b"h2".to_vec()]);
}

#[test]
fn invalid_hostnames_and_validities_are_refused() {
    let ip = Ipv4Addr::LOCALHOST.into();
    for bad in ["", "has space", "under_score..", "caf\u{e9}.example"] {
        assert!(matches!(generate(ip, &[bad.to_owned()], 1), Err(CertError::BadHostname(_))), "{bad:?}");
    }
    assert!(matches!(generate(ip, &[], 0), Err(CertError::BadValidity(0))));
    assert!(matches!(generate(ip, &[], MAX_DAYS + 1), Err(CertError::BadValidity(_))));
}

#[test]
fn key_file_is_owner_only_and_cert_file_is_not_secret() {
    use std::os::unix::fs::PermissionsExt as _;
    let cert = generate(Ipv4Addr::LOCALHOST.into(), &[], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = write_in_dir(&cert, dir.path(), false).unwrap();
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_ne!(std::fs::metadata(&cert_path).unwrap().permissions().mode() & 0o077, 0);
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), cert.key_pem);
    assert_eq!(std::fs::read_to_string(&cert_path).unwrap(), cert.cert_pem);
}

#[test]
fn existing_files_are_kept_without_force_and_replaced_with_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let first = generate(Ipv4Addr::LOCALHOST.into(), &[], 1).unwrap();
    let second = generate(Ipv4Addr::LOCALHOST.into(), &[], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    // Only the key exists: nothing is written, not even the certificate.
    std::fs::write(&key_path, "old key").unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = write(&first, &cert_path, &key_path, false).unwrap_err();
    assert!(matches!(&err, CertError::Exists(p) if *p == key_path), "{err}");
    assert!(err.to_string().contains("key.pem"));
    assert!(!cert_path.exists());
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), "old key");

    write(&second, &cert_path, &key_path, true).unwrap();
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), second.key_pem);
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn debug_output_redacts_the_key() {
    let cert = generate(Ipv4Addr::LOCALHOST.into(), &[], 1).unwrap();
    let shown = format!("{cert:?}");
    assert!(!shown.contains(&cert.key_pem));
    assert!(shown.contains("<redacted>"));
}

#[test]
fn local_hostname_is_the_kernels_when_it_has_one() {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned());
    match kernel {
        Ok(name) if !name.is_empty() => assert_eq!(local_hostname(), Some(name)),
        _ => assert_eq!(local_hostname(), std::env::var("HOSTNAME").ok().filter(|h| !h.trim().is_empty())),
    }
}
