//! Test-only scaffolding shared by the cores' unit tests: config builders, fixed values, and
//! a way to step any core and read back what it asked for.

use std::fmt::Debug;
use std::time::Duration;

use crate::effect::{Effect, Notice, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::{Msg, Token};
use crate::step::Core;
use crate::time::Instant;
use crate::timing::{Backoff, Profile};
use crate::types::{Addr, AppKey, Credentials, Peer, Principal, Role, Uid};
use crate::{prod_app, s2cs, s2ds, s2uc};

/// The backoff every test config uses: 200 ms doubling up to 5 s.
pub(crate) const BACKOFF: Backoff = Backoff::fixed(Duration::from_millis(200), Duration::from_secs(5));

/// The timing every test config uses: 60 s for the Hello (the control server's lease), data
/// servers 30 s longer, 2 min tombstones, 30 s calls, [`BACKOFF`] everywhere, no jitter.
pub(crate) const TIMING: Profile = Profile {
    call_deadline: Duration::from_secs(30),
    hello_timeout: Duration::from_secs(60),
    ds_lease_margin: Duration::from_secs(30),
    tombstone: Duration::from_secs(120),
    server_backoff: BACKOFF,
    client_backoff: BACKOFF,
    app_backoff: BACKOFF,
    link_heartbeat: Duration::from_secs(10),
    link_silence: Duration::from_secs(30),
    jitter_seed: 0,
};

/// `ms` milliseconds after the origin.
pub(crate) fn at(ms: u64) -> Instant {
    Instant::from_micros(ms * 1_000)
}

/// Session uid number `n`.
pub(crate) fn uid(n: u128) -> Uid {
    Uid::from_u128(n)
}

/// An app key made of the byte `b` (`key(0)` is the absent key 1.2 controllers send).
pub(crate) fn key(b: u8) -> AppKey {
    AppKey([b; 16])
}

/// Data credentials made of the byte `b`.
pub(crate) fn creds(b: u8) -> Credentials {
    Credentials([b; 32])
}

/// `host:port`.
pub(crate) fn addr(host: &str, port: u16) -> Addr {
    Addr::new(host, port)
}

/// The identity an authenticated caller has.
pub(crate) fn who(name: &str) -> Option<Principal> {
    Some(Principal(name.to_owned()))
}

/// A data server of facility `facility` handing out ports `ports`.
pub(crate) fn s2ds_config(facility: Role, ports: std::ops::RangeInclusive<u16>) -> s2ds::Config {
    s2ds::Config {
        facility,
        ports,
        advertise: crate::Faces::both(advertise_host(facility).to_owned()),
        timing: TIMING,
        capacity: None,
    }
}

/// What the test data servers offer in their AttachAck: more ports than any test asks for.
pub(crate) const POOL: crate::Pool = crate::Pool { ports: 64, capacity: None };

/// A control server of facility `facility` (its data server advertises `gw.<facility>`).
pub(crate) fn s2cs_config(facility: Role) -> s2cs::Config {
    s2cs::Config {
        facility,
        nodes: 1,
        max_num_conn: 4,
        timing: TIMING,
        require_app_keys: false,
        allow_plain_wan: false,
        capacity: None,
        default_rate: 0,
        operators: Vec::new(),
        policy: Default::default(),
    }
}

/// The host the test data server of `facility` advertises.
pub(crate) fn advertise_host(facility: Role) -> &'static str {
    match facility {
        Role::Prod => "gw.prod",
        Role::Cons => "gw.cons",
    }
}

/// A user client presenting `token`.
pub(crate) fn s2uc_config() -> s2uc::Config {
    s2uc::Config { token: Token("tok".to_owned()), timing: TIMING }
}

/// A producer controller that says Hello for 60 s.
pub(crate) fn prod_app_config() -> prod_app::Config {
    prod_app::Config { timing: TIMING }
}

/// A timer key.
pub(crate) fn timer(uid: Option<Uid>, kind: TimerKind) -> TimerKey {
    TimerKey { uid, kind }
}

/// The messages in `out`, with their destinations, in order.
pub(crate) fn sent(out: &Outbox) -> Vec<(Peer, Msg)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// The messages in `out` sent to `to`, in order.
pub(crate) fn sent_to(out: &Outbox, to: Peer) -> Vec<Msg> {
    sent(out).into_iter().filter(|(p, _)| *p == to).map(|(_, m)| m).collect()
}

/// The timers `out` sets, in order.
pub(crate) fn timers_set(out: &Outbox) -> Vec<(TimerKey, Instant)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::SetTimer { key, at } => Some((*key, *at)),
            _ => None,
        })
        .collect()
}

/// When `out` sets the timer `key` (the last setting wins, as drivers replace timers).
pub(crate) fn timer_at(out: &Outbox, key: TimerKey) -> Option<Instant> {
    timers_set(out).into_iter().rev().find(|(k, _)| *k == key).map(|(_, at)| at)
}

/// Whether `out` cancels the timer `key`.
pub(crate) fn cancels(out: &Outbox, key: TimerKey) -> bool {
    out.iter().any(|e| matches!(e, Effect::CancelTimer { key: k } if *k == key))
}

/// The notices in `out`, in order.
pub(crate) fn notices(out: &Outbox) -> Vec<Notice> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// Steps `core` with an input it must accept; returns what it asked for.
#[track_caller]
pub(crate) fn accept<C: Core>(core: &mut C, now: Instant, input: C::Input) -> Outbox
where
    C::Input: Debug,
{
    let mut out = Outbox::new();
    let shown = format!("{input:?}");
    if let Err(e) = core.step(now, input, &mut out) {
        panic!("input {shown} refused: {e}");
    }
    out
}

/// Steps `core` with an input it must refuse; checks the core is unchanged and returns the
/// error and whatever reply it still pushed.
#[track_caller]
pub(crate) fn reject<C: Core + Clone + PartialEq + Debug>(
    core: &mut C,
    now: Instant,
    input: C::Input,
) -> (ProtocolError, Outbox)
where
    C::Input: Debug,
{
    let before = core.clone();
    let mut out = Outbox::new();
    let shown = format!("{input:?}");
    match core.step(now, input, &mut out) {
        Ok(()) => panic!("input {shown} accepted, expected a refusal; effects: {out:?}"),
        Err(e) => {
            assert_eq!(*core, before, "refused input {shown} ({e}) changed the core");
            (e, out)
        }
    }
}
