//! The SciStream 1.2 messages keep their field numbers and the service its method paths, so
//! the Python 1.2 clients and servers interoperate with ours. Expected bytes are written by
//! hand from the 1.2 `.proto` (tag byte = field number << 3 | wire type 2 for strings/bytes,
//! 0 for varints).

use prost::Message;
use scistream_proto::convert::{Limits, request_from_wire};
use scistream_proto::pb;

fn bytes_of(msg: &impl Message) -> Vec<u8> {
    msg.encode_to_vec()
}

#[test]
fn request_keeps_1_2_field_numbers() {
    let req = pb::Request { uid: "u".into(), role: "PROD".into(), num_conn: 2, rate: 3, app_key: vec![] };
    let expected = [&[0x0a, 1][..], b"u", &[0x12, 4], b"PROD", &[0x18, 2, 0x20, 3]].concat();
    assert_eq!(bytes_of(&req), expected);
}

#[test]
fn request_app_key_extension_is_field_5() {
    let req = pb::Request { app_key: vec![0xaa; 2], ..Default::default() };
    assert_eq!(bytes_of(&req), [0x2a, 2, 0xaa, 0xaa]);
}

#[test]
fn update_targets_keeps_1_2_field_numbers_and_credentials_is_field_4() {
    let upd = pb::UpdateTargets {
        uid: "u".into(),
        remote_listeners: vec!["a:1".into(), "b:2".into()],
        role: "CONS".into(),
        credentials: vec![7],
    };
    let expected =
        [&[0x0a, 1][..], b"u", &[0x12, 3], b"a:1", &[0x12, 3], b"b:2", &[0x1a, 4], b"CONS", &[0x22, 1, 7]].concat();
    assert_eq!(bytes_of(&upd), expected);
}

#[test]
fn release_keeps_1_2_field_numbers() {
    assert_eq!(bytes_of(&pb::Release { uid: "u".into() }), [0x0a, 1, b'u']);
}

#[test]
fn hello_keeps_1_2_field_numbers_and_app_key_is_field_4() {
    let hello =
        pb::Hello { uid: "u".into(), prod_listeners: vec!["p:7".into()], role: "PROD".into(), app_key: vec![9] };
    let expected = [&[0x0a, 1][..], b"u", &[0x12, 3], b"p:7", &[0x1a, 4], b"PROD", &[0x22, 1, 9]].concat();
    assert_eq!(bytes_of(&hello), expected);
}

#[test]
fn response_keeps_1_2_field_numbers() {
    let resp = pb::Response { listeners: vec!["l:1".into()], prod_listeners: vec!["p:2".into()] };
    let expected = [&[0x0a, 3][..], b"l:1", &[0x12, 3], b"p:2"].concat();
    assert_eq!(bytes_of(&resp), expected);
}

#[test]
fn app_response_keeps_1_2_field_numbers() {
    let resp = pb::AppResponse { message: "ok".into(), listeners: vec!["l:1".into()] };
    let expected = [&[0x0a, 2][..], b"ok", &[0x12, 3], b"l:1"].concat();
    assert_eq!(bytes_of(&resp), expected);
}

#[test]
fn request_as_a_1_2_client_encodes_it_is_accepted() {
    // What `scistream_pb2.Request(uid=str(uuid.uuid1()), role="PROD", num_conn=5, rate=10000)`
    // puts on the wire.
    let uid = b"6f1c2a9e-3b4d-11ef-8a1b-0242ac120002";
    let bytes = [&[0x0a, 36][..], uid, &[0x12, 4], b"PROD", &[0x18, 5, 0x20, 0x90, 0x4e]].concat();
    let req = pb::Request::decode(&bytes[..]).expect("1.2 bytes decode");
    let args = request_from_wire(&req, &Limits::default()).expect("1.2 request is valid");
    assert_eq!((args.params.num_conn, args.params.rate, args.key), (5, 10_000, None));
}

#[test]
fn service_keeps_1_2_method_paths() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/scistream.rs"));
    for rpc in ["req", "update", "release", "hello"] {
        let path = format!("\"/scistream.Control/{rpc}\"");
        assert!(generated.contains(&path), "missing {path}");
    }
}
