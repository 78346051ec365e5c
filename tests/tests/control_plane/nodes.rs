//! Data servers on their own gateway nodes: each facility's `s2cs --s2ds` drives an `s2ds`
//! daemon over mutual TLS, and the stream crosses the nodes' listeners.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use scistream_tests::{Node, Request, Scratch, Server, ServerOpts, args, echo_producer, free_range, trust};
use serde_json::Value;

use scistream_fsm::{ErrorCode, Role};

use crate::testkit::{client, eventually, fresh_uid, key, refusal, runtime, shared};

/// Whether something listens at `addr`.
fn bound(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("ip:port");
    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok()
}

fn status(server: &Server, uid: &str) -> Value {
    let mut a = trust(&[server]);
    a.extend(args(&["--json", "status", uid, "--s2cs", &server.addr]));
    let out = scistream_tests::run("s2uc", &a, Duration::from_secs(20)).expect("s2uc status");
    assert!(out.status.success(), "s2uc status: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).lines().next().expect("a status line").to_owned();
    serde_json::from_str(&line).expect("json")
}

/// Sets up a session through `prod` and `cons` to an echo producer; returns the request's
/// `established` line.
fn establish(prod: &Server, cons: &Server) -> Value {
    let app = format!("127.0.0.1:{}", echo_producer());
    let request = Request::start(&trust(&[prod, cons]), &prod.addr, &cons.addr, &["--num-conn", "2"]).unwrap();
    let mut hello = args(&[&request.uid, "--s2cs", &prod.addr, "--key", &request.app_key, "--listeners", &app]);
    hello.extend(trust(&[prod]));
    let hello = scistream_tests::run("appctrl", &hello, Duration::from_secs(30)).unwrap();
    assert!(hello.status.success(), "appctrl: {}", String::from_utf8_lossy(&hello.stderr));
    let established = request.next_json(Duration::from_secs(30)).expect("established line");
    let out = request.process.wait(Duration::from_secs(20)).unwrap();
    assert!(out.status.success(), "s2uc request: {}", String::from_utf8_lossy(&out.stderr));
    established
}

fn echo_through(listener: &str, n: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let mut c = TcpStream::connect(listener).expect("the consumer connects");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(&data).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("the echo comes back");
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());
    back
}

#[test]
fn a_stream_crosses_two_gateways_whose_data_servers_run_on_nodes_of_their_own() {
    let _serial = shared();
    let (dp, dc) = (Scratch::new("node-prod"), Scratch::new("node-cons"));
    // The consumer's node faces its LAN on another address than its link.
    let pn = Node::start(&dp.0, &free_range(4), &[]).unwrap();
    let cn = Node::start(&dc.0, &free_range(4), &["--lan-ip", "127.0.0.2"]).unwrap();
    let prod = Server::start(&dp.0, &ServerOpts { node: Some(pn.link()), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&dc.0, &ServerOpts { node: Some(cn.link()), ..ServerOpts::default() }).unwrap();

    let established = establish(&prod, &cons);
    let uid = established["uid"].as_str().unwrap().to_owned();
    let cons_listeners = established["consumer_listeners"].as_str().unwrap().to_owned();
    let prod_listeners = established["producer_listeners"].as_str().unwrap().to_owned();
    assert!(cons_listeners.split(',').all(|a| a.starts_with("127.0.0.2:")), "LAN-facing: {cons_listeners}");
    assert!(prod_listeners.split(',').all(|a| a.starts_with("127.0.0.1:")), "WAN-facing: {prod_listeners}");
    let first = cons_listeners.split(',').next().unwrap();
    echo_through(first, 200_000);
    assert_eq!(status(&cons, &uid)["state"], "Established");
    // Each control server shows the traffic its node counted (asked every second).
    for server in [&prod, &cons] {
        eventually(Duration::from_secs(10), "the node's counters reach the control server", || {
            let st = status(server, &uid);
            st["bytes_in"] == 200_000 && st["bytes_out"] == 200_000 && st["total_connections"] == 1
        });
    }

    // Release at both facilities: the nodes close every listener.
    let mut release = trust(&[&prod, &cons]);
    release.extend(args(&["release", &uid, "--s2cs", &prod.addr, "--s2cs", &cons.addr]));
    let out = scistream_tests::run("s2uc", &release, Duration::from_secs(30)).unwrap();
    assert!(out.status.success(), "s2uc release: {}", String::from_utf8_lossy(&out.stderr));
    for a in cons_listeners.split(',').chain(prod_listeners.split(',')) {
        eventually(Duration::from_secs(10), "the node closes a released listener", || !bound(a));
    }
    assert!(pn.log().contains("control server linked"), "{}", pn.log());
}

#[test]
fn a_node_and_a_control_server_that_do_not_trust_each_other_never_link() {
    let _serial = shared();
    let (d1, d2) = (Scratch::new("node-trust"), Scratch::new("node-other"));
    let node = Node::start(&d1.0, &free_range(2), &[]).unwrap();
    let other = Node::start(&d2.0, &free_range(2), &[]).unwrap();
    // The control server presents the certificate another node trusts: refused in the handshake.
    let mut link = node.link();
    (link.cert, link.key) = (other.link().cert, other.link().key);
    let cs = Server::start(&d1.0, &ServerOpts { node: Some(link), ..ServerOpts::default() }).unwrap();
    eventually(Duration::from_secs(15), "the node logs the refused peer", || {
        node.log().contains("peer refused in the tls handshake")
    });
    assert!(!node.log().contains("control server linked"), "{}", node.log());
    assert!(cs.log().contains("cannot link to the data server"), "{}", cs.log());

    // A request meanwhile is refused at once with UNAVAILABLE, not held.
    runtime().block_on(async {
        let c = client(&cs).await;
        let started = std::time::Instant::now();
        let answer = c.req(fresh_uid(), Role::Prod, 1, 0, Some(key(1))).await;
        assert_eq!(refusal("REQ without a data server", answer), ErrorCode::Unavailable);
        assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    });

    // A control server that trusts another node's certificate refuses the node itself.
    let mut wrong = node.link();
    wrong.node_cert = other.link().node_cert;
    let cs2 = Server::start(&d2.0, &ServerOpts { node: Some(wrong), ..ServerOpts::default() }).unwrap();
    eventually(Duration::from_secs(15), "the control server refuses the node's certificate", || {
        cs2.log().contains("cannot link to the data server")
    });
}

#[test]
fn a_node_killed_mid_stream_resets_its_consumers_and_its_sessions_fail_once_it_is_back() {
    let _serial = shared();
    let (dp, dc) = (Scratch::new("node-kill-p"), Scratch::new("node-kill-c"));
    let mut pn = Node::start(&dp.0, &free_range(4), &[]).unwrap();
    let cn = Node::start(&dc.0, &free_range(4), &[]).unwrap();
    let prod = Server::start(&dp.0, &ServerOpts { node: Some(pn.link()), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&dc.0, &ServerOpts { node: Some(cn.link()), ..ServerOpts::default() }).unwrap();
    let established = establish(&prod, &cons);
    let uid = established["uid"].as_str().unwrap().to_owned();
    let first = established["consumer_listeners"].as_str().unwrap().split(',').next().unwrap().to_owned();

    // A consumer mid-stream: half of its data sent, the echo flowing.
    let mut c = TcpStream::connect(&first).expect("the consumer connects");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(&[7u8; 100_000]).unwrap();
    pn.kill9();
    // The producer's gateway is gone: the consumer's connection ends (reset or EOF), no hang.
    let mut sink = Vec::new();
    let ended = c.read_to_end(&mut sink);
    assert!(ended.is_ok() || ended.as_ref().is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock), "{ended:?}");

    // Back under a new incarnation: the control server fails what the old one held, and
    // serves new sessions.
    pn.restart().unwrap();
    eventually(Duration::from_secs(20), "the session fails at the producer's facility", || {
        status(&prod, &uid)["state"] != "Established"
    });
    let st = status(&prod, &uid);
    assert!(st["failure"].is_string(), "{st}");
    let again = establish(&prod, &cons);
    let first = again["consumer_listeners"].as_str().unwrap().split(',').next().unwrap().to_owned();
    echo_through(&first, 10_000);
}

#[test]
fn control_servers_killed_mid_stream_and_restarted_drop_no_stream() {
    let _serial = shared();
    let (dp, dc) = (Scratch::new("node-restart-p"), Scratch::new("node-restart-c"));
    let pn = Node::start(&dp.0, &free_range(4), &[]).unwrap();
    let cn = Node::start(&dc.0, &free_range(4), &[]).unwrap();
    let with_state = |node: &Node, dir: &std::path::Path| ServerOpts {
        node: Some(node.link()),
        extra: args(&["--state-dir", dir.join("state").to_str().unwrap()]),
        ..ServerOpts::default()
    };
    let mut prod = Server::start(&dp.0, &with_state(&pn, &dp.0)).unwrap();
    let mut cons = Server::start(&dc.0, &with_state(&cn, &dc.0)).unwrap();
    let established = establish(&prod, &cons);
    let uid = established["uid"].as_str().unwrap().to_owned();
    let listeners = established["consumer_listeners"].as_str().unwrap().to_owned();
    let first = listeners.split(',').next().unwrap().to_owned();

    // A consumer mid-stream when both control servers die.
    let data: Vec<u8> = (0..400_000).map(|i| (i % 253) as u8).collect();
    let mut c = TcpStream::connect(&first).expect("the consumer connects");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(&data[..200_000]).unwrap();
    prod.kill9_and_restart().unwrap();
    cons.kill9_and_restart().unwrap();
    c.write_all(&data[200_000..]).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("the echo comes back across the restarts");
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());

    // The restarted servers know the session: its owner may see it, it stays established.
    for server in [&prod, &cons] {
        assert!(server.log().contains("recovered=1"), "{}", server.log());
        eventually(Duration::from_secs(10), "the data server confirms the recovered session", || {
            server.log().contains("data server node attached")
        });
        assert_eq!(status(server, &uid)["state"], "Established");
    }
    echo_through(&first, 50_000);

    // And release frees the node's ports.
    let mut release = trust(&[&prod, &cons]);
    release.extend(args(&["release", &uid, "--s2cs", &prod.addr, "--s2cs", &cons.addr]));
    let out = scistream_tests::run("s2uc", &release, Duration::from_secs(30)).unwrap();
    assert!(out.status.success(), "s2uc release: {}", String::from_utf8_lossy(&out.stderr));
    for a in listeners.split(',') {
        eventually(Duration::from_secs(10), "the node closes a released listener", || !bound(a));
    }
}

#[test]
fn an_embedded_data_server_ends_its_streams_with_the_process_and_the_restart_says_so() {
    let _serial = shared();
    let (dp, dc) = (Scratch::new("emb-restart-p"), Scratch::new("emb-restart-c"));
    let state = |d: &Scratch| ServerOpts {
        port_range: free_range(4),
        extra: args(&["--state-dir", d.0.join("state").to_str().unwrap()]),
        ..ServerOpts::default()
    };
    let mut prod = Server::start(&dp.0, &state(&dp)).unwrap();
    let cons = Server::start(&dc.0, &state(&dc)).unwrap();
    let established = establish(&prod, &cons);
    let uid = established["uid"].as_str().unwrap().to_owned();
    prod.kill9_and_restart().unwrap();
    // Not lost, not pretended: the session is known, and failed.
    eventually(Duration::from_secs(10), "the recovered session fails", || status(&prod, &uid)["state"] == "Failed");
    assert_eq!(status(&prod, &uid)["failure"], "aborted", "{}", status(&prod, &uid));
    // A second server on the same state folder is refused.
    let clash = Server::start(&dp.0, &state(&dp));
    let err = clash.expect_err("two servers on one store").to_string();
    assert!(err.contains("in use by another process"), "{err}");
}

#[test]
fn a_node_that_stops_answering_has_its_sessions_failed_and_dropped_once_it_answers_again() {
    let _serial = shared();
    let (dp, dc) = (Scratch::new("node-stop-p"), Scratch::new("node-stop-c"));
    let pn = Node::start(&dp.0, &free_range(4), &[]).unwrap();
    let cn = Node::start(&dc.0, &free_range(4), &[]).unwrap();
    let prod = Server::start(&dp.0, &ServerOpts { node: Some(pn.link()), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&dc.0, &ServerOpts { node: Some(cn.link()), ..ServerOpts::default() }).unwrap();
    let established = establish(&prod, &cons);
    let uid = established["uid"].as_str().unwrap().to_owned();
    let wan = established["producer_listeners"].as_str().unwrap().to_owned();

    // The producer's node freezes (SIGSTOP): it neither answers nor dies.
    pn.signal("STOP").unwrap();
    let stopped = std::time::Instant::now();
    eventually(Duration::from_secs(60), "the control server takes its node for lost", || {
        status(&prod, &uid)["state"] == "Failed"
    });
    let took = stopped.elapsed();
    assert!(took >= Duration::from_secs(25), "failed after {took:?}, before the 30 s of silence");
    assert_eq!(status(&prod, &uid)["failure"], "aborted");

    // It answers again: it drops what nobody owns any more, and serves new sessions.
    pn.signal("CONT").unwrap();
    for a in wan.split(',') {
        eventually(Duration::from_secs(20), "the node closes the orphaned listener", || !bound(a));
    }
    let again = establish(&prod, &cons);
    let first = again["consumer_listeners"].as_str().unwrap().split(',').next().unwrap().to_owned();
    echo_through(&first, 10_000);
}

#[test]
fn a_facility_with_two_nodes_places_sessions_on_both_and_losing_one_fails_only_its_own() {
    let _serial = shared();
    let (dp, dc) = (Scratch::new("nodes2-p"), Scratch::new("nodes2-c"));
    // Two producer-side nodes of two ports each: one session of num_conn 2 fills a node.
    let n0 = Node::start(&dp.0, &free_range(2), &[]).unwrap();
    let mut n1 = Node::start_trusting(&dp.0, &free_range(2), &[], &n0.link()).unwrap();
    let cn = Node::start(&dc.0, &free_range(8), &[]).unwrap();
    let state = dp.0.join("state");
    let prod_opts = ServerOpts {
        node: Some(n0.link()),
        more_nodes: vec![n1.link()],
        extra: args(&["--state-dir", state.to_str().unwrap()]),
        ..ServerOpts::default()
    };
    let mut prod = Server::start(&dp.0, &prod_opts).unwrap();
    let cons = Server::start(&dc.0, &ServerOpts { node: Some(cn.link()), ..ServerOpts::default() }).unwrap();

    let (a, b) = (establish(&prod, &cons), establish(&prod, &cons));
    let uid = |e: &Value| e["uid"].as_str().unwrap().to_owned();
    let (ua, ub) = (uid(&a), uid(&b));
    let listener = |e: &Value| e["consumer_listeners"].as_str().unwrap().split(',').next().unwrap().to_owned();
    // The first filled the first node; the second went to the other, which had room.
    assert_eq!(status(&prod, &ua)["node"], n0.addr.as_str());
    assert_eq!(status(&prod, &ub)["node"], n1.addr.as_str());
    assert_eq!(status(&cons, &ua)["node"], cn.addr.as_str());
    // s2uc list shows the node of each session.
    let mut list = trust(&[&prod]);
    list.extend(args(&["list", "--s2cs", &prod.addr]));
    let out = scistream_tests::run("s2uc", &list, Duration::from_secs(20)).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("node={}", n0.addr)) && text.contains(&format!("node={}", n1.addr)), "{text}");
    echo_through(&listener(&a), 50_000);
    echo_through(&listener(&b), 50_000);

    // No node has a free port left: refused at once, RESOURCE_EXHAUSTED, nothing held.
    runtime().block_on(async {
        let c = client(&prod).await;
        let answer = c.req(fresh_uid(), Role::Prod, 1, 0, Some(key(1))).await;
        assert_eq!(refusal("REQ with every node full", answer), ErrorCode::ResourceExhausted);
    });

    // The second node restarts (kill -9): only its session fails; the first streams on.
    n1.restart().unwrap();
    eventually(Duration::from_secs(20), "the second node's session fails", || status(&prod, &ub)["state"] == "Failed");
    assert_eq!(status(&prod, &ua)["state"], "Established");
    echo_through(&listener(&a), 50_000);

    // The control server restarts (kill -9): the session comes back on its own node, found
    // by address in the store, and its stream still flows.
    prod.kill9_and_restart().unwrap();
    eventually(Duration::from_secs(20), "the recovered session is confirmed by its node", || {
        let st = status(&prod, &ua);
        st["state"] == "Established" && st["node"] == n0.addr.as_str()
    });
    echo_through(&listener(&a), 50_000);
    // A new session fits on the second node again (its ports came back with its restart).
    let c = establish(&prod, &cons);
    assert_eq!(status(&prod, &uid(&c))["node"], n1.addr.as_str());
}

/// docs/protocol.md: a failure answers every waiting call with its code, ABORTED when the data
/// server was lost. A producer's REQ waits for its Hello on a node that is killed and comes
/// back under a new incarnation: the REQ is answered ABORTED (not left to its Hello's
/// deadline, 30 s here, which would answer DEADLINE_EXCEEDED).
#[test]
fn a_req_waiting_on_a_node_that_dies_is_answered_aborted_once_the_node_is_back() {
    use crate::testkit::{CALL, await_state, within};
    let _serial = shared();
    let dir = Scratch::new("node-dies-waiting");
    let mut node = Node::start(&dir.0, &free_range(4), &[]).unwrap();
    let server = Server::start(&dir.0, &ServerOpts { node: Some(node.link()), ..ServerOpts::default() }).unwrap();
    let rt = runtime();
    let c = rt.block_on(client(&server));
    let uid = fresh_uid();
    let waiting = rt.spawn({
        let c = c.clone();
        async move { c.req(uid, Role::Prod, 1, 0, Some(key(1))).await }
    });
    rt.block_on(await_state(&c, uid, "Listening"));
    node.restart().unwrap();
    let answer = rt.block_on(within(CALL * 2, "the waiting REQ", waiting)).expect("REQ task");
    assert_eq!(refusal("a REQ waiting on a lost node", answer), ErrorCode::Aborted);
}
