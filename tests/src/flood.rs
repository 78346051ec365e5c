//! The attacks on a control port as issue 11 filed them, for the tests and `bench-flood`: a TLS
//! connection that opens HTTP/2 streams and never finishes them, and TLS connections that
//! complete their handshake and then say nothing.
//!
//! The stream flood speaks raw HTTP/2 frames (a few dozen lines, below) instead of going
//! through an HTTP/2 library, because a library honours the server's
//! SETTINGS_MAX_CONCURRENT_STREAMS and an attacker does not: it sends every HEADERS frame at
//! once, whatever the server advertised, and reads what the server answers (REFUSED_STREAM
//! resets, a GOAWAY). It answers the server's PINGs, as a live client would.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// The RST_STREAM code of a stream the server would not open.
pub const REFUSED_STREAM: u32 = 0x7;

/// A TLS client configuration trusting the certificate(s) in `cert`, offering ALPN `h2`.
pub fn client_config(cert: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// As [`client_config`], presenting `cert` with `key` (a data server node's link is mutual TLS).
pub fn mutual_client_config(trust: &Path, cert: &Path, key: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(trust).with_context(|| format!("reading {}", trust.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c?)?;
    }
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// A TLS connection to `addr` (`127.0.0.1:PORT`) with `cfg`, the handshake bounded by `limit`.
pub async fn tls_connect(addr: &str, cfg: &Arc<rustls::ClientConfig>, limit: Duration) -> Result<TlsStream<TcpStream>> {
    let host = addr.rsplit_once(':').context("host:port")?.0.to_owned();
    let name = rustls::pki_types::ServerName::try_from(host)?;
    let connect = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        TlsConnector::from(cfg.clone()).connect(name, tcp).await
    };
    Ok(tokio::time::timeout(limit, connect).await.context("handshake timed out")??)
}

/// What the server answered a stream flood so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodReport {
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, if it said one.
    pub max_streams: Option<u32>,
    /// HEADERS frames sent (streams opened, never finished).
    pub sent: u32,
    /// Streams the server reset with REFUSED_STREAM.
    pub refused: u32,
    /// Streams the server reset with another code.
    pub reset: u32,
    /// The server's GOAWAY: the last stream it processed and the error code.
    pub goaway: Option<(u32, u32)>,
    /// Whether the server closed the connection.
    pub closed: bool,
    /// HTTP/2 frames received.
    pub frames: u32,
}

impl FloodReport {
    /// Streams the server refused: reset as REFUSED_STREAM, or above a GOAWAY's last stream
    /// (stream ids are 1, 3, 5, …: the nth is 2n − 1).
    pub fn turned_away(&self) -> u32 {
        let above_goaway = self.goaway.map_or(0, |(last, _)| self.sent.saturating_sub(last.div_ceil(2)));
        self.refused.max(above_goaway)
    }
}

#[derive(Debug, Default)]
struct Seen {
    max_streams: AtomicU32,
    has_max: AtomicBool,
    sent: AtomicU32,
    refused: AtomicU32,
    reset: AtomicU32,
    goaway_last: AtomicU32,
    goaway_code: AtomicU32,
    has_goaway: AtomicBool,
    closed: AtomicBool,
    frames: AtomicU32,
}

/// One TLS connection flooding a server with unfinished streams; dropping it closes the
/// connection.
#[derive(Debug)]
pub struct Flood {
    seen: Arc<Seen>,
    tasks: JoinSet<()>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small frame").to_be_bytes();
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len[1..]);
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK string literal, without Huffman coding (all of ours are shorter than 127 bytes).
fn hpack_str(out: &mut Vec<u8>, s: &str) {
    out.push(u8::try_from(s.len()).ok().filter(|n| *n < 127).expect("a short header"));
    out.extend_from_slice(s.as_bytes());
}

/// The header block of a gRPC call to `path` on `authority`.
fn header_block(path: &str, authority: &str, token: Option<&str>) -> Vec<u8> {
    // :method POST and :scheme https are static table entries 3 and 7.
    let mut b = vec![0x83, 0x87];
    // Literals without indexing, names from the static table: :path (4), :authority (1),
    // content-type (31: 15 in the 4-bit prefix, then 16).
    b.push(0x04);
    hpack_str(&mut b, path);
    b.push(0x01);
    hpack_str(&mut b, authority);
    b.extend_from_slice(&[0x0f, 0x10]);
    hpack_str(&mut b, "application/grpc");
    // Literals without indexing, new names.
    for (name, value) in [("te", Some("trailers")), ("authorization", token)] {
        if let Some(value) = value {
            b.push(0x00);
            hpack_str(&mut b, name);
            hpack_str(&mut b, value);
        }
    }
    b
}

impl Flood {
    /// Connects to `addr` and opens `streams` streams at once, each the HEADERS of a `list` call
    /// (with `token` as its authorization, if any) and nothing more.
    pub async fn start(addr: &str, cfg: &Arc<rustls::ClientConfig>, streams: u32, token: Option<&str>) -> Result<Self> {
        let mut tls = tls_connect(addr, cfg, Duration::from_secs(10)).await?;
        // The preface first: the reader below answers the server's SETTINGS at once.
        let mut preface = PREFACE.to_vec();
        preface.extend(frame(SETTINGS, 0, 0, &[]));
        tls.write_all(&preface).await?;
        let (mut rd, mut wr) = tokio::io::split(tls);
        let seen = Arc::new(Seen::default());
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut tasks = JoinSet::new();
        let w = seen.clone();
        tasks.spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            w.closed.store(true, Ordering::SeqCst);
        });
        let r = seen.clone();
        let answers = tx.clone();
        tasks.spawn(async move {
            let mut head = [0u8; 9];
            loop {
                if rd.read_exact(&mut head).await.is_err() {
                    break;
                }
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let (kind, flags) = (head[3], head[4]);
                let mut payload = vec![0u8; len];
                if rd.read_exact(&mut payload).await.is_err() {
                    break;
                }
                r.frames.fetch_add(1, Ordering::SeqCst);
                let word =
                    |at: usize| payload.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                match kind {
                    SETTINGS if flags & ACK == 0 => {
                        for p in payload.chunks_exact(6) {
                            if u16::from_be_bytes([p[0], p[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS {
                                r.max_streams.store(u32::from_be_bytes([p[2], p[3], p[4], p[5]]), Ordering::SeqCst);
                                r.has_max.store(true, Ordering::SeqCst);
                            }
                        }
                        let _ = answers.send(frame(SETTINGS, ACK, 0, &[]));
                    }
                    PING if flags & ACK == 0 => drop(answers.send(frame(PING, ACK, 0, &payload))),
                    RST_STREAM if word(0) == REFUSED_STREAM => drop(r.refused.fetch_add(1, Ordering::SeqCst)),
                    RST_STREAM => drop(r.reset.fetch_add(1, Ordering::SeqCst)),
                    GOAWAY => {
                        r.goaway_last.store(word(0) & 0x7fff_ffff, Ordering::SeqCst);
                        r.goaway_code.store(word(4), Ordering::SeqCst);
                        r.has_goaway.store(true, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            r.closed.store(true, Ordering::SeqCst);
        });
        let mut out = Vec::new();
        let block = header_block("/scistream.Control/list", addr, token);
        for n in 0..streams {
            out.extend(frame(HEADERS, END_HEADERS, 2 * n + 1, &block));
        }
        seen.sent.store(streams, Ordering::SeqCst);
        tx.send(out).context("the connection closed before the flood was sent")?;
        Ok(Self { seen, tasks })
    }

    /// What the server answered so far.
    pub fn report(&self) -> FloodReport {
        let s = &self.seen;
        FloodReport {
            max_streams: s.has_max.load(Ordering::SeqCst).then(|| s.max_streams.load(Ordering::SeqCst)),
            sent: s.sent.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            reset: s.reset.load(Ordering::SeqCst),
            goaway: s
                .has_goaway
                .load(Ordering::SeqCst)
                .then(|| (s.goaway_last.load(Ordering::SeqCst), s.goaway_code.load(Ordering::SeqCst))),
            closed: s.closed.load(Ordering::SeqCst),
            frames: s.frames.load(Ordering::SeqCst),
        }
    }

    /// Waits until the server has said nothing for `quiet` (or closed the connection), at most
    /// `limit`; the report then.
    pub async fn settled(&self, quiet: Duration, limit: Duration) -> FloodReport {
        let start = Instant::now();
        let mut last = self.report();
        let mut since = Instant::now();
        while start.elapsed() < limit && !last.closed {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.report();
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        last
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// `n` TLS connections to `addr` that complete their handshake and then say nothing, opened
/// `parallel` at a time, each handshake bounded by `limit`; with the number that failed
/// (refused by the server, or timed out).
pub async fn silent_connections(
    addr: &str,
    cfg: &Arc<rustls::ClientConfig>,
    n: usize,
    parallel: usize,
    limit: Duration,
) -> (Vec<TlsStream<TcpStream>>, usize) {
    let mut open = Vec::with_capacity(n);
    let mut failed = 0;
    let mut running = JoinSet::new();
    for _ in 0..n {
        if running.len() >= parallel.max(1)
            && let Some(done) = running.join_next().await
        {
            match done {
                Ok(Ok(tls)) => open.push(tls),
                _ => failed += 1,
            }
        }
        let (addr, cfg) = (addr.to_owned(), cfg.clone());
        running.spawn(async move { tls_connect(&addr, &cfg, limit).await });
    }
    while let Some(done) = running.join_next().await {
        match done {
            Ok(Ok(tls)) => open.push(tls),
            _ => failed += 1,
        }
    }
    (open, failed)
}

/// Whether the server closed `conn` (EOF, reset, or data it should not have sent to a
/// silent client) within `limit`.
pub async fn closed_within(conn: &mut TlsStream<TcpStream>, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            // The server's SETTINGS (and PINGs) come before it gives up on the client.
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}
