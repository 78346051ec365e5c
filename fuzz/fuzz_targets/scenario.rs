//! A simulator scenario file (`sim run --scenario FILE.toml`): `Scenario::parse` (TOML and
//! its validation), then the timing profile it makes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_sim::scenario::Scenario;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Scenario::parse("fuzz", text) {
        Ok(s) => {
            let _ = s.timing.profile();
        }
        Err(e) => drop(e.to_string()),
    }
});
