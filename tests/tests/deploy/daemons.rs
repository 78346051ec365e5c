//! A shipped configuration as the daemon reads it: the file through `RunArgs::from_toml`, the
//! flags its unit, image or pod adds through the daemon's clap definitions, then the checks
//! the daemon makes on the merged settings before it serves, short of reading the files they
//! name: `s2ds`'s own (`config::s2ds::merge`); for `s2cs`, a restatement of those in
//! bins/src/bin/s2cs.rs (`settings`), whose merge still reads the files it names.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::{Args, Command, FromArgMatches};
use scistream_bins::config::{s2cs, s2ds};
use scistream_bins::gateway::{Sides, parse_range};
use scistream_fsm::Addr;

/// Flags as the daemon's command line reads them (`args` without the program's name).
fn flags<A: Args + FromArgMatches>(daemon: &'static str, args: &[String]) -> Result<A> {
    let cmd = A::augment_args(Command::new(daemon).no_binary_name(true));
    let matches = cmd.try_get_matches_from(args).map_err(|e| anyhow!("{daemon} {}: {e}", args.join(" ")))?;
    Ok(A::from_arg_matches(&matches)?)
}

/// Whether the daemon's command line takes `args`.
pub(crate) fn accepts_flags(daemon: &str, args: &[String]) -> Result<()> {
    match daemon {
        "s2cs" => flags::<s2cs::RunArgs>("s2cs", args).map(drop),
        "s2ds" => flags::<s2ds::RunArgs>("s2ds", args).map(drop),
        _ => bail!("no daemon {daemon}"),
    }
}

/// The value of `--flag VALUE` or `--flag=VALUE` in `args`.
pub(crate) fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let eq = format!("{flag}=");
    args.iter()
        .enumerate()
        .find_map(|(i, a)| if a == flag { args.get(i + 1).cloned() } else { a.strip_prefix(&eq).map(str::to_owned) })
}

/// What the consistency checks need of an `s2cs` configuration, after the merge.
#[derive(Debug)]
pub(crate) struct S2cs {
    /// Files it reads: certificate, key, node trust, client secret.
    pub files: Vec<PathBuf>,
    /// Its data server nodes, `host:port`.
    pub nodes: Vec<String>,
    /// Certificates it trusts its nodes by.
    pub node_trust: Vec<PathBuf>,
    /// Its certificate.
    pub cert: PathBuf,
    /// Its control address.
    pub listener_ip: IpAddr,
    /// Its control port.
    pub port: u16,
    /// Its store's folder.
    pub state_dir: Option<PathBuf>,
    /// Largest num_conn.
    pub max_num_conn: u16,
}

/// Reads an `s2cs` configuration file plus command-line `args` as `s2cs` would.
pub(crate) fn s2cs(text: &str, args: &[String]) -> Result<S2cs> {
    let file = s2cs::RunArgs::from_toml(text).context("s2cs's parser refuses the file")?;
    let cli: s2cs::RunArgs = flags("s2cs", args)?;
    ensure!(cli.config.is_some(), "s2cs is not given --config");
    let backend = cli.backend.clone().or_else(|| file.backend.clone()).unwrap_or_else(|| "native".into());
    ensure!(backend == "native", "type {backend:?}: s2cs refuses it");
    let nodes = if cli.s2ds.is_empty() { file.s2ds.clone() } else { cli.s2ds.clone() };
    let node_trust: Vec<PathBuf> = cli.s2ds_trust.iter().chain(&file.s2ds_trust).cloned().collect();
    let ip = cli.listener_ip.or(file.listener_ip).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if nodes.is_empty() {
        ensure!(node_trust.is_empty(), "s2ds-trust without s2ds");
        let range = cli.port_range.clone().or_else(|| file.port_range.clone()).unwrap_or_else(|| "5100-5200".into());
        parse_range(&range).map_err(|e| anyhow!(e))?;
        let public = cli.public_addr.as_deref().or(file.public_addr.as_deref());
        Sides::resolve(ip, cli.wan_ip.or(file.wan_ip), cli.lan_ip.or(file.lan_ip), public).map_err(|e| anyhow!(e))?;
    } else {
        for (key, given) in [
            ("port-range", cli.port_range.is_some() || file.port_range.is_some()),
            ("wan-ip", cli.wan_ip.is_some() || file.wan_ip.is_some()),
            ("lan-ip", cli.lan_ip.is_some() || file.lan_ip.is_some()),
            ("public-addr", cli.public_addr.is_some() || file.public_addr.is_some()),
        ] {
            ensure!(!given, "{key} with s2ds: s2cs refuses it (it belongs to the node)");
        }
        ensure!(!node_trust.is_empty(), "s2ds without s2ds-trust: s2cs refuses it");
        for (i, node) in nodes.iter().enumerate() {
            node.parse::<Addr>().map_err(|e| anyhow!("s2ds {node:?}: {e}"))?;
            ensure!(!nodes[..i].contains(node), "s2ds {node} given twice");
        }
    }
    ensure!(!(cli.insecure || file.insecure), "insecure: a shipped configuration must use TLS");
    let cert = cli.server_crt.clone().or_else(|| file.server_crt.clone()).context("no server-crt")?;
    let key = cli.server_key.clone().or_else(|| file.server_key.clone()).context("no server-key")?;
    let secret = cli.client_secret_file.clone().or_else(|| file.client_secret_file.clone());
    let client_id = cli.client_id.clone().or_else(|| file.client_id.clone());
    if cli.require_auth || file.require_auth {
        ensure!(secret.is_some(), "require-auth without client-secret-file: s2cs refuses to start");
    }
    ensure!(secret.is_none() || client_id.is_some(), "a client secret without client-id: s2cs refuses it");
    cli.limits.merge(&file.limits).context("limits")?;
    let max_num_conn = cli.max_num_conn.or(file.max_num_conn).unwrap_or(64);
    ensure!(max_num_conn > 0, "max-num-conn 0");
    let mut files = vec![cert.clone(), key];
    files.extend(node_trust.iter().cloned());
    files.extend(secret);
    Ok(S2cs {
        files,
        nodes,
        node_trust,
        cert,
        listener_ip: ip,
        port: cli.port.or(file.port).unwrap_or(5000),
        state_dir: cli.state_dir.or(file.state_dir),
        max_num_conn,
    })
}

/// What the consistency checks need of an `s2ds` configuration, after the merge.
#[derive(Debug)]
pub(crate) struct S2ds {
    /// Files it reads: certificate, key, trust.
    pub files: Vec<PathBuf>,
    /// Its certificate.
    pub cert: PathBuf,
    /// Certificates it trusts its control server by.
    pub trust: Vec<PathBuf>,
    /// Its link's address.
    pub listen: SocketAddr,
    /// The relays' ports.
    pub ports: RangeInclusive<u16>,
    /// Where its listeners are advertised.
    pub sides: Sides,
    /// Largest num_conn.
    pub max_num_conn: u16,
}

/// Reads an `s2ds` configuration file plus command-line `args` as `s2ds` does: its own merge
/// and checks ([`s2ds::merge`]), short of reading the files it names.
pub(crate) fn s2ds(text: &str, args: &[String]) -> Result<S2ds> {
    let file = s2ds::RunArgs::from_toml(text).context("s2ds's parser refuses the file")?;
    let cli: s2ds::RunArgs = flags("s2ds", args)?;
    ensure!(cli.config.is_some(), "s2ds is not given --config");
    let s = s2ds::merge(cli, file).context("s2ds refuses to start")?;
    let mut files = vec![s.cert.clone(), s.key];
    files.extend(s.trust.iter().cloned());
    Ok(S2ds {
        files,
        cert: s.cert,
        trust: s.trust,
        listen: s.listen,
        ports: s.ports,
        sides: s.sides,
        max_num_conn: s.max_num_conn,
    })
}

/// A control server and its data server agree: the node is dialed where it listens and each
/// trusts the other's certificate, and a session the control server admits fits the node.
pub(crate) fn check_pair(cs: &S2cs, ds: &S2ds, node: &str) -> Result<()> {
    ensure!(cs.nodes.iter().any(|n| n == node), "s2cs does not list its node {node} (it lists {:?})", cs.nodes);
    ensure!(cs.node_trust.contains(&ds.cert), "s2cs does not trust the node's certificate {}", ds.cert.display());
    ensure!(ds.trust.contains(&cs.cert), "s2ds does not trust the control server's certificate {}", cs.cert.display());
    ensure!(
        cs.max_num_conn <= ds.max_num_conn,
        "s2cs max-num-conn {} exceeds the node's {}",
        cs.max_num_conn,
        ds.max_num_conn
    );
    let pool = usize::from(*ds.ports.end() - *ds.ports.start()) + 1;
    ensure!(usize::from(ds.max_num_conn) <= pool, "max-num-conn {} exceeds the {pool} ports", ds.max_num_conn);
    Ok(())
}

/// The port of a `host:port` address a configuration gives (`metrics-addr`).
pub(crate) fn port_of(addr: &str) -> Result<u16> {
    let addr: SocketAddr = addr.parse().with_context(|| format!("{addr:?} is not IP:PORT"))?;
    Ok(addr.port())
}

/// `metrics-addr` as the flags or the file give it (flags win).
pub(crate) fn metrics_addr(args: &[String], table: &toml::Table) -> Option<String> {
    flag_value(args, "--metrics-addr").or_else(|| table.get("metrics-addr").and_then(|v| v.as_str().map(str::to_owned)))
}

/// The drain a daemon gets from its flags or file, seconds.
pub(crate) fn drain(args: &[String], table: &toml::Table) -> Result<f64> {
    match flag_value(args, "--drain-timeout") {
        Some(v) => v.parse().with_context(|| format!("--drain-timeout {v}")),
        None => crate::secs_key(table, "drain-timeout", crate::DEFAULT_DRAIN),
    }
}
