//! `bench-lab`: the throughput of one stream across the multi-host lab (docs/lab.md), two
//! gateway hops — producer host → gateway A → WAN → gateway B → consumer host — side by side
//! in one run, every relay in the same gateway namespaces on the same addresses:
//!
//! - `raw`: no relay, the gateways forward (`ip_forward=1`): the ceiling;
//! - `ours TLS`: `s2ds` on each gateway (driven by its `s2cs`), the WAN leg TLS 1.3 pinned to the
//!   session, as in production; `ours plain`: the same with a plain WAN leg
//!   (`--allow-plain-wan`, a session without credentials);
//! - `haproxy-splice`: HAProxy in TCP mode with `option splice-auto` on both gateways;
//! - `stunnel`: stunnel on both gateways, TLS 1.3 between them.
//!
//! The producer (writing) sits on `prod`, the consumer (reading and counting) on `cons`, both
//! in this process, whose threads enter the hosts' namespaces to make their sockets. Prints a
//! table: MB/s as the consumer counts them, the ratios to `ours TLS` and `ours plain`, and the
//! gateways' CPU (the processes in `gwa` and `gwb`, in % of one core; the kernel's forwarding
//! in `raw` is nobody's).
//! Installs haproxy and stunnel4 with apt-get when missing (root). A command, not a test.
//!
//! `cargo run --release -p scistream-tests --bin bench-lab [-- --seconds 5 --streams 1,4]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use scistream_fsm::{Addr, AppKey, Credentials, Role, Uid};
use scistream_tests::lab::gateway::{Gateway, GatewaySpec};
use scistream_tests::lab::{CONS_IP, GWA_WAN_IP, GWB_LAN_IP, Host, Lab, NsChild, PROD_IP};
use scistream_tests::{Scratch, args};
use scistream_transport::client::ControlClient;
use scistream_transport::tls::{self, Trust};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(name = "bench-lab", about)]
struct Cli {
    /// Seconds per measurement (after 0.5 s of warm-up).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Parallel streams to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1])]
    streams: Vec<usize>,
    /// Measure only these chains (comma-separated names as in the table).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const CHAINS: [&str; 5] = ["raw", "ours TLS", "ours plain", "haproxy-splice", "stunnel"];
/// The producer's port on `prod`.
const APP_PORT: u16 = 7000;
/// The peers' ports: gateway A's on its WAN address, gateway B's on its LAN address.
const PEER_PORT: (u16, u16) = (6100, 6200);
/// Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// One measurement: MB/s at the consumer, and the gateways' CPU in % of one core.
struct Point {
    mbps: f64,
    cpu: Option<f64>,
}

/// The CPU time (user and system) of every process in the gateways' hosts, in ticks.
fn gateway_ticks(lab: &Lab) -> Result<u64> {
    let mut total = 0;
    for host in [Host::Gwa, Host::Gwb] {
        for pid in lab.pids(host)? {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime: fields 14 and 15 of the whole line, 12 and 13 after the name.
            total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            total += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}

/// The producer on `prod`: every connection accepted gets 256 KiB writes until `stop`.
fn producer(lab: &Lab, stop: Arc<AtomicBool>) -> Result<()> {
    let l = lab.within(Host::Prod, || std::net::TcpListener::bind((PROD_IP, APP_PORT)))??;
    l.set_nonblocking(true)?;
    let l = tokio::net::TcpListener::from_std(l)?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let stop = stop.clone();
            tokio::spawn(async move {
                let buf = vec![0x5au8; 256 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&buf).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(())
}

/// `p` consumers on `cons` reading from `front` for `secs` (after a warm-up): MB/s, and the
/// gateways' CPU over the same window.
async fn measure(lab: &Lab, front: &str, p: usize, secs: f64, cpu: bool) -> Result<Point> {
    let to: std::net::SocketAddr = front.parse()?;
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..p {
        let connect = || lab.within(Host::Cons, || std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)));
        let s = tokio::task::block_in_place(connect)?.with_context(|| format!("cons connecting to {front}"))?;
        s.set_nonblocking(true)?;
        let mut s = tokio::net::TcpStream::from_std(s)?;
        let (count, stop) = (count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(n)) => {
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b0, c0, t0) = (count.load(Ordering::Relaxed), gateway_ticks(lab)?, Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (b1, c1, t1) = (count.load(Ordering::Relaxed), gateway_ticks(lab)?, Instant::now());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let wall = (t1 - t0).as_secs_f64();
    if b1 == b0 {
        bail!("no byte reached the consumer through {front} in {secs} s");
    }
    let cpu = cpu.then(|| (c1.saturating_sub(c0)) as f64 / TICKS / wall * 100.0);
    Ok(Point { mbps: (b1 - b0) as f64 / wall / 1e6, cpu })
}

/// A session between the gateways whose producer is `prod:APP_PORT`, set up as `s2uc` and
/// `appctrl` would, from the user's host (a runtime on a thread inside it); with credentials
/// the WAN leg is TLS, without it is plain. Answers gwb's first LAN listener and the uid.
fn session(lab: &Lab, a: &Gateway, b: &Gateway, p: usize, tls_leg: bool) -> Result<(String, Uid)> {
    let num_conn = u16::try_from(p)?;
    lab.within(Host::User, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let (pc, cc) = (client(a).await?, client(b).await?);
            let uid = Uid(uuid::Uuid::new_v4());
            let key = AppKey(*uuid::Uuid::new_v4().as_bytes());
            let creds = tls_leg.then(|| Credentials(rand_bytes()));
            let producer = [Addr::new(PROD_IP, APP_PORT)];
            let (pl, cl, h) = tokio::join!(
                pc.req(uid, Role::Prod, num_conn, 0, Some(key)),
                cc.req(uid, Role::Cons, num_conn, 0, Some(key)),
                scistream_tests::hello_once_held(&pc, uid, &producer, key)
            );
            let (pl, cl) = (pl?, cl?);
            h?;
            pc.update(uid, Role::Prod, &producer, creds).await?;
            cc.update(uid, Role::Cons, &pl.listeners, creds).await?;
            let front = cl.listeners.first().context("no consumer-side listener")?;
            anyhow::Ok((front.to_string(), uid))
        })
    })?
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    b[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    b
}

async fn client(gw: &Gateway) -> Result<ControlClient> {
    let t = Duration::from_secs(30);
    let channel = tls::connect(&gw.cs.addr, &Trust::File(gw.cs_cert.clone()), t).await?;
    Ok(ControlClient::new(channel, None, t)?)
}

/// Releases `uid` at both gateways (from the user's host).
fn release(lab: &Lab, a: &Gateway, b: &Gateway, uid: Uid) -> Result<()> {
    lab.within(Host::User, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            for gw in [a, b] {
                client(gw).await?.release(uid).await?;
            }
            anyhow::Ok(())
        })
    })?
}

/// The full path of `program`, if installed.
fn which(program: &str) -> Option<PathBuf> {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// HAProxy and stunnel, installed with apt-get when missing; their paths.
fn ensure_peers() -> Result<(PathBuf, PathBuf)> {
    if which("haproxy").is_none() || which("stunnel4").is_none() {
        eprintln!("bench-lab: installing haproxy and stunnel4 with apt-get");
        let ok = Command::new("sh")
            .args(["-c", "apt-get update -qq && apt-get install -y -qq haproxy stunnel4"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("apt-get could not install haproxy and stunnel4: install them (as root) and run again");
        }
    }
    match (which("haproxy"), which("stunnel4")) {
        (Some(h), Some(s)) => Ok((h, s)),
        _ => bail!("haproxy and stunnel4 are still missing: install them and run again"),
    }
}

/// A peer's two hops in the gateways' hosts: gwb's LAN front → gwa's WAN port → the producer.
fn peer(lab: &Lab, dir: &Path, kind: &str, bins: &(PathBuf, PathBuf)) -> Result<(Vec<NsChild>, String)> {
    let (a, b) = (format!("{GWA_WAN_IP}:{}", PEER_PORT.0), format!("{GWB_LAN_IP}:{}", PEER_PORT.1));
    let app = format!("{PROD_IP}:{APP_PORT}");
    let mut procs = Vec::new();
    match kind {
        "haproxy-splice" => {
            for (host, listen, to) in [(Host::Gwa, &a, &app), (Host::Gwb, &b, &a)] {
                let cfg = format!(
                    "global\n    maxconn 4096\ndefaults\n    mode tcp\n    option splice-auto\n    timeout connect 5s\n\
                     \x20   timeout client 60s\n    timeout server 60s\nlisten hop\n    bind {listen}\n    server s {to}\n"
                );
                let path = dir.join(format!("haproxy-{}.cfg", host.name()));
                std::fs::write(&path, cfg)?;
                let log = dir.join(format!("haproxy-{}.log", host.name()));
                procs.push(lab.spawn(host, &bins.0, &args(&["-db", "-f", &path.display().to_string()]), &log)?);
            }
        }
        "stunnel" => {
            let cert = scistream_transport::certgen::generate(GWA_WAN_IP.parse()?, &[], 30)?;
            let pem = dir.join("stunnel.pem");
            std::fs::write(&pem, format!("{}{}", cert.cert_pem, cert.key_pem))?;
            let server = format!(
                "foreground = yes\npid =\n[hop]\naccept = {a}\nconnect = {app}\ncert = {}\nsslVersionMin = TLSv1.3\n",
                pem.display()
            );
            let client = format!(
                "foreground = yes\npid =\n[hop]\nclient = yes\naccept = {b}\nconnect = {a}\nsslVersionMin = TLSv1.3\n"
            );
            for (host, cfg) in [(Host::Gwa, server), (Host::Gwb, client)] {
                let path = dir.join(format!("stunnel-{}.conf", host.name()));
                std::fs::write(&path, cfg)?;
                let log = dir.join(format!("stunnel-{}.log", host.name()));
                procs.push(lab.spawn(host, &bins.1, &[path.display().to_string()], &log)?);
            }
        }
        other => bail!("unknown peer {other}"),
    }
    // Both hops listen before the consumer dials (bounded).
    for (host, addr) in [(Host::Gwa, &a), (Host::Gwb, &b)] {
        let started = Instant::now();
        while !lab.listening(host)?.iter().any(|l| l.addr.to_string() == *addr) {
            if started.elapsed() > Duration::from_secs(10) {
                let logs: Vec<String> = procs.iter().map(NsChild::log).collect();
                bail!("{kind} does not listen on {addr} in {} after 10 s: {logs:?}", host.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok((procs, b))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(bad) = cli.only.iter().find(|o| !CHAINS.contains(&o.as_str())) {
        bail!("--only {bad:?}: the chains are {}", CHAINS.join(", "));
    }
    if let Err(why) = Lab::available() {
        eprintln!("bench-lab: the multi-host lab cannot be built here: {why} (run as root, with `ip netns`)");
        std::process::exit(2);
    }
    let chains: Vec<&str> =
        CHAINS.into_iter().filter(|c| cli.only.is_empty() || cli.only.iter().any(|o| o == c)).collect();
    let bins = if chains.iter().any(|c| ["haproxy-splice", "stunnel"].contains(c)) {
        ensure_peers()?
    } else {
        (PathBuf::new(), PathBuf::new())
    };
    let lab = Lab::new()?;
    let dir = Scratch::new("bench-lab");
    let stop = Arc::new(AtomicBool::new(false));
    producer(&lab, stop.clone())?;
    let mut results: Vec<(&str, usize, Point)> = Vec::new();
    let mut note = |name, p, pt: Point| {
        eprintln!("bench-lab: {name:<15} P={p:<3} {:8.1} MB/s", pt.mbps);
        results.push((name, p, pt));
    };
    for &name in &chains {
        match name {
            "raw" => {
                for gw in [Host::Gwa, Host::Gwb] {
                    lab.set_forwarding(gw, true)?;
                }
                for &p in &cli.streams {
                    note(name, p, measure(&lab, &format!("{PROD_IP}:{APP_PORT}"), p, cli.seconds, false).await?);
                }
                for gw in [Host::Gwa, Host::Gwb] {
                    lab.set_forwarding(gw, false)?;
                }
            }
            "ours TLS" | "ours plain" => {
                let plain = args(&["--allow-plain-wan"]);
                let spec = |mut s: GatewaySpec| {
                    (s.cs_extra, s.ds_extra) = (plain.clone(), plain.clone());
                    s
                };
                let a = Gateway::start(&lab, &dir.0, &spec(GatewaySpec::a()))?;
                let b = Gateway::start(&lab, &dir.0, &spec(GatewaySpec::b()))?;
                for &p in &cli.streams {
                    let tls_leg = name == "ours TLS";
                    let (front, uid) = tokio::task::block_in_place(|| session(&lab, &a, &b, p, tls_leg))?;
                    note(name, p, measure(&lab, &front, p, cli.seconds, true).await?);
                    tokio::task::block_in_place(|| release(&lab, &a, &b, uid))?;
                }
                for gw in [a, b] {
                    gw.terminate(Duration::from_secs(10))?;
                }
            }
            peer_kind => {
                let (procs, front) = peer(&lab, &dir.0, peer_kind, &bins)?;
                for &p in &cli.streams {
                    note(name, p, measure(&lab, &front, p, cli.seconds, true).await?);
                }
                drop(procs);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);

    let get = |n: &str, p: usize| results.iter().find(|r| r.0 == n && r.1 == p).map(|r| &r.2);
    println!(
        "One stream's path across the lab, prod {PROD_IP} -> gwa -> WAN -> gwb -> cons {CONS_IP}, {} s per point:\n",
        cli.seconds
    );
    println!("| chain (two gateway hops) | P | MB/s | / ours TLS | / ours plain | gateways' CPU (% of a core) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for &name in &chains {
        for &p in &cli.streams {
            let Some(pt) = get(name, p) else { continue };
            let ratio = |to: &str| get(to, p).map_or("—".to_owned(), |o| format!("{:.2}x", pt.mbps / o.mbps));
            let cpu = pt.cpu.map_or("— (kernel)".to_owned(), |c| format!("{c:.0}"));
            println!("| {name} | {p} | {:.1} | {} | {} | {cpu} |", pt.mbps, ratio("ours TLS"), ratio("ours plain"));
        }
    }
    Ok(())
}
