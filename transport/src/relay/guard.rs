//! The facility's destination policy, checked again when the relay dials: the control
//! server's core refused every address outside the policy before anything was dialled; this
//! is the second lock, at the last moment, on the address actually dialled (a name resolved
//! now is checked as what it resolves to now). One policy per process ([`set_policy`]): the
//! facility's, set at start and on every reload.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use scistream_fsm::Addr;
use scistream_fsm::policy::{Dialled, Policy};
use tokio::net::TcpStream;

use super::Legs;

static POLICY: RwLock<Option<Arc<Policy>>> = RwLock::new(None);

/// Holds every dial of this process's relays to `policy` from now on (`None`: no check).
pub fn set_policy(policy: Option<Policy>) {
    *POLICY.write().unwrap_or_else(|e| e.into_inner()) = policy.map(Arc::new);
}

fn policy() -> Option<Arc<Policy>> {
    POLICY.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether the policy lets `legs`' dialling side reach `to`: a consumer's gateway dials a
/// peer (`allow-peers`), a producer's its producer (`allow-targets`); with plain legs the
/// relay cannot tell which it is, and either list may admit it.
fn admits(policy: &Policy, legs: &Legs, to: SocketAddr) -> Result<(), scistream_fsm::Why> {
    match legs {
        Legs::DialTls(_) => policy.admit_ip(Dialled::Peer, to),
        Legs::AcceptTls(_) => policy.admit_ip(Dialled::Target, to),
        Legs::Plain => policy.admit_ip(Dialled::Target, to).or_else(|_| policy.admit_ip(Dialled::Peer, to)),
    }
}

/// The addresses `target` resolves to now that `check` admits, in the resolver's order:
/// never empty (PermissionDenied naming why when `check` refused them all, NotFound when the
/// name resolved to none).
async fn admitted(
    target: &Addr,
    check: impl Fn(SocketAddr) -> Result<(), scistream_fsm::Why>,
) -> io::Result<Vec<SocketAddr>> {
    let (mut ok, mut refused) = (Vec::new(), None);
    for to in tokio::net::lookup_host((target.host.as_str(), target.port)).await? {
        match check(to) {
            Ok(()) => ok.push(to),
            Err(why) => refused = Some(why),
        }
    }
    if ok.is_empty() {
        return Err(match refused {
            Some(why) => io::Error::new(io::ErrorKind::PermissionDenied, format!("refused by policy: {why}")),
            None => io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address"),
        });
    }
    Ok(ok)
}

/// Where a proxy backend, which dials on its own, is to dial `target` for a session of `role`:
/// the first address it resolves to now that the policy admits (any, without a policy), so the
/// proxy is given an address, never a name it would resolve again. PermissionDenied when the
/// policy admits none.
pub async fn resolve_admitted(target: &Addr, role: scistream_fsm::Role) -> io::Result<SocketAddr> {
    resolve_admitted_under(policy().as_deref(), target, role).await
}

async fn resolve_admitted_under(
    policy: Option<&Policy>,
    target: &Addr,
    role: scistream_fsm::Role,
) -> io::Result<SocketAddr> {
    let check = |to| policy.map_or(Ok(()), |p| p.admit_ip(Dialled::of(role), to));
    Ok(admitted(target, check).await?[0])
}

/// Connects to `target`: to the first address it resolves to that the policy admits.
/// PermissionDenied when it admits none (nothing is dialled).
pub(super) async fn connect(target: &Addr, legs: &Legs) -> io::Result<TcpStream> {
    connect_under(policy().as_deref(), target, legs).await
}

async fn connect_under(policy: Option<&Policy>, target: &Addr, legs: &Legs) -> io::Result<TcpStream> {
    let Some(policy) = policy else { return TcpStream::connect((target.host.as_str(), target.port)).await };
    let mut last = None;
    for to in admitted(target, |to| admits(policy, legs, to)).await? {
        match TcpStream::connect(to).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address to dial")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialling_side_of_each_kind_of_legs_is_held_to_its_list() {
        let policy = Policy {
            targets: Some(vec!["192.0.2.0/24".parse().unwrap()]),
            peers: Some(vec!["203.0.113.0/24".parse().unwrap()]),
            ..Policy::default()
        };
        let target: SocketAddr = "192.0.2.5:7000".parse().unwrap();
        let peer: SocketAddr = "203.0.113.5:5100".parse().unwrap();
        let other: SocketAddr = "198.51.100.5:22".parse().unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ));
        let dial = Legs::DialTls(connector);
        assert!(admits(&policy, &dial, peer).is_ok());
        assert!(admits(&policy, &dial, target).is_err(), "a consumer's gateway dials peers only");
        assert!(admits(&policy, &Legs::Plain, target).is_ok() && admits(&policy, &Legs::Plain, peer).is_ok());
        assert!(admits(&policy, &Legs::Plain, other).is_err());
    }

    #[tokio::test]
    async fn a_dial_outside_the_policy_never_leaves_the_host() {
        // A listener the policy does not admit: the relay must not connect to it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let policy = Policy {
            targets: Some(vec!["192.0.2.0/24".parse().unwrap()]),
            peers: Some(vec!["203.0.113.0/24".parse().unwrap()]),
            ..Policy::default()
        };
        let target = Addr::new("127.0.0.1", port);
        let e = connect_under(Some(&policy), &target, &Legs::Plain).await.expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let accepted = tokio::time::timeout(std::time::Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected");
    }

    #[tokio::test]
    async fn a_proxy_is_given_only_an_address_the_policy_admits() {
        use scistream_fsm::Role;
        let policy = Policy {
            targets: Some(vec!["127.0.0.0/8".parse().unwrap()]),
            peers: Some(vec!["203.0.113.0/24".parse().unwrap()]),
            ..Policy::default()
        };
        let local = Addr::new("localhost", 7000);
        // A producer's target on loopback: admitted, and resolved to an address.
        let to = resolve_admitted_under(Some(&policy), &local, Role::Prod).await.unwrap();
        assert!(to.ip().is_loopback() && to.port() == 7000, "{to}");
        // The same address as a consumer's peer: outside allow-peers, refused naming why.
        let e = resolve_admitted_under(Some(&policy), &local, Role::Cons).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("refused by policy"), "{e}");
        // Without a policy, any address.
        assert!(resolve_admitted_under(None, &Addr::new("198.51.100.7", 22), Role::Cons).await.is_ok());
    }
}
