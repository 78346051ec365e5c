//! The files `s2uc` keeps beside its tokens: `tokens.json` (first byte even) read by
//! `store::parse_file` and judged as `s2uc` judges each entry before use (seconds left, shown
//! redacted), or `pending-login.json` read by `PendingLogin::parse`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use scistream_identity::login::PendingLogin;
use scistream_identity::store::parse_file;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if which % 2 == 0 {
        match parse_file(text) {
            Ok(tokens) => {
                for t in tokens {
                    let _ = t.remaining(scistream_fuzz::NOW);
                    let _ = format!("{t:?}");
                }
            }
            Err(e) => drop(e.to_string()),
        }
    } else {
        match PendingLogin::parse(text, Duration::from_secs(900)) {
            Ok(p) => drop(format!("{p:?}")),
            Err(e) => drop(e.to_string()),
        }
    }
});
