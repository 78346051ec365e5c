//! Tests of `tls`: configuration errors name their file; the accept stream survives slow and
//! failing handshakes and speaks TLS 1.3 only; client channels report clear errors.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio_rustls::TlsConnector;
use tokio_stream::StreamExt as _;

use super::*;
use crate::testkit::{client_config, test_cert};

/// Bound on every wait in these tests: generous, but a hang fails instead of blocking.
const BOUND: Duration = Duration::from_secs(5);

async fn incoming() -> (SocketAddr, TlsIncoming, crate::testkit::TestCert) {
    let cert = test_cert();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = server_config(&cert.cert, &cert.key).unwrap();
    (addr, serve_tls_incoming(listener, cfg, &PortLimits::default()).await, cert)
}

/// Completes a TLS handshake as a client limited to `versions`.
async fn handshake(
    addr: SocketAddr,
    trusted: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::from(addr.ip());
    TlsConnector::from(client_config(trusted, versions)).connect(name, tcp).await
}

#[test]
fn missing_file_is_named() {
    let cert = test_cert();
    let missing = cert.dir.path().join("nope.pem");
    let err = server_config(&missing, &cert.key).unwrap_err();
    assert!(matches!(&err, TlsError::Read { path, .. } if *path == missing), "{err}");
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[test]
fn file_without_certificate_is_refused() {
    let cert = test_cert();
    let err = server_config(&cert.key, &cert.key).unwrap_err();
    assert!(matches!(&err, TlsError::NoCertificate(path) if *path == cert.key), "{err}");
    assert!(err.to_string().starts_with("no certificate in "), "{err}");
}

#[test]
fn file_without_private_key_is_refused() {
    let cert = test_cert();
    let err = server_config(&cert.cert, &cert.cert).unwrap_err();
    assert!(matches!(&err, TlsError::NoPrivateKey(path) if *path == cert.cert), "{err}");
}

#[test]
fn key_of_another_certificate_is_refused_as_mismatch() {
    let (mine, other) = (test_cert(), test_cert());
    let err = server_config(&mine.cert, &other.key).unwrap_err();
    assert!(matches!(&err, TlsError::KeyMismatch { cert, key } if *cert == mine.cert && *key == other.key), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn server_config_offers_h2_alpn() {
    let cert = test_cert();
    let cfg = server_config(&cert.cert, &cert.key).unwrap();
    assert_eq!(cfg.alpn_protocols, [b"h2".to_vec()]);
}

#[tokio::test]
async fn tls13_client_is_accepted_and_yielded() {
    let (addr, mut incoming, cert) = incoming().await;
    let client = handshake(addr, &cert.pem.cert_pem, &[&rustls::version::TLS13]).await.unwrap();
    assert_eq!(client.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let server = tokio::time::timeout(BOUND, incoming.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(server.get_ref().get_ref().0.peer_addr().unwrap(), client.get_ref().0.local_addr().unwrap());
    assert!(server.get_ref().get_ref().0.nodelay().unwrap());
}

#[tokio::test]
async fn tls12_only_client_is_refused_and_not_yielded() {
    let (addr, mut incoming, cert) = incoming().await;
    assert!(handshake(addr, &cert.pem.cert_pem, &[&rustls::version::TLS12]).await.is_err());
    // The next item is the next good client, not an error for the refused one.
    let good = handshake(addr, &cert.pem.cert_pem, &[&rustls::version::TLS13]).await.unwrap();
    let server = tokio::time::timeout(BOUND, incoming.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(server.get_ref().get_ref().0.peer_addr().unwrap(), good.get_ref().0.local_addr().unwrap());
}

#[tokio::test]
async fn garbage_and_stalled_handshakes_do_not_block_other_clients() {
    let (addr, mut incoming, cert) = incoming().await;
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    // Connected but silent: its handshake stays pending for the whole test.
    let _stalled = TcpStream::connect(addr).await.unwrap();
    let good = tokio::time::timeout(BOUND, handshake(addr, &cert.pem.cert_pem, &[&rustls::version::TLS13]))
        .await
        .expect("a stalled handshake delayed another client")
        .unwrap();
    let server = tokio::time::timeout(BOUND, incoming.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(server.get_ref().get_ref().0.peer_addr().unwrap(), good.get_ref().0.local_addr().unwrap());
}

#[tokio::test]
async fn dropping_the_stream_closes_the_listener() {
    let (addr, incoming, _cert) = incoming().await;
    drop(incoming);
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match TcpStream::connect(addr).await {
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => return,
            _ if tokio::time::Instant::now() > deadline => panic!("listener still open after drop"),
            _ => tokio::task::yield_now().await,
        }
    }
}

#[tokio::test]
async fn connect_refuses_an_address_without_port() {
    let err = connect("127.0.0.1", &Trust::System, BOUND).await.unwrap_err();
    assert!(matches!(&err, TlsError::BadAddress { addr, .. } if addr == "127.0.0.1"), "{err}");
    assert!(err.to_string().contains("no port"), "{err}");
}

#[tokio::test]
async fn connect_names_a_missing_trust_file() {
    let cert = test_cert();
    let missing = cert.dir.path().join("ca.pem");
    let err = connect("127.0.0.1:1", &Trust::File(missing.clone()), BOUND).await.unwrap_err();
    assert!(matches!(&err, TlsError::Read { path, .. } if *path == missing), "{err}");
}

#[tokio::test]
async fn connect_to_a_closed_port_names_the_address() {
    let cert = test_cert();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
    let err = connect(&closed, &Trust::File(cert.cert.clone()), BOUND).await.unwrap_err();
    let TlsError::Connect { addr, reason } = &err else { panic!("{err}") };
    assert_eq!(*addr, closed);
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
}

#[test]
fn error_chain_keeps_each_cause_once() {
    #[derive(Debug)]
    struct Outer(io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transport error")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }
    let err = Outer(io::Error::other("refused"));
    assert_eq!(error_chain(&err), "transport error: refused");
}
