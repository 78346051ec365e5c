use proptest::prelude::*;
use scistream_fsm::types::AddrError;
use scistream_fsm::{Addr, AppKey, Credentials, ErrorCode, Role, SessionParams, Uid};

use super::*;
use crate::{WireError, arb, pb};

const UID: &str = "6f1c2a9e-3b4d-11ef-8a1b-0242ac120002";

fn request() -> pb::Request {
    pb::Request { uid: UID.into(), role: "PROD".into(), num_conn: 4, rate: 10_000, app_key: vec![] }
}

fn update() -> pb::UpdateTargets {
    pb::UpdateTargets {
        uid: UID.into(),
        remote_listeners: vec!["10.0.0.1:5100".into()],
        role: String::new(),
        credentials: vec![],
    }
}

fn hello() -> pb::Hello {
    pb::Hello { uid: UID.into(), prod_listeners: vec!["127.0.0.1:7000".into()], role: "PROD".into(), app_key: vec![] }
}

fn request_error(edit: impl FnOnce(&mut pb::Request)) -> WireError {
    let mut req = request();
    edit(&mut req);
    request_from_wire(&req, &Limits::DEFAULT).expect_err("request must be refused")
}

#[test]
fn request_from_a_1_2_client_is_accepted_without_app_key() {
    let args = request_from_wire(&request(), &Limits::DEFAULT).expect("valid request");
    assert_eq!(args.uid, UID.parse::<Uid>().expect("uuid"));
    assert_eq!(args.params, SessionParams { role: Role::Prod, num_conn: 4, rate: 10_000 });
    assert_eq!(args.key, None);
}

#[test]
fn request_with_empty_uid_is_refused() {
    assert_eq!(request_error(|r| r.uid.clear()), WireError::EmptyUid);
}

#[test]
fn request_with_malformed_uid_is_refused() {
    let err = request_error(|r| r.uid = "session-1".into());
    assert_eq!(err, WireError::MalformedUid("session-1".into()));
}

#[test]
fn request_with_unknown_role_is_refused() {
    assert_eq!(request_error(|r| r.role = "BOTH".into()), WireError::BadRole("BOTH".into()));
}

#[test]
fn request_without_role_is_refused() {
    assert_eq!(request_error(|r| r.role.clear()), WireError::BadRole(String::new()));
}

#[test]
fn lowercase_or_mixed_case_role_is_accepted() {
    for (text, role) in [("prod", Role::Prod), ("Prod", Role::Prod), ("cons", Role::Cons)] {
        let req = pb::Request { role: text.into(), ..request() };
        let args = request_from_wire(&req, &Limits::DEFAULT).expect("case-insensitive role");
        assert_eq!(args.params.role, role, "{text}");
    }
}

#[test]
fn role_with_extra_characters_is_refused() {
    assert_eq!(role_from_wire("PROD "), Err(WireError::BadRole("PROD ".into())));
    assert_eq!(role_from_wire("PRODUCER"), Err(WireError::BadRole("PRODUCER".into())));
}

#[test]
fn request_with_zero_connections_is_refused() {
    let err = request_error(|r| r.num_conn = 0);
    assert_eq!(err, WireError::NumConnOutOfRange { got: 0, max: 256 });
}

#[test]
fn request_with_negative_connections_is_refused() {
    let err = request_error(|r| r.num_conn = -3);
    assert_eq!(err, WireError::NumConnOutOfRange { got: -3, max: 256 });
}

#[test]
fn request_above_the_connection_limit_is_refused() {
    let err = request_error(|r| r.num_conn = 257);
    assert_eq!(err, WireError::NumConnOutOfRange { got: 257, max: 256 });
    let req = pb::Request { num_conn: 257, ..request() };
    let wide = Limits { max_num_conn: 1000 };
    assert_eq!(request_from_wire(&req, &wide).map(|a| a.params.num_conn), Ok(257));
}

#[test]
fn request_with_negative_rate_is_refused() {
    assert_eq!(request_error(|r| r.rate = -1), WireError::NegativeRate(-1));
}

#[test]
fn request_with_short_app_key_is_refused() {
    assert_eq!(request_error(|r| r.app_key = vec![7; 15]), WireError::KeyLength(15));
}

#[test]
fn update_from_a_1_2_client_has_no_role_and_no_credentials() {
    let args = update_from_wire(&update()).expect("valid update");
    assert_eq!(args.role, None);
    assert_eq!(args.creds, None);
    assert_eq!(args.remote, vec![Addr::new("10.0.0.1", 5100)]);
}

#[test]
fn update_with_listener_without_port_is_refused() {
    let upd = pb::UpdateTargets { remote_listeners: vec!["10.0.0.1".into()], ..update() };
    assert_eq!(update_from_wire(&upd), Err(WireError::BadAddr(AddrError::NoPort("10.0.0.1".into()))));
}

#[test]
fn update_with_port_zero_is_refused() {
    let upd = pb::UpdateTargets { remote_listeners: vec!["h:0".into()], ..update() };
    assert_eq!(update_from_wire(&upd), Err(WireError::BadAddr(AddrError::BadPort("h:0".into()))));
}

#[test]
fn update_with_unknown_role_is_refused() {
    let upd = pb::UpdateTargets { role: "X".into(), ..update() };
    assert_eq!(update_from_wire(&upd), Err(WireError::BadRole("X".into())));
}

#[test]
fn update_with_short_credentials_is_refused() {
    let upd = pb::UpdateTargets { credentials: vec![1; 31], ..update() };
    assert_eq!(update_from_wire(&upd), Err(WireError::CredentialsLength(31)));
}

#[test]
fn hello_with_bad_host_is_refused() {
    let h = pb::Hello { prod_listeners: vec!["bad host:80".into()], ..hello() };
    assert_eq!(hello_from_wire(&h), Err(WireError::BadAddr(AddrError::BadHost("bad host:80".into()))));
}

#[test]
fn hello_with_long_app_key_is_refused() {
    let h = pb::Hello { app_key: vec![0; 17], ..hello() };
    assert_eq!(hello_from_wire(&h), Err(WireError::KeyLength(17)));
}

#[test]
fn hello_from_a_1_2_controller_has_no_app_key() {
    let args = hello_from_wire(&hello()).expect("valid hello");
    assert_eq!((args.role, args.key), (Some(Role::Prod), None));
}

#[test]
fn release_with_empty_uid_is_refused() {
    assert_eq!(release_from_wire(&pb::Release { uid: String::new() }), Err(WireError::EmptyUid));
}

#[test]
fn listeners_call_with_malformed_uid_is_refused() {
    let call = pb::ReqListeners { uid: "x".into() };
    assert_eq!(req_listeners_from_wire(&call), Err(WireError::MalformedUid("x".into())));
}

#[test]
fn response_with_malformed_producer_listener_is_refused() {
    let resp = pb::Response { listeners: vec![], prod_listeners: vec!["h:port".into()] };
    assert_eq!(response_from_wire(&resp), Err(WireError::BadAddr(AddrError::BadPort("h:port".into()))));
}

#[test]
fn app_response_with_malformed_listener_is_refused() {
    let resp = pb::AppResponse { message: "hi".into(), listeners: vec![":80".into()] };
    assert_eq!(app_response_from_wire(&resp), Err(WireError::BadAddr(AddrError::BadHost(":80".into()))));
}

#[test]
fn unspecified_error_code_is_refused() {
    assert_eq!(error_code_from_wire(0), Err(WireError::UnspecifiedErrorCode));
}

#[test]
fn unknown_error_code_is_refused() {
    assert_eq!(error_code_from_wire(99), Err(WireError::UnknownErrorCode(99)));
    assert_eq!(error_code_from_wire(-1), Err(WireError::UnknownErrorCode(-1)));
}

#[test]
fn every_error_code_round_trips_through_the_wire_and_grpc() {
    for code in ErrorCode::ALL {
        assert_eq!(error_code_from_wire(error_code_to_wire(code).into()), Ok(code));
        assert_eq!(error_code_from_status(status_code(code)), Some(code));
    }
    assert_eq!(error_code_from_status(tonic::Code::Unknown), None);
}

#[test]
fn wire_error_is_answered_as_invalid_argument() {
    let status = tonic::Status::from(WireError::NegativeRate(-5));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "rate -5 is negative");
}

#[test]
fn uid_text_is_lowercase_hyphenated() {
    let uid = Uid::from_u128(0xABCD_EF01_2345_6789_ABCD_EF01_2345_6789);
    assert_eq!(uid_to_wire(uid), "abcdef01-2345-6789-abcd-ef0123456789");
}

#[test]
fn ipv6_listener_is_bracketed() {
    assert_eq!(addrs_to_wire(&[Addr::new("::1", 5100)]), vec!["[::1]:5100".to_owned()]);
}

fn rate_fits_int32() -> impl Strategy<Value = SessionParams> {
    arb::params().prop_map(|p| SessionParams { rate: p.rate.min(i32::MAX as u32), ..p })
}

proptest! {
    #[test]
    fn prop_request_from_wire_inverts_request_to_wire(
        uid in arb::uid(), params in rate_fits_int32(), key in proptest::option::of(arb::key()),
    ) {
        let args = ReqArgs { uid, params, key };
        prop_assert_eq!(request_from_wire(&request_to_wire(&args), &Limits::DEFAULT), Ok(args));
    }

    #[test]
    fn prop_update_from_wire_inverts_update_to_wire(
        uid in arb::uid(),
        role in proptest::option::of(arb::role()),
        remote in arb::addrs(),
        creds in proptest::option::of(arb::creds()),
    ) {
        let args = UpdateArgs { uid, role, remote, creds };
        prop_assert_eq!(update_from_wire(&update_to_wire(&args)), Ok(args));
    }

    #[test]
    fn prop_hello_from_wire_inverts_hello_to_wire(
        uid in arb::uid(),
        role in proptest::option::of(arb::role()),
        prod_listeners in arb::addrs(),
        key in proptest::option::of(arb::key()),
    ) {
        let args = HelloArgs { uid, role, prod_listeners, key };
        prop_assert_eq!(hello_from_wire(&hello_to_wire(&args)), Ok(args));
    }

    #[test]
    fn prop_response_from_wire_inverts_response_to_wire(
        listeners in arb::addrs(), prod_listeners in arb::addrs(),
    ) {
        let wire = response_to_wire(&listeners, &prod_listeners);
        prop_assert_eq!(response_from_wire(&wire), Ok(Listeners { listeners: listeners.clone(), prod_listeners }));
        let app = app_response_to_wire("Sending listeners...", &listeners);
        prop_assert_eq!(app_response_from_wire(&app), Ok(listeners));
    }

    #[test]
    fn prop_uid_release_and_listeners_calls_round_trip(uid in arb::uid()) {
        prop_assert_eq!(release_from_wire(&release_to_wire(uid)), Ok(uid));
        prop_assert_eq!(req_listeners_from_wire(&req_listeners_to_wire(uid)), Ok(uid));
    }

    #[test]
    fn prop_request_rate_above_int32_saturates(uid in arb::uid(), rate in (i32::MAX as u32 + 1)..) {
        let params = SessionParams { role: Role::Cons, num_conn: 1, rate };
        let wire = request_to_wire(&ReqArgs { uid, params, key: Some(AppKey([1; 16])) });
        prop_assert_eq!(wire.rate, i32::MAX);
    }
}

#[test]
fn key_and_credentials_are_sent_as_raw_bytes() {
    let uid = Uid::from_u128(1);
    let params = SessionParams { role: Role::Prod, num_conn: 1, rate: 0 };
    let req = request_to_wire(&ReqArgs { uid, params, key: Some(AppKey([9; 16])) });
    assert_eq!(req.app_key, vec![9; 16]);
    let args = UpdateArgs { uid, role: None, remote: vec![], creds: Some(Credentials([3; 32])) };
    let upd = update_to_wire(&args);
    assert_eq!((upd.credentials, upd.role), (vec![3; 32], String::new()));
}
