//! 1.2 defects: one response object and one proxy object shared by every session, so
//! concurrent sessions received each other's listeners and forwarded to each other's
//! producers. Ours keeps each session's listeners, producer and targets its own.

use std::collections::BTreeSet;
use std::time::Duration;

use scistream_fsm::{Addr, ErrorCode, Role, Uid};
use scistream_tests::{Scratch, Server, ServerOpts, free_range, listening};
use scistream_transport::client::{CallError, ControlClient};

use crate::testkit::{await_state, client, creds, fresh_uid, key, ports, runtime, shared, within};

const SESSIONS: u64 = 60;
const NUM_CONN: u16 = 2;

/// The producer's controller: says Hello until the REQ has made the session.
async fn hello(c: &ControlClient, uid: Uid, n: u64, prod: &[Addr]) -> Vec<Addr> {
    loop {
        match c.hello(uid, Role::Prod, prod, Some(key(n))).await {
            Ok(l) => return l,
            Err(CallError::Status { code: ErrorCode::NotFound, .. }) => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("Hello of session {n}: {e}"),
        }
    }
}

/// One session from REQ to established; its listeners.
async fn session(c: ControlClient, n: u64) -> (Uid, Vec<Addr>) {
    let uid = fresh_uid();
    // Each producer listens somewhere only its session knows.
    let prod: Vec<Addr> = (0..NUM_CONN).map(|i| Addr::new(format!("producer-{n}.example"), 9000 + i)).collect();
    let producer_req = c.clone().with_timeout(Duration::from_secs(30));
    let req = producer_req.req(uid, Role::Prod, NUM_CONN, 0, Some(key(n)));
    let (answer, acked) = tokio::join!(req, hello(&c, uid, n, &prod));
    let answer = answer.unwrap_or_else(|e| panic!("REQ of session {n}: {e}"));
    assert_eq!(answer.prod_listeners, prod, "session {n} got another session's producer listeners");
    assert_eq!(acked, answer.listeners, "session {n}: the Hello and the REQ disagree on the listeners");
    assert_eq!(answer.listeners.len(), usize::from(NUM_CONN));
    c.update(uid, Role::Prod, &prod, Some(creds(n))).await.unwrap_or_else(|e| panic!("update of session {n}: {e}"));
    let status = await_state(&c, uid, "Established").await;
    assert_eq!(status.listeners, answer.listeners, "session {n}: status shows other listeners");
    assert_eq!(status.prod_listeners, prod, "session {n}: status shows another producer");
    assert_eq!(status.targets, prod, "session {n} forwards to another session's producer");
    (uid, answer.listeners)
}

#[test]
fn sixty_concurrent_sessions_each_get_their_own_listeners_and_producer() {
    let _serial = shared();
    let dir = Scratch::new("cp-isolation");
    let range = free_range(u16::try_from(SESSIONS).unwrap() * NUM_CONN + 10);
    let server = Server::start(&dir.0, &ServerOpts { port_range: range, ..ServerOpts::default() }).unwrap();
    runtime().block_on(async {
        // A few connections, many calls in flight on each, as several users would.
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(client(&server).await);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..SESSIONS {
            let c = clients[usize::try_from(n).unwrap() % clients.len()].clone();
            tasks.spawn(session(c, n));
        }
        let mut sessions = Vec::new();
        while let Some(done) = within(Duration::from_secs(60), "the sessions", tasks.join_next()).await {
            sessions.push(done.expect("a session task panicked"));
        }
        let mut seen = BTreeSet::new();
        for (uid, listeners) in &sessions {
            for port in ports(listeners) {
                assert!(seen.insert(port), "port {port} handed to session {uid} and to another");
                assert!(listening(port), "port {port} of session {uid} does not listen");
            }
        }
        assert_eq!(seen.len(), sessions.len() * usize::from(NUM_CONN));

        let c = &clients[0];
        let mut releases = tokio::task::JoinSet::new();
        for (uid, _) in &sessions {
            let (c, uid) = (c.clone(), *uid);
            releases.spawn(async move { c.release(uid).await });
        }
        while let Some(done) = within(Duration::from_secs(30), "the releases", releases.join_next()).await {
            done.expect("a release task panicked").expect("release");
        }
        for port in seen {
            assert!(!listening(port), "port {port} still listens after its session's release");
        }
    });
}
