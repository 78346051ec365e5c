//! A whole stream set up and torn down across two facilities with the user's commands only:
//! `s2uc request`, the producer's `appctrl`, `s2uc status`, `s2uc release`.

use std::path::PathBuf;
use std::time::Duration;

use scistream_tests::{Background, Request, Scratch, Server, ServerOpts, args, free_range, lines, listening, run};
use serde_json::Value;

use crate::testkit::shared;

/// The ports of a comma-separated listener list, checking every host is loopback.
fn listener_ports(list: &str) -> Vec<u16> {
    list.split(',')
        .map(|a| {
            let (host, port) = a.rsplit_once(':').unwrap_or_else(|| panic!("{a:?} is not host:port"));
            assert_eq!(host, "127.0.0.1", "listener {a} is not on the server's listener IP");
            port.parse().expect("a port")
        })
        .collect()
}

fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or_else(|| panic!("no string {name:?} in {v}"))
}

/// One certificate file trusting both facilities (each server made its own).
fn both_certs(dir: &std::path::Path, a: &Server, b: &Server) -> PathBuf {
    let mut pem = std::fs::read(a.cert.as_ref().expect("TLS")).expect("cert of A");
    pem.extend(std::fs::read(b.cert.as_ref().expect("TLS")).expect("cert of B"));
    let path = dir.join("both.pem");
    std::fs::write(&path, pem).expect("writing both.pem");
    path
}

fn status_json(cert: &str, uid: &str, server: &Server) -> Value {
    let out = run(
        "s2uc",
        &args(&["--server-cert", cert, "--json", "status", uid, "--s2cs", &server.addr]),
        Duration::from_secs(20),
    )
    .expect("s2uc status");
    assert!(out.status.success(), "s2uc status failed: {}", String::from_utf8_lossy(&out.stderr));
    json_line(String::from_utf8_lossy(&out.stdout).lines().next().expect("a status line"))
}

#[test]
fn s2uc_request_with_appctrl_establishes_a_stream_across_two_facilities_and_release_closes_every_port() {
    let _serial = shared();
    let (dir_a, dir_b) = (Scratch::new("cp-prod"), Scratch::new("cp-cons"));
    let prod = Server::start(&dir_a.0, &ServerOpts { port_range: free_range(10), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&dir_b.0, &ServerOpts { port_range: free_range(10), ..ServerOpts::default() }).unwrap();
    let cert = both_certs(&dir_a.0, &prod, &cons);
    let cert = cert.to_str().expect("utf-8 path");

    let client = args(&["--server-cert", cert]);
    let request =
        Request::start(&client, &prod.addr, &cons.addr, &["--num-conn", "3", "--hello-timeout", "30"]).unwrap();
    assert_eq!(field(&request.created, "event"), "created");
    let (uid, app_key) = (request.uid.clone(), request.app_key.clone());
    assert_eq!(app_key.len(), 32, "the app key is 16 bytes in hex");
    // Announced only once the producer's facility admitted it: its listeners are bound already.
    let admitted = status_json(cert, &uid, &prod);
    assert_eq!(field(&admitted, "state"), "Listening", "{admitted}");
    for port in listener_ports(field(&admitted, "listeners")) {
        assert!(listening(port), "port {port} of the announced session does not listen");
    }

    let app_listeners = "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002";
    let hello = run(
        "appctrl",
        &args(&[&uid, "--s2cs", &prod.addr, "--server-cert", cert, "--key", &app_key, "--listeners", app_listeners]),
        Duration::from_secs(30),
    )
    .unwrap();
    let hello_out = String::from_utf8_lossy(&hello.stdout);
    assert!(hello.status.success(), "appctrl failed: {}", String::from_utf8_lossy(&hello.stderr));

    let established = request.next_json(Duration::from_secs(30)).expect("s2uc reports the stream");
    let out = request.process.wait(Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "s2uc request failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(field(&established, "event"), "established");
    assert_eq!(field(&established, "uid"), uid);
    assert_eq!(field(&established, "prod_app_listeners"), app_listeners);
    let prod_side = listener_ports(field(&established, "producer_listeners"));
    let cons_side = listener_ports(field(&established, "consumer_listeners"));
    assert_eq!((prod_side.len(), cons_side.len()), (3, 3), "num_conn listeners on each side: {established}");
    assert!(
        hello_out.contains(field(&established, "producer_listeners")),
        "appctrl was told the producer gateway's listeners: {hello_out}"
    );
    for port in prod_side.iter().chain(&cons_side) {
        assert!(listening(*port), "port {port} of the session does not listen");
    }

    // The consumer gateway forwards to the producer gateway's listeners; that one to the app.
    let at_cons = status_json(cert, &uid, &cons);
    assert_eq!(field(&at_cons, "state"), "Established");
    assert_eq!(field(&at_cons, "targets"), field(&established, "producer_listeners"));
    assert_eq!(field(&at_cons, "listeners"), field(&established, "consumer_listeners"));
    let at_prod = status_json(cert, &uid, &prod);
    assert_eq!(field(&at_prod, "state"), "Established");
    assert_eq!(field(&at_prod, "targets"), app_listeners);

    let release = run(
        "s2uc",
        &args(&["--server-cert", cert, "release", &uid, "--s2cs", &prod.addr, "--s2cs", &cons.addr]),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(release.status.code(), Some(0), "s2uc release: {}", String::from_utf8_lossy(&release.stderr));
    // REL answers once the data server has closed the listeners.
    for port in prod_side.iter().chain(&cons_side) {
        assert!(!listening(*port), "port {port} still listens after release");
    }
    assert_eq!(field(&status_json(cert, &uid, &cons), "state"), "Released");
}

#[test]
fn an_appctrl_started_while_its_control_server_is_down_says_its_hello_once_it_is_back() {
    let _serial = shared();
    let (dir_a, dir_b) = (Scratch::new("cp-down-p"), Scratch::new("cp-down-c"));
    let mut prod = Server::start(&dir_a.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&dir_b.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let cert = both_certs(&dir_a.0, &prod, &cons);
    let cert = cert.to_str().expect("utf-8 path");
    let request = Request::start(
        &args(&["--server-cert", cert]),
        &prod.addr,
        &cons.addr,
        &["--num-conn", "2", "--hello-timeout", "40"],
    )
    .unwrap();

    // The producer's control server goes down with the session in setup; the controller is
    // started while nothing answers at its address.
    prod.kill9();
    let hello = args(&[
        &request.uid,
        "--s2cs",
        &prod.addr,
        "--server-cert",
        cert,
        "--key",
        &request.app_key,
        "--listeners",
        "127.0.0.1:7000",
        "--hello-timeout",
        "40",
    ]);
    let mut appctrl = Background::start("appctrl", &hello).unwrap();
    // Its stderr read as it comes: the server is brought back only once the controller has
    // said it could not connect (a fixed sleep could restart it before the first attempt).
    let said = lines(appctrl.0.as_mut().expect("running").stderr.take().expect("piped"));
    let mut err = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = said.recv_timeout(left).unwrap_or_else(|e| panic!("appctrl never said it could not connect ({e})"));
        err += &line;
        err.push('\n');
        if line.contains("trying again") {
            break;
        }
    }
    prod.restart().unwrap();

    // The client's retransmitted REQ starts the session afresh at the restarted server, and the
    // controller, which kept trying, says its Hello to it.
    let out = appctrl.wait(Duration::from_secs(45)).unwrap();
    // Its pipe closed with it: the rest of what it said.
    err.extend(said.iter().map(|l| l + "\n"));
    if !out.status.success() {
        let s2uc = request.process.wait(Duration::from_secs(10)).unwrap();
        panic!("appctrl: {err}\ns2uc: {}\n{}", String::from_utf8_lossy(&s2uc.stderr), prod.log());
    }
    let established = request.next_json(Duration::from_secs(40)).expect("s2uc reports the stream");
    assert_eq!(field(&established, "event"), "established");
    assert_eq!(field(&established, "prod_app_listeners"), "127.0.0.1:7000");
    let out = request.process.wait(Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "s2uc request: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_appctrl_whose_control_server_never_comes_back_gives_up_at_its_deadline() {
    // Nothing listens on this port: refused at once, retried until the deadline, then exit 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let out = run(
        "appctrl",
        &args(&[
            "00000000-0000-4000-8000-000000000001",
            "--s2cs",
            &format!("127.0.0.1:{port}"),
            "--insecure",
            "--listeners",
            "127.0.0.1:7000",
            "--hello-timeout",
            "3",
        ]),
        Duration::from_secs(20),
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("trying again") && err.contains(&port.to_string()), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2), "kept trying: {:?}", started.elapsed());
}
