//! `bench-flood`: issue 11's attacks on a control port, measured on a release `s2cs` with its
//! port limits at their defaults and, beside it, with them lifted (what the server did before).
//!
//! `cargo run --release -p scistream-tests --bin bench-flood [-- --streams N --idle N --calls N]`
//!
//! 1. Idle: the server's RSS, and the latency of a legitimate `list` call (`--calls` of them,
//!    one at a time, from a client connected beforehand).
//! 2. Stream flood: one TLS connection opens `--streams` HTTP/2 streams at once (HEADERS of a
//!    `list` call, never finished; default 60,000 as filed) and holds them; the streams the
//!    server opened and refused, its peak RSS, the legitimate calls' latency meanwhile, and the
//!    RSS once the attacker left.
//! 3. Silent connections: `--idle` TLS connections (default 10,000) complete their handshake
//!    and say nothing; how many were accepted and refused, the RSS with them open and once they
//!    went, the legitimate calls' latency while they are open.
//!
//! The bench raises its own file descriptor limit (each silent connection is one); the server
//! raises its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scistream_tests::flood::{self, Flood};
use scistream_tests::{Scratch, Server, ServerOpts, args, free_range, rss_mb};
use scistream_transport::client::ControlClient;

struct Opts {
    streams: u32,
    idle: usize,
    calls: usize,
}

fn opts() -> Result<Opts> {
    let mut o = Opts { streams: 60_000, idle: 10_000, calls: 500 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v: usize = it.next().context("flag without value")?.parse().context("not a number")?;
        match flag.as_str() {
            "--streams" => o.streams = u32::try_from(v)?,
            "--idle" => o.idle = v,
            "--calls" => o.calls = v,
            other => bail!("unknown flag {other}; known: --streams --idle --calls"),
        }
    }
    Ok(o)
}

/// What one server did under the attacks.
#[derive(Debug, Default)]
struct Run {
    rss_idle: f64,
    idle: Latency,
    streams_opened: u32,
    streams_refused: u32,
    flood_peak: f64,
    flood_after: f64,
    flood: Latency,
    conns_accepted: usize,
    conns_refused: usize,
    silent_rss: f64,
    silent_after: f64,
    silent: Latency,
}

/// p50 and p99 of the legitimate calls, and how many failed.
#[derive(Debug, Default, Clone, Copy)]
struct Latency {
    p50: Duration,
    p99: Duration,
    failed: usize,
}

async fn calls(c: &ControlClient, n: usize) -> Latency {
    let mut took = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(10), c.list()).await {
            Ok(Ok(_)) => took.push(t.elapsed()),
            _ => failed += 1,
        }
    }
    took.sort();
    let pct = |p: f64| took.get(((took.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or_default();
    Latency { p50: pct(0.5), p99: pct(0.99), failed }
}

/// The largest RSS of `pid` until `stop`.
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

async fn run(o: &Opts, dir: &std::path::Path, extra: &[&str]) -> Result<Run> {
    let opts = ServerOpts { port_range: free_range(4), extra: args(extra), ..ServerOpts::default() };
    let server = Server::start(dir, &opts)?;
    let pid = server.pid();
    let legit = scistream_tests::connect_as(&server, None, Duration::from_secs(10)).await?;
    let cfg = flood::client_config(server.cert.as_deref().context("TLS")?)?;
    let mut r = Run::default();
    calls(&legit, 50).await;
    r.idle = calls(&legit, o.calls).await;
    r.rss_idle = rss_mb(pid);

    eprintln!("  stream flood: {} streams", o.streams);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = peak_rss(pid, stop.clone());
    let attack = Flood::start(&server.addr, &cfg, o.streams, None).await?;
    let report = attack.settled(Duration::from_secs(1), Duration::from_secs(120)).await;
    r.flood = calls(&legit, o.calls).await;
    stop.store(true, Ordering::SeqCst);
    r.flood_peak = sampler.join().map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    let processed = report.goaway.map_or(report.sent, |(last, _)| last.div_ceil(2));
    r.streams_refused = report.refused + report.sent - processed;
    r.streams_opened = processed - report.refused - report.reset;
    drop(attack);
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.flood_after = rss_mb(pid);

    eprintln!("  {} silent connections", o.idle);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = peak_rss(pid, stop.clone());
    let (silent, refused) = flood::silent_connections(&server.addr, &cfg, o.idle, 64, Duration::from_secs(10)).await;
    (r.conns_accepted, r.conns_refused) = (silent.len(), refused);
    r.silent = calls(&legit, o.calls).await;
    stop.store(true, Ordering::SeqCst);
    r.silent_rss = sampler.join().map_err(|_| anyhow::anyhow!("sampler panicked"))?;
    drop(silent);
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.silent_after = rss_mb(pid);
    Ok(r)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn lat(l: &Latency) -> String {
    let failed = if l.failed > 0 { format!(" ({} failed)", l.failed) } else { String::new() };
    format!("{:.2} / {:.2} ms{failed}", ms(l.p50), ms(l.p99))
}

fn main() -> Result<()> {
    let o = opts()?;
    let nofile = rlimit::increase_nofile_limit(u64::MAX)?;
    if (nofile as usize) < o.idle + 256 {
        bail!("the file descriptor limit is {nofile}: {} silent connections need more (ulimit -n)", o.idle);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = Scratch::new("bench-flood");
    eprintln!("limits at their defaults");
    let bounded = rt.block_on(run(&o, &dir.0, &[]))?;
    eprintln!("limits lifted");
    let lifted = [
        "--max-streams",
        "4000000000",
        "--max-connections",
        "1000000000",
        "--max-calls",
        "1000000000",
        "--idle-timeout",
        "1000000",
    ];
    let open = rt.block_on(run(&o, &dir.0, &lifted))?;

    let (s, n) = (o.streams, o.idle);
    println!("| measure | limits at their defaults | limits lifted |");
    println!("|---|---:|---:|");
    let row = |what: &str, f: &dyn Fn(&Run) -> String| println!("| {what} | {} | {} |", f(&bounded), f(&open));
    row("s2cs RSS idle", &|r| format!("{:.1} MB", r.rss_idle));
    row("`list` p50 / p99, idle", &|r| lat(&r.idle));
    row(&format!("stream flood: streams opened / refused (of {s})"), &|r| {
        format!("{} / {}", r.streams_opened, r.streams_refused)
    });
    row("stream flood: s2cs RSS peak → after the attacker left", &|r| {
        format!("{:.1} → {:.1} MB", r.flood_peak, r.flood_after)
    });
    row("`list` p50 / p99 during the flood", &|r| lat(&r.flood));
    row(&format!("{n} silent connections: accepted / refused"), &|r| {
        format!("{} / {}", r.conns_accepted, r.conns_refused)
    });
    row("silent connections: s2cs RSS peak → after they went", &|r| {
        format!("{:.1} → {:.1} MB", r.silent_rss, r.silent_after)
    });
    row("`list` p50 / p99 while they are open", &|r| lat(&r.silent));
    Ok(())
}
