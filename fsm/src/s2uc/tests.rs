use std::collections::BTreeSet;

use super::*;
use crate::effect::{Notice, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::testkit::{
    BACKOFF, accept, addr, advertise_host, at, cancels, creds, key, notices, reject, s2uc_config, sent, timer,
    timer_at, uid,
};
use crate::types::{Peer, SessionParams};

const PROD: Peer = Peer::ControlServer(Role::Prod);
const CONS: Peer = Peer::ControlServer(Role::Cons);

fn start(n: u128) -> Input {
    Input::Start { uid: uid(n), num_conn: 2, rate: 100, key: key(1), creds: creds(9), plan: both_quiet() }
}

/// Both facilities, without the consumer's Hello (the tests of the Hello say it).
fn both_quiet() -> Plan {
    let mut plan = Plan::both();
    plan.sides[1].hello = None;
    plan
}

fn start_with(n: u128, plan: Plan) -> Input {
    Input::Start { uid: uid(n), num_conn: 2, rate: 100, key: key(1), creds: creds(9), plan }
}

fn from(role: Role, msg: Msg) -> Input {
    Input::Msg { from: Peer::ControlServer(role), msg }
}

/// The gateway listeners the facility serving `role` reserved.
fn gw(role: Role) -> Vec<Addr> {
    let base = match role {
        Role::Prod => 5000,
        Role::Cons => 6000,
    };
    vec![addr(advertise_host(role), base), addr(advertise_host(role), base + 1)]
}

/// Where the producer application listens.
fn app() -> Vec<Addr> {
    vec![addr("10.1.0.5", 7000), addr("10.1.0.5", 7001)]
}

fn resp(n: u128, role: Role) -> Input {
    from(role, Msg::Resp { uid: uid(n), seq: 1, listeners: gw(role), prod_listeners: vec![] })
}

fn prod_lstn(n: u128, seq: u32) -> Input {
    from(Role::Prod, Msg::ProdLstn { uid: uid(n), seq, listeners: gw(Role::Prod), prod_listeners: app() })
}

fn updated(n: u128, role: Role) -> Input {
    from(role, Msg::Updated { uid: uid(n), seq: 3 })
}

fn released(n: u128, role: Role, seq: u32) -> Input {
    from(role, Msg::Released { uid: uid(n), seq })
}

fn error(n: u128, role: Role, seq: u32, code: ErrorCode) -> Input {
    from(role, Msg::Error { uid: uid(n), seq, code, why: crate::Why::Unspecified })
}

fn rel(n: u128, seq: u32) -> Msg {
    Msg::Rel { uid: uid(n), seq, token: s2uc_config().token }
}

fn retransmit(n: u128) -> TimerKey {
    timer(Some(uid(n)), TimerKind::Retransmit)
}

fn deadline(n: u128) -> TimerKey {
    timer(Some(uid(n)), TimerKind::Deadline)
}

fn state(uc: &S2uc, n: u128) -> State {
    uc.session(&uid(n)).expect("session held").state()
}

fn provisioning(uc: &mut S2uc, n: u128) {
    accept(uc, at(0), start(n));
    accept(uc, at(10), resp(n, Role::Prod));
    accept(uc, at(11), resp(n, Role::Cons));
    assert_eq!(state(uc, n), State::Provisioning);
}

fn updating(uc: &mut S2uc, n: u128) {
    provisioning(uc, n);
    accept(uc, at(20), prod_lstn(n, 2));
    assert_eq!(state(uc, n), State::Updating);
}

fn established(uc: &mut S2uc, n: u128) -> Outbox {
    updating(uc, n);
    accept(uc, at(30), updated(n, Role::Prod));
    let out = accept(uc, at(31), updated(n, Role::Cons));
    assert_eq!(state(uc, n), State::Established);
    out
}

fn client() -> S2uc {
    S2uc::new(s2uc_config())
}

#[test]
fn start_sends_req_to_both_sides_with_the_same_seq_and_asks_whether_the_producers_side_admitted_it() {
    let mut uc = client();
    let out = accept(&mut uc, at(0), start(1));
    assert_eq!(notices(&out), vec![], "nothing is announced before the producer's facility admitted it");
    let token = s2uc_config().token;
    let req = |role| Msg::Req {
        uid: uid(1),
        seq: 1,
        token: token.clone(),
        params: SessionParams { role, num_conn: 2, rate: 100 },
        key: key(1),
    };
    assert_eq!(sent(&out), vec![(PROD, req(Role::Prod)), (CONS, req(Role::Cons)), (PROD, probe(1, 1))]);
    assert_eq!(timer_at(&out, deadline(1)), Some(at(0) + s2uc_config().timing.setup_deadline()));
    assert_eq!(timer_at(&out, retransmit(1)), Some(at(0) + BACKOFF.delay(1, 0)));
    // The probe is asked again at its own pace, a tenth of the Hellos' (the listeners it waits
    // for are a data server's bind away).
    assert_eq!(probe_pace(1), BACKOFF.delay(1, 0) / 10);
    assert_eq!(timer_at(&out, hello_key(1)), Some(at(0) + probe_pace(1)));
    assert_eq!(state(&uc, 1), State::Reserving);
}

/// When the client asks the producer's facility again whether it admitted the session, after
/// its `k`th probe.
fn probe_pace(k: u32) -> std::time::Duration {
    s2uc_config().timing.probe_backoff().delay(k, 0)
}

/// The client's `n`th admission probe of session 1.
fn probe(n: u128, k: u32) -> Msg {
    Msg::ReqListeners { uid: uid(n), seq: PROBE_SEQ | k, token: s2uc_config().token }
}

fn probe_answer(n: u128, k: u32, listeners: Vec<Addr>) -> Input {
    from(Role::Prod, Msg::ProdLstn { uid: uid(n), seq: PROBE_SEQ | k, listeners, prod_listeners: vec![] })
}

fn probe_error(n: u128, k: u32, code: ErrorCode) -> Input {
    from(Role::Prod, Msg::Error { uid: uid(n), seq: PROBE_SEQ | k, code, why: crate::Why::Unspecified })
}

#[test]
fn the_session_is_announced_once_the_producers_facility_bound_its_listeners_and_not_before() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    // The REQ is not there yet, then it is but its ports are not bound: asked again each time.
    let out = accept(&mut uc, at(1), probe_error(1, 1, ErrorCode::NotFound));
    assert!(out.is_empty(), "{out:?}");
    let out = accept(&mut uc, at(20), Input::Timer(hello_key(1)));
    assert_eq!(sent(&out), vec![(PROD, probe(1, 2))]);
    assert_eq!(timer_at(&out, hello_key(1)), Some(at(20) + probe_pace(2)));
    let out = accept(&mut uc, at(21), probe_answer(1, 2, vec![]));
    assert!(out.is_empty(), "{out:?}");
    let out = accept(&mut uc, at(60), Input::Timer(hello_key(1)));
    assert_eq!(sent(&out), vec![(PROD, probe(1, 3))]);
    // Bound: announced, once, and asked no more.
    let out = accept(&mut uc, at(61), probe_answer(1, 3, gw(Role::Prod)));
    assert_eq!(notices(&out), vec![Notice::Created { uid: uid(1), key: key(1) }]);
    assert!(cancels(&out, hello_key(1)));
    let (err, out) = reject(&mut uc, at(62), probe_answer(1, 2, gw(Role::Prod)));
    assert_eq!(err, ProtocolError::Stale("ProdLstn"));
    assert!(out.is_empty(), "a late answer announces nothing again: {out:?}");
    let out = accept(&mut uc, at(200), Input::Timer(hello_key(1)));
    assert!(sent(&out).is_empty(), "{out:?}");
    assert_eq!(state(&uc, 1), State::Reserving, "the probe never moves the session");
}

#[test]
fn a_session_the_producers_facility_refused_is_never_announced() {
    let mut uc = client();
    let mut all = accept(&mut uc, at(0), start(1));
    // The facility has no room: its REQ is refused at once, and it holds nothing to probe.
    all.extend(accept(&mut uc, at(1), probe_error(1, 1, ErrorCode::NotFound)));
    let exhausted = error(1, Role::Prod, 1, ErrorCode::ResourceExhausted);
    all.extend(accept(&mut uc, at(2), exhausted));
    all.extend(accept(&mut uc, at(3), released(1, Role::Cons, 2)));
    all.extend(accept(&mut uc, at(20), Input::Timer(hello_key(1))));
    assert_eq!(notices(&all), vec![Notice::Failed { uid: uid(1), code: ErrorCode::ResourceExhausted }]);
    assert!(!sent(&all).contains(&(PROD, probe(1, 2))), "no probe after the session failed: {all:?}");
}

#[test]
fn a_probe_refused_for_good_stops_and_leaves_the_answer_to_the_req() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let out = accept(&mut uc, at(1), probe_error(1, 1, ErrorCode::Aborted));
    assert!(notices(&out).is_empty() && cancels(&out, hello_key(1)), "{out:?}");
    assert_eq!(state(&uc, 1), State::Reserving);
    // If the REQ is answered after all, the facility did admit it: announced then.
    let out = accept(&mut uc, at(10), resp(1, Role::Prod));
    assert_eq!(notices(&out), vec![Notice::Created { uid: uid(1), key: key(1) }]);
}

#[test]
fn a_server_without_req_listeners_gets_the_session_announced_at_once_as_1_2_did() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let out = accept(&mut uc, at(1), probe_error(1, 1, ErrorCode::Unimplemented));
    assert_eq!(notices(&out), vec![Notice::Created { uid: uid(1), key: key(1) }]);
    let out = accept(&mut uc, at(20), Input::Timer(hello_key(1)));
    assert!(sent(&out).is_empty(), "{out:?}");
}

#[test]
fn plans_whose_hellos_the_client_says_itself_never_probe_nor_announce() {
    for plan in [Plan::producer(Some(prod_app())), Plan::consumer(gw(Role::Prod), true)] {
        let mut uc = client();
        let out = accept(&mut uc, at(0), start_with(1, plan));
        assert!(!sent(&out).iter().any(|(_, m)| matches!(m, Msg::ReqListeners { .. })), "{out:?}");
        assert!(notices(&out).is_empty(), "{out:?}");
    }
}

#[test]
fn start_with_a_uid_in_use_is_refused_already_exists() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let (err, out) = reject(&mut uc, at(1), start(1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
    assert!(out.is_empty());
}

#[test]
fn req_is_retransmitted_with_backoff_only_to_the_side_that_has_not_answered() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    accept(&mut uc, at(10), resp(1, Role::Prod));
    let out = accept(&mut uc, at(200), Input::Timer(retransmit(1)));
    let msgs = sent(&out);
    assert!(matches!(msgs.as_slice(), [(CONS, Msg::Req { seq: 1, .. })]), "{msgs:?}");
    assert_eq!(timer_at(&out, retransmit(1)), Some(at(200) + BACKOFF.delay(2, 0)));
    let out = accept(&mut uc, at(600), Input::Timer(retransmit(1)));
    assert_eq!(timer_at(&out, retransmit(1)), Some(at(600) + BACKOFF.delay(3, 0)));
}

#[test]
fn both_resp_move_to_provisioning_and_poll_the_producer_side_for_its_listeners() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let out = accept(&mut uc, at(10), resp(1, Role::Prod));
    assert!(sent(&out).is_empty());
    let out = accept(&mut uc, at(11), resp(1, Role::Cons));
    assert_eq!(sent(&out), vec![(PROD, Msg::ReqListeners { uid: uid(1), seq: 2, token: s2uc_config().token })]);
    assert_eq!(timer_at(&out, retransmit(1)), Some(at(11) + BACKOFF.delay(1, 0)));
    let s = uc.session(&uid(1)).unwrap();
    assert_eq!((s.state(), s.side(Role::Prod).listeners.clone()), (State::Provisioning, gw(Role::Prod)));
    assert_eq!(s.side(Role::Cons).listeners, gw(Role::Cons));
}

#[test]
fn resp_with_the_wrong_number_of_listeners_is_ignored() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    for listeners in [vec![], vec![addr("h", 1)], vec![addr("h", 1), addr("h", 2), addr("h", 3)]] {
        let msg = Msg::Resp { uid: uid(1), seq: 1, listeners, prod_listeners: vec![] };
        let (err, _) = reject(&mut uc, at(10), from(Role::Prod, msg));
        assert_eq!(err, ProtocolError::Stale("RESP"));
    }
}

#[test]
fn prod_lstn_sends_update_targets_to_both_sides_with_the_credentials() {
    let mut uc = client();
    provisioning(&mut uc, 1);
    let out = accept(&mut uc, at(20), prod_lstn(1, 2));
    let token = s2uc_config().token;
    let update = |remote| Msg::Update { uid: uid(1), seq: 3, token: token.clone(), remote, creds: creds(9) };
    // The producer's gateway forwards to the producer; the consumer's to the producer's gateway.
    assert_eq!(sent(&out), vec![(PROD, update(app())), (CONS, update(gw(Role::Prod)))]);
    assert_eq!(state(&uc, 1), State::Updating);
}

#[test]
fn producer_listeners_known_before_both_resp_go_straight_to_update_targets() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    accept(&mut uc, at(5), prod_lstn(1, 1));
    accept(&mut uc, at(10), resp(1, Role::Prod));
    let out = accept(&mut uc, at(11), resp(1, Role::Cons));
    assert!(sent(&out).iter().any(|(to, m)| *to == CONS && matches!(m, Msg::Update { seq: 3, .. })), "{out:?}");
    assert_eq!(state(&uc, 1), State::Updating);

    // The same when the producer's RESP carries them.
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let msg = Msg::Resp { uid: uid(1), seq: 1, listeners: gw(Role::Prod), prod_listeners: app() };
    accept(&mut uc, at(10), from(Role::Prod, msg));
    accept(&mut uc, at(11), resp(1, Role::Cons));
    assert_eq!(state(&uc, 1), State::Updating);
    assert_eq!(uc.session(&uid(1)).unwrap().prod_listeners, app());
}

#[test]
fn both_updated_report_established_with_both_gateways_listeners() {
    let mut uc = client();
    updating(&mut uc, 1);
    let out = accept(&mut uc, at(30), updated(1, Role::Prod));
    assert!(notices(&out).is_empty());
    let out = accept(&mut uc, at(31), updated(1, Role::Cons));
    assert_eq!(
        notices(&out),
        vec![Notice::Established {
            uid: uid(1),
            prod_listeners: gw(Role::Prod),
            cons_listeners: gw(Role::Cons),
            prod_app_listeners: app()
        }]
    );
    assert!(cancels(&out, deadline(1)));
    assert!(cancels(&out, retransmit(1)));
    assert_eq!(state(&uc, 1), State::Established);
}

#[test]
fn update_targets_is_retransmitted_only_to_the_side_not_yet_updated() {
    let mut uc = client();
    updating(&mut uc, 1);
    accept(&mut uc, at(30), updated(1, Role::Cons));
    let out = accept(&mut uc, at(300), Input::Timer(retransmit(1)));
    let msgs = sent(&out);
    assert!(matches!(msgs.as_slice(), [(PROD, Msg::Update { seq: 3, .. })]), "{msgs:?}");
}

#[test]
fn error_from_one_side_releases_the_other_and_fails_with_that_code() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let out = accept(&mut uc, at(10), error(1, Role::Cons, 1, ErrorCode::ResourceExhausted));
    assert_eq!(sent(&out), vec![(PROD, rel(1, 2))]);
    assert!(cancels(&out, deadline(1)));
    assert_eq!(state(&uc, 1), State::Aborting);

    let out = accept(&mut uc, at(20), released(1, Role::Prod, 2));
    assert_eq!(notices(&out), vec![Notice::Failed { uid: uid(1), code: ErrorCode::ResourceExhausted }]);
    assert!(cancels(&out, retransmit(1)));
    assert_eq!(state(&uc, 1), State::Failed);
    assert!(uc.journal().is_empty());
}

#[test]
fn error_after_established_releases_the_other_side() {
    let mut uc = client();
    established(&mut uc, 1);
    let out = accept(&mut uc, at(100), error(1, Role::Prod, 3, ErrorCode::Aborted));
    assert_eq!(sent(&out), vec![(CONS, rel(1, 4))]);
    accept(&mut uc, at(110), released(1, Role::Cons, 4));
    assert_eq!(state(&uc, 1), State::Failed);
    assert_eq!(uc.session(&uid(1)).unwrap().failure, Some(ErrorCode::Aborted));
}

#[test]
fn error_echoing_an_earlier_phase_is_ignored() {
    let mut uc = client();
    provisioning(&mut uc, 1);
    let (err, out) = reject(&mut uc, at(20), error(1, Role::Prod, 1, ErrorCode::AlreadyExists));
    assert_eq!(err, ProtocolError::Stale("ERROR"));
    assert!(out.is_empty());
    assert_eq!(state(&uc, 1), State::Provisioning);
}

#[test]
fn transient_unavailable_is_ignored_and_retried() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let (err, _) = reject(&mut uc, at(10), error(1, Role::Prod, 1, ErrorCode::Unavailable));
    assert_eq!(err, ProtocolError::Stale("ERROR"));
    let out = accept(&mut uc, at(200), Input::Timer(retransmit(1)));
    assert_eq!(sent(&out).len(), 2, "REQ goes to both sides again: {out:?}");
}

#[test]
fn deadline_releases_both_sides_then_fails_with_deadline_exceeded() {
    let mut uc = client();
    provisioning(&mut uc, 1);
    let out = accept(&mut uc, at(90_000), Input::Timer(deadline(1)));
    assert_eq!(sent(&out), vec![(PROD, rel(1, 3)), (CONS, rel(1, 3))]);
    assert_eq!(state(&uc, 1), State::Aborting);
    accept(&mut uc, at(90_010), released(1, Role::Prod, 3));
    let out = accept(&mut uc, at(90_011), released(1, Role::Cons, 3));
    assert_eq!(notices(&out), vec![Notice::Failed { uid: uid(1), code: ErrorCode::DeadlineExceeded }]);
    assert_eq!(state(&uc, 1), State::Failed);
}

#[test]
fn deadline_after_established_is_refused_and_changes_nothing() {
    let mut uc = client();
    established(&mut uc, 1);
    let (err, out) = reject(&mut uc, at(90_000), Input::Timer(deadline(1)));
    assert!(matches!(err, ProtocolError::NotAllowed { .. }), "{err}");
    assert!(out.is_empty());
}

#[test]
fn release_sends_rel_to_both_sides_and_reports_released_once_both_answered() {
    let mut uc = client();
    established(&mut uc, 1);
    let out = accept(&mut uc, at(100), Input::Release(uid(1)));
    assert_eq!(sent(&out), vec![(PROD, rel(1, 4)), (CONS, rel(1, 4))]);
    assert_eq!(state(&uc, 1), State::Releasing);
    // A side that forgot the session holds nothing of it either.
    let out = accept(&mut uc, at(110), error(1, Role::Prod, 4, ErrorCode::NotFound));
    assert!(notices(&out).is_empty());
    let out = accept(&mut uc, at(111), released(1, Role::Cons, 4));
    assert_eq!(notices(&out), vec![Notice::Released { uid: uid(1) }]);
    assert!(cancels(&out, retransmit(1)));
    assert_eq!(state(&uc, 1), State::Released);

    // Releasing again changes nothing.
    let out = accept(&mut uc, at(120), Input::Release(uid(1)));
    assert!(out.is_empty());
}

#[test]
fn release_retransmits_rel_to_the_side_that_has_not_answered() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    accept(&mut uc, at(10), Input::Release(uid(1)));
    accept(&mut uc, at(20), released(1, Role::Cons, 2));
    let out = accept(&mut uc, at(210), Input::Timer(retransmit(1)));
    assert_eq!(sent(&out), vec![(PROD, rel(1, 2))]);
}

#[test]
fn release_of_an_unknown_session_is_refused() {
    let mut uc = client();
    let (err, _) = reject(&mut uc, at(0), Input::Release(uid(1)));
    assert_eq!(err, ProtocolError::UnknownSession(uid(1)));
}

#[test]
fn journal_lists_unfinished_sessions_only() {
    let mut uc = client();
    established(&mut uc, 1);
    accept(&mut uc, at(0), start(2));
    accept(&mut uc, at(0), start(3));
    accept(&mut uc, at(1), Input::Release(uid(3)));
    accept(&mut uc, at(2), released(3, Role::Prod, 2));
    accept(&mut uc, at(2), released(3, Role::Cons, 2));
    assert_eq!(uc.journal(), BTreeSet::from([uid(1), uid(2)]));
}

#[test]
fn recover_from_the_journal_releases_both_sides_of_every_session() {
    let journal = BTreeSet::from([uid(1), uid(2)]);
    let mut uc = S2uc::recover(s2uc_config(), &journal);
    assert_eq!(uc.journal(), journal);
    let out = accept(&mut uc, at(0), Input::Recover);
    assert_eq!(sent(&out), vec![(PROD, rel(1, 1)), (CONS, rel(1, 1)), (PROD, rel(2, 1)), (CONS, rel(2, 1))]);
    assert!(timer_at(&out, retransmit(1)).is_some());

    accept(&mut uc, at(10), released(1, Role::Prod, 1));
    let out = accept(&mut uc, at(11), released(1, Role::Cons, 1));
    assert_eq!(notices(&out), vec![Notice::Failed { uid: uid(1), code: ErrorCode::Aborted }]);
    assert_eq!(uc.journal(), BTreeSet::from([uid(2)]));

    // Recovering twice does not release twice.
    let out = accept(&mut uc, at(20), Input::Recover);
    assert!(out.is_empty());
}

#[test]
fn answers_for_a_recovered_session_before_recover_are_refused_and_change_nothing() {
    let mut uc = S2uc::recover(s2uc_config(), &BTreeSet::from([uid(1)]));
    let (err, _) = reject(&mut uc, at(0), error(1, Role::Prod, 0, ErrorCode::Aborted));
    assert_eq!(err, ProtocolError::Stale("ERROR"));
    reject(&mut uc, at(0), Input::Release(uid(1)));
    accept(&mut uc, at(1), Input::Recover);
    assert_eq!(sent(&accept(&mut uc, at(2), Input::Timer(retransmit(1)))).len(), 2);
}

#[test]
fn answers_from_anyone_but_a_control_server_or_for_unknown_sessions_are_refused() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let msg = Msg::Resp { uid: uid(1), seq: 1, listeners: gw(Role::Prod), prod_listeners: vec![] };
    let (err, _) = reject(&mut uc, at(1), Input::Msg { from: Peer::App(1), msg });
    assert_eq!(err, ProtocolError::Misdirected("RESP"));
    let (err, _) = reject(&mut uc, at(1), resp(2, Role::Prod));
    assert_eq!(err, ProtocolError::UnknownSession(uid(2)));
    let (err, _) = reject(&mut uc, at(1), from(Role::Prod, Msg::DsBoot { inc: 1 }));
    assert_eq!(err, ProtocolError::Misdirected("DsBoot"));
    let (err, _) = reject(&mut uc, at(1), Input::Timer(timer(None, TimerKind::Retransmit)));
    assert_eq!(err, ProtocolError::Misdirected("timer"));
    let (err, _) = reject(&mut uc, at(1), Input::Timer(timer(Some(uid(1)), TimerKind::Lease)));
    assert_eq!(err, ProtocolError::Misdirected("timer"));
}

#[test]
fn answers_out_of_phase_are_stale() {
    let mut uc = client();
    let out = established(&mut uc, 1);
    assert!(!notices(&out).is_empty());
    for input in [resp(1, Role::Prod), prod_lstn(1, 2), updated(1, Role::Prod), released(1, Role::Cons, 3)] {
        let (err, _) = reject(&mut uc, at(40), input);
        assert!(matches!(err, ProtocolError::Stale(_)), "{err}");
    }
}

#[test]
fn error_from_the_consumer_side_during_provisioning_answers_its_latest_request_and_fails_the_session() {
    let mut uc = S2uc::new(s2uc_config());
    provisioning(&mut uc, 1);
    // The consumer side's latest request was the REQ (seq 1); the client's phase is now 2.
    let out = accept(&mut uc, at(500), error(1, Role::Cons, 1, ErrorCode::DeadlineExceeded));
    assert_eq!(state(&uc, 1), State::Aborting);
    assert_eq!(sent(&out), vec![(PROD, rel(1, 3))]);
}

#[test]
fn error_echoing_a_request_older_than_the_sides_latest_is_stale() {
    let mut uc = S2uc::new(s2uc_config());
    provisioning(&mut uc, 1);
    // The producer side was last asked with ReqListeners (seq 2): an ERROR to its REQ is late.
    let (err, _) = reject(&mut uc, at(500), error(1, Role::Prod, 1, ErrorCode::AlreadyExists));
    assert_eq!(err, ProtocolError::Stale("ERROR"));
}

fn hello_key(n: u128) -> TimerKey {
    timer(Some(uid(n)), TimerKind::Hello)
}

fn prod_app() -> Vec<Addr> {
    vec![addr("10.1.0.5", 7000), addr("10.1.0.5", 7001)]
}

#[test]
fn request_says_the_consumers_hello_alongside_its_req_until_it_is_acknowledged() {
    let mut uc = client();
    let out = accept(&mut uc, at(0), start_with(1, Plan::both()));
    let hello = Msg::Hello { uid: uid(1), seq: HELLO_SEQ | 1, key: key(1), prod_listeners: vec![] };
    assert!(sent(&out).contains(&(CONS, hello)), "{out:?}");
    // While probing, the shared timer runs at the probe's pace.
    assert_eq!(timer_at(&out, hello_key(1)), Some(at(0) + probe_pace(1)));
    // The producer's facility admitted it (the probe beside the Hello stops).
    let out = accept(&mut uc, at(1), probe_answer(1, 1, gw(Role::Prod)));
    assert!(!cancels(&out, hello_key(1)), "the consumer's Hello is not answered yet: {out:?}");
    // The REQ is not there yet: NOT_FOUND to the Hello is no failure; the Hello goes again.
    let out = accept(
        &mut uc,
        at(5),
        from(
            Role::Cons,
            Msg::Error { uid: uid(1), seq: HELLO_SEQ | 1, code: ErrorCode::NotFound, why: crate::Why::Unspecified },
        ),
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(uc.session(&uid(1)).unwrap().state(), State::Reserving);
    let out = accept(&mut uc, at(200), Input::Timer(hello_key(1)));
    let again = Msg::Hello { uid: uid(1), seq: HELLO_SEQ | 2, key: key(1), prod_listeners: vec![] };
    assert_eq!(sent(&out), vec![(CONS, again)]);
    let out = accept(
        &mut uc,
        at(210),
        from(Role::Cons, Msg::HelloAck { uid: uid(1), seq: HELLO_SEQ | 2, listeners: gw(Role::Cons) }),
    );
    assert!(cancels(&out, hello_key(1)));
    // An acknowledged Hello is not said again.
    let out = accept(&mut uc, at(400), Input::Timer(hello_key(1)));
    assert!(sent(&out).is_empty(), "{out:?}");
}

#[test]
fn a_hello_refused_for_good_stops_but_decides_nothing() {
    let mut uc = client();
    accept(&mut uc, at(0), start_with(1, Plan::both()));
    accept(&mut uc, at(1), probe_answer(1, 1, gw(Role::Prod)));
    let refusal =
        Msg::Error { uid: uid(1), seq: HELLO_SEQ | 1, code: ErrorCode::PermissionDenied, why: crate::Why::Unspecified };
    let out = accept(&mut uc, at(5), from(Role::Cons, refusal));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(uc.session(&uid(1)).unwrap().state(), State::Reserving, "the REQ's answer decides");
    let out = accept(&mut uc, at(200), Input::Timer(hello_key(1)));
    assert!(sent(&out).is_empty(), "{out:?}");
}

#[test]
fn prod_req_drives_the_producer_side_alone() {
    let mut uc = client();
    let out = accept(&mut uc, at(0), start_with(1, Plan::producer(None)));
    let names = sent(&out).iter().map(|(to, m)| (*to, m.name())).collect::<Vec<_>>();
    assert_eq!(names, vec![(PROD, "REQ"), (PROD, "ReqListeners")]);
    // The server answers once the producer's Hello is in: the listeners and where it listens.
    let resp = Msg::Resp { uid: uid(1), seq: 1, listeners: gw(Role::Prod), prod_listeners: prod_app() };
    let out = accept(&mut uc, at(10), from(Role::Prod, resp));
    let update = Msg::Update { uid: uid(1), seq: 3, token: Token("tok".into()), remote: prod_app(), creds: creds(9) };
    assert_eq!(sent(&out), vec![(PROD, update)]);
    let out = accept(&mut uc, at(20), from(Role::Prod, Msg::Updated { uid: uid(1), seq: 3 }));
    assert!(
        matches!(notices(&out).as_slice(), [Notice::Established { prod_listeners, cons_listeners, prod_app_listeners, .. }]
        if *prod_listeners == gw(Role::Prod) && cons_listeners.is_empty() && *prod_app_listeners == prod_app())
    );
    // Its release goes to its one facility.
    let out = accept(&mut uc, at(30), Input::Release(uid(1)));
    assert_eq!(sent(&out).iter().map(|(to, m)| (*to, m.name())).collect::<Vec<_>>(), vec![(PROD, "REL")]);
    let out = accept(&mut uc, at(40), from(Role::Prod, Msg::Released { uid: uid(1), seq: 4 }));
    assert_eq!(notices(&out), vec![Notice::Released { uid: uid(1) }]);
}

#[test]
fn inbound_request_says_the_producers_hello_itself_and_forwards_to_its_listeners() {
    let mut uc = client();
    let out = accept(&mut uc, at(0), start_with(1, Plan::producer(Some(prod_app()))));
    let hello = Msg::Hello { uid: uid(1), seq: HELLO_SEQ | 1, key: key(1), prod_listeners: prod_app() };
    assert!(sent(&out).contains(&(PROD, hello)), "{out:?}");
    let resp = Msg::Resp { uid: uid(1), seq: 1, listeners: gw(Role::Prod), prod_listeners: prod_app() };
    let out = accept(&mut uc, at(10), from(Role::Prod, resp));
    assert!(cancels(&out, hello_key(1)));
    assert!(matches!(sent(&out).as_slice(), [(PROD, Msg::Update { remote, .. })] if *remote == prod_app()));
}

#[test]
fn cons_req_and_outbound_request_drive_the_consumer_side_towards_the_given_listeners() {
    for hello in [false, true] {
        let mut uc = client();
        let remote = gw(Role::Prod);
        let out = accept(&mut uc, at(0), start_with(1, Plan::consumer(remote.clone(), hello)));
        let names: Vec<_> = sent(&out).iter().map(|(to, m)| (*to, m.name())).collect();
        let want: Vec<_> = if hello { vec![(CONS, "REQ"), (CONS, "Hello")] } else { vec![(CONS, "REQ")] };
        assert_eq!(names, want);
        let resp = Msg::Resp { uid: uid(1), seq: 1, listeners: gw(Role::Cons), prod_listeners: vec![] };
        let out = accept(&mut uc, at(10), from(Role::Cons, resp));
        assert!(matches!(sent(&out).as_slice(), [(CONS, Msg::Update { remote: r, .. })] if *r == remote), "{out:?}");
        let out = accept(&mut uc, at(20), from(Role::Cons, Msg::Updated { uid: uid(1), seq: 3 }));
        assert!(
            matches!(notices(&out).as_slice(), [Notice::Established { cons_listeners, .. }] if *cons_listeners == gw(Role::Cons))
        );
    }
}

#[test]
fn a_plan_that_drives_no_facility_is_refused() {
    let mut uc = client();
    let (err, _) = reject(&mut uc, at(0), start_with(1, Plan::default()));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::InvalidArgument });
}

#[test]
fn not_found_to_a_retransmitted_req_means_the_server_holds_the_first_and_the_session_waits() {
    let mut uc = client();
    accept(&mut uc, at(0), start(1));
    let (err, out) = reject(
        &mut uc,
        at(2_000),
        from(Role::Prod, Msg::Error { uid: uid(1), seq: 1, code: ErrorCode::NotFound, why: crate::Why::Unspecified }),
    );
    assert_eq!(err, ProtocolError::Stale("ERROR"));
    assert!(out.is_empty());
    assert_eq!(state(&uc, 1), State::Reserving);
}

#[test]
fn an_update_refused_by_its_facilitys_policy_is_followed_by_rel_there_too() {
    let mut uc = client();
    updating(&mut uc, 1);
    accept(&mut uc, at(30), updated(1, Role::Prod));
    // Refused before the consumer's session saw it: that session still holds its ports.
    let out = accept(&mut uc, at(31), error(1, Role::Cons, 3, ErrorCode::PermissionDenied));
    let rels = sent(&out);
    assert!(rels.contains(&(PROD, rel(1, 4))) && rels.contains(&(CONS, rel(1, 4))), "{rels:?}");
    accept(&mut uc, at(40), released(1, Role::Prod, 4));
    let out = accept(&mut uc, at(41), released(1, Role::Cons, 4));
    assert_eq!(notices(&out), vec![Notice::Failed { uid: uid(1), code: ErrorCode::PermissionDenied }]);
    assert_eq!(state(&uc, 1), State::Failed);
}
