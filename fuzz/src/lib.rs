//! What the fuzz targets share: structure-aware builders of valid domain values from the
//! fuzzer's bytes (for the round-trip targets) and the fixed inputs the parsers are called with.

use arbitrary::{Result, Unstructured};
use scistream_fsm::{Addr, AppKey, Credentials, ErrorCode, Msg, Pool, Role, SessionParams, Token, Uid, Why};

/// The fixed "now" of the targets that judge times (seconds since the Unix epoch), so a crash
/// replays the same on any day.
pub const NOW: i64 = 1_750_000_000;

/// A role.
pub fn role(u: &mut Unstructured<'_>) -> Result<Role> {
    u.choose(&Role::ALL).copied()
}

/// An error code.
pub fn error_code(u: &mut Unstructured<'_>) -> Result<ErrorCode> {
    u.choose(&ErrorCode::ALL).copied()
}

/// What an ERROR says beyond its code: every variant, with arbitrary numbers.
pub fn why(u: &mut Unstructured<'_>) -> Result<Why> {
    Ok(match u.int_in_range(0..=10)? {
        0 => Why::Unspecified,
        1 => Why::NumConn { max: u.arbitrary()? },
        2 => Why::AppKeyRequired,
        3 => Why::UidTaken,
        4 => Why::NoDataServer,
        5 => Why::Ports { asked: u.arbitrary()?, free: u.arbitrary()? },
        6 => Why::Capacity { capacity: u.arbitrary()?, in_use: u.arbitrary()? },
        7 => Why::PortsBusy,
        8 => Why::DataServerLost,
        9 => Why::Draining,
        _ => Why::Lease,
    })
}

/// A uid.
pub fn uid(u: &mut Unstructured<'_>) -> Result<Uid> {
    Ok(Uid::from_u128(u.arbitrary()?))
}

/// A host a peer may send: a name, an IPv4 or IPv6 literal, any run of the allowed characters.
pub fn host(u: &mut Unstructured<'_>) -> Result<String> {
    const ALLOWED: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:";
    let len = u.int_in_range(1..=40)?;
    let mut host = String::with_capacity(len);
    for _ in 0..len {
        host.push(char::from(*u.choose(ALLOWED)?));
    }
    Ok(host)
}

/// An address: a valid host and a non-zero port.
pub fn addr(u: &mut Unstructured<'_>) -> Result<Addr> {
    Ok(Addr::new(host(u)?, u.int_in_range(1..=u16::MAX)?))
}

/// Up to 6 addresses.
pub fn addrs(u: &mut Unstructured<'_>) -> Result<Vec<Addr>> {
    let n = u.int_in_range(0..=6)?;
    (0..n).map(|_| addr(u)).collect()
}

fn uids(u: &mut Unstructured<'_>) -> Result<Vec<Uid>> {
    let n = u.int_in_range(0..=6)?;
    (0..n).map(|_| uid(u)).collect()
}

/// Session parameters within `1..=max_num_conn` connections.
pub fn params(u: &mut Unstructured<'_>, max_num_conn: u16) -> Result<SessionParams> {
    Ok(SessionParams { role: role(u)?, num_conn: u.int_in_range(1..=max_num_conn)?, rate: u.arbitrary()? })
}

/// Any message of the protocol whose fields satisfy what the wire checks (`num_conn` within
/// `max_num_conn`): exactly the messages an encode/decode round trip must give back.
pub fn msg(u: &mut Unstructured<'_>, max_num_conn: u16) -> Result<Msg> {
    let token = |u: &mut Unstructured<'_>| -> Result<Token> { Ok(Token(u.arbitrary()?)) };
    Ok(match u.int_in_range(0..=20)? {
        0 => Msg::Req {
            uid: uid(u)?,
            seq: u.arbitrary()?,
            token: token(u)?,
            params: params(u, max_num_conn)?,
            key: AppKey(u.arbitrary()?),
        },
        1 => Msg::ReqListeners { uid: uid(u)?, seq: u.arbitrary()?, token: token(u)? },
        2 => Msg::Update {
            uid: uid(u)?,
            seq: u.arbitrary()?,
            token: token(u)?,
            remote: addrs(u)?,
            creds: Credentials(u.arbitrary()?),
        },
        3 => Msg::Rel { uid: uid(u)?, seq: u.arbitrary()?, token: token(u)? },
        4 => Msg::Resp { uid: uid(u)?, seq: u.arbitrary()?, listeners: addrs(u)?, prod_listeners: addrs(u)? },
        5 => Msg::ProdLstn { uid: uid(u)?, seq: u.arbitrary()?, listeners: addrs(u)?, prod_listeners: addrs(u)? },
        6 => Msg::Updated { uid: uid(u)?, seq: u.arbitrary()? },
        7 => Msg::Released { uid: uid(u)?, seq: u.arbitrary()? },
        8 => Msg::Error { uid: uid(u)?, seq: u.arbitrary()?, code: error_code(u)?, why: why(u)? },
        9 => Msg::Hello { uid: uid(u)?, seq: u.arbitrary()?, key: AppKey(u.arbitrary()?), prod_listeners: addrs(u)? },
        10 => Msg::HelloAck { uid: uid(u)?, seq: u.arbitrary()?, listeners: addrs(u)? },
        11 => Msg::DsBoot { inc: u.arbitrary()? },
        12 => Msg::Attach { epoch: u.arbitrary()?, attachment: u.arbitrary()?, keep: uids(u)? },
        13 => Msg::AttachAck {
            epoch: u.arbitrary()?,
            attachment: u.arbitrary()?,
            inc: u.arbitrary()?,
            held: uids(u)?,
            // Capacity 0 is "no limit" on the wire, so a valid pool never holds Some(0).
            pool: Pool { ports: u.arbitrary()?, capacity: u.arbitrary::<Option<u64>>()?.filter(|c| *c > 0) },
        },
        14 => Msg::StartLstn {
            uid: uid(u)?,
            epoch: u.arbitrary()?,
            num_conn: u.int_in_range(1..=max_num_conn)?,
            role: role(u)?,
        },
        15 => {
            let n = u.int_in_range(0..=6)?;
            let ports = (0..n).map(|_| u.int_in_range(1..=u16::MAX)).collect::<Result<_>>()?;
            Msg::Lstn { uid: uid(u)?, inc: u.arbitrary()?, host: host(u)?, ports }
        }
        16 => Msg::Refused { uid: uid(u)?, inc: u.arbitrary()?, code: error_code(u)? },
        17 => Msg::StartConn {
            uid: uid(u)?,
            epoch: u.arbitrary()?,
            targets: addrs(u)?,
            creds: Credentials(u.arbitrary()?),
            role: role(u)?,
            rate: u.arbitrary()?,
        },
        18 => Msg::Connected { uid: uid(u)?, inc: u.arbitrary()? },
        19 => Msg::DsRel { uid: uid(u)?, epoch: u.arbitrary()? },
        _ => Msg::DsReleased { uid: uid(u)?, inc: u.arbitrary()? },
    })
}
