//! The facility's policy: what its gateway may reach and who may ask for what. Pure data and
//! pure decisions; the control server's core consults it before a session sees a call, and a
//! data server's relay consults it again when it dials.
//!
//! - **Destinations.** A producer's targets (its Hello's listeners, and the UpdateTargets of a
//!   producer's session) must be admitted by `allow-targets`; the WAN addresses a consumer's
//!   gateway dials (the UpdateTargets of a consumer's session) by `allow-peers`. A list that
//!   is not configured admits every address (SciStream 1.2's behaviour). Whatever the lists
//!   say, no session may reach the control server's own ports ([`Policy::own`]).
//! - **Names.** The policy admits addresses, not names: while a list applies
//!   ([`Policy::rules_apply`]) the driver resolves each name once, before the core sees the
//!   call, and hands the core the address it resolved to (which is then the address the data
//!   server dials, so DNS cannot smuggle a target in). A host that is still a name here did
//!   not resolve: refused when the list that applies is configured; without lists it passes,
//!   and the relay checks what it resolves to when it dials.
//! - **Quotas.** Per identity (a token's subject) or group of identities: whether it may
//!   request at all, as producer and/or consumer, and its most concurrent sessions, num_conn
//!   and rate ([`Quotas`]). Operators are held to none.
//!
//! Each refusal is a [`Why`] naming the rule or the limit that refused.

mod quota;
mod rule;

pub use quota::{Quota, QuotaRule, Quotas, Roles};
pub use rule::{Net, PortRange, Rule, RuleError};

use std::net::{IpAddr, SocketAddr};

use crate::types::{Addr, Guard, Role, Why};

/// Which list an address is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dialled {
    /// A producer's application, on the facility's LAN (`allow-targets`).
    Target,
    /// The other facility's gateway, over the WAN (`allow-peers`).
    Peer,
}

impl Dialled {
    /// What a session of `role` dials: a producer's gateway its producer, a consumer's gateway
    /// the producer's gateway.
    pub const fn of(role: Role) -> Self {
        match role {
            Role::Prod => Self::Target,
            Role::Cons => Self::Peer,
        }
    }
}

/// The facility's policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Where producers' targets may be (`None`: anywhere but the control server's own ports).
    pub targets: Option<Vec<Rule>>,
    /// Where the peer gateways a consumer's gateway dials may be (`None`: anywhere but the
    /// control server's own ports).
    pub peers: Option<Vec<Rule>>,
    /// The control server's own listening addresses (control port, metrics): never a target.
    /// An unspecified address (it listens on all) keeps its port from every address.
    pub own: Vec<SocketAddr>,
    /// Who may request what.
    pub quotas: Quotas,
}

impl Policy {
    /// Whether a session may make its data server dial every one of `addrs` as `what`: the
    /// first address refused, and why.
    pub fn admit_all(&self, what: Dialled, addrs: &[Addr]) -> Result<(), Why> {
        addrs.iter().try_for_each(|a| self.admit(what, a))
    }

    /// Whether a session may make its data server dial `addr` as `what`.
    pub fn admit(&self, what: Dialled, addr: &Addr) -> Result<(), Why> {
        let list = self.list(what);
        match addr.host.parse::<IpAddr>() {
            Ok(ip) => self.admit_ip(what, SocketAddr::new(ip, addr.port)),
            // Not resolved by the driver: it cannot be checked against a list.
            Err(_) if list.is_some() => {
                Err(Why::Policy { guard: Guard::Unresolved, ip: IpAddr::from([0u8; 16]), port: addr.port })
            }
            Err(_) => Ok(()),
        }
    }

    /// Whether the data server may dial the resolved address `to` as `what` (the relay's
    /// check at dial time, and the core's for an address literal).
    pub fn admit_ip(&self, what: Dialled, to: SocketAddr) -> Result<(), Why> {
        let (ip, port) = (to.ip().to_canonical(), to.port());
        let refuse = |guard| Err(Why::Policy { guard, ip, port });
        if self.is_own(ip, port) {
            return refuse(Guard::OwnPorts);
        }
        match self.list(what) {
            Some(rules) if !rules.iter().any(|r| r.admits(ip, port)) => refuse(match what {
                Dialled::Target => Guard::AllowTargets,
                Dialled::Peer => Guard::AllowPeers,
            }),
            _ => Ok(()),
        }
    }

    fn list(&self, what: Dialled) -> Option<&[Rule]> {
        match what {
            Dialled::Target => self.targets.as_deref(),
            Dialled::Peer => self.peers.as_deref(),
        }
    }

    /// Whether `(ip, port)` may reach one of the control server's own listeners: the same
    /// port on its address, on loopback or the unspecified address, or anywhere when it
    /// listens on every address.
    fn is_own(&self, ip: IpAddr, port: u16) -> bool {
        self.own.iter().any(|o| {
            let own = o.ip().to_canonical();
            o.port() == port && (own.is_unspecified() || own == ip || ip.is_loopback() || ip.is_unspecified())
        })
    }

    /// Whether an allow-list applies (to targets or to peers): then names must reach the core
    /// resolved.
    pub fn rules_apply(&self) -> bool {
        self.targets.is_some() || self.peers.is_some()
    }

    /// How many destination rules it holds (for logs).
    pub fn rules(&self) -> usize {
        self.targets.as_ref().map_or(0, Vec::len) + self.peers.as_ref().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests;
