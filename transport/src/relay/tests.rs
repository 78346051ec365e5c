use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const BOUND: Duration = Duration::from_secs(20);

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// A port nobody listens on, held (bound, not listening) so that nothing else takes it: a
/// connection to it is refused. `listen` on the socket makes it a target.
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}

fn at(port: u16) -> Addr {
    Addr::new("127.0.0.1", port)
}

/// An echo target: reads each connection to its end, then sends it all back and half-closes.
async fn echo_target() -> u16 {
    let (l, port) = listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).await.is_ok() {
                    let _ = s.write_all(&all).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    port
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Sends `data` through `port`, half-closes, and reads everything that comes back.
async fn round_trip(port: u16, data: Vec<u8>) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&data).await?;
        w.shutdown().await
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let (a, b) = tokio::join!(send, recv);
    a?;
    b?;
    Ok(back)
}

#[tokio::test]
async fn every_byte_arrives_over_many_concurrent_connections_with_sizes_across_buffer_boundaries() {
    let target = echo_target().await;
    let ((l1, p1), (l2, p2)) = (listener().await, listener().await);
    let relay = Relay::start("test", vec![l1, l2], vec![at(target)], Legs::Plain, Arc::default(), None);
    let sizes = [0, 1, BUF - 1, BUF, BUF + 1, 3 * BUF + 7, 1 << 20];
    let mut tasks = Vec::new();
    for (i, size) in sizes.iter().cycle().take(28).enumerate() {
        let port = if i % 2 == 0 { p1 } else { p2 };
        let data = pattern(*size, i as u8);
        tasks.push(tokio::spawn(async move { (data.clone(), round_trip(port, data).await) }));
    }
    let mut total = 0;
    for t in tasks {
        let (sent, back) = tokio::time::timeout(BOUND, t).await.expect("in time").expect("task");
        let back = back.expect("round trip");
        assert_eq!(back.len(), sent.len());
        assert!(back == sent, "bytes changed on the way");
        total += sent.len() as u64;
    }
    let t = relay.traffic();
    assert_eq!((t.bytes_in, t.bytes_out, t.total, t.failed), (total, total, 28, 0));
}

/// A target that answers every connection with its own name.
async fn named_target(name: &'static [u8]) -> u16 {
    let (l, port) = listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                let _ = s.write_all(name).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn connections_are_spread_round_robin_over_fewer_targets() {
    let (ta, tb) = (named_target(b"a").await, named_target(b"b").await);
    let mut ls = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let (l, p) = listener().await;
        ls.push(l);
        ports.push(p);
    }
    let relay = Relay::start("test", ls, vec![at(ta), at(tb)], Legs::Plain, Arc::default(), None);
    let mut reached = Vec::new();
    for p in &ports {
        reached.push(round_trip(*p, b"ping".to_vec()).await.expect("relayed"));
    }
    assert_eq!(reached, vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    assert_eq!(relay.traffic().total, 3);
}

#[tokio::test]
async fn a_half_close_is_passed_on_and_the_other_direction_keeps_flowing() {
    // The target answers only after it saw the client's end of stream.
    let (l, target) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.expect("read to end");
        s.write_all(format!("got {}", all.len()).as_bytes()).await.expect("answer");
        s.shutdown().await.expect("close");
    });
    let (lr, port) = listener().await;
    let _relay = Relay::start("test", vec![lr], vec![at(target)], Legs::Plain, Arc::default(), None);
    let back = tokio::time::timeout(BOUND, round_trip(port, vec![7; 1000])).await.expect("in time").expect("ok");
    assert_eq!(back, b"got 1000");
}

#[tokio::test]
async fn a_target_that_breaks_mid_stream_shows_as_an_error_at_the_client() {
    let (l, target) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let _ = s.write_all(&[1; 100]).await;
        let mut buf = [0u8; 10];
        let _ = s.read(&mut buf).await;
        s.set_zero_linger().expect("linger");
        drop(s); // a reset, not an end of stream
    });
    let (lr, port) = listener().await;
    let relay = Relay::start("test", vec![lr], vec![at(target)], Legs::Plain, Arc::default(), None);
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    c.write_all(b"hello").await.expect("send");
    let mut got = Vec::new();
    let end = tokio::time::timeout(BOUND, c.read_to_end(&mut got)).await.expect("in time");
    assert!(end.is_err(), "a broken target must not look like a clean end of stream (read {} bytes)", got.len());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = relay.traffic();
    assert_eq!((t.failed, t.resets, t.dial_failures), (1, 1, 0), "{t:?}");
    assert_eq!(t.problem, None, "the target was reached: the path works, one connection broke");
}

#[tokio::test]
async fn a_target_that_cannot_be_reached_makes_the_path_degraded_until_a_connection_reaches_it() {
    // A port nobody listens on, then a target listening there.
    let (reserved, target) = closed_port();
    let (lr, port) = listener().await;
    let relay = Relay::start("test", vec![lr], vec![at(target)], Legs::Plain, Arc::default(), None);
    for _ in 0..3 {
        let end = tokio::time::timeout(BOUND, round_trip(port, vec![1; 10])).await.expect("in time");
        assert!(end.is_err() || end.is_ok_and(|b| b.is_empty()), "nothing comes back from a target that is not there");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = relay.traffic();
    assert_eq!((t.dial_failures, t.failed, t.resets), (3, 3, 0), "{t:?}");
    let problem = t.problem.expect("the path is degraded");
    assert!(problem.starts_with(&format!("cannot reach the target 127.0.0.1:{target}: ")), "{problem}");
    // The target comes up: the next connection reaches it, and the path works again.
    let l = reserved.listen(16).expect("listen on the target's port");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all).await;
        let _ = s.write_all(&all).await;
    });
    let back = tokio::time::timeout(BOUND, round_trip(port, vec![2; 10])).await.expect("in time").expect("ok");
    assert_eq!(back, vec![2; 10]);
    assert_eq!(relay.traffic().problem, None);
    assert_eq!(relay.traffic().dial_failures, 3, "the count stays");
}

/// The consumer gateway (plain in, TLS out with the credentials `cons`) dialling the producer
/// gateway (TLS in with `prod`, plain out to `target`). Returns the consumer-side port, the
/// producer gateway's WAN port and both relays.
async fn gateways(prod: u8, cons: u8, target: u16) -> (u16, u16, Relay, Relay) {
    let id = |c: u8| crate::wan::SessionIdentity::derive(&scistream_fsm::Credentials([c; 32])).expect("identity");
    let (wan, wan_port) = listener().await;
    let prod_gw = Relay::start(
        "prod",
        vec![wan],
        vec![at(target)],
        Legs::AcceptTls(tokio_rustls::TlsAcceptor::from(id(prod).server_config().expect("server config"))),
        Arc::default(),
        None,
    );
    let (lan, lan_port) = listener().await;
    let cons_gw = Relay::start(
        "cons",
        vec![lan],
        vec![at(wan_port)],
        Legs::DialTls(tokio_rustls::TlsConnector::from(id(cons).client_config().expect("client config"))),
        Arc::default(),
        None,
    );
    (lan_port, wan_port, cons_gw, prod_gw)
}

#[tokio::test]
async fn a_producer_gateway_that_is_not_the_session_s_makes_the_consumer_side_degraded() {
    let target = echo_target().await;
    // Each gateway holds another session's credentials.
    let (lan_port, wan_port, cons_gw, prod_gw) = gateways(1, 2, target).await;
    let end = tokio::time::timeout(BOUND, round_trip(lan_port, vec![3; 10])).await.expect("in time");
    assert!(end.is_err() || end.is_ok_and(|b| b.is_empty()), "nothing crosses");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = cons_gw.traffic();
    assert_eq!(t.handshake_failures, 1, "{t:?}");
    let problem = t.problem.expect("degraded at the consumer's gateway");
    assert!(
        problem.starts_with(&format!("the producer's gateway at 127.0.0.1:{wan_port} did not authenticate")),
        "{problem}"
    );
    assert_eq!(prod_gw.traffic().refused, 1, "and refused at the producer's");
}

#[tokio::test]
async fn a_client_that_breaks_mid_stream_shows_as_an_error_at_the_target() {
    let (l, target) = listener().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut got = Vec::new();
        let _ = tx.send(s.read_to_end(&mut got).await.map(|_| got.len()));
    });
    let (lr, port) = listener().await;
    let _relay = Relay::start("test", vec![lr], vec![at(target)], Legs::Plain, Arc::default(), None);
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    c.write_all(&[9; 5000]).await.expect("send");
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.set_zero_linger().expect("linger");
    drop(c);
    let at_target = tokio::time::timeout(BOUND, rx).await.expect("in time").expect("answer");
    assert!(at_target.is_err(), "the target saw a clean end after {at_target:?} bytes");
}

#[tokio::test]
async fn a_missing_target_resets_the_client_instead_of_closing_cleanly() {
    let (_gone, target) = closed_port();
    let (lr, port) = listener().await;
    let _relay = Relay::start("test", vec![lr], vec![at(target)], Legs::Plain, Arc::default(), None);
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut got = Vec::new();
    let end = tokio::time::timeout(BOUND, c.read_to_end(&mut got)).await.expect("in time");
    assert!(end.is_err(), "clean end of stream from a relay with no target");
}

#[tokio::test]
async fn dropping_the_relay_closes_its_listeners_and_connections() {
    let target = echo_target().await;
    let (lr, port) = listener().await;
    let relay = Relay::start("test", vec![lr], vec![at(target)], Legs::Plain, Arc::default(), None);
    let mut c = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    c.write_all(b"x").await.expect("send");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(relay.traffic().open, 1);
    drop(relay);
    // (A process another test forks at that instant holds a copy until it execs: bounded.)
    let mut closed = false;
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "listener still open 5 s after the relay was dropped");
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(BOUND, c.read(&mut buf)).await.expect("in time");
    // Released mid-stream: an error, not a clean end a consumer could take for a complete stream.
    assert!(r.is_err(), "a released connection must reset, got {r:?}");
}

mod wan_chain {
    use super::*;
    use crate::wan::SessionIdentity;

    /// consumer → [consumer gateway: plain in, TLS out] → [producer gateway: TLS in, plain out]
    /// → echo producer. Returns the consumer-side port and both relays.
    async fn chain(creds: u8, target: u16) -> (u16, u16, Relay, Relay) {
        gateways(creds, creds, target).await
    }

    #[tokio::test]
    async fn every_byte_crosses_both_gateways_over_the_sessions_tls_leg() {
        let target = echo_target().await;
        let (port, _, cons_gw, prod_gw) = chain(5, target).await;
        let mut tasks = Vec::new();
        for (i, size) in [0, 1, BUF + 3, 1 << 20, 3 * BUF].into_iter().enumerate() {
            let data = pattern(size, i as u8);
            tasks.push(tokio::spawn(async move { (data.clone(), round_trip(port, data).await) }));
        }
        for t in tasks {
            let (sent, back) = tokio::time::timeout(BOUND, t).await.expect("in time").expect("task");
            assert!(back.expect("round trip") == sent, "bytes changed crossing the gateways");
        }
        assert_eq!(prod_gw.traffic().refused, 0);
        assert_eq!(cons_gw.traffic().bytes_in, prod_gw.traffic().bytes_in);
    }

    /// A producer that counts the connections reaching it.
    async fn counting_target() -> (u16, Arc<AtomicU64>) {
        let (l, port) = listener().await;
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((_s, _)) = l.accept().await {
                s2.fetch_add(1, Ordering::Relaxed);
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn a_wan_connection_that_does_not_authenticate_never_reaches_the_producer() {
        let (target, reached) = counting_target().await;
        let (_, wan_port, _cons_gw, prod_gw) = chain(5, target).await;
        // Plain TCP straight at the WAN port, bytes and all.
        let mut raw = TcpStream::connect(("127.0.0.1", wan_port)).await.expect("connect");
        let _ = raw.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(BOUND, raw.read_to_end(&mut sink)).await;
        // Another session's gateway.
        let stranger = SessionIdentity::derive(&scistream_fsm::Credentials([6; 32])).expect("identity");
        let tcp = TcpStream::connect(("127.0.0.1", wan_port)).await.expect("connect");
        let connector = tokio_rustls::TlsConnector::from(stranger.client_config().expect("config"));
        if let Ok(mut tls) = connector.connect(SessionIdentity::server_name(), tcp).await {
            let _ = tls.write_all(b"injected").await;
            let _ = tls.read_to_end(&mut sink).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(reached.load(Ordering::Relaxed), 0, "an unauthenticated connection reached the producer");
        assert_eq!(prod_gw.traffic().refused, 2);
        assert_eq!(prod_gw.traffic().bytes_in, 0);
    }
}

#[tokio::test]
async fn the_producers_data_is_held_to_the_sessions_rate_across_its_connections() {
    // A producer that sends 320 KiB on each of two connections; the session may carry 256 KiB/s.
    let (l, target) = listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let _ = s.write_all(&vec![5u8; 320 * 1024]).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let (lr, port) = listener().await;
    let rate = 256 * 1024;
    let _relay = Relay::start("test", vec![lr], vec![at(target)], Legs::Plain, Arc::default(), Some(rate));
    let t = std::time::Instant::now();
    let read_all = |port| async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        s.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("read");
        got.len()
    };
    let (a, b) = tokio::join!(read_all(port), read_all(port));
    let took = t.elapsed().as_secs_f64();
    assert_eq!(a + b, 640 * 1024);
    // 640 KiB at 256 KiB/s, less one burst of 64 KiB: 2.25 s. A lower bound only (a relay that
    // paces each connection on its own, or not at all, is faster), which a slow machine cannot
    // break; how exactly the bucket paces is proven on tokio's paused clock below.
    let ideal = (640.0 - 64.0) / 256.0;
    assert!(took > ideal * 0.95, "took {took:.2} s for an ideal {ideal:.2} s");
}

#[tokio::test(start_paused = true)]
async fn a_shared_bucket_paces_two_takers_to_its_rate_after_one_burst() {
    // Two connections' worth (320 KiB each, in 16 KiB reads) through one bucket of 256 KiB/s,
    // whose burst is one buffer (64 KiB): on the paused clock the time taken is the rate's
    // exactly, to the timer's millisecond; a bucket per connection would take half as long,
    // one that charged twice twice as long.
    let bucket = Arc::new(Bucket::new(256 * 1024));
    let t = tokio::time::Instant::now();
    let take = |b: Arc<Bucket>| async move {
        for _ in 0..20 {
            b.take(16 * 1024).await;
        }
    };
    tokio::join!(take(bucket.clone()), take(bucket));
    let took = t.elapsed();
    let ideal = Duration::from_secs_f64((640.0 - 64.0) / 256.0);
    assert!(took.abs_diff(ideal) <= Duration::from_millis(5), "took {took:?} on the paused clock, not {ideal:?}");
}

#[test]
fn a_session_without_credentials_gets_plain_legs_only_when_allowed() {
    use scistream_fsm::{Credentials, Role};
    let none = Credentials::default();
    assert!(matches!(Legs::for_session(Role::Prod, &none, false), Err(crate::wan::WanError::PlainNotAllowed)));
    assert!(matches!(Legs::for_session(Role::Cons, &none, true), Ok(Legs::Plain)));
    assert!(matches!(Legs::for_session(Role::Prod, &Credentials([3; 32]), false), Ok(Legs::AcceptTls(_))));
    assert!(matches!(Legs::for_session(Role::Cons, &Credentials([3; 32]), false), Ok(Legs::DialTls(_))));
}
