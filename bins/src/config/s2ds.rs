//! `s2ds`'s flags, which its `--config` file (TOML, kebab-case keys) may also give.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

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
}

impl RunArgs {
    /// The settings of a `--config` file's text; every key is a flag's long name.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
