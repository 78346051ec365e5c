//! S2CS, the control server: its own machine (attached to its data server or not) and its
//! core: it authenticates callers, admits sessions, decides who may see or change each, and
//! keeps the registry of its sessions. Each session is a core of its own
//! ([`session::Session`]): the control server's core creates it and routes its inputs to it;
//! the session reports back what changed.
//!
//! Data servers: the control server drives `cfg.nodes` data-server nodes
//! (`Peer::DataServer(facility, Node(n))`), each with a link of its own ([`NodeLink`]: the
//! declared machine below runs once per node). It places each admitted session on one node
//! ([`S2cs::place`]: attached nodes with room for its ports and rate, least loaded by rate, then
//! by sessions); a node's restart or silence fails only the sessions placed on it.
//!
//! Drive it: on process start feed [`Input::Boot`]; the core attaches to each node under its
//! boot `epoch` (which must grow across restarts) and answers REQ with UNAVAILABLE until some
//! node acknowledges. Then feed every message as [`Input::Msg`], with the
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
//! Policy ([`Config::policy`], [`crate::policy`]): a REQ beyond its caller's quota, and a
//! Hello or UpdateTargets naming an address outside the facility's destination policy, are
//! refused here, before the session sees them (nothing reserved, nothing dialled); the
//! addresses must reach the core resolved (the driver resolves names once). Each such decision,
//! each session created, released or expired, is said as [`Effect::Audit`].
//!
//! Status, List and ReqListeners are pure queries answered from the registry
//! ([`S2cs::status`], [`S2cs::list`], and ReqListeners as a message), ownership decided here.

mod client;
mod data;
mod server;

pub use server::ControlServer;

use crate::alphabet;
use crate::audit::{Audit, Decision};
use crate::effect::{Effect, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::policy::Policy;
use crate::session::{self, Summary};
use crate::time::Instant;
use crate::timing::{self, Profile};
use crate::types::{Addr, AppKey, Credentials, ErrorCode, Node, Peer, Pool, Principal, Role, SessionParams, Uid, Why};
use std::collections::{BTreeMap, BTreeSet};

crate::alphabet! {
    /// States of a control server's link to one data-server node (the server's own state is
    /// `Serving` once any node's is).
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
    /// The facility it serves; its data-server nodes are `DataServer(facility, Node(0..nodes))`.
    pub facility: Role,
    /// How many data-server nodes it places sessions on (at least one).
    pub nodes: u16,
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
    /// The rate (kB/s) given to a REQ that asks for none (rate 0); 0 keeps such sessions
    /// unlimited. The session then holds, reports and is paced at this rate as if its REQ had
    /// asked for it, and a retransmission of that REQ (still rate 0) is the same request.
    pub default_rate: u32,
    /// Identities that may query, update and release any session (operators); everybody
    /// else only their own. Quotas do not hold them.
    pub operators: Vec<Principal>,
    /// What the facility's gateway may reach and who may ask for what ([`Policy`]).
    pub policy: Policy,
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
    /// The operator asked the server to drain (SIGTERM): from now on no new session is
    /// admitted (a REQ for a uid it does not hold is refused UNAVAILABLE, `Why::Draining`, so
    /// that clients retry, against its successor); the sessions it holds go on.
    Drain,
    /// The operator changed what may change while serving (SIGHUP): the facility's capacity,
    /// its default rate, its operators and its policy. Admitted sessions keep what they were
    /// admitted with: a new policy holds calls from now on (a Hello or UpdateTargets, also of
    /// an established session, and every new REQ); what the data server already dials, it
    /// goes on dialling.
    Reconfigure {
        /// The facility's capacity, kB/s (`None`: no limit).
        capacity: Option<u64>,
        /// The rate given to requests that ask for none (0: unlimited).
        default_rate: u32,
        /// Identities that may manage every session.
        operators: Vec<Principal>,
        /// The destination policy and the quotas.
        policy: Box<Policy>,
    },
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
    /// The data-server node it is placed on.
    pub node: Node,
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
    /// The data-server node it is placed on.
    pub node: Node,
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
    /// The node it is placed on.
    pub node: Node,
    /// Its state and data.
    pub summary: Summary,
}

/// What the control server knows of one of its data-server nodes, and its link to it: the
/// declared machine (attaching or serving) runs once per node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLink {
    machine: Machine,
    /// The node's incarnation, once it announced one.
    inc: Option<u64>,
    attach_attempts: u32,
    /// Recovered sessions on this node it has not yet confirmed holding.
    unconfirmed: BTreeSet<Uid>,
    /// This epoch's attachment: grows each time the node is taken for lost.
    attachment: u64,
    /// When the node last answered (an AttachAck, or its DsBoot).
    last_heard: Instant,
    /// When the last heartbeat went out.
    last_ping: Instant,
    /// Heartbeats sent since it last answered.
    misses: u32,
    /// Whether the heartbeat timer runs (only while some session on the node holds resources).
    beating: bool,
    /// What it offers, as its last AttachAck said.
    pool: Pool,
}

impl NodeLink {
    fn new() -> Self {
        Self {
            machine: Machine::new(),
            inc: None,
            attach_attempts: 0,
            unconfirmed: BTreeSet::new(),
            attachment: 1,
            last_heard: Instant::ZERO,
            last_ping: Instant::ZERO,
            misses: 0,
            beating: false,
            pool: Pool::default(),
        }
    }

    /// Its state: attached (serving) or not.
    pub fn state(&self) -> State {
        *self.machine.state()
    }

    /// What it offers, as it last said (nothing before it first attached).
    pub fn pool(&self) -> Pool {
        self.pool
    }
}

/// What the sessions placed on one node hold there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Ports (the sum of their num_conn).
    pub ports: u32,
    /// Rate in kB/s; a session with no rate limit counts as the node's whole capacity (or
    /// `u32::MAX` on a node without one).
    pub rate: u64,
    /// Sessions.
    pub sessions: u32,
}

/// The control server's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2cs {
    cfg: Config,
    epoch: u64,
    nodes: Vec<NodeLink>,
    sessions: BTreeMap<Uid, Entry>,
    /// Records to host again at boot (a restart).
    recovering: Vec<Record>,
    /// Draining: no new session is admitted.
    draining: bool,
}

impl S2cs {
    /// A fresh control server whose boot epoch is `epoch`.
    pub fn new(cfg: Config, epoch: u64) -> Self {
        Self::recover(cfg, epoch, Vec::new())
    }

    /// A restarted control server whose boot epoch is `epoch`, with the established sessions
    /// its durable store held; it hosts them again at [`Input::Boot`]. A record placed on a
    /// node the configuration no longer has is hosted and failed at once.
    pub fn recover(cfg: Config, epoch: u64, records: Vec<Record>) -> Self {
        let nodes = (0..cfg.nodes.max(1)).map(|_| NodeLink::new()).collect();
        Self { cfg, epoch, nodes, sessions: BTreeMap::new(), recovering: records, draining: false }
    }

    /// Whether it drains ([`Input::Drain`]).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// How many sessions hold (or may hold) ports and capacity: what a drain waits for.
    pub fn holding(&self) -> usize {
        self.sessions.values().filter(|e| e.holds_resources()).count()
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Its own state: serving once any of its nodes is attached, attaching while none is.
    pub fn state(&self) -> State {
        if self.nodes.iter().any(|n| n.state() == State::Serving) { State::Serving } else { State::Attaching }
    }

    /// Its data-server nodes, in order ([`Node`] indexes them).
    pub fn nodes(&self) -> &[NodeLink] {
        &self.nodes
    }

    /// What the sessions placed on `node` hold there.
    pub fn load(&self, node: Node) -> Load {
        let capacity = self.nodes.get(node.index()).and_then(|n| n.pool.capacity);
        let mut load = Load::default();
        for e in self.sessions.values().filter(|e| e.node == node && e.holds_resources()) {
            load.ports += u32::from(e.params.num_conn);
            load.rate = load.rate.saturating_add(demand(e.params.rate, capacity));
            load.sessions += 1;
        }
        load
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
                for n in 0..self.nodes.len() {
                    let node = Node(u16::try_from(n).unwrap_or(u16::MAX));
                    let link = &mut self.nodes[n];
                    (link.attach_attempts, link.last_heard) = (0, now);
                    self.send_attach(now, node, out);
                }
                Ok(())
            }
            Input::Timer(TimerKey { uid: None, kind: TimerKind::Attach(node) }) => {
                if self.link(node)?.state() == State::Attaching {
                    self.send_attach(now, node, out);
                }
                Ok(())
            }
            Input::Timer(TimerKey { uid: None, kind: TimerKind::Heartbeat(node) }) => {
                if self.link(node)?.state() == State::Serving {
                    self.heartbeat(now, node, out);
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
                let ended = match e.summary.state {
                    Some(session::State::Released) => Some(Decision::Released),
                    Some(session::State::Failed) if e.summary.why == Why::Lease => Some(Decision::Expired),
                    _ => None,
                };
                if let Some(decision) = ended
                    && e.summary.state != was
                {
                    let a = Audit {
                        decision,
                        uid,
                        identity: e.owner.clone(),
                        role: e.params.role,
                        addrs: e.summary.targets.clone(),
                        from: None,
                        why: e.summary.why,
                    };
                    out.push(Effect::Audit(Box::new(a)));
                }
                if e.summary.state == established && (was != established || bridge) {
                    if let Some(r) = record(uid, e) {
                        out.push(Effect::Persist(Box::new(r)));
                    }
                } else if was == established && e.summary.state != established {
                    out.push(Effect::Unpersist { uid });
                }
                Ok(())
            }
            Input::Drain => {
                self.draining = true;
                Ok(())
            }
            Input::Reconfigure { capacity, default_rate, operators, policy } => {
                self.cfg.capacity = capacity;
                self.cfg.default_rate = default_rate;
                self.cfg.operators = operators;
                self.cfg.policy = *policy;
                Ok(())
            }
            Input::SessionDied(uid) => {
                let e = self.sessions.remove(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                if e.summary.state == Some(session::State::Established) {
                    out.push(Effect::Unpersist { uid });
                }
                if e.holds_resources() && e.node.index() < self.nodes.len() {
                    // Whatever its node still holds for it is nobody's now.
                    let msg = Msg::DsRel { uid, epoch: self.epoch };
                    out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility, e.node), msg });
                }
                Ok(())
            }
            Input::Msg { from, caller, msg } => match (from, &msg) {
                (Peer::DataServer(role, node), _) if role == self.cfg.facility && node.index() < self.nodes.len() => {
                    self.on_data(now, node, msg, out)
                }
                (Peer::DataServer(..), _) => Err(ProtocolError::Misdirected(msg.name())),
                // The app key, not a token, proves a Hello: a controller's, or a user client's
                // saying it for one (1.2's `outbound-request`, a consumer's Hello).
                (_, Msg::Hello { .. }) => self.on_app(from, msg, out),
                (Peer::App(_), _) => Err(ProtocolError::Misdirected(msg.name())),
                (Peer::Client(_) | Peer::ControlServer(_), _) => self.on_client(now, from, caller, msg, out),
            },
        }
    }

    fn link(&self, node: Node) -> Result<&NodeLink, ProtocolError> {
        self.nodes.get(node.index()).ok_or(ProtocolError::Misdirected("timer"))
    }

    pub(super) fn link_mut(&mut self, node: Node) -> &mut NodeLink {
        &mut self.nodes[node.index()]
    }

    /// Where a new session goes: among the attached nodes, those with room for its num_conn
    /// ports and its rate; of these the least loaded by rate, then by sessions, then the first.
    /// UNAVAILABLE when no node is attached, RESOURCE_EXHAUSTED when none has room (saying
    /// whether ports or the rate did not fit: ports, when some node lacked them).
    pub fn place(&self, params: SessionParams) -> Result<Node, (ErrorCode, Why)> {
        let mut best: Option<(u64, u32, Node)> = None;
        let mut attached = false;
        let mut most_free = 0u32;
        // The node with the most rate left, for a refusal on capacity.
        let mut roomiest: Option<(u64, u64)> = None;
        let mut short_of_ports = false;
        for (i, link) in self.nodes.iter().enumerate() {
            if link.state() != State::Serving {
                continue;
            }
            attached = true;
            let node = Node(u16::try_from(i).unwrap_or(u16::MAX));
            let load = self.load(node);
            let free = link.pool.ports.saturating_sub(load.ports);
            most_free = most_free.max(free);
            if free < u32::from(params.num_conn) {
                short_of_ports = true;
                continue;
            }
            if let Some(capacity) = link.pool.capacity
                && load.rate.saturating_add(demand(params.rate, Some(capacity))) > capacity
            {
                if roomiest.is_none_or(|(c, u)| capacity.saturating_sub(load.rate) > c.saturating_sub(u)) {
                    roomiest = Some((capacity, load.rate));
                }
                continue;
            }
            if best.is_none_or(|(rate, sessions, _)| (load.rate, load.sessions) < (rate, sessions)) {
                best = Some((load.rate, load.sessions, node));
            }
        }
        match (best, roomiest) {
            (Some((_, _, node)), _) => Ok(node),
            (None, _) if !attached => Err((ErrorCode::Unavailable, Why::NoDataServer)),
            (None, Some((capacity, in_use))) if !short_of_ports => {
                Err((ErrorCode::ResourceExhausted, Why::Capacity { capacity, in_use }))
            }
            (None, _) => Err((ErrorCode::ResourceExhausted, Why::Ports { asked: params.num_conn, free: most_free })),
        }
    }

    fn backoff(&self, attempt: u32) -> std::time::Duration {
        let t = &self.cfg.timing;
        t.server_backoff.delay(attempt, timing::salt(t.jitter_seed, None))
    }

    /// Hosts a session the store held, established; it stays unconfirmed until its node says
    /// whether it still runs its bridges. One placed on a node no longer configured fails.
    fn host_recovered(&mut self, r: &Record, out: &mut Outbox) {
        let setup = session::Setup {
            uid: r.uid,
            facility: self.cfg.facility,
            node: r.node,
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
            why: Why::Unspecified,
        };
        let entry =
            Entry { owner: r.owner.clone(), params: r.params, key: r.key, creds: Some(r.creds), node: r.node, summary };
        self.sessions.insert(r.uid, entry);
        out.push(Effect::Spawn(Box::new(session::Session::recovered(setup, r))));
        match self.nodes.get_mut(r.node.index()) {
            Some(link) => {
                link.unconfirmed.insert(r.uid);
            }
            None => out.push(Effect::ToSession { uid: r.uid, input: session::Input::DsLost }),
        }
    }

    /// While serving: the node is asked whether it is there, or, after
    /// [`Profile::link_silence`] without a word from it, taken for lost. Its sessions then fail
    /// (their bridges may still run, but no control server could release them if it never
    /// came back), and the core attaches again under a new `attachment`, so the node drops
    /// whatever it still runs of this epoch when it hears from the core again.
    fn heartbeat(&mut self, now: Instant, node: Node, out: &mut Outbox) {
        self.link_mut(node).beating = false;
        if !self.sessions.values().any(|e| e.node == node && e.holds_resources()) {
            // Nothing to lose: the next session placed there starts the heartbeat again.
            return;
        }
        let (silence, epoch) = (self.cfg.timing.link_silence, self.epoch);
        let link = self.link_mut(node);
        if now.saturating_since(link.last_heard) >= silence {
            alphabet::fire(&mut link.machine, Event::DsSilent).ok();
            link.attachment += 1;
            self.lose_data_server(now, node, out);
            return;
        }
        let msg = Msg::Attach { epoch, attachment: link.attachment, keep: Vec::new() };
        // When the previous one went unanswered, the next goes soon (a lossy LAN must not pass
        // for a dead node), with the data-server backoff.
        link.misses = if link.last_heard >= link.last_ping { 0 } else { link.misses + 1 };
        link.last_ping = now;
        out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility, node), msg });
        self.arm_heartbeat(now, node, out);
    }

    /// Starts watching a node again after a time without sessions on it: the silence is
    /// counted from now, not from the last answer before the idle time.
    pub(super) fn start_heartbeat(&mut self, now: Instant, node: Node, out: &mut Outbox) {
        let link = self.link_mut(node);
        (link.last_heard, link.last_ping, link.misses) = (now, now, 0);
        self.arm_heartbeat(now, node, out);
    }

    pub(super) fn arm_heartbeat(&mut self, now: Instant, node: Node, out: &mut Outbox) {
        let misses = self.link_mut(node).misses;
        let next = if misses == 0 { self.cfg.timing.link_heartbeat } else { self.backoff(misses) };
        self.link_mut(node).beating = true;
        out.push(Effect::SetTimer { key: TimerKey { uid: None, kind: TimerKind::Heartbeat(node) }, at: now + next });
    }

    /// What a node held is gone (it restarted, or is taken for lost): every live session on it
    /// fails, nothing recovered there is kept, and the core attaches to it again.
    pub(super) fn lose_data_server(&mut self, now: Instant, node: Node, out: &mut Outbox) {
        let link = self.link_mut(node);
        link.unconfirmed.clear();
        link.attach_attempts = 0;
        for (uid, e) in &self.sessions {
            if e.node == node && e.holds_resources() {
                out.push(Effect::ToSession { uid: *uid, input: session::Input::DsLost });
            }
        }
        self.send_attach(now, node, out);
    }

    fn send_attach(&mut self, now: Instant, node: Node, out: &mut Outbox) {
        let epoch = self.epoch;
        let link = self.link_mut(node);
        link.attach_attempts += 1;
        let (attempts, attachment) = (link.attach_attempts, link.attachment);
        let keep = link.unconfirmed.iter().copied().collect();
        let msg = Msg::Attach { epoch, attachment, keep };
        out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility, node), msg });
        out.push(Effect::SetTimer {
            key: TimerKey { uid: None, kind: TimerKind::Attach(node) },
            at: now + self.backoff(attempts),
        });
    }
}

/// What a session's rate asks of a node: its rate, or, with no limit, all the node's capacity.
fn demand(rate: u32, capacity: Option<u64>) -> u64 {
    if rate == 0 { capacity.unwrap_or(u64::from(u32::MAX)) } else { u64::from(rate) }
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
        node: e.node,
    })
}

fn view(uid: Uid, e: &Entry) -> View {
    View { uid, owner: e.owner.clone(), params: e.params, node: e.node, summary: e.summary.clone() }
}

#[cfg(test)]
mod tests;
