use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

const BOUND: Duration = Duration::from_secs(10);

fn creds(b: u8) -> Credentials {
    Credentials([b; 32])
}

#[test]
fn both_gateways_derive_the_same_certificate_and_other_credentials_another() {
    let a = SessionIdentity::derive(&creds(1)).expect("derive");
    let b = SessionIdentity::derive(&creds(1)).expect("derive");
    let c = SessionIdentity::derive(&creds(2)).expect("derive");
    assert_eq!(a.certificate(), b.certificate());
    assert_ne!(a.certificate(), c.certificate());
}

/// A WAN listener serving `server`'s identity; reports what the accepting side read (or the
/// handshake error).
async fn wan_server(server: &SessionIdentity) -> (u16, tokio::sync::oneshot::Receiver<Result<Vec<u8>, String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let acceptor = TlsAcceptor::from(server.server_config().expect("server config"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.expect("accept");
        let outcome = match acceptor.accept(tcp).await {
            Ok(mut tls) => {
                let mut got = Vec::new();
                tls.read_to_end(&mut got).await.map(|_| got).map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("handshake: {e}")),
        };
        let _ = tx.send(outcome);
    });
    (port, rx)
}

async fn wan_client(client: &SessionIdentity, port: u16, data: &[u8]) -> Result<(), String> {
    let connector = TlsConnector::from(client.client_config().expect("client config"));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let mut tls =
        connector.connect(SessionIdentity::server_name(), tcp).await.map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(data).await.map_err(|e| e.to_string())?;
    tls.shutdown().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn gateways_of_the_same_session_authenticate_each_other_and_data_flows() {
    let id = SessionIdentity::derive(&creds(7)).expect("derive");
    let (port, got) = wan_server(&id).await;
    wan_client(&id, port, b"detector frame").await.expect("client side");
    let got = tokio::time::timeout(BOUND, got).await.expect("in time").expect("outcome");
    assert_eq!(got.expect("server side"), b"detector frame");
}

#[tokio::test]
async fn a_client_with_another_sessions_credentials_is_refused_before_any_byte_arrives() {
    let (port, got) = wan_server(&SessionIdentity::derive(&creds(7)).expect("derive")).await;
    let stranger = SessionIdentity::derive(&creds(8)).expect("derive");
    // The client may finish its side of the handshake before the server refuses its certificate;
    // what matters is that the accepting side never reads a byte.
    let _ = wan_client(&stranger, port, b"injected").await;
    let got = tokio::time::timeout(BOUND, got).await.expect("in time").expect("outcome");
    let err = got.expect_err("the server accepted a stranger");
    assert!(err.contains("handshake"), "{err}");
}

#[tokio::test]
async fn a_server_with_another_sessions_credentials_is_refused_by_the_client() {
    let (port, _got) = wan_server(&SessionIdentity::derive(&creds(9)).expect("derive")).await;
    let ours = SessionIdentity::derive(&creds(7)).expect("derive");
    let err = wan_client(&ours, port, b"secret data").await.expect_err("the client trusted a stranger");
    assert!(err.contains("handshake"), "{err}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let (port, got) = wan_server(&SessionIdentity::derive(&creds(7)).expect("derive")).await;
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            cert: SessionIdentity::derive(&creds(7)).expect("derive").certificate().clone(),
            algs: provider().signature_verification_algorithms,
        }))
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    if let Ok(mut tls) = TlsConnector::from(Arc::new(cfg)).connect(SessionIdentity::server_name(), tcp).await {
        let _ = tls.write_all(b"anonymous").await;
        let _ = tls.shutdown().await;
    }
    let got = tokio::time::timeout(BOUND, got).await.expect("in time").expect("outcome");
    assert!(got.is_err(), "an anonymous client got through: {got:?}");
}

/// Both gateways of a session agree on AES-128-GCM and on each other's pinned identity.
#[tokio::test]
async fn session_peers_handshake_with_aes_128_gcm() {
    let id = SessionIdentity::derive(&Credentials([9; 32])).unwrap();
    let (server, client) = (id.server_config().unwrap(), id.client_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tokio_rustls::TlsAcceptor::from(server).accept(sock).await.unwrap()
    });
    let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(client).connect(SessionIdentity::server_name(), sock).await.unwrap();
    let _server_side = accept.await.unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
}

/// A certificate for [`SESSION_NAME`] signed by a CA (both Ed25519, keys from fixed bytes): the
/// chain (leaf, CA) and the leaf's key. Such a certificate names the session correctly but is
/// not the one the session's credentials derive.
fn ca_signed_session_cert() -> (Vec<CertificateDer<'static>>, PrivatePkcs8KeyDer<'static>) {
    let key = |b: u8| {
        let mut der = ED25519_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&[b; 32]);
        let pkcs8 = PrivatePkcs8KeyDer::from(der);
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).expect("key");
        (pair, pkcs8)
    };
    let (ca_key, _) = key(21);
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "facility CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let (leaf_key, leaf_pkcs8) = key(22);
    let leaf = rcgen::CertificateParams::new(vec![SESSION_NAME.to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .expect("leaf");
    (vec![leaf.der().clone(), ca.der().clone()], leaf_pkcs8)
}

#[tokio::test]
async fn a_client_with_a_ca_signed_certificate_for_the_session_name_is_refused_before_any_byte_arrives() {
    let id = SessionIdentity::derive(&creds(7)).expect("derive");
    let (port, got) = wan_server(&id).await;
    let (chain, key) = ca_signed_session_cert();
    // The client trusts the real session's server (pinned), so only its own certificate is wrong.
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            cert: id.certificate().clone(),
            algs: provider().signature_verification_algorithms,
        }))
        .with_client_auth_cert(chain, PrivateKeyDer::Pkcs8(key))
        .expect("client certificate");
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    if let Ok(mut tls) = TlsConnector::from(Arc::new(cfg)).connect(SessionIdentity::server_name(), tcp).await {
        let _ = tls.write_all(b"injected").await;
        let _ = tls.shutdown().await;
    }
    let got = tokio::time::timeout(BOUND, got).await.expect("in time").expect("outcome");
    let err = got.expect_err("the server accepted a CA-signed certificate");
    // The chain is well formed; what refuses it is the pin (a verifier accepting any
    // certificate for the session's name would let it through).
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn a_server_with_a_ca_signed_certificate_for_the_session_name_is_refused_by_the_client() {
    let (chain, key) = ca_signed_session_cert();
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::Pkcs8(key))
        .expect("server certificate");
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.expect("accept");
        let _ = TlsAcceptor::from(Arc::new(cfg)).accept(tcp).await;
    });
    let ours = SessionIdentity::derive(&creds(7)).expect("derive");
    let err = wan_client(&ours, port, b"secret data").await.expect_err("the client trusted a CA-signed certificate");
    // The chain is well formed; what refuses it is the pin (a verifier accepting any
    // certificate for the session's name would let it through).
    assert!(err.contains("invalid peer certificate"), "{err}");
    let _ = tokio::time::timeout(BOUND, server).await;
}
