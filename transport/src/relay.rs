//! The S2DS relay engine: per session, accept on its listeners and forward each connection to
//! a target, both ways, through fixed buffers; the WAN leg is TLS 1.3 pinned to the session
//! ([`Legs`], [`crate::wan`]), the LAN legs plain TCP.
//!
//! Contract:
//! - The connection accepted on listener `i` goes to `targets[i % targets.len()]` (SciStream
//!   1.2 maps remote listeners round-robin onto the session's connections); any number of
//!   connections per listener.
//! - Plain legs move bytes with `splice(2)` through a 64 KiB pipe per direction, never
//!   through user space (Linux; elsewhere they are copied like TLS legs). A TLS leg copies
//!   through one buffer of [`BUF`] bytes per direction. Memory per relayed connection is fixed
//!   either way: two pipes or two buffers, plus the sockets.
//! - A clean end of stream on one side is passed on as a half-close (FIN) on the other; the
//!   other direction keeps flowing until it ends too. On the WAN leg, a TCP FIN without TLS's
//!   close_notify is such an end too: Nginx and HAProxy half-close a TLS stream that way.
//! - A broken leg (a reset, an error) is passed on as a reset: the other end sees an error,
//!   never a clean end of stream, so no truncation goes unnoticed.
//! - A WAN connection that does not authenticate as the session is closed before anything is
//!   forwarded (the target is not even dialled) and counted as refused.
//! - Dropping the [`Relay`] (REL) closes the listeners and every connection at once.
//! - A path that does not work shows: a target that cannot be reached, a WAN handshake that
//!   fails and a connection reset mid-stream are counted ([`Counters`]), logged at WARN naming
//!   the session and the peer (at most one line per session every [`WARN_EVERY`], saying how
//!   many were not logged), and the last failure to reach the target is kept as the session's
//!   [`Traffic::problem`] until a connection reaches it again: status shows the session
//!   degraded, with the reason.
//! - Every dial is held to the facility's destination policy ([`set_policy`]) on the address
//!   actually dialled; a target it refuses is never connected to (a failure to reach it).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use scistream_fsm::Addr;

pub use guard::{resolve_admitted, set_policy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Buffer per direction of a relayed connection.
pub const BUF: usize = 64 * 1024;

/// Every session's traffic in this process since it started, ended sessions included (what
/// the daemons' metrics report as totals). One relay engine per process: process-wide.
#[derive(Debug, Default)]
pub struct Totals {
    /// Bytes towards the targets.
    pub bytes_in: AtomicU64,
    /// Bytes back from the targets.
    pub bytes_out: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// WAN connections refused: they did not authenticate as their session.
    pub refused: AtomicU64,
    /// Connections whose target could not be reached.
    pub dial_failures: AtomicU64,
    /// WAN handshakes with the producer's gateway that failed.
    pub handshake_failures: AtomicU64,
    /// Connections ended by an error after both legs were up.
    pub resets: AtomicU64,
}

/// The process's relay totals.
pub static TOTALS: Totals = Totals {
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
    connections: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    dial_failures: AtomicU64::new(0),
    handshake_failures: AtomicU64::new(0),
    resets: AtomicU64::new(0),
};

/// A session's traffic so far.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes from the accepting side to the target.
    pub bytes_in: AtomicU64,
    /// Bytes from the target back to the accepting side.
    pub bytes_out: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted in all.
    pub total: AtomicU64,
    /// Connections that ended with an error on either leg.
    pub failed: AtomicU64,
    /// WAN connections refused because they did not authenticate as the session.
    pub refused: AtomicU64,
    /// Bytes per second towards the target over the last second.
    pub rate_in: AtomicU64,
    /// Bytes per second back from the target over the last second.
    pub rate_out: AtomicU64,
    /// Connections whose target could not be reached (TCP connect failed).
    pub dial_failures: AtomicU64,
    /// Connections whose WAN handshake with the producer's gateway failed (consumer side).
    pub handshake_failures: AtomicU64,
    /// Connections ended by an error after both legs were up.
    pub resets: AtomicU64,
    /// The last failure to reach the target, until a connection reaches it again.
    problem: std::sync::Mutex<Option<String>>,
    /// When a WARN line was last logged, and how many were held back since.
    warned: std::sync::Mutex<(Option<tokio::time::Instant>, u64)>,
}

/// At most one WARN line per session this often (the ones held back are counted in the next).
pub const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Counters {
    /// Logs `what` at WARN for `session`, unless a line was logged less than [`WARN_EVERY`] ago.
    fn warn(&self, session: &str, what: impl FnOnce() -> String) {
        let held = {
            let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            if w.0.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
                w.1 += 1;
                return;
            }
            let held = w.1;
            *w = (Some(now), 0);
            held
        };
        let what = what();
        if held > 0 {
            tracing::warn!(session, "{what} ({held} more since the last line)");
        } else {
            tracing::warn!(session, "{what}");
        }
    }

    /// Records a failure to reach the target: counted (in `counter` and the process's
    /// `total`), kept as the session's problem, logged.
    fn path_failed(&self, session: &str, counter: &AtomicU64, total: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(1, Ordering::Relaxed);
        self.warn(session, || what.clone());
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }

    /// A connection reached its target: the path works.
    fn path_works(&self) {
        let mut p = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_some() {
            *p = None;
        }
    }
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Bytes from the accepting side to the target.
    pub bytes_in: u64,
    /// Bytes from the target back.
    pub bytes_out: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted in all.
    pub total: u64,
    /// Connections that ended with an error.
    pub failed: u64,
    /// WAN connections that did not authenticate.
    pub refused: u64,
    /// Bytes per second towards the target, last second.
    pub rate_in: u64,
    /// Bytes per second back from the target, last second.
    pub rate_out: u64,
    /// Connections whose target could not be reached.
    pub dial_failures: u64,
    /// Connections whose WAN handshake with the producer's gateway failed.
    pub handshake_failures: u64,
    /// Connections ended by an error after both legs were up.
    pub resets: u64,
    /// The last failure to reach the target, until a connection reaches it again: the
    /// session's path is degraded while there is one.
    pub problem: Option<String>,
}

impl From<&Traffic> for scistream_proto::convert::SessionTraffic {
    /// What status and list show of a session's counters (its failed connections are logged).
    fn from(t: &Traffic) -> Self {
        Self {
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            open: t.open,
            total: t.total,
            refused: t.refused,
            rate_in: t.rate_in,
            rate_out: t.rate_out,
            dial_failures: t.dial_failures,
            handshake_failures: t.handshake_failures,
            resets: t.resets,
            problem: t.problem.clone().unwrap_or_default(),
        }
    }
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            rate_in: self.rate_in.load(Ordering::Relaxed),
            rate_out: self.rate_out.load(Ordering::Relaxed),
            dial_failures: self.dial_failures.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            problem: self.problem.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// How a relay's two legs are secured. The WAN leg of a session is TLS 1.3 pinned to the
/// session ([`crate::wan`]); the LAN legs are plain TCP.
#[derive(Clone)]
pub enum Legs {
    /// Both legs plain (the WAN leg too only by explicit configuration).
    Plain,
    /// The accepting side is the WAN leg: a producer's gateway, TLS server.
    AcceptTls(tokio_rustls::TlsAcceptor),
    /// The dialling side is the WAN leg: a consumer's gateway, TLS client.
    DialTls(tokio_rustls::TlsConnector),
}

impl Legs {
    /// The legs of a session served by a facility in `role`, secured with `creds`: the WAN leg
    /// is the accepting side at a producer's gateway and the dialling side at a consumer's.
    /// Without credentials (a SciStream 1.2 client) both are plain if `allow_plain`, else it is
    /// an error.
    pub fn for_session(
        role: scistream_fsm::Role,
        creds: &scistream_fsm::Credentials,
        allow_plain: bool,
    ) -> Result<Self, crate::wan::WanError> {
        if creds.is_none() {
            // The control server refuses such sessions unless allowed; the data plane checks
            // again rather than trust it.
            return if allow_plain { Ok(Self::Plain) } else { Err(crate::wan::WanError::PlainNotAllowed) };
        }
        let id = crate::wan::SessionIdentity::derive(creds)?;
        Ok(match role {
            scistream_fsm::Role::Prod => Self::AcceptTls(tokio_rustls::TlsAcceptor::from(id.server_config()?)),
            scistream_fsm::Role::Cons => Self::DialTls(tokio_rustls::TlsConnector::from(id.client_config()?)),
        })
    }
}

impl std::fmt::Debug for Legs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain => "Plain",
            Self::AcceptTls(_) => "AcceptTls",
            Self::DialTls(_) => "DialTls",
        })
    }
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    tasks: JoinSet<()>,
    counters: Arc<Counters>,
}

impl Relay {
    /// Starts relaying from `listeners` to `targets` (must not be empty), legs secured per
    /// `legs`, counting into `counters` (shared with whoever reports the session's traffic).
    /// With `rate` (bytes per second), the data coming back from the targets — the producer's
    /// — is held to it, across all the session's connections. `session` names it in logs.
    pub fn start(
        session: &str,
        listeners: Vec<TcpListener>,
        targets: Vec<Addr>,
        legs: Legs,
        counters: Arc<Counters>,
        rate: Option<u64>,
    ) -> Self {
        assert!(!targets.is_empty(), "a relay needs a target");
        let bucket = rate.map(|r| Arc::new(Bucket::new(r)));
        let mut tasks = JoinSet::new();
        let session: Arc<str> = Arc::from(session);
        for (i, listener) in listeners.into_iter().enumerate() {
            let target = targets[i % targets.len()].clone();
            let at =
                Arc::new(Conn { session: session.clone(), target, legs: legs.clone(), counters: counters.clone() });
            tasks.spawn(accept_loop(listener, at, bucket.clone()));
        }
        tasks.spawn(sample_rates(counters.clone()));
        Self { tasks, counters }
    }

    /// The session's traffic so far.
    pub fn traffic(&self) -> Traffic {
        self.counters.snapshot()
    }
}

impl Relay {
    /// Stops the relay and waits until its listeners are closed, so their ports can be bound
    /// again at once (dropping it stops it too, but frees the ports a little later).
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// One open connection in the counters, for as long as it lives.
struct OpenConnection<'a>(&'a Counters);

impl<'a> OpenConnection<'a> {
    fn new(c: &'a Counters) -> Self {
        c.open.fetch_add(1, Ordering::Relaxed);
        Self(c)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Updates the per-second rates once a second.
async fn sample_rates(c: Arc<Counters>) {
    let mut last = (c.bytes_in.load(Ordering::Relaxed), c.bytes_out.load(Ordering::Relaxed));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = (c.bytes_in.load(Ordering::Relaxed), c.bytes_out.load(Ordering::Relaxed));
        c.rate_in.store(now.0 - last.0, Ordering::Relaxed);
        c.rate_out.store(now.1 - last.1, Ordering::Relaxed);
        last = now;
    }
}

/// What every connection accepted on one listener shares: its session, target, legs and
/// counters.
struct Conn {
    session: Arc<str>,
    target: Addr,
    legs: Legs,
    counters: Arc<Counters>,
}

impl Conn {
    /// What the target is, for a person: the producer's gateway when the dialled leg is the
    /// WAN's, the producer's application behind a producer's gateway.
    fn target_is(&self) -> String {
        match self.legs {
            Legs::DialTls(_) => format!("the producer's gateway at {}", self.target),
            Legs::AcceptTls(_) => format!("the producer's application at {}", self.target),
            Legs::Plain => format!("the target {}", self.target),
        }
    }
}

/// How a relayed connection ended badly: before it reached its target (counted by [`open`]),
/// or after both legs were up.
enum Failure {
    Opening(io::Error),
    Flowing(io::Error),
}

async fn accept_loop(listener: TcpListener, at: Arc<Conn>, bucket: Option<Arc<Bucket>>) {
    // Connections live in this task's set: aborting the accept loop drops them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    at.counters.total.fetch_add(1, Ordering::Relaxed);
                    TOTALS.connections.fetch_add(1, Ordering::Relaxed);
                    let (at, bucket) = (at.clone(), bucket.clone());
                    conns.spawn(async move {
                        let c = &at.counters;
                        // Counted open until this task ends, also when REL aborts it.
                        let _open = OpenConnection::new(c);
                        match relay_one(inbound, &at, bucket.as_deref()).await {
                            Ok(()) => {}
                            Err(Failure::Opening(e)) => {
                                c.failed.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%peer, target = %at.target, "relayed connection not opened: {e}");
                            }
                            Err(Failure::Flowing(e)) => {
                                c.failed.fetch_add(1, Ordering::Relaxed);
                                c.resets.fetch_add(1, Ordering::Relaxed);
                                TOTALS.resets.fetch_add(1, Ordering::Relaxed);
                                c.warn(&at.session, || format!("a connection from {peer} to {} broke mid-stream: {e}", at.target_is()));
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A relayed connection's end: plain TCP or TLS over TCP.
trait Leg: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP socket under it.
    fn tcp(&self) -> &TcpStream;
}

impl Leg for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Leg for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl Leg for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// How long a WAN handshake may take.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Dials the target of `at`; a failure is the path's problem.
async fn dial(at: &Conn) -> io::Result<TcpStream> {
    match guard::connect(&at.target, &at.legs).await {
        Ok(s) => Ok(s),
        Err(e) => {
            at.counters.path_failed(
                &at.session,
                &at.counters.dial_failures,
                &TOTALS.dial_failures,
                format!("cannot reach {}: {e}", at.target_is()),
            );
            Err(e)
        }
    }
}

/// Opens both legs of one accepted connection, per `legs`.
async fn open(inbound: TcpStream, at: &Conn) -> io::Result<(Box<dyn Leg>, Box<dyn Leg>)> {
    let (target, legs, counters) = (&at.target, &at.legs, &*at.counters);
    arm(&inbound);
    inbound.set_nodelay(true)?;
    let inbound: Box<dyn Leg> = match legs {
        Legs::AcceptTls(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(inbound)).await {
            Ok(Ok(tls)) => Box::new(tls),
            Ok(Err(e)) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                TOTALS.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(session = %at.session, %target, "WAN connection refused: it did not authenticate as the session ({e})");
                return Err(e);
            }
            Err(_) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                TOTALS.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(session = %at.session, %target, "WAN connection refused: no TLS handshake within {HANDSHAKE:?}");
                return Err(io::ErrorKind::TimedOut.into());
            }
        },
        Legs::Plain | Legs::DialTls(_) => Box::new(inbound),
    };
    // The target may not be there: the client is already armed to see a reset.
    let outbound = dial(at).await?;
    arm(&outbound);
    outbound.set_nodelay(true)?;
    let outbound: Box<dyn Leg> = match legs {
        Legs::DialTls(connector) => {
            let name = crate::wan::SessionIdentity::server_name();
            match tokio::time::timeout(HANDSHAKE, connector.connect(name, outbound)).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(e)) => {
                    let what = format!("{} did not authenticate as the session: {e}", at.target_is());
                    counters.path_failed(&at.session, &counters.handshake_failures, &TOTALS.handshake_failures, what);
                    return Err(e);
                }
                Err(_) => {
                    let what = format!("no TLS handshake with {} within {HANDSHAKE:?}", at.target_is());
                    counters.path_failed(&at.session, &counters.handshake_failures, &TOTALS.handshake_failures, what);
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
        }
        Legs::Plain | Legs::AcceptTls(_) => Box::new(outbound),
    };
    counters.path_works();
    Ok((inbound, outbound))
}

/// Forwards one accepted connection to its target until both directions end.
async fn relay_one(inbound: TcpStream, at: &Conn, bucket: Option<&Bucket>) -> Result<(), Failure> {
    #[cfg(target_os = "linux")]
    if matches!(at.legs, Legs::Plain) {
        return relay_plain(inbound, at, bucket).await;
    }
    let counters = &*at.counters;
    let (inbound, outbound) = open(inbound, at).await.map_err(Failure::Opening)?;
    let (mut in_r, mut in_w) = tokio::io::split(inbound);
    let (mut out_r, mut out_w) = tokio::io::split(outbound);
    let result = {
        let up = pump(&mut in_r, &mut out_w, [&counters.bytes_in, &TOTALS.bytes_in], None);
        let down = pump(&mut out_r, &mut in_w, [&counters.bytes_out, &TOTALS.bytes_out], bucket);
        tokio::pin!(up, down);
        // A clean end of one direction waits for the other; an error ends both at once.
        tokio::select! {
            r = &mut up => match r { Ok(()) => down.await, e => e },
            r = &mut down => match r { Ok(()) => up.await, e => e },
        }
    };
    if result.is_ok() {
        disarm(in_r.unsplit(in_w).tcp());
        disarm(out_r.unsplit(out_w).tcp());
    }
    result.map_err(Failure::Flowing)
}

/// Forwards a connection whose legs are both plain TCP with `splice(2)`: zero copy.
#[cfg(target_os = "linux")]
async fn relay_plain(inbound: TcpStream, at: &Conn, bucket: Option<&Bucket>) -> Result<(), Failure> {
    let counters = &*at.counters;
    arm(&inbound);
    inbound.set_nodelay(true).map_err(Failure::Opening)?;
    let outbound = dial(at).await.map_err(Failure::Opening)?;
    arm(&outbound);
    outbound.set_nodelay(true).map_err(Failure::Opening)?;
    counters.path_works();
    let up = splice::pump(&inbound, &outbound, [&counters.bytes_in, &TOTALS.bytes_in], None);
    let down = splice::pump(&outbound, &inbound, [&counters.bytes_out, &TOTALS.bytes_out], bucket);
    tokio::pin!(up, down);
    let result = tokio::select! {
        r = &mut up => match r { Ok(()) => down.await, e => e },
        r = &mut down => match r { Ok(()) => up.await, e => e },
    };
    if result.is_ok() {
        disarm(&inbound);
        disarm(&outbound);
    }
    result.map_err(Failure::Flowing)
}

/// Until both directions of a connection ended cleanly, closing its sockets resets them
/// (SO_LINGER 0): an error, or the relay dropped at REL, reaches each end as an error, never
/// as a clean end of a truncated stream.
fn arm(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
}

/// Both directions ended cleanly: close gracefully.
fn disarm(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(None);
}

/// Copies `from` into `to` until end of stream, then half-closes `to`; paced by `bucket`.
async fn pump<R, W>(from: &mut R, to: &mut W, count: [&AtomicU64; 2], bucket: Option<&Bucket>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf).await {
            // A TLS peer that ends its direction with a TCP FIN and no close_notify (Nginx and
            // HAProxy do, to half-close): the end of that direction, as OpenSSL-based peers
            // take it. A reset or any other error still ends the connection as broken.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            r => r?,
        };
        if n == 0 {
            return to.shutdown().await;
        }
        if let Some(b) = bucket {
            b.take(n).await;
        }
        to.write_all(&buf[..n]).await?;
        for c in count {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// A token bucket shared by a session's connections: `rate` bytes per second on average,
/// bursts of at most a tenth of a second's worth (and never less than one buffer).
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: std::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl Bucket {
    /// A full bucket for `bytes_per_sec`.
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = (rate / 10.0).max(BUF as f64);
        Self { rate, burst, state: std::sync::Mutex::new((burst, tokio::time::Instant::now())) }
    }

    /// Takes `n` bytes' worth, waiting as long as the rate requires (the debt is paid by waiting,
    /// so several connections share the rate fairly in arrival order).
    pub async fn take(&self, n: usize) {
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            let tokens = (st.0 + self.rate * (now - st.1).as_secs_f64()).min(self.burst) - n as f64;
            *st = (tokens, now);
            if tokens < 0.0 {
                std::time::Duration::from_secs_f64(-tokens / self.rate)
            } else {
                std::time::Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

mod guard;
#[cfg(target_os = "linux")]
mod splice;

#[cfg(test)]
mod tests;
