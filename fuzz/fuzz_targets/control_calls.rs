//! A `scistream.Control` call as a control server receives it: the first byte picks the rpc,
//! the rest is its protobuf message (decoded by prost, as tonic does), read by the same
//! `convert::*_from_wire` the service calls; or (6) the `authorization` metadata value.
//! Whatever reads, writes back and reads again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use scistream_proto::convert::{
    hello_from_wire, hello_to_wire, release_from_wire, release_to_wire, req_listeners_from_wire, req_listeners_to_wire,
    request_from_wire, request_to_wire, uid_from_wire, update_from_wire, update_to_wire,
};
use scistream_proto::{Limits, pb};
use scistream_transport::auth::{AUTHORIZATION, token_from_metadata};
use tonic::metadata::{MetadataMap, MetadataValue};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let limits = Limits::DEFAULT;
    match which % 7 {
        0 => {
            let Ok(m) = pb::Request::decode(bytes) else { return };
            match request_from_wire(&m, &limits) {
                Ok(args) => assert_eq!(request_from_wire(&request_to_wire(&args), &limits), Ok(args)),
                Err(e) => drop(e.to_string()),
            }
        }
        1 => {
            let Ok(m) = pb::UpdateTargets::decode(bytes) else { return };
            match update_from_wire(&m) {
                Ok(args) => assert_eq!(update_from_wire(&update_to_wire(&args)), Ok(args)),
                Err(e) => drop(e.to_string()),
            }
        }
        2 => {
            let Ok(m) = pb::Release::decode(bytes) else { return };
            match release_from_wire(&m) {
                Ok(uid) => assert_eq!(release_from_wire(&release_to_wire(uid)), Ok(uid)),
                Err(e) => drop(e.to_string()),
            }
        }
        3 => {
            let Ok(m) = pb::Hello::decode(bytes) else { return };
            match hello_from_wire(&m) {
                Ok(args) => assert_eq!(hello_from_wire(&hello_to_wire(&args)), Ok(args)),
                Err(e) => drop(e.to_string()),
            }
        }
        4 => {
            let Ok(m) = pb::ReqListeners::decode(bytes) else { return };
            match req_listeners_from_wire(&m) {
                Ok(uid) => assert_eq!(req_listeners_from_wire(&req_listeners_to_wire(uid)), Ok(uid)),
                Err(e) => drop(e.to_string()),
            }
        }
        5 => {
            let Ok(m) = pb::StatusRequest::decode(bytes) else { return };
            if let Err(e) = uid_from_wire(&m.uid) {
                drop(e.to_string());
            }
        }
        _ => {
            // Any bytes HTTP/2 lets through as a header value.
            let Ok(value) = MetadataValue::try_from(bytes) else { return };
            let mut md = MetadataMap::new();
            md.insert(AUTHORIZATION, value);
            if let Some(token) = token_from_metadata(&md) {
                assert!(!token.is_empty() && token == token.trim(), "a token is trimmed and never empty");
            }
        }
    }
});
