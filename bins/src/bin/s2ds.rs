//! `s2ds`: a SciStream data server node on a gateway of its own. Hosts the data server's core
//! and relays; its facility's control server (`s2cs --s2ds HOST:PORT`) drives it over the
//! `scistream.DataServer` link, mutual TLS on the facility's LAN.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;
use ractor::Actor;
use scistream_actors::metrics::DsMetrics;
use scistream_actors::s2ds::NodeHealth;
use scistream_actors::s2ds::TrafficBook;
use scistream_actors::{S2dsActor, S2dsArgs, S2dsMsg};
use scistream_bins::config::s2ds::{RunArgs, Settings};
use scistream_bins::gateway;
use scistream_bins::ops::{self, Stopped};
use scistream_bins::{EXIT_USAGE, LogLevel};
use scistream_fsm::timing::Profile;
use scistream_fsm::{Role, s2ds};
use scistream_proto::Limits;
use scistream_proto::convert::SessionTraffic;
use scistream_transport::node::{Inbound, NodeService, TrafficSource, Uplink};
use scistream_transport::ports::TlsInfo;
use scistream_transport::tls;
use sd_notify::NotifyState;

/// SciStream data server node (S2DS): listeners and relays of one gateway node, driven by its
/// facility's control server over mutual TLS.
#[derive(Parser)]
#[command(name = "s2ds", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a self-signed certificate and key (server and client authentication) whose
    /// names include the link IP and this host's name.
    GenCert {
        /// The IP the control server dials.
        #[arg(long)]
        listener_ip: IpAddr,
        /// More host names to include (repeatable).
        #[arg(long)]
        hostname: Vec<String>,
        /// Folder for server.crt and server.key.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Ask a running s2ds whether it is ready (its `/readyz` on --metrics-addr): exit status 0
    /// when it is, 1 when not or unreachable. For container health checks.
    Health {
        /// Where the node serves its metrics and health (its --metrics-addr).
        #[arg(long)]
        metrics_addr: String,
    },
    #[command(flatten)]
    Manuals(scistream_bins::manuals::Manuals),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::GenCert { listener_ip, hostname, out_dir, days, force }) => {
            return gateway::gen_cert_command("s2ds", listener_ip, hostname, &out_dir, days, force);
        }
        Some(Cmd::Health { metrics_addr }) => return ops::health_command("s2ds", &metrics_addr),
        Some(Cmd::Manuals(m)) => return m.print::<Cli>(),
        None => {}
    }
    let s = match cli.run.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("s2ds: {e:#}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (verbose, format) = (s.verbose, s.log_format);
    gateway::run_draining("s2ds", verbose, format, move |log| serve(s, cli.run, log))
}

/// SIGHUP: reads the configuration file and the certificates again; applies the link's
/// certificate, key and trusted certificates, the log level and the drain timeout; names what
/// can change only at a restart. A file that does not read changes nothing.
fn reload(args: &RunArgs, old: &mut Settings, live: &tls::LiveConfig, log: Option<&LogLevel>) -> Result<()> {
    let new = args.settings()?;
    let cfg = tls::mutual_server_config(&new.cert, &new.key, &new.trust)?;
    let fixed = [
        ("--listen", old.listen != new.listen),
        ("--port-range", old.ports != new.ports),
        ("--wan-ip, --lan-ip or --public-addr", old.sides != new.sides),
        ("--allow-plain-wan", old.allow_plain_wan != new.allow_plain_wan),
        ("--type, --runtime-dir or --proxy-program", old.backend != new.backend),
        ("--max-num-conn", old.max_num_conn != new.max_num_conn),
        ("--capacity", old.capacity != new.capacity),
        ("--tombstone", old.tombstone != new.tombstone),
        ("the link port's [limits]", format!("{:?}", old.limits) != format!("{:?}", new.limits)),
        ("--metrics-addr", old.metrics_addr != new.metrics_addr),
        ("--log-format", old.log_format != new.log_format),
    ];
    for (what, changed) in fixed {
        if changed {
            tracing::warn!("{what} changed in the configuration: it cannot change while serving; restart to apply it");
        }
    }
    live.replace(cfg);
    tracing::info!("certificate, key and trusted certificates read again: new link connections use them");
    let own = old.policy.own.clone();
    let new = Settings { policy: scistream_fsm::policy::Policy { own, ..new.policy }, ..new };
    if new.policy != old.policy {
        tracing::info!(rules = new.policy.rules(), "destination policy applied to new connections");
    }
    scistream_transport::relay::set_policy(Some(new.policy.clone()));
    if let Some(log) = log
        && old.verbose != new.verbose
    {
        match log.set(new.verbose) {
            Ok(()) => tracing::info!(verbose = new.verbose, "log level applied"),
            Err(e) => tracing::warn!("cannot change the log level: {e}"),
        }
    }
    *old = new;
    Ok(())
}

async fn serve(s: Settings, cli_args: RunArgs, log: Option<LogLevel>) -> Result<Stopped> {
    let mut signals = ops::Signals::install()?;
    let health = ops::Health::starting("no control server attached yet");
    let metrics_listener = match s.metrics_addr {
        Some(addr) => Some(ops::bind(addr).await?),
        None => None,
    };
    let tls_cfg = tls::LiveConfig::new(tls::mutual_server_config(&s.cert, &s.key, &s.trust)?);
    let backend = s.backend.open()?;
    let listener =
        tokio::net::TcpListener::bind(s.listen).await.with_context(|| format!("cannot listen on {}", s.listen))?;
    let local = listener.local_addr()?;
    // Every dial of its relays is held to the policy; its own ports are never a target.
    let mut s = s;
    s.policy.own = std::iter::once(local).chain(metrics_listener.as_ref().and_then(|l| l.local_addr().ok())).collect();
    tracing::info!(rules = s.policy.rules(), "destination policy (no rules: any address but this node's own ports)");
    scistream_transport::relay::set_policy(Some(s.policy.clone()));
    let timing = Profile { tombstone: s.tombstone, ..Profile::production() }.seeded(rand::random());
    // The incarnation grows across restarts: the control server tells a restarted node from a
    // late message of the old one.
    let inc = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros())?;
    let uplink = Uplink::default();
    let up = uplink.clone();
    let book = TrafficBook::default();
    let counters = book.clone();
    let traffic: TrafficSource = Arc::new(move || {
        let book = counters.lock().unwrap_or_else(|e| e.into_inner());
        book.iter().map(|(uid, c)| (*uid, SessionTraffic::from(&c.snapshot()))).collect()
    });
    let args = S2dsArgs {
        cfg: s2ds::Config {
            facility: Role::Prod,
            ports: s.ports.clone(),
            advertise: s.sides.advertise.clone(),
            timing,
            capacity: s.capacity,
        },
        inc,
        bind: s.sides.bind.clone(),
        upstream: Arc::new(move |msg| {
            // Nobody linked yet (or the link is down): the core retransmits what matters.
            up.send(msg);
            true
        }),
        traffic: book,
        allow_plain_wan: s.allow_plain_wan,
        backend,
    };
    let (actor, handle) =
        Actor::spawn(None, S2dsActor, args).await.map_err(|e| anyhow!("starting the data server: {e}"))?;
    let to_core = actor.clone();
    let inbound: Inbound = Arc::new(move |msg| to_core.send_message(S2dsMsg::FromCs(msg)).is_ok());
    let service = NodeService::new(inbound, uplink, traffic, Limits { max_num_conn: s.max_num_conn }).into_server();
    if s.allow_plain_wan {
        tracing::warn!("--allow-plain-wan: sessions without credentials get a plain-text WAN leg");
    }
    tracing::info!(
        %local,
        ports = ?s.ports,
        capacity = ?s.capacity,
        backend = %s.backend.kind,
        wan = %s.sides.advertise.wan,
        lan = %s.sides.advertise.lan,
        "s2ds serving its control server's link (mutual TLS 1.3)"
    );
    if let Some(l) = metrics_listener {
        let mut registry = Registry::default();
        let m = DsMetrics::default();
        m.register(&mut registry);
        registry.register_collector(Box::new(ops::RelayTotals));
        registry.register_collector(Box::new(ops::PortTotals));
        let a = actor.clone();
        let refresh: ops::Refresh = Arc::new(move || {
            let (a, m) = (a.clone(), m.clone());
            Box::pin(async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                if a.send_message(S2dsMsg::Refresh(m, tx)).is_ok() {
                    let _ = rx.await;
                }
            })
        });
        tracing::info!(addr = %l.local_addr()?, "metrics and health served over HTTP: /metrics, /healthz, /readyz");
        ops::serve(l, registry, health.clone(), refresh);
    }
    // Ready while a control server is attached.
    let n = actor.clone();
    tokio::spawn(ops::follow_readiness(
        health.clone(),
        move || {
            let n = n.clone();
            async move { node_health(&n).await.map(|h| if h.attached { Ok(()) } else { Err("no control server attached") }) }
        },
        |_| async {},
    ));
    println!("s2ds ready on {local}");
    ops::notify(&[NotifyState::Ready]);
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<Stopped>();
    let live_tls = tls_cfg.clone();
    let node = actor.clone();
    let mut current = s.clone();
    tokio::spawn(async move {
        let which = loop {
            match signals.next().await {
                ops::Signal::Reload => {
                    ops::notify_reloading();
                    match reload(&cli_args, &mut current, &live_tls, log.as_ref()) {
                        Ok(()) => tracing::info!("reloaded"),
                        Err(e) => tracing::error!("reload refused, the settings in force are kept: {e:#}"),
                    }
                    ops::notify(&[NotifyState::Ready]);
                }
                ops::Signal::Stop(which) => break which,
            }
        };
        let timeout = current.drain_timeout;
        ops::notify(&[NotifyState::Stopping]);
        health.set_draining();
        let _ = node.send_message(S2dsMsg::Drain);
        tracing::info!(
            "{which}: draining for at most {timeout:?}: no port offered to new sessions; the sessions here go on until released (a second signal ends them now)"
        );
        let stopped = ops::drain(&mut signals, timeout, || async { node_health(&node).await.map(|h| h.holding) }).await;
        let _ = stopped_tx.send(stopped);
    });
    let relays = actor.clone();
    let outcome = Arc::new(std::sync::Mutex::new(Stopped::Cut));
    let told = outcome.clone();
    let (began_tx, began) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let stopped = stopped_rx.await.unwrap_or(Stopped::Cut);
        *told.lock().unwrap_or_else(|e| e.into_inner()) = stopped;
        tracing::info!(?stopped, "shutting down");
        // Close every listener and relay before the link drains.
        relays.stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10))).await.ok();
        let _ = began_tx.send(());
    };
    tracing::info!(limits = ?s.limits, "link port limits");
    let incoming = tls::serve_live_tls_incoming(listener, tls_cfg, &s.limits, true).await;
    let serving = s.limits.server::<TlsInfo>().add_service(service).serve_with_incoming_shutdown(incoming, signal);
    ops::bounded_shutdown(serving, began).await?;
    actor.stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10))).await.ok();
    let _ = handle.await;
    tracing::info!("stopped; every listener closed");
    let stopped = *outcome.lock().unwrap_or_else(|e| e.into_inner());
    Ok(stopped)
}

async fn node_health(node: &ractor::ActorRef<S2dsMsg>) -> Option<NodeHealth> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.send_message(S2dsMsg::Health(tx)).ok()?;
    rx.await.ok()
}
