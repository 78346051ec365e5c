//! Who may request what: a quota per identity or group of identities, and the default quota
//! of everybody the configuration does not name.

use crate::types::{Limit, Principal, Role, SessionParams, Why};

/// The roles an identity may request sessions in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roles {
    /// As producer.
    pub prod: bool,
    /// As consumer.
    pub cons: bool,
}

impl Roles {
    /// Both roles.
    pub const BOTH: Self = Self { prod: true, cons: true };

    /// Whether `role` is among them.
    pub const fn has(self, role: Role) -> bool {
        match role {
            Role::Prod => self.prod,
            Role::Cons => self.cons,
        }
    }
}

/// What one identity may request. The default is everything, unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Whether it may request sessions at all.
    pub may_request: bool,
    /// In which roles.
    pub roles: Roles,
    /// Most sessions it may hold at once (sessions that hold, or may hold, ports).
    pub max_sessions: Option<u32>,
    /// Largest num_conn it may ask for.
    pub max_num_conn: Option<u16>,
    /// Largest rate (kB/s) it may ask for; a request for no limit (rate 0) asks for more.
    pub max_rate: Option<u32>,
}

impl Default for Quota {
    fn default() -> Self {
        Self { may_request: true, roles: Roles::BOTH, max_sessions: None, max_num_conn: None, max_rate: None }
    }
}

impl Quota {
    /// Whether a new session with `params` fits, its owner holding `held()` sessions already
    /// (counted only when this quota bounds sessions and no other limit refused first): the
    /// first limit it breaks.
    pub fn check(&self, params: SessionParams, held: impl FnOnce() -> u32) -> Result<(), Why> {
        let refuse = |limit, max: u64| Err(Why::Quota { limit, max });
        if !self.may_request {
            return refuse(Limit::MayRequest, 0);
        }
        if !self.roles.has(params.role) {
            return refuse(Limit::Role(params.role), 0);
        }
        if let Some(max) = self.max_num_conn
            && params.num_conn > max
        {
            return refuse(Limit::NumConn, u64::from(max));
        }
        if let Some(max) = self.max_rate
            && (params.rate == 0 || params.rate > max)
        {
            return refuse(Limit::Rate, u64::from(max));
        }
        if let Some(max) = self.max_sessions
            && held() >= max
        {
            return refuse(Limit::Sessions, u64::from(max));
        }
        Ok(())
    }
}

/// A quota and the identities it applies to (a group, or one identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRule {
    /// The identities (token subjects) it applies to.
    pub identities: Vec<Principal>,
    /// What they may request.
    pub quota: Quota,
}

/// Every quota of the facility: the first rule naming an identity applies to it, else the
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Quotas {
    /// The rules, first match wins.
    pub rules: Vec<QuotaRule>,
    /// The quota of identities no rule names.
    pub default: Quota,
}

impl Quotas {
    /// The quota of `who`.
    pub fn of(&self, who: &Principal) -> &Quota {
        self.rules.iter().find(|r| r.identities.contains(who)).map_or(&self.default, |r| &r.quota)
    }
}
