//! 1.2 defect: ten requests waiting for their Hello froze the server. Ours keeps serving other
//! sessions with a thousand waiting. A liveness check, not a benchmark: each round must finish
//! while every one of the thousand still waits (checked, not timed), within a bound below their
//! Hello timeout, so a server frozen until they time out cannot pass.

use std::time::{Duration, Instant};

use scistream_fsm::{Addr, Role};
use scistream_tests::{Scratch, Server, ServerOpts, free_range, listening};

use crate::testkit::{client, creds, exclusive, fresh_uid, key, ports, runtime, within};

const WAITING: usize = 1_000;
/// The waiting sessions' Hello timeout (and their calls' client timeout): none of them ends
/// before the rounds are done.
const HELLO: Duration = Duration::from_secs(300);
/// A full round on another session must finish within this while the others wait: far below
/// [`HELLO`], a bound on the wait, not a speed.
const ROUND: Duration = Duration::from_secs(20);

#[test]
fn a_thousand_sessions_waiting_for_their_hello_do_not_block_another_sessions_calls() {
    let _alone = exclusive();
    let dir = Scratch::new("cp-liveness");
    let opts =
        ServerOpts { port_range: free_range(1_100), hello_timeout: HELLO.as_secs_f64(), ..ServerOpts::default() };
    let server = Server::start(&dir.0, &opts).unwrap();
    runtime().block_on(async {
        let mut conns = Vec::new();
        for _ in 0..8 {
            conns.push(client(&server).await.with_timeout(HELLO));
        }
        let mut waiting = tokio::task::JoinSet::new();
        for n in 0..WAITING {
            let c = conns[n % conns.len()].clone();
            waiting.spawn(async move { c.req(fresh_uid(), Role::Prod, 1, 0, Some(key(n as u64))).await });
        }
        // Every one of them holds its port and waits for a Hello that never comes.
        let c = client(&server).await;
        let start = Instant::now();
        loop {
            let sessions = c.list().await.expect("list");
            let listening_now = sessions.iter().filter(|s| s.state == "Listening").count();
            if listening_now == WAITING {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{listening_now} of {WAITING} sessions listening after 90 s"
            );
            assert!(waiting.try_join_next().is_none(), "a waiting REQ finished without a Hello");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        eprintln!("{WAITING} sessions waiting for their Hello after {:?}", start.elapsed());
        let target = vec![Addr::new("127.0.0.1", 7300)];
        for round in 0..3 {
            let uid = fresh_uid();
            let started = Instant::now();
            let done = within(ROUND, "a consumer round", async {
                let l = c.req(uid, Role::Cons, 1, 0, Some(key(0))).await.expect("REQ");
                c.update(uid, Role::Cons, &target, Some(creds(round))).await.expect("update");
                c.release(uid).await.expect("release");
                l
            })
            .await;
            let took = started.elapsed();
            eprintln!("round {round}: REQ+update+release in {took:?}");
            // Done while all of them still wait (`len` counts finished tasks too).
            assert!(waiting.try_join_next().is_none(), "round {round}: a waiting REQ finished meanwhile");
            assert!(!listening(ports(&done.listeners)[0]), "round {round}: the released port still listens");
        }
        // `len` counts finished tasks too: ask whether any finished.
        assert!(waiting.try_join_next().is_none(), "the waiting REQs are still waiting");
        waiting.abort_all();
    });
    drop(server);
}
