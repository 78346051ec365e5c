//! A control server with several data-server nodes: placement, per-node attachment and loss,
//! recovery onto the right node, and nodes that speak only for their own sessions.

use super::*;
use crate::Pool;

const N0: Peer = Peer::DataServer(Role::Prod, Node(0));
const N1: Peer = Peer::DataServer(Role::Prod, Node(1));

fn two_nodes() -> Config {
    Config { nodes: 2, ..s2cs_config(Role::Prod) }
}

fn ack(attachment: u64, inc: u64, pool: Pool) -> Msg {
    Msg::AttachAck { epoch: EPOCH, attachment, inc, held: vec![], pool }
}

fn from(node: Peer, msg: Msg) -> Input {
    Input::Msg { from: node, caller: None, msg }
}

/// Booted with two nodes, both attached with the pools given.
fn attached(p0: Pool, p1: Pool) -> ControlServer {
    let mut cs = ControlServer::new(two_nodes(), EPOCH);
    let out = accept(&mut cs, at(0), Input::Boot);
    let attach = Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] };
    assert_eq!(sent(&out), vec![(N0, attach.clone()), (N1, attach)], "boot attaches to every node");
    accept(&mut cs, at(1), from(N0, ack(1, INC, p0)));
    accept(&mut cs, at(1), from(N1, ack(1, INC, p1)));
    cs
}

fn req_with(n: u128, num_conn: u16, rate: u32) -> Input {
    req_as(alice(), n, 1, SessionParams { role: Role::Prod, num_conn, rate }, key(1))
}

/// Where session `n`'s StartLstn went.
fn placed(out: &Outbox, n: u128) -> Peer {
    let to: Vec<Peer> = sent(out)
        .into_iter()
        .filter(|(_, m)| matches!(m, Msg::StartLstn { uid: u, .. } if *u == uid(n)))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(to.len(), 1, "one StartLstn for session {n}: {to:?}");
    to[0]
}

const ROOMY: Pool = Pool { ports: 8, capacity: None };

#[test]
fn sessions_go_to_the_least_loaded_node_by_rate_then_by_sessions() {
    let mut cs = attached(ROOMY, ROOMY);
    // Equal: the first node.
    assert_eq!(placed(&accept(&mut cs, at(10), req_with(1, 1, 500)), 1), N0);
    // Node 1 carries less rate.
    assert_eq!(placed(&accept(&mut cs, at(11), req_with(2, 1, 100)), 2), N1);
    // Rate 100 on node 1 vs 500 on node 0: node 1 again.
    assert_eq!(placed(&accept(&mut cs, at(12), req_with(3, 1, 100)), 3), N1);
    // 500 vs 200: node 1 still has less rate.
    assert_eq!(placed(&accept(&mut cs, at(13), req_with(4, 1, 300)), 4), N1);
    // 500 vs 500, one session vs three: node 0.
    assert_eq!(placed(&accept(&mut cs, at(14), req_with(5, 1, 1)), 5), N0);
    assert_eq!(cs.core().load(Node(1)).sessions, 3);
    assert_eq!(cs.core().session(&uid(5)).map(|e| e.node), Some(Node(0)));
    assert_eq!(cs.core().status(&Principal("alice".into()), uid(4)).map(|v| v.node), Ok(Node(1)));
}

#[test]
fn a_node_without_room_for_the_ports_or_the_rate_is_skipped_and_none_left_is_resource_exhausted() {
    let mut cs = attached(Pool { ports: 3, capacity: Some(1000) }, Pool { ports: 4, capacity: None });
    assert_eq!(placed(&accept(&mut cs, at(10), req_with(1, 3, 10)), 1), N0);
    // Node 0 has no port left: node 1, though it carries more rate after this.
    assert_eq!(placed(&accept(&mut cs, at(11), req_with(2, 2, 900)), 2), N1);
    // Only 2 ports left anywhere.
    let (err, out) = reject(&mut cs, at(12), req_with(3, 3, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(3), code: ErrorCode::ResourceExhausted });
    let why = crate::Why::Ports { asked: 3, free: 2 };
    assert_eq!(sent(&out), vec![(UC, error_why(3, 1, ErrorCode::ResourceExhausted, why))]);
    assert!(cs.core().session(&uid(3)).is_none(), "a refused REQ leaves nothing behind");
    // A rate the only node with ports cannot carry... node 1 has no capacity limit: it fits.
    assert_eq!(placed(&accept(&mut cs, at(13), req_with(4, 2, 5000)), 4), N1);
}

#[test]
fn an_unlimited_rate_takes_a_node_s_whole_capacity() {
    let mut cs = attached(Pool { ports: 8, capacity: Some(1000) }, Pool { ports: 8, capacity: Some(1000) });
    assert_eq!(placed(&accept(&mut cs, at(10), req_with(1, 1, 0)), 1), N0);
    assert_eq!(placed(&accept(&mut cs, at(11), req_with(2, 1, 0)), 2), N1);
    let (err, _) = reject(&mut cs, at(12), req_with(3, 1, 1));
    assert_eq!(err, ProtocolError::Refused { uid: uid(3), code: ErrorCode::ResourceExhausted });
}

#[test]
fn a_node_not_attached_is_skipped_and_with_none_attached_a_req_is_unavailable() {
    let mut cs = ControlServer::new(two_nodes(), EPOCH);
    accept(&mut cs, at(0), Input::Boot);
    let (err, _) = reject(&mut cs, at(5), req_with(1, 1, 0));
    assert_eq!(err, ProtocolError::Refused { uid: uid(1), code: ErrorCode::Unavailable });
    accept(&mut cs, at(6), from(N1, ack(1, INC, ROOMY)));
    assert_eq!(cs.state(), State::Serving, "serving once any node is attached");
    assert_eq!(cs.core().nodes()[0].state(), State::Attaching);
    for n in 2..5 {
        assert_eq!(placed(&accept(&mut cs, at(10), req_with(n, 1, 0)), n), N1);
    }
}

#[test]
fn a_node_that_restarts_fails_only_its_own_sessions_and_is_attached_again() {
    let mut cs = attached(ROOMY, ROOMY);
    for n in 1..=4 {
        accept(&mut cs, at(10), req_with(n, 1, 0));
    }
    let on = |cs: &ControlServer, node| {
        (1..=4).filter(|n| cs.core().session(&uid(*n)).is_some_and(|e| e.node == node)).collect::<Vec<_>>()
    };
    let (zero, one) = (on(&cs, Node(0)), on(&cs, Node(1)));
    assert_eq!((zero.len(), one.len()), (2, 2), "spread: {zero:?} {one:?}");
    let out = accept(&mut cs, at(50), from(N1, Msg::DsBoot { inc: INC + 1 }));
    assert_eq!(sent_to(&out, N1), vec![Msg::Attach { epoch: EPOCH, attachment: 1, keep: vec![] }]);
    assert!(sent_to(&out, N0).is_empty(), "node 0 is not disturbed");
    for n in one {
        assert_eq!(state(&cs, n), S::Failed, "session {n} was on the node that restarted");
    }
    for n in zero {
        assert_eq!(state(&cs, n), S::Reserving, "session {n} is on the other node");
    }
    // Node 1 serves again once it acknowledges.
    accept(&mut cs, at(60), from(N1, ack(1, INC + 1, ROOMY)));
    assert_eq!(cs.core().nodes()[1].state(), State::Serving);
}

#[test]
fn a_node_that_stops_answering_is_taken_for_lost_alone() {
    let mut cs = attached(ROOMY, ROOMY);
    accept(&mut cs, at(10), req_with(1, 1, 0));
    accept(&mut cs, at(10), req_with(2, 1, 0));
    assert_eq!(cs.core().session(&uid(2)).map(|e| e.node), Some(Node(1)));
    let beat = |n| timer(None, TimerKind::Heartbeat(Node(n)));
    let silence = s2cs_config(Role::Prod).timing.link_silence;
    // Node 0 answers every heartbeat; node 1 never does.
    let mut now = at(10);
    let mut lost = false;
    for _ in 0..100 {
        now = now + std::time::Duration::from_secs(5);
        let out = accept(&mut cs, now, Input::Timer(beat(0)));
        if !sent_to(&out, N0).is_empty() {
            accept(&mut cs, now, from(N0, ack(1, INC, ROOMY)));
        }
        let out = accept(&mut cs, now, Input::Timer(beat(1)));
        if sent_to(&out, N1).contains(&Msg::Attach { epoch: EPOCH, attachment: 2, keep: vec![] }) {
            lost = true;
            break;
        }
    }
    assert!(lost, "node 1 taken for lost within {silence:?} and then some");
    assert_eq!(state(&cs, 2), S::Failed);
    assert_ne!(state(&cs, 1), S::Failed, "node 0's session is untouched");
    assert_eq!(cs.core().nodes()[0].state(), State::Serving);
    assert_eq!(cs.core().nodes()[1].state(), State::Attaching);
}

#[test]
fn a_node_speaks_only_for_its_own_sessions() {
    let mut cs = attached(ROOMY, ROOMY);
    accept(&mut cs, at(10), req_with(1, 1, 0));
    assert_eq!(cs.core().session(&uid(1)).map(|e| e.node), Some(Node(0)));
    let before = cs.clone();
    let lstn = Msg::Lstn { uid: uid(1), inc: INC, host: "gw.prod".into(), ports: vec![5000] };
    let (err, out) = reject(&mut cs, at(20), from(N1, lstn));
    assert_eq!(err, ProtocolError::UnknownSession(uid(1)));
    // Node 1 reserved ports for a session that is not its: it gives them back; node 0's
    // session is not touched.
    assert_eq!(sent(&out), vec![(N1, Msg::DsRel { uid: uid(1), epoch: EPOCH })]);
    assert_eq!(cs.session(&uid(1)), before.session(&uid(1)));
    // A node the configuration does not have is refused outright.
    let stranger = Peer::DataServer(Role::Prod, Node(2));
    let (err, out) = reject(&mut cs, at(21), from(stranger, Msg::DsBoot { inc: 9 }));
    assert_eq!(err, ProtocolError::Misdirected("DsBoot"));
    assert!(out.is_empty());
}

#[test]
fn recovered_sessions_go_back_to_their_nodes_and_one_whose_node_is_gone_fails() {
    let mut on_one = data::stored(1);
    on_one.node = Node(1);
    let mut gone = data::stored(2);
    gone.node = Node(7);
    let kept = data::stored(3);
    let mut cs = ControlServer::recover(two_nodes(), EPOCH + 1, vec![on_one, gone, kept]);
    let out = accept(&mut cs, at(0), Input::Boot);
    assert_eq!(sent_to(&out, N0), vec![Msg::Attach { epoch: EPOCH + 1, attachment: 1, keep: vec![uid(3)] }]);
    assert_eq!(sent_to(&out, N1), vec![Msg::Attach { epoch: EPOCH + 1, attachment: 1, keep: vec![uid(1)] }]);
    assert_eq!(state(&cs, 2), S::Failed, "its node is not configured any more");
    let held = |u| Msg::AttachAck { epoch: EPOCH + 1, attachment: 1, inc: INC, held: vec![uid(u)], pool: ROOMY };
    accept(&mut cs, at(1), from(N1, held(1)));
    accept(&mut cs, at(1), from(N0, held(3)));
    assert_eq!((state(&cs, 1), state(&cs, 3)), (S::Established, S::Established));
}
