//! Bytes through the path `s2uc request` sets up: consumer → consumer gateway (LAN, plain) →
//! producer gateway (WAN, TLS 1.3 pinned to the session) → producer, and back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scistream_tests::{
    Background, Request, Scratch, Server, ServerOpts, args, free_range, json_field, json_lines, trust,
};
use serde_json::Value;

use crate::testkit::shared;

/// A producer application: echoes each connection back whole, counting connections.
fn producer() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).is_ok() {
                    let _ = s.write_all(&all);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
            });
        }
    });
    (port, seen)
}

/// Sends `data` to `addr` (a consumer gateway's listener, the producer's echo behind both
/// gateways) and asserts every byte comes back unchanged.
fn echoed(addr: &str, data: &[u8]) {
    let mut s = TcpStream::connect(addr).expect("the consumer gateway's listener");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(data).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("the echo comes back through both gateways");
    assert!(back == data, "{} bytes back of {}, or changed", back.len(), data.len());
}

/// A stranger speaking plain text at the producer gateway's WAN port `wan`: refused before the
/// producer. Once `prod` has logged the refusal the connection is done with, so the count of
/// connections that `reached` the producer (`n` so far) is final (a fixed sleep could read it
/// before the gateway decided).
fn stranger_refused(wan: &str, prod: &Server, reached: &AtomicUsize, n: usize) {
    let mut s = TcpStream::connect(wan).expect("the WAN port is open");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let _ = s.read_to_end(&mut Vec::new());
    crate::testkit::eventually(Duration::from_secs(10), "the refusal is logged", || {
        prod.log().contains("WAN connection refused")
    });
    assert_eq!(reached.load(Ordering::SeqCst), n, "a plain-text connection reached the producer");
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn bytes_cross_both_gateways_and_a_stranger_at_the_wan_port_never_reaches_the_producer() {
    let _serial = shared();
    let (da, db) = (Scratch::new("dp-prod"), Scratch::new("dp-cons"));
    let prod = Server::start(&da.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&db.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let (pc, cc) = (trust(&[&prod]), trust(&[&cons]));
    let (app_port, reached) = producer();

    let request = Request::start(&trust(&[&prod, &cons]), &prod.addr, &cons.addr, &["--num-conn", "1"]).unwrap();
    let uid = request.uid.clone();
    let app = format!("127.0.0.1:{app_port}");
    let mut hello = args(&[&uid, "--s2cs", &prod.addr, "--key", &request.app_key, "--listeners", &app]);
    hello.extend(pc.iter().cloned());
    let hello = scistream_tests::run("appctrl", &hello, Duration::from_secs(30)).unwrap();
    assert!(hello.status.success(), "{}", String::from_utf8_lossy(&hello.stderr));
    let established = request.next_json(Duration::from_secs(20)).expect("established line");
    assert!(request.process.wait(Duration::from_secs(20)).unwrap().status.success());

    // The consumer's side: plain TCP to the consumer gateway's listener.
    let cons_listener = established["consumer_listeners"].as_str().unwrap().to_string();
    let data: Vec<u8> = (0..3 * 65_536 + 17).map(|i| (i % 251) as u8).collect();
    echoed(&cons_listener, &data);
    assert_eq!(reached.load(Ordering::SeqCst), 1);

    // A stranger at the producer gateway's WAN port, in plain text: refused before the producer.
    let wan = established["producer_listeners"].as_str().unwrap().to_string();
    stranger_refused(&wan, &prod, &reached, 1);

    // The counters, as `s2uc status` shows them at each facility.
    for (server, cert, refused) in [(&prod, &pc, 1), (&cons, &cc, 0)] {
        let mut status = cert.clone();
        status.extend(args(&["--json", "status", &uid, "--s2cs", &server.addr]));
        let out = scistream_tests::run("s2uc", &status, Duration::from_secs(20)).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let st = json(String::from_utf8_lossy(&out.stdout).lines().next().expect("a line"));
        let n = data.len() as u64;
        assert_eq!(st["bytes_in"], n, "{st}");
        assert_eq!(st["bytes_out"], n, "{st}");
        assert_eq!(st["total_connections"], 1 + refused, "{st}");
        assert_eq!(st["refused_connections"], refused, "{st}");
    }
}

/// SciStream 1.2's split setup against our own control servers: `inbound-request` at the
/// producer's facility (it says the producer's Hello itself), then `outbound-request` at the
/// consumer's with the uid, listeners and WAN credentials it printed (it says a consumer's
/// Hello alongside its REQ). Bytes cross both gateways over the session's pinned TLS leg.
#[test]
fn inbound_then_outbound_request_carry_bytes_over_the_sessions_tls_leg() {
    let _serial = shared();
    let (da, db) = (Scratch::new("dp-in"), Scratch::new("dp-out"));
    let prod = Server::start(&da.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&db.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let (app_port, reached) = producer();

    let mut inbound = trust(&[&prod]);
    inbound.extend(args(&[
        "--json",
        "inbound-request",
        "--s2cs",
        &prod.addr,
        "--num-conn",
        "1",
        "--remote_ip",
        "127.0.0.1",
        "--receiver_ports",
        &app_port.to_string(),
    ]));
    let out = scistream_tests::run("s2uc", &inbound, Duration::from_secs(30)).unwrap();
    assert!(out.status.success(), "inbound-request: {}", String::from_utf8_lossy(&out.stderr));
    let printed = json_lines(&out).unwrap();
    let get = |key| json_field(&printed, key).unwrap();
    let (uid, listeners, creds) = (get("uid"), get("listeners"), get("credentials"));
    assert_eq!(get("prod_listeners"), format!("127.0.0.1:{app_port}"));

    let mut outbound = trust(&[&cons]);
    outbound.extend(args(&[
        "--json",
        "outbound-request",
        "--s2cs",
        &cons.addr,
        "--num-conn",
        "1",
        "--credentials",
        &creds,
        &uid,
        &listeners,
    ]));
    let out = scistream_tests::run("s2uc", &outbound, Duration::from_secs(30)).unwrap();
    assert!(out.status.success(), "outbound-request: {}", String::from_utf8_lossy(&out.stderr));
    let consumer_side = json_field(&json_lines(&out).unwrap(), "listeners").unwrap();

    let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    echoed(consumer_side.as_str(), &sent);
    assert_eq!(reached.load(Ordering::SeqCst), 1);

    // Without the credentials the consumer's side would be plain text, which this facility
    // refuses by default: the setup fails with FAILED_PRECONDITION and releases what it held.
    let mut plain = trust(&[&cons]);
    let other = "4f3c2b1a-0000-4000-8000-000000000009";
    plain.extend(args(&["outbound-request", "--s2cs", &cons.addr, "--num-conn", "1", other, &listeners]));
    let out = scistream_tests::run("s2uc", &plain, Duration::from_secs(30)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed precondition"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SciStream 1.2's other split setup against our own control servers, over TLS: `prod-req`
/// announces the uid and app key, waits for the producer's Hello (appctrl) and prints the
/// producer gateway's listeners and the session's WAN credentials; `cons-req --credentials`
/// takes them. Bytes cross both gateways, and the producer's WAN port still refuses plain
/// text: the split keeps the pinned TLS leg (a cons-req that dropped the credentials would be
/// refused FAILED_PRECONDITION; one that made the leg plain would let the stranger through).
#[test]
fn prod_req_then_cons_req_with_its_credentials_carry_bytes_over_the_sessions_tls_leg() {
    let _serial = shared();
    let (da, db) = (Scratch::new("dp-prodreq"), Scratch::new("dp-consreq"));
    let prod = Server::start(&da.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&db.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let (app_port, reached) = producer();
    let bound = Duration::from_secs(30);

    let mut flags = trust(&[&prod]);
    flags.extend(args(&["--json", "prod-req", "--s2cs", &prod.addr, "--num-conn", "1"]));
    let mut prod_req = Background::start("s2uc", &flags).unwrap();
    let lines = prod_req.stdout_lines().unwrap();
    let next = || json(&lines.recv_timeout(bound).expect("prod-req prints a line in time"));
    let created = next();
    assert_eq!(created["event"], "created", "{created}");
    let (uid, app_key) = (created["uid"].as_str().unwrap().to_owned(), created["app_key"].as_str().unwrap().to_owned());
    let mut hello = trust(&[&prod]);
    let listeners = format!("127.0.0.1:{app_port}");
    hello.extend(args(&[&uid, "--s2cs", &prod.addr, "--key", &app_key, "--listeners", &listeners]));
    let out = scistream_tests::run("appctrl", &hello, bound).unwrap();
    assert!(out.status.success(), "appctrl: {}", String::from_utf8_lossy(&out.stderr));
    let out = prod_req.wait(bound).unwrap();
    assert!(out.status.success(), "prod-req: {}", String::from_utf8_lossy(&out.stderr));
    let printed: Vec<Value> = std::iter::from_fn(|| lines.recv_timeout(bound).ok()).map(|l| json(&l)).collect();
    let field = |key: &str| {
        printed
            .iter()
            .find_map(|v| v[key].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("{key} in {printed:?}"))
    };
    let (wan, creds) = (field("listeners"), field("credentials"));

    let mut cons_req = trust(&[&cons]);
    cons_req.extend(args(&[
        "--json",
        "cons-req",
        "--s2cs",
        &cons.addr,
        "--num-conn",
        "1",
        "--credentials",
        &creds,
        &uid,
        &wan,
    ]));
    let out = scistream_tests::run("s2uc", &cons_req, bound).unwrap();
    assert!(out.status.success(), "cons-req: {}", String::from_utf8_lossy(&out.stderr));
    let consumer_side = json_field(&json_lines(&out).unwrap(), "listeners").unwrap();

    let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    echoed(consumer_side.as_str(), &sent);
    assert_eq!(reached.load(Ordering::SeqCst), 1);

    // Plain text at the producer gateway's WAN port: refused before the producer.
    stranger_refused(wan.split(',').next().unwrap(), &prod, &reached, 1);
}

/// Connects to `addr`, sends a few bytes and reads until the connection ends (a reset or a
/// clean end: nothing crosses either way).
fn try_through(addr: &str) {
    let mut c = TcpStream::connect(addr).expect("the gateway's listener accepts");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = c.write_all(b"anyone there?");
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    assert!(sink.is_empty(), "nothing came back");
}

#[test]
fn a_path_that_does_not_work_shows_in_status_with_its_reason_and_in_the_log() {
    use crate::testkit::{client, eventually, fresh_uid, runtime};
    let _serial = shared();
    let (dp, dc) = (Scratch::new("dp-broken-p"), Scratch::new("dp-broken-c"));
    let mut prod = Server::start(&dp.0, &ServerOpts { port_range: free_range(2), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&dc.0, &ServerOpts { port_range: free_range(2), ..ServerOpts::default() }).unwrap();
    // The producer application is not listening.
    let app_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uid = fresh_uid();
    let rt = runtime();
    let (p, c) = rt.block_on(async { (client(&prod).await, client(&cons).await) });
    rt.block_on(scistream_tests::establish(&p, &c, uid, app_port)).expect("established");
    let cons_listener = rt.block_on(c.status(uid)).expect("status").listeners[0].to_string();

    try_through(&cons_listener);
    eventually(Duration::from_secs(10), "the producer's facility shows the broken path", || {
        rt.block_on(p.status(uid)).is_ok_and(|s| !s.traffic.problem.is_empty())
    });
    let at_prod = rt.block_on(p.status(uid)).unwrap();
    assert_eq!(at_prod.state, "Established");
    assert!(
        at_prod
            .traffic
            .problem
            .starts_with(&format!("cannot reach the producer's application at 127.0.0.1:{app_port}")),
        "{:?}",
        at_prod.traffic.problem
    );
    assert_eq!(at_prod.traffic.dial_failures, 1);
    let line = prod.log();
    assert!(
        line.lines().any(|l| l.contains("WARN") && l.contains(&uid.to_string()) && l.contains("cannot reach")),
        "a WARN line names the session and the peer: {line}"
    );
    // The consumer's side reached the producer's gateway; the connection then broke.
    let at_cons = rt.block_on(c.status(uid)).unwrap();
    assert!(at_cons.traffic.problem.is_empty(), "{:?}", at_cons.traffic.problem);
    eventually(Duration::from_secs(10), "the consumer's gateway counts the reset", || {
        rt.block_on(c.status(uid)).is_ok_and(|s| s.traffic.resets == 1)
    });
    // s2uc says it too.
    let mut a = trust(&[&prod]);
    a.extend(args(&["status", &uid.to_string(), "--s2cs", &prod.addr]));
    let out = scistream_tests::run("s2uc", &a, Duration::from_secs(20)).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("path DEGRADED: cannot reach the producer's application"), "{text}");

    // The producer's gateway dies: the consumer's side shows it without anyone reading logs.
    prod.kill9();
    try_through(&cons_listener);
    eventually(Duration::from_secs(10), "the consumer's facility shows the peer gateway gone", || {
        rt.block_on(c.status(uid))
            .is_ok_and(|s| s.traffic.problem.starts_with("cannot reach the producer's gateway at"))
    });
}
