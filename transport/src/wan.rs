//! The WAN leg's security: mutual TLS 1.3 pinned to one session.
//!
//! S2UC mints 32 random bytes per session ([`Credentials`]) and sends them to both gateways
//! in UpdateTargets. Each gateway derives from them the same Ed25519 key and the same
//! self-signed certificate ([`SessionIdentity::derive`]); the producer's gateway serves the WAN
//! leg with it and demands it from the consumer's gateway, which presents it and demands it back.
//! Anything else — another session's certificate, a CA-signed one, none — fails the handshake,
//! so not a byte of an unauthenticated connection reaches the producer.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use scistream_fsm::Credentials;

/// The name both ends use for the session's certificate (and as TLS server name).
pub const SESSION_NAME: &str = "scistream-session";

/// Why a session identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WanError {
    /// The key or certificate could not be built from the credentials.
    #[error("cannot derive the session's identity: {0}")]
    Derive(String),
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// The session has no credentials and plain WAN legs are not allowed.
    #[error("session without WAN credentials, and plain WAN legs are not allowed")]
    PlainNotAllowed,
}

/// One session's TLS identity, the same at both gateways.
pub struct SessionIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for SessionIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("SessionIdentity").field("cert_len", &self.cert.len()).finish_non_exhaustive()
    }
}

/// RFC 8410 PKCS#8 framing of an Ed25519 private key (the 32-byte seed follows).
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

impl SessionIdentity {
    /// The identity the session's credentials determine. Deterministic: both gateways get the
    /// same certificate byte for byte (Ed25519 signatures are deterministic, and the validity
    /// and serial are fixed).
    pub fn derive(creds: &Credentials) -> Result<Self, WanError> {
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&creds.0);
        let pkcs8 = PrivatePkcs8KeyDer::from(der);
        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
            .map_err(|e| WanError::Derive(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec![SESSION_NAME.to_string()])
            .map_err(|e| WanError::Derive(e.to_string()))?;
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        params.serial_number = Some(rcgen::SerialNumber::from(1u64));
        let cert = params.self_signed(&key_pair).map_err(|e| WanError::Derive(e.to_string()))?;
        Ok(Self {
            cert: cert.der().clone(),
            key: pkcs8.clone_key(),
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
        })
    }

    /// The session's certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The session's certificate in PEM, for a proxy backend's files.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The session's private key in PEM (PKCS#8), for a proxy backend's private files.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The producer gateway's side: serves this identity and requires it from the client.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, WanError> {
        let provider = provider();
        let verifier = Arc::new(Pinned { cert: self.cert.clone(), algs: provider.signature_verification_algorithms });
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))?;
        Ok(Arc::new(cfg))
    }

    /// The consumer gateway's side: presents this identity and requires it from the server.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, WanError> {
        let provider = provider();
        let verifier = Arc::new(Pinned { cert: self.cert.clone(), algs: provider.signature_verification_algorithms });
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))?;
        Ok(Arc::new(cfg))
    }

    /// The server name the client side uses.
    pub fn server_name() -> ServerName<'static> {
        ServerName::try_from(SESSION_NAME).expect("a valid DNS name")
    }
}

/// ring's provider with AES-128-GCM first: both ends are ours, so our order decides (fewer AES
/// rounds than AES-256-GCM at TLS 1.3's security level for a per-session key; the measured
/// throughput change was within run-to-run noise, docs/data-plane.md). The other suites stay
/// as fallbacks.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256];
    Arc::new(p)
}

/// Accepts exactly one certificate (the session's) and checks the handshake signature with it.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, presented: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.cert.as_ref() && intermediates.is_empty() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }
}

/// The handshake-signature checks every verifier trait asks for, over the verifier's `algs`
/// (`WebPkiSupportedAlgorithms`): the same for either side, and for `tls::pin`'s verifier.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}
pub(crate) use signature_checks;

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates).map(|()| ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates).map(|()| ClientCertVerified::assertion())
    }

    signature_checks!();
}

#[cfg(test)]
mod tests;
