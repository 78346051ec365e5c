//! The embedded data server's bind failures: a port of the range that another process holds is
//! set aside for good, and the session that drew it gets other ports and works.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::Duration;

use scistream_fsm::{Addr, ErrorCode, Role};
use scistream_tests::{Scratch, Server, ServerOpts, free_range, listening};

use crate::testkit::{
    await_state, client, creds, eventually, fresh_uid, key, ports, range_ports, refusal, runtime, shared,
};

#[test]
fn a_port_held_by_another_process_is_never_handed_out_and_the_session_gets_others() {
    let _serial = shared();
    let dir = Scratch::new("cp-held");
    let range = free_range(4);
    let all: Vec<u16> = range_ports(&range).collect();
    // The pool hands out its lowest free ports first: the first request draws this one.
    let held = all[0];
    let other_process = TcpListener::bind(("127.0.0.1", held)).expect("holding the range's first port");
    let server = Server::start(&dir.0, &ServerOpts { port_range: range.clone(), ..ServerOpts::default() }).unwrap();
    let free: BTreeSet<u16> = all[1..].iter().copied().collect();
    runtime().block_on(async {
        let c = client(&server).await;
        let prod = vec![Addr::new("127.0.0.1", 7500), Addr::new("127.0.0.1", 7501), Addr::new("127.0.0.1", 7502)];
        let uid = fresh_uid();
        let (answer, acked) = tokio::join!(c.req(uid, Role::Prod, 3, 0, Some(key(1))), async {
            await_state(&c, uid, "Listening").await;
            c.hello(uid, Role::Prod, &prod, Some(key(1))).await
        });
        let answer = answer.expect("REQ drawing the held port");
        assert_eq!(acked.expect("Hello"), answer.listeners);
        let got: BTreeSet<u16> = ports(&answer.listeners).into_iter().collect();
        assert_eq!(got, free, "the session gets the three free ports, never the held {held}");
        for port in &got {
            assert!(listening(*port), "port {port} of the session does not listen");
        }
        c.update(uid, Role::Prod, &prod, Some(creds(1))).await.expect("update");
        assert_eq!(await_state(&c, uid, "Established").await.targets, prod);
        c.release(uid).await.expect("release");

        // Set aside for good: only three ports are left to hand out.
        let four = c.req(fresh_uid(), Role::Cons, 4, 0, Some(key(0))).await;
        assert_eq!(refusal("REQ for the whole range with a port held", four), ErrorCode::ResourceExhausted);
        let three = c.req(fresh_uid(), Role::Cons, 3, 0, Some(key(0))).await.expect("REQ for the three usable ports");
        assert_eq!(ports(&three.listeners).into_iter().collect::<BTreeSet<_>>(), free);
    });
    // The other process's socket was never touched.
    let probe = std::net::TcpStream::connect(("127.0.0.1", held)).expect("the held port still accepts");
    other_process.set_nonblocking(true).expect("nonblocking");
    eventually(Duration::from_secs(2), "the other process accepts on its port", || other_process.accept().is_ok());
    drop(probe);
}
