//! What the cores ask their drivers to do.

use crate::msg::Msg;
use crate::time::Instant;
use crate::types::{Addr, AppKey, Credentials, ErrorCode, Face, Node, Peer, Role, Uid};

/// A timer's identity within one participant. Setting a timer with the same key replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    /// The session the timer belongs to, if any.
    pub uid: Option<Uid>,
    /// What it is for.
    pub kind: TimerKind,
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// Retransmit the pending request(s).
    Retransmit,
    /// A reservation's lease (released if the session is not established by then).
    Lease,
    /// The overall deadline of a phase (setup, Hello).
    Deadline,
    /// Forget a finished session (its tombstone answered retransmissions until now).
    Tombstone,
    /// Say a Hello again (a user client that says a controller's Hello itself).
    Hello,
    /// A control server attaches to one of its data-server nodes again (its Attach went
    /// unanswered).
    Attach(Node),
    /// A control server checks that one of its data-server nodes still answers.
    Heartbeat(Node),
}

/// One thing for the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Control server: write this record to the audit trail.
    Audit(Box<crate::audit::Audit>),
    /// Send `msg` to `to`.
    Send {
        /// Destination.
        to: Peer,
        /// The message.
        msg: Msg,
    },
    /// Wake the core with `Input::Timer(key)` at `at`.
    SetTimer {
        /// Which timer.
        key: TimerKey,
        /// When.
        at: Instant,
    },
    /// Forget the timer `key` if it is set.
    CancelTimer {
        /// Which timer.
        key: TimerKey,
    },
    /// Data server: bind listeners on `ports` for `uid`, on the address of the side they face.
    Listen {
        /// Session.
        uid: Uid,
        /// Ports to bind.
        ports: Vec<u16>,
        /// Which side.
        face: Face,
    },
    /// Data server: start `uid`'s bridges from `ports` to `targets`, pinned to `creds`; answer
    /// with `BridgesUp` or `BridgesFailed`.
    StartBridges {
        /// Session.
        uid: Uid,
        /// Local listening ports.
        ports: Vec<u16>,
        /// Where to forward.
        targets: Vec<Addr>,
        /// WAN credentials.
        creds: Credentials,
        /// The end this facility serves (which leg is the WAN one).
        role: Role,
        /// The session's rate (1.2 unit: kB/s; 0 unlimited).
        rate: u32,
    },
    /// Data server: close `uid`'s bridges and listeners and return `ports` to the pool.
    Unlisten {
        /// Session.
        uid: Uid,
        /// Ports to close.
        ports: Vec<u16>,
    },
    /// Consumer application: open the session's channels to these listeners.
    Connect {
        /// Session.
        uid: Uid,
        /// Consumer-side gateway listeners.
        listeners: Vec<Addr>,
    },
    /// Tell the local user or application something.
    Notify(Notice),
    /// Control server: host this new session core (in production, in a session actor of its
    /// own); the control server's core routes the session's inputs to it from now on.
    Spawn(Box<crate::session::Session>),
    /// Control server: hand `input` to session `uid`'s core.
    ToSession {
        /// Session.
        uid: Uid,
        /// What to feed it.
        input: crate::session::Input,
    },
    /// Session: tell the control server's core what changed (its registry's summary, or that
    /// the session is to be forgotten).
    Report {
        /// Session.
        uid: Uid,
        /// What changed.
        report: crate::session::Report,
    },
    /// Control server: stop hosting session `uid`'s core; it is forgotten.
    Retire {
        /// Session.
        uid: Uid,
    },
    /// Control server: write this established session to its durable store (replacing what
    /// was stored under its uid), from which a restart recovers it.
    Persist(Box<crate::s2cs::Record>),
    /// Control server: remove session `uid` from the durable store.
    Unpersist {
        /// Session.
        uid: Uid,
    },
}

/// Something a participant reports to its user (printed by the CLI, handed to applications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// S2UC: the producer's facility admitted a session whose Hello comes from outside (its
    /// data server bound the session's listeners, or a SciStream 1.2 server cannot tell):
    /// hand `key` to the producer's controller. Never said for a session the facility refused,
    /// nor for plans where the client says every Hello itself.
    Created {
        /// Session.
        uid: Uid,
        /// App key for Hello.
        key: AppKey,
    },
    /// S2UC: the path is up; the consumer connects to `cons_listeners`.
    Established {
        /// Session.
        uid: Uid,
        /// The producer gateway's WAN listeners.
        prod_listeners: Vec<Addr>,
        /// The consumer gateway's LAN listeners.
        cons_listeners: Vec<Addr>,
        /// Where the producer application listens (from its Hello).
        prod_app_listeners: Vec<Addr>,
    },
    /// S2UC or an app controller: the session failed with this ERROR.
    Failed {
        /// Session.
        uid: Uid,
        /// Why.
        code: ErrorCode,
    },
    /// S2UC: the session is released on both sides.
    Released {
        /// Session.
        uid: Uid,
    },
    /// Producer's controller: Hello accepted; the facility listens on `listeners`.
    Ready {
        /// Session.
        uid: Uid,
        /// The facility's listeners.
        listeners: Vec<Addr>,
    },
    /// Consumer application: its channels are open.
    Streaming {
        /// Session.
        uid: Uid,
    },
}

/// Where a core pushes its effects; the driver drains it after each step.
pub type Outbox = Vec<Effect>;
