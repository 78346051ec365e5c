//! Requests from user clients (REQ, ReqListeners, UpdateTargets, REL) and Hello from the
//! application controllers.

use crate::effect::{Effect, Outbox};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::session::{self, Machine, Session};
use crate::time::Instant;
use crate::types::{AppKey, ErrorCode, Peer, Principal, Role, SessionParams, Uid};

use super::{S2cs, State};

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
        let refuse = |out: &mut Outbox, code: ErrorCode| {
            out.push(Effect::Send { to: from, msg: Msg::Error { uid, seq, code } });
            Err(ProtocolError::Refused { uid, code })
        };
        // Authentication comes before any uid is looked up, so nobody learns which exist.
        let Some(caller) = caller else { return refuse(out, ErrorCode::Unauthenticated) };
        if let Msg::Req { params, key, .. } = msg {
            return self.on_req(now, from, caller, uid, seq, params, key, out);
        }
        let Some(s) = self.sessions.get_mut(&uid) else { return refuse(out, ErrorCode::NotFound) };
        if !self.cfg.may_manage(&s.owner, &caller) {
            return refuse(out, ErrorCode::PermissionDenied);
        }
        match msg {
            Msg::ReqListeners { .. } => {
                if !s.listeners.is_empty() && !s.prod_listeners.is_empty() {
                    let prod_listeners = s.prod_listeners.clone();
                    out.push(Effect::Send { to: from, msg: Msg::ProdLstn { uid, seq, prod_listeners } });
                } else if s.state().is_terminal() {
                    let code = s.failure.unwrap_or(ErrorCode::Aborted);
                    return refuse(out, code);
                }
                s.client = (from, seq);
                Ok(())
            }
            Msg::Update { remote, creds, .. } => {
                if remote.is_empty() {
                    return refuse(out, ErrorCode::InvalidArgument);
                }
                // No credentials (a SciStream 1.2 client): the WAN leg could only be plain text.
                if creds == crate::types::Credentials::default() && !self.cfg.allow_plain_wan {
                    return refuse(out, ErrorCode::FailedPrecondition);
                }
                if s.bridge.as_ref().is_some_and(|b| b.0 != remote || b.1 != creds) {
                    return refuse(out, ErrorCode::AlreadyExists);
                }
                if !crate::alphabet::allows(&s.machine, session::Event::Update) {
                    return refuse(out, ErrorCode::FailedPrecondition);
                }
                s.client = (from, seq);
                if s.bridge.is_none() && s.state() == session::State::Listening {
                    s.bridge = Some((remote, creds));
                }
                self.step(now, uid, session::Event::Update, None, out)
            }
            Msg::Rel { .. } => {
                s.client = (from, seq);
                self.step(now, uid, session::Event::Rel, None, out)
            }
            _ => unreachable!("filtered above"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_req(
        &mut self,
        now: Instant,
        from: Peer,
        caller: Principal,
        uid: Uid,
        seq: u32,
        params: SessionParams,
        key: AppKey,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let refuse = |out: &mut Outbox, code: ErrorCode| {
            out.push(Effect::Send { to: from, msg: Msg::Error { uid, seq, code } });
            Err(ProtocolError::Refused { uid, code })
        };
        if params.num_conn == 0 || params.num_conn > self.cfg.max_num_conn {
            return refuse(out, ErrorCode::InvalidArgument);
        }
        if self.cfg.require_app_keys && key == AppKey::default() {
            return refuse(out, ErrorCode::PermissionDenied);
        }
        if let Some(s) = self.sessions.get_mut(&uid) {
            // Only an identical retransmission is answered; anything else conflicts.
            if s.owner != caller || s.params != params || !s.key.ct_eq(&key) {
                return refuse(out, ErrorCode::AlreadyExists);
            }
            // A REQ the session refuses (it is being released) must not redirect its answers.
            if crate::alphabet::allows(&s.machine, session::Event::Req) {
                s.client = (from, seq);
            }
            return self.step(now, uid, session::Event::Req, None, out);
        }
        if self.state() != State::Serving {
            return refuse(out, ErrorCode::Unavailable);
        }
        if let Some(capacity) = self.cfg.capacity {
            let demand = |rate: u32| if rate == 0 { capacity } else { u64::from(rate) };
            let held: u64 =
                self.sessions.values().filter(|s| s.state().holds_resources()).map(|s| demand(s.params.rate)).sum();
            if held.saturating_add(demand(params.rate)) > capacity {
                return refuse(out, ErrorCode::ResourceExhausted);
            }
        }
        let session = Session {
            machine: Machine::new(),
            owner: caller,
            params,
            key,
            client: (from, seq),
            listeners: Vec::new(),
            prod_listeners: Vec::new(),
            app: None,
            bridge: None,
            failure: None,
            attempts: 0,
        };
        self.sessions.insert(uid, session);
        self.step(now, uid, session::Event::Req, None, out)
    }

    pub(super) fn on_app(&mut self, now: Instant, from: Peer, msg: Msg, out: &mut Outbox) -> Result<(), ProtocolError> {
        let Msg::Hello { uid, seq, key, prod_listeners } = msg else {
            return Err(ProtocolError::Misdirected(msg.name()));
        };
        let refuse = |out: &mut Outbox, code: ErrorCode| {
            out.push(Effect::Send { to: from, msg: Msg::Error { uid, seq, code } });
            Err(ProtocolError::Refused { uid, code })
        };
        let Some(s) = self.sessions.get_mut(&uid) else { return refuse(out, ErrorCode::NotFound) };
        // A session made without a key (a 1.2 client) matches only a Hello without one.
        if !s.key.ct_eq(&key) {
            return refuse(out, ErrorCode::PermissionDenied);
        }
        // A consumer's controller says Hello too (SciStream 1.2 does): it learns the listeners
        // to connect to; whatever listeners it names are not the session's business.
        let producer = s.params.role == Role::Prod;
        if producer && prod_listeners.is_empty() {
            return refuse(out, ErrorCode::InvalidArgument);
        }
        if producer && !s.prod_listeners.is_empty() && s.prod_listeners != prod_listeners {
            return refuse(out, ErrorCode::AlreadyExists);
        }
        // Finished, or being released or aborted: the controller should stop saying Hello.
        if !crate::alphabet::allows(&s.machine, session::Event::Hello) {
            let code = s.failure.unwrap_or(ErrorCode::Aborted);
            return refuse(out, code);
        }
        let first = producer && s.prod_listeners.is_empty();
        if producer {
            s.prod_listeners = prod_listeners;
        }
        s.app = Some((from, seq));
        self.step(now, uid, session::Event::Hello, None, out)?;
        self.answer_hello(uid, first, out);
        Ok(())
    }

    /// Once a Hello is in and the listeners are known: ack the controller and, the first time,
    /// push the producer's listeners to the client (it also polls with ReqListeners).
    pub(super) fn answer_hello(&self, uid: Uid, first: bool, out: &mut Outbox) {
        let Some(s) = self.sessions.get(&uid) else { return };
        let Some((app, app_seq)) = s.app else { return };
        let producer = s.params.role == Role::Prod;
        if s.listeners.is_empty() || (producer && s.prod_listeners.is_empty()) {
            return;
        }
        out.push(Effect::Send { to: app, msg: Msg::HelloAck { uid, seq: app_seq, listeners: s.listeners.clone() } });
        if first && producer {
            let (client, seq) = s.client;
            let prod_listeners = s.prod_listeners.clone();
            out.push(Effect::Send { to: client, msg: Msg::ProdLstn { uid, seq, prod_listeners } });
        }
    }
}
