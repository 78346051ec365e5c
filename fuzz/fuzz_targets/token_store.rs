//! The files `s2uc` keeps beside its tokens, read as `s2uc` reads them: `tokens.json` by
//! `store::parse_file`, each entry then judged as before every use (seconds left, shown
//! redacted); `pending-login.json` by `PendingLogin::parse`. The first byte picks: 0 and 1 the
//! rest as the text of either file; 2 and 3 structure-aware, a well-formed file of either kind
//! whose numbers (expiry, times) are any `i64`.
#![no_main]

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use scistream_identity::login::PendingLogin;
use scistream_identity::store::parse_file;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let text = match which % 4 {
        0 | 1 => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
        2 => match tokens_file(&mut Unstructured::new(bytes)) {
            Ok(text) => text,
            Err(_) => return,
        },
        _ => match pending_file(&mut Unstructured::new(bytes)) {
            Ok(text) => text,
            Err(_) => return,
        },
    };
    if which % 2 == 0 {
        match parse_file(&text) {
            Ok(tokens) => {
                for t in tokens {
                    let _ = t.remaining(scistream_fuzz::NOW);
                    let _ = format!("{t:?}");
                }
            }
            Err(e) => drop(e.to_string()),
        }
    } else {
        match PendingLogin::parse(&text, Duration::from_secs(900)) {
            Ok(p) => drop(format!("{p:?}")),
            Err(e) => drop(e.to_string()),
        }
    }
});

fn tokens_file(u: &mut Unstructured<'_>) -> Result<String> {
    let mut tokens = serde_json::Map::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let scope: String = u.arbitrary()?;
        let entry = json!({
            "scope": scope,
            "access_token": u.arbitrary::<String>()?,
            "refresh_token": u.arbitrary::<Option<String>>()?,
            "expires_at": u.arbitrary::<Option<i64>>()?,
            "identity": u.arbitrary::<Option<String>>()?,
            "obtained_at": u.arbitrary::<i64>()?,
        });
        tokens.insert(scope, entry);
    }
    Ok(json!({ "tokens": tokens }).to_string())
}

fn pending_file(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(json!({
        "url": "https://auth.globus.org/v2/oauth2/authorize?state=st",
        "scope": u.arbitrary::<String>()?,
        "redirect": "http://127.0.0.1:43210/callback",
        "verifier": u.arbitrary::<String>()?,
        "state": u.arbitrary::<String>()?,
        "started_at": u.arbitrary::<i64>()?,
    })
    .to_string())
}
