//! TLS on the control channel: the server's rustls configuration from PEM files, a stream of
//! TLS connections for tonic's server, and client channels.
//!
//! The server side speaks TLS 1.3 only and offers ALPN `h2`. Handshakes run concurrently, one
//! task per connection, bounded by the port's handshake timeout ([`HANDSHAKE_TIMEOUT`] by
//! default) and within its connection cap ([`crate::ports`]): a slow or hostile client never
//! delays another, and a failed handshake is logged and dropped instead of reaching tonic.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use scistream_fsm::Addr;
use scistream_fsm::types::AddrError;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub use crate::ports::TlsInfo;
use crate::ports::{self, Incoming, PortLimits};

/// How long a client may take to complete its TLS handshake before the server drops it, unless
/// the port's [`PortLimits::handshake_timeout`] says otherwise.
pub const HANDSHAKE_TIMEOUT: Duration = PortLimits::DEFAULT.handshake_timeout;

/// Why a TLS configuration or a client channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read (missing, unreadable).
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (said in the message, not chained: it would be said twice).
        error: io::Error,
    },
    /// A PEM file holds a section that does not decode.
    #[error("malformed pem in {path}: {error}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        error: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    /// A key file holds no private key (PKCS#8, PKCS#1 or SEC1).
    #[error("no private key in {0}")]
    NoPrivateKey(PathBuf),
    /// The private key is not the key of the certificate.
    #[error("private key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate or the key (an unsupported key type, for instance).
    #[error("certificate {cert} with key {key} refused: {source}")]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The address to connect to is not `host:port`.
    #[error("cannot connect to {addr:?}: {source}")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        source: AddrError,
    },
    /// A trusted certificate cannot serve as a trust anchor, or no anchor was given.
    #[error("cannot trust {path}: {reason}")]
    Trust {
        /// The file (empty when none was given).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The channel could not be opened: refused, unreachable, timed out, or the TLS handshake
    /// failed (an untrusted certificate, a name mismatch).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address as given.
        addr: String,
        /// Why, with every cause tonic and rustls report.
        reason: String,
    },
}

/// Builds the server's TLS configuration from a PEM certificate chain (leaf first) and a PEM
/// private key (PKCS#8, PKCS#1 or SEC1): TLS 1.3 only, ALPN `h2`, no client certificates, the
/// `ring` provider.
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    build_server(cert_pem, key_pem, provider, Arc::new(rustls::server::NoClientAuth))
}

/// TLS 1.3 only, ALPN `h2`, `verifier` for clients, the certificate chain and key from PEM.
fn build_server(
    cert_pem: &Path,
    key_pem: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = certs_from_pem(cert_pem, &read(cert_pem)?)?;
    let key = key_from_pem(key_pem, &read(key_pem)?)?;
    let refused = |source: rustls::Error| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch { cert: cert_pem.to_owned(), key: key_pem.to_owned() }
        }
        source => TlsError::Refused { cert: cert_pem.to_owned(), key: key_pem.to_owned(), source },
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(refused)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(refused)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Builds a server configuration that also demands a client certificate, issued by (or equal
/// to) one of the certificates in the `trust` files: the data server node's side of the
/// facility's mutual TLS. TLS 1.3 only, ALPN `h2`, the `ring` provider.
pub fn mutual_server_config(
    cert_pem: &Path,
    key_pem: &Path,
    trust: &[PathBuf],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(roots(trust)?);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Trust { path: trust[0].clone(), reason: e.to_string() })?;
    build_server(cert_pem, key_pem, provider, verifier)
}

/// The trust anchors of every certificate in the `trust` files (at least one file).
fn roots(trust: &[PathBuf]) -> Result<rustls::RootCertStore, TlsError> {
    if trust.is_empty() {
        return Err(TlsError::Trust { path: PathBuf::new(), reason: "no trusted certificate given".into() });
    }
    let mut roots = rustls::RootCertStore::empty();
    for path in trust {
        for cert in certs_from_pem(path, &read(path)?)? {
            roots.add(cert).map_err(|e| TlsError::Trust { path: path.clone(), reason: e.to_string() })?;
        }
    }
    Ok(roots)
}

/// Opens a mutual-TLS channel to `addr` (`host:port`): the server must present a certificate
/// for `host` that one of the `trust` files vouches for, and this end presents `cert_pem` with
/// `key_pem`. `timeout` bounds the opening as in [`connect`].
pub async fn connect_mutual(
    addr: &str,
    cert_pem: &Path,
    key_pem: &Path,
    trust: &[PathBuf],
    timeout: Duration,
) -> Result<Channel, TlsError> {
    let target = parse_addr(addr)?;
    let identity = tonic::transport::Identity::from_pem(read(cert_pem)?, read(key_pem)?);
    let tls = ClientTlsConfig::new()
        .domain_name(target.host.clone())
        .timeout(timeout)
        .identity(identity)
        .ca_certificate(bundle(trust)?);
    let endpoint = Endpoint::from_shared(format!("https://{target}"))
        .and_then(|e| e.tls_config(tls))
        .map_err(|e| TlsError::Connect { addr: addr.to_owned(), reason: error_chain(&e) })?;
    open(addr, endpoint, timeout).await
}

/// The TLS connections of a listener within its [`PortLimits`], for the
/// `serve_with_incoming*` of the server [`PortLimits::server`] builds for [`TlsInfo`].
///
/// It yields only completed handshakes and never an error: a failed or timed-out handshake is
/// logged at debug level with the peer's address and dropped.
pub type TlsIncoming = Incoming<TlsStream<TcpStream>>;

/// Accepts TCP connections on `listener` within `limits` (the connection cap, the handshake
/// and idle timeouts: [`crate::ports`]) and performs their TLS handshakes with `cfg`, each in
/// its own task. The result is the `incoming` argument of
/// `limits.server::<TlsInfo>().add_service(..).serve_with_incoming_shutdown(incoming, signal)`:
/// that server tracks the calls of each connection, which the idle timeout needs, and hands
/// the calls tonic's own connect info (`Request::remote_addr` works).
///
/// Accepted sockets get `TCP_NODELAY`. Must run inside a tokio runtime.
pub async fn serve_tls_incoming(
    listener: TcpListener,
    cfg: Arc<rustls::ServerConfig>,
    limits: &PortLimits,
) -> TlsIncoming {
    tls_incoming(listener, LiveConfig::new(cfg), limits, false)
}

/// As [`serve_tls_incoming`], for a [`mutual_server_config`]: a peer refused in the handshake
/// (no certificate, or one the facility does not trust) is logged as a warning, since on a
/// facility's LAN that is a misconfiguration or an intruder, not Internet noise.
pub async fn serve_mutual_tls_incoming(
    listener: TcpListener,
    cfg: Arc<rustls::ServerConfig>,
    limits: &PortLimits,
) -> TlsIncoming {
    tls_incoming(listener, LiveConfig::new(cfg), limits, true)
}

/// As [`serve_tls_incoming`] (`mutual`: as [`serve_mutual_tls_incoming`]), with a
/// configuration that can be replaced while serving: each new connection's handshake uses the
/// one current when it was accepted (certificates rotated on SIGHUP); open connections keep
/// theirs.
pub async fn serve_live_tls_incoming(
    listener: TcpListener,
    live: LiveConfig,
    limits: &PortLimits,
    mutual: bool,
) -> TlsIncoming {
    tls_incoming(listener, live, limits, mutual)
}

/// A server's TLS configuration, replaceable while it serves ([`serve_live_tls_incoming`]).
#[derive(Debug, Clone)]
pub struct LiveConfig(Arc<std::sync::RwLock<Arc<rustls::ServerConfig>>>);

impl LiveConfig {
    /// Starts with `cfg`.
    pub fn new(cfg: Arc<rustls::ServerConfig>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(cfg)))
    }

    /// New connections use `cfg` from now on.
    pub fn replace(&self, cfg: Arc<rustls::ServerConfig>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn tls_incoming(listener: TcpListener, live: LiveConfig, limits: &PortLimits, loud: bool) -> TlsIncoming {
    ports::incoming(listener, limits, move |tcp, peer| {
        let accept = TlsAcceptor::from(live.current()).accept(tcp);
        async move {
            match accept.await {
                Ok(tls) => Some(tls),
                Err(err) if loud => {
                    tracing::warn!(%peer, error = %err, "peer refused in the tls handshake");
                    None
                }
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "tls handshake failed");
                    None
                }
            }
        }
    })
}

/// Which certificates a client trusts to authenticate a control server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The certificates in a PEM file: a CA, or the server's own self-signed certificate.
    File(PathBuf),
    /// The certificates of several PEM files (e.g. one self-signed certificate per facility).
    Files(Vec<PathBuf>),
    /// The operating system's root certificates.
    System,
}

/// Opens a TLS channel to the control server at `addr` (`host:port`, IPv6 hosts in brackets).
///
/// The server must present a certificate for `host` that `trust` vouches for. A certificate in
/// a trusted file is also pinned: a server presenting exactly that certificate is accepted
/// even when it is marked a CA (as `openssl req -x509` makes them), its names and validity
/// still checked. A failed handshake is explained in the error (a name mismatch, an expired
/// certificate, an unknown issuer …) with what to do about it. `timeout` bounds
/// the TCP connect, the TLS handshake and the whole opening; the channel has `TCP_NODELAY` and
/// reconnects by itself later if the connection drops.
pub async fn connect(addr: &str, trust: &Trust, timeout: Duration) -> Result<Channel, TlsError> {
    connect_from(addr, trust, None, timeout).await
}

/// As [`connect`], from the local address `local` (the system's choice when `None`): a client
/// on a host with several addresses, or a test posing as another host on loopback
/// (`127.0.0.2`).
pub async fn connect_from(
    addr: &str,
    trust: &Trust,
    local: Option<std::net::IpAddr>,
    timeout: Duration,
) -> Result<Channel, TlsError> {
    let target = parse_addr(addr)?;
    let tls = ClientTlsConfig::new().domain_name(target.host.clone()).timeout(timeout);
    let endpoint = Endpoint::from_shared(format!("https://{target}"));
    let pinned = !matches!(trust, Trust::System);
    let endpoint = match trust {
        Trust::System => endpoint.and_then(|e| e.tls_config(tls.with_native_roots())),
        Trust::File(path) => {
            let verifier = Arc::new(pin::PinnedOrRoots::new(pins(std::slice::from_ref(path))?));
            endpoint.and_then(|e| e.tls_config_with_verifier(tls, verifier))
        }
        Trust::Files(paths) => {
            let verifier = Arc::new(pin::PinnedOrRoots::new(pins(paths)?));
            endpoint.and_then(|e| e.tls_config_with_verifier(tls, verifier))
        }
    };
    let endpoint = endpoint
        .map_err(|e| TlsError::Connect { addr: addr.to_owned(), reason: error_chain(&e) })?
        .local_address(local);
    open_tls(addr, endpoint, timeout, &target.host, pinned).await
}

/// Opens a plain-text channel to `addr` (`host:port`): for tests only, it logs a warning.
pub async fn connect_insecure(addr: &str, timeout: Duration) -> Result<Channel, TlsError> {
    let target = parse_addr(addr)?;
    tracing::warn!(%addr, "control channel without TLS: for tests only");
    let endpoint = Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| TlsError::Connect { addr: addr.to_owned(), reason: error_chain(&e) })?;
    open(addr, endpoint, timeout).await
}

async fn open(addr: &str, endpoint: Endpoint, timeout: Duration) -> Result<Channel, TlsError> {
    let endpoint = endpoint.connect_timeout(timeout).tcp_nodelay(true);
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => Err(TlsError::Connect { addr: addr.to_owned(), reason: error_chain(&err) }),
        Err(_) => Err(TlsError::Connect { addr: addr.to_owned(), reason: format!("timed out after {timeout:?}") }),
    }
}

/// As [`open`], a failed TLS handshake with `host` explained in words a user can act on (the
/// library's own words follow, in brackets). `pinned`: the user gave certificate files.
async fn open_tls(
    addr: &str,
    endpoint: Endpoint,
    timeout: Duration,
    host: &str,
    pinned: bool,
) -> Result<Channel, TlsError> {
    let endpoint = endpoint.connect_timeout(timeout).tcp_nodelay(true);
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => {
            let chain = error_chain(&err);
            let reason = match explain::explain(&err, host, pinned) {
                Some(words) => format!("{words} [{chain}]"),
                None => chain,
            };
            Err(TlsError::Connect { addr: addr.to_owned(), reason })
        }
        Err(_) => Err(TlsError::Connect { addr: addr.to_owned(), reason: format!("timed out after {timeout:?}") }),
    }
}

fn parse_addr(addr: &str) -> Result<Addr, TlsError> {
    addr.parse::<Addr>().map_err(|source| TlsError::BadAddress { addr: addr.to_owned(), source })
}

/// An error and its causes on one line, each cause once: tonic's transport errors say only
/// "transport error" at the top and repeat their inner messages down the chain. Public for
/// `scistream-identity`, whose HTTP errors read the same way.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = err.source();
    }
    out
}

/// The certificates of every file: what the user trusts, each as a CA and as a pin.
fn pins(paths: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(certs_from_pem(path, &read(path)?)?);
    }
    Ok(all)
}

/// The certificates of every file, checked and joined into one PEM bundle.
fn bundle(paths: &[PathBuf]) -> Result<Certificate, TlsError> {
    let mut pem = Vec::new();
    for path in paths {
        let one = read(path)?;
        certs_from_pem(path, &one)?;
        pem.extend_from_slice(&one);
        pem.push(b'\n');
    }
    Ok(Certificate::from_pem(pem))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read { path: path.to_owned(), error })
}

fn certs_from_pem(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem { path: path.to_owned(), error })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

fn key_from_pem(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The first PKCS#8, PKCS#1 or SEC1 key in the file, as rustls-pemfile's `private_key` did.
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey(path.to_owned()),
        error => TlsError::Pem { path: path.to_owned(), error },
    })
}

mod explain;
mod pin;
#[cfg(test)]
mod tests;
