//! The control server and its data server: attaching, incarnations, refusals, retransmission.

use super::*;

#[test]
fn boot_sends_attach_and_retransmits_with_backoff_until_acknowledged() {
    let mut cs = ControlServer::new(s2cs_config(Role::Prod), EPOCH);
    let key = timer(None, TimerKind::Attach(Node(0)));
    let out = accept(&mut cs, at(0), Input::Boot);
    assert_eq!(sent(&out), vec![(DS, Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] })]);
    assert_eq!(timer_at(&out, key), Some(at(0) + BACKOFF.delay(1, 0)));

    let out = accept(&mut cs, at(200), Input::Timer(key));
    assert_eq!(sent(&out), vec![(DS, Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] })]);
    assert_eq!(timer_at(&out, key), Some(at(200) + BACKOFF.delay(2, 0)));

    let out = accept(
        &mut cs,
        at(300),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC, held: vec![], pool: POOL }),
    );
    assert!(cancels(&out, key));
    assert_eq!(cs.state(), State::Serving);

    let out = accept(&mut cs, at(600), Input::Timer(key));
    assert!(out.is_empty(), "no Attach once serving: {out:?}");
}

#[test]
fn attach_ack_of_another_epoch_is_stale() {
    let mut cs = ControlServer::new(s2cs_config(Role::Prod), EPOCH);
    accept(&mut cs, at(0), Input::Boot);
    let (err, _) = reject(
        &mut cs,
        at(1),
        from_ds(Msg::AttachAck { epoch: EPOCH - 1, attachment: 1, inc: INC, held: vec![], pool: POOL }),
    );
    assert_eq!(err, ProtocolError::Stale("AttachAck"));
    assert_eq!(cs.state(), State::Attaching);
}

#[test]
fn data_server_refusal_fails_the_reservation_with_its_code() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    accept(&mut cs, at(10), req(2, 1));
    let refused = |n, code| from_ds(Msg::Refused { uid: uid(n), inc: INC, code });

    let out = accept(&mut cs, at(20), refused(1, ErrorCode::ResourceExhausted));
    assert_eq!(sent(&out), vec![(UC, error_why(1, 1, ErrorCode::ResourceExhausted, crate::Why::PortsBusy))]);
    assert_eq!(state(&cs, 1), S::Failed);
    assert!(cancels(&out, lease_key(uid(1))));

    // Other refusals are the data server's business; the client learns the session was lost.
    let out = accept(&mut cs, at(20), refused(2, ErrorCode::AlreadyExists));
    assert_eq!(sent(&out), vec![(UC, error(2, 1, ErrorCode::Aborted))]);
}

#[test]
fn data_server_refusal_of_the_bridges_aborts_and_releases() {
    let mut cs = serving();
    listening(&mut cs, 1);
    accept(&mut cs, at(30), update(1, 3));
    let out = accept(&mut cs, at(40), from_ds(Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::Aborted }));
    // Both waiting calls learn it: the UpdateTargets, and the REQ still waiting for its Hello.
    assert_eq!(
        sent(&out),
        vec![
            (DS, Msg::DsRel { uid: uid(1), epoch: EPOCH }),
            (UC, error(1, 1, ErrorCode::Aborted)),
            (UC, error(1, 3, ErrorCode::Aborted))
        ]
    );
    assert_eq!(state(&cs, 1), S::Aborting);
}

#[test]
fn a_new_data_server_incarnation_fails_live_sessions_with_aborted_and_reattaches() {
    let mut cs = serving();
    listening(&mut cs, 1);
    established(&mut cs, 2);
    accept(&mut cs, at(10), req(3, 1));
    accept(&mut cs, at(50), rel_as(alice(), 2, 4));

    let out = accept(&mut cs, at(100), from_ds(Msg::DsBoot { inc: INC + 1 }));
    let msgs = sent(&out);
    assert!(msgs.contains(&(UC, error_why(1, 1, ErrorCode::Aborted, crate::Why::DataServerLost))), "{msgs:?}");
    assert!(msgs.contains(&(UC, Msg::Released { uid: uid(2), seq: 4 })), "{msgs:?}");
    assert!(msgs.contains(&(UC, error_why(3, 1, ErrorCode::Aborted, crate::Why::DataServerLost))), "{msgs:?}");
    assert!(msgs.contains(&(DS, Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] })), "{msgs:?}");
    assert_eq!(cs.state(), State::Attaching);
    assert_eq!((state(&cs, 1), state(&cs, 2), state(&cs, 3)), (S::Failed, S::Released, S::Failed));
    assert_eq!(cs.session(&uid(1)).unwrap().failure, Some(ErrorCode::Aborted));

    let (err, _) = reject(&mut cs, at(101), req(4, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(4), code: ErrorCode::Unavailable });
    // Answers of the old incarnation are stale now.
    let (err, _) = reject(
        &mut cs,
        at(102),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC, held: vec![], pool: POOL }),
    );
    assert_eq!(err, ProtocolError::Stale("AttachAck"));
    let (err, _) = reject(&mut cs, at(102), from_ds(Msg::DsBoot { inc: INC + 1 }));
    assert_eq!(err, ProtocolError::Stale("DsBoot"));

    accept(
        &mut cs,
        at(103),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC + 1, held: vec![], pool: POOL }),
    );
    assert_eq!(cs.state(), State::Serving);
    accept(&mut cs, at(104), req(4, 1));
}

#[test]
fn a_data_server_restarted_behind_a_delayed_attach_is_recognised_by_its_incarnation() {
    // The restarted data server took a late duplicate of our Attach for an answer to its
    // DsBoot and stopped announcing itself: its newer incarnation is all we ever see of it.
    let mut cs = serving();
    listening(&mut cs, 1);
    let out = accept(
        &mut cs,
        at(100),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC + 1, held: vec![], pool: POOL }),
    );
    assert!(sent(&out).contains(&(UC, error_why(1, 1, ErrorCode::Aborted, crate::Why::DataServerLost))), "{out:?}");
    assert_eq!(state(&cs, 1), S::Failed);
    assert_eq!(cs.state(), State::Serving);
    accept(&mut cs, at(110), req(2, 1));
    accept(
        &mut cs,
        at(120),
        from_ds(Msg::Lstn { uid: uid(2), inc: INC + 1, host: "gw.prod".into(), ports: vec![5000, 5001] }),
    );
    assert_eq!(state(&cs, 2), S::Listening);

    // Its AttachAck lost too: its first answer tells.
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let out = accept(
        &mut cs,
        at(20),
        from_ds(Msg::Lstn { uid: uid(1), inc: INC + 1, host: "gw.prod".into(), ports: vec![5000, 5001] }),
    );
    assert!(sent(&out).contains(&(UC, error_why(1, 1, ErrorCode::Aborted, crate::Why::DataServerLost))), "{out:?}");
    assert!(sent(&out).contains(&(DS, Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] })), "{out:?}");
    assert_eq!(state(&cs, 1), S::Failed);
}

#[test]
fn answers_of_an_older_incarnation_are_stale() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let (err, out) = reject(
        &mut cs,
        at(20),
        from_ds(Msg::Lstn { uid: uid(1), inc: INC - 1, host: "gw.prod".into(), ports: vec![5000] }),
    );
    assert_eq!(err, ProtocolError::Stale("Lstn"));
    assert!(out.is_empty());
    let (err, _) = reject(&mut cs, at(20), from_ds(Msg::DsBoot { inc: INC }));
    assert_eq!(err, ProtocolError::Stale("DsBoot"));
}

#[test]
fn messages_from_the_other_facility_data_server_are_misdirected() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let input = Input::Msg {
        from: Peer::DataServer(Role::Cons, Node(0)),
        caller: None,
        msg: Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![5000, 5001] },
    };
    let (err, _) = reject(&mut cs, at(20), input);
    assert_eq!(err, ProtocolError::Misdirected("Lstn"));
}

#[test]
fn lstn_for_a_session_nobody_remembers_is_released_at_once() {
    let mut cs = serving();
    let (err, out) = reject(&mut cs, at(10), lstn(1, vec![5000]));
    assert_eq!(err, ProtocolError::UnknownSession(uid(1)));
    assert_eq!(sent(&out), vec![(DS, Msg::DsRel { uid: uid(1), epoch: EPOCH })]);
}

#[test]
fn requests_to_the_data_server_are_retransmitted_with_backoff() {
    let mut cs = serving();
    let key = retransmit_key(uid(1));
    let start = Msg::StartLstn { uid: uid(1), epoch: EPOCH, num_conn: 2, role: Role::Prod };
    let out = accept(&mut cs, at(10), req(1, 1));
    assert_eq!(timer_at(&out, key), Some(at(10) + BACKOFF.delay(1, 0)));
    let mut now = at(10);
    for attempt in 2..=8 {
        now = now + BACKOFF.delay(attempt - 1, 0);
        let out = accept(&mut cs, now, Input::Timer(key));
        assert_eq!(sent_to(&out, DS), vec![start.clone()]);
        assert_eq!(timer_at(&out, key), Some(now + BACKOFF.delay(attempt, 0)));
    }
    assert_eq!(BACKOFF.delay(8, 0), BACKOFF.max);

    // Each new phase starts over from the initial delay.
    accept(&mut cs, now, lstn(1, vec![5000, 5001]));
    let out = accept(&mut cs, now, update(1, 3));
    assert_eq!(timer_at(&out, key), Some(now + BACKOFF.delay(1, 0)));
    let out = accept(&mut cs, now, Input::Timer(key));
    assert!(matches!(sent_to(&out, DS).as_slice(), [Msg::StartConn { .. }]));

    // A session waiting on nobody retransmits nothing.
    let mut cs = serving();
    listening(&mut cs, 1);
    let out = accept(&mut cs, at(30), Input::Timer(key));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_relay_that_cannot_run_as_asked_fails_update_targets_with_failed_precondition() {
    let mut cs = serving();
    established_before_update(&mut cs, 1);
    accept(&mut cs, at(30), update(1, 3));
    let refused = Msg::Refused { uid: uid(1), inc: INC, code: ErrorCode::FailedPrecondition };
    let out = accept(&mut cs, at(40), from_ds(refused));
    assert!(sent(&out).contains(&(UC, error(1, 3, ErrorCode::FailedPrecondition))), "{out:?}");
    assert_eq!(cs.session(&uid(1)).unwrap().failure, Some(ErrorCode::FailedPrecondition));
    // Any other refusal of the data server means the session was lost.
    let mut cs = serving();
    established_before_update(&mut cs, 2);
    accept(&mut cs, at(30), update(2, 3));
    let out = accept(&mut cs, at(40), from_ds(Msg::Refused { uid: uid(2), inc: INC, code: ErrorCode::Unavailable }));
    assert!(sent(&out).contains(&(UC, error(2, 3, ErrorCode::Aborted))), "{out:?}");
}

/// Session `n` listening with its producer's Hello in: its REQ is answered.
fn established_before_update(cs: &mut ControlServer, n: u128) {
    listening(cs, n);
    accept(cs, at(25), hello(n, 1, key(1)));
}

/// What the durable store got from `out`, in order.
fn persisted(out: &Outbox) -> Vec<Effect> {
    out.iter().filter(|e| matches!(e, Effect::Persist(_) | Effect::Unpersist { .. })).cloned().collect()
}

#[test]
fn an_established_session_is_persisted_and_unpersisted_once_it_is_released() {
    let mut cs = serving();
    listening(&mut cs, 1);
    accept(&mut cs, at(25), hello(1, 1, key(1)));
    let out = accept(&mut cs, at(30), update(1, 3));
    assert!(persisted(&out).is_empty(), "not yet established: {out:?}");
    let out = accept(&mut cs, at(40), from_ds(Msg::Connected { uid: uid(1), inc: INC }));
    let stored = persisted(&out);
    let [Effect::Persist(record)] = stored.as_slice() else { panic!("one record: {stored:?}") };
    assert_eq!(record.uid, uid(1));
    assert_eq!(record.owner, alice().unwrap());
    assert_eq!(record.key, key(1));
    assert_eq!(record.listeners, gw(&[5000, 5001]));
    assert_eq!(record.prod_listeners, prod_listeners());
    assert_eq!(record.targets, prod_listeners());
    assert_eq!(record.creds, creds(9));

    // Leaving Established (the release begins) takes it out of the store.
    let out = accept(&mut cs, at(50), rel_as(alice(), 1, 4));
    assert_eq!(persisted(&out), vec![Effect::Unpersist { uid: uid(1) }]);
    let out = accept(&mut cs, at(60), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    assert!(persisted(&out).is_empty(), "{out:?}");
}

/// The record session `n` leaves in the store once established at `serving()`.
pub(super) fn stored(n: u128) -> Record {
    let mut cs = serving();
    listening(&mut cs, n);
    accept(&mut cs, at(25), hello(n, 1, key(1)));
    accept(&mut cs, at(30), update(n, 3));
    let out = accept(&mut cs, at(40), from_ds(Msg::Connected { uid: uid(n), inc: INC }));
    match persisted(&out).as_slice() {
        [Effect::Persist(r)] => (**r).clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restarted_control_server_hosts_its_stored_sessions_and_asks_its_data_server_to_keep_them() {
    let (a, b) = (stored(1), stored(2));
    let mut cs = ControlServer::recover(s2cs_config(Role::Prod), EPOCH + 1, vec![a, b]);
    let out = accept(&mut cs, at(0), Input::Boot);
    let keep = vec![uid(1), uid(2)];
    assert_eq!(sent(&out), vec![(DS, Msg::Attach { epoch: EPOCH + 1, attachment: 1, keep })]);
    assert_eq!(state(&cs, 1), S::Established);
    // Requests wait for the data server: still attaching.
    let (err, _) = reject(&mut cs, at(1), req(3, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(3), code: ErrorCode::Unavailable });

    // The data server still runs session 1's bridges, not session 2's.
    let out = accept(
        &mut cs,
        at(2),
        from_ds(Msg::AttachAck { epoch: EPOCH + 1, attachment: 1, inc: INC, held: vec![uid(1)], pool: POOL }),
    );
    assert_eq!(cs.state(), State::Serving);
    assert_eq!(state(&cs, 1), S::Established);
    assert_eq!(state(&cs, 2), S::Failed);
    assert_eq!(persisted(&out), vec![Effect::Unpersist { uid: uid(2) }]);
    let view = cs.core().status(&alice().unwrap(), uid(1)).expect("alice's session");
    assert_eq!(view.summary.targets, prod_listeners());
    assert_eq!(cs.core().status(&Principal("bob".into()), uid(1)), Err(ErrorCode::PermissionDenied));

    // Released as before: the data server hears of it under the new epoch.
    let out = accept(&mut cs, at(3), rel_as(alice(), 1, 9));
    assert_eq!(sent(&out), vec![(DS, Msg::DsRel { uid: uid(1), epoch: EPOCH + 1 })]);
    assert_eq!(persisted(&out), vec![Effect::Unpersist { uid: uid(1) }]);
    let out = accept(&mut cs, at(4), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    assert!(sent(&out).contains(&(UC, Msg::Released { uid: uid(1), seq: 9 })), "{out:?}");
}

#[test]
fn recovered_sessions_fail_when_the_data_server_restarted_too() {
    let mut cs = ControlServer::recover(s2cs_config(Role::Prod), EPOCH + 1, vec![stored(1)]);
    accept(&mut cs, at(0), Input::Boot);
    let out = accept(&mut cs, at(1), from_ds(Msg::DsBoot { inc: INC + 1 }));
    assert_eq!(state(&cs, 1), S::Failed);
    assert_eq!(persisted(&out), vec![Effect::Unpersist { uid: uid(1) }]);
    // It attaches again without asking to keep what is gone.
    assert!(sent(&out).contains(&(DS, Msg::Attach { epoch: EPOCH + 1, attachment: 1, keep: vec![] })), "{out:?}");
}

fn heartbeat_key() -> TimerKey {
    TimerKey { uid: None, kind: TimerKind::Heartbeat(Node(0)) }
}

#[test]
fn a_silent_data_server_is_asked_then_taken_for_lost_and_its_sessions_fail() {
    let mut cs = ControlServer::new(s2cs_config(Role::Prod), EPOCH);
    accept(&mut cs, at(0), Input::Boot);
    let out = accept(
        &mut cs,
        at(1),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC, held: vec![], pool: POOL }),
    );
    assert_eq!(timer_at(&out, heartbeat_key()), Some(at(10_001)), "asked every 10 s");
    established(&mut cs, 1);

    // Answered: the next question in 10 s again.
    let out = accept(&mut cs, at(10_001), Input::Timer(heartbeat_key()));
    assert_eq!(sent(&out), vec![(DS, Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] })]);
    accept(
        &mut cs,
        at(10_005),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC, held: vec![], pool: POOL }),
    );
    let out = accept(&mut cs, at(20_005), Input::Timer(heartbeat_key()));
    assert_eq!(timer_at(&out, heartbeat_key()), Some(at(30_005)));
    // Unanswered: asked again at the data-server backoff, not 10 s later.
    let out = accept(&mut cs, at(30_005), Input::Timer(heartbeat_key()));
    let next = timer_at(&out, heartbeat_key()).expect("re-armed");
    assert!(next < at(31_000), "{next:?}");
    assert_eq!(state(&cs, 1), S::Established);

    // 30 s after the last answer: lost. The session fails, the core attaches again under a new
    // attachment, and an answer to the old one is stale.
    let out = accept(&mut cs, at(40_005), Input::Timer(heartbeat_key()));
    assert_eq!(cs.state(), State::Attaching);
    assert_eq!(state(&cs, 1), S::Failed);
    assert_eq!(cs.session(&uid(1)).unwrap().failure, Some(ErrorCode::Aborted));
    assert!(sent(&out).contains(&(DS, Msg::Attach { epoch: EPOCH, attachment: 2, keep: vec![] })), "{out:?}");
    let (err, _) = reject(
        &mut cs,
        at(40_010),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC, held: vec![], pool: POOL }),
    );
    assert_eq!(err, ProtocolError::Stale("AttachAck"));
    accept(
        &mut cs,
        at(40_020),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 2, inc: INC, held: vec![], pool: POOL }),
    );
    assert_eq!(cs.state(), State::Serving);
}

#[test]
fn a_session_after_a_long_idle_time_is_not_failed_for_the_silence_nobody_asked_about() {
    let mut cs = serving();
    // Nothing held: the heartbeat stops.
    let out = accept(&mut cs, at(10_001), Input::Timer(heartbeat_key()));
    assert!(sent(&out).is_empty() && timer_at(&out, heartbeat_key()).is_none(), "{out:?}");
    // Ten minutes later a session comes: the data server is asked, not taken for lost.
    let out = accept(&mut cs, at(600_000), req(1, 1));
    assert_eq!(timer_at(&out, heartbeat_key()), Some(at(610_000)));
    let out = accept(&mut cs, at(610_000), Input::Timer(heartbeat_key()));
    assert_eq!(cs.state(), State::Serving);
    assert_eq!(sent(&out), vec![(DS, Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] })]);
    assert_eq!(state(&cs, 1), S::Reserving);
}

#[test]
fn ports_a_restarted_data_server_reserves_for_a_session_already_failed_are_given_back_at_once() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    // The data server restarts before answering; the session fails with it.
    accept(&mut cs, at(20), from_ds(Msg::DsBoot { inc: INC + 1 }));
    accept(
        &mut cs,
        at(21),
        from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC + 1, held: vec![], pool: POOL }),
    );
    assert_eq!(state(&cs, 1), S::Failed);
    // A StartLstn of the session that overtook its failure (production runs the session in an
    // actor of its own) reaches the new incarnation, which reserves ports: they come back now.
    let before = cs.session(&uid(1)).cloned();
    let (err, out) = reject(
        &mut cs,
        at(30),
        from_ds(Msg::Lstn { uid: uid(1), inc: INC + 1, host: "gw.prod".into(), ports: vec![5000] }),
    );
    assert_eq!(err, ProtocolError::Stale("Lstn"));
    assert_eq!(sent(&out), vec![(DS, Msg::DsRel { uid: uid(1), epoch: EPOCH })]);
    assert_eq!(cs.session(&uid(1)).cloned(), before, "the session is unchanged");
}
