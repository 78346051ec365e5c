//! Requests from user clients (REQ, ReqListeners, UpdateTargets, REL) and Hello from the
//! application controllers: who may do what, decided before the session sees the call.

use crate::audit::{Audit, Decision};
use crate::effect::{Effect, Outbox};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::policy::Dialled;
use crate::session::{self, Session, Setup, Summary};
use crate::time::Instant;
use crate::types::{Addr, AppKey, ErrorCode, Limit, Peer, Principal, Role, Uid, Why};

use super::{Entry, S2cs};

/// Sends an ERROR for `(uid, seq)` to `to` and returns the matching refusal.
fn refuse(out: &mut Outbox, to: Peer, uid: Uid, seq: u32, code: ErrorCode) -> Result<(), ProtocolError> {
    refuse_why(out, to, uid, seq, code, Why::Unspecified)
}

/// As [`refuse`], saying what the user can act on.
fn refuse_why(out: &mut Outbox, to: Peer, uid: Uid, seq: u32, code: ErrorCode, why: Why) -> Result<(), ProtocolError> {
    out.push(Effect::Send { to, msg: Msg::Error { uid, seq, code, why } });
    Err(ProtocolError::Refused { uid, code })
}

/// The audit record of the policy's verdict on the addresses a call names for session `e`.
fn audit_targets(out: &mut Outbox, uid: Uid, e: &Entry, addrs: &[Addr], from: Peer, verdict: Result<(), Why>) {
    let (decision, why) = match verdict {
        Ok(()) => (Decision::TargetsAccepted, Why::Unspecified),
        Err(why) => (Decision::TargetsRefused, why),
    };
    let a = Audit {
        decision,
        uid,
        identity: e.owner.clone(),
        role: e.params.role,
        addrs: addrs.to_vec(),
        from: Some(from),
        why,
    };
    out.push(Effect::Audit(Box::new(a)));
}

impl S2cs {
    pub(super) fn on_client(
        &mut self,
        now: Instant,
        from: Peer,
        caller: Option<Principal>,
        msg: Msg,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let (uid, seq) = match &msg {
            Msg::Req { uid, seq, .. }
            | Msg::ReqListeners { uid, seq, .. }
            | Msg::Update { uid, seq, .. }
            | Msg::Rel { uid, seq, .. } => (*uid, *seq),
            other => return Err(ProtocolError::Misdirected(other.name())),
        };
        // Authentication comes before any uid is looked up, so nobody learns which exist.
        let Some(caller) = caller else { return refuse(out, from, uid, seq, ErrorCode::Unauthenticated) };
        if let Msg::Req { .. } = msg {
            return self.on_req(now, from, caller, msg, out);
        }
        let Some(e) = self.sessions.get(&uid) else { return refuse(out, from, uid, seq, ErrorCode::NotFound) };
        if !self.cfg.may_manage(&e.owner, &caller) {
            return refuse(out, from, uid, seq, ErrorCode::PermissionDenied);
        }
        if let Msg::Update { remote, .. } = &msg {
            // Before the session sees it: nothing is dialled.
            let verdict = self.cfg.policy.admit_all(Dialled::of(e.params.role), remote);
            audit_targets(out, uid, e, remote, from, verdict);
            if let Err(why) = verdict {
                return refuse_why(out, from, uid, seq, ErrorCode::PermissionDenied, why);
            }
        }
        if let Msg::ReqListeners { .. } = msg {
            // A pure query: what is known now (the producer's listeners may still be empty).
            if e.is_terminal() && e.summary.prod_listeners.is_empty() {
                return refuse(out, from, uid, seq, e.summary.failure.unwrap_or(ErrorCode::Aborted));
            }
            let (listeners, prod_listeners) = (e.summary.listeners.clone(), e.summary.prod_listeners.clone());
            out.push(Effect::Send { to: from, msg: Msg::ProdLstn { uid, seq, listeners, prod_listeners } });
            return Ok(());
        }
        out.push(Effect::ToSession { uid, input: session::Input::Call { from, msg } });
        Ok(())
    }

    fn on_req(
        &mut self,
        now: Instant,
        from: Peer,
        caller: Principal,
        msg: Msg,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let Msg::Req { uid, seq, mut params, key, token } = msg else {
            return Err(ProtocolError::Misdirected(msg.name()));
        };
        // The facility's default rate, before anything compares or places the request.
        if params.rate == 0 {
            params.rate = self.cfg.default_rate;
        }
        let msg = Msg::Req { uid, seq, params, key, token };
        if params.num_conn == 0 || params.num_conn > self.cfg.max_num_conn {
            let why = Why::NumConn { max: self.cfg.max_num_conn };
            return refuse_why(out, from, uid, seq, ErrorCode::InvalidArgument, why);
        }
        if self.cfg.require_app_keys && key == AppKey::default() {
            return refuse_why(out, from, uid, seq, ErrorCode::PermissionDenied, Why::AppKeyRequired);
        }
        if let Some(e) = self.sessions.get(&uid) {
            // Only an identical retransmission reaches the session; anything else conflicts.
            if e.owner != caller || e.params != params || !e.key.ct_eq(&key) {
                return refuse_why(out, from, uid, seq, ErrorCode::AlreadyExists, Why::UidTaken);
            }
            out.push(Effect::ToSession { uid, input: session::Input::Call { from, msg } });
            return Ok(());
        }
        if self.draining {
            return refuse_why(out, from, uid, seq, ErrorCode::Unavailable, Why::Draining);
        }
        if !self.cfg.operators.contains(&caller) {
            let quota = self.cfg.policy.quotas.of(&caller);
            let held = || {
                let held = self.sessions.values().filter(|e| e.owner == caller && e.holds_resources()).count();
                u32::try_from(held).unwrap_or(u32::MAX)
            };
            if let Err(why) = quota.check(params, held) {
                let a = Audit {
                    decision: Decision::Refused,
                    uid,
                    identity: caller.clone(),
                    role: params.role,
                    addrs: Vec::new(),
                    from: Some(from),
                    why,
                };
                out.push(Effect::Audit(Box::new(a)));
                // Not allowed at all is a permission; a number beyond the quota, a quota.
                let code = match why {
                    Why::Quota { limit: Limit::MayRequest | Limit::Role(_), .. } => ErrorCode::PermissionDenied,
                    _ => ErrorCode::ResourceExhausted,
                };
                return refuse_why(out, from, uid, seq, code, why);
            }
        }
        let node = match self.place(params) {
            Ok(node) => node,
            Err((code, why)) => return refuse_why(out, from, uid, seq, code, why),
        };
        if let Some(capacity) = self.cfg.capacity {
            let demand = |rate: u32| if rate == 0 { capacity } else { u64::from(rate) };
            let held: u64 = self.sessions.values().filter(|e| e.holds_resources()).map(|e| demand(e.params.rate)).sum();
            if held.saturating_add(demand(params.rate)) > capacity {
                let why = Why::Capacity { capacity, in_use: held };
                return refuse_why(out, from, uid, seq, ErrorCode::ResourceExhausted, why);
            }
        }
        let setup = Setup {
            uid,
            facility: self.cfg.facility,
            node,
            epoch: self.epoch,
            allow_plain_wan: self.cfg.allow_plain_wan,
            timing: self.cfg.timing,
            owner: caller.clone(),
            params,
        };
        let a = Audit {
            decision: Decision::Created,
            uid,
            identity: caller.clone(),
            role: params.role,
            addrs: Vec::new(),
            from: Some(from),
            why: Why::Unspecified,
        };
        out.push(Effect::Audit(Box::new(a)));
        let entry = Entry { owner: caller, params, key, creds: None, node, summary: Summary::default() };
        self.sessions.insert(uid, entry);
        out.push(Effect::Spawn(Box::new(Session::new(setup))));
        if !self.nodes[node.index()].beating {
            self.start_heartbeat(now, node, out);
        }
        out.push(Effect::ToSession { uid, input: session::Input::Call { from, msg } });
        Ok(())
    }

    pub(super) fn on_app(&mut self, from: Peer, msg: Msg, out: &mut Outbox) -> Result<(), ProtocolError> {
        let Msg::Hello { uid, seq, key, .. } = &msg else {
            return Err(ProtocolError::Misdirected(msg.name()));
        };
        let (uid, seq) = (*uid, *seq);
        // Hello carries no token: the app key is its only credential. A wrong key is answered
        // exactly as an unknown uid (NOT_FOUND, no reason), so a caller without the key cannot
        // tell which uids exist; the controller keeps saying Hello until its deadline either way.
        // A session made without a key (a 1.2 client) matches only a Hello without one.
        let Some(e) = self.sessions.get(&uid).filter(|e| e.key.ct_eq(key)) else {
            return refuse(out, from, uid, seq, ErrorCode::NotFound);
        };
        // A producer's listeners are where its gateway will dial; a consumer's are not used.
        if let Msg::Hello { prod_listeners, .. } = &msg
            && e.params.role == Role::Prod
        {
            let verdict = self.cfg.policy.admit_all(Dialled::Target, prod_listeners);
            audit_targets(out, uid, e, prod_listeners, from, verdict);
            if let Err(why) = verdict {
                return refuse_why(out, from, uid, seq, ErrorCode::PermissionDenied, why);
            }
        }
        out.push(Effect::ToSession { uid, input: session::Input::Call { from, msg } });
        Ok(())
    }
}
