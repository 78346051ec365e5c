//! S2DS, the data server: per-session machine and the data server's core.
//!
//! ```text
//! Idle --StartLstn--> Binding --Bound--> Reserving --StartConn--> Updating --BridgesUp--> Bridging
//!                        \___ Rel | LeaseExpired | Detach ___\___ Rel | Detach ___\--> Released
//! ```
//!
//! Drive it: on process start feed [`Input::Boot`] (the core announces its incarnation to its
//! control server until that server attaches), then every message from the control server as
//! [`Input::Msg`], every fired timer as [`Input::Timer`], the outcome of each
//! [`Effect::Listen`] as [`Input::Bound`] or [`Input::BindFailed`], and the outcome of each
//! [`Effect::StartBridges`] as [`Input::BridgesUp`] or [`Input::BridgesFailed`], and
//! [`Input::SessionLost`] when a session's resources die under it. The core owns
//! the port pool: it hands out ports with [`Effect::Listen`] and takes them back with
//! [`Effect::Unlisten`]; the control server hears of the ports — and of the host they are
//! reached at, the data server's address on the side they face ([`Face`]) — only once they are
//! bound. A port
//! another process holds is set aside for good and the session gets fresh ports. A session
//! that is not connected within its lease is released on its own, so a lost control server
//! never pins ports.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use crate::alphabet;
use crate::effect::{Effect, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::time::Instant;
use crate::timing::{self, Profile};
use crate::types::{Addr, Credentials, ErrorCode, Face, Faces, Peer, Pool, Role, Uid};

crate::alphabet! {
    /// States of one session at a data server.
    pub enum State { Idle, Binding, Reserving, Updating, Bridging, Released, Failed }
}

crate::alphabet! {
    /// Inputs of the per-session data-server machine.
    pub enum Event { StartLstn, Bound, BindFailed, BindExhausted, StartConn, BridgesUp, BridgesFailed, Lost, Rel, LeaseExpired, Detach }
}

crate::alphabet! {
    /// Outputs of the per-session data-server machine.
    pub enum Action { Listen, ReportListening, Rebind, StartBridges, ReportConnected, Unlisten }
}

#[allow(missing_docs, unreachable_pub)]
mod declaration {
    use rust_fsm::state_machine;
    state_machine! {
        #[state_machine(input(crate::s2ds::Event), state(crate::s2ds::State), output(crate::s2ds::Action))]
        pub s2ds(Idle)

        Idle(StartLstn) => Binding [Listen],
        Binding => {
            StartLstn => Binding,
            Bound => Reserving [ReportListening],
            BindFailed => Binding [Rebind],
            BindExhausted => Failed [Unlisten],
            Rel => Released [Unlisten],
            LeaseExpired => Released [Unlisten],
            Detach => Released [Unlisten],
        },
        Reserving => {
            StartLstn => Reserving,
            StartConn => Updating [StartBridges],
            Lost => Failed [Unlisten],
            Rel => Released [Unlisten],
            LeaseExpired => Released [Unlisten],
            Detach => Released [Unlisten],
        },
        Updating => {
            StartLstn => Updating,
            StartConn => Updating,
            BridgesUp => Bridging [ReportConnected],
            BridgesFailed => Failed [Unlisten],
            Lost => Failed [Unlisten],
            Rel => Released [Unlisten],
            Detach => Released [Unlisten],
        },
        Bridging => {
            StartLstn => Bridging,
            StartConn => Bridging [ReportConnected],
            Lost => Failed [Unlisten],
            Rel => Released [Unlisten],
            Detach => Released [Unlisten],
        },
        Released(Rel) => Released,
        Failed(Rel) => Failed,
    }
}

crate::declared_machine!(s2ds);

/// Data server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The facility this data server belongs to (its control server is `ControlServer(role)`).
    pub facility: Role,
    /// The ports it may hand out.
    pub ports: RangeInclusive<u16>,
    /// The host its listeners are reached at, per side they face: what the control server
    /// advertises (a NAT's public address on the WAN side, when it differs from the bound one).
    pub advertise: Faces<String>,
    /// The timing: its lease on a reservation not yet bridged (`ds_lease`, longer than the
    /// control server's), tombstones, and the backoff of its boot announcement.
    pub timing: Profile,
    /// The rate this node can carry (kB/s), announced to its control server, which places
    /// sessions within it; `None`: no limit of its own.
    pub capacity: Option<u64>,
}

/// One session held by the data server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its machine.
    pub machine: Machine,
    /// Ports it holds (kept after release for the record; returned to the pool).
    pub ports: Vec<u16>,
    /// The side its listeners face.
    pub face: Face,
    /// Targets and credentials from StartConn.
    pub bridge: Option<(Vec<Addr>, Credentials)>,
}

impl Session {
    /// The session's current state.
    pub fn state(&self) -> State {
        *self.machine.state()
    }
}

/// An input to the data server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The process started.
    Boot,
    /// A message arrived.
    Msg {
        /// Sender.
        from: Peer,
        /// The message.
        msg: Msg,
    },
    /// A timer fired.
    Timer(TimerKey),
    /// The bridges of a session are up.
    BridgesUp(Uid),
    /// The bridges of a session could not be started; `code` says why (FAILED_PRECONDITION:
    /// the relay cannot run as asked, e.g. a plain WAN leg not allowed here).
    BridgesFailed {
        /// Session.
        uid: Uid,
        /// Why.
        code: ErrorCode,
    },
    /// The driver lost a session's listeners or bridges (its session actor died).
    SessionLost(Uid),
    /// The operator asked the node to drain (SIGTERM): it offers no port from now on (its
    /// AttachAcks, heartbeats' answers included, say so, and its control server places no new
    /// session on it), refuses a StartLstn for a new session RESOURCE_EXHAUSTED, and keeps
    /// the sessions it holds.
    Drain,
    /// Every listener of a session is bound.
    Bound(Uid),
    /// A session's `port` could not be bound (another process holds it).
    BindFailed {
        /// Session.
        uid: Uid,
        /// The port that failed.
        port: u16,
    },
}

/// The data server's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2ds {
    cfg: Config,
    inc: u64,
    epoch: Option<u64>,
    /// The attachment of `epoch` it serves.
    attachment: u64,
    boot_attempts: u32,
    free: BTreeSet<u16>,
    /// Ports found held by another process: never handed out again.
    busy: BTreeSet<u16>,
    sessions: BTreeMap<Uid, Session>,
    draining: bool,
}

impl S2ds {
    /// A fresh data server of incarnation `inc` (must grow across restarts).
    pub fn new(cfg: Config, inc: u64) -> Self {
        let free = cfg.ports.clone().collect();
        Self {
            cfg,
            inc,
            epoch: None,
            attachment: 0,
            boot_attempts: 0,
            free,
            busy: BTreeSet::new(),
            sessions: BTreeMap::new(),
            draining: false,
        }
    }

    /// Its incarnation.
    pub fn incarnation(&self) -> u64 {
        self.inc
    }

    /// The control server epoch it is attached to.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The sessions it holds (live and remembered).
    pub fn sessions(&self) -> &BTreeMap<Uid, Session> {
        &self.sessions
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Ports not held by any session.
    pub fn free_ports(&self) -> &BTreeSet<u16> {
        &self.free
    }

    /// Whether it drains ([`Input::Drain`]).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Ports set aside because another process held them.
    pub fn busy_ports(&self) -> &BTreeSet<u16> {
        &self.busy
    }

    /// Steps the core.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        match input {
            Input::Drain => {
                self.draining = true;
                Ok(())
            }
            Input::Boot => {
                self.boot_attempts = 1;
                self.send_boot(now, out);
                Ok(())
            }
            Input::Timer(key) => self.on_timer(now, key, out),
            Input::BridgesUp(uid) => {
                let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                alphabet::fire(&mut s.machine, Event::BridgesUp)?;
                self.reply(out, Msg::Connected { uid, inc: self.inc });
                Ok(())
            }
            Input::Bound(uid) => {
                let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                alphabet::fire(&mut s.machine, Event::Bound)?;
                let (ports, face) = (s.ports.clone(), s.face);
                self.lstn(uid, face, ports, out);
                Ok(())
            }
            Input::BindFailed { uid, port } => self.on_bind_failed(now, uid, port, out),
            Input::BridgesFailed { uid, .. } | Input::SessionLost(uid) => {
                let (event, code) = match input {
                    Input::BridgesFailed { code, .. } => (Event::BridgesFailed, code),
                    _ => (Event::Lost, ErrorCode::Aborted),
                };
                let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                alphabet::fire(&mut s.machine, event)?;
                self.close(now, uid, out);
                self.reply(out, Msg::Refused { uid, inc: self.inc, code });
                Ok(())
            }
            Input::Msg { from, msg } => {
                if from != Peer::ControlServer(self.cfg.facility) {
                    return Err(ProtocolError::Misdirected(msg.name()));
                }
                self.on_msg(now, msg, out)
            }
        }
    }

    fn on_msg(&mut self, now: Instant, msg: Msg, out: &mut Outbox) -> Result<(), ProtocolError> {
        if let Msg::Attach { epoch, attachment, keep } = msg {
            return self.on_attach(now, (epoch, attachment), &keep, out);
        }
        let (uid, epoch) = match &msg {
            Msg::StartLstn { uid, epoch, .. } | Msg::StartConn { uid, epoch, .. } | Msg::DsRel { uid, epoch } => {
                (*uid, *epoch)
            }
            other => return Err(ProtocolError::Misdirected(other.name())),
        };
        if self.epoch != Some(epoch) {
            return Err(ProtocolError::Stale(msg.name()));
        }
        match msg {
            Msg::StartLstn { num_conn, role, .. } => self.on_start_lstn(now, uid, num_conn, Face::of(role), out),
            Msg::StartConn { targets, creds, role, rate, .. } => {
                self.on_start_conn(uid, targets, creds, (role, rate), out)
            }
            Msg::DsRel { .. } => self.on_rel(now, uid, out),
            _ => unreachable!("filtered above"),
        }
    }

    /// An Attach of `(epoch, attachment)`. A newer epoch (a control server that restarted) or a newer
    /// attachment of this epoch (a control server that took this data server for lost) drops
    /// every session but the bridges `keep` names; anything else is a repeat or a heartbeat.
    fn on_attach(
        &mut self,
        now: Instant,
        (epoch, attachment): (u64, u64),
        keep: &[Uid],
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let keep: BTreeSet<Uid> = keep.iter().copied().collect();
        let newer = match self.epoch {
            Some(cur) if epoch < cur => return Err(ProtocolError::Stale("Attach")),
            Some(cur) if epoch == cur => attachment > self.attachment,
            _ => true,
        };
        if newer {
            // Whatever the old attachment reserved is orphaned, but for the bridges the control
            // server recovered (a restart that drops no stream).
            let uids: Vec<Uid> = self.sessions.keys().copied().collect();
            for uid in uids {
                let s = self.sessions.get_mut(&uid).expect("listed");
                if keep.contains(&uid) && s.state() == State::Bridging {
                    continue;
                }
                if alphabet::fire(&mut s.machine, Event::Detach).is_ok() {
                    self.close(now, uid, out);
                }
                self.sessions.remove(&uid);
            }
            (self.epoch, self.attachment) = (Some(epoch), attachment);
        }
        out.push(Effect::CancelTimer { key: TimerKey { uid: None, kind: TimerKind::Retransmit } });
        self.boot_attempts = 0;
        let held =
            keep.into_iter().filter(|u| self.sessions.get(u).is_some_and(|s| s.state() == State::Bridging)).collect();
        self.reply(out, Msg::AttachAck { epoch, attachment, inc: self.inc, held, pool: self.pool() });
        Ok(())
    }

    fn on_start_lstn(
        &mut self,
        now: Instant,
        uid: Uid,
        num_conn: u16,
        face: Face,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        if let Some(s) = self.sessions.get_mut(&uid) {
            if usize::from(num_conn) != s.ports.len() || face != s.face {
                self.refuse(uid, ErrorCode::AlreadyExists, out);
                return Err(ProtocolError::Refused { uid, code: ErrorCode::AlreadyExists });
            }
            if let Err(e) = alphabet::fire(&mut s.machine, Event::StartLstn) {
                self.refuse(uid, ErrorCode::Aborted, out);
                return Err(e);
            }
            if s.state() != State::Binding {
                let ports = s.ports.clone();
                self.lstn(uid, face, ports, out);
            }
            return Ok(());
        }
        let n = usize::from(num_conn);
        if self.draining || n == 0 || self.free.len() < n {
            self.refuse(uid, ErrorCode::ResourceExhausted, out);
            return Err(ProtocolError::Refused { uid, code: ErrorCode::ResourceExhausted });
        }
        let ports: Vec<u16> = self.free.iter().copied().take(n).collect();
        for p in &ports {
            self.free.remove(p);
        }
        let mut machine = Machine::new();
        alphabet::fire(&mut machine, Event::StartLstn)?;
        out.push(Effect::Listen { uid, ports: ports.clone(), face });
        out.push(Effect::SetTimer {
            key: TimerKey { uid: Some(uid), kind: TimerKind::Lease },
            at: now + self.cfg.timing.ds_lease(),
        });
        self.sessions.insert(uid, Session { machine, ports, face, bridge: None });
        Ok(())
    }

    fn on_bind_failed(&mut self, now: Instant, uid: Uid, port: u16, out: &mut Outbox) -> Result<(), ProtocolError> {
        let s = self.sessions.get(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
        if !s.ports.contains(&port) || s.state() != State::Binding {
            return Err(ProtocolError::Stale("BindFailed"));
        }
        let n = s.ports.len();
        let old = s.ports.clone();
        // The port is another process's: set it aside, give the rest back, draw afresh.
        self.busy.insert(port);
        out.push(Effect::Unlisten { uid, ports: old.clone() });
        self.free.extend(old.iter().copied().filter(|p| *p != port));
        let s = self.sessions.get_mut(&uid).expect("checked");
        if self.free.len() < n {
            // The ports are closed and back in the pool already; the session keeps them only
            // for the record, so that a retransmitted StartLstn still matches its size.
            alphabet::fire(&mut s.machine, Event::BindExhausted)?;
            self.retire(now, uid, out);
            self.refuse(uid, ErrorCode::ResourceExhausted, out);
            return Ok(());
        }
        alphabet::fire(&mut s.machine, Event::BindFailed)?;
        let ports: Vec<u16> = self.free.iter().copied().take(n).collect();
        for p in &ports {
            self.free.remove(p);
        }
        s.ports = ports.clone();
        let face = s.face;
        out.push(Effect::Listen { uid, ports, face });
        Ok(())
    }

    fn on_start_conn(
        &mut self,
        uid: Uid,
        targets: Vec<Addr>,
        creds: Credentials,
        (role, rate): (Role, u32),
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let Some(s) = self.sessions.get_mut(&uid) else {
            self.refuse(uid, ErrorCode::NotFound, out);
            return Err(ProtocolError::Refused { uid, code: ErrorCode::NotFound });
        };
        if let Some(bridge) = &s.bridge
            && (bridge.0 != targets || bridge.1 != creds)
        {
            self.refuse(uid, ErrorCode::AlreadyExists, out);
            return Err(ProtocolError::Refused { uid, code: ErrorCode::AlreadyExists });
        }
        let action = match alphabet::fire(&mut s.machine, Event::StartConn) {
            Ok(a) => a,
            Err(e) => {
                self.refuse(uid, ErrorCode::Aborted, out);
                return Err(e);
            }
        };
        match action {
            Some(Action::StartBridges) => {
                out.push(Effect::CancelTimer { key: TimerKey { uid: Some(uid), kind: TimerKind::Lease } });
                out.push(Effect::StartBridges {
                    uid,
                    ports: s.ports.clone(),
                    targets: targets.clone(),
                    creds,
                    role,
                    rate,
                });
                s.bridge = Some((targets, creds));
            }
            Some(Action::ReportConnected) => self.reply(out, Msg::Connected { uid, inc: self.inc }),
            _ => {}
        }
        Ok(())
    }

    fn on_rel(&mut self, now: Instant, uid: Uid, out: &mut Outbox) -> Result<(), ProtocolError> {
        if let Some(s) = self.sessions.get_mut(&uid)
            && alphabet::fire(&mut s.machine, Event::Rel)? == Some(Action::Unlisten)
        {
            self.close(now, uid, out);
        }
        // Releasing what is not held is a success: REL is idempotent.
        self.reply(out, Msg::DsReleased { uid, inc: self.inc });
        Ok(())
    }

    fn on_timer(&mut self, now: Instant, key: TimerKey, out: &mut Outbox) -> Result<(), ProtocolError> {
        match (key.uid, key.kind) {
            (None, TimerKind::Retransmit) => {
                if self.boot_attempts > 0 {
                    self.boot_attempts += 1;
                    self.send_boot(now, out);
                }
                Ok(())
            }
            (Some(uid), TimerKind::Lease) => {
                let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                alphabet::fire(&mut s.machine, Event::LeaseExpired)?;
                self.close(now, uid, out);
                Ok(())
            }
            (Some(uid), TimerKind::Tombstone) => {
                if self.sessions.get(&uid).is_some_and(|s| matches!(s.state(), State::Released | State::Failed)) {
                    self.sessions.remove(&uid);
                }
                Ok(())
            }
            _ => Err(ProtocolError::Misdirected("timer")),
        }
    }

    /// Returns a session's ports to the pool (the session has just become terminal).
    fn close(&mut self, now: Instant, uid: Uid, out: &mut Outbox) {
        self.retire(now, uid, out);
        let s = self.sessions.get(&uid).expect("closing a held session");
        out.push(Effect::Unlisten { uid, ports: s.ports.clone() });
        self.free.extend(s.ports.iter().copied());
    }

    /// Stops a session's lease and arms its tombstone (the session has just become terminal).
    fn retire(&self, now: Instant, uid: Uid, out: &mut Outbox) {
        out.push(Effect::CancelTimer { key: TimerKey { uid: Some(uid), kind: TimerKind::Lease } });
        out.push(Effect::SetTimer {
            key: TimerKey { uid: Some(uid), kind: TimerKind::Tombstone },
            at: now + self.cfg.timing.tombstone,
        });
    }

    /// Tells the control server where `uid`'s listeners are reached.
    fn lstn(&self, uid: Uid, face: Face, ports: Vec<u16>, out: &mut Outbox) {
        let host = self.cfg.advertise.get(face).clone();
        self.reply(out, Msg::Lstn { uid, inc: self.inc, host, ports });
    }

    fn send_boot(&self, now: Instant, out: &mut Outbox) {
        self.reply(out, Msg::DsBoot { inc: self.inc });
        out.push(Effect::SetTimer {
            key: TimerKey { uid: None, kind: TimerKind::Retransmit },
            at: now
                + self
                    .cfg
                    .timing
                    .server_backoff
                    .delay(self.boot_attempts, timing::salt(self.cfg.timing.jitter_seed, None)),
        });
    }

    fn refuse(&self, uid: Uid, code: ErrorCode, out: &mut Outbox) {
        self.reply(out, Msg::Refused { uid, inc: self.inc, code });
    }

    /// What it offers: its ports but those another process holds, and its capacity.
    pub fn pool(&self) -> Pool {
        let (first, last) = (u32::from(*self.cfg.ports.start()), u32::from(*self.cfg.ports.end()));
        let range = if first > last { 0 } else { last - first + 1 };
        let ports = range.saturating_sub(u32::try_from(self.busy_ports().len()).unwrap_or(u32::MAX));
        if self.draining {
            return Pool { ports: 0, capacity: self.cfg.capacity };
        }
        Pool { ports, capacity: self.cfg.capacity }
    }

    fn reply(&self, out: &mut Outbox, msg: Msg) {
        out.push(Effect::Send { to: Peer::ControlServer(self.cfg.facility), msg });
    }
}

impl State {
    /// Whether the session is over (nothing may change afterwards).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Released | Self::Failed)
    }
}

#[cfg(test)]
mod tests;
