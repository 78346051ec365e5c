//! `s2cs`'s flags, which its `--config` file (TOML, kebab-case keys) may also give.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Flags of the daemon; every one can also come from `--config FILE` (flags win).
#[derive(Args, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunArgs {
    /// Address to serve on and to bind the data server's listeners on [default: 127.0.0.1].
    #[arg(long, alias = "listener_ip")]
    pub listener_ip: Option<IpAddr>,
    /// Control port [default: 5000]; 0 picks a free one (printed at start).
    #[arg(long)]
    pub port: Option<u16>,
    /// Ports the data server hands out, FIRST-LAST [default: 5100-5200].
    #[arg(long, alias = "port_range")]
    pub port_range: Option<String>,
    /// Address the WAN-facing listeners bind (a producer facility's, which the other gateway
    /// dials) [default: --listener-ip].
    #[arg(long)]
    pub wan_ip: Option<IpAddr>,
    /// Address the LAN-facing listeners bind (a consumer facility's, which the consumer dials)
    /// [default: --listener-ip].
    #[arg(long)]
    pub lan_ip: Option<IpAddr>,
    /// Host the other gateway dials for WAN-facing listeners, when it is not --wan-ip (a NAT's
    /// public address, or a name).
    #[arg(long)]
    pub public_addr: Option<String>,
    /// A data server node (`s2ds --listen`) to use instead of the embedded data server, as
    /// HOST:PORT; repeatable (each session is placed on one node: the least loaded by rate,
    /// then by sessions, of those with room for it). The links are mutual TLS with this
    /// server's --server-crt and --server-key.
    #[arg(long)]
    #[serde(default)]
    pub s2ds: Vec<String>,
    /// A certificate (PEM) the data server node must present one of: the facility's CA, or
    /// the node's own self-signed certificate; repeatable.
    #[arg(long = "s2ds-trust")]
    #[serde(default)]
    pub s2ds_trust: Vec<PathBuf>,
    /// What forwards the embedded data server's sessions: native (this program's relay),
    /// haproxy, nginx or stunnel (one supervised process per session; 1.2's HaproxySubprocess,
    /// NginxSubprocess and StunnelSubprocess are accepted) [default: native]. With --s2ds, set
    /// it on each node.
    #[arg(long = "type")]
    #[serde(rename = "type")]
    pub backend: Option<String>,
    /// Where a proxy backend keeps each session's private folder (configuration, key, pid)
    /// [default: $RUNTIME_DIRECTORY, else run/ under --state-dir, else scistream-s2cs-UID-PORT
    /// under the temporary folder].
    #[arg(long)]
    pub runtime_dir: Option<PathBuf>,
    /// The proxy's program for --type haproxy, nginx or stunnel, when not the one on PATH.
    #[arg(long)]
    pub proxy_program: Option<PathBuf>,
    /// Server certificate (PEM).
    #[arg(long, alias = "server_crt")]
    pub server_crt: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, alias = "server_key")]
    pub server_key: Option<PathBuf>,
    /// Plain gRPC without TLS: for tests only.
    #[arg(long)]
    #[serde(default)]
    pub insecure: bool,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    #[serde(default)]
    pub verbose: u8,
    /// OAuth2 client id of this facility: with its secret, every call needs a token, checked
    /// by introspection.
    #[arg(long, alias = "client_id")]
    pub client_id: Option<String>,
    /// OAuth2 client secret of this facility (or SCISTREAM_CLIENT_SECRET; in a config file
    /// use client-secret-file). Without one authentication is OFF, as in SciStream 1.2.
    #[arg(long, alias = "client_secret", env = "SCISTREAM_CLIENT_SECRET", hide_env_values = true)]
    #[serde(skip)]
    pub client_secret: Option<String>,
    /// File whose first line is the client secret.
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Authorization server; its endpoints are under /v2/oauth2/ as Globus Auth lays them out
    /// [default: <https://auth.globus.org>].
    #[arg(long)]
    pub auth_url: Option<String>,
    /// The introspection endpoint, when it is not where --auth-url puts it.
    #[arg(long)]
    pub introspect_url: Option<String>,
    /// The scope a caller's token must grant; a bare client id (UUID) means
    /// <https://auth.globus.org/scopes/ID/scistream> [default: that of --client-id].
    #[arg(long)]
    pub scope: Option<String>,
    /// Refuse to start without authentication (no client secret).
    #[arg(long)]
    #[serde(default)]
    pub require_auth: bool,
    /// An identity (a token's subject) that may query, update and release every session,
    /// repeatable; everybody else manages only their own.
    #[arg(long = "operator")]
    #[serde(default)]
    pub operators: Vec<String>,
    /// Longest time a token's positive introspection is trusted, seconds; a revoked token
    /// keeps working this long at most (0: ask every time) [default: 60].
    #[arg(long)]
    pub auth_cache_ttl: Option<u64>,
    /// Most introspection answers cached [default: 10000].
    #[arg(long)]
    pub auth_cache_size: Option<usize>,
    /// Most introspections in flight at once; callers beyond wait for a turn (at most their
    /// call's deadline and 10 s, then UNAVAILABLE) (0: no limit) [default: 16].
    #[arg(long)]
    pub auth_max_inflight: Option<usize>,
    /// Unknown tokens (not in the cache, no check of the same token in flight) one client
    /// address (IPv4, or IPv6 /64) may have introspected, per second; beyond, calls are refused
    /// RESOURCE_EXHAUSTED unchecked (0: no limit) [default: 5].
    #[arg(long)]
    pub auth_peer_rate: Option<f64>,
    /// Unknown tokens one client address may have introspected in a burst before
    /// --auth-peer-rate applies [default: 20].
    #[arg(long)]
    pub auth_peer_burst: Option<u32>,
    /// Most client addresses whose unknown tokens are counted; the one seen least recently is
    /// forgotten first [default: 10000].
    #[arg(long)]
    pub auth_peers: Option<usize>,
    /// Serve requests without an app key (SciStream 1.2 clients send none): such a session
    /// accepts only a Hello without a key, so its uid is its only secret, as in 1.2. Without
    /// this flag they are refused (PERMISSION_DENIED).
    #[arg(long, alias = "allow_keyless_sessions")]
    #[serde(default)]
    pub allow_keyless_sessions: bool,
    /// How long a session may wait for the producer's Hello and its UpdateTargets, seconds
    /// [default: 180, as SciStream 1.2].
    #[arg(long, alias = "hello_timeout", value_parser = crate::parse_secs)]
    #[serde(default, deserialize_with = "crate::de_opt_secs")]
    pub hello_timeout: Option<Duration>,
    /// How long a finished session is remembered (its status shown, retransmissions of its
    /// last calls answered), seconds [default: 300]. Memory grows with setups per second times
    /// this.
    #[arg(long, value_parser = crate::parse_secs)]
    #[serde(default, deserialize_with = "crate::de_opt_secs")]
    pub tombstone: Option<Duration>,
    /// Serve sessions whose UpdateTargets brings no WAN credentials (SciStream 1.2 clients)
    /// with a plain-text WAN leg; without this flag they are refused (FAILED_PRECONDITION).
    #[arg(long, alias = "allow_plain_wan")]
    #[serde(default)]
    pub allow_plain_wan: bool,
    /// The facility's capacity in the rate unit (kB/s, as --rate): requests whose rates would
    /// exceed what is left are refused (RESOURCE_EXHAUSTED) [default: no limit].
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Largest num_conn a request may ask for [default: 64].
    #[arg(long, alias = "max_num_conn")]
    pub max_num_conn: Option<u16>,
    /// Folder of the durable store of established sessions (made owner-only), from which a
    /// restart recovers them: with data server nodes (--s2ds) their streams go on across the
    /// restart [default: $STATE_DIRECTORY (systemd's StateDirectory=), else no store: a
    /// restart forgets every session].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The control port's limits (in the file, the `[limits]` table).
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
    /// The rate given to requests that ask for none (rate 0), in kB/s as --rate (10000 is
    /// 10 MB/s) [default: none: such sessions are not paced].
    #[arg(long)]
    pub default_rate: Option<u32>,
    /// Where producers' targets may be, as NET[:PORTS] (`192.0.2.0/24:7000-7999`,
    /// `[2001:db8::/32]:*`); repeatable (in the file, `allow-targets = [..]`). A Hello or
    /// UpdateTargets naming anything else is refused (PERMISSION_DENIED) [default: any address
    /// but the control server's own ports].
    #[arg(long = "allow-target", value_name = "NET[:PORTS]")]
    pub allow_targets: Option<Vec<String>>,
    /// Where the peer gateways a consumer's gateway dials over the WAN may be, as NET[:PORTS];
    /// repeatable (in the file, `allow-peers = [..]`) [default: any address but the control
    /// server's own ports].
    #[arg(long = "allow-peer", value_name = "NET[:PORTS]")]
    pub allow_peers: Option<Vec<String>>,
    /// Serve without authentication (no client secret) on an address that is not loopback:
    /// every caller is then `anonymous`. Without it such a server refuses to start.
    #[arg(long)]
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Where the audit trail goes: `log` (the daemon's log, target `audit`), or a file, appended
    /// to (one JSON object per line) [default: log].
    #[arg(long, value_name = "log|FILE")]
    pub audit: Option<String>,
    /// Quotas per identity or group (in the file only: `[[quota]]` tables); the first naming
    /// an identity applies to it.
    #[arg(skip)]
    #[serde(default)]
    pub quota: Vec<QuotaArgs>,
    /// The quota of identities no `[[quota]]` names (in the file only: a `[default-quota]`
    /// table) [default: unlimited].
    #[arg(skip)]
    pub default_quota: Option<QuotaArgs>,
}

/// One `[[quota]]` (or the `[default-quota]`) of the configuration file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuotaArgs {
    /// Its name, for logs and refusals' readers.
    #[serde(default)]
    pub name: String,
    /// The identities (token subjects) it applies to (ignored in `[default-quota]`).
    #[serde(default)]
    pub identities: Vec<String>,
    /// Whether they may request sessions at all [default: true].
    pub may_request: Option<bool>,
    /// In which roles: "PROD", "CONS" [default: both].
    pub roles: Option<Vec<String>>,
    /// Most sessions each may hold at once [default: no limit].
    pub max_sessions: Option<u32>,
    /// Largest num_conn [default: --max-num-conn].
    pub max_num_conn: Option<u16>,
    /// Largest rate, kB/s; a request for no rate limit is then refused [default: no limit].
    pub max_rate: Option<u32>,
}

impl RunArgs {
    /// The settings of a `--config` file's text; every key is a flag's long name.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
