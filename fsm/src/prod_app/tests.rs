use super::*;
use crate::testkit::{
    BACKOFF, accept, addr, at, cancels, key, notices, prod_app_config, reject, sent, timer, timer_at, uid,
};

const CS: Peer = Peer::ControlServer(Role::Prod);

fn app() -> Vec<Addr> {
    vec![addr("10.1.0.5", 7000)]
}

fn start() -> Input {
    Input::Start { uid: uid(1), key: key(1), prod_listeners: app() }
}

fn greeting() -> (ProdApp, Outbox) {
    let mut pa = ProdApp::new(prod_app_config());
    let out = accept(&mut pa, at(0), start());
    (pa, out)
}

fn answer(msg: Msg) -> Input {
    Input::Msg { from: CS, msg }
}

fn error(seq: u32, code: ErrorCode) -> Input {
    answer(Msg::Error { uid: uid(1), seq, code, why: crate::Why::Unspecified })
}

fn hello(seq: u32) -> Msg {
    Msg::Hello { uid: uid(1), seq, key: key(1), prod_listeners: app() }
}

fn retransmit() -> TimerKey {
    timer(Some(uid(1)), TimerKind::Retransmit)
}

fn deadline() -> TimerKey {
    timer(Some(uid(1)), TimerKind::Deadline)
}

#[test]
fn start_says_hello_with_the_key_and_the_producer_listeners() {
    let (pa, out) = greeting();
    assert_eq!(sent(&out), vec![(CS, hello(1))]);
    assert_eq!(timer_at(&out, deadline()), Some(at(0) + prod_app_config().timing.hello_deadline()));
    assert_eq!(pa.state(), State::Greeting);
}

#[test]
fn hello_is_retransmitted_with_backoff_under_a_new_seq() {
    let (mut pa, out) = greeting();
    let mut now = at(0);
    let mut due = timer_at(&out, retransmit()).expect("retransmit armed");
    assert_eq!(due, now + BACKOFF.delay(1, 0));
    for seq in 2..=8 {
        now = due;
        let out = accept(&mut pa, now, Input::Timer(retransmit()));
        assert_eq!(sent(&out), vec![(CS, hello(seq))]);
        due = timer_at(&out, retransmit()).expect("retransmit armed");
        assert_eq!(due, now + BACKOFF.delay(seq, 0));
    }
    assert_eq!(due - now, BACKOFF.max);
}

#[test]
fn not_found_and_unavailable_keep_it_greeting() {
    let (mut pa, _) = greeting();
    for code in [ErrorCode::NotFound, ErrorCode::Unavailable] {
        let out = accept(&mut pa, at(10), error(1, code));
        assert!(out.is_empty(), "retrying is the retransmit timer's job: {out:?}");
        assert_eq!(pa.state(), State::Greeting);
    }
    let out = accept(&mut pa, at(200), Input::Timer(retransmit()));
    assert_eq!(sent(&out), vec![(CS, hello(2))]);
}

#[test]
fn permission_denied_fails_and_stops_saying_hello() {
    let (mut pa, _) = greeting();
    let out = accept(&mut pa, at(10), error(1, ErrorCode::PermissionDenied));
    assert_eq!(notices(&out), vec![Notice::Failed { uid: uid(1), code: ErrorCode::PermissionDenied }]);
    assert!(cancels(&out, retransmit()));
    assert!(cancels(&out, deadline()));
    assert_eq!((pa.state(), pa.failure()), (State::Failed, Some(ErrorCode::PermissionDenied)));
    let (_, out) = reject(&mut pa, at(200), Input::Timer(retransmit()));
    assert!(out.is_empty());
}

#[test]
fn deadline_fails_with_deadline_exceeded() {
    let (mut pa, _) = greeting();
    let out = accept(&mut pa, at(30_000), Input::Timer(deadline()));
    assert_eq!(notices(&out), vec![Notice::Failed { uid: uid(1), code: ErrorCode::DeadlineExceeded }]);
    assert!(cancels(&out, retransmit()));
    assert_eq!((pa.state(), pa.failure()), (State::Failed, Some(ErrorCode::DeadlineExceeded)));
}

#[test]
fn ack_makes_it_ready_with_the_gateway_listeners() {
    let (mut pa, _) = greeting();
    let gw = vec![addr("gw.prod", 5000), addr("gw.prod", 5001)];
    let out = accept(&mut pa, at(10), answer(Msg::HelloAck { uid: uid(1), seq: 1, listeners: gw.clone() }));
    assert_eq!(notices(&out), vec![Notice::Ready { uid: uid(1), listeners: gw.clone() }]);
    assert!(cancels(&out, retransmit()));
    assert!(cancels(&out, deadline()));
    assert_eq!((pa.state(), pa.listeners()), (State::Ready, gw.as_slice()));

    // The ack of a retransmitted Hello changes nothing; a late deadline is refused.
    let out = accept(&mut pa, at(11), answer(Msg::HelloAck { uid: uid(1), seq: 2, listeners: gw }));
    assert!(out.is_empty());
    let (err, _) = reject(&mut pa, at(30_000), Input::Timer(deadline()));
    assert!(matches!(err, ProtocolError::NotAllowed { state: "Ready", input: "Deadline", .. }), "{err}");
}

#[test]
fn answers_before_start_for_other_sessions_or_from_others_are_refused() {
    let mut pa = ProdApp::new(prod_app_config());
    let (err, _) = reject(&mut pa, at(0), error(1, ErrorCode::NotFound));
    assert_eq!(err, ProtocolError::Stale("ERROR"));
    accept(&mut pa, at(0), start());
    let (err, _) = reject(
        &mut pa,
        at(1),
        answer(Msg::Error { uid: uid(2), seq: 1, code: ErrorCode::Aborted, why: crate::Why::Unspecified }),
    );
    assert_eq!(err, ProtocolError::UnknownSession(uid(2)));
    let from_cons = Input::Msg {
        from: Peer::ControlServer(Role::Cons),
        msg: Msg::HelloAck { uid: uid(1), seq: 1, listeners: vec![] },
    };
    let (err, _) = reject(&mut pa, at(1), from_cons);
    assert_eq!(err, ProtocolError::Misdirected("HelloAck"));
    let (err, _) = reject(&mut pa, at(1), answer(Msg::Released { uid: uid(1), seq: 1 }));
    assert_eq!(err, ProtocolError::Misdirected("Released"));
    let (err, _) = reject(&mut pa, at(1), start());
    assert!(matches!(err, ProtocolError::NotAllowed { .. }), "{err}");
}
