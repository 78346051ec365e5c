//! An RFC 7662 introspection answer (JSON from the authorization server, or whatever answers
//! in its place): parsed into `oauth2`'s `BasicTokenIntrospectionResponse` as `oauth2` parses
//! it (serde_json), then judged by `introspect::verdict`. An accepted caller is named and
//! trusted no longer than the TTL. A first byte 0 makes it structure-aware: a well-formed
//! answer whose times (`exp`, `nbf`, `iat`) are any `i64`, active or not, with or without the
//! facility's scope and a subject.
#![no_main]

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use oauth2::basic::BasicTokenIntrospectionResponse;
use scistream_identity::introspect::verdict;
use serde_json::json;

const SCOPE: &str = "https://auth.globus.org/scopes/facility/scistream";

fuzz_target!(|data: &[u8]| {
    let answer = match data.split_first() {
        Some((0, bytes)) => match structured(&mut Unstructured::new(bytes)) {
            Ok(v) => serde_json::from_value::<BasicTokenIntrospectionResponse>(v),
            Err(_) => return,
        },
        _ => serde_json::from_slice::<BasicTokenIntrospectionResponse>(data),
    };
    let Ok(answer) = answer else { return };
    let ttl = Duration::from_secs(60);
    match verdict(&answer, SCOPE, ttl, scistream_fuzz::NOW) {
        Ok((who, life)) => {
            assert!(!who.0.is_empty(), "an accepted caller has a name");
            assert!(life <= ttl, "trusted for {life:?}, longer than the TTL");
        }
        Err(e) => drop(e.to_string()),
    }
});

fn structured(u: &mut Unstructured<'_>) -> Result<serde_json::Value> {
    let scope = *u.choose(&[SCOPE, "openid", "", "openid email https://auth.globus.org/scopes/facility/scistream"])?;
    let mut v = json!({ "active": u.arbitrary::<bool>()?, "scope": scope });
    for name in ["sub", "username"] {
        if let Some(s) = u.arbitrary::<Option<String>>()? {
            v[name] = json!(s);
        }
    }
    for name in ["exp", "nbf", "iat"] {
        if let Some(t) = u.arbitrary::<Option<i64>>()? {
            v[name] = json!(t);
        }
    }
    Ok(v)
}
