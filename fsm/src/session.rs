//! One stream session as its control server (S2CS) sees it: the machine DESIGN.md names
//! S2CS {idle, reserving, listening, updating}, with its established, releasing and terminal
//! states, and the session's own core ([`Session`]): the machine, the data of each phase, the
//! calls waiting on the session and the session's timers. In production each session core
//! lives in its own session actor, a child of its control server's actor; the simulator and
//! the tests host the same cores inside [`ControlServer`](crate::s2cs::ControlServer).
//!
//! Reading the declaration: `Reserving` waits for the data server's ports, `Listening` for
//! UpdateTargets (and, for a producer, the Hello that may come at any time), `Updating` for
//! the bridges. `Releasing` is a REL being carried out; `Aborting` a failure being cleaned up
//! (the waiting calls already have their ERROR). `Released` and `Failed` are terminal: they
//! only answer retransmissions until the tombstone timer forgets them.
//!
//! Drive it: the control server's core ([`S2cs`](crate::s2cs::S2cs)) authenticates and admits
//! every call and creates the session ([`Effect::Spawn`](crate::Effect::Spawn)); then feed the
//! session what the control server routes to it ([`Effect::ToSession`](crate::Effect::ToSession):
//! calls, data-server answers, the loss of the data server) and its own fired timers. Its
//! effects are messages to its data server and answers to the calls waiting on it, timers, and
//! [`Effect::Report`](crate::Effect::Report)s of what changed, which go back to the control
//! server's core (its registry answers status queries and counts capacity from them).
//!
//! Every call waits on the session until the session can answer it, and each is answered
//! exactly once: a REQ with the listeners (a producer's only once the producer's Hello is in,
//! as SciStream 1.2 does), an UpdateTargets once the bridges are up, a REL once the data
//! server released, a Hello once the listeners are known; a failure answers every waiting call
//! with its code, a release every waiting REL with Released and the others with ABORTED. At
//! most [`MAX_WAITERS`] calls wait at once; a newer one evicts the oldest with UNAVAILABLE
//! (transient: a client tries again).

mod step;
mod waiters;

use crate::timing::Profile;
use crate::types::{Addr, Credentials, ErrorCode, Node, Peer, Principal, Role, SessionParams, Uid, Why};

pub use waiters::{Kind, MAX_WAITERS, Waiter};

crate::alphabet! {
    /// States of a session at its control server.
    pub enum State { Idle, Reserving, Listening, Updating, Established, Releasing, Aborting, Released, Failed }
}

crate::alphabet! {
    /// Inputs of the session machine.
    pub enum Event { Req, Lstn, Refused, Hello, Update, Connected, Rel, LeaseExpired, DsReleased, DsLost, Recover }
}

crate::alphabet! {
    /// Outputs of the session machine: what the session does on the transition.
    pub enum Action {
        /// Ask the data server for ports.
        StartLstn,
        /// Answer the waiting REQs that can be answered now (a producer's once its Hello is in).
        Resp,
        /// Ask the data server to start the bridges.
        StartConn,
        /// Answer the waiting UpdateTargets: the bridges are up.
        Updated,
        /// Ask the data server to release (a client's REL).
        Release,
        /// Ask the data server to release and answer every waiting call with the failure.
        Abort,
        /// Answer the waiting RELs: the session is released.
        ReplyReleased,
        /// Answer the call with the session's failure (ERROR with its code).
        ReportError,
    }
}

#[allow(missing_docs, unreachable_pub)]
mod declaration {
    use rust_fsm::state_machine;
    state_machine! {
        #[state_machine(input(crate::session::Event), state(crate::session::State), output(crate::session::Action))]
        pub session(Idle)

        Idle => {
            Req => Reserving [StartLstn],
            Recover => Established,
        },
        Reserving => {
            Req => Reserving,
            Hello => Reserving,
            Lstn => Listening [Resp],
            Refused => Failed [ReportError],
            LeaseExpired => Aborting [Abort],
            Rel => Releasing [Release],
            DsLost => Failed [ReportError],
        },
        Listening => {
            Req => Listening [Resp],
            Hello => Listening [Resp],
            Lstn => Listening,
            Update => Updating [StartConn],
            Refused => Aborting [Abort],
            LeaseExpired => Aborting [Abort],
            Rel => Releasing [Release],
            DsLost => Failed [ReportError],
        },
        Updating => {
            Req => Updating [Resp],
            Hello => Updating,
            Update => Updating,
            Connected => Established [Updated],
            Refused => Aborting [Abort],
            LeaseExpired => Aborting [Abort],
            Rel => Releasing [Release],
            DsLost => Failed [ReportError],
        },
        Established => {
            Req => Established [Resp],
            Hello => Established,
            Update => Established [Updated],
            Connected => Established,
            Refused => Aborting [Abort],
            Rel => Releasing [Release],
            DsLost => Failed [ReportError],
        },
        Releasing => {
            Rel => Releasing,
            DsReleased => Released [ReplyReleased],
            DsLost => Released [ReplyReleased],
        },
        Aborting => {
            Rel => Aborting,
            DsReleased => Failed [ReplyReleased],
            DsLost => Failed [ReplyReleased],
        },
        Released => {
            Rel => Released [ReplyReleased],
            Req => Released [ReportError],
            Update => Released [ReportError],
        },
        Failed => {
            Rel => Failed [ReplyReleased],
            Req => Failed [ReportError],
            Update => Failed [ReportError],
        },
    }
}

crate::declared_machine!(session);

impl State {
    /// Whether the session is over (nothing may change afterwards).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Released | Self::Failed)
    }

    /// Whether the session holds (or may hold) ports at its data server.
    pub fn holds_resources(self) -> bool {
        !matches!(self, Self::Idle | Self::Released | Self::Failed)
    }
}

/// What a session is created with by its control server's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The session.
    pub uid: Uid,
    /// The facility.
    pub facility: Role,
    /// The data-server node it is placed on: `DataServer(facility, node)`.
    pub node: Node,
    /// The control server's boot epoch, carried by every message to the data server.
    pub epoch: u64,
    /// Whether an UpdateTargets without credentials (a SciStream 1.2 client) may make a
    /// plain-text WAN leg.
    pub allow_plain_wan: bool,
    /// The timing (lease, tombstone, backoff towards the data server).
    pub timing: Profile,
    /// The identity that created it; only it (and operators) may act on it.
    pub owner: Principal,
    /// What the REQ asked for.
    pub params: SessionParams,
}

/// An input to a session's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A call the control server admitted: REQ, UpdateTargets, REL (from a client) or Hello
    /// (from a controller). It waits on the session until answered.
    Call {
        /// The caller, as the control server names it.
        from: Peer,
        /// The message.
        msg: crate::Msg,
    },
    /// An answer of the data server for this session (Lstn, Refused, Connected, DsReleased),
    /// of its current incarnation.
    Data(crate::Msg),
    /// The data server restarted: whatever it held for the session is gone.
    DsLost,
    /// One of the session's timers fired.
    Timer(crate::TimerKind),
}

/// What a session tells its control server's core about itself: one change to its
/// [`Summary`] at a time (the listener lists change once each; only the state changes often).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Its state (and failure code) changed.
    State {
        /// The new state.
        state: State,
        /// Why it failed, if it did.
        failure: Option<ErrorCode>,
        /// What more is known of why.
        why: Why,
    },
    /// Its listeners are known.
    Listeners(Vec<Addr>),
    /// The producer's listeners are known.
    ProdListeners(Vec<Addr>),
    /// Its connection map is known (or changed): the targets, and the WAN credentials its
    /// bridges are pinned to (kept by the registry for the durable store, never shown).
    Bridge {
        /// Where the data server forwards to.
        targets: Vec<Addr>,
        /// The session's WAN credentials.
        creds: Credentials,
    },
    /// Its tombstone expired: forget it.
    Forget,
}

impl Summary {
    /// Applies one reported change.
    pub fn apply(&mut self, report: Report) {
        match report {
            Report::State { state, failure, why } => (self.state, self.failure, self.why) = (Some(state), failure, why),
            Report::Listeners(l) => self.listeners = l,
            Report::ProdListeners(l) => self.prod_listeners = l,
            Report::Bridge { targets, .. } => self.targets = targets,
            Report::Forget => {}
        }
    }
}

/// What the control server's registry knows of a session: enough to count capacity and to
/// answer status and listener queries without asking the session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// The session's state.
    pub state: Option<State>,
    /// The facility's listeners, once reserved.
    pub listeners: Vec<Addr>,
    /// The producer's listeners, once its Hello is in.
    pub prod_listeners: Vec<Addr>,
    /// Where the data server forwards to, once UpdateTargets came.
    pub targets: Vec<Addr>,
    /// Why it failed, once it did.
    pub failure: Option<ErrorCode>,
    /// What more is known of why.
    pub why: Why,
}

/// A session's core at its control server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The machine.
    pub machine: Machine,
    setup: Setup,
    /// This facility's listeners, once the data server reserved them.
    pub listeners: Vec<Addr>,
    /// The producer's listeners, once its Hello arrived.
    pub prod_listeners: Vec<Addr>,
    /// The connection map and credentials from UpdateTargets.
    pub bridge: Option<(Vec<Addr>, Credentials)>,
    /// Why the session failed, once it did.
    pub failure: Option<ErrorCode>,
    /// What more is known of why it failed.
    pub why: Why,
    /// Sends of the pending data-server request so far.
    pub attempts: u32,
    /// The calls waiting for an answer, oldest first.
    waiters: Vec<Waiter>,
    /// The last summary reported to the control server's core.
    reported: Summary,
    /// The last connection map reported.
    reported_bridge: Option<(Vec<Addr>, Credentials)>,
}

impl Session {
    /// A new session, not yet stepped.
    pub fn new(setup: Setup) -> Self {
        Self {
            machine: Machine::new(),
            setup,
            listeners: Vec::new(),
            prod_listeners: Vec::new(),
            bridge: None,
            failure: None,
            why: Why::Unspecified,
            attempts: 0,
            waiters: Vec::new(),
            reported: Summary::default(),
            reported_bridge: None,
        }
    }

    /// An established session a restarted control server recovered from its durable store:
    /// its machine in `Established` (through `Recover`), its data as stored, already reported.
    /// The control server's core fails it (`DsLost`) if its data server no longer holds it.
    pub fn recovered(setup: Setup, record: &crate::s2cs::Record) -> Self {
        let mut s = Self::new(setup);
        // Idle accepts Recover: the declaration says so, and a test checks it.
        let _ = crate::alphabet::fire(&mut s.machine, Event::Recover);
        s.listeners.clone_from(&record.listeners);
        s.prod_listeners.clone_from(&record.prod_listeners);
        s.bridge = Some((record.targets.clone(), record.creds));
        s.reported = Summary {
            state: Some(State::Established),
            listeners: record.listeners.clone(),
            prod_listeners: record.prod_listeners.clone(),
            targets: record.targets.clone(),
            failure: None,
            why: Why::Unspecified,
        };
        s.reported_bridge = s.bridge.clone();
        s
    }

    /// The session's current state.
    pub fn state(&self) -> State {
        *self.machine.state()
    }

    /// The data-server node it is placed on.
    pub fn node(&self) -> Node {
        self.setup.node
    }

    /// Its uid.
    pub fn uid(&self) -> Uid {
        self.setup.uid
    }

    /// The identity that created it.
    pub fn owner(&self) -> &Principal {
        &self.setup.owner
    }

    /// What its REQ asked for.
    pub fn params(&self) -> SessionParams {
        self.setup.params
    }

    /// The calls waiting on it, oldest first.
    pub fn waiters(&self) -> &[Waiter] {
        &self.waiters
    }
}

/// The timer key of a session's timer of `kind`.
pub fn timer_key(uid: Uid, kind: crate::TimerKind) -> crate::TimerKey {
    crate::TimerKey { uid: Some(uid), kind }
}
