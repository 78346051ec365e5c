//! Structure-aware: a valid protocol message built from the fuzzer's bytes (every variant,
//! every field within what the wire checks), encoded, must decode to itself, under the limits
//! the builder respected; and the same bytes cut short must decode to a value or an error,
//! never a panic.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use scistream_proto::Limits;
use scistream_proto::envelope::{decode_with, encode};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(max) = u.int_in_range(1..=u16::MAX) else { return };
    let Ok(msg) = scistream_fuzz::msg(&mut u, max) else { return };
    let limits = Limits { max_num_conn: max };
    let bytes = encode(&msg);
    assert_eq!(decode_with(&bytes, &limits), Ok(msg));
    if let Ok(cut) = u.int_in_range(0..=bytes.len()) {
        let _ = decode_with(&bytes[..cut], &limits);
    }
});
