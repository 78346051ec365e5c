//! S2UC, the user client: one machine per session it orchestrates across the producer's and
//! the consumer's control servers.
//!
//! Drive it: feed the user's commands ([`Input::Start`] with a fresh uid, app key and data
//! credentials drawn by the driver, and the session's [`Plan`]; [`Input::Release`]), every
//! answer from a control server as [`Input::Msg`], and every fired timer as [`Input::Timer`].
//!
//! A plan says which facilities the client drives and what it does there: `request` drives
//! both; SciStream 1.2's single-facility commands drive one (`prod-req` and `inbound-request`
//! the producer's, `cons-req` and `outbound-request` the consumer's), and may say a
//! controller's Hello themselves (a 1.2 server holds a consumer's REQ until a Hello for its uid
//! arrives, and `inbound-request` names the producer's listeners itself). Those Hellos are
//! retried on their own timer while the session is reserving, and their sequence numbers carry
//! [`HELLO_SEQ`] so an answer to one is never taken for an answer to the REQ. Report the [`Notice`](crate::Notice)s to the
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

/// Sequence numbers of the Hellos a client says carry this bit: their ERRORs never answer a
/// phase of the session.
pub const HELLO_SEQ: u32 = 1 << 31;

/// Marks the sequence numbers of the client's admission probes (ReqListeners to the producer's
/// facility while its REQ is held for the Hello); they carry [`HELLO_SEQ`] too, since their
/// answers never move a session either.
pub const PROBE_SEQ: u32 = HELLO_SEQ | 1 << 30;

/// Whether `seq` is that of a Hello or an admission probe the client said beside its REQ (their
/// answers never move a session).
pub const fn is_hello_seq(seq: u32) -> bool {
    seq & HELLO_SEQ != 0
}

/// Whether `seq` is that of an admission probe.
pub const fn is_probe_seq(seq: u32) -> bool {
    seq & PROBE_SEQ == PROBE_SEQ
}

/// What the client knows of the producer's facility admitting a session whose Hello comes from
/// outside (`s2uc request`, `prod-req`). A SciStream 1.2 server answers such a REQ only once the
/// Hello is in, so the REQ cannot say it; the client asks with ReqListeners beside it until the
/// facility's listeners are bound, and only then tells the user to start the producer's
/// controller ([`Notice::Created`](crate::Notice::Created)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// Nobody outside waits for it: the client says every Hello itself, or drives no
    /// producer's side.
    #[default]
    NotNeeded,
    /// Asking, while the session is reserving.
    Probing,
    /// Announced: the facility had bound the session's listeners, or cannot tell (a 1.2
    /// server lacks ReqListeners).
    Announced,
    /// The facility refused the probe for good: the REQ's own answer tells why.
    Refused,
}

/// What the client does at one facility.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SidePlan {
    /// The client drives this facility's side.
    pub driven: bool,
    /// Say a controller's Hello there, naming these listeners (empty: a consumer's Hello).
    pub hello: Option<Vec<Addr>>,
    /// Where this side's UpdateTargets points; `None`: derived from the other side (the
    /// producer's side forwards to the producer's listeners, the consumer's side to the
    /// producer gateway's listeners).
    pub remote: Option<Vec<Addr>>,
}

/// Which facilities a session's client drives, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The producer's side (index 0) and the consumer's side (index 1).
    pub sides: [SidePlan; 2],
}

impl Plan {
    /// Whether the producer's Hello comes from outside (its controller, started by the user),
    /// so the user must be told when the facility admitted the session.
    pub fn awaits_controller(&self) -> bool {
        self.sides[0].driven && self.sides[0].hello.is_none()
    }

    /// Both facilities (`s2uc request`): the producer's controller says its Hello (appctrl);
    /// the client says the consumer's, which a 1.2 consumer server waits for.
    pub fn both() -> Self {
        let consumer = SidePlan { driven: true, hello: Some(Vec::new()), remote: None };
        Self { sides: [SidePlan { driven: true, ..SidePlan::default() }, consumer] }
    }

    /// The producer's facility only (`prod-req`; `inbound-request` says the producer's Hello
    /// itself, naming where the producer listens).
    pub fn producer(hello: Option<Vec<Addr>>) -> Self {
        let remote = hello.clone().filter(|h| !h.is_empty());
        Self { sides: [SidePlan { driven: true, hello, remote }, SidePlan::default()] }
    }

    /// The consumer's facility only, forwarding to `remote` (`cons-req`, `outbound-request`);
    /// `hello`: say a consumer's Hello alongside the REQ.
    pub fn consumer(remote: Vec<Addr>, hello: bool) -> Self {
        let cons = SidePlan { driven: true, hello: hello.then(Vec::new), remote: Some(remote) };
        Self { sides: [SidePlan::default(), cons] }
    }
}

/// What the client knows of one facility's side of a session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Side {
    /// What the client does there.
    pub plan: SidePlan,
    /// The Hello the client says there is answered (or refused for good).
    pub hello_done: bool,
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
    /// Hellos said so far.
    pub hellos: u32,
    /// Whether the producer's facility admitted the session, as far as the client knows.
    pub admission: Admission,
    /// Admission probes sent so far.
    pub probes: u32,
}

impl Session {
    /// The sides the client drives, with their roles.
    pub fn driven(&self) -> impl Iterator<Item = (Role, &Side)> {
        Role::ALL.into_iter().map(|r| (r, self.side(r))).filter(|(_, s)| s.plan.driven)
    }

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
            let s = Session::new(0, 0, AppKey::default(), Credentials::default(), Plan::both());
            me.sessions.insert(*uid, s);
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
    fn new(num_conn: u16, rate: u32, key: AppKey, creds: Credentials, plan: Plan) -> Self {
        let admission = if plan.awaits_controller() { Admission::Probing } else { Admission::NotNeeded };
        let [prod, cons] = plan.sides;
        let side = |plan: SidePlan| Side { plan, ..Side::default() };
        Self {
            machine: Machine::new(),
            num_conn,
            rate,
            key,
            creds,
            seq: 0,
            attempts: 0,
            prod_listeners: prod.remote.clone().unwrap_or_default(),
            sides: [side(prod), side(cons)],
            failure: None,
            hellos: 0,
            admission,
            probes: 0,
        }
    }
}

#[cfg(test)]
mod tests;
