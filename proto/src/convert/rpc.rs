//! The arguments and answers of the `Control` rpcs, as domain values.
//!
//! The server side reads requests with `*_from_wire` and writes answers with `*_to_wire`; the
//! client side (S2UC, AppCtrl) does the reverse. Fields 1.2 clients never send (app keys,
//! credentials, often the role of UpdateTargets) are `Option`s here: empty on the wire is
//! `None`, and deciding whether `None` is acceptable is the protocol's business, not the wire's.

use scistream_fsm::{Addr, AppKey, Credentials, Role, SessionParams, Uid};

use super::Limits;
use super::field::{
    addrs_from_wire, addrs_to_wire, num_conn_from_wire, opt_creds_from_wire, opt_key_from_wire, opt_role_from_wire,
    rate_from_wire, role_from_wire, uid_from_wire, uid_to_wire,
};
use crate::{WireError, pb};

/// The arguments of a `req` call (REQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReqArgs {
    /// Session.
    pub uid: Uid,
    /// Role, connections and rate.
    pub params: SessionParams,
    /// The app key the producer's controller will present; `None` from a 1.2 client.
    pub key: Option<AppKey>,
}

/// The arguments of an `update` call (UpdateTargets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateArgs {
    /// Session.
    pub uid: Uid,
    /// The role the caller addresses; 1.2 clients usually leave it out.
    pub role: Option<Role>,
    /// Where this facility's data server forwards to.
    pub remote: Vec<Addr>,
    /// The WAN channel's credentials; `None` from a 1.2 client.
    pub creds: Option<Credentials>,
}

/// The arguments of a `hello` call (Hello).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloArgs {
    /// Session.
    pub uid: Uid,
    /// The application's role, when the controller states it.
    pub role: Option<Role>,
    /// The producer's listeners (empty for a consumer).
    pub prod_listeners: Vec<Addr>,
    /// The session's app key; `None` from a 1.2 controller.
    pub key: Option<AppKey>,
}

/// The addresses of a `Response`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listeners {
    /// The answering facility's listeners.
    pub listeners: Vec<Addr>,
    /// The producer's listeners, once its Hello has arrived.
    pub prod_listeners: Vec<Addr>,
}

/// Reads a `req` call: every field is required except the app key, and `num_conn` must be in
/// `1..=limits.max_num_conn`. The role matches case-insensitively (see [`role_from_wire`]).
pub fn request_from_wire(req: &pb::Request, limits: &Limits) -> Result<ReqArgs, WireError> {
    let uid = uid_from_wire(&req.uid)?;
    let role = role_from_wire(&req.role)?;
    let num_conn = num_conn_from_wire(i64::from(req.num_conn), limits)?;
    let rate = rate_from_wire(req.rate)?;
    let key = opt_key_from_wire(&req.app_key)?;
    Ok(ReqArgs { uid, params: SessionParams { role, num_conn, rate }, key })
}

/// Writes a `req` call. The 1.2 rate field is an `int32`: a rate above `i32::MAX` kB/s (2 TB/s)
/// is sent as `i32::MAX`.
pub fn request_to_wire(args: &ReqArgs) -> pb::Request {
    pb::Request {
        uid: uid_to_wire(args.uid),
        role: args.params.role.as_wire().to_owned(),
        num_conn: i32::from(args.params.num_conn),
        rate: i32::try_from(args.params.rate).unwrap_or(i32::MAX),
        app_key: args.key.map(|k| k.0.to_vec()).unwrap_or_default(),
    }
}

/// Reads an `update` call. An empty target list passes: whether it is acceptable is the
/// protocol's decision.
pub fn update_from_wire(update: &pb::UpdateTargets) -> Result<UpdateArgs, WireError> {
    Ok(UpdateArgs {
        uid: uid_from_wire(&update.uid)?,
        remote: addrs_from_wire(&update.remote_listeners)?,
        role: opt_role_from_wire(&update.role)?,
        creds: opt_creds_from_wire(&update.credentials)?,
    })
}

/// Writes an `update` call.
pub fn update_to_wire(args: &UpdateArgs) -> pb::UpdateTargets {
    pb::UpdateTargets {
        uid: uid_to_wire(args.uid),
        remote_listeners: addrs_to_wire(&args.remote),
        role: args.role.map(|r| r.as_wire().to_owned()).unwrap_or_default(),
        credentials: args.creds.map(|c| c.0.to_vec()).unwrap_or_default(),
    }
}

/// Reads a `hello` call.
pub fn hello_from_wire(hello: &pb::Hello) -> Result<HelloArgs, WireError> {
    Ok(HelloArgs {
        uid: uid_from_wire(&hello.uid)?,
        prod_listeners: addrs_from_wire(&hello.prod_listeners)?,
        role: opt_role_from_wire(&hello.role)?,
        key: opt_key_from_wire(&hello.app_key)?,
    })
}

/// Writes a `hello` call.
pub fn hello_to_wire(args: &HelloArgs) -> pb::Hello {
    pb::Hello {
        uid: uid_to_wire(args.uid),
        prod_listeners: addrs_to_wire(&args.prod_listeners),
        role: args.role.map(|r| r.as_wire().to_owned()).unwrap_or_default(),
        app_key: args.key.map(|k| k.0.to_vec()).unwrap_or_default(),
    }
}

/// Reads a `release` call: its uid.
pub fn release_from_wire(release: &pb::Release) -> Result<Uid, WireError> {
    uid_from_wire(&release.uid)
}

/// Writes a `release` call.
pub fn release_to_wire(uid: Uid) -> pb::Release {
    pb::Release { uid: uid_to_wire(uid) }
}

/// Reads a `listeners` call (ReqListeners, a SciStream-rs rpc): its uid.
pub fn req_listeners_from_wire(call: &pb::ReqListeners) -> Result<Uid, WireError> {
    uid_from_wire(&call.uid)
}

/// Writes a `listeners` call.
pub fn req_listeners_to_wire(uid: Uid) -> pb::ReqListeners {
    pb::ReqListeners { uid: uid_to_wire(uid) }
}

/// Writes the answer to `req`, `update`, `release` or `listeners` (`release` answers empty
/// lists).
pub fn response_to_wire(listeners: &[Addr], prod_listeners: &[Addr]) -> pb::Response {
    pb::Response { listeners: addrs_to_wire(listeners), prod_listeners: addrs_to_wire(prod_listeners) }
}

/// Reads the answer to `req`, `update`, `release` or `listeners`.
pub fn response_from_wire(resp: &pb::Response) -> Result<Listeners, WireError> {
    Ok(Listeners {
        listeners: addrs_from_wire(&resp.listeners)?,
        prod_listeners: addrs_from_wire(&resp.prod_listeners)?,
    })
}

/// Writes the answer to `hello`: a line for the operator and this facility's listeners.
pub fn app_response_to_wire(message: &str, listeners: &[Addr]) -> pb::AppResponse {
    pb::AppResponse { message: message.to_owned(), listeners: addrs_to_wire(listeners) }
}

/// Reads the answer to `hello`: the facility's listeners (the free-text message is not
/// interpreted).
pub fn app_response_from_wire(resp: &pb::AppResponse) -> Result<Vec<Addr>, WireError> {
    addrs_from_wire(&resp.listeners)
}

/// A session as a control server holds it (the `status` and `list` rpcs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// Session.
    pub uid: Uid,
    /// The session machine's state name (`Listening`, `Established`, …).
    pub state: String,
    /// Role, connections, rate.
    pub params: SessionParams,
    /// The facility's listeners.
    pub listeners: Vec<Addr>,
    /// The producer's listeners.
    pub prod_listeners: Vec<Addr>,
    /// Where the facility forwards.
    pub targets: Vec<Addr>,
    /// Why the session failed, if it did.
    pub failure: Option<scistream_fsm::ErrorCode>,
    /// Its traffic at this facility.
    pub traffic: SessionTraffic,
    /// The identity that owns it.
    pub owner: String,
    /// The data-server node it is placed on (its address, or `embedded`).
    pub node: String,
    /// Why it failed, in words (empty when only the code is known).
    pub failure_reason: String,
}

/// A session's traffic through one facility's data server ("in": towards the target).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionTraffic {
    /// Bytes towards the target.
    pub bytes_in: u64,
    /// Bytes back from the target.
    pub bytes_out: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted in all.
    pub total: u64,
    /// WAN connections refused (not the session's).
    pub refused: u64,
    /// Bytes per second towards the target, last second.
    pub rate_in: u64,
    /// Bytes per second back, last second.
    pub rate_out: u64,
    /// Connections whose target could not be reached.
    pub dial_failures: u64,
    /// Connections whose WAN handshake with the producer's gateway failed.
    pub handshake_failures: u64,
    /// Connections ended by an error mid-stream.
    pub resets: u64,
    /// The last failure to reach the target, until a connection reaches it again (empty: none):
    /// the path is degraded while it is set.
    pub problem: String,
}

/// Longest problem text kept from a node or a server (characters); the rest is cut.
pub const MAX_PROBLEM: usize = 512;

/// One session's counters as a data server node reports them (`DataServer.Traffic`).
pub fn node_traffic_to_wire(uid: Uid, t: &SessionTraffic) -> pb::NodeTraffic {
    pb::NodeTraffic {
        uid: super::field::uid_to_wire(uid),
        bytes_in: t.bytes_in,
        bytes_out: t.bytes_out,
        open: t.open,
        total: t.total,
        refused: t.refused,
        rate_in: t.rate_in,
        rate_out: t.rate_out,
        dial_failures: t.dial_failures,
        handshake_failures: t.handshake_failures,
        resets: t.resets,
        problem: t.problem.clone(),
    }
}

/// A node's report of one session's counters, its uid checked.
pub fn node_traffic_from_wire(t: &pb::NodeTraffic) -> Result<(Uid, SessionTraffic), WireError> {
    let traffic = SessionTraffic {
        bytes_in: t.bytes_in,
        bytes_out: t.bytes_out,
        open: t.open,
        total: t.total,
        refused: t.refused,
        rate_in: t.rate_in,
        rate_out: t.rate_out,
        dial_failures: t.dial_failures,
        handshake_failures: t.handshake_failures,
        resets: t.resets,
        problem: t.problem.chars().take(MAX_PROBLEM).collect(),
    };
    Ok((super::field::uid_from_wire(&t.uid)?, traffic))
}

/// A session status on the wire.
pub fn session_status_to_wire(s: &SessionStatus) -> pb::SessionStatus {
    pb::SessionStatus {
        uid: uid_to_wire(s.uid),
        state: s.state.clone(),
        role: s.params.role.as_wire().to_string(),
        num_conn: i32::from(s.params.num_conn),
        rate: i32::try_from(s.params.rate).unwrap_or(i32::MAX),
        listeners: addrs_to_wire(&s.listeners),
        prod_listeners: addrs_to_wire(&s.prod_listeners),
        targets: addrs_to_wire(&s.targets),
        failure: s.failure.map_or(pb::ErrorCode::Unspecified, super::field::error_code_to_wire) as i32,
        bytes_in: s.traffic.bytes_in,
        bytes_out: s.traffic.bytes_out,
        open_connections: s.traffic.open,
        total_connections: s.traffic.total,
        refused_connections: s.traffic.refused,
        rate_in: s.traffic.rate_in,
        rate_out: s.traffic.rate_out,
        dial_failures: s.traffic.dial_failures,
        handshake_failures: s.traffic.handshake_failures,
        resets: s.traffic.resets,
        problem: s.traffic.problem.clone(),
        owner: s.owner.clone(),
        node: s.node.clone(),
        failure_reason: s.failure_reason.clone(),
    }
}

/// A session status from the wire, validated.
pub fn session_status_from_wire(s: &pb::SessionStatus) -> Result<SessionStatus, WireError> {
    let failure = match s.failure {
        0 => None,
        raw => Some(super::field::error_code_from_wire(raw)?),
    };
    Ok(SessionStatus {
        uid: uid_from_wire(&s.uid)?,
        state: s.state.clone(),
        params: SessionParams {
            role: role_from_wire(&s.role)?,
            num_conn: num_conn_from_wire(i64::from(s.num_conn), &Limits { max_num_conn: u16::MAX })?,
            rate: rate_from_wire(s.rate)?,
        },
        listeners: addrs_from_wire(&s.listeners)?,
        prod_listeners: addrs_from_wire(&s.prod_listeners)?,
        targets: addrs_from_wire(&s.targets)?,
        failure,
        traffic: SessionTraffic {
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            open: s.open_connections,
            total: s.total_connections,
            refused: s.refused_connections,
            rate_in: s.rate_in,
            rate_out: s.rate_out,
            dial_failures: s.dial_failures,
            handshake_failures: s.handshake_failures,
            resets: s.resets,
            problem: s.problem.chars().take(MAX_PROBLEM).collect(),
        },
        owner: s.owner.clone(),
        node: s.node.clone(),
        failure_reason: s.failure_reason.clone(),
    })
}
