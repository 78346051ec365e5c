use std::collections::BTreeSet;

use proptest::prelude::*;
use prost::Message as _;
use scistream_fsm::types::AddrError;
use scistream_fsm::{Addr, AppKey, Credentials, ErrorCode, Msg, Role, SessionParams, Token, Uid, Why};

use super::*;
use crate::arb;

const UID: Uid = Uid::from_u128(0x6f1c_2a9e_3b4d_11ef_8a1b_0242_ac12_0002);

fn token() -> Token {
    Token("tok".into())
}

/// One message of every variant.
fn one_of_each() -> Vec<Msg> {
    let params = SessionParams { role: Role::Cons, num_conn: 3, rate: 20_000 };
    let (key, creds) = (AppKey([5; 16]), Credentials([6; 32]));
    let addrs = vec![Addr::new("gw.example.org", 5100), Addr::new("fe80::1", 5101)];
    vec![
        Msg::Req { uid: UID, seq: 1, token: token(), params, key },
        Msg::ReqListeners { uid: UID, seq: 2, token: token() },
        Msg::Update { uid: UID, seq: 3, token: token(), remote: addrs.clone(), creds },
        Msg::Rel { uid: UID, seq: 4, token: token() },
        Msg::Resp { uid: UID, seq: 5, listeners: addrs.clone(), prod_listeners: vec![] },
        Msg::ProdLstn { uid: UID, seq: 6, listeners: addrs.clone(), prod_listeners: addrs.clone() },
        Msg::Updated { uid: UID, seq: 7 },
        Msg::Released { uid: UID, seq: 8 },
        Msg::Error { uid: UID, seq: 9, code: ErrorCode::Aborted, why: Why::Unspecified },
        Msg::Error { uid: UID, seq: 9, code: ErrorCode::ResourceExhausted, why: Why::Ports { asked: 5, free: 4 } },
        Msg::Hello { uid: UID, seq: 10, key, prod_listeners: addrs.clone() },
        Msg::HelloAck { uid: UID, seq: 11, listeners: addrs.clone() },
        Msg::DsBoot { inc: 12 },
        Msg::Attach { epoch: 13, attachment: 1, keep: vec![] },
        Msg::AttachAck {
            epoch: 14,
            attachment: 1,
            inc: 15,
            held: vec![],
            pool: Pool { ports: 16, capacity: Some(17) },
        },
        Msg::StartLstn { uid: UID, epoch: 16, num_conn: 256, role: Role::Cons },
        Msg::Lstn { uid: UID, inc: 17, host: "2001:db8::1".into(), ports: vec![1, 65535] },
        Msg::Refused { uid: UID, inc: 18, code: ErrorCode::ResourceExhausted },
        Msg::StartConn { uid: UID, epoch: 19, targets: addrs, creds, role: Role::Cons, rate: 20_000 },
        Msg::Connected { uid: UID, inc: 20 },
        Msg::DsRel { uid: UID, epoch: 21 },
        Msg::DsReleased { uid: UID, inc: 22 },
    ]
}

fn decode_body(body: Body) -> Result<Msg, WireError> {
    decode(&pb::Envelope { body: Some(body) }.encode_to_vec())
}

#[test]
fn every_variant_round_trips() {
    let msgs = one_of_each();
    let names: BTreeSet<_> = msgs.iter().map(Msg::name).collect();
    assert_eq!(names.len(), 21, "one message per variant");
    for msg in msgs {
        assert_eq!(decode(&encode(&msg)), Ok(msg));
    }
}

#[test]
fn empty_bytes_are_an_envelope_without_body() {
    assert_eq!(decode(&[]), Err(WireError::MissingBody));
}

#[test]
fn unknown_body_case_is_an_envelope_without_body() {
    // Field 99, varint 1: a body case from a newer build.
    assert_eq!(decode(&[0x98, 0x06, 0x01]), Err(WireError::MissingBody));
}

#[test]
fn truncated_envelope_is_undecodable() {
    let bytes = encode(&one_of_each()[0]);
    let cut = &bytes[..bytes.len() - 1];
    assert!(matches!(decode(cut), Err(WireError::Decode(_))));
}

#[test]
fn envelope_with_malformed_uid_is_refused() {
    let body = Body::Updated(pb::EnvAck { uid: "nope".into(), seq: 1 });
    assert_eq!(decode_body(body), Err(WireError::MalformedUid("nope".into())));
}

#[test]
fn envelope_with_empty_uid_is_refused() {
    let body = Body::Connected(pb::EnvDsAck { uid: String::new(), inc: 1 });
    assert_eq!(decode_body(body), Err(WireError::EmptyUid));
}

#[test]
fn envelope_with_unspecified_error_code_is_refused() {
    let body = Body::Error(pb::EnvError { uid: uid_to_wire(UID), seq: 1, code: 0, why: None });
    assert_eq!(decode_body(body), Err(WireError::UnspecifiedErrorCode));
}

#[test]
fn an_error_explanation_this_build_does_not_know_or_out_of_range_is_refused() {
    let code = pb::ErrorCode::ResourceExhausted as i32;
    let with = |kind: &str, a: u64, b: u64| {
        let why = Some(pb::ErrorWhy { kind: kind.into(), a, b, c: 0 });
        decode_body(Body::Error(pb::EnvError { uid: uid_to_wire(UID), seq: 1, code, why }))
    };
    assert_eq!(with("Gremlins", 0, 0), Err(WireError::BadWhy("Gremlins".into())));
    assert_eq!(with("NumConn", 70_000, 0), Err(WireError::BadWhy("NumConn".into())));
    assert_eq!(with("Lease", 1, 0), Err(WireError::BadWhy("Lease".into())));
    let ok = with("Ports", 5, 4).expect("decodes");
    assert!(matches!(ok, Msg::Error { why: Why::Ports { asked: 5, free: 4 }, .. }), "{ok:?}");
}

#[test]
fn envelope_with_unknown_error_code_is_refused() {
    let body = Body::Refused(pb::EnvRefused { uid: uid_to_wire(UID), inc: 1, code: 12 });
    assert_eq!(decode_body(body), Err(WireError::UnknownErrorCode(12)));
}

#[test]
fn envelope_with_port_zero_or_above_65535_is_refused() {
    for bad in [0, 65_536] {
        let body = Body::Lstn(pb::EnvLstn { uid: uid_to_wire(UID), inc: 1, ports: vec![80, bad], host: "gw".into() });
        assert_eq!(decode_body(body), Err(WireError::BadPort(bad)));
    }
}

#[test]
fn envelope_lstn_with_a_host_that_is_no_host_is_refused() {
    for bad in ["", "gw a", "gw/../x", "[::1]"] {
        let body = Body::Lstn(pb::EnvLstn { uid: uid_to_wire(UID), inc: 1, ports: vec![80], host: bad.into() });
        assert!(matches!(decode_body(body), Err(WireError::BadAddr(_))), "{bad:?}");
    }
}

#[test]
fn envelope_start_lstn_without_a_role_is_refused() {
    let body = Body::StartLstn(pb::EnvStartLstn { uid: uid_to_wire(UID), epoch: 1, num_conn: 1, role: String::new() });
    assert!(decode_body(body).is_err());
}

#[test]
fn envelope_start_lstn_outside_limits_is_refused() {
    let body =
        |num_conn| Body::StartLstn(pb::EnvStartLstn { uid: uid_to_wire(UID), epoch: 1, num_conn, role: "PROD".into() });
    assert_eq!(decode_body(body(0)), Err(WireError::NumConnOutOfRange { got: 0, max: 256 }));
    assert_eq!(decode_body(body(257)), Err(WireError::NumConnOutOfRange { got: 257, max: 256 }));
    let bytes = pb::Envelope { body: Some(body(257)) }.encode_to_vec();
    let wide = Limits { max_num_conn: 300 };
    assert_eq!(decode_with(&bytes, &wide), Ok(Msg::StartLstn { uid: UID, epoch: 1, num_conn: 257, role: Role::Prod }));
}

fn env_req() -> pb::EnvReq {
    pb::EnvReq {
        uid: uid_to_wire(UID),
        seq: 1,
        token: "t".into(),
        role: "PROD".into(),
        num_conn: 2,
        rate: 0,
        app_key: vec![0; 16],
    }
}

#[test]
fn envelope_req_with_bad_role_is_refused() {
    let body = Body::Req(pb::EnvReq { role: "ALL".into(), ..env_req() });
    assert_eq!(decode_body(body), Err(WireError::BadRole("ALL".into())));
}

#[test]
fn envelope_req_without_app_key_is_refused() {
    let body = Body::Req(pb::EnvReq { app_key: vec![], ..env_req() });
    assert_eq!(decode_body(body), Err(WireError::KeyLength(0)));
}

#[test]
fn envelope_start_conn_with_wrong_credentials_length_is_refused() {
    let body = Body::StartConn(pb::EnvStartConn {
        uid: uid_to_wire(UID),
        epoch: 1,
        targets: vec![],
        credentials: vec![0; 33],
        role: "PROD".into(),
        rate: 0,
    });
    assert_eq!(decode_body(body), Err(WireError::CredentialsLength(33)));
}

#[test]
fn envelope_update_with_malformed_target_is_refused() {
    let body = Body::Update(pb::EnvUpdate {
        uid: uid_to_wire(UID),
        seq: 1,
        token: String::new(),
        remote: vec!["host:".into()],
        credentials: vec![0; 32],
    });
    assert_eq!(decode_body(body), Err(WireError::BadAddr(AddrError::BadPort("host:".into()))));
}

#[test]
fn encoding_is_sized_exactly_once() {
    for msg in one_of_each() {
        let bytes = encode(&msg);
        assert_eq!(bytes.len(), bytes.capacity(), "{}", msg.name());
    }
}

proptest! {
    #[test]
    fn prop_decode_inverts_encode(msg in arb::msg()) {
        prop_assert_eq!(decode(&encode(&msg)), Ok(msg));
    }

    #[test]
    fn prop_decode_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = decode(&bytes);
    }

    #[test]
    fn prop_decode_never_panics_on_corrupted_encodings(
        msg in arb::msg(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&msg);
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        let _ = decode(&bytes);
    }

    #[test]
    fn prop_what_decodes_from_corrupted_bytes_reencodes_to_itself(
        msg in arb::msg(),
        at in any::<prop::sample::Index>(),
        mask in 1..=u8::MAX,
    ) {
        // A flip inside a token, a sequence number or an epoch still decodes: the result must
        // be a valid domain value, so encoding it again decodes to the same value.
        let mut bytes = encode(&msg);
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        if let Ok(decoded) = decode(&bytes) {
            prop_assert_eq!(decode(&encode(&decoded)), Ok(decoded));
        }
    }
}
