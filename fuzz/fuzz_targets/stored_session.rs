//! A control server's stored session record (`StoredSession` in its redb store; a damaged or
//! foreign file is outside input): `proto::store::decode`. A record that decodes is stored
//! again as bytes that decode to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_proto::Limits;
use scistream_proto::store::{decode, encode};

fuzz_target!(|data: &[u8]| {
    match decode(data, &Limits::DEFAULT) {
        Ok((record, node)) => assert_eq!(decode(&encode(&record, &node), &Limits::DEFAULT), Ok((record, node))),
        Err(e) => drop(e.to_string()),
    }
});
