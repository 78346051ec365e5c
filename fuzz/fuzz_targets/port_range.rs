//! A port range (`--port-range`, `port-range` in a daemon's config file): `parse_range`. A
//! range that parses is within `1..=65535`, non-empty, and reads back from `FIRST-LAST`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_bins::gateway::parse_range;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = parse_range(text) {
        assert!(*r.start() >= 1 && r.start() <= r.end(), "{r:?}");
        assert_eq!(parse_range(&format!("{}-{}", r.start(), r.end())), Ok(r));
    }
});
