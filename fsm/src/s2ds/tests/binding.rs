//! The Binding state: the control server hears of a session's ports only once the driver has
//! bound them; a port another process holds is set aside for good.

use super::*;

fn bind_failed(n: u128, port: u16) -> Input {
    Input::BindFailed { uid: uid(n), port }
}

#[test]
fn lstn_is_sent_only_once_the_driver_reports_the_ports_bound() {
    let mut ds = attached();
    let out = accept(&mut ds, at(10), start_lstn(1, 2));
    assert_eq!(listens(&out), vec![vec![5000, 5001]]);
    assert!(to_cs(&out).is_empty(), "Lstn before the ports are bound: {out:?}");
    assert_eq!(state(&ds, 1), State::Binding);

    let out = accept(&mut ds, at(12), Input::Bound(uid(1)));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![5000, 5001] }]);
    assert!(listens(&out).is_empty() && unlistens(&out).is_empty(), "{out:?}");
    assert_eq!(state(&ds, 1), State::Reserving);

    // Bound is the answer to one Listen: a second one, or one for a session never started, is
    // refused and answers nothing.
    let (err, out) = reject(&mut ds, at(13), Input::Bound(uid(1)));
    assert_eq!(err, ProtocolError::NotAllowed { machine: "s2ds", state: "Reserving", input: "Bound" });
    assert!(out.is_empty(), "{out:?}");
    let (err, out) = reject(&mut ds, at(14), Input::Bound(uid(2)));
    assert_eq!(err, ProtocolError::UnknownSession(uid(2)));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn repeated_start_lstn_while_binding_is_answered_once_the_ports_are_bound() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 2));
    let free = ds.free_ports().clone();
    for ms in [20, 21] {
        let out = accept(&mut ds, at(ms), start_lstn(1, 2));
        assert!(out.is_empty(), "neither an answer nor a second Listen while binding: {out:?}");
        assert_eq!(state(&ds, 1), State::Binding);
    }
    assert_eq!(*ds.free_ports(), free);

    let out = accept(&mut ds, at(30), Input::Bound(uid(1)));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![5000, 5001] }]);
}

#[test]
fn bind_failed_sets_the_port_aside_for_good_and_binds_fresh_ports() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 2));

    let out = accept(&mut ds, at(11), bind_failed(1, 5000));
    assert_eq!(unlistens(&out), vec![vec![5000, 5001]], "the listeners already bound are closed");
    assert_eq!(listens(&out), vec![vec![5001, 5002]], "the lowest free ports but the busy one");
    assert!(to_cs(&out).is_empty(), "{out:?}");
    assert_eq!(state(&ds, 1), State::Binding);
    assert_eq!(*ds.busy_ports(), BTreeSet::from([5000]));
    assert_eq!(*ds.free_ports(), BTreeSet::from([5003]));

    let out = accept(&mut ds, at(12), bind_failed(1, 5002));
    assert_eq!(unlistens(&out), vec![vec![5001, 5002]]);
    assert_eq!(listens(&out), vec![vec![5001, 5003]]);
    assert_eq!(*ds.busy_ports(), BTreeSet::from([5000, 5002]));
    assert!(ds.free_ports().is_empty());

    // The control server hears only of the ports finally bound, and the bridges use them.
    let out = accept(&mut ds, at(13), Input::Bound(uid(1)));
    assert_eq!(to_cs(&out), vec![Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![5001, 5003] }]);
    let out = accept(&mut ds, at(14), start_conn(1, 9));
    assert!(matches!(&out[..], [.., Effect::StartBridges { ports, .. }] if *ports == [5001, 5003]), "{out:?}");

    // Released, the session's ports go back to the pool; the busy ones never do.
    accept(&mut ds, at(15), ds_rel(1));
    assert_eq!(*ds.free_ports(), BTreeSet::from([5001, 5003]));
    assert_eq!(*ds.busy_ports(), BTreeSet::from([5000, 5002]));
    let out = accept(&mut ds, at(16), start_lstn(2, 2));
    assert_eq!(listens(&out), vec![vec![5001, 5003]]);
    let (err, _) = reject(&mut ds, at(17), start_lstn(3, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(3), code: ErrorCode::ResourceExhausted });
}

#[test]
fn bind_failed_without_enough_free_ports_fails_resource_exhausted_and_returns_the_others() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 2));
    reserve(&mut ds, 11, 2, 2);
    assert!(ds.free_ports().is_empty());

    let out = accept(&mut ds, at(20), bind_failed(1, 5001));
    assert_eq!(unlistens(&out), vec![vec![5000, 5001]], "closed once");
    assert!(listens(&out).is_empty(), "{out:?}");
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::ResourceExhausted }]);
    assert!(cancels(&out, timer(Some(uid(1)), TimerKind::Lease)));
    assert!(timer_at(&out, timer(Some(uid(1)), TimerKind::Tombstone)).is_some());
    assert_eq!(state(&ds, 1), State::Failed);
    assert_eq!(*ds.busy_ports(), BTreeSet::from([5001]));
    assert_eq!(*ds.free_ports(), BTreeSet::from([5000]));

    // A retransmitted StartLstn finds the failed session, as for any finished one.
    let (err, out) = reject(&mut ds, at(25), start_lstn(1, 2));
    assert!(matches!(err, ProtocolError::NotAllowed { state: "Failed", .. }), "{err}");
    assert_eq!(to_cs(&out), vec![Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::Aborted }]);

    // The failed session holds nothing: once the other is released, every usable port is free.
    accept(&mut ds, at(30), ds_rel(2));
    assert_eq!(*ds.free_ports(), BTreeSet::from([5000, 5002, 5003]));
}

#[test]
fn ds_rel_while_binding_returns_the_ports_and_a_late_bind_outcome_is_refused() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 2));
    let out = accept(&mut ds, at(20), ds_rel(1));
    assert_eq!(unlistens(&out), vec![vec![5000, 5001]]);
    assert_eq!(to_cs(&out), vec![Msg::DsReleased { uid: uid(1), inc: INC }]);
    assert!(cancels(&out, timer(Some(uid(1)), TimerKind::Lease)));
    assert_eq!(state(&ds, 1), State::Released);
    assert_eq!(*ds.free_ports(), pool());

    let (err, out) = reject(&mut ds, at(21), Input::Bound(uid(1)));
    assert!(matches!(err, ProtocolError::NotAllowed { state: "Released", input: "Bound", .. }), "{err}");
    assert!(out.is_empty(), "no Lstn for a released session: {out:?}");
    let (err, out) = reject(&mut ds, at(22), bind_failed(1, 5000));
    assert_eq!(err, ProtocolError::Stale("BindFailed"));
    assert!(out.is_empty(), "{out:?}");
    assert!(ds.busy_ports().is_empty());
}

#[test]
fn lease_expiry_while_binding_returns_the_ports() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 2));
    accept(&mut ds, at(11), bind_failed(1, 5001));
    let out = accept(&mut ds, at(30_010), Input::Timer(timer(Some(uid(1)), TimerKind::Lease)));
    assert_eq!(unlistens(&out), vec![vec![5000, 5002]], "the ports of the latest Listen");
    assert!(to_cs(&out).is_empty(), "{out:?}");
    assert_eq!(state(&ds, 1), State::Released);
    assert_eq!(*ds.free_ports(), BTreeSet::from([5000, 5002, 5003]));
    assert_eq!(*ds.busy_ports(), BTreeSet::from([5001]));
}

#[test]
fn attach_with_a_newer_epoch_while_binding_returns_the_ports() {
    let mut ds = attached();
    accept(&mut ds, at(10), start_lstn(1, 3));
    let out = accept(&mut ds, at(20), from_cs(Msg::Attach { epoch: EPOCH + 1, attachment: 1, keep: vec![] }));
    assert_eq!(unlistens(&out), vec![vec![5000, 5001, 5002]]);
    assert!(cancels(&out, timer(Some(uid(1)), TimerKind::Lease)));
    assert!(ds.sessions().is_empty());
    assert_eq!(*ds.free_ports(), pool());

    let (err, out) = reject(&mut ds, at(21), Input::Bound(uid(1)));
    assert_eq!(err, ProtocolError::UnknownSession(uid(1)));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn stale_bind_failed_is_refused_and_changes_nothing() {
    let mut ds = attached();
    let (err, out) = reject(&mut ds, at(5), bind_failed(1, 5000));
    assert_eq!(err, ProtocolError::UnknownSession(uid(1)));
    assert!(out.is_empty());

    accept(&mut ds, at(10), start_lstn(1, 2));
    accept(&mut ds, at(11), bind_failed(1, 5000));
    accept(&mut ds, at(12), start_lstn(2, 1));
    // `reject` checks the core (free and busy ports, sessions) is unchanged.
    for port in [
        5000, // set aside already: the outcome of an earlier Listen
        5003, // another session's
        6000, // outside the pool
    ] {
        let (err, out) = reject(&mut ds, at(13), bind_failed(1, port));
        assert_eq!(err, ProtocolError::Stale("BindFailed"), "port {port}");
        assert!(out.is_empty(), "port {port}: {out:?}");
    }

    // A port of the session's, but once it is bound the listeners are the session's own.
    accept(&mut ds, at(14), Input::Bound(uid(1)));
    let (err, out) = reject(&mut ds, at(15), bind_failed(1, 5001));
    assert_eq!(err, ProtocolError::Stale("BindFailed"));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(state(&ds, 1), State::Reserving);
}
