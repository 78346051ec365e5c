//! Test fixtures: a generated certificate on disk, raw TLS clients.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::certgen::{self, GeneratedCert};

/// A certificate for 127.0.0.1 and `localhost`, written into its own temporary directory
/// (removed on drop).
pub(crate) struct TestCert {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) pem: GeneratedCert,
}

pub(crate) fn test_cert() -> TestCert {
    let pem = certgen::generate([127, 0, 0, 1].into(), &["localhost".to_owned()], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certgen::write_in_dir(&pem, dir.path(), false).unwrap();
    TestCert { dir, cert, key, pem }
}

/// A rustls client configuration trusting only `trusted` (a PEM certificate), limited to the
/// given protocol versions, offering ALPN `h2`.
pub(crate) fn client_config(
    trusted: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(trusted.as_bytes()).unwrap()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}
