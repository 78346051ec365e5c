//! A listener list as a user or a script gives it to `appctrl --listeners` (and as `s2uc`
//! prints it): `parse_addrs`. A list that parses is printed by `format_addrs` as text that
//! parses back to the same list (the round trip `s2uc` output → `appctrl` input relies on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_bins::{format_addrs, parse_addrs};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_addrs(text) {
        Ok(addrs) => {
            let printed = format_addrs(&addrs);
            assert_eq!(parse_addrs(&printed), Ok(addrs), "{printed:?} does not read back");
        }
        Err(e) => drop(e),
    }
});
