use std::collections::BTreeSet;

use super::*;
use crate::testkit::{BACKOFF, accept, addr, at, cancels, creds, reject, s2ds_config, sent_to, timer, timer_at, uid};

const CS: Peer = Peer::ControlServer(Role::Prod);
const EPOCH: u64 = 7;
const INC: u64 = 3;

fn from_cs(msg: Msg) -> Input {
    Input::Msg { from: CS, msg }
}

fn start_lstn(n: u128, num_conn: u16) -> Input {
    from_cs(Msg::StartLstn { uid: uid(n), epoch: EPOCH, num_conn, role: Role::Prod })
}

fn start_conn(n: u128, cred: u8) -> Input {
    from_cs(Msg::StartConn {
        uid: uid(n),
        epoch: EPOCH,
        targets: targets(),
        creds: creds(cred),
        role: Role::Cons,
        rate: 0,
    })
}

fn ds_rel(n: u128) -> Input {
    from_cs(Msg::DsRel { uid: uid(n), epoch: EPOCH })
}

fn targets() -> Vec<Addr> {
    vec![addr("10.0.0.1", 6000), addr("10.0.0.1", 6001)]
}

/// A data server with ports 5000..=5003, booted and attached under `EPOCH`.
fn attached() -> S2ds {
    let mut ds = S2ds::new(s2ds_config(Role::Prod, 5000..=5003), INC);
    accept(&mut ds, at(0), Input::Boot);
    accept(&mut ds, at(1), from_cs(Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }));
    ds
}

fn pool() -> BTreeSet<u16> {
    (5000..=5003).collect()
}

fn state(ds: &S2ds, n: u128) -> State {
    ds.sessions()[&uid(n)].state()
}

fn to_cs(out: &Outbox) -> Vec<Msg> {
    sent_to(out, CS)
}

/// StartLstn for session `n`, then its listeners bound, as a driver reports them: the session
/// is Reserving and its Lstn sent.
fn reserve(ds: &mut S2ds, ms: u64, n: u128, num_conn: u16) {
    accept(ds, at(ms), start_lstn(n, num_conn));
    let out = accept(ds, at(ms), Input::Bound(uid(n)));
    assert!(matches!(to_cs(&out)[..], [Msg::Lstn { .. }]), "{out:?}");
}

/// The ports `out` asks to bind, per Listen, in order.
fn listens(out: &Outbox) -> Vec<Vec<u16>> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Listen { ports, .. } => Some(ports.clone()),
            _ => None,
        })
        .collect()
}

/// The ports `out` gives back, per Unlisten, in order.
fn unlistens(out: &Outbox) -> Vec<Vec<u16>> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Unlisten { ports, .. } => Some(ports.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn boot_announces_ds_boot_and_retransmits_with_backoff_until_attached() {
    let mut ds = S2ds::new(s2ds_config(Role::Prod, 5000..=5003), INC);
    let boot_timer = timer(None, TimerKind::Retransmit);

    let out = accept(&mut ds, at(0), Input::Boot);
    assert_eq!(to_cs(&out), vec![Msg::DsBoot { inc: INC }]);
    assert_eq!(timer_at(&out, boot_timer), Some(at(0) + BACKOFF.delay(1, 0)));

    let out = accept(&mut ds, at(200), Input::Timer(boot_timer));
    assert_eq!(to_cs(&out), vec![Msg::DsBoot { inc: INC }]);
    assert_eq!(timer_at(&out, boot_timer), Some(at(200) + BACKOFF.delay(2, 0)));

    let out = accept(&mut ds, at(600), Input::Timer(boot_timer));
    assert_eq!(timer_at(&out, boot_timer), Some(at(600) + BACKOFF.delay(3, 0)));

    let out = accept(&mut ds, at(700), from_cs(Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }));
    assert_eq!(
        to_cs(&out),
        vec![Msg::AttachAck {
            epoch: EPOCH,
            attachment: 1,
            inc: INC,
            held: vec![],
            pool: Pool { ports: 4, capacity: None }
        }]
    );
    assert!(cancels(&out, boot_timer));
    assert_eq!(ds.epoch(), Some(EPOCH));

    // A timer that was already on its way when the Attach arrived sends nothing more.
    let out = accept(&mut ds, at(1400), Input::Timer(boot_timer));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn repeated_attach_of_the_current_epoch_is_acknowledged_and_keeps_sessions() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    accept(&mut ds, at(11), start_lstn(2, 1));
    let out = accept(&mut ds, at(20), from_cs(Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }));
    assert_eq!(
        to_cs(&out),
        vec![Msg::AttachAck {
            epoch: EPOCH,
            attachment: 1,
            inc: INC,
            held: vec![],
            pool: Pool { ports: 4, capacity: None }
        }]
    );
    assert!(unlistens(&out).is_empty(), "{out:?}");
    assert_eq!(state(&ds, 1), State::Reserving);
    assert_eq!(state(&ds, 2), State::Binding);
}

#[test]
fn attach_with_a_newer_epoch_releases_every_session_and_returns_its_ports() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    reserve(&mut ds, 11, 2, 1);
    accept(&mut ds, at(12), start_conn(2, 9));
    accept(&mut ds, at(13), Input::BridgesUp(uid(2)));
    assert_eq!(ds.free_ports().len(), 1);

    let out = accept(&mut ds, at(20), from_cs(Msg::Attach { epoch: EPOCH + 1, attachment: 1, keep: vec![] }));
    assert!(out.contains(&Effect::Unlisten { uid: uid(1), ports: vec![5000, 5001] }), "{out:?}");
    assert!(out.contains(&Effect::Unlisten { uid: uid(2), ports: vec![5002] }), "{out:?}");
    assert!(cancels(&out, timer(Some(uid(1)), TimerKind::Lease)));
    assert_eq!(
        to_cs(&out).last(),
        Some(&Msg::AttachAck {
            epoch: EPOCH + 1,
            attachment: 1,
            inc: INC,
            held: vec![],
            pool: Pool { ports: 4, capacity: None }
        })
    );
    assert!(ds.sessions().is_empty());
    assert_eq!(*ds.free_ports(), pool());
    assert_eq!(ds.epoch(), Some(EPOCH + 1));
}

#[test]
fn messages_of_an_older_epoch_are_dropped_without_a_reply() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 1));
    let old = EPOCH - 1;
    for msg in [
        Msg::Attach { epoch: old, attachment: 1, keep: vec![] },
        Msg::StartLstn { uid: uid(2), epoch: old, num_conn: 1, role: Role::Prod },
        Msg::StartConn { uid: uid(1), epoch: old, targets: targets(), creds: creds(1), role: Role::Cons, rate: 0 },
        Msg::DsRel { uid: uid(1), epoch: old },
    ] {
        let (err, out) = reject(&mut ds, at(20), from_cs(msg));
        assert!(matches!(err, ProtocolError::Stale(_)), "{err}");
        assert!(out.is_empty(), "{out:?}");
    }
}

#[test]
fn session_messages_before_any_attach_are_stale() {
    let mut ds = S2ds::new(s2ds_config(Role::Prod, 5000..=5003), INC);
    accept(&mut ds, at(0), Input::Boot);
    let (err, out) = reject(&mut ds, at(1), start_lstn(1, 1));
    assert_eq!(err, ProtocolError::Stale("StartLstn"));
    assert!(out.is_empty());
}

#[test]
fn messages_from_anyone_but_its_control_server_are_misdirected() {
    let mut ds = attached();
    for from in [Peer::ControlServer(Role::Cons), Peer::Client(1), Peer::DataServer(Role::Prod, crate::Node(0))] {
        let input =
            Input::Msg { from, msg: Msg::StartLstn { uid: uid(1), epoch: EPOCH, num_conn: 1, role: Role::Prod } };
        let (err, out) = reject(&mut ds, at(5), input);
        assert_eq!(err, ProtocolError::Misdirected("StartLstn"));
        assert!(out.is_empty());
    }
    let (err, _) =
        reject(&mut ds, at(5), from_cs(Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![1] }));
    assert_eq!(err, ProtocolError::Misdirected("Lstn"));
}

#[test]
fn start_lstn_binds_the_lowest_free_ports_and_arms_the_lease() {
    let mut ds = attached();
    let out = accept(&mut ds, at(10), start_lstn(1, 2));
    assert!(out.contains(&Effect::Listen { uid: uid(1), ports: vec![5000, 5001], face: Face::Wan }));
    assert_eq!(timer_at(&out, timer(Some(uid(1)), TimerKind::Lease)), Some(at(10) + ds.cfg.timing.ds_lease()));
    assert!(!out.iter().any(|e| matches!(e, Effect::StartBridges { .. })), "no bridges before credentials");
    assert_eq!(state(&ds, 1), State::Binding);
    let out = accept(&mut ds, at(10), Input::Bound(uid(1)));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![5000, 5001] }]);
    assert_eq!(state(&ds, 1), State::Reserving);

    let out = accept(&mut ds, at(11), start_lstn(2, 1));
    assert!(out.contains(&Effect::Listen { uid: uid(2), ports: vec![5002], face: Face::Wan }));
    assert_eq!(ds.free_ports().iter().copied().collect::<Vec<_>>(), vec![5003]);

    // Ports come back and the lowest free one is handed out first.
    accept(&mut ds, at(12), ds_rel(1));
    let out = accept(&mut ds, at(13), start_lstn(3, 1));
    assert!(out.contains(&Effect::Listen { uid: uid(3), ports: vec![5000], face: Face::Wan }), "{out:?}");
}

#[test]
fn repeated_start_lstn_answers_the_same_ports_without_reserving_more() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    let free = ds.free_ports().clone();
    let out = accept(&mut ds, at(20), start_lstn(1, 2));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![5000, 5001] }]);
    assert!(!out.iter().any(|e| matches!(e, Effect::Listen { .. })), "{out:?}");
    assert_eq!(*ds.free_ports(), free);
    assert_eq!(state(&ds, 1), State::Reserving);
}

#[test]
fn start_lstn_with_another_size_for_a_held_uid_is_refused_already_exists() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 2));
    // While its ports are being bound, and once they are.
    for bound in [false, true] {
        if bound {
            accept(&mut ds, at(15), Input::Bound(uid(1)));
        }
        let (err, out) = reject(&mut ds, at(20), start_lstn(1, 3));
        assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
        assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::AlreadyExists }]);
    }
}

#[test]
fn start_lstn_beyond_the_free_ports_is_refused_resource_exhausted_and_reserves_nothing() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 3));
    let (err, out) = reject(&mut ds, at(20), start_lstn(2, 2));
    assert_eq!(err, ProtocolError::Refused { uid: uid(2), code: ErrorCode::ResourceExhausted });
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(2), inc: INC, code: ErrorCode::ResourceExhausted }]);
    assert!(!ds.sessions().contains_key(&uid(2)));
    assert_eq!(ds.free_ports().len(), 1);

    // The last port is still there for a request that fits.
    reserve(&mut ds, 30, 2, 1);
    assert!(ds.free_ports().is_empty());
}

#[test]
fn start_lstn_for_zero_ports_is_refused_and_reserves_nothing() {
    let mut ds = attached();
    let (err, _) = reject(&mut ds, at(10), start_lstn(1, 0));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::ResourceExhausted });
    assert_eq!(*ds.free_ports(), pool());
}

#[test]
fn start_conn_before_start_lstn_is_refused_not_found() {
    let mut ds = attached();
    let (err, out) = reject(&mut ds, at(10), start_conn(1, 9));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::NotFound });
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::NotFound }]);
    assert!(!out.iter().any(|e| matches!(e, Effect::StartBridges { .. })));
}

#[test]
fn start_conn_starts_the_bridges_with_the_given_targets_and_credentials() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    let out = accept(&mut ds, at(20), start_conn(1, 9));
    assert!(out.contains(&Effect::StartBridges {
        uid: uid(1),
        ports: vec![5000, 5001],
        targets: targets(),
        creds: creds(9),
        role: Role::Cons,
        rate: 0,
    }));
    assert!(cancels(&out, timer(Some(uid(1)), TimerKind::Lease)));
    assert!(to_cs(&out).is_empty(), "Connected waits for the bridges: {out:?}");
    assert_eq!(state(&ds, 1), State::Updating);

    // A retransmitted StartConn while the bridges start does not start them twice.
    let out = accept(&mut ds, at(21), start_conn(1, 9));
    assert!(out.is_empty(), "{out:?}");

    let out = accept(&mut ds, at(30), Input::BridgesUp(uid(1)));
    assert_eq!(to_cs(&out), vec![Msg::Connected { uid: uid(1), inc: INC }]);
    assert_eq!(state(&ds, 1), State::Bridging);

    // A StartConn retransmitted after Connected was lost gets Connected again.
    let out = accept(&mut ds, at(40), start_conn(1, 9));
    assert_eq!(to_cs(&out), vec![Msg::Connected { uid: uid(1), inc: INC }]);
    assert!(!out.iter().any(|e| matches!(e, Effect::StartBridges { .. })));
}

#[test]
fn start_conn_with_other_credentials_is_refused_already_exists() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    accept(&mut ds, at(20), start_conn(1, 9));
    let (err, out) = reject(&mut ds, at(30), start_conn(1, 8));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
    assert!(!out.iter().any(|e| matches!(e, Effect::StartBridges { .. })));
}

#[test]
fn bridges_that_fail_return_the_ports_and_refuse_with_aborted() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    accept(&mut ds, at(20), start_conn(1, 9));
    let out = accept(&mut ds, at(30), Input::BridgesFailed { uid: uid(1), code: ErrorCode::Aborted });
    assert!(out.contains(&Effect::Unlisten { uid: uid(1), ports: vec![5000, 5001] }));
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::Aborted }]);
    assert_eq!(state(&ds, 1), State::Failed);
    assert_eq!(*ds.free_ports(), pool());
}

#[test]
fn bridge_outcomes_for_unknown_or_idle_sessions_are_refused() {
    let mut ds = attached();
    let (err, _) = reject(&mut ds, at(5), Input::BridgesUp(uid(1)));
    assert_eq!(err, ProtocolError::UnknownSession(uid(1)));
    accept(&mut ds, at(10), start_lstn(1, 1));
    for input in [Input::BridgesUp(uid(1)), Input::BridgesFailed { uid: uid(1), code: ErrorCode::Aborted }] {
        let (err, out) = reject(&mut ds, at(11), input);
        assert!(matches!(err, ProtocolError::NotAllowed { state: "Binding", .. }), "{err}");
        assert!(out.is_empty(), "{out:?}");
    }
    accept(&mut ds, at(12), Input::Bound(uid(1)));
    let (err, _) = reject(&mut ds, at(13), Input::BridgesUp(uid(1)));
    assert!(matches!(err, ProtocolError::NotAllowed { state: "Reserving", input: "BridgesUp", .. }), "{err}");
}

#[test]
fn lease_expiry_before_start_conn_returns_the_ports() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    let out = accept(&mut ds, at(30_010), Input::Timer(timer(Some(uid(1)), TimerKind::Lease)));
    assert!(out.contains(&Effect::Unlisten { uid: uid(1), ports: vec![5000, 5001] }));
    assert!(timer_at(&out, timer(Some(uid(1)), TimerKind::Tombstone)).is_some());
    assert_eq!(state(&ds, 1), State::Released);
    assert_eq!(*ds.free_ports(), pool());

    // A StartConn arriving after the lease finds the session gone.
    let (err, out) = reject(&mut ds, at(30_020), start_conn(1, 9));
    assert!(matches!(err, ProtocolError::NotAllowed { .. }), "{err}");
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::Aborted }]);
}

#[test]
fn lease_timer_after_start_conn_is_refused_and_keeps_the_bridges() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    accept(&mut ds, at(20), start_conn(1, 9));
    let (err, out) = reject(&mut ds, at(30_010), Input::Timer(timer(Some(uid(1)), TimerKind::Lease)));
    assert!(matches!(err, ProtocolError::NotAllowed { .. }), "{err}");
    assert!(out.is_empty());
}

#[test]
fn ds_rel_releases_the_ports_and_is_idempotent() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    let out = accept(&mut ds, at(20), ds_rel(1));
    assert!(out.contains(&Effect::Unlisten { uid: uid(1), ports: vec![5000, 5001] }));
    assert_eq!(to_cs(&out), vec![Msg::DsReleased { uid: uid(1), inc: INC }]);
    assert_eq!(state(&ds, 1), State::Released);
    assert_eq!(*ds.free_ports(), pool());

    let out = accept(&mut ds, at(30), ds_rel(1));
    assert_eq!(to_cs(&out), vec![Msg::DsReleased { uid: uid(1), inc: INC }]);
    assert!(!out.iter().any(|e| matches!(e, Effect::Unlisten { .. })), "ports returned twice: {out:?}");
    assert_eq!(*ds.free_ports(), pool());

    // Releasing what was never held succeeds too.
    let out = accept(&mut ds, at(40), ds_rel(2));
    assert_eq!(to_cs(&out), vec![Msg::DsReleased { uid: uid(2), inc: INC }]);
    assert!(!ds.sessions().contains_key(&uid(2)));
}

#[test]
fn ds_rel_of_bridging_session_closes_bridges_and_ports() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    accept(&mut ds, at(20), start_conn(1, 9));
    accept(&mut ds, at(30), Input::BridgesUp(uid(1)));
    let out = accept(&mut ds, at(40), ds_rel(1));
    assert!(out.contains(&Effect::Unlisten { uid: uid(1), ports: vec![5000, 5001] }));
    assert_eq!(*ds.free_ports(), pool());
}

#[test]
fn start_lstn_for_a_released_uid_is_refused_until_the_tombstone_forgets_it() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    accept(&mut ds, at(20), ds_rel(1));
    let (_, out) = reject(&mut ds, at(30), start_lstn(1, 2));
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::Aborted }]);
    assert_eq!(*ds.free_ports(), pool());
}

#[test]
fn tombstone_forgets_a_finished_session_but_not_a_live_one() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 1);
    reserve(&mut ds, 11, 2, 1);
    accept(&mut ds, at(20), ds_rel(1));

    let out = accept(&mut ds, at(60_020), Input::Timer(timer(Some(uid(1)), TimerKind::Tombstone)));
    assert!(out.is_empty());
    assert!(!ds.sessions().contains_key(&uid(1)));

    accept(&mut ds, at(60_021), Input::Timer(timer(Some(uid(2)), TimerKind::Tombstone)));
    assert_eq!(state(&ds, 2), State::Reserving);
}

#[test]
fn timers_the_data_server_never_sets_are_misdirected() {
    let mut ds = attached();
    for key in [
        timer(None, TimerKind::Lease),
        timer(None, TimerKind::Deadline),
        timer(Some(uid(1)), TimerKind::Retransmit),
        timer(Some(uid(1)), TimerKind::Deadline),
    ] {
        let (err, _) = reject(&mut ds, at(5), Input::Timer(key));
        assert_eq!(err, ProtocolError::Misdirected("timer"));
    }
}

mod binding;

#[test]
fn a_lost_session_fails_returns_its_ports_and_tells_the_control_server() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    let free_before = ds.free_ports().len();
    let out = accept(&mut ds, at(50), Input::SessionLost(uid(1)));
    assert_eq!(ds.sessions()[&uid(1)].state(), State::Failed);
    assert_eq!(ds.free_ports().len(), free_before + 2);
    assert!(out.iter().any(|e| matches!(e, Effect::Unlisten { uid: u, .. } if *u == uid(1))));
    assert!(to_cs(&out).iter().any(|m| matches!(m, Msg::Refused { code: ErrorCode::Aborted, .. })));
    // Losing it again changes nothing.
    reject(&mut ds, at(51), Input::SessionLost(uid(1)));
}

#[test]
fn a_consumer_sessions_listeners_face_the_lan_and_are_advertised_at_its_lan_host() {
    let mut cfg = s2ds_config(Role::Prod, 5000..=5003);
    cfg.advertise = Faces { wan: "203.0.113.7".into(), lan: "192.0.2.1".into() };
    let mut ds = S2ds::new(cfg, INC);
    accept(&mut ds, at(0), Input::Boot);
    accept(&mut ds, at(1), from_cs(Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }));
    let cons = |n| from_cs(Msg::StartLstn { uid: uid(n), epoch: EPOCH, num_conn: 1, role: Role::Cons });

    let out = accept(&mut ds, at(10), cons(1));
    assert!(out.contains(&Effect::Listen { uid: uid(1), ports: vec![5000], face: Face::Lan }), "{out:?}");
    let out = accept(&mut ds, at(10), Input::Bound(uid(1)));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(1), inc: INC, host: "192.0.2.1".into(), ports: vec![5000] }]);

    // A producer's session on the same node faces the WAN, at its public address.
    accept(&mut ds, at(11), start_lstn(2, 1));
    let out = accept(&mut ds, at(11), Input::Bound(uid(2)));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(2), inc: INC, host: "203.0.113.7".into(), ports: vec![5001] }]);

    // A retransmitted StartLstn gets the same answer; one for the other side is a conflict.
    let out = accept(&mut ds, at(12), cons(1));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(1), inc: INC, host: "192.0.2.1".into(), ports: vec![5000] }]);
    let (err, out) = reject(&mut ds, at(13), start_lstn(1, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::AlreadyExists }]);
}

#[test]
fn a_new_epoch_keeps_the_bridges_its_control_server_recovered_and_drops_the_rest() {
    let mut ds = attached();
    // Session 1 bridging, session 2 only reserved.
    accept(&mut ds, at(10), start_lstn(1, 1));
    accept(&mut ds, at(10), Input::Bound(uid(1)));
    accept(&mut ds, at(11), start_conn(1, 1));
    accept(&mut ds, at(12), Input::BridgesUp(uid(1)));
    accept(&mut ds, at(13), start_lstn(2, 1));
    accept(&mut ds, at(13), Input::Bound(uid(2)));
    assert_eq!(state(&ds, 1), State::Bridging);

    // The control server restarted: it recovered 1 (and 3, which this node never had).
    let attach = Msg::Attach { epoch: EPOCH + 1, attachment: 1, keep: vec![uid(1), uid(2), uid(3)] };
    let out = accept(&mut ds, at(20), from_cs(attach));
    assert_eq!(
        to_cs(&out),
        vec![Msg::AttachAck {
            epoch: EPOCH + 1,
            attachment: 1,
            inc: INC,
            held: vec![uid(1)],
            pool: Pool { ports: 4, capacity: None }
        }]
    );
    assert!(out.iter().any(|e| matches!(e, Effect::Unlisten { uid: u, .. } if *u == uid(2))), "{out:?}");
    assert!(!out.iter().any(|e| matches!(e, Effect::Unlisten { uid: u, .. } if *u == uid(1))), "{out:?}");
    assert_eq!(state(&ds, 1), State::Bridging);
    assert!(!ds.sessions().contains_key(&uid(2)));

    // Released later under the new epoch.
    let out = accept(&mut ds, at(30), from_cs(Msg::DsRel { uid: uid(1), epoch: EPOCH + 1 }));
    assert_eq!(to_cs(&out), vec![Msg::DsReleased { uid: uid(1), inc: INC }]);
    assert_eq!(ds.free_ports().len(), 4);
}

#[test]
fn a_newer_attachment_of_the_same_epoch_drops_what_it_does_not_keep_and_a_repeat_changes_nothing() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 1));
    accept(&mut ds, at(10), Input::Bound(uid(1)));
    // A heartbeat (the same attachment): answered, nothing dropped.
    let out = accept(&mut ds, at(11), from_cs(Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }));
    assert_eq!(
        to_cs(&out),
        vec![Msg::AttachAck {
            epoch: EPOCH,
            attachment: 1,
            inc: INC,
            held: vec![],
            pool: Pool { ports: 4, capacity: None }
        }]
    );
    assert_eq!(state(&ds, 1), State::Reserving);
    // The control server took this data server for lost and attached again: dropped.
    let out = accept(&mut ds, at(12), from_cs(Msg::Attach { epoch: EPOCH, attachment: 2, keep: vec![] }));
    assert!(out.iter().any(|e| matches!(e, Effect::Unlisten { uid: u, .. } if *u == uid(1))), "{out:?}");
    assert!(ds.sessions().is_empty());
    assert_eq!(ds.free_ports().len(), 4);
    // A late copy of the older attachment changes nothing either.
    accept(&mut ds, at(13), start_lstn(2, 1));
    accept(&mut ds, at(13), Input::Bound(uid(2)));
    accept(&mut ds, at(14), from_cs(Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }));
    assert_eq!(state(&ds, 2), State::Reserving);
}

#[test]
fn a_draining_node_offers_no_port_refuses_new_sessions_and_keeps_its_own() {
    let mut ds = attached();
    reserve(&mut ds, 10, 1, 2);
    accept(&mut ds, at(20), Input::Drain);
    assert!(ds.draining());
    // A new session: refused, nothing bound.
    let (err, out) = reject(&mut ds, at(21), start_lstn(2, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(2), code: ErrorCode::ResourceExhausted });
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(2), inc: INC, code: ErrorCode::ResourceExhausted }]);
    // Its answer to the next heartbeat tells its control server it has no port to offer.
    let out = accept(&mut ds, at(30), from_cs(Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }));
    assert!(
        matches!(to_cs(&out).as_slice(), [Msg::AttachAck { pool: Pool { ports: 0, .. }, .. }]),
        "{:?}",
        to_cs(&out)
    );
    // The session it holds goes on: its bridges start, and are reported up.
    accept(&mut ds, at(40), start_conn(1, 5));
    assert_eq!(state(&ds, 1), State::Updating);
    accept(&mut ds, at(41), Input::BridgesUp(uid(1)));
    assert_eq!(state(&ds, 1), State::Bridging);
}
