//! One stream session as its control server (S2CS) sees it: the machine DESIGN.md names
//! S2CS {idle, reserving, listening, updating}, with its established, releasing and terminal
//! states. The [`s2cs`](crate::s2cs) core hosts one per uid (the production actor hosts each in
//! a session actor) and steps it with [`alphabet::fire`]; the data of each phase lives in
//! [`Session`].
//!
//! Reading the declaration: `Reserving` waits for the data server's ports, `Listening` for
//! UpdateTargets (and, for a producer, the Hello that may come at any time), `Updating` for
//! the bridges. `Releasing` is a REL being carried out; `Aborting` a failure being cleaned up
//! (the client already has its ERROR). `Released` and `Failed` are terminal: they only answer
//! retransmissions until the tombstone timer forgets them.

use crate::types::{Addr, AppKey, Credentials, ErrorCode, Peer, Principal, SessionParams};

crate::alphabet! {
    /// States of a session at its control server.
    pub enum State { Idle, Reserving, Listening, Updating, Established, Releasing, Aborting, Released, Failed }
}

crate::alphabet! {
    /// Inputs of the session machine.
    pub enum Event { Req, Lstn, Refused, Hello, Update, Connected, Rel, LeaseExpired, DsReleased, DsLost }
}

crate::alphabet! {
    /// Outputs of the session machine: what the control server does on the transition.
    pub enum Action {
        /// Ask the data server for ports.
        StartLstn,
        /// Answer the client with the listeners (RESP).
        Resp,
        /// Ask the data server to start the bridges.
        StartConn,
        /// Tell the client the bridges are up.
        Updated,
        /// Ask the data server to release (client's REL).
        Release,
        /// Ask the data server to release and tell the client the session failed.
        Abort,
        /// Tell the client the session is released.
        ReplyReleased,
        /// Tell the sender the session failed (ERROR with the failure's code).
        ReportError,
    }
}

#[allow(missing_docs, unreachable_pub)]
mod declaration {
    use rust_fsm::state_machine;
    state_machine! {
        #[state_machine(input(crate::session::Event), state(crate::session::State), output(crate::session::Action))]
        pub session(Idle)

        Idle(Req) => Reserving [StartLstn],
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
            Hello => Listening,
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
            DsReleased => Failed,
            DsLost => Failed,
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

/// A session's data at its control server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The machine.
    pub machine: Machine,
    /// The identity that created it; only it may update, query or release it.
    pub owner: Principal,
    /// What the REQ asked for.
    pub params: SessionParams,
    /// The key the producer's controller must present.
    pub key: AppKey,
    /// Where answers to the client go, and the sequence number they echo.
    pub client: (Peer, u32),
    /// This facility's listeners, once the data server reserved them.
    pub listeners: Vec<Addr>,
    /// The producer's listeners, once its Hello arrived.
    pub prod_listeners: Vec<Addr>,
    /// The producer's controller and its Hello's sequence number.
    pub app: Option<(Peer, u32)>,
    /// The connection map and credentials from UpdateTargets.
    pub bridge: Option<(Vec<Addr>, Credentials)>,
    /// Why the session failed, once it did.
    pub failure: Option<ErrorCode>,
    /// Sends of the pending data-server request so far.
    pub attempts: u32,
}

impl Session {
    /// The session's current state.
    pub fn state(&self) -> State {
        *self.machine.state()
    }
}
