//! Single fields: uid, role, addresses, sizes, keys, credentials, error codes.

use std::fmt::Write as _;

use scistream_fsm::types::UidError;
use std::net::IpAddr;

use scistream_fsm::{Addr, AppKey, Credentials, ErrorCode, Guard, Limit, Role, Uid, Why};

use super::Limits;
use crate::{WireError, pb};

/// How much of an offending string an error keeps (errors reach logs and peers).
const CLIP: usize = 64;

fn clip(s: &str) -> String {
    s.chars().take(CLIP).collect()
}

/// A uid from its text: any form of UUID the `uuid` crate parses (1.2 sends hyphenated).
pub fn uid_from_wire(s: &str) -> Result<Uid, WireError> {
    s.parse::<Uid>().map_err(|e| match e {
        UidError::Empty => WireError::EmptyUid,
        UidError::Malformed(text) => WireError::MalformedUid(text),
    })
}

/// A uid's text: lowercase hyphenated, as 1.2's `str(uuid.uuid1())`.
pub fn uid_to_wire(uid: Uid) -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uid.0.hyphenated().encode_lower(&mut buf).to_owned()
}

/// A role from `PROD` or `CONS`.
///
/// Matching ignores ASCII case, so `prod` is the producer. The 1.2 server compares with
/// `== "PROD"` and silently treats anything else (`prod` included) as the consumer; we accept
/// the obvious intent instead of misrouting the session, and refuse every other spelling with
/// [`WireError::BadRole`] rather than guessing.
pub fn role_from_wire(s: &str) -> Result<Role, WireError> {
    if s.eq_ignore_ascii_case("PROD") {
        Ok(Role::Prod)
    } else if s.eq_ignore_ascii_case("CONS") {
        Ok(Role::Cons)
    } else {
        Err(WireError::BadRole(clip(s)))
    }
}

/// A role that 1.2 clients may leave empty (UpdateTargets, Hello): empty is `None`, anything
/// else goes through [`role_from_wire`].
pub fn opt_role_from_wire(s: &str) -> Result<Option<Role>, WireError> {
    if s.is_empty() { Ok(None) } else { role_from_wire(s).map(Some) }
}

/// A number of connections, checked against `1..=limits.max_num_conn`.
pub fn num_conn_from_wire(n: i64, limits: &Limits) -> Result<u16, WireError> {
    u16::try_from(n)
        .ok()
        .filter(|n| (1..=limits.max_num_conn).contains(n))
        .ok_or(WireError::NumConnOutOfRange { got: n, max: limits.max_num_conn })
}

/// A 1.2 rate (`int32`, kB/s): anything but a negative number.
pub fn rate_from_wire(rate: i32) -> Result<u32, WireError> {
    u32::try_from(rate).map_err(|_| WireError::NegativeRate(rate))
}

/// Addresses from their `host:port` texts, all or nothing.
pub fn addrs_from_wire(texts: &[String]) -> Result<Vec<Addr>, WireError> {
    texts.iter().map(|s| s.parse::<Addr>().map_err(WireError::from)).collect()
}

/// Addresses as `host:port` texts (IPv6 hosts in brackets).
pub fn addrs_to_wire(addrs: &[Addr]) -> Vec<String> {
    addrs.iter().map(addr_to_wire).collect()
}

fn addr_to_wire(addr: &Addr) -> String {
    // Room for brackets, the colon and five digits: one allocation per address.
    let mut text = String::with_capacity(addr.host.len() + 8);
    // Writing into a String cannot fail.
    let _ = write!(text, "{addr}");
    text
}

/// A host as the data server reports its listeners' ([`Addr::valid_host`]).
pub fn host_from_wire(host: &str) -> Result<String, WireError> {
    if Addr::valid_host(host) {
        Ok(host.to_owned())
    } else {
        Err(WireError::from(scistream_fsm::types::AddrError::BadHost(clip(host))))
    }
}

/// Ports as the data server reports them: each in `1..=65535`.
pub(crate) fn ports_from_wire(ports: &[u32]) -> Result<Vec<u16>, WireError> {
    ports.iter().map(|&p| u16::try_from(p).ok().filter(|p| *p != 0).ok_or(WireError::BadPort(p))).collect()
}

/// An app key: exactly 16 bytes.
pub fn key_from_wire(bytes: &[u8]) -> Result<AppKey, WireError> {
    <[u8; 16]>::try_from(bytes).map(AppKey).map_err(|_| WireError::KeyLength(bytes.len()))
}

/// An app key that 1.2 clients leave empty: empty is `None`, anything else must be 16 bytes.
pub fn opt_key_from_wire(bytes: &[u8]) -> Result<Option<AppKey>, WireError> {
    if bytes.is_empty() { Ok(None) } else { key_from_wire(bytes).map(Some) }
}

/// Data credentials: exactly 32 bytes.
pub fn creds_from_wire(bytes: &[u8]) -> Result<Credentials, WireError> {
    <[u8; 32]>::try_from(bytes).map(Credentials).map_err(|_| WireError::CredentialsLength(bytes.len()))
}

/// Data credentials that 1.2 clients leave empty: empty is `None`, anything else must be 32
/// bytes.
pub fn opt_creds_from_wire(bytes: &[u8]) -> Result<Option<Credentials>, WireError> {
    if bytes.is_empty() { Ok(None) } else { creds_from_wire(bytes).map(Some) }
}

/// The wire kind of a quota's limit: its name, a role's with the role (`roles:PROD`).
fn limit_kind(limit: Limit) -> String {
    match limit {
        Limit::Role(role) => format!("roles:{role}"),
        other => other.name().to_owned(),
    }
}

/// The wire form of what an ERROR says beyond its code (`None`: nothing).
pub fn why_to_wire(why: Why) -> Option<pb::ErrorWhy> {
    let (kind, a, b, c) = match why {
        Why::Unspecified => return None,
        Why::NumConn { max } => ("NumConn".to_owned(), u64::from(max), 0, 0),
        Why::AppKeyRequired => ("AppKeyRequired".to_owned(), 0, 0, 0),
        Why::UidTaken => ("UidTaken".to_owned(), 0, 0, 0),
        Why::NoDataServer => ("NoDataServer".to_owned(), 0, 0, 0),
        Why::Ports { asked, free } => ("Ports".to_owned(), u64::from(asked), u64::from(free), 0),
        Why::Capacity { capacity, in_use } => ("Capacity".to_owned(), capacity, in_use, 0),
        Why::PortsBusy => ("PortsBusy".to_owned(), 0, 0, 0),
        Why::DataServerLost => ("DataServerLost".to_owned(), 0, 0, 0),
        Why::Lease => ("Lease".to_owned(), 0, 0, 0),
        Why::Draining => ("Draining".to_owned(), 0, 0, 0),
        Why::Policy { guard, ip, port } => {
            let bits = match ip {
                IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
                IpAddr::V6(v6) => u128::from(v6),
            };
            (format!("Policy:{}", guard.name()), (bits >> 64) as u64, bits as u64, u64::from(port))
        }
        Why::Quota { limit, max } => (format!("Quota:{}", limit_kind(limit)), max, 0, 0),
    };
    Some(pb::ErrorWhy { kind, a, b, c })
}

/// What an ERROR says beyond its code, validated: a kind this build does not know, or numbers
/// out of their range, are refused; absent is nothing more.
pub fn why_from_wire(why: Option<&pb::ErrorWhy>) -> Result<Why, WireError> {
    let Some(w) = why else { return Ok(Why::Unspecified) };
    let bad = || WireError::BadWhy(w.kind.chars().take(40).collect());
    let small = |n: u64| u16::try_from(n).map_err(|_| bad());
    let (a, b) = (w.a, w.b);
    if let Some(guard) = w.kind.strip_prefix("Policy:") {
        let guard = Guard::ALL.into_iter().find(|g| g.name() == guard).ok_or_else(bad)?;
        let ip = std::net::Ipv6Addr::from((u128::from(a) << 64) | u128::from(b)).to_canonical();
        let port = u16::try_from(w.c).map_err(|_| bad())?;
        return Ok(Why::Policy { guard, ip, port });
    }
    if let Some(limit) = w.kind.strip_prefix("Quota:") {
        let limit = Limit::ALL.into_iter().find(|l| limit_kind(*l) == limit).ok_or_else(bad)?;
        return if b == 0 && w.c == 0 { Ok(Why::Quota { limit, max: a }) } else { Err(bad()) };
    }
    if w.c != 0 {
        return Err(bad());
    }
    let plain = |why: Why| if a == 0 && b == 0 { Ok(why) } else { Err(bad()) };
    match w.kind.as_str() {
        "" => plain(Why::Unspecified),
        "NumConn" if b == 0 => Ok(Why::NumConn { max: small(a)? }),
        "AppKeyRequired" => plain(Why::AppKeyRequired),
        "UidTaken" => plain(Why::UidTaken),
        "NoDataServer" => plain(Why::NoDataServer),
        "Ports" => Ok(Why::Ports { asked: small(a)?, free: u32::try_from(b).map_err(|_| bad())? }),
        "Capacity" => Ok(Why::Capacity { capacity: a, in_use: b }),
        "PortsBusy" => plain(Why::PortsBusy),
        "DataServerLost" => plain(Why::DataServerLost),
        "Lease" => plain(Why::Lease),
        "Draining" => plain(Why::Draining),
        _ => Err(bad()),
    }
}

/// The wire value of an error code.
pub fn error_code_to_wire(code: ErrorCode) -> pb::ErrorCode {
    match code {
        ErrorCode::InvalidArgument => pb::ErrorCode::InvalidArgument,
        ErrorCode::NotFound => pb::ErrorCode::NotFound,
        ErrorCode::AlreadyExists => pb::ErrorCode::AlreadyExists,
        ErrorCode::ResourceExhausted => pb::ErrorCode::ResourceExhausted,
        ErrorCode::DeadlineExceeded => pb::ErrorCode::DeadlineExceeded,
        ErrorCode::Unauthenticated => pb::ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied => pb::ErrorCode::PermissionDenied,
        ErrorCode::Unavailable => pb::ErrorCode::Unavailable,
        ErrorCode::FailedPrecondition => pb::ErrorCode::FailedPrecondition,
        ErrorCode::Aborted => pb::ErrorCode::Aborted,
        ErrorCode::Unimplemented => pb::ErrorCode::Unimplemented,
    }
}

/// An error code from its raw wire value; `UNSPECIFIED` and unknown values are refused.
pub fn error_code_from_wire(raw: i32) -> Result<ErrorCode, WireError> {
    let code = pb::ErrorCode::try_from(raw).map_err(|_| WireError::UnknownErrorCode(raw))?;
    Ok(match code {
        pb::ErrorCode::Unspecified => return Err(WireError::UnspecifiedErrorCode),
        pb::ErrorCode::InvalidArgument => ErrorCode::InvalidArgument,
        pb::ErrorCode::NotFound => ErrorCode::NotFound,
        pb::ErrorCode::AlreadyExists => ErrorCode::AlreadyExists,
        pb::ErrorCode::ResourceExhausted => ErrorCode::ResourceExhausted,
        pb::ErrorCode::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        pb::ErrorCode::Unauthenticated => ErrorCode::Unauthenticated,
        pb::ErrorCode::PermissionDenied => ErrorCode::PermissionDenied,
        pb::ErrorCode::Unavailable => ErrorCode::Unavailable,
        pb::ErrorCode::FailedPrecondition => ErrorCode::FailedPrecondition,
        pb::ErrorCode::Aborted => ErrorCode::Aborted,
        pb::ErrorCode::Unimplemented => ErrorCode::Unimplemented,
    })
}
