//! A token endpoint's answer (JSON, to a code exchange or a refresh): parsed into the
//! `TokenAnswer` `oauth2` parses it into (serde_json), then turned into the stored entry by
//! `login::stored`, fresh and as the refresh of an earlier entry. The first byte picks: 0 the
//! rest is an id_token read for display by `login::id_token_name`; 1 structure-aware, a
//! well-formed answer whose `expires_in` is any `u64` and whose scope may or may not be the
//! one asked for; anything else, the rest is the answer's text.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use scistream_identity::login::{TokenAnswer, id_token_name, stored};
use scistream_identity::store::StoredToken;
use serde_json::json;

const SCOPE: &str = "https://auth.globus.org/scopes/facility/scistream";

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let answer = match which {
        0 => {
            if let Ok(jwt) = std::str::from_utf8(bytes) {
                let _ = id_token_name(jwt);
            }
            return;
        }
        1 => match structured(&mut Unstructured::new(bytes)) {
            Ok(v) => serde_json::from_value::<TokenAnswer>(v),
            Err(_) => return,
        },
        _ => serde_json::from_slice::<TokenAnswer>(bytes),
    };
    let Ok(answer) = answer else { return };
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

fn structured(u: &mut Unstructured<'_>) -> Result<serde_json::Value> {
    let scope = *u.choose(&[SCOPE, "openid email", "", "openid https://auth.globus.org/scopes/facility/scistream"])?;
    Ok(json!({
        "access_token": u.arbitrary::<String>()?,
        "token_type": *u.choose(&["Bearer", "bearer", "mac"])?,
        "expires_in": u.arbitrary::<Option<u64>>()?,
        "refresh_token": u.arbitrary::<Option<String>>()?,
        "scope": scope,
        "id_token": u.arbitrary::<Option<String>>()?,
    }))
}
