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
