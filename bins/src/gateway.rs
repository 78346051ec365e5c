//! What the gateway daemons share: a data server's addresses (where its listeners bind and
//! where they are reached, per side they face), its port range, and `gen-cert`.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;

use scistream_fsm::{Addr, Faces};
use scistream_transport::certgen;

/// A data server's listener addresses: bound, and advertised to the peers that dial them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sides {
    /// Where the listeners bind, per side.
    pub bind: Faces<IpAddr>,
    /// Where they are reached, per side.
    pub advertise: Faces<String>,
}

impl Sides {
    /// Resolves the flags: WAN-facing listeners (a producer facility's) bind `wan_ip` and are
    /// advertised as `public_addr` when given (a NAT), else as `wan_ip`; LAN-facing ones (a
    /// consumer facility's) bind and are advertised as `lan_ip`. Either IP left out is
    /// `default_ip`. An advertised address must be one a peer can dial: an unspecified bind
    /// address (`0.0.0.0`, `::`) needs `--public-addr` on the WAN side and is refused on the
    /// LAN side.
    pub fn resolve(
        default_ip: IpAddr,
        wan_ip: Option<IpAddr>,
        lan_ip: Option<IpAddr>,
        public_addr: Option<&str>,
    ) -> Result<Self, String> {
        let (wan, lan) = (wan_ip.unwrap_or(default_ip), lan_ip.unwrap_or(default_ip));
        let wan_host = match public_addr {
            Some(host) => {
                let given = host.trim();
                let host = given.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(given);
                if !Addr::valid_host(host) {
                    return Err(format!("--public-addr {given:?}: expected a host name or an IP address"));
                }
                host.to_owned()
            }
            None if wan.is_unspecified() => {
                return Err(format!(
                    "WAN-facing listeners bind {wan} (every address): say which address the other gateway dials with --public-addr"
                ));
            }
            None => wan.to_string(),
        };
        if lan.is_unspecified() {
            return Err(format!(
                "LAN-facing listeners bind {lan} (every address), which no application can dial: give --lan-ip the gateway's LAN address"
            ));
        }
        Ok(Self { bind: Faces { wan, lan }, advertise: Faces { wan: wan_host, lan: lan.to_string() } })
    }
}

/// Parses a port range, `FIRST-LAST` with `1 <= FIRST <= LAST`.
pub fn parse_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("--port-range {text:?}: expected FIRST-LAST with 1 <= FIRST <= LAST");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

/// Runs a gateway daemon after its settings were read: logging at `verbose`, every file
/// descriptor the kernel allows (each session listener is one), a tokio runtime for `serve`;
/// exit status 0, or [`crate::EXIT_FAILED`] with the error on stderr and in the log.
pub fn run_daemon<F>(name: &str, verbose: u8, serve: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    crate::init_logging(verbose);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!("file descriptor limit {n}"),
        Err(e) => tracing::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(serve) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            failed(&e)
        }
    }
}

/// As [`run_daemon`], for a daemon that drains: logs in `format` (`serve` gets the handle that
/// changes the level), and exits 0 when every session had ended before it stopped,
/// [`crate::ops::EXIT_UNDRAINED`] when it ended sessions still running.
pub fn run_draining<F, Fut>(name: &str, verbose: u8, format: crate::LogFormat, serve: F) -> std::process::ExitCode
where
    F: FnOnce(Option<crate::LogLevel>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<crate::ops::Stopped>>,
{
    let log = crate::init_logging_as(verbose, format);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!("file descriptor limit {n}"),
        Err(e) => tracing::warn!("cannot raise the file descriptor limit: {e}"),
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(serve(log)) {
        Ok(crate::ops::Stopped::Drained) => std::process::ExitCode::SUCCESS,
        Ok(crate::ops::Stopped::Cut) => std::process::ExitCode::from(crate::ops::EXIT_UNDRAINED),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            failed(&e)
        }
    }
}

/// The exit status of a daemon that could not serve: 2 when its configuration cannot run here
/// (a backend's proxy missing or too old: the operator's to fix, as a bad flag is), else 1.
fn failed(e: &anyhow::Error) -> std::process::ExitCode {
    if e.downcast_ref::<scistream_transport::backend::SetupError>().is_some() {
        std::process::ExitCode::from(crate::EXIT_USAGE)
    } else {
        std::process::ExitCode::from(crate::EXIT_FAILED)
    }
}

/// `gen-cert` as a daemon's subcommand: prints what it wrote, or the error (exit 1).
pub fn gen_cert_command(
    name: &str,
    listener_ip: IpAddr,
    hostnames: Vec<String>,
    out_dir: &Path,
    days: u32,
    force: bool,
) -> std::process::ExitCode {
    match gen_cert(listener_ip, hostnames, out_dir, days, force) {
        Ok(wrote) => {
            println!("{wrote}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name} gen-cert: {e}");
            std::process::ExitCode::from(crate::EXIT_FAILED)
        }
    }
}

/// `gen-cert`: writes a self-signed certificate (server and client authentication) and its key
/// into `out_dir`; prints what it wrote. Returns the error's text on failure.
pub fn gen_cert(
    listener_ip: IpAddr,
    mut hostnames: Vec<String>,
    out_dir: &Path,
    days: u32,
    force: bool,
) -> Result<String, String> {
    hostnames.extend(certgen::local_hostname());
    let made = certgen::generate(listener_ip, &hostnames, days).and_then(|c| certgen::write_in_dir(&c, out_dir, force));
    match made {
        Ok((crt, key)) => Ok(format!(
            "wrote {} and {} (names: {listener_ip}, {})",
            crt.display(),
            key.display(),
            hostnames.join(", ")
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_serves_both_sides() {
        let s = Sides::resolve(ip("192.0.2.10"), None, None, None).unwrap();
        assert_eq!(s.bind, Faces::both(ip("192.0.2.10")));
        assert_eq!(s.advertise, Faces::both("192.0.2.10".to_owned()));
    }

    #[test]
    fn separate_interfaces_and_a_nat_address() {
        let s =
            Sides::resolve(ip("127.0.0.1"), Some(ip("0.0.0.0")), Some(ip("192.0.2.1")), Some("203.0.113.9")).unwrap();
        assert_eq!(s.bind, Faces { wan: ip("0.0.0.0"), lan: ip("192.0.2.1") });
        assert_eq!(s.advertise, Faces { wan: "203.0.113.9".to_owned(), lan: "192.0.2.1".to_owned() });
        let v6 = Sides::resolve(ip("::1"), None, None, Some("[2001:db8::1]")).unwrap();
        assert_eq!(v6.advertise.wan, "2001:db8::1");
    }

    #[test]
    fn addresses_nobody_can_dial_are_refused() {
        let e = Sides::resolve(ip("0.0.0.0"), None, Some(ip("192.0.2.1")), None).unwrap_err();
        assert!(e.contains("--public-addr"), "{e}");
        let e = Sides::resolve(ip("0.0.0.0"), None, None, Some("gw.example.org")).unwrap_err();
        assert!(e.contains("--lan-ip"), "{e}");
        let e = Sides::resolve(ip("192.0.2.1"), None, None, Some("gw example")).unwrap_err();
        assert!(e.contains("--public-addr"), "{e}");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_range("5100-5200"), Ok(5100..=5200));
        assert_eq!(parse_range(" 7 - 7 "), Ok(7..=7));
        for bad in ["", "5100", "0-10", "10-9", "a-b", "1-70000"] {
            assert!(parse_range(bad).is_err(), "{bad:?}");
        }
    }
}
