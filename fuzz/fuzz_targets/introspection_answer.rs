//! An RFC 7662 introspection answer (JSON from the authorization server, or whatever answers
//! in its place): parsed into `oauth2`'s `BasicTokenIntrospectionResponse` as `oauth2` parses
//! it (serde_json), then judged by `introspect::verdict`. An accepted caller is trusted no
//! longer than the TTL.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use oauth2::basic::BasicTokenIntrospectionResponse;
use scistream_identity::introspect::verdict;

const SCOPE: &str = "https://auth.globus.org/scopes/facility/scistream";

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<BasicTokenIntrospectionResponse>(data) else { return };
    let ttl = Duration::from_secs(60);
    match verdict(&answer, SCOPE, ttl, scistream_fuzz::NOW) {
        Ok((who, life)) => {
            assert!(!who.0.is_empty(), "an accepted caller has a name");
            assert!(life <= ttl, "trusted for {life:?}, longer than the TTL");
        }
        Err(e) => drop(e.to_string()),
    }
});
