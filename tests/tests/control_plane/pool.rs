//! 1.2 defects: ports never returned to the pool (on release or when the Hello never came),
//! proxies left running after release, and errors reported as UNKNOWN. Ours closes and returns
//! every port on release and on the Hello timeout (DEADLINE_EXCEEDED), and refuses a request
//! it cannot serve with RESOURCE_EXHAUSTED.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use scistream_fsm::{ErrorCode, Role};
use scistream_tests::{Scratch, Server, ServerOpts, free_range, listening};

use crate::testkit::{
    await_state, client, eventually, fresh_uid, key, ports, range_ports, refusal, runtime, shared, within,
};

#[test]
fn released_ports_return_to_the_pool_and_are_handed_out_again() {
    let _serial = shared();
    let dir = Scratch::new("cp-pool");
    let range = free_range(4);
    let server = Server::start(&dir.0, &ServerOpts { port_range: range.clone(), ..ServerOpts::default() }).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        let (a, b) = (fresh_uid(), fresh_uid());
        let la = c.req(a, Role::Cons, 2, 0, Some(key(0))).await.expect("REQ a");
        let lb = c.req(b, Role::Cons, 2, 0, Some(key(0))).await.expect("REQ b");
        let held: BTreeSet<u16> = ports(&la.listeners).into_iter().chain(ports(&lb.listeners)).collect();
        assert_eq!(held, range_ports(&range).collect(), "two sessions of 2 hold the whole range of 4");
        assert_eq!(
            refusal("REQ on a full range", c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(0))).await),
            ErrorCode::ResourceExhausted
        );

        for uid in [a, b] {
            c.release(uid).await.expect("release");
        }
        for port in &held {
            assert!(!listening(*port), "port {port} still listens after release");
        }
        let again =
            c.req(fresh_uid(), Role::Cons, 4, 0, Some(key(0))).await.expect("REQ for the whole range after release");
        assert_eq!(ports(&again.listeners).into_iter().collect::<BTreeSet<_>>(), held, "the released ports again");
        for port in &held {
            assert!(listening(*port), "port {port} handed out again but not listening");
        }
    });
}

#[test]
fn a_producer_whose_hello_never_comes_times_out_with_deadline_exceeded_and_frees_its_ports() {
    let _serial = shared();
    let dir = Scratch::new("cp-timeout");
    let range = free_range(3);
    let opts = ServerOpts { port_range: range.clone(), hello_timeout: 3.0, ..ServerOpts::default() };
    let server = Server::start(&dir.0, &opts).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        let uid = fresh_uid();
        let started = Instant::now();
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.req(uid, Role::Prod, 3, 0, Some(key(1))).await }
        });
        // While it waits, the session holds the whole range.
        let listening_state = await_state(&c, uid, "Listening").await;
        assert_eq!(ports(&listening_state.listeners), range_ports(&range).collect::<Vec<_>>());
        for port in range_ports(&range) {
            assert!(listening(port), "port {port} of the waiting session does not listen");
        }

        let answer = within(Duration::from_secs(12), "the REQ's timeout", waiting).await.expect("REQ task");
        let waited = started.elapsed();
        assert_eq!(refusal("REQ without Hello", answer), ErrorCode::DeadlineExceeded);
        // A lower bound only; the 12 s bound above (the harness's default Hello timeout is 30 s)
        // is what fails a server that ignores --hello-timeout.
        assert!(waited >= Duration::from_millis(2900), "refused after {waited:?}, before the 3 s Hello timeout");
        let failed = await_state(&c, uid, "Failed").await;
        assert_eq!(failed.failure, Some(ErrorCode::DeadlineExceeded));

        for port in range_ports(&range) {
            eventually(Duration::from_secs(2), &format!("port {port} closed after the timeout"), || !listening(port));
        }
        let again = c
            .req(fresh_uid(), Role::Cons, 3, 0, Some(key(0)))
            .await
            .expect("REQ for the whole range after the timeout");
        assert_eq!(ports(&again.listeners), range_ports(&range).collect::<Vec<_>>(), "the timed-out ports again");
    });
}

#[test]
fn a_request_larger_than_the_free_ports_is_refused_with_resource_exhausted() {
    let _serial = shared();
    let dir = Scratch::new("cp-exhausted");
    let range = free_range(3);
    let server = Server::start(&dir.0, &ServerOpts { port_range: range.clone(), ..ServerOpts::default() }).unwrap();
    runtime().block_on(async {
        let c = client(&server).await;
        let too_big = c.req(fresh_uid(), Role::Cons, 4, 0, Some(key(0))).await;
        assert_eq!(refusal("REQ for 4 of 3 ports", too_big), ErrorCode::ResourceExhausted);
        // The refused request took nothing: the whole range is still free, then it is not.
        let all = c.req(fresh_uid(), Role::Cons, 3, 0, Some(key(0))).await.expect("REQ for the whole range");
        assert_eq!(ports(&all.listeners), range_ports(&range).collect::<Vec<_>>());
        let one_more = c.req(fresh_uid(), Role::Prod, 1, 0, Some(key(2))).await;
        assert_eq!(refusal("REQ on a full range", one_more), ErrorCode::ResourceExhausted);
        // Refused at admission (the control server knows its data server's pool): nothing of
        // either refused REQ is held or listed, only the session that fits.
        let status = c.list().await.expect("list");
        assert_eq!(status.len(), 1, "only the admitted session is listed: {status:?}");
        assert_eq!(status[0].state, "Listening");
    });
}
