//! Issue 11's attacks on the control ports, through the real daemons: one TLS connection
//! opening thousands of HTTP/2 streams it never finishes (which took a server from 28 to
//! 591 MB), and TLS connections that complete their handshake and say nothing (which stayed
//! open, all 500 of them). Each runs with authentication off and on; the attackers send no
//! token. The bounds are on correctness (refused, closed, answered within a generous bound),
//! not on speed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;

use scistream_fsm::Role;
use scistream_tests::authsrv::{AuthServer, Facility};
use scistream_tests::flood::{self, Flood};
use scistream_tests::{Node, Scratch, Server, ServerOpts, args, free_range, rss_mb};
use scistream_transport::client::ControlClient;
use scistream_transport::ports::PortLimits;

use crate::testkit::{connect_as, exclusive, fresh_uid, key, metrics_of, runtime, scrape, value, within};

/// A legitimate call must be answered within this while an attack runs (its normal latency is
/// a few milliseconds; the bound only tells "served" from "starved").
const ANSWERED: Duration = Duration::from_secs(5);
/// Streams the flood opens at once: without a stream limit they cost the server about 190 MB.
const STREAMS: u32 = 20_000;
/// How much a flooded server's resident memory may grow over its baseline: what the streams
/// within the limit, the frames in flight and the allocator's slack take (a few MB measured),
/// far below what the flood takes without the limit.
const RSS_MARGIN_MB: f64 = 48.0;
const SCOPE: &str = "scistream:facility-a";

/// The control server under attack and a legitimate client of it (with a token when
/// authentication is on).
struct Target {
    server: Server,
    legit: ControlClient,
    /// Where the server serves its metrics.
    metrics: String,
    _auth: Option<AuthServer>,
}

impl Target {
    /// The value of the unlabelled series `name` on the server's `/metrics`, now.
    fn metric(&self, name: &str) -> u64 {
        let text = scrape(&self.metrics);
        value(&text, name).unwrap_or_else(|| panic!("no series {name} in:\n{text}")) as u64
    }

    /// Waits until exactly `n` connections hold a slot on the server's port (what the server
    /// counts, not what the client saw), bounded by [`ANSWERED`].
    async fn slots_held(&self, n: u64, what: &str) {
        let start = Instant::now();
        loop {
            let held = self.metric("scistream_port_connections");
            if held == n {
                return;
            }
            assert!(start.elapsed() < ANSWERED, "{what}: {held} connections hold a slot after {ANSWERED:?}, not {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn target(dir: &Path, auth: bool, flags: &[&str]) -> Target {
    let facility = Facility { client_id: "facility-a".into(), secret: "secret-a".into() };
    let auth = auth.then(|| AuthServer::start(std::slice::from_ref(&facility)).unwrap());
    let mut extra = auth.as_ref().map(|a| a.s2cs_flags(&facility, SCOPE)).unwrap_or_default();
    extra.extend(args(flags));
    extra.extend(args(&["--metrics-addr", "127.0.0.1:0"]));
    let opts = ServerOpts { port_range: free_range(4), extra, ..ServerOpts::default() };
    let server = Server::start(dir, &opts).unwrap();
    let metrics = metrics_of(&server);
    let token = auth.as_ref().map(|a| a.mint("alice", SCOPE, 600));
    let legit = connect_as(&server.addr, server.cert.as_deref().unwrap(), token.as_deref()).await;
    let t = Target { server, legit, metrics, _auth: auth };
    // With authentication on, a caller without a token is refused: the server checks.
    if t._auth.is_some() {
        let anonymous = connect_as(&t.server.addr, t.server.cert.as_deref().unwrap(), None).await;
        assert!(anonymous.list().await.is_err(), "authentication is on, yet a call without a token was served");
        drop(anonymous);
        // Its connection closes as the channel drops: the tests count slots once the server
        // has seen it go.
        t.slots_held(1, "the anonymous connection gone").await;
    }
    t
}

/// Calls `list` every `every` until `stop`; each call's latency and whether it was served.
async fn keep_calling(c: ControlClient, every: Duration, stop: Arc<AtomicBool>) -> Vec<(Duration, Result<(), String>)> {
    let mut calls = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        let r = tokio::time::timeout(ANSWERED, c.list()).await;
        let r = match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("not answered within {ANSWERED:?}")),
        };
        calls.push((t.elapsed(), r));
        tokio::time::sleep(every).await;
    }
    calls
}

/// Every call was served within [`ANSWERED`]; there were at least `min` of them.
fn all_served(what: &str, calls: &[(Duration, Result<(), String>)], min: usize) {
    assert!(calls.len() >= min, "{what}: only {} legitimate calls were made", calls.len());
    for (took, r) in calls {
        assert!(r.is_ok() && *took < ANSWERED, "{what}: a legitimate call was not served: {r:?} after {took:?}");
    }
    let worst = calls.iter().map(|c| c.0).max().unwrap_or_default();
    eprintln!("{what}: {} legitimate calls served, slowest {worst:?}", calls.len());
}

/// The largest resident memory of `pid` seen until `stop`, sampled every 10 ms.
fn peak_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak = rss_mb(pid);
        while !stop.load(Ordering::SeqCst) {
            peak = peak.max(rss_mb(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

fn stream_flood(auth: bool) {
    let _alone = exclusive();
    let dir = Scratch::new(if auth { "limits-flood-auth" } else { "limits-flood" });
    runtime().block_on(async {
        // The defaults: no limit flag.
        let t = target(&dir.0, auth, &[]).await;
        let pid = t.server.pid();
        for _ in 0..20 {
            within(ANSWERED, "a call before the flood", t.legit.list()).await.expect("list before the flood");
        }
        let baseline = rss_mb(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = peak_rss(pid, stop.clone());
        let caller = tokio::spawn(keep_calling(t.legit.clone(), Duration::from_millis(20), stop.clone()));

        let cfg = flood::client_config(t.server.cert.as_deref().unwrap()).unwrap();
        let attack = Flood::start(&t.server.addr, &cfg, STREAMS, None).await.unwrap();
        let report = attack.settled(Duration::from_secs(1), Duration::from_secs(60)).await;
        // Hold the accepted streams a moment longer while the legitimate calls go on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        let during = caller.await.unwrap();
        let peak = sampler.join().unwrap();
        drop(attack);
        eprintln!("flood: {report:?}; RSS {baseline:.1} MB before, peak {peak:.1} MB");

        let limit = PortLimits::DEFAULT.max_streams;
        assert_eq!(report.max_streams, Some(limit), "the server does not advertise its stream limit");
        assert!(report.refused > 0, "no stream was refused with REFUSED_STREAM: {report:?}");
        // The streams the server took: those it neither refused nor left above its GOAWAY.
        let processed = report.goaway.map_or(report.sent, |(last, _)| last.div_ceil(2));
        let opened = processed - report.refused - report.reset;
        assert!(opened <= limit, "the server opened {opened} streams of one connection, over its limit of {limit}");
        assert!(
            report.goaway.is_some() || report.refused + limit >= report.sent,
            "streams beyond the limit were neither refused nor cut by a GOAWAY: {report:?}"
        );
        assert!(
            peak - baseline < RSS_MARGIN_MB,
            "RSS grew from {baseline:.1} to {peak:.1} MB under the flood (margin {RSS_MARGIN_MB} MB)"
        );
        all_served("during the flood", &during, 5);

        // After the attacker left, its memory is back within the margin and calls are served.
        within(ANSWERED, "a call after the flood", t.legit.list()).await.expect("list after the flood");
        let after = rss_mb(pid);
        assert!(after - baseline < RSS_MARGIN_MB, "RSS {after:.1} MB after the flood, {baseline:.1} MB before");
    });
}

#[test]
fn one_connection_flooding_streams_is_refused_beyond_the_stream_limit_with_memory_bounded_and_calls_served() {
    stream_flood(false);
}

#[test]
fn one_connection_flooding_streams_is_refused_beyond_the_stream_limit_with_authentication_on() {
    stream_flood(true);
}

/// The cap and the idle timeout the silent-connection tests give the server.
const CAP: usize = 24;
const IDLE: Duration = Duration::from_secs(6);

fn silent_connections(auth: bool) {
    let _alone = exclusive();
    let dir = Scratch::new(if auth { "limits-silent-auth" } else { "limits-silent" });
    runtime().block_on(async {
        let cap = CAP.to_string();
        let idle = IDLE.as_secs().to_string();
        let t = target(&dir.0, auth, &["--max-connections", &cap, "--idle-timeout", &idle]).await;
        // The legitimate client holds one slot.
        let cfg = flood::client_config(t.server.cert.as_deref().unwrap()).unwrap();
        within(ANSWERED, "a call before the attack", t.legit.list()).await.expect("list before the attack");
        let stop = Arc::new(AtomicBool::new(false));
        let caller = tokio::spawn(keep_calling(t.legit.clone(), Duration::from_millis(200), stop.clone()));

        let opened_at = Instant::now();
        let (mut silent, failed) = within(
            Duration::from_secs(30),
            "opening silent connections",
            flood::silent_connections(&t.server.addr, &cfg, CAP - 1, 8, ANSWERED),
        )
        .await;
        assert_eq!(failed, 0, "connections within the cap of {CAP} were refused");
        t.slots_held(CAP as u64, "the cap filled").await;
        let refused_before = t.metric("scistream_port_connections_refused_total");
        let (beyond, refused) = within(
            Duration::from_secs(30),
            "opening connections beyond the cap",
            flood::silent_connections(&t.server.addr, &cfg, 10, 8, ANSWERED),
        )
        .await;
        assert!(
            beyond.is_empty() && refused == 10,
            "{} connections beyond the cap of {CAP} were accepted",
            beyond.len()
        );
        let counted = t.metric("scistream_port_connections_refused_total") - refused_before;
        assert_eq!(counted, 10, "the server counted {counted} refusals of the 10 connections beyond its cap");
        // Every silent connection is closed after the idle timeout, and not before it: the
        // first was opened after `opened_at`.
        assert!(flood::closed_within(&mut silent[0], IDLE + ANSWERED).await, "a silent connection still open");
        let first_closed = opened_at.elapsed();
        assert!(
            first_closed + Duration::from_millis(100) >= IDLE,
            "a silent connection was closed after {first_closed:?}, before the idle timeout of {IDLE:?}"
        );
        let closes = silent.iter_mut().skip(1).map(|c| flood::closed_within(c, ANSWERED));
        let closed = within(IDLE * 4, "the idle timeouts", futures_all(closes)).await;
        let open = closed.iter().filter(|c| !**c).count();
        assert_eq!(open, 0, "{open} silent connections still open {ANSWERED:?} after the first was closed");
        drop(silent);
        // The server, too, has let them go: only the legitimate client holds a slot.
        t.slots_held(1, "the silent connections closed").await;

        // Their slots are free again: as many new connections are accepted.
        let (again, failed) = within(
            Duration::from_secs(30),
            "opening connections after the idle timeouts",
            flood::silent_connections(&t.server.addr, &cfg, CAP - 1, 8, ANSWERED),
        )
        .await;
        assert_eq!(failed, 0, "connections refused after the silent ones were closed");
        drop(again);

        stop.store(true, Ordering::SeqCst);
        let during = caller.await.unwrap();
        // The legitimate client called every 200 ms throughout: never idle, never cut off.
        all_served("during the silent connections", &during, 10);
        let log = t.server.log();
        let lines = log.lines().filter(|l| l.contains("control connection refused: too many open")).count();
        assert_eq!(lines, 1, "10 refusals within 10 s should make one log line, made {lines}:\n{log}");
    });
}

/// Every future's output, in order (the tests need no more of `futures`).
async fn futures_all<F: std::future::Future<Output = bool>>(futs: impl Iterator<Item = F>) -> Vec<bool> {
    let mut out = Vec::new();
    // Sequential is enough: each waits at most until its own close, which comes at about the
    // same time for all of them.
    for f in futs {
        out.push(f.await);
    }
    out
}

#[test]
fn silent_connections_are_closed_after_the_idle_timeout_those_beyond_the_cap_refused_and_calls_served() {
    silent_connections(false);
}

#[test]
fn silent_connections_are_bounded_with_authentication_on() {
    silent_connections(true);
}

#[test]
fn a_data_server_nodes_link_port_is_bounded_and_its_link_is_never_idle() {
    let _alone = exclusive();
    let (dp, dc) = (Scratch::new("limits-node-p"), Scratch::new("limits-node-c"));
    // An idle timeout shorter than the control server's traffic polls (one unary call a
    // second): only the link's stream in flight keeps its connection.
    let flags = ["--max-connections", "4", "--idle-timeout", "0.5", "--handshake-timeout", "2"];
    let node = Node::start(&dp.0, &free_range(4), &flags).unwrap();
    let link = node.link();
    let server = Server::start(&dc.0, &ServerOpts { node: Some(link.clone()), ..ServerOpts::default() }).unwrap();
    runtime().block_on(async {
        let c = crate::testkit::client(&server).await;
        within(ANSWERED, "a first REQ through the node", c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(1))))
            .await
            .expect("a REQ through the node");
        // One slot is the link; three connections that never start their handshake take the
        // others until the handshake timeout.
        let mut raw = Vec::new();
        for _ in 0..3 {
            raw.push(tokio::net::TcpStream::connect(&node.addr).await.unwrap());
        }
        let cfg = flood::mutual_client_config(&link.node_cert, &link.cert, &link.key).unwrap();
        let (_, refused) = flood::silent_connections(&node.addr, &cfg, 2, 2, ANSWERED).await;
        assert_eq!(refused, 2, "connections beyond the node's cap of 4 were accepted");
        for conn in &mut raw {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(ANSWERED, conn.read(&mut byte)).await;
            assert!(matches!(read, Ok(Ok(0) | Err(_))), "a connection without a handshake is still open: {read:?}");
        }
        // A peer the node trusts, silent after its handshake, is closed after the idle timeout.
        // The node frees a slot just after the client sees its connection end: on a loaded
        // machine the first attempt may still find one taken, so it is tried again (bounded).
        let started = std::time::Instant::now();
        let mut silent = loop {
            let (silent, failed) = flood::silent_connections(&node.addr, &cfg, 3, 3, ANSWERED).await;
            if failed == 0 {
                break silent;
            }
            assert!(
                started.elapsed() < ANSWERED,
                "connections within the node's cap were refused once the others were gone ({failed} of 3)"
            );
            drop(silent);
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for conn in &mut silent {
            assert!(flood::closed_within(conn, ANSWERED).await, "a silent link connection outlived its idle timeout");
        }
        // The link itself, many idle timeouts later, is still up: REQs go through and it was
        // never dialled again.
        within(ANSWERED, "a REQ after the idle timeouts", c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(2))))
            .await
            .expect("a REQ through the node after the idle timeouts");
        let log = node.log();
        assert_eq!(log.matches("control server linked").count(), 1, "the link was cut and dialled again:\n{log}");
    });
}
