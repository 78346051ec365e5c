//! The facility's policy end to end: destinations refused before anything is dialled, naming
//! the rule; quotas refusing the session beyond the limit and reloaded on SIGHUP; anonymous
//! service on a public address only by name; the audit trail of each decision.

use std::time::Duration;

use scistream_fsm::{Addr, ErrorCode, Role};
use scistream_tests::{Scratch, Server, ServerOpts, args, free_range, http_get, run};
use scistream_transport::client::CallError;

use crate::testkit::{
    await_state, client, creds, eventually, fresh_uid, key, metrics_of, port_of, refusal, refusal_message, runtime,
    scrape, shared, value,
};

/// The message of a refusal with `code`; panics on anything else.
fn refused_saying<T: std::fmt::Debug>(what: &str, code: ErrorCode, r: Result<T, CallError>) -> String {
    let (got, message) = refusal_message(what, r);
    assert_eq!(got, code, "{what}: {message}");
    message
}

/// The audit file's records.
fn audit_of(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}"))).collect()
}

#[test]
fn an_anonymous_server_on_a_public_address_refuses_to_start_unless_the_operator_says_allow_anonymous() {
    let _serial = shared();
    // 192.0.2.1 (documentation range) is never bound: the check comes before any listener.
    let base = ["--insecure", "--port", "0", "--listener-ip", "192.0.2.1", "--port-range", "40000-40001"];
    let out = run("s2cs", &args(&base), Duration::from_secs(20)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--allow-anonymous") && err.contains("192.0.2.1"), "says why and what to say: {err}");
    let mut named = args(&base);
    named.push("--allow-anonymous".into());
    let out = run("s2cs", &named, Duration::from_secs(20)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Past the check, it fails only because the address is not this host's.
    assert!(!err.contains("authentication is off"), "--allow-anonymous passes the check: {err}");
    assert!(err.contains("--allow-anonymous: authentication is OFF"), "logged at start: {err}");
    assert!(err.contains("cannot listen on 192.0.2.1"), "{err}");
}

#[test]
fn an_anonymous_server_says_so_in_its_metrics_and_health() {
    let _serial = shared();
    let dir = Scratch::new("pol-anon-metrics");
    let extra = args(&["--metrics-addr", "127.0.0.1:0"]);
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(2), extra, ..Default::default() }).unwrap();
    let m = metrics_of(&server);
    let (code, body) = http_get(&m, "/healthz").unwrap();
    assert_eq!((code, body.contains("anonymous")), (200, true), "{body}");
    let metrics = scrape(&m);
    assert_eq!(value(&metrics, "scistream_anonymous"), Some(1.0), "{metrics}");
}

#[test]
fn targets_and_peers_outside_the_policy_are_permission_denied_naming_the_rule_and_audited() {
    let _serial = shared();
    let dir = Scratch::new("pol-targets");
    let audit = dir.0.join("audit.jsonl");
    let extra = args(&[
        "--allow-target",
        "127.0.0.1:7100-7101",
        "--allow-peer",
        "127.0.0.1:7200",
        "--audit",
        audit.to_str().unwrap(),
    ]);
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), extra, ..Default::default() }).unwrap();
    let own = port_of(&server.addr);
    runtime().block_on(async {
        let c = client(&server).await;
        // A consumer's gateway dials peers: only allow-peers.
        let cons = fresh_uid();
        c.req(cons, Role::Cons, 1, 0, Some(key(1))).await.expect("consumer REQ");
        let why = refused_saying(
            "update to a peer outside allow-peers",
            ErrorCode::PermissionDenied,
            c.update(cons, Role::Cons, &[Addr::new("127.0.0.1", 7100)], Some(creds(1))).await,
        );
        assert!(why.contains("allow-peers") && why.contains("127.0.0.1:7100"), "{why}");
        c.update(cons, Role::Cons, &[Addr::new("127.0.0.1", 7200)], Some(creds(1))).await.expect("a peer it admits");

        // A producer's Hello names its targets: only allow-targets, never the server's own port.
        let prod = fresh_uid();
        let waiting = {
            let c = client(&server).await;
            tokio::spawn(async move { c.req(prod, Role::Prod, 1, 0, Some(key(2))).await })
        };
        await_state(&c, prod, "Listening").await;
        for (target, rule) in
            [(Addr::new("127.0.0.1", 22), "allow-targets"), (Addr::new("127.0.0.1", own), "own-ports")]
        {
            let why = refused_saying(
                &format!("Hello naming {target}"),
                ErrorCode::PermissionDenied,
                c.hello(prod, Role::Prod, std::slice::from_ref(&target), Some(key(2))).await,
            );
            assert!(why.contains(rule), "{target}: {why}");
        }
        // A name is resolved once and its address checked: localhost is 127.0.0.1 here.
        let acked = c.hello(prod, Role::Prod, &[Addr::new("localhost", 7100)], Some(key(2))).await;
        acked.expect("a Hello within allow-targets");
        let answered = waiting.await.expect("task").expect("the producer's REQ");
        assert_eq!(answered.prod_listeners, vec![Addr::new("127.0.0.1", 7100)], "the resolved address is kept");
        assert_eq!(refusal("unrelated", c.release(fresh_uid()).await), ErrorCode::NotFound);
    });
    let records = audit_of(&audit);
    let of = |decision: &str| records.iter().filter(|r| r["decision"] == decision).collect::<Vec<_>>();
    assert_eq!(of("created").len(), 2, "{records:?}");
    let refused = of("targets-refused");
    assert_eq!(refused.len(), 3, "{records:?}");
    assert!(refused.iter().all(|r| r["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:"))), "{refused:?}");
    assert!(refused.iter().any(|r| r["addrs"][0] == "127.0.0.1:22"), "{refused:?}");
    assert_eq!(of("targets-accepted").len(), 2, "{records:?}");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains("authorization") && !text.contains("key"), "no secret in the trail: {text}");
}

#[test]
fn a_quota_refuses_the_session_beyond_its_max_and_a_reload_applies_a_new_one() {
    let _serial = shared();
    let dir = Scratch::new("pol-quota");
    let config = dir.0.join("s2cs.toml");
    let quota =
        |max: u32| format!("[[quota]]\nname = \"everyone\"\nidentities = [\"anonymous\"]\nmax-sessions = {max}\n");
    std::fs::write(&config, quota(2)).unwrap();
    let extra = args(&["--config", config.to_str().unwrap()]);
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(8), extra, ..Default::default() }).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        for _ in 0..2 {
            c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(1))).await.expect("within the quota");
        }
        let why = refused_saying(
            "the third session",
            ErrorCode::ResourceExhausted,
            c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(1))).await,
        );
        assert!(why.contains("max-sessions 2"), "{why}");
    });
    std::fs::write(&config, quota(3)).unwrap();
    server.signal("HUP").unwrap();
    eventually(Duration::from_secs(10), "the reload is logged", || server.log().contains("policy applied"));
    runtime().block_on(async {
        let c = client(&server).await;
        c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(1))).await.expect("the reloaded quota admits a third");
    });
}
