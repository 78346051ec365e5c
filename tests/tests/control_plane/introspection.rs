//! Token introspection under pressure, through the real `s2cs` and the local authorization
//! server (`scistream_tests::authsrv`, which counts the introspections it answers and here
//! takes 300 ms to answer each, as a distant server would): one introspection for many
//! concurrent calls carrying one new token, a bounded number in flight, and a storm of bogus
//! tokens from one address costing at most its bucket while a caller from another address is
//! served. The storm comes from 127.0.0.1 and the legitimate caller from 127.0.0.2.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use scistream_fsm::ErrorCode;
use scistream_tests::authsrv::{AuthServer, Facility};
use scistream_tests::{Scratch, Server, ServerOpts, args, free_range};
use scistream_transport::client::ControlClient;
use scistream_transport::tls::{self, Trust};
use tokio::task::JoinSet;

use crate::testkit::{CALL, refusal, runtime, shared, within};

const SCOPE: &str = "scistream:facility-p";
const DELAY: Duration = Duration::from_millis(300);

fn facility() -> Facility {
    Facility { client_id: "facility-p".into(), secret: "secret-p".into() }
}

/// An authorization server answering each introspection after [`DELAY`], and an `s2cs`
/// checking tokens there with `extra` flags.
fn start(dir: &Scratch, extra: &[&str]) -> (AuthServer, Server) {
    let auth = AuthServer::start(&[facility()]).unwrap();
    auth.set_introspect_delay(DELAY);
    let mut flags = auth.s2cs_flags(&facility(), SCOPE);
    flags.extend(args(extra));
    let server =
        Server::start(&dir.0, &ServerOpts { port_range: free_range(4), extra: flags, ..ServerOpts::default() })
            .unwrap();
    (auth, server)
}

/// Clients of `server` sharing one TLS connection from the local address `from`, each with
/// the token it is given.
async fn channel(server: &Server, from: &str) -> impl Fn(&str) -> ControlClient + use<> {
    let trust = Trust::File(server.cert.clone().expect("TLS"));
    let local: IpAddr = from.parse().unwrap();
    let channel = within(CALL, "TLS connect", tls::connect_from(&server.addr, &trust, Some(local), CALL))
        .await
        .unwrap_or_else(|e| panic!("connecting from {from}: {e}"));
    move |token: &str| ControlClient::new(channel.clone(), Some(token), CALL).expect("a sendable token")
}

#[test]
fn fifty_concurrent_calls_with_one_new_token_cost_one_introspection() {
    let _serial = shared();
    let dir = Scratch::new("intro-flight");
    // A burst of 2 per address: the 49 callers that wait for the first one's answer are not
    // charged for it.
    let (auth, server) = start(&dir, &["--auth-peer-burst", "2"]);
    let token = auth.mint("alice", SCOPE, 600);
    runtime().block_on(async {
        let ch = channel(&server, "127.0.0.1").await;
        let mut calls = JoinSet::new();
        for _ in 0..50 {
            let c = ch(&token);
            calls.spawn(async move { c.list_as().await.map(|(who, _)| who) });
        }
        while let Some(who) = calls.join_next().await {
            assert_eq!(who.expect("no panic").expect("served"), "id-alice");
        }
    });
    assert_eq!(auth.introspections(), 1, "fifty calls, one introspection");
}

#[test]
fn introspections_in_flight_stay_within_auth_max_inflight() {
    let _serial = shared();
    let dir = Scratch::new("intro-inflight");
    let (auth, server) = start(&dir, &["--auth-max-inflight", "3", "--auth-peer-rate", "0"]);
    let tokens: Vec<String> = (0..12).map(|_| auth.mint("alice", SCOPE, 600)).collect();
    runtime().block_on(async {
        let ch = channel(&server, "127.0.0.1").await;
        let mut calls = JoinSet::new();
        for t in &tokens {
            let c = ch(t);
            calls.spawn(async move { c.list().await });
        }
        while let Some(answer) = calls.join_next().await {
            answer.expect("no panic").expect("served, in turn");
        }
    });
    assert_eq!(auth.introspections(), 12);
    assert_eq!(auth.most_concurrent_introspections(), 3, "twelve new tokens, three introspections at a time");
}

#[test]
fn a_storm_of_bogus_tokens_from_one_address_costs_at_most_its_bucket_and_another_address_is_served() {
    let _serial = shared();
    let dir = Scratch::new("intro-storm");
    let (burst, rate) = (10, 0.5);
    let (auth, server) = start(&dir, &["--auth-peer-burst", &burst.to_string(), "--auth-peer-rate", &rate.to_string()]);
    let good = auth.mint("bob", SCOPE, 600);
    const STORM: usize = 300;
    let (took, throttled) = runtime().block_on(async {
        let storm = channel(&server, "127.0.0.1").await;
        let started = Instant::now();
        let mut calls = JoinSet::new();
        for i in 0..STORM {
            let c = storm(&format!("bogus-{i}-{}", uuid::Uuid::new_v4().simple()));
            calls.spawn(async move { refusal("a bogus token", c.list().await) });
        }
        let mut throttled = 0;
        while let Some(code) = calls.join_next().await {
            match code.expect("no panic") {
                ErrorCode::ResourceExhausted => throttled += 1,
                ErrorCode::Unauthenticated => {}
                other => panic!("a bogus token refused {other:?}"),
            }
        }
        let took = started.elapsed();
        // The storming address is still over its limit; another address is not.
        let legit = channel(&server, "127.0.0.2").await(&good);
        let (who, _) = legit.list_as().await.expect("a valid token from another address is served");
        assert_eq!(who, "id-bob");
        (took, throttled)
    });
    let allowed = burst as f64 + rate * took.as_secs_f64() + 1.0;
    let asked = auth.introspections();
    // The legitimate call's introspection is the one more.
    assert!((asked - 1) as f64 <= allowed, "{asked} introspections for {STORM} bogus tokens in {took:?}");
    assert_eq!(throttled as u64, STORM as u64 - (asked - 1), "every bogus token not introspected was refused");
    let log = server.log();
    let warnings = log.lines().filter(|l| l.contains("WARN") && l.contains("per-address limit")).count();
    assert!(warnings >= 1 && warnings <= 1 + took.as_secs() as usize / 10, "{warnings} warnings:\n{log}");
    assert!(log.contains("127.0.0.1"), "the warning names the address");
}
