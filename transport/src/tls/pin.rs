//! The client's verifier of a control server's certificate when the user gave certificate
//! files (`s2uc --server-cert FILE`): each certificate in them is both a trust anchor (a CA
//! signs the server's certificate) and a pin (the server presents exactly that certificate).
//!
//! A pin is what makes SciStream 1.2's certificates work: its docs make them with
//! `openssl req -x509`, which marks the certificate a CA, and WebPKI refuses a CA's certificate
//! presented by a server as its own (`CaUsedAsEndEntity`). A pinned certificate is accepted
//! whatever its CA flag, but its names and its validity period are still checked, and the
//! handshake's signature still proves the server holds its key. Any other certificate goes
//! through rustls' WebPKI verifier with the files as roots, unchanged.

use std::sync::Arc;
use std::time::Duration;

use rustls::CertificateError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;

/// Accepts a server certificate equal to one of `pins` (names and validity checked), or one
/// the WebPKI verifier accepts with the pins as roots.
#[derive(Debug)]
pub(super) struct PinnedOrRoots {
    pins: Vec<CertificateDer<'static>>,
    /// `None` when no pin can serve as a trust anchor (then only the pins are accepted).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedOrRoots {
    /// The verifier of the certificates `pins` (from the user's files), with `ring`.
    pub(super) fn new(pins: Vec<CertificateDer<'static>>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(pins.iter().cloned());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok();
        Self { pins, webpki, algs: provider.signature_verification_algorithms }
    }
}

impl ServerCertVerifier for PinnedOrRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.iter().any(|pin| pin.as_ref() == end_entity.as_ref()) {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            check_validity(end_entity, now)?;
            return Ok(ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(CertificateError::UnknownIssuer.into()),
        }
    }

    crate::wan::signature_checks!();
}

/// Refuses a certificate outside its validity period (WebPKI checks it on the other path).
fn check_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (not_before, not_after) = validity(cert.as_ref()).ok_or(CertificateError::BadEncoding)?;
    let time = now.as_secs();
    let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
    if time < not_before {
        return Err(CertificateError::NotValidYetContext { time: now, not_before: at(not_before) }.into());
    }
    if time > not_after {
        return Err(CertificateError::ExpiredContext { time: now, not_after: at(not_after) }.into());
    }
    Ok(())
}

/// The validity period of an X.509 certificate (DER), as seconds since the Unix epoch.
pub(super) fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((u64::try_from(v.not_before.timestamp()).ok()?, u64::try_from(v.not_after.timestamp()).ok()?))
}

/// A Unix time for messages (`Dec  1 00:36:41 2026 +00:00`).
pub(super) fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| x509_parser::time::ASN1Time::from_timestamp(s).ok())
        .map_or_else(|| format!("{secs} s after 1970"), |t| t.to_string())
}
