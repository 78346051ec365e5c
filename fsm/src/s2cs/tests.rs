use super::*;
use crate::msg::Token;
use crate::session::State as S;
use crate::testkit::{
    BACKOFF, POOL, accept, addr, advertise_host, at, cancels, creds, key, reject, s2cs_config, sent, sent_to, timer,
    timer_at, uid, who,
};
use crate::types::{Addr, AppKey, SessionParams};

mod data;
mod nodes;
mod policy;

fn lease_key(uid: Uid) -> TimerKey {
    crate::session::timer_key(uid, TimerKind::Lease)
}

fn retransmit_key(uid: Uid) -> TimerKey {
    crate::session::timer_key(uid, TimerKind::Retransmit)
}

fn tombstone_key(uid: Uid) -> TimerKey {
    crate::session::timer_key(uid, TimerKind::Tombstone)
}

const EPOCH: u64 = 5;
const INC: u64 = 1;
const DS: Peer = Peer::DataServer(Role::Prod, Node(0));
const UC: Peer = Peer::Client(1);
const APP: Peer = Peer::App(1);

fn alice() -> Option<Principal> {
    who("alice")
}

fn params(role: Role, num_conn: u16) -> SessionParams {
    SessionParams { role, num_conn, rate: 0 }
}

fn req_as(caller: Option<Principal>, n: u128, seq: u32, params: SessionParams, k: AppKey) -> Input {
    let msg = Msg::Req { uid: uid(n), seq, token: Token("tok".into()), params, key: k };
    Input::Msg { from: UC, caller, msg }
}

/// Alice's REQ for a producer session of 2 connections with app key 1.
fn req_msg(n: u128, seq: u32) -> Msg {
    Msg::Req { uid: uid(n), seq, token: Token("tok".into()), params: params(Role::Prod, 2), key: key(1) }
}

fn req(n: u128, seq: u32) -> Input {
    req_as(alice(), n, seq, params(Role::Prod, 2), key(1))
}

fn from_uc(caller: Option<Principal>, msg: Msg) -> Input {
    Input::Msg { from: UC, caller, msg }
}

fn update_as(caller: Option<Principal>, n: u128, seq: u32, remote: Vec<Addr>, cred: u8) -> Input {
    from_uc(caller, Msg::Update { uid: uid(n), seq, token: Token::default(), remote, creds: creds(cred) })
}

fn update(n: u128, seq: u32) -> Input {
    update_as(alice(), n, seq, prod_listeners(), 9)
}

fn rel_as(caller: Option<Principal>, n: u128, seq: u32) -> Input {
    from_uc(caller, Msg::Rel { uid: uid(n), seq, token: Token::default() })
}

fn from_ds(msg: Msg) -> Input {
    Input::Msg { from: DS, caller: None, msg }
}

fn lstn(n: u128, ports: Vec<u16>) -> Input {
    from_ds(Msg::Lstn { uid: uid(n), inc: INC, host: "gw.prod".into(), ports })
}

fn hello(n: u128, seq: u32, k: AppKey) -> Input {
    Input::Msg {
        from: APP,
        caller: None,
        msg: Msg::Hello { uid: uid(n), seq, key: k, prod_listeners: prod_listeners() },
    }
}

fn prod_listeners() -> Vec<Addr> {
    vec![addr("10.1.0.5", 7000), addr("10.1.0.5", 7001)]
}

fn gw(ports: &[u16]) -> Vec<Addr> {
    ports.iter().map(|p| addr(advertise_host(Role::Prod), *p)).collect()
}

/// An ERROR saying `why` as well.
fn error_why(n: u128, seq: u32, code: ErrorCode, why: crate::Why) -> Msg {
    Msg::Error { uid: uid(n), seq, code, why }
}

fn error(n: u128, seq: u32, code: ErrorCode) -> Msg {
    Msg::Error { uid: uid(n), seq, code, why: crate::Why::Unspecified }
}

/// A producer-facility control server, booted and attached to its data server.
fn serving() -> ControlServer {
    serving_with(s2cs_config(Role::Prod))
}

fn serving_with(cfg: Config) -> ControlServer {
    let mut cs = ControlServer::new(cfg, EPOCH);
    accept(&mut cs, at(0), Input::Boot);
    accept(&mut cs, at(1), from_ds(Msg::AttachAck { epoch: EPOCH, attachment: 1, inc: INC, held: vec![], pool: POOL }));
    assert_eq!(cs.state(), State::Serving);
    cs
}

/// Session `n` (alice, producer, 2 connections) listening on ports 5000 and 5001.
fn listening(cs: &mut ControlServer, n: u128) {
    accept(cs, at(10), req(n, 1));
    accept(cs, at(20), lstn(n, vec![5000, 5001]));
    assert_eq!(state(cs, n), S::Listening);
}

/// Session `n` established: its producer said Hello, its bridges run.
fn established(cs: &mut ControlServer, n: u128) {
    listening(cs, n);
    accept(cs, at(25), hello(n, 1, key(1)));
    accept(cs, at(30), update(n, 3));
    accept(cs, at(40), from_ds(Msg::Connected { uid: uid(n), inc: INC }));
    assert_eq!(state(cs, n), S::Established);
}

fn state(cs: &ControlServer, n: u128) -> S {
    cs.session(&uid(n)).expect("session held").state()
}

#[test]
fn unauthenticated_requests_are_refused_before_any_uid_is_looked_up() {
    let mut known = serving();
    listening(&mut known, 1);
    let mut unknown = serving();
    for msg in [
        Msg::Req { uid: uid(1), seq: 4, token: Token::default(), params: params(Role::Prod, 2), key: key(1) },
        Msg::ReqListeners { uid: uid(1), seq: 4, token: Token::default() },
        Msg::Update { uid: uid(1), seq: 4, token: Token::default(), remote: prod_listeners(), creds: creds(9) },
        Msg::Rel { uid: uid(1), seq: 4, token: Token::default() },
    ] {
        let (err_known, out_known) = reject(&mut known, at(50), from_uc(None, msg.clone()));
        let (err_unknown, out_unknown) = reject(&mut unknown, at(50), from_uc(None, msg.clone()));
        assert_eq!(err_known, ProtocolError::Refused { uid: uid(1), code: ErrorCode::Unauthenticated });
        assert_eq!(sent(&out_known), vec![(UC, error(1, 4, ErrorCode::Unauthenticated))]);
        assert_eq!((err_known, out_known), (err_unknown, out_unknown), "{} reveals the uid exists", msg.name());
    }
}

#[test]
fn unauthenticated_req_is_refused_even_while_attaching() {
    let mut cs = ControlServer::new(s2cs_config(Role::Prod), EPOCH);
    accept(&mut cs, at(0), Input::Boot);
    let (_, out) = reject(&mut cs, at(1), req_as(None, 1, 1, params(Role::Prod, 2), key(1)));
    assert_eq!(sent(&out), vec![(UC, error(1, 1, ErrorCode::Unauthenticated))]);
}

#[test]
fn req_while_attaching_is_refused_unavailable() {
    let mut cs = ControlServer::new(s2cs_config(Role::Prod), EPOCH);
    accept(&mut cs, at(0), Input::Boot);
    let (err, out) = reject(&mut cs, at(1), req(1, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::Unavailable });
    assert_eq!(sent(&out), vec![(UC, error_why(1, 1, ErrorCode::Unavailable, crate::Why::NoDataServer))]);
    assert!(cs.sessions().is_empty());
}

#[test]
fn a_consumer_req_reserves_lan_facing_ports_and_answers_resp_with_listeners_on_the_host_the_data_server_gives() {
    let mut cs = serving();
    let out = accept(&mut cs, at(10), req_as(alice(), 1, 1, params(Role::Cons, 2), key(1)));
    assert_eq!(sent(&out), vec![(DS, Msg::StartLstn { uid: uid(1), epoch: EPOCH, num_conn: 2, role: Role::Cons })]);
    assert_eq!(timer_at(&out, lease_key(uid(1))), Some(at(10) + cs.config().timing.cs_lease()));
    assert!(timer_at(&out, retransmit_key(uid(1))).is_some());
    assert_eq!(state(&cs, 1), S::Reserving);

    let out = accept(&mut cs, at(20), lstn(1, vec![5000, 5001]));
    let resp = Msg::Resp { uid: uid(1), seq: 1, listeners: gw(&[5000, 5001]), prod_listeners: vec![] };
    assert_eq!(sent(&out), vec![(UC, resp)]);
    assert!(cancels(&out, retransmit_key(uid(1))));
    assert!(!cancels(&out, lease_key(uid(1))), "the lease runs until established");
    assert_eq!(state(&cs, 1), S::Listening);
    assert_eq!(cs.session(&uid(1)).unwrap().listeners, gw(&[5000, 5001]));
}

#[test]
fn identical_req_retransmission_gets_the_same_resp() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let first = accept(&mut cs, at(20), lstn(1, vec![5000, 5001]));
    let again = accept(&mut cs, at(30), req(1, 1));
    assert_eq!(sent(&again), sent(&first));
    assert_eq!(state(&cs, 1), S::Listening);

    // A duplicate Lstn changes nothing either.
    let out = accept(&mut cs, at(40), lstn(1, vec![5002, 5003]));
    assert!(sent(&out).is_empty(), "{out:?}");
    assert_eq!(cs.session(&uid(1)).unwrap().listeners, gw(&[5000, 5001]));
}

#[test]
fn identical_req_while_reserving_waits_for_the_ports() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let out = accept(&mut cs, at(11), req(1, 1));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(state(&cs, 1), S::Reserving);
}

#[test]
fn conflicting_req_is_refused_already_exists_and_leaves_the_session_unchanged() {
    let mut cs = serving();
    listening(&mut cs, 1);
    for conflicting in [
        req_as(alice(), 1, 2, params(Role::Prod, 3), key(1)),
        req_as(alice(), 1, 2, params(Role::Cons, 2), key(1)),
        req_as(alice(), 1, 2, SessionParams { rate: 100, ..params(Role::Prod, 2) }, key(1)),
        req_as(who("bob"), 1, 2, params(Role::Prod, 2), key(1)),
        req_as(alice(), 1, 2, params(Role::Prod, 2), key(2)),
    ] {
        let (err, out) = reject(&mut cs, at(30), conflicting);
        assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
        assert_eq!(sent(&out), vec![(UC, error_why(1, 2, ErrorCode::AlreadyExists, crate::Why::UidTaken))]);
    }
}

#[test]
fn req_with_num_conn_zero_or_above_the_limit_is_refused_invalid_argument() {
    let mut cs = serving();
    let max = cs.config().max_num_conn;
    for num_conn in [0, max + 1, u16::MAX] {
        let (err, out) = reject(&mut cs, at(10), req_as(alice(), 1, 1, params(Role::Prod, num_conn), key(1)));
        assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::InvalidArgument });
        let why = crate::Why::NumConn { max: 4 };
        assert_eq!(sent(&out), vec![(UC, error_why(1, 1, ErrorCode::InvalidArgument, why))]);
    }
    accept(&mut cs, at(20), req_as(alice(), 1, 1, params(Role::Prod, max), key(1)));
}

#[test]
fn hello_before_lstn_is_stored_and_answered_once_the_ports_are_reserved() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let out = accept(&mut cs, at(11), hello(1, 1, key(1)));
    assert!(sent(&out).is_empty(), "nothing to answer before the ports: {out:?}");
    assert_eq!(cs.session(&uid(1)).unwrap().prod_listeners, prod_listeners());

    let out = accept(&mut cs, at(20), lstn(1, vec![5000, 5001]));
    let msgs = sent(&out);
    assert!(msgs.contains(&(APP, Msg::HelloAck { uid: uid(1), seq: 1, listeners: gw(&[5000, 5001]) })), "{msgs:?}");
    assert!(msgs.contains(&(
        UC,
        Msg::Resp { uid: uid(1), seq: 1, listeners: gw(&[5000, 5001]), prod_listeners: prod_listeners() }
    )));
    assert_eq!(msgs.len(), 2, "each waiting call answered once: {msgs:?}");
}

#[test]
fn a_producer_req_waits_for_the_hello_and_every_waiting_req_is_answered() {
    let mut cs = serving();
    listening(&mut cs, 1);
    // The REQ (and its retransmission, from another call) wait: the Hello is not in.
    let out = accept(&mut cs, at(25), Input::Msg { from: Peer::Client(2), caller: alice(), msg: req_msg(1, 7) });
    assert!(sent(&out).is_empty(), "{out:?}");
    assert_eq!(cs.session(&uid(1)).unwrap().waiters().len(), 2);
    let out = accept(&mut cs, at(30), hello(1, 1, key(1)));
    let resp = |seq| Msg::Resp { uid: uid(1), seq, listeners: gw(&[5000, 5001]), prod_listeners: prod_listeners() };
    let msgs = sent(&out);
    assert!(msgs.contains(&(UC, resp(1))), "{msgs:?}");
    assert!(msgs.contains(&(Peer::Client(2), resp(7))), "{msgs:?}");
    assert!(cs.session(&uid(1)).unwrap().waiters().is_empty());
}

#[test]
fn at_most_max_waiters_calls_wait_and_the_oldest_is_told_to_try_again() {
    let mut cs = serving();
    listening(&mut cs, 1);
    for n in 0..crate::session::MAX_WAITERS as u32 {
        accept(&mut cs, at(30), Input::Msg { from: Peer::Client(10 + n), caller: alice(), msg: req_msg(1, 2) });
    }
    assert_eq!(cs.session(&uid(1)).unwrap().waiters().len(), crate::session::MAX_WAITERS);
    // The first waiter (Client(1)'s REQ from `listening`) was evicted already.
    let out = accept(&mut cs, at(31), Input::Msg { from: Peer::Client(99), caller: alice(), msg: req_msg(1, 3) });
    assert_eq!(sent(&out), vec![(Peer::Client(10), error(1, 2, ErrorCode::Unavailable))]);
}

#[test]
fn hello_after_lstn_is_acknowledged_and_answers_the_waiting_req_once() {
    let mut cs = serving();
    listening(&mut cs, 1);
    let out = accept(&mut cs, at(30), hello(1, 1, key(1)));
    assert_eq!(
        sent(&out),
        vec![
            (UC, Msg::Resp { uid: uid(1), seq: 1, listeners: gw(&[5000, 5001]), prod_listeners: prod_listeners() }),
            (APP, Msg::HelloAck { uid: uid(1), seq: 1, listeners: gw(&[5000, 5001]) }),
        ]
    );
    // The controller's retransmission is acknowledged again; the client is not told twice.
    let out = accept(&mut cs, at(31), hello(1, 2, key(1)));
    assert_eq!(sent(&out), vec![(APP, Msg::HelloAck { uid: uid(1), seq: 2, listeners: gw(&[5000, 5001]) })]);
}

#[test]
fn hello_with_a_wrong_key_is_answered_as_an_unknown_uid_and_changes_nothing() {
    let mut cs = serving();
    listening(&mut cs, 1);
    // What a uid that does not exist gets: the same code, the same (absent) reason.
    let (unknown_err, unknown_out) = reject(&mut cs, at(29), hello(9, 1, key(9)));
    assert_eq!(unknown_err, ProtocolError::Refused { uid: uid(9), code: ErrorCode::NotFound });
    assert_eq!(sent(&unknown_out), vec![(APP, error(9, 1, ErrorCode::NotFound))]);
    for k in [key(2), AppKey::default()] {
        let (err, out) = reject(&mut cs, at(30), hello(1, 1, k));
        assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::NotFound });
        assert_eq!(sent(&out), vec![(APP, error(1, 1, ErrorCode::NotFound))]);
    }
    // The session is untouched: the right key is still acknowledged.
    let out = accept(&mut cs, at(31), hello(1, 2, key(1)));
    assert!(sent(&out).contains(&(APP, Msg::HelloAck { uid: uid(1), seq: 2, listeners: gw(&[5000, 5001]) })));
}

#[test]
fn a_session_made_without_an_app_key_accepts_only_a_hello_without_one() {
    // SciStream 1.2: neither the REQ nor the controller's Hello carries a key.
    let mut cs = serving();
    accept(&mut cs, at(10), req_as(alice(), 1, 1, params(Role::Prod, 2), AppKey::default()));
    accept(&mut cs, at(11), lstn(1, vec![5000, 5001]));
    let (err, _) = reject(&mut cs, at(30), hello(1, 1, key(2)));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::NotFound });
    let out = accept(&mut cs, at(31), hello(1, 2, AppKey::default()));
    assert!(sent(&out).contains(&(APP, Msg::HelloAck { uid: uid(1), seq: 2, listeners: gw(&[5000, 5001]) })));
}

#[test]
fn a_req_without_an_app_key_is_refused_when_keys_are_required() {
    let mut cfg = s2cs_config(Role::Prod);
    cfg.require_app_keys = true;
    let mut cs = serving_with(cfg);
    let (err, _) = reject(&mut cs, at(10), req_as(alice(), 1, 1, params(Role::Prod, 2), AppKey::default()));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::PermissionDenied });
    assert!(cs.session(&uid(1)).is_none());
    accept(&mut cs, at(11), req_as(alice(), 1, 1, params(Role::Prod, 2), key(1)));
}

#[test]
fn hello_for_an_unknown_session_is_refused_not_found() {
    let mut cs = serving();
    let (err, out) = reject(&mut cs, at(10), hello(1, 1, key(1)));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::NotFound });
    assert_eq!(sent(&out), vec![(APP, error(1, 1, ErrorCode::NotFound))]);
}

#[test]
fn a_consumers_hello_is_answered_with_the_listeners_and_pushes_nothing_to_the_client() {
    // SciStream 1.2's consumer controller says Hello to learn where to connect.
    let mut cs = serving();
    accept(&mut cs, at(10), req_as(alice(), 1, 1, params(Role::Cons, 2), key(1)));
    accept(&mut cs, at(11), lstn(1, vec![5000, 5001]));
    let out = accept(&mut cs, at(12), hello(1, 1, key(1)));
    assert_eq!(sent(&out), vec![(APP, Msg::HelloAck { uid: uid(1), seq: 1, listeners: gw(&[5000, 5001]) })]);
    assert!(cs.session(&uid(1)).expect("held").prod_listeners.is_empty());
    // The key still has to match (a wrong one is answered as an unknown uid).
    let (err, _) = reject(&mut cs, at(13), hello(1, 2, key(2)));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::NotFound });
}

#[test]
fn hello_with_other_listeners_than_the_first_is_refused_already_exists() {
    let mut cs = serving();
    listening(&mut cs, 1);
    accept(&mut cs, at(30), hello(1, 1, key(1)));
    let other = Msg::Hello { uid: uid(1), seq: 2, key: key(1), prod_listeners: vec![addr("10.9.9.9", 1)] };
    let (err, _) = reject(&mut cs, at(31), Input::Msg { from: APP, caller: None, msg: other });
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
    let empty = Msg::Hello { uid: uid(1), seq: 3, key: key(1), prod_listeners: vec![] };
    let (err, _) = reject(&mut cs, at(32), Input::Msg { from: APP, caller: None, msg: empty });
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::InvalidArgument });
}

#[test]
fn hello_while_releasing_is_refused_and_changes_nothing() {
    let mut cs = serving();
    listening(&mut cs, 1);
    accept(&mut cs, at(30), rel_as(alice(), 1, 2));
    let (err, out) = reject(&mut cs, at(31), hello(1, 1, key(1)));
    assert!(matches!(err, ProtocolError::Refused { .. }), "{err}");
    assert!(matches!(sent(&out).as_slice(), [(APP, Msg::Error { .. })]), "the controller stops: {out:?}");
}

#[test]
fn req_listeners_is_a_query_answered_with_what_is_known() {
    let mut cs = serving();
    let poll = |seq| from_uc(alice(), Msg::ReqListeners { uid: uid(1), seq, token: Token::default() });
    let answer =
        |seq, listeners, prod_listeners| vec![(UC, Msg::ProdLstn { uid: uid(1), seq, listeners, prod_listeners })];
    // Admitted, its ports not bound yet: the facility holds it, with no listeners to show.
    accept(&mut cs, at(10), req(1, 1));
    let out = accept(&mut cs, at(15), poll(2));
    assert_eq!(sent(&out), answer(2, vec![], vec![]));
    accept(&mut cs, at(20), lstn(1, vec![5000, 5001]));
    let before = cs.clone();
    let out = accept(&mut cs, at(30), poll(3));
    assert_eq!(sent(&out), answer(3, gw(&[5000, 5001]), vec![]), "bound: the client may announce it");
    assert_eq!(cs, before, "a query changes nothing");
    accept(&mut cs, at(31), hello(1, 1, key(1)));
    let out = accept(&mut cs, at(32), poll(4));
    assert_eq!(sent(&out), answer(4, gw(&[5000, 5001]), prod_listeners()));
}

#[test]
fn update_targets_starts_the_bridges_and_answers_updated_once_connected() {
    let mut cs = serving();
    listening(&mut cs, 1);
    let out = accept(&mut cs, at(30), update(1, 3));
    let start = Msg::StartConn {
        uid: uid(1),
        epoch: EPOCH,
        targets: prod_listeners(),
        creds: creds(9),
        role: Role::Prod,
        rate: 0,
    };
    assert_eq!(sent(&out), vec![(DS, start)]);
    assert!(timer_at(&out, retransmit_key(uid(1))).is_some());
    assert_eq!(state(&cs, 1), S::Updating);

    // A retransmitted UpdateTargets while the bridges start sends nothing new.
    let out = accept(&mut cs, at(31), update(1, 3));
    assert!(sent(&out).is_empty(), "{out:?}");

    let out = accept(&mut cs, at(40), from_ds(Msg::Connected { uid: uid(1), inc: INC }));
    assert_eq!(sent(&out), vec![(UC, Msg::Updated { uid: uid(1), seq: 3 })]);
    assert!(cancels(&out, lease_key(uid(1))));
    assert!(cancels(&out, retransmit_key(uid(1))));
    assert_eq!(state(&cs, 1), S::Established);

    // Once established, a retransmitted UpdateTargets is answered again.
    let out = accept(&mut cs, at(50), update(1, 3));
    assert_eq!(sent(&out), vec![(UC, Msg::Updated { uid: uid(1), seq: 3 })]);
}

#[test]
fn update_before_the_ports_are_reserved_is_refused_failed_precondition() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let (err, _) = reject(&mut cs, at(11), update(1, 2));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::FailedPrecondition });
}

#[test]
fn update_with_another_map_or_credentials_is_refused_already_exists() {
    let mut cs = serving();
    established(&mut cs, 1);
    let (err, _) = reject(&mut cs, at(50), update_as(alice(), 1, 4, prod_listeners(), 8));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
    let (err, _) = reject(&mut cs, at(50), update_as(alice(), 1, 4, vec![addr("h", 1)], 9));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::AlreadyExists });
}

#[test]
fn update_without_targets_is_refused_invalid_argument() {
    let mut cs = serving();
    listening(&mut cs, 1);
    let (err, _) = reject(&mut cs, at(30), update_as(alice(), 1, 2, vec![], 9));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::InvalidArgument });
}

#[test]
fn another_owners_update_and_rel_are_refused_permission_denied() {
    let mut cs = serving();
    listening(&mut cs, 1);
    let (err, out) = reject(&mut cs, at(30), update_as(who("bob"), 1, 2, prod_listeners(), 9));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::PermissionDenied });
    assert_eq!(sent(&out), vec![(UC, error(1, 2, ErrorCode::PermissionDenied))]);
    let (err, _) = reject(&mut cs, at(31), rel_as(who("bob"), 1, 2));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::PermissionDenied });
    let poll = from_uc(who("bob"), Msg::ReqListeners { uid: uid(1), seq: 2, token: Token::default() });
    let (err, _) = reject(&mut cs, at(32), poll);
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::PermissionDenied });
}

#[test]
fn lease_expiry_while_listening_reports_deadline_exceeded_and_releases_the_ports() {
    let mut cs = serving();
    listening(&mut cs, 1);
    let out = accept(&mut cs, at(60_010), Input::Timer(lease_key(uid(1))));
    // The waiting REQ (no Hello came) learns why.
    assert_eq!(
        sent(&out),
        vec![
            (DS, Msg::DsRel { uid: uid(1), epoch: EPOCH }),
            (UC, error_why(1, 1, ErrorCode::DeadlineExceeded, crate::Why::Lease))
        ]
    );
    assert_eq!(state(&cs, 1), S::Aborting);

    let out = accept(&mut cs, at(60_020), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    assert!(sent(&out).is_empty(), "the client already has its ERROR: {out:?}");
    assert_eq!(state(&cs, 1), S::Failed);
    assert!(cancels(&out, retransmit_key(uid(1))));
    assert!(timer_at(&out, tombstone_key(uid(1))).is_some());

    // Retransmissions from the client keep learning why.
    let out = accept(&mut cs, at(60_030), update(1, 3));
    assert_eq!(sent(&out), vec![(UC, error_why(1, 3, ErrorCode::DeadlineExceeded, crate::Why::Lease))]);
    let out = accept(&mut cs, at(60_030), req(1, 1));
    assert_eq!(sent(&out), vec![(UC, error_why(1, 1, ErrorCode::DeadlineExceeded, crate::Why::Lease))]);
}

#[test]
fn lease_expiry_while_reserving_also_releases() {
    let mut cs = serving();
    accept(&mut cs, at(10), req(1, 1));
    let out = accept(&mut cs, at(60_010), Input::Timer(lease_key(uid(1))));
    assert!(sent(&out).contains(&(DS, Msg::DsRel { uid: uid(1), epoch: EPOCH })));
    assert_eq!(state(&cs, 1), S::Aborting);
}

#[test]
fn a_stale_lease_timer_of_an_established_session_is_refused() {
    let mut cs = serving();
    established(&mut cs, 1);
    let (err, out) = reject(&mut cs, at(60_010), Input::Timer(lease_key(uid(1))));
    assert!(matches!(err, ProtocolError::NotAllowed { .. }), "{err}");
    assert!(out.is_empty());
}

#[test]
fn rel_releases_the_ports_then_answers_released() {
    let mut cs = serving();
    established(&mut cs, 1);
    let out = accept(&mut cs, at(50), rel_as(alice(), 1, 4));
    assert_eq!(sent(&out), vec![(DS, Msg::DsRel { uid: uid(1), epoch: EPOCH })]);
    assert_eq!(state(&cs, 1), S::Releasing);

    let out = accept(&mut cs, at(51), rel_as(alice(), 1, 4));
    assert!(sent(&out).is_empty(), "still releasing: {out:?}");

    let out = accept(&mut cs, at(60), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    assert_eq!(sent(&out), vec![(UC, Msg::Released { uid: uid(1), seq: 4 })]);
    assert_eq!(state(&cs, 1), S::Released);
    assert!(timer_at(&out, tombstone_key(uid(1))).is_some());
}

#[test]
fn rel_repeated_after_released_answers_released_again() {
    let mut cs = serving();
    listening(&mut cs, 1);
    accept(&mut cs, at(30), rel_as(alice(), 1, 2));
    accept(&mut cs, at(40), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    let out = accept(&mut cs, at(50), rel_as(alice(), 1, 3));
    assert_eq!(sent(&out), vec![(UC, Msg::Released { uid: uid(1), seq: 3 })]);
    assert_eq!(state(&cs, 1), S::Released);
}

#[test]
fn rel_for_an_unknown_uid_is_refused_not_found() {
    let mut cs = serving();
    let (err, out) = reject(&mut cs, at(10), rel_as(alice(), 1, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::NotFound });
    assert_eq!(sent(&out), vec![(UC, error(1, 1, ErrorCode::NotFound))]);
}

#[test]
fn req_while_releasing_is_refused_and_changes_nothing() {
    let mut cs = serving();
    listening(&mut cs, 1);
    accept(&mut cs, at(30), rel_as(alice(), 1, 2));
    let (err, out) = reject(&mut cs, at(31), req(1, 7));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::Aborted });
    assert_eq!(sent(&out), vec![(UC, error(1, 7, ErrorCode::Aborted))]);
    // The Released answer echoes the REL; the REQ that waited for a Hello learns it is over.
    let out = accept(&mut cs, at(40), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    assert_eq!(sent(&out), vec![(UC, error(1, 1, ErrorCode::Aborted)), (UC, Msg::Released { uid: uid(1), seq: 2 })]);
}

#[test]
fn tombstone_forgets_finished_sessions_only() {
    let mut cs = serving();
    listening(&mut cs, 1);
    let (err, _) = reject(&mut cs, at(30), Input::Timer(tombstone_key(uid(1))));
    assert_eq!(err, ProtocolError::Misdirected("timer"));
    accept(&mut cs, at(30), rel_as(alice(), 1, 2));
    accept(&mut cs, at(40), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    accept(&mut cs, at(120_040), Input::Timer(tombstone_key(uid(1))));
    assert!(cs.session(&uid(1)).is_none());
    let (err, _) = reject(&mut cs, at(120_050), rel_as(alice(), 1, 3));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::NotFound });
}

#[test]
fn answers_sent_to_a_control_server_are_misdirected() {
    let mut cs = serving();
    let resp = Msg::Resp { uid: uid(1), seq: 1, listeners: vec![], prod_listeners: vec![] };
    let (err, out) = reject(&mut cs, at(10), from_uc(alice(), resp));
    assert_eq!(err, ProtocolError::Misdirected("RESP"));
    assert!(out.is_empty());
    let (err, _) = reject(&mut cs, at(10), Input::Msg { from: APP, caller: None, msg: Msg::DsBoot { inc: 9 } });
    assert_eq!(err, ProtocolError::Misdirected("DsBoot"));
}

#[test]
fn an_update_without_credentials_is_refused_unless_plain_wan_legs_are_allowed() {
    // creds(0) is the all-zero value a 1.2 client's empty field decodes to.
    let no_creds = |seq| update_as(alice(), 1, seq, prod_listeners(), 0);
    let mut cs = serving();
    listening(&mut cs, 1);
    let (err, _) = reject(&mut cs, at(30), no_creds(3));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::FailedPrecondition });
    assert_eq!(state(&cs, 1), S::Listening);

    let mut cfg = s2cs_config(Role::Prod);
    cfg.allow_plain_wan = true;
    let mut cs = serving_with(cfg);
    listening(&mut cs, 1);
    accept(&mut cs, at(30), no_creds(3));
    assert_eq!(state(&cs, 1), S::Updating);
}

#[test]
fn a_req_beyond_the_facilitys_remaining_capacity_is_resource_exhausted() {
    let mut cfg = s2cs_config(Role::Prod);
    cfg.capacity = Some(1_000);
    let mut cs = serving_with(cfg);
    let with_rate =
        |n: u128, rate| req_as(alice(), n, 1, SessionParams { role: Role::Prod, num_conn: 1, rate }, key(1));
    accept(&mut cs, at(10), with_rate(1, 600));
    let (err, _) = reject(&mut cs, at(11), with_rate(2, 500));
    assert_eq!(err, ProtocolError::Refused { uid: uid(2), code: ErrorCode::ResourceExhausted });
    accept(&mut cs, at(12), with_rate(3, 400));
    // An unlimited rate takes the whole capacity.
    let (err, _) = reject(&mut cs, at(13), with_rate(4, 0));
    assert_eq!(err, ProtocolError::Refused { uid: uid(4), code: ErrorCode::ResourceExhausted });
    // Released capacity is available again.
    accept(&mut cs, at(14), rel_as(alice(), 1, 2));
    accept(&mut cs, at(15), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    accept(&mut cs, at(16), with_rate(5, 600));
}

#[test]
fn a_req_without_a_rate_gets_the_facilitys_default_rate_and_its_retransmission_is_the_same_req() {
    let mut cfg = s2cs_config(Role::Prod);
    cfg.default_rate = 2_000;
    cfg.capacity = Some(5_000);
    let mut cs = serving_with(cfg);
    let with_rate =
        |n: u128, seq, rate| req_as(alice(), n, seq, SessionParams { role: Role::Prod, num_conn: 1, rate }, key(1));
    accept(&mut cs, at(10), with_rate(1, 1, 0));
    assert_eq!(cs.session(&uid(1)).expect("held").params().rate, 2_000, "rate 0 asks for none: the default");
    // The same REQ again (rate still 0) is a retransmission, not a conflict.
    accept(&mut cs, at(11), with_rate(1, 2, 0));
    // A rate asked for is kept.
    accept(&mut cs, at(12), with_rate(2, 1, 500));
    assert_eq!(cs.session(&uid(2)).expect("held").params().rate, 500);
    // The default counts against the capacity as a rate asked for: 2,000 + 500 + 2,000 fit in
    // 5,000, one more 2,000 does not.
    accept(&mut cs, at(13), with_rate(3, 1, 0));
    let (err, _) = reject(&mut cs, at(14), with_rate(4, 1, 0));
    assert_eq!(err, ProtocolError::Refused { uid: uid(4), code: ErrorCode::ResourceExhausted });
}

#[test]
fn without_a_default_rate_a_req_without_a_rate_stays_unlimited() {
    let mut cs = serving_with(s2cs_config(Role::Prod));
    accept(&mut cs, at(10), req_as(alice(), 1, 1, SessionParams { role: Role::Prod, num_conn: 1, rate: 0 }, key(1)));
    assert_eq!(cs.session(&uid(1)).expect("held").params().rate, 0);
}

#[test]
fn a_draining_server_admits_no_new_session_and_keeps_serving_the_ones_it_holds() {
    let mut cs = serving();
    listening(&mut cs, 1);
    assert_eq!(cs.core().holding(), 1);
    accept(&mut cs, at(21), Input::Drain);
    assert!(cs.core().draining());
    // A new uid: refused UNAVAILABLE (its client retries, against the server's successor).
    let (err, out) = reject(&mut cs, at(22), req(2, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(2), code: ErrorCode::Unavailable });
    assert_eq!(sent(&out), vec![(UC, error_why(2, 1, ErrorCode::Unavailable, crate::Why::Draining))]);
    assert!(cs.session(&uid(2)).is_none(), "a refused REQ holds nothing");
    // The session it holds goes on: its Hello, its UpdateTargets, its release.
    accept(&mut cs, at(25), hello(1, 1, key(1)));
    accept(&mut cs, at(30), update(1, 3));
    accept(&mut cs, at(40), from_ds(Msg::Connected { uid: uid(1), inc: INC }));
    assert_eq!(state(&cs, 1), S::Established);
    assert_eq!(cs.core().holding(), 1, "an established session holds its ports until released");
}

#[test]
fn a_new_capacity_applies_to_what_is_admitted_from_then_on() {
    let mut cs = serving_with(Config { capacity: Some(1000), ..serving().config().clone() });
    accept(&mut cs, at(10), req_as(alice(), 1, 1, SessionParams { rate: 800, ..params(Role::Prod, 2) }, key(1)));
    let ask = |n| req_as(alice(), n, 1, SessionParams { rate: 400, ..params(Role::Prod, 2) }, key(1));
    let (err, _) = reject(&mut cs, at(11), ask(2));
    assert_eq!(err, ProtocolError::Refused { uid: uid(2), code: ErrorCode::ResourceExhausted });
    accept(
        &mut cs,
        at(12),
        Input::Reconfigure { capacity: Some(2000), default_rate: 0, operators: Vec::new(), policy: Box::default() },
    );
    accept(&mut cs, at(13), ask(3));
    assert!(cs.session(&uid(1)).is_some(), "the session admitted before is kept");
    accept(
        &mut cs,
        at(14),
        Input::Reconfigure { capacity: Some(100), default_rate: 0, operators: Vec::new(), policy: Box::default() },
    );
    assert!(cs.session(&uid(3)).is_some(), "a lower capacity fails nothing admitted");
    let (err, _) = reject(&mut cs, at(15), ask(4));
    assert_eq!(err, ProtocolError::Refused { uid: uid(4), code: ErrorCode::ResourceExhausted });
}
