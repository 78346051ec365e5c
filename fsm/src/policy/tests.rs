use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::types::{Guard, Limit, Principal, SessionParams};

fn rules(text: &[&str]) -> Vec<Rule> {
    text.iter().map(|t| t.parse().expect("a rule")).collect()
}

fn at(host: &str, port: u16) -> Addr {
    Addr::new(host, port)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

#[test]
fn rules_parse_networks_of_both_families_with_and_without_ports() {
    let r: Rule = "192.0.2.0/24:5000-5100".parse().unwrap();
    assert!(r.admits(ip("192.0.2.77"), 5000) && r.admits(ip("192.0.2.77"), 5100));
    assert!(!r.admits(ip("192.0.2.77"), 4999) && !r.admits(ip("198.51.100.1"), 5000));
    let host: Rule = "192.0.2.7".parse().unwrap();
    assert!(host.admits(ip("192.0.2.7"), 22) && !host.admits(ip("192.0.2.8"), 22));
    let v6: Rule = "[2001:db8::/32]:7000".parse().unwrap();
    assert!(v6.admits(ip("2001:db8:1::9"), 7000) && !v6.admits(ip("2001:db9::9"), 7000));
    assert!(!v6.admits(ip("2001:db8::9"), 7001));
    let bare6: Rule = "2001:db8::/48".parse().unwrap();
    assert!(bare6.admits(ip("2001:db8::1"), 1));
    let any: Rule = "0.0.0.0/0:*".parse().unwrap();
    assert!(any.admits(ip("203.0.113.9"), 65535) && !any.admits(ip("2001:db8::1"), 1), "a family's own networks only");
    // Host bits are cleared; the rule reads back in its canonical form.
    assert_eq!("192.0.2.9/24:80".parse::<Rule>().unwrap().to_string(), "192.0.2.0/24:80");
    assert_eq!(v6.to_string(), "[2001:db8::/32]:7000");
}

#[test]
fn ipv4_mapped_addresses_are_matched_as_the_ipv4_addresses_they_are() {
    let r: Rule = "192.0.2.0/24".parse().unwrap();
    assert!(r.admits(ip("::ffff:192.0.2.5"), 1));
    let mapped: Rule = "[::ffff:192.0.2.0/120]:5".parse().unwrap();
    assert!(mapped.admits(ip("192.0.2.5"), 5));
}

#[test]
fn malformed_rules_are_refused_saying_which_part() {
    for (text, part) in [
        ("192.0.2.0/33", "prefix"),
        ("192.0.2.0/24:0", "ports"),
        ("192.0.2.0/24:90-80", "ports"),
        ("192.0.2.0/24:http", "ports"),
        ("gateway.example.org", "net"),
        ("[2001:db8::/32", "net"),
        ("[2001:db8::/129]", "prefix"),
    ] {
        let e = text.parse::<Rule>().expect_err(text);
        let got = match e {
            RuleError::Net(_) => "net",
            RuleError::Prefix(_) => "prefix",
            RuleError::Ports(_) => "ports",
        };
        assert_eq!(got, part, "{text}: {e}");
    }
}

#[test]
fn without_lists_every_address_is_admitted_but_the_control_servers_own_ports() {
    let p = Policy { own: vec!["192.0.2.1:5000".parse().unwrap()], ..Policy::default() };
    assert_eq!(p.admit(Dialled::Target, &at("198.51.100.4", 22)), Ok(()));
    assert_eq!(
        p.admit(Dialled::Peer, &at("gateway.example.org", 5100)),
        Ok(()),
        "a name, with no list, is not checked"
    );
    for host in ["192.0.2.1", "127.0.0.1", "::1", "0.0.0.0", "::ffff:192.0.2.1"] {
        let e = p.admit(Dialled::Target, &at(host, 5000)).expect_err(host);
        assert!(matches!(e, Why::Policy { guard: Guard::OwnPorts, port: 5000, .. }), "{host}: {e:?}");
    }
    assert_eq!(p.admit(Dialled::Target, &at("192.0.2.2", 5000)), Ok(()), "another host's port 5000");
    let all = Policy { own: vec!["0.0.0.0:5000".parse().unwrap()], ..Policy::default() };
    assert!(all.admit(Dialled::Target, &at("192.0.2.2", 5000)).is_err(), "listening everywhere, it is everywhere");
}

#[test]
fn with_lists_only_what_a_rule_admits_passes_and_the_refusal_names_the_list() {
    let p = Policy {
        targets: Some(rules(&["192.0.2.16/28:7000-7099", "[2001:db8:a::/48]:7000"])),
        peers: Some(rules(&["203.0.113.0/24:5100-5200"])),
        ..Policy::default()
    };
    assert_eq!(p.admit(Dialled::Target, &at("192.0.2.17", 7000)), Ok(()));
    assert_eq!(p.admit(Dialled::Target, &at("2001:db8:a::5", 7000)), Ok(()));
    let e = p.admit(Dialled::Target, &at("192.0.2.40", 22)).unwrap_err();
    assert_eq!(e, Why::Policy { guard: Guard::AllowTargets, ip: ip("192.0.2.40"), port: 22 });
    assert!(e.to_string().contains("allow-targets") && e.to_string().contains("192.0.2.40:22"), "{e}");
    // The lists are apart: a producer's target is not a peer, nor the reverse.
    let e = p.admit(Dialled::Peer, &at("192.0.2.17", 7000)).unwrap_err();
    assert!(matches!(e, Why::Policy { guard: Guard::AllowPeers, .. }), "{e:?}");
    assert!(p.admit(Dialled::Target, &at("203.0.113.5", 5100)).is_err());
    assert_eq!(p.admit(Dialled::Peer, &at("203.0.113.5", 5100)), Ok(()));
    // A name the driver could not resolve cannot be checked: refused where a list applies.
    let e = p.admit(Dialled::Target, &at("db.example.org", 7000)).unwrap_err();
    assert!(matches!(e, Why::Policy { guard: Guard::Unresolved, port: 7000, .. }), "{e:?}");
    // Every address of a call must pass: the first refused is named.
    let e = p.admit_all(Dialled::Target, &[at("192.0.2.17", 7000), at("192.0.2.18", 8000)]).unwrap_err();
    assert!(matches!(e, Why::Policy { port: 8000, .. }), "{e:?}");
}

#[test]
fn the_relays_check_at_dial_time_is_the_same_decision() {
    let p = Policy { targets: Some(rules(&["192.0.2.0/24"])), ..Policy::default() };
    let to = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(p.admit_ip(Dialled::Target, to("192.0.2.9:7000")), Ok(()));
    assert!(p.admit_ip(Dialled::Target, to("198.51.100.9:7000")).is_err());
    assert_eq!(p.admit_ip(Dialled::Peer, to("198.51.100.9:7000")), Ok(()), "no allow-peers: any peer");
}

#[test]
fn a_quota_refuses_naming_the_first_limit_broken() {
    let q = Quota {
        roles: Roles { prod: true, cons: false },
        max_sessions: Some(2),
        max_num_conn: Some(4),
        max_rate: Some(1000),
        ..Quota::default()
    };
    let p = |role, num_conn, rate| SessionParams { role, num_conn, rate };
    assert_eq!(q.check(p(Role::Prod, 4, 1000), || 1), Ok(()));
    assert_eq!(q.check(p(Role::Cons, 1, 10), || 0), Err(Why::Quota { limit: Limit::Role(Role::Cons), max: 0 }));
    assert_eq!(q.check(p(Role::Prod, 5, 10), || 0), Err(Why::Quota { limit: Limit::NumConn, max: 4 }));
    assert_eq!(q.check(p(Role::Prod, 1, 1001), || 0), Err(Why::Quota { limit: Limit::Rate, max: 1000 }));
    assert_eq!(
        q.check(p(Role::Prod, 1, 0), || 0),
        Err(Why::Quota { limit: Limit::Rate, max: 1000 }),
        "unlimited is more"
    );
    assert_eq!(q.check(p(Role::Prod, 1, 10), || 2), Err(Why::Quota { limit: Limit::Sessions, max: 2 }));
    let none = Quota { may_request: false, ..Quota::default() };
    assert_eq!(none.check(p(Role::Prod, 1, 10), || 0), Err(Why::Quota { limit: Limit::MayRequest, max: 0 }));
    assert_eq!(Quota::default().check(p(Role::Cons, 64, 0), || 1000), Ok(()), "the default quota is unlimited");
    let unbounded =
        Quota::default().check(p(Role::Cons, 1, 0), || panic!("sessions counted where no quota bounds them"));
    assert_eq!(unbounded, Ok(()));
    let refused_first = q.check(p(Role::Prod, 5, 10), || panic!("sessions counted for a REQ refused already"));
    assert_eq!(refused_first, Err(Why::Quota { limit: Limit::NumConn, max: 4 }));
}

#[test]
fn the_first_quota_rule_naming_an_identity_applies_else_the_default() {
    let strict = Quota { max_sessions: Some(1), ..Quota::default() };
    let loose = Quota { max_sessions: Some(5), ..Quota::default() };
    let quotas = Quotas {
        rules: vec![
            QuotaRule { identities: vec![Principal("alice".into())], quota: strict },
            QuotaRule { identities: vec![Principal("alice".into()), Principal("bob".into())], quota: loose },
        ],
        default: Quota { may_request: false, ..Quota::default() },
    };
    assert_eq!(quotas.of(&Principal("alice".into())), &strict);
    assert_eq!(quotas.of(&Principal("bob".into())), &loose);
    assert!(!quotas.of(&Principal("mallory".into())).may_request);
}
