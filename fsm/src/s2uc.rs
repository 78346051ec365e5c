//! S2UC, the user client: one machine per session it orchestrates across the producer's and
//! the consumer's control servers.
//!
//! Drive it: feed the user's commands ([`Input::Start`] with a fresh uid, app key and data
//! credentials drawn by the driver; [`Input::Release`]), every answer from a control server as
//! [`Input::Msg`], and every fired timer as [`Input::Timer`]. Report the [`Notice`]s to the
//! user ([`Notice`](crate::Notice)). After a crash, rebuild with [`S2uc::recover`] from the uids [`S2uc::journal`] listed
//! (the driver keeps that list durable) and feed [`Input::Recover`]: every unfinished session
//! is released on both sides.
//!
//! Answers are matched to the phase they belong to: every phase sends with a new sequence
//! number, and an ERROR echoing an older one than the latest request sent to that side is a
//! late answer and is ignored.

mod handle;

use crate::msg::Token;
use crate::timing::Profile;
use crate::types::{Addr, AppKey, Credentials, ErrorCode, Role, Uid};
use std::collections::{BTreeMap, BTreeSet};

pub use handle::Input;

crate::alphabet! {
    /// States of a session at the user client.
    pub enum State { Idle, Reserving, Provisioning, Updating, Established, Releasing, Aborting, Released, Failed }
}

crate::alphabet! {
    /// Inputs of the client's session machine.
    pub enum Event {
        /// The user asked for a session.
        Start,
        /// Both facilities answered with their listeners.
        Reserved,
        /// The producer's listeners are known.
        ProdKnown,
        /// Both facilities started their bridges.
        AllUpdated,
        /// A facility answered with a non-transient ERROR.
        Error,
        /// The setup deadline passed.
        Deadline,
        /// The user asked for release.
        Release,
        /// Both facilities hold nothing more.
        AllReleased,
        /// The client restarted and found this session unfinished in its journal.
        Recover,
    }
}

crate::alphabet! {
    /// Outputs of the client's session machine.
    pub enum Action { SendReq, PollListeners, SendUpdate, ReportEstablished, SendRel, ReportReleased, ReportFailed }
}

#[allow(missing_docs, unreachable_pub)]
mod declaration {
    use rust_fsm::state_machine;
    state_machine! {
        #[state_machine(input(crate::s2uc::Event), state(crate::s2uc::State), output(crate::s2uc::Action))]
        pub s2uc(Idle)

        Idle => {
            Start => Reserving [SendReq],
            Recover => Aborting [SendRel],
        },
        Reserving => {
            Reserved => Provisioning [PollListeners],
            Error => Aborting [SendRel],
            Deadline => Aborting [SendRel],
            Release => Releasing [SendRel],
        },
        Provisioning => {
            ProdKnown => Updating [SendUpdate],
            Error => Aborting [SendRel],
            Deadline => Aborting [SendRel],
            Release => Releasing [SendRel],
        },
        Updating => {
            AllUpdated => Established [ReportEstablished],
            Error => Aborting [SendRel],
            Deadline => Aborting [SendRel],
            Release => Releasing [SendRel],
        },
        Established => {
            Error => Aborting [SendRel],
            Release => Releasing [SendRel],
        },
        Releasing => {
            Release => Releasing,
            AllReleased => Released [ReportReleased],
        },
        Aborting => {
            Release => Aborting,
            AllReleased => Failed [ReportFailed],
        },
        Released(Release) => Released,
        Failed(Release) => Failed,
    }
}

crate::declared_machine!(s2uc);

impl State {
    /// Whether the session is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Released | Self::Failed)
    }
}

/// Client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The caller's access token, sent with every request.
    pub token: Token,
    /// The timing: the retransmission of unanswered requests (`client_backoff`) and how long
    /// a session may take to be established before the client gives up (`setup_deadline`).
    pub timing: Profile,
}

/// What the client knows of one facility's side of a session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Side {
    /// The facility's listeners from its RESP.
    pub listeners: Vec<Addr>,
    /// Its bridges are up.
    pub updated: bool,
    /// It holds nothing more for the session.
    pub released: bool,
    /// Sequence number of the latest request sent to this side: an ERROR echoing an older one
    /// answers a phase the session has moved past.
    pub seq: u32,
}

/// A session at the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The machine.
    pub machine: Machine,
    /// Connections requested.
    pub num_conn: u16,
    /// Rate requested (1.2 unit).
    pub rate: u32,
    /// The app key handed to the producer's controller.
    pub key: AppKey,
    /// The data credentials sent in UpdateTargets.
    pub creds: Credentials,
    /// Sequence number of the current phase's requests.
    pub seq: u32,
    /// Sends in the current phase.
    pub attempts: u32,
    /// Producer side (index 0) and consumer side (index 1).
    pub sides: [Side; 2],
    /// The producer's listeners from its Hello.
    pub prod_listeners: Vec<Addr>,
    /// Why the session failed, once it did.
    pub failure: Option<ErrorCode>,
}

impl Session {
    /// The session's current state.
    pub fn state(&self) -> State {
        *self.machine.state()
    }

    /// One side.
    pub fn side(&self, role: Role) -> &Side {
        &self.sides[side_index(role)]
    }
}

pub(crate) fn side_index(role: Role) -> usize {
    match role {
        Role::Prod => 0,
        Role::Cons => 1,
    }
}

/// The user client's core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S2uc {
    cfg: Config,
    sessions: BTreeMap<Uid, Session>,
}

impl S2uc {
    /// A client with no sessions.
    pub fn new(cfg: Config) -> Self {
        Self { cfg, sessions: BTreeMap::new() }
    }

    /// A client restarted after a crash: the sessions in `journal` are unfinished and will be
    /// released when [`Input::Recover`] is fed.
    pub fn recover(cfg: Config, journal: &BTreeSet<Uid>) -> Self {
        let mut me = Self::new(cfg);
        for uid in journal {
            me.sessions.insert(*uid, Session::new(0, 0, AppKey::default(), Credentials::default()));
        }
        me
    }

    /// The uids of unfinished sessions: what must survive a crash.
    pub fn journal(&self) -> BTreeSet<Uid> {
        self.sessions.iter().filter(|(_, s)| !s.state().is_terminal()).map(|(u, _)| *u).collect()
    }

    /// The sessions it orchestrates.
    pub fn sessions(&self) -> &BTreeMap<Uid, Session> {
        &self.sessions
    }

    /// One session.
    pub fn session(&self, uid: &Uid) -> Option<&Session> {
        self.sessions.get(uid)
    }
}

impl Session {
    fn new(num_conn: u16, rate: u32, key: AppKey, creds: Credentials) -> Self {
        Self {
            machine: Machine::new(),
            num_conn,
            rate,
            key,
            creds,
            seq: 0,
            attempts: 0,
            sides: Default::default(),
            prod_listeners: Vec::new(),
            failure: None,
        }
    }
}

#[cfg(test)]
mod tests;
