//! The daemons' operator surfaces: Prometheus metrics, liveness and readiness over HTTP
//! (`--metrics-addr`), the `health` subcommand that asks them, and systemd's readiness
//! protocol (`sd_notify`).
//!
//! `GET /metrics` answers the OpenMetrics text exposition; before encoding, the daemon's
//! actors set their gauges from their state (a [`Refresh`]). `GET /healthz` answers 200 while
//! the process serves HTTP at all; `GET /readyz` answers 200 only once the daemon is ready
//! (a control server attached to its data server with its store recovered; a node serving its
//! link) and 503 with the reason otherwise — also while it drains.

use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use scistream_identity::introspect::IntrospectAuth;
use scistream_transport::relay::TOTALS;
use scistream_transport::server::{AuthFuture, Authenticator, RpcObserver};

/// Sets the actors' gauges before a scrape.
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Whether the daemon is ready, and if not why.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
    anonymous: AtomicBool,
    why_not: Mutex<String>,
}

impl Health {
    /// A daemon not ready yet, for `why`.
    pub fn starting(why: &str) -> Arc<Self> {
        Arc::new(Self { why_not: Mutex::new(why.to_owned()), ..Self::default() })
    }

    /// Ready (or not, for `why`).
    pub fn set_ready(&self, ready: bool, why: &str) {
        *self.why_not.lock().unwrap_or_else(|e| e.into_inner()) = why.to_owned();
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether authentication is off (every caller `anonymous`): said by `/healthz` and
    /// `/readyz`.
    pub fn set_anonymous(&self, anonymous: bool) {
        self.anonymous.store(anonymous, Ordering::SeqCst);
    }

    /// What `/healthz` and `/readyz` add: authentication off.
    fn mode(&self) -> &'static str {
        if self.anonymous.load(Ordering::SeqCst) { " (anonymous: authentication is off)" } else { "" }
    }

    /// Draining: never ready again.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not.
    pub fn verdict(&self) -> Result<(), String> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("draining: no new sessions".into());
        }
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(self.why_not.lock().unwrap_or_else(|e| e.into_inner()).clone())
        }
    }
}

/// The labels of an rpc's latency: the rpc (one of the service's seven) and its gRPC code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The rpc's name.
    pub rpc: String,
    /// Its gRPC status code (`Ok`, `ResourceExhausted`, …).
    pub code: String,
}

/// The control port's rpcs: how long each took, by rpc and code.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    /// Latency histograms.
    pub seconds: Family<RpcLabels, Histogram>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        // 100 µs to about 2 minutes: a producer's REQ waits for its Hello.
        Self { seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 21))) }
    }
}

impl RpcMetrics {
    /// Registers the histograms in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "scistream_rpc_duration_seconds",
            "Control-port rpcs served, by rpc and gRPC code, and how long each took",
            self.seconds.clone(),
        );
    }

    /// What the control service tells of every rpc it served.
    pub fn observer(&self) -> RpcObserver {
        let seconds = self.seconds.clone();
        Arc::new(move |rpc, code, took| {
            let labels = RpcLabels { rpc: rpc.to_owned(), code: format!("{code:?}") };
            seconds.get_or_create(&labels).observe(took.as_secs_f64());
        })
    }
}

/// The process's relay totals ([`TOTALS`]), read at each scrape.
#[derive(Debug)]
pub struct RelayTotals;

impl Collector for RelayTotals {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let t = &TOTALS;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let all = [
            ("scistream_relayed_bytes_in", "Bytes relayed towards the sessions' targets", load(&t.bytes_in)),
            ("scistream_relayed_bytes_out", "Bytes relayed back from the sessions' targets", load(&t.bytes_out)),
            ("scistream_relayed_connections", "Connections accepted by the sessions' listeners", load(&t.connections)),
            (
                "scistream_wan_connections_refused",
                "WAN connections refused: they did not authenticate as their session",
                load(&t.refused),
            ),
            ("scistream_dial_failures", "Connections whose target could not be reached", load(&t.dial_failures)),
            (
                "scistream_wan_handshake_failures",
                "WAN handshakes with the producer's gateway that failed",
                load(&t.handshake_failures),
            ),
            ("scistream_connection_resets", "Connections ended by an error after both legs were up", load(&t.resets)),
        ];
        for (name, help, v) in all {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// The process's bounded gRPC ports ([`scistream_transport::ports::PORT_TOTALS`]): connections
/// holding a slot now and those refused for want of one, read at each scrape.
#[derive(Debug)]
pub struct PortTotals;

impl Collector for PortTotals {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let t = &scistream_transport::ports::PORT_TOTALS;
        let open = ConstGauge::new(t.open.load(Ordering::Relaxed) as i64);
        open.encode(encoder.encode_descriptor(
            "scistream_port_connections",
            "Connections open now on the control and link ports, TLS handshakes included (capped by --max-connections per port)",
            None,
            open.metric_type(),
        )?)?;
        let refused = ConstCounter::new(t.refused.load(Ordering::Relaxed));
        refused.encode(encoder.encode_descriptor(
            "scistream_port_connections_refused",
            "Connections closed at accept on the control and link ports: every slot under --max-connections was taken",
            None,
            refused.metric_type(),
        )?)?;
        Ok(())
    }
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    health: Arc<Health>,
    refresh: Refresh,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the process ends.
pub fn serve(listener: tokio::net::TcpListener, registry: Registry, health: Arc<Health>, refresh: Refresh) {
    let shared = Shared { registry: Arc::new(registry), health, refresh };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the metrics port stopped: {e}");
        }
    });
}

/// Binds `--metrics-addr`.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics-addr: cannot listen on {addr}"))
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    // The actors' gauges, set now; a stopped actor leaves them as they were.
    let _ = tokio::time::timeout(Duration::from_secs(5), (s.refresh)()).await;
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            text,
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], format!("{e}\n")),
    }
}

async fn healthz(State(s): State<Shared>) -> String {
    format!("ok{}\n", s.health.mode())
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    let mode = s.health.mode();
    match s.health.verdict() {
        Ok(()) => (StatusCode::OK, format!("ready{mode}\n")),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}{mode}\n")),
    }
}

/// `health`: asks a daemon's `/readyz` at `addr`; exit status 0 when ready, 1 when not (or
/// unreachable), with what it answered.
pub fn health_command(name: &str, addr: &str) -> std::process::ExitCode {
    match ask_ready(addr) {
        Ok((true, said)) => {
            println!("{name} at {addr}: {said}");
            std::process::ExitCode::SUCCESS
        }
        Ok((false, said)) => {
            eprintln!("{name} at {addr}: {said}");
            std::process::ExitCode::from(crate::EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("{name} at {addr}: {e:#}");
            std::process::ExitCode::from(crate::EXIT_FAILED)
        }
    }
}

/// GET /readyz over HTTP/1.0 (5 s bounds): whether it answered 200, and its body.
fn ask_ready(addr: &str) -> Result<(bool, String)> {
    use std::net::ToSocketAddrs;
    let to =
        addr.to_socket_addrs().with_context(|| format!("--metrics-addr {addr:?}"))?.next().context("no address")?;
    let limit = Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&to, limit).with_context(|| format!("cannot reach {to}"))?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(s, "GET /readyz HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut answer = String::new();
    s.take(64 * 1024).read_to_string(&mut answer).context("reading its answer")?;
    let status = answer.split_whitespace().nth(1).context("not an HTTP answer")?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim().to_owned();
    Ok((status == "200", body))
}

/// Tells systemd that the daemon reloads: `RELOADING=1` with the `MONOTONIC_USEC` it needs.
pub fn notify_reloading() {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| i128::from(t.tv_sec()) * 1_000_000 + i128::from(t.tv_nsec()) / 1000);
    notify(&[sd_notify::NotifyState::Reloading, sd_notify::NotifyState::MonotonicUsec(usec)]);
}

/// Tells systemd (when it started us with `Type=notify`) what the daemon does now: no-op
/// without `$NOTIFY_SOCKET`.
pub fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// An authenticator that can be replaced while serving (authentication settings reloaded on
/// SIGHUP); calls in flight finish with the one they started with.
pub struct LiveAuth {
    current: std::sync::RwLock<Current>,
}

/// The authenticator in force, and the same as an introspector when it is one.
type Current = (Arc<dyn Authenticator>, Option<Arc<IntrospectAuth>>);

impl LiveAuth {
    /// Starts with `auth` (`introspect`: the same, when it introspects tokens, for its counters).
    pub fn new(auth: Arc<dyn Authenticator>, introspect: Option<Arc<IntrospectAuth>>) -> Arc<Self> {
        Arc::new(Self { current: std::sync::RwLock::new((auth, introspect)) })
    }

    /// New calls are checked by `auth` from now on.
    pub fn replace(&self, auth: Arc<dyn Authenticator>, introspect: Option<Arc<IntrospectAuth>>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (auth, introspect);
    }

    fn now(&self) -> Current {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Authenticator for LiveAuth {
    fn authenticate<'a>(&'a self, token: Option<&'a str>, peer: Option<std::net::IpAddr>) -> AuthFuture<'a> {
        let (auth, _) = self.now();
        Box::pin(async move { auth.authenticate(token, peer).await })
    }
}

impl std::fmt::Debug for LiveAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveAuth").finish_non_exhaustive()
    }
}

/// Token introspection's counters of whichever authenticator is current, read at each scrape.
#[derive(Debug)]
pub struct IntrospectionCounters(pub Arc<LiveAuth>);

impl Collector for IntrospectionCounters {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let introspect = self.0.now().1;
        let off = ConstGauge::new(i64::from(introspect.is_none()));
        let help = "1 while authentication is off (every caller is anonymous), else 0";
        off.encode(encoder.encode_descriptor("scistream_anonymous", help, None, off.metric_type())?)?;
        let Some(a) = introspect else { return Ok(()) };
        let all = [
            ("scistream_introspections", "Tokens introspected at the authorization server", a.introspections()),
            ("scistream_introspection_cache_hits", "Tokens answered from the introspection cache", a.cache_hits()),
            (
                "scistream_introspections_throttled",
                "Calls refused unchecked: their address was over its limit of unknown tokens",
                a.throttled(),
            ),
        ];
        for (name, help, v) in all {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// What a daemon's signals ask of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: read the configuration and certificates again.
    Reload,
    /// SIGTERM or SIGINT (its name): drain, then stop.
    Stop(&'static str),
}

/// The daemon's signal handlers (SIGHUP, SIGTERM, SIGINT), installed at once: from then on
/// none of them ends the process by itself.
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
        }
    }
}

/// How a daemon stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every session had ended before it stopped (exit status 0).
    Drained,
    /// Sessions were still running at the end of the drain, or a second signal came: they
    /// were ended (exit status [`EXIT_UNDRAINED`]).
    Cut,
}

/// Exit status of a daemon that ended sessions still running when it stopped.
pub const EXIT_UNDRAINED: u8 = 3;

/// Drains: polls `holding` (sessions still holding resources; `None` once the daemon
/// stopped) every 200 ms until none is left, `timeout` passed, or another SIGTERM/SIGINT came.
pub async fn drain<F, Fut>(signals: &mut Signals, timeout: Duration, holding: F) -> Stopped
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<usize>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match holding().await {
            None | Some(0) => return Stopped::Drained,
            Some(n) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(sessions = n, "drain timeout ({timeout:?}) reached: ending the sessions still running");
                return Stopped::Cut;
            }
            Some(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            s = signals.next() => match s {
                Signal::Stop(which) => {
                    tracing::warn!("{which} again while draining: ending every session now");
                    return Stopped::Cut;
                }
                Signal::Reload => tracing::warn!("SIGHUP while draining: nothing is reloaded"),
            },
        }
    }
}

/// How long open connections may take to finish once a shutdown began (a control server's
/// link to a node is a stream that never ends by itself).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs `serving` (a tonic server with graceful shutdown) to its end, or until
/// [`SHUTDOWN_GRACE`] after `began` fired, when the connections still open are dropped.
pub async fn bounded_shutdown<E>(
    serving: impl Future<Output = Result<(), E>>,
    began: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), E> {
    let grace = async {
        if began.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        done = serving => done,
        () = grace => {
            tracing::info!("connections still open {SHUTDOWN_GRACE:?} after the shutdown began: closed");
            Ok(())
        }
    }
}

/// Keeps `health` in step with what `probe` says every 250 ms (`Ok`: ready; `Err`: why not;
/// `None`: the daemon stopped, and so does this), and tells `changed` each time readiness
/// turns.
pub async fn follow_readiness<P, PF, C, CF>(health: Arc<Health>, mut probe: P, mut changed: C)
where
    P: FnMut() -> PF,
    PF: Future<Output = Option<Result<(), &'static str>>>,
    C: FnMut(bool) -> CF,
    CF: Future<Output = ()>,
{
    let mut was = None;
    while let Some(now) = probe().await {
        let ready = now.is_ok();
        if was != Some(ready) {
            health.set_ready(ready, now.err().unwrap_or(""));
            changed(ready).await;
            was = Some(ready);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
