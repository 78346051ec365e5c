//! Bounded control ports: what one gRPC port (the control server's `scistream.Control`, a data
//! server node's link) lets a peer hold, whoever the peer is and before any authentication.
//!
//! The contract, for a port served with [`PortLimits::server`] over the connections of
//! [`crate::tls::serve_tls_incoming`] (or its mutual and plain variants) with the same limits:
//! - at most [`max_connections`](PortLimits::max_connections) connections are open at once,
//!   counted from the TCP accept (handshakes included); a connection beyond them is closed at
//!   accept, and a warning says how many were closed, at most once per [`LOG_EVERY`];
//! - a TLS handshake not done within [`handshake_timeout`](PortLimits::handshake_timeout)
//!   is dropped;
//! - a connection with no call in flight for [`idle_timeout`](PortLimits::idle_timeout) is
//!   closed: one that never sends a call, and one whose calls are over (a call is in flight
//!   from its HEADERS until its response ends, so a producer's REQ waiting for its Hello or a
//!   node's link keeps its connection);
//! - HTTP/2 streams: at most [`max_streams`](PortLimits::max_streams) at once per connection
//!   (advertised as SETTINGS_MAX_CONCURRENT_STREAMS; a stream beyond it is refused with
//!   REFUSED_STREAM, and a peer refused 1,024 times gets a GOAWAY), header lists of at most
//!   [`max_header_list`](PortLimits::max_header_list) bytes, a PING every
//!   [`keepalive_interval`](PortLimits::keepalive_interval) that must be answered within
//!   [`keepalive_timeout`](PortLimits::keepalive_timeout);
//! - at most [`max_calls`](PortLimits::max_calls) calls in flight on the whole port, counted
//!   from their HEADERS, so before their caller is authenticated; a call beyond them is
//!   answered RESOURCE_EXHAUSTED at once (and logged as the refused connections are).
//!
//! So what a peer can make the server hold is bounded by the connection cap times the stream
//! cap and, across connections, by the call cap, and it is returned when the peer goes.

mod calls;
mod conn;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::transport::Server;
use tower_layer::{Identity, Stack};

pub use calls::{CallLayer, CallService, TrackedBody};
pub use conn::{Conn, ConnInfo};

/// How often at most a refusal (a connection beyond the cap, a call beyond the cap) is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Completed handshakes waiting for tonic to pick them up.
const QUEUE: usize = 64;

/// How long the accept loop pauses after a failure of the listening socket itself (for
/// instance out of file descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one port lets its peers hold. [`Default`] gives the documented defaults
/// (`docs/control-plane.md`, "Limits of the control ports").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLimits {
    /// Connections open at once, handshakes included (default 1,024).
    pub max_connections: usize,
    /// HTTP/2 streams open at once on one connection (default 128).
    pub max_streams: u32,
    /// Calls in flight at once on the port, from their HEADERS (default 16,384).
    pub max_calls: usize,
    /// Largest HTTP/2 header list a peer may send, bytes (default 16 KiB).
    pub max_header_list: u32,
    /// How long a connection may stay without a call in flight (default 60 s).
    pub idle_timeout: Duration,
    /// Interval of the server's HTTP/2 PINGs (default 60 s).
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed (default 20 s).
    pub keepalive_timeout: Duration,
    /// How long a TLS handshake may take (default 10 s).
    pub handshake_timeout: Duration,
}

impl Default for PortLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl PortLimits {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        max_connections: 1_024,
        max_streams: 128,
        max_calls: 16_384,
        max_header_list: 16 * 1024,
        idle_timeout: Duration::from_secs(60),
        keepalive_interval: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(20),
        handshake_timeout: Duration::from_secs(10),
    };

    /// tonic's server with the HTTP/2 limits and the call cap and tracking. `I` is the connect
    /// info of the incoming connections before they were bounded ([`TlsInfo`] for TLS,
    /// [`tonic::transport::server::TcpConnectInfo`] for plain TCP): the calls see it as they
    /// would without the bounds (`Request::remote_addr` works).
    pub fn server<I: Clone + Send + Sync + 'static>(&self) -> Server<Stack<CallLayer<I>, Identity>> {
        Server::builder()
            .max_concurrent_streams(self.max_streams)
            .http2_max_header_list_size(self.max_header_list)
            .http2_keepalive_interval(Some(self.keepalive_interval))
            .http2_keepalive_timeout(Some(self.keepalive_timeout))
            .layer(CallLayer::new(self.max_calls))
    }
}

/// The connect info of a TLS connection, as tonic gives it to calls.
pub type TlsInfo = tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>;

/// What the process's bounded ports hold and refused, all of them together (a control server's
/// port and its nodes' link port, a data server's link port), for the metrics
/// (`scistream_port_connections`, `scistream_port_connections_refused`).
#[derive(Debug)]
pub struct PortTotals {
    /// Connections holding a slot now, handshakes included.
    pub open: AtomicU64,
    /// Connections closed at accept because every slot was taken.
    pub refused: AtomicU64,
}

/// This process's [`PortTotals`].
pub static PORT_TOTALS: PortTotals = PortTotals { open: AtomicU64::new(0), refused: AtomicU64::new(0) };

/// A connection's slot under its port's connection cap, counted in [`PORT_TOTALS`] while held.
#[derive(Debug)]
pub(crate) struct Slot(Option<OwnedSemaphorePermit>);

impl Slot {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        PORT_TOTALS.open.fetch_add(1, Ordering::Relaxed);
        Self(Some(permit))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The slot is free before the count says so: whoever reads the count may take it.
        drop(self.0.take());
        PORT_TOTALS.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A count of refusals logged at most once per [`LOG_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    /// Counts one refusal; `Some(n)` when it is time to log it, `n` being how many were held
    /// back since the last line.
    pub(crate) fn note(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            *held += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(held))
    }
}

/// The tail of a rate-limited refusal's log line: how many were not logged since the last.
pub(crate) fn held_back(n: u64) -> String {
    if n == 0 { String::new() } else { format!(" ({n} more refused since the last such line)") }
}

/// The bounded connections of a listener, for `Server::serve_with_incoming*`.
///
/// It yields only connections that completed their handshake and never an error. Dropping it
/// (tonic does when it shuts down) closes the listening socket.
#[derive(Debug)]
pub struct Incoming<T> {
    rx: mpsc::Receiver<Conn<T>>,
    accept: JoinHandle<()>,
}

impl<T> Stream for Incoming<T> {
    type Item = Result<Conn<T>, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

impl<T> Drop for Incoming<T> {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The plain TCP connections of `listener`, bounded by `limits` (no handshake): for a server
/// without TLS (tests). Accepted sockets get `TCP_NODELAY`. Must run inside a tokio runtime.
pub fn serve_tcp_incoming(listener: TcpListener, limits: &PortLimits) -> Incoming<TcpStream> {
    incoming(listener, limits, |tcp, _| async move { Some(tcp) })
}

/// Accepts connections on `listener` within `limits.max_connections` and runs `handshake` on
/// each in its own task, bounded by `limits.handshake_timeout`; a handshake answering `None`
/// (it failed, and said why) drops the connection.
pub(crate) fn incoming<T, H, F>(listener: TcpListener, limits: &PortLimits, handshake: H) -> Incoming<T>
where
    T: Send + 'static,
    H: Fn(TcpStream, SocketAddr) -> F + Send + 'static,
    F: Future<Output = Option<T>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let accept = tokio::spawn(accept_loop(listener, *limits, tx, handshake));
    Incoming { rx, accept }
}

async fn accept_loop<T, H, F>(listener: TcpListener, limits: PortLimits, tx: mpsc::Sender<Conn<T>>, handshake: H)
where
    T: Send + 'static,
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = Option<T>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Throttled::default();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) if is_per_connection(&err) => {
                tracing::debug!(error = %err, "control connection lost before accept");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "accepting control connections failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: the peer sees its handshake fail.
            drop(tcp);
            PORT_TOTALS.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(held) = refused.note() {
                tracing::warn!(
                    %peer,
                    max_connections = limits.max_connections,
                    "control connection refused: too many open{}",
                    held_back(held)
                );
            }
            continue;
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %err, "cannot set TCP_NODELAY");
        }
        let slot = Slot::new(slot);
        let tx = tx.clone();
        let handshake = handshake(tcp, peer);
        tokio::spawn(async move {
            match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                // A closed receiver means the server stopped: the connection is dropped.
                Ok(Some(io)) => drop(tx.send(Conn::new(io, peer, slot, limits.idle_timeout)).await),
                Ok(None) => {}
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        });
    }
}

/// Errors of `accept` that concern one connection, not the listening socket.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests;
