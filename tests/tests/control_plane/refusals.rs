//! 1.2 defects: every error reported as UNKNOWN, num_conn=0 taking the whole range, and a
//! uid's session open to anyone who names it. Ours refuses with the protocol's gRPC codes.

use std::time::Duration;

use scistream_fsm::{Addr, AppKey, ErrorCode, Role};
use scistream_tests::{Scratch, Server, ServerOpts, args, free_range, run};
use scistream_transport::client::ControlClient;

use crate::testkit::{
    CALL, await_state, client, creds, fresh_uid, key, ports, range_ports, refusal, refusal_message, runtime, shared,
    within,
};

fn producer() -> Vec<Addr> {
    vec![Addr::new("127.0.0.1", 7100), Addr::new("127.0.0.1", 7101)]
}

#[test]
fn num_conn_zero_or_above_the_limit_is_invalid_argument_and_takes_no_port() {
    let _serial = shared();
    let dir = Scratch::new("cp-numconn");
    let range = free_range(4);
    let opts = ServerOpts { port_range: range.clone(), extra: args(&["--max-num-conn", "4"]), ..ServerOpts::default() };
    let server = Server::start(&dir.0, &opts).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        for role in Role::ALL {
            for n in [0, 5, u16::MAX] {
                let answer = c.req(fresh_uid(), role, n, 0, Some(key(1))).await;
                assert_eq!(refusal(&format!("{role} REQ with num_conn {n}"), answer), ErrorCode::InvalidArgument);
            }
        }
        assert!(c.list().await.expect("list").is_empty(), "a refused REQ left a session behind");
        let all = c.req(fresh_uid(), Role::Cons, 4, 0, Some(key(0))).await.expect("REQ for the whole range");
        assert_eq!(ports(&all.listeners), range_ports(&range).collect::<Vec<_>>());
    });
}

#[test]
fn s2uc_exits_2_when_the_server_finds_num_conn_invalid() {
    let _serial = shared();
    let dir = Scratch::new("cp-numconn-cli");
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let other = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    // 64 is the servers' default limit.
    for n in ["0", "65"] {
        let mut flags = server.client_flags();
        flags.extend(other.client_flags());
        flags.extend(args(&["request", "--prod-s2cs", &server.addr, "--cons-s2cs", &other.addr, "--num-conn", n]));
        let out = run("s2uc", &flags, Duration::from_secs(20)).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "s2uc request --num-conn {n}: {stderr}");
        assert!(stderr.contains("invalid argument"), "s2uc request --num-conn {n} says why: {stderr}");
        assert!(stderr.contains("num_conn"), "s2uc request --num-conn {n} names the field: {stderr}");
    }
}

#[test]
fn s2uc_request_naming_one_server_for_both_facilities_exits_2() {
    let _serial = shared();
    let dir = Scratch::new("cp-same-server");
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let mut flags = server.client_flags();
    flags.extend(args(&["request", "--prod-s2cs", &server.addr, "--cons-s2cs", &server.addr]));
    let out = run("s2uc", &flags, Duration::from_secs(20)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("their own control servers"), "{stderr}");
}

#[test]
fn update_release_status_and_hello_of_an_unknown_uid_are_not_found() {
    let _serial = shared();
    let dir = Scratch::new("cp-notfound");
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(2), ..ServerOpts::default() }).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        // A live session makes sure the lookups are by uid, not "is there any session".
        c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(0))).await.expect("REQ");
        let uid = fresh_uid();
        let update = c.update(uid, Role::Cons, &producer(), Some(creds(1))).await;
        assert_eq!(refusal("update", update), ErrorCode::NotFound);
        assert_eq!(refusal("release", c.release(uid).await), ErrorCode::NotFound);
        assert_eq!(refusal("status", c.status(uid).await), ErrorCode::NotFound);
        assert_eq!(refusal("listeners", c.listeners(uid).await), ErrorCode::NotFound);
        let hello = c.hello(uid, Role::Prod, &producer(), Some(key(1))).await;
        assert_eq!(refusal("hello", hello), ErrorCode::NotFound);
    });
}

#[test]
fn a_conflicting_req_for_a_live_uid_is_already_exists() {
    let _serial = shared();
    let dir = Scratch::new("cp-conflict");
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        let uid = fresh_uid();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.req(uid, Role::Prod, 2, 0, Some(key(1))).await }
        });
        let before = await_state(&c, uid, "Listening").await;
        let conflicts = [
            (Role::Prod, 3, 0, Some(key(1)), "another num_conn"),
            (Role::Prod, 2, 500, Some(key(1)), "another rate"),
            (Role::Cons, 2, 0, Some(key(1)), "another role"),
            (Role::Prod, 2, 0, Some(key(2)), "another app key"),
        ];
        for (role, n, rate, k, what) in conflicts {
            let answer = c.req(uid, role, n, rate, k).await;
            assert_eq!(refusal(&format!("REQ with {what}"), answer), ErrorCode::AlreadyExists);
        }
        // A keyless REQ is refused before the uid is even looked at (keys are required).
        let keyless = c.req(uid, Role::Prod, 2, 0, None).await;
        assert_eq!(refusal("REQ with no app key", keyless), ErrorCode::PermissionDenied);
        // The conflicts changed nothing: the first REQ is answered once the Hello comes.
        let acked = c.hello(uid, Role::Prod, &producer(), Some(key(1))).await.expect("Hello");
        let answer = within(CALL, "the first REQ", first).await.expect("REQ task").expect("first REQ");
        assert_eq!(answer.listeners, before.listeners);
        assert_eq!(acked, before.listeners);
        assert_eq!(answer.prod_listeners, producer());
    });
}

#[test]
fn an_identical_req_retransmitted_while_the_session_waits_gets_the_same_listeners_once_the_hello_comes() {
    let _serial = shared();
    let dir = Scratch::new("cp-retransmit");
    let server = tracing_server(&dir.0);
    runtime().block_on(async {
        let c = client(&server).await;
        let uid = fresh_uid();
        let req = |c: &ControlClient| {
            let c = c.clone();
            tokio::spawn(async move { c.req(uid, Role::Prod, 2, 0, Some(key(1))).await })
        };
        let first = req(&c);
        let listening = await_state(&c, uid, "Listening").await;
        let taken = reqs_taken(&server);
        // The first call's answer is lost: its client gives up and sends the same REQ again.
        first.abort();
        let again = req(&c);
        // The retransmission reaches the session before the Hello does (it waits there).
        until_reqs_taken(&server, taken + 1).await;
        let acked = c.hello(uid, Role::Prod, &producer(), Some(key(1))).await.expect("Hello");
        let again = within(CALL, "the retransmitted REQ", again).await.expect("REQ task").expect("retransmitted REQ");
        assert_eq!(again.listeners, listening.listeners, "the retransmission gets the first REQ's listeners");
        assert_eq!(again.prod_listeners, producer());
        assert_eq!(acked, listening.listeners);
        let sessions = c.list().await.expect("list");
        assert_eq!(sessions.len(), 1, "one session, not two: {sessions:?}");
        assert_eq!(sessions[0].listeners, listening.listeners, "no port reserved twice");
    });
}

#[test]
fn a_producer_req_overtaken_by_an_identical_one_is_answered_too() {
    let _serial = shared();
    let dir = Scratch::new("cp-overtaken");
    let server = tracing_server(&dir.0);
    runtime().block_on(async {
        let c = client(&server).await.with_timeout(CALL);
        let uid = fresh_uid();
        let req = || {
            let c = c.clone();
            tokio::spawn(async move { c.req(uid, Role::Prod, 2, 0, Some(key(1))).await })
        };
        let first = req();
        await_state(&c, uid, "Listening").await;
        let taken = reqs_taken(&server);
        let second = req();
        // Both calls wait on the session when the Hello comes (a second REQ arriving after it
        // would test an established session's answer instead).
        until_reqs_taken(&server, taken + 1).await;
        assert!(!first.is_finished() && !second.is_finished(), "a REQ was answered before the Hello");
        c.hello(uid, Role::Prod, &producer(), Some(key(1))).await.expect("Hello");
        let second = within(CALL, "the second REQ", second).await.expect("task");
        let first = within(CALL, "the first REQ", first).await.expect("task");
        assert!(first.is_ok() && first == second, "both REQs answered alike: {first:?} {second:?}");
    });
}

#[test]
fn a_hello_with_a_wrong_app_key_is_answered_as_an_unknown_uid_and_the_right_key_still_works() {
    let _serial = shared();
    let dir = Scratch::new("cp-appkey");
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        let uid = fresh_uid();
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.req(uid, Role::Prod, 2, 0, Some(key(7))).await }
        });
        let listening = await_state(&c, uid, "Listening").await;
        // Hello carries no token: a caller guessing uids must not learn which exist, so a wrong
        // key gets exactly what a uid nobody holds gets, code and message alike.
        let unknown = refusal_message(
            "a Hello for a uid nobody holds",
            c.hello(fresh_uid(), Role::Prod, &producer(), Some(key(8))).await,
        );
        assert_eq!(unknown.0, ErrorCode::NotFound);
        for (k, what) in [(Some(key(8)), "another session's key"), (None, "no key"), (Some(AppKey([0; 16])), "zeros")] {
            let answer = refusal_message(&format!("Hello with {what}"), c.hello(uid, Role::Prod, &producer(), k).await);
            assert_eq!(answer, unknown, "Hello with {what}: told apart from an unknown uid");
        }
        let status = c.status(uid).await.expect("status");
        assert_eq!(status.state, "Listening", "a refused Hello changed the session");
        assert!(status.prod_listeners.is_empty(), "a refused Hello set the producer's listeners");

        let acked = c.hello(uid, Role::Prod, &producer(), Some(key(7))).await.expect("Hello with the right key");
        assert_eq!(acked, listening.listeners);
        let answer = within(CALL, "the REQ", waiting).await.expect("REQ task").expect("REQ");
        assert_eq!(answer.prod_listeners, producer());
        c.update(uid, Role::Prod, &producer(), Some(creds(7))).await.expect("update");
        assert_eq!(await_state(&c, uid, "Established").await.targets, producer());
    });
}

#[test]
fn a_refused_request_says_once_which_facility_refused_it_and_what_to_change() {
    let _serial = shared();
    let dir = Scratch::new("cp-why");
    let prod = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let cons = Server::start(&dir.0, &ServerOpts { port_range: free_range(8), ..ServerOpts::default() }).unwrap();
    let mut flags = prod.client_flags();
    flags.extend(cons.client_flags());
    flags.extend(args(&["request", "--prod-s2cs", &prod.addr, "--cons-s2cs", &cons.addr, "--num-conn", "5"]));
    let out = run("s2uc", &flags, Duration::from_secs(30)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Nothing told the user to start a producer's controller for a session that never was.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.is_empty(), "s2uc announced a refused session: {stdout}");
    assert!(
        stderr.contains("at the producer's facility: no data server has 5 free ports (the most any has is 4)"),
        "names the facility and the reason: {stderr}"
    );
    assert_eq!(stderr.matches("resource exhausted").count(), 1, "the code once: {stderr}");

    // The gRPC status itself carries the reason, for any client (SciStream 1.2's print it).
    runtime().block_on(async {
        let c = client(&prod).await;
        let err = c.req(fresh_uid(), Role::Prod, 5, 0, Some(key(1))).await.expect_err("refused");
        let text = err.to_string();
        assert!(text.starts_with("resource exhausted: no data server has 5 free ports"), "{text}");
    });
}

/// A server tracing each input its sessions take (`-vv`), so a test can wait until a call has
/// reached its session instead of sleeping.
fn tracing_server(dir: &std::path::Path) -> Server {
    let opts = ServerOpts { port_range: free_range(4), extra: args(&["-vv"]), ..ServerOpts::default() };
    Server::start(dir, &opts).unwrap()
}

/// How many REQs the server's sessions have taken as inputs (from its trace).
fn reqs_taken(server: &Server) -> usize {
    server.log().lines().filter(|l| l.contains("session input") && l.contains("msg: Req")).count()
}

/// Waits (bounded, polling) until the server's sessions have taken `n` REQs.
async fn until_reqs_taken(server: &Server, n: usize) {
    let start = std::time::Instant::now();
    while reqs_taken(server) < n {
        assert!(start.elapsed() < CALL, "{} of {n} REQs reached their session within {CALL:?}", reqs_taken(server));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
