//! One destination rule: a network (CIDR) and a port range, written `NET[:PORTS]`.
//!
//! `NET` is an address with an optional prefix length (`192.0.2.0/24`, `192.0.2.7`,
//! `2001:db8::/32`; an IPv6 network followed by ports is bracketed: `[2001:db8::/32]:5000`).
//! `PORTS` is one port, `FIRST-LAST`, or `*` (every port, as when it is left out). IPv4
//! addresses written as IPv4-mapped IPv6 are matched as the IPv4 addresses they are.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why a rule's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The network part is not an address with an optional prefix length.
    #[error("rule {0:?}: expected an address or a network (CIDR), as 192.0.2.0/24 or [2001:db8::/32]")]
    Net(String),
    /// The prefix length is longer than the address.
    #[error("rule {0:?}: the prefix length is longer than the address")]
    Prefix(String),
    /// The ports are not `N`, `FIRST-LAST` (FIRST ≤ LAST, 1..=65535) or `*`.
    #[error("rule {0:?}: expected ports as N, FIRST-LAST or *")]
    Ports(String),
}

/// A network: an address and how many of its leading bits a member shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// The network of `addr`'s first `prefix` bits (host bits cleared); `None` when `prefix` is
    /// longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then(|| Self { addr: mask(addr, prefix), prefix })
    }

    /// Whether `ip` is in it (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u32::from(v4) & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u128::from(v6) & m).to_be_bytes())
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Ports `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}

impl PortRange {
    /// Every port.
    pub const ALL: Self = Self { first: 1, last: u16::MAX };
}

/// One destination rule: addresses in `net` on `ports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// The network.
    pub net: Net,
    /// The ports.
    pub ports: PortRange,
}

impl Rule {
    /// Whether it admits `ip` on `port`.
    pub fn admits(&self, ip: IpAddr, port: u16) -> bool {
        (self.ports.first..=self.ports.last).contains(&port) && self.net.contains(ip)
    }
}

impl FromStr for Rule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let text = s.trim();
        let clip = || text.chars().take(80).collect::<String>();
        // `[v6/len]:ports`, `v4/len:ports`, or a bare network of either family.
        let (net, ports) = if let Some(rest) = text.strip_prefix('[') {
            let (net, after) = rest.split_once(']').ok_or_else(|| RuleError::Net(clip()))?;
            match after {
                "" => (net, None),
                _ => (net, Some(after.strip_prefix(':').ok_or_else(|| RuleError::Ports(clip()))?)),
            }
        } else if text.matches(':').count() == 1 {
            let (net, ports) = text.split_once(':').unwrap_or((text, ""));
            (net, Some(ports))
        } else {
            (text, None)
        };
        let (addr, prefix) = match net.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| RuleError::Net(clip()))?)),
            None => (net, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| RuleError::Net(clip()))?;
        let prefix = prefix.unwrap_or(if addr.to_canonical().is_ipv4() { 32 } else { 128 });
        // An IPv4-mapped network's prefix counts the mapped address's bits.
        let prefix = match (addr, addr.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96).ok_or_else(|| RuleError::Prefix(clip()))?,
            _ => prefix,
        };
        let net = Net::new(addr, prefix).ok_or_else(|| RuleError::Prefix(clip()))?;
        let ports = match ports {
            None | Some("*") => PortRange::ALL,
            Some(p) => {
                let port = |n: &str| n.parse::<u16>().ok().filter(|n| *n != 0).ok_or_else(|| RuleError::Ports(clip()));
                let (first, last) = match p.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => (port(p)?, port(p)?),
                };
                if first > last {
                    return Err(RuleError::Ports(clip()));
                }
                PortRange { first, last }
            }
        };
        Ok(Self { net, ports })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = if self.net.addr.is_ipv6() { format!("[{}]", self.net) } else { self.net.to_string() };
        match self.ports {
            PortRange::ALL => write!(f, "{net}:*"),
            PortRange { first, last } if first == last => write!(f, "{net}:{first}"),
            PortRange { first, last } => write!(f, "{net}:{first}-{last}"),
        }
    }
}
