//! S2CS, the control server: its own machine (attached to its data server or not) and its
//! core: it authenticates callers, admits sessions, decides who may see or change each, and
//! keeps the registry of its sessions. Each session is a core of its own
//! ([`session::Session`]): the control server's core creates it and routes its inputs to it;
//! the session reports back what changed.
//!
//! Drive it: on process start feed [`Input::Boot`]; the core attaches to its data server
//! under its boot `epoch` (which must grow across restarts) and answers REQ with UNAVAILABLE
//! until the data server acknowledges. Then feed every message as [`Input::Msg`], with the
//! caller's identity as the driver authenticated it (`None` when the token was missing or
//! invalid: every client request is refused with UNAUTHENTICATED before any uid is looked up),
//! every fired timer of its own as [`Input::Timer`], and every [`Effect::Report`] a session
//! makes as [`Input::Report`]. Carry out [`Effect::Spawn`] (host the new session's core),
//! [`Effect::ToSession`] (step that session with the input) and [`Effect::Retire`] (drop it).
//! When the data server announces a new incarnation every live session fails (its ports died
//! with the old process) and the core re-attaches.
//!
//! Restarts: the core asks its driver to keep every established session in a durable store
//! ([`Effect::Persist`], [`Effect::Unpersist`]); a restarted control server is built with what
//! the store held ([`S2cs::recover`]). At boot it hosts those sessions again, established, and
//! attaches under its new epoch asking the data server to keep their bridges (`Attach.keep`);
//! whichever the data server no longer holds (`AttachAck.held`) fails. Sessions that were still
//! being set up are not stored: the data server drops them with the old epoch, a retransmitted
//! REQ starts the session afresh, and a later call gets NOT_FOUND. [`ControlServer`] is this whole loop,
//! synchronously: the simulator and the tests drive it; production runs each session core in
//! an actor of its own.
//!
//! Status, List and ReqListeners are pure queries answered from the registry
//! ([`S2cs::status`], [`S2cs::list`], and ReqListeners as a message), ownership decided here.

mod client;
mod data;
mod server;

pub use server::ControlServer;

use crate::alphabet;
use crate::effect::{Effect, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::session::{self, Summary};
use crate::time::Instant;
use crate::timing::{self, Profile};
use crate::types::{Addr, AppKey, Credentials, ErrorCode, Peer, Principal, Role, SessionParams, Uid};
use std::collections::{BTreeMap, BTreeSet};

crate::alphabet! {
    /// States of a control server.
    pub enum State { Attaching, Serving }
}

crate::alphabet! {
    /// Inputs of the control-server machine.
    pub enum Event { AttachAck, DsBoot, DsSilent }
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
            DsSilent => Attaching [Reattach],
        },
    }
}

crate::declared_machine!(s2cs);

/// Control server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The facility it serves; its data server is `DataServer(facility)`.
    pub facility: Role,
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
    /// One of the core's own timers fired (sessions have their own).
    Timer(TimerKey),
    /// A session reported what changed.
    Report {
        /// Session.
        uid: Uid,
        /// What.
        report: session::Report,
    },
    /// The driver lost a session's core (its actor died): whatever it held is released.
    SessionDied(Uid),
}

/// What the control server's core keeps of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The identity that created it; only it (and operators) may act on it.
    pub owner: Principal,
    /// What its REQ asked for.
    pub params: SessionParams,
    /// The key its controllers must present.
    pub key: AppKey,
    /// The WAN credentials of its connection map, once UpdateTargets came (for the store).
    pub creds: Option<Credentials>,
    /// What the session last reported (state `None`: admitted, not yet stepped).
    pub summary: Summary,
}

/// What the durable store keeps of an established session: enough to host it again after a
/// restart, answer status and release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Session.
    pub uid: Uid,
    /// Its owner.
    pub owner: Principal,
    /// What its REQ asked for.
    pub params: SessionParams,
    /// The key its controllers present.
    pub key: AppKey,
    /// This facility's listeners.
    pub listeners: Vec<Addr>,
    /// The producer's listeners.
    pub prod_listeners: Vec<Addr>,
    /// Where the data server forwards to.
    pub targets: Vec<Addr>,
    /// The WAN credentials its bridges are pinned to.
    pub creds: Credentials,
}

impl Entry {
    /// Whether the session holds (or may hold) ports and capacity.
    pub fn holds_resources(&self) -> bool {
        self.summary.state.is_none_or(session::State::holds_resources)
    }

    /// Whether the session is over.
    pub fn is_terminal(&self) -> bool {
        self.summary.state.is_some_and(session::State::is_terminal)
    }
}

/// One session as a status query shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Session.
    pub uid: Uid,
    /// Its owner.
    pub owner: Principal,
    /// What its REQ asked for.
    pub params: SessionParams,
    /// Its state and data.
    pub summary: Summary,
}

/// The control server's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2cs {
    cfg: Config,
    epoch: u64,
    machine: Machine,
    ds_inc: Option<u64>,
    attach_attempts: u32,
    sessions: BTreeMap<Uid, Entry>,
    /// Records to host again at boot (a restart).
    recovering: Vec<Record>,
    /// Recovered sessions the data server has not yet confirmed holding.
    unconfirmed: BTreeSet<Uid>,
    /// This epoch's attachment: grows each time the data server is taken for lost.
    attachment: u64,
    /// When the data server last answered (an AttachAck, or its DsBoot).
    last_heard: Instant,
    /// When the last heartbeat went out.
    last_ping: Instant,
    /// Heartbeats sent since it last answered.
    misses: u32,
    /// Whether the heartbeat timer runs (only while some session holds resources).
    beating: bool,
}

impl S2cs {
    /// A fresh control server whose boot epoch is `epoch`.
    pub fn new(cfg: Config, epoch: u64) -> Self {
        Self::recover(cfg, epoch, Vec::new())
    }

    /// A restarted control server whose boot epoch is `epoch`, with the established sessions
    /// its durable store held; it hosts them again at [`Input::Boot`].
    pub fn recover(cfg: Config, epoch: u64, records: Vec<Record>) -> Self {
        Self {
            cfg,
            epoch,
            machine: Machine::new(),
            ds_inc: None,
            attach_attempts: 0,
            sessions: BTreeMap::new(),
            recovering: records,
            unconfirmed: BTreeSet::new(),
            attachment: 1,
            last_heard: Instant::ZERO,
            last_ping: Instant::ZERO,
            misses: 0,
            beating: false,
        }
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
    pub fn sessions(&self) -> &BTreeMap<Uid, Entry> {
        &self.sessions
    }

    /// One session.
    pub fn session(&self, uid: &Uid) -> Option<&Entry> {
        self.sessions.get(uid)
    }

    /// Session `uid` as `caller` may see it: NOT_FOUND when it is not held, PERMISSION_DENIED
    /// when it is another identity's (operators see every session).
    pub fn status(&self, caller: &Principal, uid: Uid) -> Result<View, ErrorCode> {
        let e = self.sessions.get(&uid).ok_or(ErrorCode::NotFound)?;
        if !self.cfg.may_manage(&e.owner, caller) {
            return Err(ErrorCode::PermissionDenied);
        }
        Ok(view(uid, e))
    }

    /// Every session `caller` may see.
    pub fn list(&self, caller: &Principal) -> Vec<View> {
        self.sessions.iter().filter(|(_, e)| self.cfg.may_manage(&e.owner, caller)).map(|(u, e)| view(*u, e)).collect()
    }

    /// Steps the core.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        match input {
            Input::Boot => {
                for r in std::mem::take(&mut self.recovering) {
                    self.host_recovered(&r, out);
                }
                self.attach_attempts = 0;
                self.last_heard = now;
                self.send_attach(now, out);
                Ok(())
            }
            Input::Timer(TimerKey { uid: None, kind: TimerKind::Retransmit }) => {
                if self.state() == State::Attaching {
                    self.send_attach(now, out);
                }
                Ok(())
            }
            Input::Timer(TimerKey { uid: None, kind: TimerKind::Heartbeat }) => {
                if self.state() == State::Serving {
                    self.heartbeat(now, out);
                }
                Ok(())
            }
            Input::Timer(_) => Err(ProtocolError::Misdirected("timer")),
            Input::Report { uid, report } => {
                let e = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                if report == session::Report::Forget {
                    self.sessions.remove(&uid);
                    out.push(Effect::Retire { uid });
                    return Ok(());
                }
                let established = Some(session::State::Established);
                let was = e.summary.state;
                let bridge = if let session::Report::Bridge { creds, .. } = &report {
                    e.creds = Some(*creds);
                    true
                } else {
                    false
                };
                e.summary.apply(report);
                if e.summary.state == established && (was != established || bridge) {
                    if let Some(r) = record(uid, e) {
                        out.push(Effect::Persist(Box::new(r)));
                    }
                } else if was == established && e.summary.state != established {
                    out.push(Effect::Unpersist { uid });
                }
                Ok(())
            }
            Input::SessionDied(uid) => {
                let e = self.sessions.remove(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                if e.summary.state == Some(session::State::Established) {
                    out.push(Effect::Unpersist { uid });
                }
                if e.holds_resources() {
                    // Whatever the data server still holds for it is nobody's now.
                    let msg = Msg::DsRel { uid, epoch: self.epoch };
                    out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility), msg });
                }
                Ok(())
            }
            Input::Msg { from, caller, msg } => match (from, &msg) {
                (Peer::DataServer(role), _) if role == self.cfg.facility => self.on_data(now, msg, out),
                (Peer::DataServer(_), _) => Err(ProtocolError::Misdirected(msg.name())),
                // The app key, not a token, proves a Hello: a controller's, or a user client's
                // saying it for one (1.2's `outbound-request`, a consumer's Hello).
                (_, Msg::Hello { .. }) => self.on_app(from, msg, out),
                (Peer::App(_), _) => Err(ProtocolError::Misdirected(msg.name())),
                (Peer::Client(_) | Peer::ControlServer(_), _) => self.on_client(now, from, caller, msg, out),
            },
        }
    }

    fn backoff(&self, attempt: u32) -> std::time::Duration {
        let t = &self.cfg.timing;
        t.server_backoff.delay(attempt, timing::salt(t.jitter_seed, None))
    }

    /// Hosts a session the store held, established; it stays unconfirmed until the data server
    /// says whether it still runs its bridges.
    fn host_recovered(&mut self, r: &Record, out: &mut Outbox) {
        let setup = session::Setup {
            uid: r.uid,
            facility: self.cfg.facility,
            epoch: self.epoch,
            allow_plain_wan: self.cfg.allow_plain_wan,
            timing: self.cfg.timing,
            owner: r.owner.clone(),
            params: r.params,
        };
        let summary = Summary {
            state: Some(session::State::Established),
            listeners: r.listeners.clone(),
            prod_listeners: r.prod_listeners.clone(),
            targets: r.targets.clone(),
            failure: None,
        };
        let entry = Entry { owner: r.owner.clone(), params: r.params, key: r.key, creds: Some(r.creds), summary };
        self.sessions.insert(r.uid, entry);
        self.unconfirmed.insert(r.uid);
        out.push(Effect::Spawn(Box::new(session::Session::recovered(setup, r))));
    }

    /// While serving: the data server is asked whether it is there, or, after
    /// [`Profile::link_silence`] without a word from it, taken for lost. Its sessions then fail
    /// (their bridges may still run, but no control server could release them if it never
    /// came back), and the core attaches again under a new `attachment`, so the data server drops
    /// whatever it still runs of this epoch when it hears from the core again.
    fn heartbeat(&mut self, now: Instant, out: &mut Outbox) {
        self.beating = false;
        if !self.sessions.values().any(Entry::holds_resources) {
            // Nothing to lose: the next session admitted starts the heartbeat again.
            return;
        }
        let t = &self.cfg.timing;
        if now.saturating_since(self.last_heard) >= t.link_silence {
            alphabet::fire(&mut self.machine, Event::DsSilent).ok();
            self.attachment += 1;
            self.lose_data_server(now, out);
            return;
        }
        let msg = Msg::Attach { epoch: self.epoch, attachment: self.attachment, keep: Vec::new() };
        out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility), msg });
        // When the previous one went unanswered, the next goes soon (a lossy LAN must not pass
        // for a dead data server), with the data-server backoff.
        self.misses = if self.last_heard >= self.last_ping { 0 } else { self.misses + 1 };
        self.last_ping = now;
        self.arm_heartbeat(now, out);
    }

    /// Starts watching the data server again after a time without sessions: the silence is
    /// counted from now, not from the last answer before the idle time.
    pub(super) fn start_heartbeat(&mut self, now: Instant, out: &mut Outbox) {
        (self.last_heard, self.last_ping, self.misses) = (now, now, 0);
        self.arm_heartbeat(now, out);
    }

    pub(super) fn arm_heartbeat(&mut self, now: Instant, out: &mut Outbox) {
        self.beating = true;
        let t = &self.cfg.timing;
        let next = if self.misses == 0 { t.link_heartbeat } else { self.backoff(self.misses) };
        out.push(Effect::SetTimer { key: TimerKey { uid: None, kind: TimerKind::Heartbeat }, at: now + next });
    }

    /// What its data server held is gone (it restarted, or is taken for lost): every live
    /// session fails, nothing recovered is kept, and the core attaches again.
    pub(super) fn lose_data_server(&mut self, now: Instant, out: &mut Outbox) {
        self.unconfirmed.clear();
        for (uid, e) in &self.sessions {
            if e.holds_resources() {
                out.push(Effect::ToSession { uid: *uid, input: session::Input::DsLost });
            }
        }
        self.attach_attempts = 0;
        self.send_attach(now, out);
    }

    fn send_attach(&mut self, now: Instant, out: &mut Outbox) {
        self.attach_attempts += 1;
        let keep = self.unconfirmed.iter().copied().collect();
        let msg = Msg::Attach { epoch: self.epoch, attachment: self.attachment, keep };
        out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility), msg });
        out.push(Effect::SetTimer {
            key: TimerKey { uid: None, kind: TimerKind::Retransmit },
            at: now + self.backoff(self.attach_attempts),
        });
    }
}

/// The store's record of an established session (`None` before its connection map came).
fn record(uid: Uid, e: &Entry) -> Option<Record> {
    Some(Record {
        uid,
        owner: e.owner.clone(),
        params: e.params,
        key: e.key,
        listeners: e.summary.listeners.clone(),
        prod_listeners: e.summary.prod_listeners.clone(),
        targets: e.summary.targets.clone(),
        creds: e.creds?,
    })
}

fn view(uid: Uid, e: &Entry) -> View {
    View { uid, owner: e.owner.clone(), params: e.params, summary: e.summary.clone() }
}

#[cfg(test)]
mod tests;
