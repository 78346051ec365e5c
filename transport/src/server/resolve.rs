//! Names in the addresses a call names are resolved here, once, before the core sees the
//! call: the core checks the facility's policy against the address each name resolved to, and
//! that address — not the name — is what the data server dials, so a name cannot resolve to
//! one address for the check and another for the dial.

use std::net::IpAddr;
use std::time::Duration;

use scistream_fsm::Addr;

/// How long one name may take to resolve; a name not resolved in time stays a name (the core
/// refuses it where an allow-list applies).
const RESOLVE: Duration = Duration::from_secs(5);

/// `addrs` with every host name replaced by the first address it resolves to. A name that
/// does not resolve is left as it is.
pub(super) async fn resolve_all(addrs: Vec<Addr>) -> Vec<Addr> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(resolve(a).await);
    }
    out
}

async fn resolve(a: Addr) -> Addr {
    if a.host.parse::<IpAddr>().is_ok() {
        return a;
    }
    let found = tokio::time::timeout(RESOLVE, tokio::net::lookup_host((a.host.clone(), a.port))).await;
    match found {
        Ok(Ok(mut found)) => match found.next() {
            Some(sock) => Addr::new(sock.ip().to_canonical().to_string(), a.port),
            None => a,
        },
        Ok(Err(e)) => {
            tracing::debug!(host = %a.host, "name did not resolve: {e}");
            a
        }
        Err(_) => {
            tracing::debug!(host = %a.host, "name did not resolve in {RESOLVE:?}");
            a
        }
    }
}
