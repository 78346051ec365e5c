//! A control server's answer as `s2uc` and `appctrl` receive it: the first byte picks the
//! message (`Response`, `AppResponse`, `SessionStatus`, `SessionList`), the rest is its
//! protobuf, read by the `convert::*_from_wire` the client calls. Whatever reads, writes back
//! and reads again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use scistream_proto::convert::{
    app_response_from_wire, app_response_to_wire, response_from_wire, response_to_wire, session_status_from_wire,
    session_status_to_wire,
};
use scistream_proto::pb;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            let Ok(m) = pb::Response::decode(bytes) else { return };
            match response_from_wire(&m) {
                Ok(l) => assert_eq!(response_from_wire(&response_to_wire(&l.listeners, &l.prod_listeners)), Ok(l)),
                Err(e) => drop(e.to_string()),
            }
        }
        1 => {
            let Ok(m) = pb::AppResponse::decode(bytes) else { return };
            match app_response_from_wire(&m) {
                Ok(l) => assert_eq!(app_response_from_wire(&app_response_to_wire(&m.message, &l)), Ok(l)),
                Err(e) => drop(e.to_string()),
            }
        }
        2 => {
            let Ok(m) = pb::SessionStatus::decode(bytes) else { return };
            status(&m);
        }
        _ => {
            let Ok(m) = pb::SessionList::decode(bytes) else { return };
            m.sessions.iter().for_each(status);
        }
    }
});

fn status(m: &pb::SessionStatus) {
    match session_status_from_wire(m) {
        Ok(s) => assert_eq!(session_status_from_wire(&session_status_to_wire(&s)), Ok(s)),
        Err(e) => drop(e.to_string()),
    }
}
