//! What a local process sends the login's loopback catcher (`s2uc login` waiting on
//! `http://127.0.0.1:PORT/callback`): `login::callback` reads the request head. Only a
//! `/callback` carrying the login's state may end the login.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_identity::login::callback;

const STATE: &str = "st-4f3a";

fuzz_target!(|data: &[u8]| {
    let answer = callback(data, STATE);
    if answer.outcome.is_some() {
        let text = String::from_utf8_lossy(data);
        assert!(text.contains(STATE), "a request without the state ended the login");
    }
});
