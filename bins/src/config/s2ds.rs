//! `s2ds`'s flags, which its `--config` file (TOML, kebab-case keys) may also give.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use scistream_transport::ports::PortLimits;
use serde::Deserialize;

use crate::LogFormat;
use crate::gateway::{Sides, parse_range};

/// Flags of the daemon; every one can also come from `--config FILE` (flags win).
#[derive(Args, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunArgs {
    /// Address the control server's link is served on, IP:PORT [default: 127.0.0.1:5010]; port
    /// 0 picks a free one (printed at start).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// This node's certificate (PEM), which the control server must trust.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// A certificate (PEM) the control server must present one of: the facility's CA, or the
    /// control server's own self-signed certificate; repeatable.
    #[arg(long = "trust")]
    #[serde(default)]
    pub trust: Vec<PathBuf>,
    /// Ports this node hands out, FIRST-LAST [default: 5100-5200].
    #[arg(long)]
    pub port_range: Option<String>,
    /// Address the WAN-facing listeners bind (a producer facility's) [default: the --listen IP].
    #[arg(long)]
    pub wan_ip: Option<IpAddr>,
    /// Address the LAN-facing listeners bind (a consumer facility's) [default: the --listen IP].
    #[arg(long)]
    pub lan_ip: Option<IpAddr>,
    /// Host the other gateway dials for WAN-facing listeners, when it is not --wan-ip (a NAT's
    /// public address, or a name).
    #[arg(long)]
    pub public_addr: Option<String>,
    /// Relay sessions whose control server allows a plain-text WAN leg (SciStream 1.2 clients
    /// bring no credentials); without this flag such a relay is refused (FAILED_PRECONDITION).
    #[arg(long)]
    #[serde(default)]
    pub allow_plain_wan: bool,
    /// What forwards sessions: native (this program's relay), haproxy, nginx or stunnel (one
    /// supervised process per session; 1.2's HaproxySubprocess, NginxSubprocess and
    /// StunnelSubprocess are accepted) [default: native].
    #[arg(long = "type")]
    #[serde(rename = "type")]
    pub backend: Option<String>,
    /// Where a proxy backend keeps each session's private folder (configuration, key, pid)
    /// [default: $RUNTIME_DIRECTORY, else scistream-s2ds-UID-PORT under the temporary folder].
    #[arg(long)]
    pub runtime_dir: Option<PathBuf>,
    /// The proxy's program for --type haproxy, nginx or stunnel, when not the one on PATH.
    #[arg(long)]
    pub proxy_program: Option<PathBuf>,
    /// Largest num_conn a StartLstn may ask for [default: 64; the control server's
    /// --max-num-conn must not exceed it].
    #[arg(long)]
    pub max_num_conn: Option<u16>,
    /// The rate this node can carry, kB/s (the unit of a session's --rate): its control server
    /// places sessions on it only while their rates fit; a session without a rate takes all of
    /// it [default: no limit].
    #[arg(long)]
    pub capacity: Option<u64>,
    /// How long a finished session is remembered (retransmissions of its last messages
    /// answered), seconds [default: 300].
    #[arg(long, value_parser = crate::parse_secs)]
    #[serde(default, deserialize_with = "crate::de_opt_secs")]
    pub tombstone: Option<Duration>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    #[serde(default)]
    pub verbose: u8,
    /// The link port's limits (in the file, the `[limits]` table).
    #[command(flatten)]
    #[serde(default)]
    pub limits: crate::limits::PortArgs,
    /// Serve Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
    /// over plain HTTP on HOST:PORT (keep it on a management network) [default: off].
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// On SIGTERM or SIGINT, how long established streams may go on (no new session is
    /// admitted) before they are ended, seconds; a second signal ends them at once
    /// [default: 30].
    #[arg(long, value_parser = crate::parse_secs)]
    #[serde(default, deserialize_with = "crate::de_opt_secs")]
    pub drain_timeout: Option<Duration>,
    /// Log lines as `text` or as `json` (one object per line) [default: text].
    #[arg(long)]
    pub log_format: Option<crate::LogFormat>,
    /// TOML file with any of these settings (kebab-case keys).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where producers' targets may be, as NET[:PORTS]; repeatable (in the file,
    /// `allow-targets = [..]`): this node's relays dial nothing else, whatever its control
    /// server asks [default: any address but this node's own ports]. Give it the control
    /// server's list.
    #[arg(long = "allow-target", value_name = "NET[:PORTS]")]
    pub allow_targets: Option<Vec<String>>,
    /// Where the peer gateways this node dials over the WAN may be, as NET[:PORTS]; repeatable
    /// (in the file, `allow-peers = [..]`) [default: any address but this node's own ports].
    #[arg(long = "allow-peer", value_name = "NET[:PORTS]")]
    pub allow_peers: Option<Vec<String>>,
}

impl RunArgs {
    /// The settings of a `--config` file's text; every key is a flag's long name.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Settings after merging flags over the file over the defaults.
#[derive(Clone)]
pub struct Settings {
    /// The link's address.
    pub listen: SocketAddr,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// Certificates its control server must present one of.
    pub trust: Vec<PathBuf>,
    /// The ports it hands out.
    pub ports: std::ops::RangeInclusive<u16>,
    /// Where its listeners bind and are advertised.
    pub sides: Sides,
    /// Whether a session without credentials may have a plain WAN leg.
    pub allow_plain_wan: bool,
    /// Largest num_conn.
    pub max_num_conn: u16,
    /// Its capacity, kB/s.
    pub capacity: Option<u64>,
    /// How long finished sessions are remembered.
    pub tombstone: Duration,
    /// What forwards sessions.
    pub backend: crate::config::BackendSettings,
    /// Log level.
    pub verbose: u8,
    /// The link port's limits.
    pub limits: PortLimits,
    /// Where metrics and health are served.
    pub metrics_addr: Option<SocketAddr>,
    /// How long a drain lets sessions go on.
    pub drain_timeout: Duration,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// What its relays may dial (its own addresses filled in once it listens).
    pub policy: scistream_fsm::policy::Policy,
}

impl RunArgs {
    /// The settings these flags give with the `--config` file they name, as the daemon starts
    /// (and reloads) with them.
    pub fn settings(&self) -> Result<Settings> {
        let file: Self = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Self::from_toml(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Self::default(),
        };
        merge(self.clone(), file)
    }
}

/// Merges flags (`cli`) over a configuration file's settings (`file`) over the defaults, with
/// every check the daemon makes before it serves (short of reading the files named).
pub fn merge(cli: RunArgs, file: RunArgs) -> Result<Settings> {
    let listen = cli.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5010)));
    let (Some(cert), Some(key)) = (cli.cert.or(file.cert), cli.key.or(file.key)) else {
        bail!("the link is mutual TLS: give --cert and --key (make them with `s2ds gen-cert --listener-ip IP`)");
    };
    let trust: Vec<PathBuf> = cli.trust.into_iter().chain(file.trust).collect();
    if trust.is_empty() {
        bail!("give --trust, the certificate the control server must present (the facility's CA, or its own)");
    }
    let ports = parse_range(&cli.port_range.or(file.port_range).unwrap_or_else(|| "5100-5200".into()))
        .map_err(|e| anyhow!(e))?;
    let public = cli.public_addr.or(file.public_addr);
    let sides = Sides::resolve(listen.ip(), cli.wan_ip.or(file.wan_ip), cli.lan_ip.or(file.lan_ip), public.as_deref())
        .map_err(|e| anyhow!(e))?;
    let max_num_conn = cli.max_num_conn.or(file.max_num_conn).unwrap_or(64);
    if max_num_conn == 0 {
        bail!("--max-num-conn 0: a session needs at least one connection");
    }
    let capacity = cli.capacity.or(file.capacity);
    if capacity == Some(0) {
        bail!("--capacity 0: a node that can carry nothing serves nobody; leave it out for no limit");
    }
    let limits = cli.limits.merge(&file.limits)?;
    let backend = crate::config::BackendSettings::merge(
        cli.backend.or(file.backend).as_deref(),
        cli.runtime_dir.or(file.runtime_dir),
        cli.proxy_program.or(file.proxy_program),
        || crate::config::default_runtime_dir("s2ds", listen.port()),
    )?;
    let targets = crate::policy::rules("allow-target", cli.allow_targets.as_ref(), file.allow_targets.as_ref())?;
    let peers = crate::policy::rules("allow-peer", cli.allow_peers.as_ref(), file.allow_peers.as_ref())?;
    let policy = scistream_fsm::policy::Policy { targets, peers, ..Default::default() };
    Ok(Settings {
        policy,
        limits,
        backend,
        listen,
        cert,
        key,
        trust,
        ports,
        sides,
        allow_plain_wan: cli.allow_plain_wan || file.allow_plain_wan,
        max_num_conn,
        capacity,
        tombstone: cli.tombstone.or(file.tombstone).unwrap_or(scistream_fsm::timing::Profile::production().tombstone),
        verbose: cli.verbose.max(file.verbose),
        metrics_addr: cli.metrics_addr.or(file.metrics_addr),
        drain_timeout: cli.drain_timeout.or(file.drain_timeout).unwrap_or(Duration::from_secs(30)),
        log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
    })
}
