//! The facility's policy at the control server's core: targets and peers refused before the
//! session sees the call (nothing is dialled), quotas refused before anything is reserved,
//! operators above quotas, and a reloaded policy holding new calls only.

use super::*;
use crate::policy::{Policy, Quota, QuotaRule, Quotas, Rule};
use crate::types::{Guard, Limit};

fn rules(text: &[&str]) -> Option<Vec<Rule>> {
    Some(text.iter().map(|t| t.parse().expect("a rule")).collect())
}

fn with_policy(policy: Policy) -> ControlServer {
    serving_with(Config { policy, ..s2cs_config(Role::Prod) })
}

/// Only 192.0.2.16/28 on 7000-7099 as targets; only 203.0.113.0/24 as peers.
fn fenced() -> Policy {
    Policy {
        targets: rules(&["192.0.2.16/28:7000-7099"]),
        peers: rules(&["203.0.113.0/24:5100-5200"]),
        own: vec!["192.0.2.1:5000".parse().unwrap()],
        ..Policy::default()
    }
}

fn hello_to(n: u128, seq: u32, targets: Vec<Addr>) -> Input {
    Input::Msg { from: APP, caller: None, msg: Msg::Hello { uid: uid(n), seq, key: key(1), prod_listeners: targets } }
}

fn denied(cs: &mut ControlServer, input: Input, to: Peer, n: u128, seq: u32, why: crate::Why) {
    let (err, out) = reject(cs, at(30), input);
    assert_eq!(err, ProtocolError::Refused { uid: uid(n), code: ErrorCode::PermissionDenied });
    assert_eq!(sent(&out), vec![(to, error_why(n, seq, ErrorCode::PermissionDenied, why))]);
}

#[test]
fn a_hello_naming_a_target_outside_allow_targets_is_refused_naming_the_rule_and_nothing_is_dialled() {
    let mut cs = with_policy(fenced());
    listening(&mut cs, 1);
    let ssh = addr("192.0.2.40", 22);
    let why = crate::Why::Policy { guard: Guard::AllowTargets, ip: "192.0.2.40".parse().unwrap(), port: 22 };
    denied(&mut cs, hello_to(1, 1, vec![addr("192.0.2.17", 7000), ssh]), APP, 1, 1, why);
    assert!(cs.session(&uid(1)).expect("held").prod_listeners.is_empty(), "the session never saw it");
    // Within the list it goes on.
    accept(&mut cs, at(31), hello_to(1, 2, vec![addr("192.0.2.17", 7000)]));
}

#[test]
fn the_control_servers_own_port_is_never_a_target_even_without_lists() {
    let mut cs = with_policy(Policy { own: vec!["192.0.2.1:5000".parse().unwrap()], ..Policy::default() });
    listening(&mut cs, 1);
    let why = crate::Why::Policy { guard: Guard::OwnPorts, ip: "127.0.0.1".parse().unwrap(), port: 5000 };
    denied(&mut cs, hello_to(1, 1, vec![addr("127.0.0.1", 5000)]), APP, 1, 1, why);
}

#[test]
fn an_update_of_a_producers_session_is_held_to_allow_targets_and_a_consumers_to_allow_peers() {
    let mut cs = with_policy(fenced());
    listening(&mut cs, 1);
    accept(&mut cs, at(25), hello_to(1, 1, vec![addr("192.0.2.17", 7000)]));
    let why = crate::Why::Policy { guard: Guard::AllowTargets, ip: "198.51.100.3".parse().unwrap(), port: 7000 };
    denied(&mut cs, update_as(alice(), 1, 3, vec![addr("198.51.100.3", 7000)], 9), UC, 1, 3, why);
    assert!(cs.session(&uid(1)).expect("held").bridge.is_none(), "no StartConn: nothing dialled");
    accept(&mut cs, at(31), update_as(alice(), 1, 4, vec![addr("192.0.2.17", 7000)], 9));

    let mut cons = with_policy(fenced());
    accept(&mut cons, at(10), req_as(alice(), 2, 1, params(Role::Cons, 1), key(1)));
    accept(&mut cons, at(20), lstn(2, vec![5000]));
    let why = crate::Why::Policy { guard: Guard::AllowPeers, ip: "198.51.100.9".parse().unwrap(), port: 5100 };
    denied(&mut cons, update_as(alice(), 2, 2, vec![addr("198.51.100.9", 5100)], 9), UC, 2, 2, why);
    accept(&mut cons, at(31), update_as(alice(), 2, 3, vec![addr("203.0.113.7", 5100)], 9));
}

#[test]
fn a_name_the_driver_did_not_resolve_is_refused_where_a_list_applies() {
    let mut cs = with_policy(fenced());
    listening(&mut cs, 1);
    let (err, _) = reject(&mut cs, at(30), hello_to(1, 1, vec![addr("instrument.example.org", 7000)]));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::PermissionDenied });
}

#[test]
fn a_quota_refuses_the_session_beyond_its_max_and_operators_keep_their_override() {
    let quota = Quota { max_sessions: Some(2), max_num_conn: Some(2), ..Quota::default() };
    let quotas = Quotas {
        rules: vec![QuotaRule { identities: vec![Principal("alice".into())], quota }],
        default: Quota { may_request: false, ..Quota::default() },
    };
    let mut cs = serving_with(Config {
        policy: Policy { quotas, ..Policy::default() },
        operators: vec![Principal("root".into())],
        ..s2cs_config(Role::Prod)
    });
    accept(&mut cs, at(10), req(1, 1));
    accept(&mut cs, at(11), req(2, 1));
    let (err, out) = reject(&mut cs, at(12), req(3, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(3), code: ErrorCode::ResourceExhausted });
    let why = crate::Why::Quota { limit: Limit::Sessions, max: 2 };
    assert_eq!(sent(&out), vec![(UC, error_why(3, 1, ErrorCode::ResourceExhausted, why))]);
    assert!(cs.session(&uid(3)).is_none(), "a refused REQ holds nothing");
    // A retransmission of an admitted REQ is no new session.
    accept(&mut cs, at(13), req(2, 2));
    let (err, _) = reject(&mut cs, at(14), req_as(alice(), 4, 1, params(Role::Prod, 3), key(1)));
    assert_eq!(err, ProtocolError::Refused { uid: uid(4), code: ErrorCode::ResourceExhausted });
    // Nobody else may request at all; an operator may, beyond any quota.
    let (err, out) = reject(&mut cs, at(15), req_as(who("mallory"), 5, 1, params(Role::Prod, 1), key(1)));
    assert_eq!(err, ProtocolError::Refused { uid: uid(5), code: ErrorCode::PermissionDenied });
    let why = crate::Why::Quota { limit: Limit::MayRequest, max: 0 };
    assert_eq!(sent(&out), vec![(UC, error_why(5, 1, ErrorCode::PermissionDenied, why))]);
    accept(&mut cs, at(16), req_as(who("root"), 6, 1, params(Role::Prod, 3), key(1)));
    // A released session frees its place.
    accept(&mut cs, at(17), rel_as(alice(), 1, 2));
    accept(&mut cs, at(18), from_ds(Msg::DsReleased { uid: uid(1), inc: INC }));
    accept(&mut cs, at(19), req(7, 1));
}

#[test]
fn a_reloaded_policy_holds_new_calls_and_keeps_what_was_admitted() {
    let mut cs = serving();
    established(&mut cs, 1);
    listening(&mut cs, 2);
    let policy = Box::new(Policy { targets: rules(&["192.0.2.0/24"]), ..Policy::default() });
    accept(&mut cs, at(50), Input::Reconfigure { capacity: None, default_rate: 0, operators: Vec::new(), policy });
    assert_eq!(state(&cs, 1), S::Established, "an established session is kept");
    // Session 2's Hello comes after the reload: held to it.
    let (err, _) = reject(&mut cs, at(51), hello(2, 1, key(1)));
    assert_eq!(err, ProtocolError::Refused { uid: uid(2), code: ErrorCode::PermissionDenied });
    accept(&mut cs, at(52), hello_to(2, 2, vec![addr("192.0.2.5", 7000)]));
}
