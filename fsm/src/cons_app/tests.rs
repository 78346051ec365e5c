use super::*;
use crate::testkit::{accept, addr, at, notices, reject, uid};

fn gw() -> Vec<Addr> {
    vec![addr("gw.cons", 6000), addr("gw.cons", 6001)]
}

#[test]
fn the_whole_path_connects_streams_and_finishes_when_the_gateway_closes() {
    let mut ca = ConsApp::new(uid(1));
    let out = accept(&mut ca, at(0), Input::Listeners(gw()));
    assert_eq!(out, vec![Effect::Connect { uid: uid(1), listeners: gw() }]);
    assert_eq!(ca.state(), State::Connecting);
    let out = accept(&mut ca, at(0), Input::Connected);
    assert_eq!(notices(&out), vec![Notice::Streaming { uid: uid(1) }]);
    assert_eq!(ca.state(), State::Streaming);
    let out = accept(&mut ca, at(0), Input::Closed);
    assert!(out.is_empty());
    assert_eq!(ca.state(), State::Done);
}

#[test]
fn channels_that_cannot_open_fail_it() {
    for input in [Input::ConnectFailed, Input::Closed] {
        let mut ca = ConsApp::new(uid(1));
        accept(&mut ca, at(0), Input::Listeners(gw()));
        let out = accept(&mut ca, at(0), input);
        assert_eq!(notices(&out), vec![Notice::Failed { uid: uid(1), code: ErrorCode::Unavailable }]);
        assert_eq!(ca.state(), State::Failed);
    }
}

#[test]
fn inputs_out_of_order_are_refused_and_change_nothing() {
    let mut ca = ConsApp::new(uid(1));
    for input in [Input::Connected, Input::ConnectFailed, Input::Closed] {
        reject(&mut ca, at(0), input);
    }
    accept(&mut ca, at(0), Input::Listeners(gw()));
    let (err, out) = reject(&mut ca, at(0), Input::Listeners(gw()));
    assert!(matches!(err, ProtocolError::NotAllowed { state: "Connecting", input: "Listeners", .. }), "{err}");
    assert!(out.is_empty());
    accept(&mut ca, at(0), Input::Connected);
    accept(&mut ca, at(0), Input::Closed);
    for input in [Input::Listeners(gw()), Input::Connected, Input::ConnectFailed, Input::Closed] {
        reject(&mut ca, at(0), input);
    }
}
