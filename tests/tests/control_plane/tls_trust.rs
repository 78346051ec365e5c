//! Which control-server certificates `s2uc --server-cert FILE` accepts, and how it says why it
//! refuses one (issue 12, item 9). SciStream 1.2's docs make a server's certificate with
//! `openssl req -x509 … -addext subjectAltName=IP:…`, which marks it a CA; WebPKI refuses a
//! CA's certificate presented as a server's own (`CaUsedAsEndEntity`), so such a certificate
//! given with --server-cert is pinned: accepted as exactly that certificate, its names and
//! validity still checked. The certificates here are made with rcgen in the same shape.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use scistream_tests::{Scratch, args, run};

use crate::testkit::{RawServer, shared};

/// The time since the Unix epoch `offset_days` from now.
fn since_epoch(offset_days: i64) -> Duration {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs();
    Duration::from_secs(now.checked_add_signed(offset_days * 86_400).expect("after 1970"))
}

/// Certificate parameters as `openssl req -x509 -subj /CN=NAME -addext subjectAltName=IP:IP`
/// makes them: self-signed, marked a CA, valid from `from` to `to` days from now.
fn openssl_style(name: &str, ip: IpAddr, from: i64, to: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![SanType::IpAddress(ip)];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(from);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(to);
    params
}

/// Writes `cert.pem` and `key.pem` into `dir`, self-signed.
fn write_self_signed(dir: &Path, params: &CertificateParams) {
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `s2uc --server-cert CERT list --s2cs ADDR`: exit status and stderr.
fn list(cert: &Path, addr: &str) -> (Option<i32>, String) {
    let out =
        run("s2uc", &args(&["--server-cert", cert.to_str().unwrap(), "list", "--s2cs", addr]), Duration::from_secs(30))
            .expect("s2uc ran");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_certificate_made_as_scistream_1_2_docs_teach_is_pinned_and_its_name_and_dates_still_count() {
    let _serial = shared();
    let dir = Scratch::new("tls-pinned");

    // The 1.2 way: accepted when given with --server-cert.
    let ok = dir.0.join("ok");
    write_self_signed(&ok, &openssl_style("gateway", LOOPBACK, -1, 365));
    let server = RawServer::start(&ok, &[]);
    let (code, err) = list(&ok.join("cert.pem"), &server.addr);
    assert_eq!(code, Some(0), "a pinned CA-flagged certificate is accepted: {err}");
    drop(server);

    // Pinned, but for another address: refused, and said so.
    let other = dir.0.join("other-name");
    write_self_signed(&other, &openssl_style("gateway", "127.0.0.2".parse().unwrap(), -1, 365));
    let server = RawServer::start(&other, &[]);
    let (code, err) = list(&other.join("cert.pem"), &server.addr);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not valid for 127.0.0.1 (it is for 127.0.0.2)"), "{err}");
    drop(server);

    // Pinned, but expired: refused, with the date.
    let old = dir.0.join("expired");
    write_self_signed(&old, &openssl_style("gateway", LOOPBACK, -30, -2));
    let server = RawServer::start(&old, &[]);
    let (code, err) = list(&old.join("cert.pem"), &server.addr);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the server's certificate expired on "), "{err}");
    assert!(err.contains("renew it"), "{err}");
    drop(server);

    // Not yet valid.
    let early = dir.0.join("early");
    write_self_signed(&early, &openssl_style("gateway", LOOPBACK, 2, 30));
    let server = RawServer::start(&early, &[]);
    let (code, err) = list(&early.join("cert.pem"), &server.addr);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is valid only from "), "{err}");
    drop(server);

    // A server with a certificate of `s2cs gen-cert`, the user trusting another server's: an
    // unknown issuer, and what to give instead.
    let made = dir.0.join("gen-cert");
    std::fs::create_dir_all(&made).unwrap();
    RawServer::gen_cert(&made);
    let server = RawServer::start(&made, &[]);
    let (code, err) = list(&other.join("cert.pem"), &server.addr);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not one you trust, nor signed by one") && err.contains("--server-cert"), "{err}");
}

#[test]
fn a_ca_signed_server_certificate_is_trusted_through_its_ca_and_a_ca_flagged_one_is_explained() {
    let _serial = shared();
    let dir = Scratch::new("tls-ca");
    // The facility's CA.
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = openssl_style("facility CA", LOOPBACK, -1, 365);
    ca_params.subject_alt_names.clear();
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    // A proper server certificate it signed: trusted through the CA (the WebPKI path).
    let leaf = dir.0.join("leaf");
    std::fs::create_dir_all(&leaf).unwrap();
    let key = KeyPair::generate().expect("key");
    let mut params = openssl_style("gateway", LOOPBACK, -1, 365);
    params.is_ca = IsCa::ExplicitNoCa;
    let cert = params.signed_by(&key, &issuer).expect("leaf");
    std::fs::write(leaf.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(leaf.join("key.pem"), key.serialize_pem()).unwrap();
    let server = RawServer::start(&leaf, &[]);
    let (code, err) = list(&ca_file, &server.addr);
    assert_eq!(code, Some(0), "{err}");
    drop(server);

    // A server certificate the CA signed but marked a CA itself, not pinned: explained.
    let flagged = dir.0.join("flagged");
    std::fs::create_dir_all(&flagged).unwrap();
    let key = KeyPair::generate().expect("key");
    let cert = openssl_style("gateway", LOOPBACK, -1, 365).signed_by(&key, &issuer).expect("leaf");
    std::fs::write(flagged.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(flagged.join("key.pem"), key.serialize_pem()).unwrap();
    let server = RawServer::start(&flagged, &[]);
    let (code, err) = list(&ca_file, &server.addr);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the server presents a CA certificate as its own"), "{err}");
    // Given itself, it is pinned and accepted.
    let (code, err) = list(&flagged.join("cert.pem"), &server.addr);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_tls_client_of_a_plain_text_server_is_told_to_use_insecure() {
    let _serial = shared();
    let dir = Scratch::new("tls-plain");
    let certs = dir.0.join("c");
    std::fs::create_dir_all(&certs).unwrap();
    RawServer::gen_cert(&certs);
    // `--insecure` after the certificate flags: the server speaks plain gRPC.
    let server = RawServer::start(&certs, &["--insecure"]);
    let (code, err) = list(&certs.join("cert.pem"), &server.addr);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("did not answer in TLS") && err.contains("--insecure"), "{err}");
}
