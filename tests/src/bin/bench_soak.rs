//! `bench-soak`: a gateway pair under a long, bounded churn, and proof that nothing leaks.
//!
//! `cargo run --release -p scistream-tests --bin bench-soak [-- --seconds 600 --every 10 --streams 4 --svg FILE]`
//!
//! Two facilities on loopback, each `s2cs --state-dir` driving an `s2ds` node. For `--seconds`:
//! `--streams` sessions carry data continuously (an echo producer; each stream is released and
//! replaced every minute), other sessions are set up and released back to back (their setup
//! latency recorded), and every few seconds an `s2uc request` is started and killed with SIGKILL
//! during its setup (its sessions expire by their lease). Every `--every` seconds a row: the
//! daemons' RSS and open files, the nodes' bound ports, the live sessions, setups and their
//! latency. At the end everything is released and, within a bounded wait, open files, bound
//! ports and live sessions must be back at their baseline, and the RSS of each daemon at most
//! 16 MB above its highest sample in the first half of the run: finished sessions are
//! remembered for `--tombstone` seconds (10 here, 300 by default), so memory grows for that long
//! with the setup rate and must then stay flat. Prints the table, a plot of RSS and setup latency
//! over time (and an SVG with `--svg`), and PASS or FAIL (exit 1).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scistream_fsm::Uid;
use scistream_tests::{Background, Node, Scratch, Server, ServerOpts, args, free_range, rss_mb, trust};
use scistream_transport::client::ControlClient;

/// How long the daemons remember finished sessions here (seconds).
const TOMBSTONE: &str = "10";

struct Opts {
    seconds: u64,
    every: u64,
    streams: usize,
    svg: Option<String>,
}

fn opts() -> Result<Opts> {
    let mut o = Opts { seconds: 600, every: 10, streams: 4, svg: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().context("flag without value")?;
        match flag.as_str() {
            "--seconds" => o.seconds = v.parse().context("--seconds")?,
            "--every" => o.every = v.parse().context("--every")?,
            "--streams" => o.streams = v.parse().context("--streams")?,
            "--svg" => o.svg = Some(v),
            other => bail!("unknown flag {other}; known: --seconds --every --streams --svg"),
        }
    }
    if o.every == 0 || o.seconds < o.every {
        bail!("--every must be at least 1 and at most --seconds");
    }
    Ok(o)
}

fn echo_producer() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Pushes data through `listener` and checks the echo until `stop`; counts bytes verified.
fn stream(listener: String, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>, broken: Arc<AtomicU64>) {
    let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = TcpStream::connect(&listener) else {
            broken.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
        let mut back = vec![0u8; chunk.len()];
        for _ in 0..16 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if c.write_all(&chunk).is_err() || c.read_exact(&mut back).is_err() || back != chunk {
                broken.fetch_add(1, Ordering::Relaxed);
                break;
            }
            bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Releases `uid` at both facilities; a failure ends the soak.
fn release(rt: &tokio::runtime::Runtime, p: &ControlClient, c: &ControlClient, uid: Uid) -> Result<()> {
    let (a, b) = rt.block_on(async { tokio::join!(p.release(uid), c.release(uid)) });
    a.with_context(|| format!("releasing {uid} at the producer's facility"))?;
    b.with_context(|| format!("releasing {uid} at the consumer's facility"))?;
    Ok(())
}

/// Open files of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

struct Gateways {
    _dir: Scratch,
    nodes: [Node; 2],
    servers: [Server; 2],
}

impl Gateways {
    fn pids(&self) -> [u32; 4] {
        [
            self.servers[0].pid(),
            self.servers[1].pid(),
            self.nodes[0].pid().unwrap_or(0),
            self.nodes[1].pid().unwrap_or(0),
        ]
    }

    fn bound(&self) -> Result<usize> {
        let mut n = 0;
        for node in &self.nodes {
            n += node.listening_ports()?.len();
        }
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    rss: [f64; 4],
    fds: [usize; 4],
    bound: usize,
    live: usize,
}

async fn snapshot(g: &Gateways, p: &ControlClient, c: &ControlClient) -> Result<Snapshot> {
    let pids = g.pids();
    let live = |l: Vec<scistream_transport::client::SessionStatus>| {
        l.iter().filter(|s| s.state != "Released" && s.state != "Failed").count()
    };
    Ok(Snapshot {
        rss: pids.map(rss_mb),
        fds: pids.map(fds),
        bound: g.bound()?,
        live: live(p.list().await?) + live(c.list().await?),
    })
}

struct Row {
    at: u64,
    snap: Snapshot,
    setups: usize,
    p50: f64,
    p99: f64,
    streamed_mb: f64,
    kills: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() { f64::NAN } else { sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] }
}

/// A plot of `values` over the rows, `height` lines high, in text.
fn plot(title: &str, values: &[f64], height: usize) -> String {
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = (hi - lo).max(f64::EPSILON);
    let mut out = format!("{title} ({lo:.1} .. {hi:.1})\n");
    for line in (0..height).rev() {
        let row: String = values
            .iter()
            .map(|v| if ((v - lo) / span * (height - 1) as f64).round() as usize >= line { '#' } else { ' ' })
            .collect();
        out.push_str(&format!("  |{row}\n"));
    }
    out.push_str(&format!("  +{}\n", "-".repeat(values.len())));
    out
}

fn svg(rows: &[Row]) -> String {
    let (w, h) = (800.0, 300.0);
    let line = |vals: Vec<f64>, color: &str| {
        let (lo, hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let span = (hi - lo).max(f64::EPSILON);
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = i as f64 / (vals.len().max(2) - 1) as f64 * w;
                format!("{x:.1},{:.1}", h - (v - lo) / span * (h - 20.0) - 10.0)
            })
            .collect();
        format!("<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" "))
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>{}{}<text x=\"10\" y=\"20\">RSS of the producer's s2cs (blue), setup p50 (red), over {} samples, each scaled to its range</text></svg>\n",
        line(rows.iter().map(|r| r.snap.rss[0]).collect(), "blue"),
        line(rows.iter().map(|r| r.p50).collect(), "red"),
        rows.len()
    )
}

fn main() -> Result<()> {
    let o = opts()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = Scratch::new("soak");
    let flags = ["--tombstone", TOMBSTONE];
    let nodes = [Node::start(&dir.0, &free_range(40), &flags)?, Node::start(&dir.0, &free_range(40), &flags)?];
    let servers = [0, 1].map(|i| {
        let state = dir.0.join(format!("state-{i}"));
        let opts = ServerOpts {
            node: Some(nodes[i].link()),
            hello_timeout: 5.0,
            extra: args(&["--state-dir", state.to_str().unwrap_or("."), "--tombstone", TOMBSTONE]),
            ..ServerOpts::default()
        };
        Server::start(&dir.0, &opts)
    });
    let [prod, cons] = servers;
    let g = Gateways { _dir: dir, nodes, servers: [prod?, cons?] };
    let (p, c) = rt.block_on(async {
        let p = scistream_tests::connect_as(&g.servers[0], None, Duration::from_secs(30)).await?;
        let c = scistream_tests::connect_as(&g.servers[1], None, Duration::from_secs(30)).await?;
        anyhow::Ok((p, c))
    })?;
    let app = echo_producer();
    // Warm up (lazy statics, the first TLS sessions), then the baseline.
    for _ in 0..3 {
        let uid = Uid(uuid::Uuid::new_v4());
        rt.block_on(scistream_tests::establish(&p, &c, uid, app))?;
        release(&rt, &p, &c, uid)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let base = rt.block_on(snapshot(&g, &p, &c))?;
    println!("baseline: {base:?}");

    let (bytes, broken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut streams: Vec<(Uid, Arc<AtomicBool>, std::thread::JoinHandle<()>)> = Vec::new();
    let start_stream = |rt: &tokio::runtime::Runtime| -> Result<(Uid, Arc<AtomicBool>, std::thread::JoinHandle<()>)> {
        let uid = Uid(uuid::Uuid::new_v4());
        rt.block_on(scistream_tests::establish(&p, &c, uid, app))?;
        let listener = rt.block_on(c.status(uid))?.listeners.first().context("a listener")?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, b, k) = (stop.clone(), bytes.clone(), broken.clone());
        Ok((uid, stop, std::thread::spawn(move || stream(listener, s, b, k))))
    };
    for _ in 0..o.streams {
        streams.push(start_stream(&rt)?);
    }
    let client_flags: Vec<String> = trust(&[&g.servers[0], &g.servers[1]]);
    let (t0, end) = (Instant::now(), Instant::now() + Duration::from_secs(o.seconds));
    let (mut rows, mut window, mut kills, mut next_row, mut next_kill, mut next_rotate) =
        (Vec::new(), Vec::<f64>::new(), 0u64, o.every, 3u64, 60u64);
    let mut rotate = 0usize;
    while Instant::now() < end {
        let uid = Uid(uuid::Uuid::new_v4());
        let took = rt.block_on(scistream_tests::establish(&p, &c, uid, app))?;
        release(&rt, &p, &c, uid)?;
        window.push(took.as_secs_f64() * 1e3);
        let now = t0.elapsed().as_secs();
        if now >= next_kill {
            // A user's client killed during its setup: its sessions expire by their lease.
            let mut a = client_flags.clone();
            a.extend(args(&["request", "--prod-s2cs", &g.servers[0].addr, "--cons-s2cs", &g.servers[1].addr]));
            a.extend(args(&["--num-conn", "1", "--hello-timeout", "5"]));
            let mut bg = Background::start("s2uc", &a)?;
            std::thread::sleep(Duration::from_millis(50 + (now % 5) * 90));
            if let Some(child) = bg.0.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            kills += 1;
            next_kill = now + 5;
        }
        if now >= next_rotate && !streams.is_empty() {
            let i = rotate % streams.len();
            let (old, stop, h) = streams.remove(i);
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
            release(&rt, &p, &c, old)?;
            streams.insert(i, start_stream(&rt)?);
            rotate += 1;
            next_rotate = now + 60;
        }
        if now >= next_row {
            window.sort_by(f64::total_cmp);
            let snap = rt.block_on(snapshot(&g, &p, &c))?;
            let row = Row {
                at: now,
                snap,
                setups: window.len(),
                p50: pct(&window, 0.5),
                p99: pct(&window, 0.99),
                streamed_mb: bytes.load(Ordering::Relaxed) as f64 / 1e6,
                kills,
            };
            println!(
                "{:>5}s rss {:>5.1}/{:>5.1}/{:>5.1}/{:>5.1} MB  fds {:>3}/{:>3}/{:>3}/{:>3}  bound {:>3}  live {:>3}  setups {:>5} p50 {:>6.2} p99 {:>6.2} ms  streamed {:>8.0} MB  kills {}",
                row.at,
                snap.rss[0],
                snap.rss[1],
                snap.rss[2],
                snap.rss[3],
                snap.fds[0],
                snap.fds[1],
                snap.fds[2],
                snap.fds[3],
                snap.bound,
                snap.live,
                row.setups,
                row.p50,
                row.p99,
                row.streamed_mb,
                row.kills
            );
            rows.push(row);
            window.clear();
            next_row = now + o.every;
        }
    }
    // Everything released; the killed clients' sessions expire by their lease.
    for (uid, stop, h) in streams.drain(..) {
        stop.store(true, Ordering::Relaxed);
        let _ = h.join();
        release(&rt, &p, &c, uid)?;
    }
    let settle = Instant::now() + Duration::from_secs(60);
    let mut last = rt.block_on(snapshot(&g, &p, &c))?;
    while Instant::now() < settle
        && (last.live != base.live || last.bound != base.bound || last.fds.iter().zip(base.fds).any(|(a, b)| *a > b))
    {
        std::thread::sleep(Duration::from_millis(500));
        last = rt.block_on(snapshot(&g, &p, &c))?;
    }
    println!(
        "\n{}",
        plot("RSS of the producer's s2cs, MB", &rows.iter().map(|r| r.snap.rss[0]).collect::<Vec<_>>(), 8)
    );
    println!("{}", plot("setup latency p50, ms", &rows.iter().map(|r| r.p50).collect::<Vec<_>>(), 8));
    if let Some(path) = &o.svg {
        std::fs::write(path, svg(&rows)).with_context(|| format!("writing {path}"))?;
        println!("plot written to {path}");
    }
    // The plateau: the highest sample of the first half (tombstones turned over by then).
    let mut first = base.rss;
    for r in &rows[..rows.len().div_ceil(2)] {
        for (f, v) in first.iter_mut().zip(r.snap.rss) {
            *f = f.max(v);
        }
    }
    let names = ["s2cs prod", "s2cs cons", "s2ds prod", "s2ds cons"];
    println!("| | baseline | first half, highest | end |");
    println!("|---|---:|---:|---:|");
    for i in 0..4 {
        println!("| {} RSS MB | {:.1} | {:.1} | {:.1} |", names[i], base.rss[i], first[i], last.rss[i]);
        println!("| {} open files | {} | | {} |", names[i], base.fds[i], last.fds[i]);
    }
    println!("| ports bound by the nodes | {} | | {} |", base.bound, last.bound);
    println!("| live sessions | {} | | {} |", base.live, last.live);
    let setups: usize = rows.iter().map(|r| r.setups).sum();
    println!(
        "\n{setups} setups, {kills} clients killed mid-setup, {:.0} MB streamed and verified, {} broken stream connections",
        bytes.load(Ordering::Relaxed) as f64 / 1e6,
        broken.load(Ordering::Relaxed)
    );
    let mut bad = Vec::new();
    if last.live != base.live {
        bad.push(format!("{} live sessions left (baseline {})", last.live, base.live));
    }
    if last.bound != base.bound {
        bad.push(format!("{} ports bound (baseline {})", last.bound, base.bound));
    }
    for i in 0..4 {
        if last.fds[i] > base.fds[i] {
            bad.push(format!("{} holds {} files (baseline {})", names[i], last.fds[i], base.fds[i]));
        }
        if last.rss[i] > first[i] + 16.0 {
            bad.push(format!("{} RSS {:.1} MB, at most {:.1} MB in the first half", names[i], last.rss[i], first[i]));
        }
    }
    if broken.load(Ordering::Relaxed) > 0 {
        bad.push(format!("{} stream connections broke", broken.load(Ordering::Relaxed)));
    }
    if bad.is_empty() {
        println!("PASS: nothing leaked");
        Ok(())
    } else {
        println!("FAIL: {}", bad.join("; "));
        std::process::exit(1)
    }
}
