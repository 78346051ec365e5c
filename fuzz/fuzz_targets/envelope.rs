//! An `Envelope` off a wire (the simulator's links, the S2CS↔S2DS link): `envelope::decode`
//! under the default limits and under the widest ones. A message that decodes encodes back to
//! bytes that decode to the same message (the crate's contract).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_proto::Limits;
use scistream_proto::envelope::{decode, decode_with, encode};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(msg) => assert_eq!(decode(&encode(&msg)), Ok(msg)),
        Err(e) => drop(e.to_string()),
    }
    let wide = Limits { max_num_conn: u16::MAX };
    if let Ok(msg) = decode_with(data, &wide) {
        assert_eq!(decode_with(&encode(&msg), &wide), Ok(msg));
    }
});
