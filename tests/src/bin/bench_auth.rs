//! `bench-auth`: a storm of bogus tokens against a real `s2cs` with authentication on, checked
//! at the local authorization server (`scistream_tests::authsrv`, answering each
//! introspection after `--delay-ms`, as a distant server would), once with the introspection
//! limits off and once with `s2cs`'s defaults. Prints a table: introspections sent per second,
//! bogus calls answered and refused unchecked per second, and the latency of a legitimate
//! caller from another address using a new token (so each of its calls is introspected too).
//!
//! `cargo run --release -p scistream-tests --bin bench-auth [-- --secs 5 --storm 64 --delay-ms 20]`

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scistream_fsm::ErrorCode;
use scistream_tests::authsrv::{AuthServer, Facility};
use scistream_tests::{Scratch, Server, ServerOpts, free_range};
use scistream_transport::client::{CallError, ControlClient};
use scistream_transport::tls::{self, Trust};

const SCOPE: &str = "scistream:bench";
const CALL: Duration = Duration::from_secs(10);

struct Opts {
    secs: u64,
    storm: usize,
    delay_ms: u64,
}

fn opts() -> Result<Opts> {
    let mut o = Opts { secs: 5, storm: 64, delay_ms: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v: u64 = it.next().context("flag without value")?.parse().context("not a number")?;
        match flag.as_str() {
            "--secs" => o.secs = v.max(1),
            "--storm" => o.storm = usize::try_from(v)?.max(1),
            "--delay-ms" => o.delay_ms = v,
            other => bail!("unknown flag {other}; known: --secs --storm --delay-ms"),
        }
    }
    Ok(o)
}

/// What one run measured.
struct Run {
    introspections_per_s: f64,
    most_concurrent: u64,
    answered_per_s: f64,
    refused_unchecked_per_s: f64,
    unavailable_per_s: f64,
    legit: Vec<Duration>,
    legit_failed: usize,
}

/// Counts of the storm's answers.
#[derive(Default)]
struct Tally {
    unauthenticated: AtomicU64,
    exhausted: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
}

/// A function making clients of `server` with a given token, over one TLS connection from
/// `from`.
async fn clients(server: &Server, from: &str) -> Result<impl Fn(&str) -> Result<ControlClient> + use<>> {
    let trust = Trust::File(server.cert.clone().context("a TLS server")?);
    let local: IpAddr = from.parse()?;
    let channel = tls::connect_from(&server.addr, &trust, Some(local), CALL).await?;
    Ok(move |token: &str| Ok(ControlClient::new(channel.clone(), Some(token), CALL)?))
}

async fn run(dir: &Scratch, o: &Opts, limits: &[&str]) -> Result<Run> {
    let facility = Facility { client_id: "facility-bench".into(), secret: "secret-bench".into() };
    let auth = AuthServer::start(std::slice::from_ref(&facility))?;
    auth.set_introspect_delay(Duration::from_millis(o.delay_ms));
    let mut extra = auth.s2cs_flags(&facility, SCOPE);
    extra.extend(limits.iter().map(|s| (*s).to_owned()));
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), extra, ..ServerOpts::default() })?;

    let until = Instant::now() + Duration::from_secs(o.secs);
    let tally = Arc::new(Tally::default());
    // The storm: `storm` callers from 127.0.0.1, each sending a new bogus token per call.
    let storm = Arc::new(clients(&server, "127.0.0.1").await?);
    let mut tasks = Vec::new();
    for w in 0..o.storm {
        let (storm, tally) = (storm.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let c = storm(&format!("bogus-{w}-{n}-{}", uuid::Uuid::new_v4().simple()))?;
                let counter = match c.list().await {
                    Err(CallError::Status { code: ErrorCode::Unauthenticated, .. }) => &tally.unauthenticated,
                    Err(CallError::Status { code: ErrorCode::ResourceExhausted, .. }) => &tally.exhausted,
                    Err(CallError::Status { code: ErrorCode::Unavailable, .. }) => &tally.unavailable,
                    Ok(_) => bail!("a bogus token was let through"),
                    Err(_) => &tally.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    // The legitimate caller: from 127.0.0.2, a new valid token every 100 ms.
    let legit_clients = clients(&server, "127.0.0.2").await?;
    let (mut legit, mut legit_failed) = (Vec::new(), 0);
    let started = Instant::now();
    let before = auth.introspections();
    while Instant::now() < until {
        let c = legit_clients(&auth.mint("alice", SCOPE, 600))?;
        let t = Instant::now();
        match c.list().await {
            Ok(_) => legit.push(t.elapsed()),
            Err(_) => legit_failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let asked = auth.introspections() - before;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    let answered = get(&tally.unauthenticated) + get(&tally.exhausted) + get(&tally.unavailable) + get(&tally.other);
    legit.sort();
    Ok(Run {
        introspections_per_s: asked as f64 / secs,
        most_concurrent: auth.most_concurrent_introspections(),
        answered_per_s: answered / secs,
        refused_unchecked_per_s: get(&tally.exhausted) / secs,
        unavailable_per_s: (get(&tally.unavailable) + get(&tally.other)) / secs,
        legit,
        legit_failed,
    })
}

fn pct(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let d = sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = opts()?;
    let dir = Scratch::new("bench-auth");
    eprintln!(
        "bench-auth: {} s per run, {} storm callers from 127.0.0.1, introspection answered after {} ms",
        o.secs, o.storm, o.delay_ms
    );
    let runs = [
        (
            "off (`--auth-max-inflight 0 --auth-peer-rate 0`)",
            run(&dir, &o, &["--auth-max-inflight", "0", "--auth-peer-rate", "0"]).await?,
        ),
        ("defaults (16 in flight; 5/s, burst 20 per address)", run(&dir, &o, &[]).await?),
    ];
    println!(
        "| limits | introspections sent/s | most in flight | bogus calls answered/s | refused unchecked (RESOURCE_EXHAUSTED)/s | UNAVAILABLE or other/s | legitimate call (other address, new token) p50 / p99 / max ms | legitimate calls failed |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (what, r) in &runs {
        println!(
            "| {what} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} / {} / {} | {} of {} |",
            r.introspections_per_s,
            r.most_concurrent,
            r.answered_per_s,
            r.refused_unchecked_per_s,
            r.unavailable_per_s,
            pct(&r.legit, 0.5),
            pct(&r.legit, 0.99),
            pct(&r.legit, 1.0),
            r.legit_failed,
            r.legit.len() + r.legit_failed
        );
    }
    Ok(())
}
