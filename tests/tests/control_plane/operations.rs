//! The operator's surfaces of the daemons, through their real interfaces: Prometheus metrics,
//! `/healthz` and `/readyz`, the gRPC health service, `s2cs health`, SIGHUP reloads (a new
//! capacity, a new certificate, a bad file that changes nothing), systemd's notifications, and
//! the drain on SIGTERM (new sessions refused, established streams going on, the exit code
//! saying whether every session ended).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use scistream_fsm::{Addr, ErrorCode, Role};
use scistream_tests::{
    Node, Scratch, Server, ServerOpts, args, bin, echo_producer, establish, free_range, http_get, listening, run,
    send_signal,
};
use scistream_transport::client::CallError;
use scistream_transport::tls::{self, Trust};

use crate::testkit::{
    CALL, connect, creds, eventually, fresh_uid, key, metrics_of, refusal, runtime, scrape, shared, value,
};

#[test]
fn metrics_and_health_follow_sessions_rpcs_and_the_data_server() {
    let _serial = shared();
    let dir = Scratch::new("ops-metrics");
    let opts =
        ServerOpts { port_range: free_range(4), extra: args(&["--metrics-addr", "127.0.0.1:0"]), ..Default::default() };
    let server = Server::start(&dir.0, &opts).unwrap();
    let m = metrics_of(&server);
    eventually(Duration::from_secs(10), "/readyz says ready", || http_get(&m, "/readyz").is_ok_and(|(c, _)| c == 200));
    assert_eq!(http_get(&m, "/healthz").unwrap().0, 200);
    let health = run("s2cs", &args(&["health", "--metrics-addr", &m]), Duration::from_secs(10)).unwrap();
    assert!(health.status.success(), "s2cs health: {}", String::from_utf8_lossy(&health.stderr));

    let rt = runtime();
    let cert = server.cert.clone().expect("TLS");
    let uid = fresh_uid();
    rt.block_on(async {
        let c = connect(&server.addr, &cert).await;
        let l = c.req(uid, Role::Cons, 2, 0, Some(key(0))).await.expect("REQ");
        c.update(uid, Role::Cons, &[Addr::new("127.0.0.1", 9)], Some(creds(1))).await.expect("update");
        // A connection to the session, whose target does not answer: a dial failure.
        let _ = std::net::TcpStream::connect(("127.0.0.1", l.listeners[0].port));
        let refused = c.req(fresh_uid(), Role::Cons, 0, 0, Some(key(0))).await;
        assert_eq!(refusal("num_conn 0", refused), ErrorCode::InvalidArgument);

        // The standard gRPC health service on the control port.
        let channel = tls::connect(&server.addr, &Trust::File(cert.clone()), CALL).await.expect("channel");
        let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
        let req = tonic_health::pb::HealthCheckRequest { service: "scistream.Control".into() };
        let status = h.check(req).await.expect("health check").into_inner().status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    });
    // The relay counts the connection when its accept loop takes it, which a loaded machine
    // may not have run yet.
    eventually(Duration::from_secs(10), "the relayed connection counted", || {
        value(&scrape(&m), "scistream_relayed_connections_total") == Some(1.0)
    });
    let text = scrape(&m);
    let want = [
        ("scistream_sessions{state=\"Established\"}", 1.0),
        ("scistream_setups_total", 1.0),
        ("scistream_data_server_nodes{state=\"up\"}", 1.0),
        ("scistream_rpc_duration_seconds_count{rpc=\"req\",code=\"Ok\"}", 1.0),
        ("scistream_rpc_duration_seconds_count{rpc=\"req\",code=\"InvalidArgument\"}", 1.0),
        ("scistream_rpc_duration_seconds_count{rpc=\"update\",code=\"Ok\"}", 1.0),
        ("scistream_relayed_connections_total", 1.0),
    ];
    for (series, v) in want {
        assert_eq!(value(&text, series), Some(v), "{series} in\n{text}");
    }
    let per_session = format!("scistream_session_bytes{{uid=\"{uid}\",direction=\"in\"}}");
    assert_eq!(value(&text, &per_session), Some(0.0), "{per_session} in\n{text}");
    eventually(Duration::from_secs(10), "the dial failure counted", || {
        value(&scrape(&m), "scistream_dial_failures_total") == Some(1.0)
    });
    let hist = value(&text, "scistream_setup_duration_seconds_count");
    assert_eq!(hist, Some(1.0), "the setup's latency is observed once:\n{text}");

    rt.block_on(async { connect(&server.addr, &cert).await.release(uid).await.expect("release") });
    let text = scrape(&m);
    assert_eq!(value(&text, "scistream_sessions{state=\"Released\"}"), Some(1.0), "{text}");
    assert!(!text.contains(&uid.to_string()), "a released session's series are gone:\n{text}");
}

/// `s2cs --capacity` (kB/s, docs/control-plane.md): sessions are placed while their rates fit;
/// a release gives its rate back, and a session without a rate takes all of it.
#[test]
fn the_capacity_flag_admits_rates_while_they_fit_and_a_release_gives_its_rate_back() {
    let _serial = shared();
    let dir = Scratch::new("ops-capacity");
    let opts = ServerOpts { port_range: free_range(8), extra: args(&["--capacity", "1000"]), ..ServerOpts::default() };
    let server = Server::start(&dir.0, &opts).unwrap();
    let cert = server.cert.clone().expect("TLS");
    let rt = runtime();
    let c = rt.block_on(connect(&server.addr, &cert));
    let ask = |uid, rate: u32| rt.block_on(c.req(uid, Role::Cons, 1, rate, Some(key(0))));
    let first = fresh_uid();
    ask(first, 600).expect("600 of 1000");
    assert_eq!(refusal("600 more of 1000", ask(fresh_uid(), 600)), ErrorCode::ResourceExhausted);
    ask(fresh_uid(), 400).expect("400 more of 1000: exactly full");
    rt.block_on(c.release(first)).expect("release");
    ask(fresh_uid(), 600).expect("600 again, once the first session released its rate");
    // Full again: a session without a rate (it may take all of the node) does not fit.
    assert_eq!(refusal("a session without a rate on a full node", ask(fresh_uid(), 0)), ErrorCode::ResourceExhausted);
}

/// A config file for the server of `dir` with `capacity`.
fn write_config(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("writing the config file");
}

#[test]
fn sighup_applies_a_new_capacity_and_certificate_and_a_bad_file_changes_nothing() {
    let _serial = shared();
    let dir = Scratch::new("ops-reload");
    let config = dir.0.join("s2cs.toml");
    write_config(&config, "capacity = 1000\n");
    let opts = ServerOpts {
        port_range: free_range(8),
        extra: args(&["--config", config.to_str().unwrap()]),
        ..ServerOpts::default()
    };
    let server = Server::start(&dir.0, &opts).unwrap();
    let cert = server.cert.clone().expect("TLS");
    let rt = runtime();
    let ask = |rate: u32| {
        let cert = cert.clone();
        let addr = server.addr.clone();
        rt.block_on(
            async move { connect(&addr, &cert).await.req(fresh_uid(), Role::Cons, 1, rate, Some(key(0))).await },
        )
    };
    ask(800).expect("800 of 1000");
    assert_eq!(refusal("400 more of 1000", ask(400)), ErrorCode::ResourceExhausted);

    let reloads = |server: &Server| server.log().matches("reloaded").count();
    write_config(&config, "capacity = 2000\n");
    server.signal("HUP").unwrap();
    eventually(Duration::from_secs(10), "the reload", || reloads(&server) == 1);
    ask(400).expect("400 more of 2000, after the reload");

    // A file that does not read: refused, the settings in force kept, the server serving.
    write_config(&config, "capacity = \"lots\"\n");
    server.signal("HUP").unwrap();
    eventually(Duration::from_secs(10), "the refused reload", || server.log().contains("reload refused"));
    assert_eq!(refusal("900 more of 2000", ask(900)), ErrorCode::ResourceExhausted, "the capacity is still 2000");
    ask(700).expect("700 more of 2000");

    // A new certificate (and key) in the same files: new connections get it.
    let old = dir.0.join("old.pem");
    std::fs::copy(&cert, &old).unwrap();
    // And, in the same reload, a default rate for requests that ask for none.
    write_config(&config, "capacity = 5000\ndefault-rate = 300\n");
    let own = cert.parent().unwrap();
    let made = run(
        "s2cs",
        &args(&["gen-cert", "--listener-ip", "127.0.0.1", "--force", "--out-dir", own.to_str().unwrap()]),
        CALL,
    )
    .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    server.signal("HUP").unwrap();
    eventually(Duration::from_secs(10), "the second reload", || reloads(&server) == 2);
    rt.block_on(async {
        let fresh = tls::connect(&server.addr, &Trust::File(cert.clone()), CALL).await;
        assert!(fresh.is_ok(), "a client trusting the new certificate: {:?}", fresh.err());
        let stale = tls::connect(&server.addr, &Trust::File(old.clone()), CALL).await;
        assert!(stale.is_err(), "a client trusting only the old certificate is refused after the rotation");
        let c = connect(&server.addr, &cert).await;
        let uid = fresh_uid();
        c.req(uid, Role::Cons, 1, 0, Some(key(0))).await.expect("a REQ asking no rate");
        assert_eq!(c.status(uid).await.expect("status").params.rate, 300, "the reloaded default rate");
    });
}

/// Runs `daemon args` with a notify socket: it must say READY=1, then on SIGHUP RELOADING=1
/// (with MONOTONIC_USEC) and READY=1, then on SIGTERM STOPPING=1, and exit 0 (nothing to drain).
fn notifies(dir: &std::path::Path, daemon: &str, args: &[String]) {
    let socket_path = dir.join(format!("{daemon}-notify.sock"));
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let child = Command::new(bin(daemon))
        .args(args)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let guard = scistream_tests::Background(Some(child));
    let read = |want: &str| {
        let mut buf = [0u8; 512];
        for _ in 0..5 {
            let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("{daemon}: no notification within 10 s ({e})"));
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains(want) {
                return text;
            }
        }
        panic!("{daemon}: no {want}");
    };
    read("READY=1");
    send_signal(pid, "HUP").expect("SIGHUP");
    let reloading = read("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{daemon}: systemd needs the time with RELOADING: {reloading}");
    read("READY=1");
    send_signal(pid, "TERM").expect("SIGTERM");
    read("STOPPING=1");
    let out = guard.wait(Duration::from_secs(15)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{daemon}: nothing to drain: exit 0");
}

#[test]
fn systemd_is_told_ready_reloading_and_stopping_by_both_daemons() {
    let _serial = shared();
    let dir = Scratch::new("ops-notify");
    let range = free_range(2);
    notifies(
        &dir.0,
        "s2cs",
        &args(&["--insecure", "--listener-ip", "127.0.0.1", "--port", "0", "--port-range", &range]),
    );
    let made =
        run("s2ds", &args(&["gen-cert", "--listener-ip", "127.0.0.1", "--out-dir", dir.0.to_str().unwrap()]), CALL)
            .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let range = free_range(2);
    let node =
        args(&["--listen", "127.0.0.1:0", "--cert", cert, "--key", key, "--trust", cert, "--port-range", &range]);
    notifies(&dir.0, "s2ds", &node);
}

#[test]
fn sigterm_drains_new_sessions_refused_streams_go_on_and_exit_0_once_released() {
    let _serial = shared();
    let dir = Scratch::new("ops-drain");
    let prod = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let opts = ServerOpts {
        port_range: free_range(4),
        extra: args(&["--metrics-addr", "127.0.0.1:0", "--drain-timeout", "60"]),
        ..ServerOpts::default()
    };
    let mut cons = Server::start(&dir.0, &opts).unwrap();
    let m = metrics_of(&cons);
    let rt = runtime();
    let (pc, cc) = rt.block_on(async {
        (connect(&prod.addr, prod.cert.as_ref().unwrap()).await, connect(&cons.addr, cons.cert.as_ref().unwrap()).await)
    });
    let uid = fresh_uid();
    rt.block_on(establish(&pc, &cc, uid, echo_producer())).expect("a stream between the facilities");
    let listener = rt.block_on(cc.status(uid)).expect("status").listeners[0].to_string();
    assert!(scistream_tests::props::echo_through(&listener, 100_000), "the stream carries bytes");

    cons.signal("TERM").unwrap();
    eventually(Duration::from_secs(5), "/readyz says draining", || {
        http_get(&m, "/readyz").is_ok_and(|(c, b)| c == 503 && b.contains("draining"))
    });
    let new = rt.block_on(cc.req(fresh_uid(), Role::Cons, 1, 0, Some(key(0))));
    match new {
        Err(CallError::Status { code: ErrorCode::Unavailable, message }) => {
            assert!(message.contains("shutting down"), "{message}");
        }
        other => panic!("a new session while draining: {other:?}"),
    }
    assert!(scistream_tests::props::echo_through(&listener, 100_000), "the established stream goes on while draining");
    assert_eq!(cons.wait_exit(Duration::from_secs(1)).unwrap(), None, "still serving its session");

    rt.block_on(async {
        pc.release(uid).await.expect("release at the producer's");
        cc.release(uid).await.expect("release at the consumer's, while it drains");
    });
    let code = cons.wait_exit(Duration::from_secs(15)).unwrap().expect("exited once its session was released");
    assert_eq!(code, Some(0), "every session ended: exit 0\n{}", cons.log());
    let port: u16 = listener.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port");
    assert!(!listening(port), "the session's port is closed");
}

#[test]
fn a_node_serves_metrics_and_readiness_and_drains_on_sigterm() {
    let _serial = shared();
    let dir = Scratch::new("ops-node");
    let mut node = Node::start(&dir.0, &free_range(4), &["--metrics-addr", "127.0.0.1:0"]).unwrap();
    let mut m = None;
    eventually(Duration::from_secs(10), "the node's metrics address", || {
        m = node.metrics_addr();
        m.is_some()
    });
    let m = m.unwrap();
    // No control server yet: alive, not ready.
    assert_eq!(http_get(&m, "/healthz").unwrap().0, 200);
    let (code, body) = http_get(&m, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no control server attached"), "{body}");
    let server = Server::start(&dir.0, &ServerOpts { node: Some(node.link()), ..ServerOpts::default() }).unwrap();
    eventually(Duration::from_secs(10), "ready once its control server attached", || {
        http_get(&m, "/readyz").is_ok_and(|(c, _)| c == 200)
    });
    let text = scrape(&m);
    assert_eq!(value(&text, "scistream_node_attached"), Some(1.0), "{text}");
    let health = run("s2ds", &args(&["health", "--metrics-addr", &m]), Duration::from_secs(10)).unwrap();
    assert!(health.status.success(), "s2ds health: {}", String::from_utf8_lossy(&health.stderr));
    drop(server);
    node.signal("TERM").unwrap();
    let code = node.wait_exit(Duration::from_secs(15)).unwrap().expect("exited");
    assert_eq!(code, Some(0), "no session to drain: exit 0\n{}", node.log());
}

#[test]
fn a_draining_node_gets_no_new_session_and_exits_0_once_its_own_ended() {
    let _serial = shared();
    let dir = Scratch::new("ops-node-drain");
    let mut a = Node::start(&dir.0, &free_range(4), &["--drain-timeout", "60"]).unwrap();
    let b = Node::start_trusting(&dir.0, &free_range(4), &[], &a.link()).unwrap();
    let opts = ServerOpts { node: Some(a.link()), more_nodes: vec![b.link()], ..ServerOpts::default() };
    let server = Server::start(&dir.0, &opts).unwrap();
    let rt = runtime();
    let c = rt.block_on(crate::testkit::client(&server));
    let node_of = |uid| rt.block_on(c.status(uid)).expect("status").node;
    let req = |uid| rt.block_on(c.req(uid, Role::Cons, 1, 0, Some(key(0))));
    // One session on each node: the next would go to the first, node a, on a tie.
    let (first, second) = (fresh_uid(), fresh_uid());
    req(first).expect("first REQ");
    req(second).expect("second REQ");
    assert_eq!((node_of(first), node_of(second)), (a.addr.clone(), b.addr.clone()), "one session per node");

    a.signal("TERM").unwrap();
    // Until the control server hears of the drain (the node's next heartbeat answer), a session
    // placed on a is refused there; after, new sessions go to b.
    let mut placed = Vec::new();
    eventually(Duration::from_secs(20), "a new session placed on the other node", || match req(fresh_uid()) {
        Ok(l) => {
            placed.push(l);
            true
        }
        Err(CallError::Status { code: ErrorCode::ResourceExhausted, .. }) => {
            std::thread::sleep(Duration::from_millis(300));
            false
        }
        Err(e) => panic!("a REQ while node a drains: {e}"),
    });
    let list = rt.block_on(c.list()).expect("list");
    let on_a = list.iter().filter(|v| v.node == a.addr && v.state == "Listening").count();
    assert_eq!(on_a, 1, "node a holds only the session it had before its drain: {list:?}");
    assert_eq!(a.wait_exit(Duration::from_millis(500)).unwrap(), None, "node a still serves its session");
    rt.block_on(c.release(first)).expect("release the first session");
    let code = a.wait_exit(Duration::from_secs(15)).unwrap().expect("node a exited once its session was released");
    assert_eq!(code, Some(0), "its one session ended: exit 0\n{}", a.log());
}
