//! `s2cs`: the SciStream control server of one facility's gateway, with its embedded data
//! server or linked to a data server node (`--s2ds`, an `s2ds` daemon on another gateway
//! node). Serves the SciStream 1.2 `scistream.Control` gRPC service over TLS 1.3.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;
use ractor::Actor;
use scistream_actors::audit::AuditSink;
use scistream_actors::metrics::CsMetrics;
use scistream_actors::{ActorBackend, DataServerSite, S2csActor, S2csArgs};
use scistream_bins::config::s2cs::RunArgs;
use scistream_bins::config::{BackendSettings, default_runtime_dir};
use scistream_bins::gateway::{self, Sides, parse_range};
use scistream_bins::ops::{self, Stopped};
use scistream_bins::{EXIT_USAGE, LogFormat, LogLevel, policy};
use scistream_fsm::policy::Policy;
use scistream_fsm::timing::Profile;
use scistream_fsm::{Principal, Role, s2cs, s2ds};
use scistream_identity::introspect::{DEFAULT_MAX_INFLIGHT, IntrospectAuth, IntrospectConfig, PeerLimit};
use scistream_identity::{self as oauth};
use scistream_proto::Limits;
use scistream_proto::pb::control_server::ControlServer;
use scistream_transport::backend::Kind;
use scistream_transport::node::LinkTls;
use scistream_transport::ports::{self, PortLimits, TlsInfo};
use scistream_transport::server::{Authenticator, ControlService, OpenAuth};
use scistream_transport::store::SessionStore;
use scistream_transport::tls;
use sd_notify::NotifyState;
use tonic::transport::server::TcpConnectInfo;

/// SciStream control server (S2CS), with its embedded data server (S2DS) or linked to an
/// `s2ds` node.
#[derive(Parser)]
#[command(name = "s2cs", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a self-signed certificate and key (server and client authentication) whose
    /// names include the listener IP and this host's name.
    #[command(alias = "gen_cert")]
    GenCert {
        /// The IP clients use to reach this server.
        #[arg(long, alias = "listener_ip")]
        listener_ip: IpAddr,
        /// More host names to include (repeatable).
        #[arg(long)]
        hostname: Vec<String>,
        /// Folder for server.crt and server.key.
        #[arg(long, alias = "out_dir", default_value = ".")]
        out_dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Ask a running s2cs whether it is ready (its `/readyz` on --metrics-addr): exit status 0
    /// when it is, 1 when not or unreachable. For container health checks.
    Health {
        /// Where the server serves its metrics and health (its --metrics-addr).
        #[arg(long)]
        metrics_addr: String,
    },
    #[command(flatten)]
    Manuals(scistream_bins::manuals::Manuals),
}

/// Settings after merging flags over the file over the defaults.
#[derive(Clone)]
struct Settings {
    state_dir: Option<PathBuf>,
    ip: IpAddr,
    port: u16,
    ds: DataServer,
    tls: Option<(PathBuf, PathBuf)>,
    verbose: u8,
    hello_timeout: Duration,
    tombstone: Duration,
    max_num_conn: u16,
    allow_plain_wan: bool,
    capacity: Option<u64>,
    auth: Option<IntrospectConfig>,
    operators: Vec<Principal>,
    allow_keyless_sessions: bool,
    limits: PortLimits,
    metrics_addr: Option<SocketAddr>,
    drain_timeout: Duration,
    log_format: LogFormat,
    /// Given to REQs without a rate (0: none).
    default_rate: u32,
    /// The destination policy and quotas (its own addresses filled in once it listens).
    policy: Policy,
    /// Authentication off on an address that is not loopback, by the operator's word.
    allow_anonymous: bool,
    /// Where the audit trail goes: `log`, or a file.
    audit: String,
}

/// How long a drain lets sessions go on by default.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the data server runs.
#[derive(Clone)]
enum DataServer {
    /// In this process: its ports, addresses and backend.
    Embedded { ports: std::ops::RangeInclusive<u16>, sides: Sides, backend: BackendSettings },
    /// On nodes: their link addresses, this server's certificate and what it trusts them by.
    Remote { addrs: Vec<String>, tls: LinkTls },
}

fn data_server(
    cli: &RunArgs,
    file: &RunArgs,
    (ip, port): (IpAddr, u16),
    state_dir: Option<&std::path::Path>,
    identity: Option<(PathBuf, PathBuf)>,
) -> Result<DataServer> {
    // The command line's nodes replace the file's.
    let addrs = if cli.s2ds.is_empty() { file.s2ds.clone() } else { cli.s2ds.clone() };
    let trust: Vec<PathBuf> = cli.s2ds_trust.iter().chain(&file.s2ds_trust).cloned().collect();
    if addrs.is_empty() {
        if !trust.is_empty() {
            bail!("--s2ds-trust without --s2ds: there is no data server node to trust");
        }
        let ports = parse_range(
            &cli.port_range.clone().or_else(|| file.port_range.clone()).unwrap_or_else(|| "5100-5200".into()),
        )
        .map_err(|e| anyhow!(e))?;
        let public = cli.public_addr.as_deref().or(file.public_addr.as_deref());
        let sides = Sides::resolve(ip, cli.wan_ip.or(file.wan_ip), cli.lan_ip.or(file.lan_ip), public)
            .map_err(|e| anyhow!(e))?;
        let backend = BackendSettings::merge(
            cli.backend.as_deref().or(file.backend.as_deref()),
            cli.runtime_dir.clone().or_else(|| file.runtime_dir.clone()),
            cli.proxy_program.clone().or_else(|| file.proxy_program.clone()),
            || match state_dir {
                Some(dir) => dir.join("run"),
                None => default_runtime_dir("s2cs", port),
            },
        )?;
        return Ok(DataServer::Embedded { ports, sides, backend });
    }
    let proxy =
        cli.backend.as_deref().or(file.backend.as_deref()).is_some_and(|t| !matches!(t.parse(), Ok(Kind::Native)));
    let node_only = [
        ("--type", proxy),
        ("--runtime-dir", cli.runtime_dir.is_some() || file.runtime_dir.is_some()),
        ("--proxy-program", cli.proxy_program.is_some() || file.proxy_program.is_some()),
        ("--port-range", cli.port_range.is_some() || file.port_range.is_some()),
        ("--wan-ip", cli.wan_ip.is_some() || file.wan_ip.is_some()),
        ("--lan-ip", cli.lan_ip.is_some() || file.lan_ip.is_some()),
        ("--public-addr", cli.public_addr.is_some() || file.public_addr.is_some()),
    ];
    if let Some((flag, _)) = node_only.iter().find(|(_, given)| *given) {
        bail!("{flag} belongs to the data server node when --s2ds is given: set it on `s2ds`");
    }
    if trust.is_empty() {
        bail!(
            "--s2ds {}: give --s2ds-trust, the certificate the nodes must present (the facility's CA, or a node's own)",
            addrs.join(", ")
        );
    }
    for (i, addr) in addrs.iter().enumerate() {
        addr.parse::<scistream_fsm::Addr>().map_err(|e| anyhow!("--s2ds {addr:?}: {e}"))?;
        if addrs[..i].contains(addr) {
            bail!("--s2ds {addr} is given twice: each node once");
        }
    }
    if addrs.len() > usize::from(u16::MAX) {
        bail!("--s2ds: at most {} nodes", u16::MAX);
    }
    let Some((cert, key)) = identity else {
        bail!(
            "--s2ds: the link to a data server node is mutual TLS: give --server-crt and --server-key (make them with `s2cs gen-cert`), also with --insecure"
        );
    };
    Ok(DataServer::Remote { addrs, tls: LinkTls { cert, key, trust } })
}

fn settings(cli: &RunArgs) -> Result<Settings> {
    let cli = cli.clone();
    let file: RunArgs = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            RunArgs::from_toml(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => RunArgs::default(),
    };
    let auth = auth_settings(&cli, &file)?;
    let insecure = cli.insecure || file.insecure;
    let crt = cli.server_crt.clone().or_else(|| file.server_crt.clone());
    let key = cli.server_key.clone().or_else(|| file.server_key.clone());
    let ip = cli.listener_ip.or(file.listener_ip).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let crt_key = crt.clone().zip(key.clone());
    let tls = match (insecure, crt, key) {
        (true, _, _) => None,
        (false, Some(c), Some(k)) => Some((c, k)),
        _ => bail!(
            "TLS needs --server-crt and --server-key (make them with `s2cs gen-cert --listener-ip IP`), or --insecure for tests"
        ),
    };
    let state_dir = cli
        .state_dir
        .clone()
        .or_else(|| file.state_dir.clone())
        .or_else(|| std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()).map(PathBuf::from));
    let port = cli.port.or(file.port).unwrap_or(5000);
    let ds = data_server(&cli, &file, (ip, port), state_dir.as_deref(), crt_key)?;
    let limits = cli.limits.merge(&file.limits)?;
    let targets = policy::rules("allow-target", cli.allow_targets.as_ref(), file.allow_targets.as_ref())?;
    let peers = policy::rules("allow-peer", cli.allow_peers.as_ref(), file.allow_peers.as_ref())?;
    // The control server's own addresses join once it listens.
    let quotas = policy::quotas(&file.quota, file.default_quota.as_ref())?;
    let policy = Policy { targets, peers, quotas, ..Policy::default() };
    let allow_anonymous = cli.allow_anonymous || file.allow_anonymous;
    if auth.is_none() && !ip.is_loopback() && !allow_anonymous {
        bail!(
            "authentication is off (no client secret) and --listener-ip {ip} is not loopback: anyone who reaches it could use this gateway; give --client-id and --client-secret, or say --allow-anonymous"
        );
    }
    Ok(Settings {
        audit: cli.audit.clone().or_else(|| file.audit.clone()).unwrap_or_else(|| "log".into()),
        policy,
        allow_anonymous,
        limits,
        state_dir,
        ip,
        port,
        ds,
        tls,
        verbose: cli.verbose.max(file.verbose),
        hello_timeout: cli.hello_timeout.or(file.hello_timeout).unwrap_or(Profile::production().hello_timeout),
        tombstone: cli.tombstone.or(file.tombstone).unwrap_or(Profile::production().tombstone),
        max_num_conn: cli.max_num_conn.or(file.max_num_conn).unwrap_or(64),
        allow_plain_wan: cli.allow_plain_wan || file.allow_plain_wan,
        capacity: cli.capacity.or(file.capacity),
        auth,
        operators: cli.operators.into_iter().chain(file.operators).map(Principal).collect(),
        allow_keyless_sessions: cli.allow_keyless_sessions || file.allow_keyless_sessions,
        metrics_addr: cli.metrics_addr.or(file.metrics_addr),
        drain_timeout: cli.drain_timeout.or(file.drain_timeout).unwrap_or(DRAIN_TIMEOUT),
        log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
        default_rate: cli.default_rate.or(file.default_rate).unwrap_or(0),
    })
}

/// How callers' tokens are checked: `None` when authentication is off (no client secret).
fn auth_settings(cli: &RunArgs, file: &RunArgs) -> Result<Option<IntrospectConfig>> {
    let secret = match (&cli.client_secret, cli.client_secret_file.as_ref().or(file.client_secret_file.as_ref())) {
        (Some(s), _) => Some(s.trim().to_owned()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_owned())
        }
        (None, None) => None,
    };
    if secret.as_ref().is_some_and(String::is_empty) {
        bail!("the client secret is empty");
    }
    let client_id = cli.client_id.clone().or_else(|| file.client_id.clone());
    let (client_id, client_secret) = match (client_id, secret) {
        (Some(id), Some(secret)) => (id, secret),
        (None, Some(_)) => bail!("--client-secret needs --client-id (the facility's OAuth2 client)"),
        (_, None) if cli.require_auth || file.require_auth => bail!(
            "--require-auth: no client secret to check tokens with (--client-secret, --client-secret-file or SCISTREAM_CLIENT_SECRET)"
        ),
        (_, None) => return Ok(None),
    };
    let base = cli.auth_url.clone().or_else(|| file.auth_url.clone()).unwrap_or_else(|| oauth::GLOBUS_AUTH.into());
    let url = match cli.introspect_url.as_ref().or(file.introspect_url.as_ref()) {
        Some(u) => oauth::checked_url(u).context("--introspect-url")?,
        None => oauth::Endpoints::under(&base).context("--auth-url")?.introspect,
    };
    let scope = cli.scope.clone().or_else(|| file.scope.clone()).unwrap_or_else(|| client_id.clone());
    let default = PeerLimit::DEFAULT;
    let peer_limit = PeerLimit {
        rate: cli.auth_peer_rate.or(file.auth_peer_rate).unwrap_or(default.rate),
        burst: cli.auth_peer_burst.or(file.auth_peer_burst).unwrap_or(default.burst),
        peers: cli.auth_peers.or(file.auth_peers).unwrap_or(default.peers),
    };
    if !peer_limit.rate.is_finite() || peer_limit.rate < 0.0 {
        bail!("--auth-peer-rate must be a number of tokens per second, 0 or more");
    }
    if peer_limit.rate > 0.0 && (peer_limit.burst == 0 || peer_limit.peers == 0) {
        bail!("--auth-peer-burst and --auth-peers must be at least 1 (--auth-peer-rate 0 turns the limit off)");
    }
    Ok(Some(IntrospectConfig {
        url,
        client_id,
        client_secret,
        scope: oauth::full_scope(&scope),
        cache_ttl: Duration::from_secs(cli.auth_cache_ttl.or(file.auth_cache_ttl).unwrap_or(60)),
        cache_size: cli.auth_cache_size.or(file.auth_cache_size).unwrap_or(10_000),
        timeout: Duration::from_secs(10),
        max_inflight: cli.auth_max_inflight.or(file.auth_max_inflight).unwrap_or(DEFAULT_MAX_INFLIGHT),
        peer_limit,
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::GenCert { listener_ip, hostname, out_dir, days, force }) => {
            return gateway::gen_cert_command("s2cs", listener_ip, hostname, &out_dir, days, force);
        }
        Some(Cmd::Health { metrics_addr }) => return ops::health_command("s2cs", &metrics_addr),
        Some(Cmd::Manuals(m)) => return m.print::<Cli>(),
        None => {}
    }
    let s = match settings(&cli.run) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("s2cs: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (verbose, format) = (s.verbose, s.log_format);
    gateway::run_draining("s2cs", verbose, format, move |log| serve(s, cli.run, log))
}

/// What SIGHUP may change while serving, and where it goes.
struct Live {
    /// The command line, to read the configuration file again.
    args: RunArgs,
    /// The settings in force.
    settings: Settings,
    tls: Option<tls::LiveConfig>,
    auth: Arc<ops::LiveAuth>,
    backend: ActorBackend,
    log: Option<LogLevel>,
    /// The control server's own addresses: never a target.
    own: Vec<SocketAddr>,
    /// What `/healthz` says of authentication.
    health: Arc<ops::Health>,
    /// Whether the gRPC handler resolves names (while an allow-list applies).
    resolve: Arc<std::sync::atomic::AtomicBool>,
}

impl Live {
    /// Reads the configuration file and the certificates again and applies what can change
    /// while serving; a file that does not read keeps every setting as it was.
    fn reload(&mut self) {
        ops::notify_reloading();
        match self.try_reload() {
            Ok(()) => tracing::info!("reloaded"),
            Err(e) => tracing::error!("reload refused, the settings in force are kept: {e:#}"),
        }
        ops::notify(&[NotifyState::Ready]);
    }

    fn try_reload(&mut self) -> Result<()> {
        let new = settings(&self.args)?;
        let old = &self.settings;
        // Build everything first: nothing changes unless all of it reads.
        let tls_cfg = match (&new.tls, &self.tls) {
            (Some((crt, key)), Some(_)) => Some(tls::server_config(crt, key)?),
            _ => None,
        };
        let auth = match new.auth.clone() {
            Some(cfg) => {
                let a = Arc::new(IntrospectAuth::new(cfg)?);
                (a.clone() as Arc<dyn Authenticator>, Some(a))
            }
            None => (Arc::new(OpenAuth) as Arc<dyn Authenticator>, None),
        };
        let fixed = [
            ("--listener-ip", old.ip != new.ip),
            ("--port", old.port != new.port),
            ("the data server (--s2ds, --port-range, --wan-ip, --lan-ip, --public-addr)", !same_ds(&old.ds, &new.ds)),
            ("--insecure / TLS on or off", old.tls.is_some() != new.tls.is_some()),
            ("--state-dir", old.state_dir != new.state_dir),
            ("--hello-timeout", old.hello_timeout != new.hello_timeout),
            ("--tombstone", old.tombstone != new.tombstone),
            ("--max-num-conn", old.max_num_conn != new.max_num_conn),
            ("--allow-plain-wan", old.allow_plain_wan != new.allow_plain_wan),
            ("--allow-keyless-sessions", old.allow_keyless_sessions != new.allow_keyless_sessions),
            ("the control port's [limits]", format!("{:?}", old.limits) != format!("{:?}", new.limits)),
            ("--metrics-addr", old.metrics_addr != new.metrics_addr),
            ("--log-format", old.log_format != new.log_format),
            ("--audit", old.audit != new.audit),
        ];
        for (what, changed) in fixed {
            if changed {
                tracing::warn!(
                    "{what} changed in the configuration: it cannot change while serving; restart to apply it"
                );
            }
        }
        if let (Some(cfg), Some(live)) = (tls_cfg, &self.tls) {
            live.replace(cfg);
            tracing::info!("certificate and key read again: new connections use them");
        }
        match &auth.1 {
            Some(_) => tracing::info!("authentication settings applied (with a fresh introspection cache)"),
            None if old.auth.is_some() => tracing::warn!("authentication is now OFF: every caller is trusted"),
            None => {}
        }
        self.auth.replace(auth.0, auth.1);
        self.health.set_anonymous(new.auth.is_none());
        if old.capacity != new.capacity || old.default_rate != new.default_rate || old.operators != new.operators {
            tracing::info!(
                capacity = ?new.capacity,
                default_rate = new.default_rate,
                operators = new.operators.len(),
                "capacity, default rate and operators applied to new sessions"
            );
        }
        let policy = new.policy_with(&self.own);
        if new.policy != old.policy {
            tracing::info!(
                rules = policy.rules(),
                quotas = policy.quotas.rules.len(),
                "policy applied to new calls; established sessions are kept"
            );
        }
        scistream_transport::relay::set_policy(Some(policy.clone()));
        self.resolve.store(policy.rules_apply(), std::sync::atomic::Ordering::Relaxed);
        self.backend.reconfigure(new.capacity, new.default_rate, new.operators.clone(), policy);
        if let Some(log) = &self.log
            && old.verbose != new.verbose
        {
            match log.set(new.verbose) {
                Ok(()) => tracing::info!(verbose = new.verbose, "log level applied"),
                Err(e) => tracing::warn!("cannot change the log level: {e}"),
            }
        }
        if old.drain_timeout != new.drain_timeout {
            tracing::info!(drain_timeout = ?new.drain_timeout, "drain timeout applied");
        }
        self.settings = new;
        Ok(())
    }
}

impl Settings {
    /// Its policy with the control server's own addresses.
    fn policy_with(&self, own: &[SocketAddr]) -> Policy {
        Policy { own: own.to_vec(), ..self.policy.clone() }
    }
}

/// Whether two data-server settings are the same.
fn same_ds(a: &DataServer, b: &DataServer) -> bool {
    match (a, b) {
        (
            DataServer::Embedded { ports: p, sides: s, backend: b },
            DataServer::Embedded { ports: q, sides: t, backend: c },
        ) => p == q && s == t && b == c,
        (DataServer::Remote { addrs: a, tls: s }, DataServer::Remote { addrs: b, tls: t }) => a == b && s == t,
        _ => false,
    }
}

async fn serve(s: Settings, cli_args: RunArgs, log: Option<LogLevel>) -> Result<Stopped> {
    // At once: from here on SIGHUP, SIGTERM and SIGINT are the daemon's to handle.
    let mut signals = ops::Signals::install()?;
    let health = ops::Health::starting("attaching to the data server");
    health.set_anonymous(s.auth.is_none());
    let metrics_listener = match s.metrics_addr {
        Some(addr) => Some(ops::bind(addr).await?),
        None => None,
    };
    let tls_cfg = match &s.tls {
        Some((crt, key)) => Some(tls::LiveConfig::new(tls::server_config(crt, key)?)),
        None => {
            tracing::warn!("--insecure: the control channel is plain gRPC without TLS; use only for tests");
            None
        }
    };
    let (auth, introspect): (Arc<dyn Authenticator>, Option<Arc<IntrospectAuth>>) = match s.auth.clone() {
        Some(cfg) => {
            tracing::info!(
                introspection = %cfg.url,
                scope = %cfg.scope,
                cache_ttl = ?cfg.cache_ttl,
                max_inflight = cfg.max_inflight,
                peer_rate = cfg.peer_limit.rate,
                peer_burst = cfg.peer_limit.burst,
                "authentication on"
            );
            let a = Arc::new(IntrospectAuth::new(cfg)?);
            (a.clone(), Some(a))
        }
        None if s.allow_anonymous && !s.ip.is_loopback() => {
            tracing::warn!(
                ip = %s.ip,
                "--allow-anonymous: authentication is OFF on an address that is not loopback; every caller is trusted, as `anonymous`"
            );
            (Arc::new(OpenAuth), None)
        }
        None => {
            tracing::warn!(
                "no --client-secret: authentication is OFF and every caller is trusted (as SciStream 1.2 without credentials)"
            );
            (Arc::new(OpenAuth), None)
        }
    };
    let auth = ops::LiveAuth::new(auth, introspect);
    let mut registry = Registry::default();
    let cs_metrics = CsMetrics::default();
    cs_metrics.register(&mut registry);
    let rpc_metrics = ops::RpcMetrics::default();
    rpc_metrics.register(&mut registry);
    registry.register_collector(Box::new(ops::RelayTotals));
    registry.register_collector(Box::new(ops::PortTotals));
    registry.register_collector(Box::new(ops::IntrospectionCounters(auth.clone())));
    let ds = match &s.ds {
        DataServer::Embedded { ports, sides, backend } => DataServerSite::Embedded {
            backend: backend.open()?,
            cfg: Box::new(s2ds::Config {
                facility: Role::Prod,
                ports: ports.clone(),
                advertise: sides.advertise.clone(),
                timing: Profile::production(),
                // The facility's capacity (--capacity) is the control server's to keep.
                capacity: None,
            }),
            bind: sides.bind.clone(),
        },
        DataServer::Remote { addrs, tls } => DataServerSite::Remote { addrs: addrs.clone(), tls: tls.clone() },
    };
    let (store, recovered) = match &s.state_dir {
        Some(dir) => {
            let limits = Limits { max_num_conn: s.max_num_conn };
            let (store, held) = SessionStore::open(dir, &limits, &ds.node_names())?;
            tracing::info!(store = %store.path().display(), recovered = held.len(), "session store open");
            (Some(Arc::new(store)), held)
        }
        None => {
            tracing::warn!("no --state-dir: a restart forgets every session (and ends their streams)");
            (None, Vec::new())
        }
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(s.ip, s.port))
        .await
        .with_context(|| format!("cannot listen on {}", SocketAddr::new(s.ip, s.port)))?;
    let local = listener.local_addr()?;
    // Its own ports are never a target: the control port and the metrics port.
    let own: Vec<SocketAddr> =
        std::iter::once(local).chain(metrics_listener.as_ref().and_then(|l| l.local_addr().ok())).collect();
    let policy = s.policy_with(&own);
    let audit_sink = Arc::new(match s.audit.as_str() {
        "log" => AuditSink::Log,
        path => AuditSink::file(std::path::Path::new(path)).with_context(|| format!("--audit {path}"))?,
    });
    tracing::info!(audit = %s.audit, "audit trail: one JSON line per decision");
    let count = |r: &Option<Vec<_>>| r.as_ref().map_or_else(|| "any".to_owned(), |r| format!("{} rules", r.len()));
    tracing::info!(
        allow_targets = %count(&policy.targets),
        allow_peers = %count(&policy.peers),
        quotas = policy.quotas.rules.len(),
        "destination policy (any: every address but the control server's own ports)"
    );
    // Names are resolved before the core checks them only where a list applies: without one
    // the core admits names as they are, and the relay checks what they resolve to.
    let resolve = Arc::new(std::sync::atomic::AtomicBool::new(policy.rules_apply()));
    // The embedded data server's relays check every dial again.
    scistream_transport::relay::set_policy(Some(policy.clone()));
    // Every timer of both cores comes from the one profile: only the Hello timeout and the
    // tombstones are flags.
    let timing = Profile { hello_timeout: s.hello_timeout, tombstone: s.tombstone, ..Profile::production() }
        .seeded(rand::random());
    let epoch = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros())?;
    let ds = match ds {
        DataServerSite::Embedded { mut cfg, bind, backend } => {
            cfg.timing = timing;
            DataServerSite::Embedded { cfg, bind, backend }
        }
        remote => remote,
    };
    let args = S2csArgs {
        cs: s2cs::Config {
            facility: Role::Prod,
            // The actor sets it from the data servers it is given.
            nodes: 1,
            max_num_conn: s.max_num_conn,
            timing,
            require_app_keys: !s.allow_keyless_sessions,
            allow_plain_wan: s.allow_plain_wan,
            capacity: s.capacity,
            default_rate: s.default_rate,
            operators: s.operators.clone(),
            policy,
        },
        epoch,
        ds,
        store: store.clone(),
        recovered,
        metrics: Some(cs_metrics),
        audit: Some(audit_sink),
    };
    let (actor, handle) =
        Actor::spawn(None, S2csActor, args).await.map_err(|e| anyhow!("starting the control server: {e}"))?;
    let backend = ActorBackend(actor.clone());
    let attached = tokio::time::timeout(Duration::from_secs(10), backend.ready()).await == Ok(true);
    match &s.ds {
        DataServer::Embedded { .. } if !attached => bail!("the embedded data server did not attach within 10 s"),
        DataServer::Remote { addrs, .. } if !attached => tracing::warn!(
            nodes = %addrs.join(", "),
            "no data server node has attached within 10 s; serving anyway: requests get UNAVAILABLE until one does"
        ),
        DataServer::Remote { addrs, .. } => {
            tracing::info!(nodes = %addrs.join(", "), "a data server node attached; each links and attaches on its own");
        }
        DataServer::Embedded { .. } => {}
    }
    let service = ControlService::new(Arc::new(backend.clone()), auth.clone(), Limits { max_num_conn: s.max_num_conn })
        .with_observer(rpc_metrics.observer())
        .with_resolution(resolve.clone())
        .into_server();
    // The standard gRPC health service, beside the control service (no token needed).
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_not_serving::<ControlServer<ControlService>>().await;
    if let Some(l) = metrics_listener {
        let b = backend.clone();
        let refresh: ops::Refresh = Arc::new(move || {
            let b = b.clone();
            Box::pin(async move {
                b.refresh().await;
            })
        });
        tracing::info!(addr = %l.local_addr()?, "metrics and health served over HTTP: /metrics, /healthz, /readyz");
        ops::serve(l, registry, health.clone(), refresh);
    }
    // Ready (`/readyz`, the gRPC health service) while a data server is attached and it does
    // not drain.
    let (b, r) = (backend.clone(), reporter.clone());
    tokio::spawn(ops::follow_readiness(
        health.clone(),
        move || {
            let b = b.clone();
            async move {
                let h = b.health().await?;
                Some(match (h.attached, h.draining) {
                    (_, true) => Err("draining"),
                    (false, _) => Err("no data server attached"),
                    (true, false) => Ok(()),
                })
            }
        },
        move |ready| {
            let r = r.clone();
            async move {
                if ready {
                    r.set_serving::<ControlServer<ControlService>>().await;
                } else {
                    r.set_not_serving::<ControlServer<ControlService>>().await;
                }
            }
        },
    ));
    let mode = if tls_cfg.is_some() { "TLS 1.3" } else { "INSECURE plain gRPC" };
    if s.allow_keyless_sessions {
        tracing::warn!(
            "--allow-keyless-sessions: requests without an app key are served; anyone who learns such a session's uid can say its Hello"
        );
    }
    match &s.ds {
        DataServer::Embedded { ports, sides, backend } => {
            tracing::info!(%local, ?ports, wan = %sides.advertise.wan, lan = %sides.advertise.lan, backend = %backend.kind, hello_timeout = ?s.hello_timeout, "s2cs serving ({mode})");
        }
        DataServer::Remote { addrs, .. } => {
            tracing::info!(%local, nodes = %addrs.join(", "), hello_timeout = ?s.hello_timeout, "s2cs serving ({mode})");
        }
    }
    println!("s2cs ready on {local}");
    ops::notify(&[NotifyState::Ready]);
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<Stopped>();
    let mut live = Live {
        args: cli_args,
        settings: s.clone(),
        tls: tls_cfg.clone(),
        auth,
        backend: backend.clone(),
        log,
        own,
        health: health.clone(),
        resolve,
    };
    let drainer = backend.clone();
    tokio::spawn(async move {
        let which = loop {
            match signals.next().await {
                ops::Signal::Reload => live.reload(),
                ops::Signal::Stop(which) => break which,
            }
        };
        let timeout = live.settings.drain_timeout;
        ops::notify(&[NotifyState::Stopping]);
        health.set_draining();
        reporter.set_not_serving::<ControlServer<ControlService>>().await;
        drainer.drain();
        tracing::info!("{which}: draining for at most {timeout:?} (a second signal ends the sessions now)");
        let stopped = ops::drain(&mut signals, timeout, || async { drainer.health().await.map(|h| h.holding) }).await;
        let _ = stopped_tx.send(stopped);
    });
    let sessions = actor.clone();
    let (began_tx, began) = tokio::sync::oneshot::channel::<()>();
    let outcome = Arc::new(std::sync::Mutex::new(Stopped::Cut));
    let told = outcome.clone();
    let signal = async move {
        let stopped = stopped_rx.await.unwrap_or(Stopped::Cut);
        *told.lock().unwrap_or_else(|e| e.into_inner()) = stopped;
        tracing::info!(?stopped, "shutting down");
        // Stop the sessions before tonic drains its calls: a producer's REQ waits for its
        // Hello, and would hold the graceful shutdown up until its lease ends. Stopping the
        // actor answers every waiting call UNAVAILABLE.
        sessions.stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10))).await.ok();
        let _ = began_tx.send(());
    };
    let limits = &s.limits;
    tracing::info!(?limits, "control port limits");
    match tls_cfg {
        Some(cfg) => {
            let incoming = tls::serve_live_tls_incoming(listener, cfg, limits, false).await;
            let serving = limits
                .server::<TlsInfo>()
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, signal);
            ops::bounded_shutdown(serving, began).await?;
        }
        None => {
            let incoming = ports::serve_tcp_incoming(listener, limits);
            let serving = limits
                .server::<TcpConnectInfo>()
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, signal);
            ops::bounded_shutdown(serving, began).await?;
        }
    }
    // Every session's listeners close with the actor tree.
    actor.stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10))).await.ok();
    let _ = handle.await;
    if let Some(store) = &store {
        store.flush();
    }
    tracing::info!("stopped; every listener closed");
    let stopped = *outcome.lock().unwrap_or_else(|e| e.into_inner());
    Ok(stopped)
}
