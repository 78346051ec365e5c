//! A token endpoint's answer (JSON, to a code exchange or a refresh): parsed into the
//! `TokenAnswer` `oauth2` parses it into (serde_json), then turned into the stored entry by
//! `login::stored`, fresh and as the refresh of an earlier entry; or (first byte 0) an
//! id_token read for display by `login::id_token_name`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scistream_identity::login::{TokenAnswer, id_token_name, stored};
use scistream_identity::store::StoredToken;

const SCOPE: &str = "https://auth.globus.org/scopes/facility/scistream";

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    if which == 0 {
        if let Ok(jwt) = std::str::from_utf8(bytes) {
            let _ = id_token_name(jwt);
        }
        return;
    }
    let Ok(answer) = serde_json::from_slice::<TokenAnswer>(bytes) else { return };
    let before = StoredToken {
        scope: SCOPE.into(),
        access_token: "old-access".into(),
        refresh_token: Some("old-refresh".into()),
        expires_at: Some(scistream_fuzz::NOW),
        identity: Some("alice".into()),
        obtained_at: scistream_fuzz::NOW - 3600,
    };
    for before in [None, Some(&before)] {
        match stored(SCOPE, &answer, before) {
            Ok(t) => {
                let _ = t.remaining(scistream_fuzz::NOW);
            }
            Err(e) => drop(e.to_string()),
        }
    }
});
