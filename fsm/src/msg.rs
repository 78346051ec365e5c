//! The protocol's messages (DESIGN.md §2 vocabulary), as domain values.
//!
//! Requests from S2UC carry the caller's token and a per-session sequence number that the
//! answers echo, so a client can tell an answer to its current phase from a late answer to an
//! earlier one. Messages between a control server and its data server carry the control
//! server's boot epoch (downwards) or the data server's incarnation (upwards), so a message
//! from before a restart is recognised and dropped.

use crate::types::{Addr, AppKey, Credentials, ErrorCode, Pool, Role, SessionParams, Uid, Why};

/// An access token exactly as the caller presented it. Never logged.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// S2UC → S2CS: reserve `params.num_conn` ports for a session (REQ).
    Req {
        /// Session.
        uid: Uid,
        /// Sender's sequence number.
        seq: u32,
        /// Caller's token.
        token: Token,
        /// What to reserve.
        params: SessionParams,
        /// The app key the producer's controller will present in Hello.
        key: AppKey,
    },
    /// S2UC → producer S2CS: ask again for the producer's listeners (ReqListeners).
    ReqListeners {
        /// Session.
        uid: Uid,
        /// Sender's sequence number.
        seq: u32,
        /// Caller's token.
        token: Token,
    },
    /// S2UC → S2CS: the connection map and the session's data credentials (UpdateTargets).
    Update {
        /// Session.
        uid: Uid,
        /// Sender's sequence number.
        seq: u32,
        /// Caller's token.
        token: Token,
        /// Where this facility's data server forwards to.
        remote: Vec<Addr>,
        /// The WAN channel's credentials.
        creds: Credentials,
    },
    /// S2UC → S2CS: release everything the session holds (REL).
    Rel {
        /// Session.
        uid: Uid,
        /// Sender's sequence number.
        seq: u32,
        /// Caller's token.
        token: Token,
    },
    /// S2CS → S2UC: the ports reserved for the session (RESP).
    Resp {
        /// Session.
        uid: Uid,
        /// Echo of the request's sequence number.
        seq: u32,
        /// This facility's listeners for the session.
        listeners: Vec<Addr>,
        /// The producer's listeners when the Hello has arrived, else empty.
        prod_listeners: Vec<Addr>,
    },
    /// S2CS → S2UC: the answer to ReqListeners (ProdLstn): what the facility knows of the
    /// session now.
    ProdLstn {
        /// Session.
        uid: Uid,
        /// Echo of the latest request's sequence number.
        seq: u32,
        /// This facility's listeners, once its data server bound them (empty before): the
        /// facility admitted the session.
        listeners: Vec<Addr>,
        /// The producer's listeners, once its Hello arrived (empty before).
        prod_listeners: Vec<Addr>,
    },
    /// S2CS → S2UC: the bridges are up.
    Updated {
        /// Session.
        uid: Uid,
        /// Echo of the request's sequence number.
        seq: u32,
    },
    /// S2CS → S2UC: everything the session held here is released.
    Released {
        /// Session.
        uid: Uid,
        /// Echo of the request's sequence number.
        seq: u32,
    },
    /// S2CS → S2UC or app controller: the request failed (ERROR).
    Error {
        /// Session.
        uid: Uid,
        /// Echo of the request's sequence number.
        seq: u32,
        /// Why.
        code: ErrorCode,
        /// What the user can act on, when the refusing core knows more than the code.
        why: Why,
    },
    /// App controller → S2CS: the application is up (Hello).
    Hello {
        /// Session.
        uid: Uid,
        /// Sender's sequence number.
        seq: u32,
        /// The session's app key.
        key: AppKey,
        /// The producer's listening addresses (empty for a consumer).
        prod_listeners: Vec<Addr>,
    },
    /// S2CS → app controller: Hello accepted.
    HelloAck {
        /// Session.
        uid: Uid,
        /// Echo of the Hello's sequence number.
        seq: u32,
        /// This facility's listeners for the session.
        listeners: Vec<Addr>,
    },
    /// S2DS → S2CS: the data server (re)started with this incarnation.
    DsBoot {
        /// The data server's incarnation.
        inc: u64,
    },
    /// S2CS → S2DS: attach under this epoch. Sessions of older epochs are dropped, but for
    /// those in `keep`: established sessions a restarted control server recovered from its
    /// store, whose bridges go on under the new epoch.
    Attach {
        /// The control server's boot epoch.
        epoch: u64,
        /// Which attachment of this epoch: it grows when the control server attaches again
        /// after taking its data server for lost; the data server then drops every session of
        /// the epoch but `keep`'s. A repeated or late Attach (the same or an older `attachment`)
        /// changes nothing, so a heartbeat or a duplicate never drops a session.
        attachment: u64,
        /// The established sessions it recovered.
        keep: Vec<Uid>,
    },
    /// S2DS → S2CS: attached.
    AttachAck {
        /// Echo of the epoch.
        epoch: u64,
        /// Echo of the attachment.
        attachment: u64,
        /// The data server's incarnation.
        inc: u64,
        /// Those of `keep` whose bridges it still runs (the others are lost).
        held: Vec<Uid>,
        /// What it offers to the sessions placed on it.
        pool: Pool,
    },
    /// S2CS → S2DS: reserve and bind ports for a session (StartLstn).
    StartLstn {
        /// Session.
        uid: Uid,
        /// Control server's epoch.
        epoch: u64,
        /// How many ports.
        num_conn: u16,
        /// Which end the facility serves: the listeners face the WAN at the producer's, the
        /// LAN at the consumer's ([`Face::of`](crate::Face::of)).
        role: Role,
    },
    /// S2DS → S2CS: ports reserved.
    Lstn {
        /// Session.
        uid: Uid,
        /// Data server's incarnation.
        inc: u64,
        /// The host the listeners are reached at (the data server's address on their side).
        host: String,
        /// The reserved ports.
        ports: Vec<u16>,
    },
    /// S2DS → S2CS: the request was refused.
    Refused {
        /// Session.
        uid: Uid,
        /// Data server's incarnation.
        inc: u64,
        /// Why.
        code: ErrorCode,
    },
    /// S2CS → S2DS: start the session's bridges (StartConn/Connect).
    StartConn {
        /// Session.
        uid: Uid,
        /// Control server's epoch.
        epoch: u64,
        /// Where to forward.
        targets: Vec<Addr>,
        /// The WAN channel's credentials.
        creds: Credentials,
        /// The end this facility serves for the session: a producer's gateway accepts the WAN
        /// leg (TLS server) and forwards to the producer; a consumer's accepts the consumer and
        /// dials the producer's gateway (TLS client).
        role: Role,
        /// The session's rate (1.2 unit: kB/s; 0 unlimited), enforced on the producer's data.
        rate: u32,
    },
    /// S2DS → S2CS: the bridges are up.
    Connected {
        /// Session.
        uid: Uid,
        /// Data server's incarnation.
        inc: u64,
    },
    /// S2CS → S2DS: release the session's ports and bridges.
    DsRel {
        /// Session.
        uid: Uid,
        /// Control server's epoch.
        epoch: u64,
    },
    /// S2DS → S2CS: released.
    DsReleased {
        /// Session.
        uid: Uid,
        /// Data server's incarnation.
        inc: u64,
    },
}

impl Msg {
    /// The session a message concerns, if any.
    pub fn uid(&self) -> Option<Uid> {
        match self {
            Self::Req { uid, .. }
            | Self::ReqListeners { uid, .. }
            | Self::Update { uid, .. }
            | Self::Rel { uid, .. }
            | Self::Resp { uid, .. }
            | Self::ProdLstn { uid, .. }
            | Self::Updated { uid, .. }
            | Self::Released { uid, .. }
            | Self::Error { uid, .. }
            | Self::Hello { uid, .. }
            | Self::HelloAck { uid, .. }
            | Self::StartLstn { uid, .. }
            | Self::Lstn { uid, .. }
            | Self::Refused { uid, .. }
            | Self::StartConn { uid, .. }
            | Self::Connected { uid, .. }
            | Self::DsRel { uid, .. }
            | Self::DsReleased { uid, .. } => Some(*uid),
            Self::DsBoot { .. } | Self::Attach { .. } | Self::AttachAck { .. } => None,
        }
    }

    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Req { .. } => "REQ",
            Self::ReqListeners { .. } => "ReqListeners",
            Self::Update { .. } => "UpdateTargets",
            Self::Rel { .. } => "REL",
            Self::Resp { .. } => "RESP",
            Self::ProdLstn { .. } => "ProdLstn",
            Self::Updated { .. } => "Updated",
            Self::Released { .. } => "Released",
            Self::Error { .. } => "ERROR",
            Self::Hello { .. } => "Hello",
            Self::HelloAck { .. } => "HelloAck",
            Self::DsBoot { .. } => "DsBoot",
            Self::Attach { .. } => "Attach",
            Self::AttachAck { .. } => "AttachAck",
            Self::StartLstn { .. } => "StartLstn",
            Self::Lstn { .. } => "Lstn",
            Self::Refused { .. } => "Refused",
            Self::StartConn { .. } => "StartConn",
            Self::Connected { .. } => "Connected",
            Self::DsRel { .. } => "DsRel",
            Self::DsReleased { .. } => "DsReleased",
        }
    }
}
