//! The audit trail: one record per decision of a control server that a facility's security
//! team asks about — a session created, the addresses of a Hello or UpdateTargets accepted or
//! refused, a request refused for policy, a session released or expired. The control
//! server's core decides and says each ([`crate::Effect::Audit`]); its driver writes them to
//! their own sink, adding the caller's network address. A record holds no secret: no token,
//! no app key, no credentials.

use crate::types::{Addr, Peer, Principal, Role, Uid, Why};

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// A REQ made a new session.
    Created,
    /// A REQ was refused by the caller's quota.
    Refused,
    /// The addresses a Hello or UpdateTargets names passed the destination policy.
    TargetsAccepted,
    /// The addresses a Hello or UpdateTargets names were refused by the destination policy.
    TargetsRefused,
    /// The session was released (REL, or a drain's end).
    Released,
    /// The session was not established within its lease.
    Expired,
}

impl Decision {
    /// Its name in the trail.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Refused => "refused",
            Self::TargetsAccepted => "targets-accepted",
            Self::TargetsRefused => "targets-refused",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }
}

/// One record of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// What was decided.
    pub decision: Decision,
    /// The session.
    pub uid: Uid,
    /// The identity the decision concerns: the session's owner (for a refused REQ, its
    /// caller's).
    pub identity: Principal,
    /// The session's role at this facility.
    pub role: Role,
    /// The addresses the decision is about: a Hello's or UpdateTargets' (as resolved).
    pub addrs: Vec<Addr>,
    /// Who asked, as the core names it (the driver knows its network address).
    pub from: Option<Peer>,
    /// Why, for a refusal.
    pub why: Why,
}
