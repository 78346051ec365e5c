//! S2CS, the control server: its own machine (attached to its data server or not) and the
//! core that authenticates callers and hosts one [`session`](crate::session) machine per uid.
//!
//! Drive it: on process start feed [`Input::Boot`]; the core attaches to its data server
//! under its boot `epoch` (which must grow across restarts) and answers REQ with UNAVAILABLE
//! until the data server acknowledges. Then feed every message as [`Input::Msg`], with the
//! caller's identity as the driver authenticated it (`None` when the token was missing or
//! invalid: every client request is refused with UNAUTHENTICATED before any uid is looked up),
//! and every fired timer as [`Input::Timer`]. When the data server announces a new incarnation
//! every live session fails (its ports died with the old process) and the core re-attaches.

mod client;
mod data;

use crate::alphabet;
use crate::effect::{Effect, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::session::{self, Session};
use crate::time::Instant;
use crate::timing::{self, Profile};
use crate::types::{ErrorCode, Peer, Principal, Role, Uid};
use std::collections::BTreeMap;

crate::alphabet! {
    /// States of a control server.
    pub enum State { Attaching, Serving }
}

crate::alphabet! {
    /// Inputs of the control-server machine.
    pub enum Event { AttachAck, DsBoot }
}

crate::alphabet! {
    /// Outputs of the control-server machine.
    pub enum Action {
        /// Start serving requests.
        Serve,
        /// Fail the live sessions and attach again.
        Reattach,
    }
}

#[allow(missing_docs, unreachable_pub)]
mod declaration {
    use rust_fsm::state_machine;
    state_machine! {
        #[state_machine(input(crate::s2cs::Event), state(crate::s2cs::State), output(crate::s2cs::Action))]
        pub s2cs(Attaching)

        Attaching => {
            AttachAck => Serving [Serve],
            DsBoot => Attaching [Reattach],
        },
        Serving => {
            AttachAck => Serving,
            DsBoot => Attaching [Reattach],
        },
    }
}

crate::declared_machine!(s2cs);

/// Control server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The facility it serves; its data server is `DataServer(facility)`.
    pub facility: Role,
    /// The host its data server's listeners are reachable at.
    pub advertise_host: String,
    /// Largest num_conn a REQ may ask for.
    pub max_num_conn: u16,
    /// The timing: its lease (`cs_lease`, REQ to established), tombstones, and the backoff
    /// towards the data server (`server_backoff`).
    pub timing: Profile,
    /// Refuse a REQ without an app key. SciStream 1.2 clients send none; their sessions then
    /// accept only a Hello without a key, as 1.2 controllers send it.
    pub require_app_keys: bool,
    /// Serve sessions whose UpdateTargets brings no credentials (SciStream 1.2 clients) with a
    /// plain-text WAN leg; otherwise such an UpdateTargets is refused (FAILED_PRECONDITION).
    pub allow_plain_wan: bool,
    /// The facility's capacity in the rate unit (kB/s): the rates of the sessions holding
    /// resources may not add up to more; an unlimited rate (0) takes all of it. `None`: no limit.
    pub capacity: Option<u64>,
    /// Identities that may query, update and release any session (operators); everybody
    /// else only their own.
    pub operators: Vec<Principal>,
}

impl Config {
    /// Whether `caller` may act on a session `owner` owns.
    pub fn may_manage(&self, owner: &Principal, caller: &Principal) -> bool {
        owner == caller || self.operators.contains(caller)
    }
}

/// An input to the control server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The process started.
    Boot,
    /// A message arrived from `from`; `caller` is the identity its token proved, if any.
    Msg {
        /// Sender.
        from: Peer,
        /// Authenticated identity of the sender (client requests only).
        caller: Option<Principal>,
        /// The message.
        msg: Msg,
    },
    /// A timer fired.
    Timer(TimerKey),
}

/// The control server's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2cs {
    cfg: Config,
    epoch: u64,
    machine: Machine,
    ds_inc: Option<u64>,
    attach_attempts: u32,
    sessions: BTreeMap<Uid, Session>,
}

impl S2cs {
    /// A fresh control server whose boot epoch is `epoch`.
    pub fn new(cfg: Config, epoch: u64) -> Self {
        Self { cfg, epoch, machine: Machine::new(), ds_inc: None, attach_attempts: 0, sessions: BTreeMap::new() }
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Its own state.
    pub fn state(&self) -> State {
        *self.machine.state()
    }

    /// The sessions it holds (live and remembered).
    pub fn sessions(&self) -> &BTreeMap<Uid, Session> {
        &self.sessions
    }

    /// One session.
    pub fn session(&self, uid: &Uid) -> Option<&Session> {
        self.sessions.get(uid)
    }

    /// Steps the core.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        match input {
            Input::Boot => {
                self.attach_attempts = 0;
                self.send_attach(now, out);
                Ok(())
            }
            Input::Timer(key) => self.on_timer(now, key, out),
            Input::Msg { from, caller, msg } => match from {
                Peer::DataServer(role) if role == self.cfg.facility => self.on_data(now, msg, out),
                Peer::DataServer(_) => Err(ProtocolError::Misdirected(msg.name())),
                Peer::App(_) => self.on_app(now, from, msg, out),
                Peer::Client(_) | Peer::ControlServer(_) => self.on_client(now, from, caller, msg, out),
            },
        }
    }

    fn on_timer(&mut self, now: Instant, key: TimerKey, out: &mut Outbox) -> Result<(), ProtocolError> {
        let Some(uid) = key.uid else {
            if key.kind == TimerKind::Retransmit && self.state() == State::Attaching {
                self.send_attach(now, out);
            }
            return Ok(());
        };
        let state = self.sessions.get(&uid).ok_or(ProtocolError::UnknownSession(uid))?.state();
        match key.kind {
            TimerKind::Retransmit => {
                self.retransmit_ds(now, uid, out);
                Ok(())
            }
            TimerKind::Lease => {
                self.step(now, uid, session::Event::LeaseExpired, Some(ErrorCode::DeadlineExceeded), out)
            }
            TimerKind::Tombstone if state.is_terminal() => {
                self.sessions.remove(&uid);
                Ok(())
            }
            TimerKind::Tombstone | TimerKind::Deadline => Err(ProtocolError::Misdirected("timer")),
        }
    }

    /// Feeds `event` to a session and carries out the declared action. `failure` is recorded
    /// as the session's failure code when the transition fails it.
    fn step(
        &mut self,
        now: Instant,
        uid: Uid,
        event: session::Event,
        failure: Option<ErrorCode>,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
        let prev = s.state();
        let action = alphabet::fire(&mut s.machine, event)?;
        let state = s.state();
        if matches!(state, session::State::Aborting | session::State::Failed) && s.failure.is_none() {
            s.failure = failure.or(Some(ErrorCode::Aborted));
        }
        let (client, seq) = s.client;
        match action {
            None => {}
            Some(session::Action::StartLstn) => {
                s.attempts = 0;
                out.push(Effect::SetTimer { key: lease_key(uid), at: now + self.cfg.timing.cs_lease() });
                self.retransmit_ds(now, uid, out);
            }
            Some(session::Action::Resp) => {
                let msg =
                    Msg::Resp { uid, seq, listeners: s.listeners.clone(), prod_listeners: s.prod_listeners.clone() };
                out.push(Effect::Send { to: client, msg });
            }
            Some(session::Action::StartConn | session::Action::Release | session::Action::Abort) => {
                s.attempts = 0;
                if action == Some(session::Action::Abort) {
                    let code = s.failure.unwrap_or(ErrorCode::Aborted);
                    out.push(Effect::Send { to: client, msg: Msg::Error { uid, seq, code } });
                }
                if action != Some(session::Action::StartConn) {
                    out.push(Effect::CancelTimer { key: lease_key(uid) });
                }
                self.retransmit_ds(now, uid, out);
            }
            Some(session::Action::Updated) => {
                out.push(Effect::CancelTimer { key: lease_key(uid) });
                out.push(Effect::CancelTimer { key: retransmit_key(uid) });
                out.push(Effect::Send { to: client, msg: Msg::Updated { uid, seq } });
            }
            Some(session::Action::ReplyReleased) => {
                out.push(Effect::Send { to: client, msg: Msg::Released { uid, seq } });
            }
            Some(session::Action::ReportError) => {
                let code = s.failure.unwrap_or(ErrorCode::Aborted);
                out.push(Effect::Send { to: client, msg: Msg::Error { uid, seq, code } });
            }
        }
        if state.is_terminal() && !prev.is_terminal() {
            out.push(Effect::CancelTimer { key: lease_key(uid) });
            out.push(Effect::CancelTimer { key: retransmit_key(uid) });
            out.push(Effect::SetTimer { key: tombstone_key(uid), at: now + self.cfg.timing.tombstone });
        }
        Ok(())
    }

    /// (Re)sends the data-server request the session is waiting on, and arms the retransmit
    /// timer with backoff.
    fn retransmit_ds(&mut self, now: Instant, uid: Uid, out: &mut Outbox) {
        let epoch = self.epoch;
        let Some(s) = self.sessions.get_mut(&uid) else { return };
        let msg = match s.state() {
            session::State::Reserving => Msg::StartLstn { uid, epoch, num_conn: s.params.num_conn },
            session::State::Updating => {
                let (targets, creds) = s.bridge.clone().expect("updating sessions have a map");
                Msg::StartConn { uid, epoch, targets, creds, role: s.params.role, rate: s.params.rate }
            }
            session::State::Releasing | session::State::Aborting => Msg::DsRel { uid, epoch },
            _ => return,
        };
        s.attempts += 1;
        let attempts = s.attempts;
        out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility), msg });
        out.push(Effect::SetTimer { key: retransmit_key(uid), at: now + self.backoff(attempts, Some(uid)) });
    }

    fn backoff(&self, attempt: u32, uid: Option<Uid>) -> std::time::Duration {
        let t = &self.cfg.timing;
        t.server_backoff.delay(attempt, timing::salt(t.jitter_seed, uid))
    }

    fn send_attach(&mut self, now: Instant, out: &mut Outbox) {
        self.attach_attempts += 1;
        out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility), msg: Msg::Attach { epoch: self.epoch } });
        out.push(Effect::SetTimer {
            key: TimerKey { uid: None, kind: TimerKind::Retransmit },
            at: now + self.backoff(self.attach_attempts, None),
        });
    }
}

pub(crate) fn lease_key(uid: Uid) -> TimerKey {
    TimerKey { uid: Some(uid), kind: TimerKind::Lease }
}

pub(crate) fn retransmit_key(uid: Uid) -> TimerKey {
    TimerKey { uid: Some(uid), kind: TimerKind::Retransmit }
}

pub(crate) fn tombstone_key(uid: Uid) -> TimerKey {
    TimerKey { uid: Some(uid), kind: TimerKind::Tombstone }
}

#[cfg(test)]
mod tests;
