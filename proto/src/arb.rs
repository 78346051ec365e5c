//! Proptest strategies for the domain types and messages: every value they generate satisfies
//! the invariants the wire checks, so it must survive an encode/decode round trip.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use scistream_fsm::{
    Addr, AppKey, Credentials, ErrorCode, Guard, Limit, Msg, Pool, Role, SessionParams, Token, Uid, Why,
};

use crate::Limits;

pub(crate) fn uid() -> impl Strategy<Value = Uid> {
    any::<u128>().prop_map(Uid::from_u128)
}

pub(crate) fn role() -> impl Strategy<Value = Role> {
    select(Role::ALL.to_vec())
}

/// Host names, IPv4 and IPv6 literals alike: any non-empty run of the characters a host may
/// hold (IPv6 literals are the ones with a colon).
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,15}(\\.[a-z0-9-]{1,10}){0,3}",
        "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
        "[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}",
        "[A-Za-z0-9._:-]{1,253}",
    ]
}

pub(crate) fn addr() -> impl Strategy<Value = Addr> {
    (host(), 1..=u16::MAX).prop_map(|(host, port)| Addr::new(host, port))
}

pub(crate) fn addrs() -> impl Strategy<Value = Vec<Addr>> {
    vec(addr(), 0..5)
}

pub(crate) fn key() -> impl Strategy<Value = AppKey> {
    any::<[u8; 16]>().prop_map(AppKey)
}

pub(crate) fn creds() -> impl Strategy<Value = Credentials> {
    any::<[u8; 32]>().prop_map(Credentials)
}

fn token() -> impl Strategy<Value = Token> {
    any::<String>().prop_map(Token)
}

fn num_conn() -> impl Strategy<Value = u16> {
    1..=Limits::DEFAULT.max_num_conn
}

pub(crate) fn params() -> impl Strategy<Value = SessionParams> {
    (role(), num_conn(), any::<u32>()).prop_map(|(role, num_conn, rate)| SessionParams { role, num_conn, rate })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    select(ErrorCode::ALL.to_vec())
}

/// Every explanation an ERROR may carry, with arbitrary numbers.
fn why() -> impl Strategy<Value = Why> {
    prop_oneof![
        Just(Why::Unspecified),
        any::<u16>().prop_map(|max| Why::NumConn { max }),
        Just(Why::AppKeyRequired),
        Just(Why::UidTaken),
        Just(Why::NoDataServer),
        (any::<u16>(), any::<u32>()).prop_map(|(asked, free)| Why::Ports { asked, free }),
        (any::<u64>(), any::<u64>()).prop_map(|(capacity, in_use)| Why::Capacity { capacity, in_use }),
        Just(Why::PortsBusy),
        Just(Why::DataServerLost),
        Just(Why::Lease),
        Just(Why::Draining),
        (guard(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(guard, ip, port)| {
            // The wire carries IPv4 as IPv4-mapped IPv6, decoded back as IPv4.
            let ip = std::net::IpAddr::from(ip).to_canonical();
            Why::Policy { guard, ip, port }
        }),
        (limit(), any::<u64>()).prop_map(|(limit, max)| Why::Quota { limit, max }),
    ]
}

fn guard() -> impl Strategy<Value = Guard> {
    select(Guard::ALL.to_vec())
}

fn limit() -> impl Strategy<Value = Limit> {
    select(Limit::ALL.to_vec())
}

fn ports() -> impl Strategy<Value = Vec<u16>> {
    vec(1..=u16::MAX, 0..5)
}

/// Every variant of [`Msg`], with arbitrary valid fields.
pub(crate) fn msg() -> impl Strategy<Value = Msg> {
    let s = any::<u32>;
    let n = any::<u64>;
    prop_oneof![
        (uid(), s(), token(), params(), key()).prop_map(|(uid, seq, token, params, key)| Msg::Req {
            uid,
            seq,
            token,
            params,
            key
        }),
        (uid(), s(), token()).prop_map(|(uid, seq, token)| Msg::ReqListeners { uid, seq, token }),
        (uid(), s(), token(), addrs(), creds())
            .prop_map(|(uid, seq, token, remote, creds)| { Msg::Update { uid, seq, token, remote, creds } }),
        (uid(), s(), token()).prop_map(|(uid, seq, token)| Msg::Rel { uid, seq, token }),
        (uid(), s(), addrs(), addrs())
            .prop_map(|(uid, seq, listeners, prod_listeners)| { Msg::Resp { uid, seq, listeners, prod_listeners } }),
        (uid(), s(), addrs(), addrs()).prop_map(|(uid, seq, listeners, prod_listeners)| Msg::ProdLstn {
            uid,
            seq,
            listeners,
            prod_listeners
        }),
        (uid(), s()).prop_map(|(uid, seq)| Msg::Updated { uid, seq }),
        (uid(), s()).prop_map(|(uid, seq)| Msg::Released { uid, seq }),
        (uid(), s(), error_code(), why()).prop_map(|(uid, seq, code, why)| Msg::Error { uid, seq, code, why }),
        (uid(), s(), key(), addrs()).prop_map(|(uid, seq, key, prod_listeners)| Msg::Hello {
            uid,
            seq,
            key,
            prod_listeners
        }),
        (uid(), s(), addrs()).prop_map(|(uid, seq, listeners)| Msg::HelloAck { uid, seq, listeners }),
        n().prop_map(|inc| Msg::DsBoot { inc }),
        (n(), n(), vec(uid(), 0..4)).prop_map(|(epoch, attachment, keep)| Msg::Attach { epoch, attachment, keep }),
        (n(), n(), n(), vec(uid(), 0..4), any::<u32>(), prop::option::of(1..=u64::MAX)).prop_map(
            |(epoch, attachment, inc, held, ports, capacity)| Msg::AttachAck {
                epoch,
                attachment,
                inc,
                held,
                pool: Pool { ports, capacity }
            }
        ),
        (uid(), n(), num_conn(), role()).prop_map(|(uid, epoch, num_conn, role)| Msg::StartLstn {
            uid,
            epoch,
            num_conn,
            role
        }),
        (uid(), n(), host(), ports()).prop_map(|(uid, inc, host, ports)| Msg::Lstn { uid, inc, host, ports }),
        (uid(), n(), error_code()).prop_map(|(uid, inc, code)| Msg::Refused { uid, inc, code }),
        (uid(), n(), addrs(), creds(), role(), any::<u32>()).prop_map(|(uid, epoch, targets, creds, role, rate)| {
            Msg::StartConn { uid, epoch, targets, creds, role, rate }
        }),
        (uid(), n()).prop_map(|(uid, inc)| Msg::Connected { uid, inc }),
        (uid(), n()).prop_map(|(uid, epoch)| Msg::DsRel { uid, epoch }),
        (uid(), n()).prop_map(|(uid, inc)| Msg::DsReleased { uid, inc }),
    ]
}
