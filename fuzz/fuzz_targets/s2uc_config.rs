//! `s2uc.toml`: `UserAuth::from_settings_text` (the settings `s2uc` resolves from it: endpoints,
//! redirect, client id), then the scope each kind of control server address gets from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_bins::auth::{AuthOpts, UserAuth};
use scistream_identity::store::TokenStore;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let auth = match UserAuth::from_settings_text(&AuthOpts::default(), text, TokenStore::at("/nonexistent")) {
        Ok(auth) => auth,
        Err(e) => return drop(format!("{e:#}")),
    };
    let _ = auth.chosen_scope();
    for addr in ["10.16.42.61:5000", "gateway.facility-b.org:5000", "[::1]:5000", "::1", "gw", ":", ""] {
        let _ = auth.scope_for(addr);
    }
});
