//! `bench-data`: throughput of two relay hops on loopback, side by side in one run: direct,
//! our gateways (plain and TLS WAN leg), our gateways with each proxy backend (`s2cs --type
//! haproxy|nginx|stunnel`, TLS WAN leg), and the proxies alone: HAProxy (with and without
//! splice), nginx stream, socat, stunnel (TLS 1.3); P = 1, 4, 16 parallel streams from an
//! in-process load generator whose streams run on all cores. Then, per backend, the setup
//! latency of a session and the memory of a gateway and its proxies relaying 100 connections. Installs missing peers with apt-get. Writes the table to
//! stdout and `bench-data.md`, the numbers to `bench-data.csv` and a bar chart to
//! `bench-data.svg` (in `--out`, default the current folder).
//!
//! `cargo run --release -p scistream-tests --bin bench-data [-- --seconds 4 --out DIR]`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use scistream_fsm::{Addr, Credentials, Uid};
use scistream_tests::{Scratch, Server, ServerOpts, connect_as, free_range, proxies_in, rss_mb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(name = "bench-data", about)]
struct Cli {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Folder for bench-data.{md,csv,svg}.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Parallel streams to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 4, 16])]
    streams: Vec<usize>,
    /// Measure only these chains (comma-separated names as in the table, e.g.
    /// `--only "ours TLS,stunnel"`); the files are written only for a full run.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// A sink that reads and discards, counting bytes.
async fn sink() -> Result<(u16, Arc<AtomicU64>)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    Ok((port, count))
}

/// Drives `p` streams into `port` for `secs`; returns Gbit/s as counted at the sink.
async fn load(port: u16, p: usize, secs: f64, received: &AtomicU64) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..p {
        let stop = stop.clone();
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.context("connecting the load")?;
        s.set_nodelay(true)?;
        tasks.push(tokio::spawn(async move {
            let buf = vec![0x5au8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) {
                if s.write_all(&buf).await.is_err() {
                    return;
                }
            }
            let _ = s.shutdown().await;
        }));
    }
    // Warm up, then measure at the sink.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b0, t0) = (received.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (b1, t1) = (received.load(Ordering::Relaxed), Instant::now());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok((b1 - b0) as f64 * 8.0 / (t1 - t0).as_secs_f64() / 1e9)
}

/// Peer processes, ended on drop: SIGTERM first, so a master process (nginx's) ends its
/// workers too, then SIGKILL for whatever is still running after 2 s.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for c in &self.0 {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for c in &mut self.0 {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(2) {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &str, args: &[&str]) -> Result<Child> {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd}"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16) -> Result<()> {
    for _ in 0..200 {
        if scistream_tests::listening(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing listens on {port}")
}

fn ensure_peers() -> Result<()> {
    let have = |b: &str| {
        Command::new("sh").args(["-c", &format!("command -v {b}")]).output().is_ok_and(|o| o.status.success())
    };
    let stream_module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists();
    let mut missing: Vec<&str> =
        [("haproxy", "haproxy"), ("nginx", "nginx-light"), ("socat", "socat"), ("stunnel4", "stunnel4")]
            .iter()
            .filter(|(bin, _)| !have(bin))
            .map(|(_, pkg)| *pkg)
            .collect();
    if !stream_module {
        missing.push("libnginx-mod-stream");
    }
    if !missing.is_empty() {
        eprintln!("bench-data: installing {missing:?} with apt-get");
        let ok = Command::new("sh")
            .args(["-c", &format!("apt-get update -qq && apt-get install -y -qq {}", missing.join(" "))])
            .status()?
            .success();
        if !ok {
            bail!("apt-get could not install {missing:?}");
        }
    }
    Ok(())
}

/// Two chained hops of a peer from `front` to `sink`; returns the processes.
fn peer_chain(kind: &str, dir: &Path, front: u16, mid: u16, sink: u16) -> Result<Procs> {
    let mut procs = Procs(Vec::new());
    match kind {
        "haproxy-splice" | "haproxy" => {
            let splice = if kind == "haproxy-splice" { "    option splice-auto\n" } else { "" };
            let cfg = format!(
                "global\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n{splice}\
                 listen hop1\n    bind 127.0.0.1:{front}\n    server s 127.0.0.1:{mid}\n\
                 listen hop2\n    bind 127.0.0.1:{mid}\n    server s 127.0.0.1:{sink}\n"
            );
            let path = dir.join(format!("{kind}.cfg"));
            std::fs::write(&path, cfg)?;
            procs.0.push(spawn("haproxy", &["-f", path.to_str().context("path")?])?);
        }
        "nginx" => {
            let cfg = format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nworker_processes auto;\nerror_log {dir}/nginx.err;\npid {dir}/nginx.pid;\nevents {{ worker_connections 4096; }}\n\
                 stream {{\n  server {{ listen 127.0.0.1:{front}; proxy_pass 127.0.0.1:{mid}; }}\n  server {{ listen 127.0.0.1:{mid}; proxy_pass 127.0.0.1:{sink}; }}\n}}\n",
                dir = dir.display()
            );
            let path = dir.join("nginx.conf");
            std::fs::write(&path, cfg)?;
            procs.0.push(spawn("nginx", &["-c", path.to_str().context("path")?, "-g", "daemon off;"])?);
        }
        "socat" => {
            procs.0.push(spawn(
                "socat",
                &[&format!("TCP-LISTEN:{front},bind=127.0.0.1,fork,reuseaddr"), &format!("TCP:127.0.0.1:{mid}")],
            )?);
            procs.0.push(spawn(
                "socat",
                &[&format!("TCP-LISTEN:{mid},bind=127.0.0.1,fork,reuseaddr"), &format!("TCP:127.0.0.1:{sink}")],
            )?);
        }
        "stunnel" => {
            let cert = scistream_transport::certgen::generate("127.0.0.1".parse()?, &[], 30)?;
            let pem = dir.join("stunnel.pem");
            std::fs::write(&pem, format!("{}{}", cert.cert_pem, cert.key_pem))?;
            let client = format!(
                "foreground = yes\npid =\n[hop1]\nclient = yes\naccept = 127.0.0.1:{front}\nconnect = 127.0.0.1:{mid}\nsslVersionMin = TLSv1.3\n"
            );
            let server = format!(
                "foreground = yes\npid =\n[hop2]\naccept = 127.0.0.1:{mid}\nconnect = 127.0.0.1:{sink}\ncert = {}\nsslVersionMin = TLSv1.3\n",
                pem.display()
            );
            for (name, cfg) in [("stunnel-client.conf", client), ("stunnel-server.conf", server)] {
                let path = dir.join(name);
                std::fs::write(&path, cfg)?;
                procs.0.push(spawn("stunnel4", &[path.to_str().context("path")?])?);
            }
        }
        other => bail!("unknown peer {other}"),
    }
    wait_listening(front)?;
    wait_listening(mid)?;
    Ok(procs)
}

/// Our two gateways, their embedded data servers forwarding with `backend` (`--type`); each
/// proxy's runtime folder under `dir`.
fn gateways(dir: &Path, backend: &str) -> Result<Gateways> {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let start = |side: &str| {
        let rt = dir.join(format!("rt-{backend}-{side}-{n}"));
        let extra = vec![
            "--allow-plain-wan".into(),
            "--type".into(),
            backend.into(),
            "--runtime-dir".into(),
            rt.display().to_string(),
        ];
        Server::start(dir, &ServerOpts { port_range: free_range(4), extra, ..ServerOpts::default() }).map(|s| (s, rt))
    };
    let (prod, _) = start("prod")?;
    let (cons, cons_rt) = start("cons")?;
    Ok(Gateways { prod, cons, cons_rt })
}

/// Two gateways and where the consumer gateway's proxies run.
struct Gateways {
    prod: Server,
    cons: Server,
    cons_rt: PathBuf,
}

impl Gateways {
    /// Resident memory of the consumer gateway and its proxies, MB.
    fn cons_rss(&self) -> f64 {
        let children: f64 = proxies_in(&self.cons_rt).into_iter().map(rss_mb).filter(|r| r.is_finite()).sum();
        rss_mb(self.cons.pid()) + children
    }

    /// One session whose producer is the sink; returns the consumer-side port, the session and
    /// how long its setup took (REQs, Hello, UpdateTargets: the proxies started and up). TLS:
    /// credentials minted; plain: none (the gateways allow plain WAN legs).
    async fn session(&self, tls: bool, sink: u16) -> Result<(u16, Uid, Duration)> {
        let call = Duration::from_secs(30);
        let (p, c) = (connect_as(&self.prod, None, call).await?, connect_as(&self.cons, None, call).await?);
        let uid = Uid(uuid::Uuid::new_v4());
        let creds =
            tls.then(|| Credentials(*uuid::Uuid::new_v4().as_bytes().repeat(2).first_chunk::<32>().expect("32")));
        // The harness's setup: the Hello retried at once while the REQ makes the session.
        let started = Instant::now();
        let cl = scistream_tests::setup_with(&p, &c, uid, Addr::new("127.0.0.1", sink), 1, creds).await?;
        Ok((cl[0].port, uid, started.elapsed()))
    }

    /// Releases a session at both gateways.
    async fn release(&self, uid: Uid) -> Result<()> {
        let call = Duration::from_secs(30);
        let (p, c) = (connect_as(&self.prod, None, call).await?, connect_as(&self.cons, None, call).await?);
        p.release(uid).await?;
        c.release(uid).await?;
        Ok(())
    }
}

/// The chains through our gateways: the name in the table, the backend, whether TLS.
const OURS: [(&str, &str, bool); 5] = [
    ("ours plain", "native", false),
    ("ours TLS", "native", true),
    ("s2cs haproxy TLS", "haproxy", true),
    ("s2cs nginx TLS", "nginx", true),
    ("s2cs stunnel TLS", "stunnel", true),
];

/// Setups measured per backend.
const SETUPS: usize = 15;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure_peers()?;
    let dir = Scratch::new("bench-data");
    let names = [
        "direct",
        "ours plain",
        "ours TLS",
        "s2cs haproxy TLS",
        "s2cs nginx TLS",
        "s2cs stunnel TLS",
        "haproxy-splice",
        "haproxy",
        "nginx",
        "socat",
        "stunnel",
    ];
    let mut results: Vec<(&str, usize, f64)> = Vec::new();
    let partial = !cli.only.is_empty();
    if let Some(bad) = cli.only.iter().find(|o| !names.contains(&o.as_str())) {
        anyhow::bail!("--only {bad:?}: the chains are {}", names.join(", "));
    }
    for name in names.into_iter().filter(|n| !partial || cli.only.iter().any(|o| o == n)) {
        for &p in &cli.streams {
            let (sink_port, received) = sink().await?;
            let gbps = match OURS.iter().find(|o| o.0 == name) {
                _ if name == "direct" => load(sink_port, p, cli.seconds, &received).await?,
                Some((_, backend, tls)) => {
                    let g = gateways(&dir.0, backend)?;
                    let (front, _, _) = g.session(*tls, sink_port).await?;
                    load(front, p, cli.seconds, &received).await?
                }
                None => {
                    let (front, mid) = (free_port()?, free_port()?);
                    let _procs = peer_chain(name, &dir.0, front, mid, sink_port)?;
                    load(front, p, cli.seconds, &received).await?
                }
            };
            eprintln!("bench-data: {name:<17} P={p:<3} {gbps:6.2} Gbit/s");
            results.push((name, p, gbps));
        }
    }
    if partial {
        return Ok(());
    }
    // Per backend: setup latency (a proxy's start is on that path) and the memory of a
    // consumer gateway, its proxies included, relaying 100 connections at once (TLS WAN leg).
    let mut per_backend: Vec<(&str, Duration, Duration, f64)> = Vec::new();
    for backend in ["native", "haproxy", "nginx", "stunnel"] {
        let g = gateways(&dir.0, backend)?;
        let (sink_port, received) = sink().await?;
        let mut took = Vec::new();
        for _ in 0..SETUPS {
            let (_, uid, t) = g.session(true, sink_port).await?;
            took.push(t);
            g.release(uid).await?;
        }
        took.sort();
        let (p50, max) = (took[took.len() / 2], took[took.len() - 1]);
        let (front, _, _) = g.session(true, sink_port).await?;
        let handle = tokio::spawn(async move { load(front, 100, 2.0, &received).await });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rss = g.cons_rss();
        let _ = handle.await;
        eprintln!("bench-data: {backend:<8} setup p50 {p50:?} max {max:?}; RSS with 100 connections {rss:.1} MB");
        per_backend.push((backend, p50, max, rss));
    }

    let get = |n: &str, p: usize| results.iter().find(|r| r.0 == n && r.1 == p).map_or(f64::NAN, |r| r.2);
    let mut md = String::new();
    let _ = write!(md, "| chain (two hops) |");
    for p in &cli.streams {
        let _ = write!(md, " P={p} Gbit/s |");
    }
    md.push_str("\n|---|");
    for _ in &cli.streams {
        md.push_str("---:|");
    }
    md.push('\n');
    for n in names {
        let _ = write!(md, "| {n} |");
        for p in &cli.streams {
            let _ = write!(md, " {:.2} |", get(n, *p));
        }
        md.push('\n');
    }
    md.push_str("\n| ratio | ");
    md.push_str(&cli.streams.iter().map(|p| format!("P={p}")).collect::<Vec<_>>().join(" | "));
    md.push_str(" | target |\n|---|");
    for _ in &cli.streams {
        md.push_str("---:|");
    }
    md.push_str("---|\n");
    for (label, a, b, target) in [
        ("ours plain / haproxy-splice", "ours plain", "haproxy-splice", "≥ 1.2"),
        ("ours TLS / stunnel", "ours TLS", "stunnel", "≥ 1.5"),
        ("s2cs haproxy TLS / ours TLS", "s2cs haproxy TLS", "ours TLS", ""),
        ("s2cs nginx TLS / ours TLS", "s2cs nginx TLS", "ours TLS", ""),
        ("s2cs stunnel TLS / ours TLS", "s2cs stunnel TLS", "ours TLS", ""),
    ] {
        let _ = write!(md, "| {label} |");
        for p in &cli.streams {
            let _ = write!(md, " {:.2}x |", get(a, *p) / get(b, *p));
        }
        let _ = writeln!(md, " {target} |");
    }
    let _ = writeln!(
        md,
        "\n| backend (`--type`) | setup p50 ms | setup max ms | consumer gateway + proxies RSS, 100 connections (MB) |\n|---|---:|---:|---:|"
    );
    for (b, p50, max, rss) in &per_backend {
        let _ = writeln!(md, "| {b} | {:.1} | {:.1} | {rss:.1} |", p50.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3);
    }
    let _ = writeln!(
        md,
        "\nSetup: REQ at both gateways, the Hello, UpdateTargets at both (TLS WAN leg), {SETUPS} sessions one after another, each released; a proxy backend starts a process per session at each gateway on that path. RSS: the consumer gateway's s2cs plus its proxy processes while relaying 100 connections of one session (native: target ≤ 64 MB)."
    );
    println!("{md}");
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(cli.out.join("bench-data.md"), &md)?;
    let mut csv = String::from("chain,streams,gbit_per_s\n");
    for (n, p, g) in &results {
        let _ = writeln!(csv, "{n},{p},{g:.3}");
    }
    std::fs::write(cli.out.join("bench-data.csv"), csv)?;
    std::fs::write(cli.out.join("bench-data.svg"), svg(&names, &cli.streams, &get))?;
    eprintln!("bench-data: wrote {}/bench-data.{{md,csv,svg}}", cli.out.display());
    Ok(())
}

/// A grouped bar chart: one group per chain, one bar per P.
fn svg(names: &[&str], streams: &[usize], get: &dyn Fn(&str, usize) -> f64) -> String {
    let max = names
        .iter()
        .flat_map(|n| streams.iter().map(move |p| get(n, *p)))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let (w, h, left, bottom) = (900.0, 420.0, 60.0, 60.0);
    let group = (w - left - 20.0) / names.len() as f64;
    let bar = group / (streams.len() as f64 + 1.0);
    let colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n"
    );
    let _ = writeln!(
        s,
        "<text x='{}' y='16' font-size='14'>Two relay hops on loopback, Gbit/s (higher is better)</text>",
        left
    );
    for (i, n) in names.iter().enumerate() {
        let x0 = left + i as f64 * group;
        for (j, p) in streams.iter().enumerate() {
            let v = get(n, *p);
            let v = if v.is_finite() { v } else { 0.0 };
            let bh = v / max * (h - bottom - 40.0);
            let x = x0 + j as f64 * bar;
            let _ = writeln!(
                s,
                "<rect x='{x:.1}' y='{:.1}' width='{:.1}' height='{bh:.1}' fill='{}'/>",
                h - bottom - bh,
                bar * 0.9,
                colors[j % colors.len()]
            );
        }
        let _ = writeln!(
            s,
            "<text x='{:.1}' y='{:.1}' transform='rotate(20 {:.1} {:.1})'>{n}</text>",
            x0,
            h - bottom + 14.0,
            x0,
            h - bottom + 14.0
        );
    }
    for (j, p) in streams.iter().enumerate() {
        let _ = writeln!(
            s,
            "<rect x='{}' y='{}' width='10' height='10' fill='{}'/><text x='{}' y='{}'>P={p}</text>",
            w - 120.0,
            30.0 + j as f64 * 14.0,
            colors[j % colors.len()],
            w - 105.0,
            39.0 + j as f64 * 14.0
        );
    }
    let _ = writeln!(
        s,
        "<text x='8' y='{}'>{max:.1}</text><line x1='{left}' y1='40' x2='{left}' y2='{}' stroke='black'/>",
        44.0,
        h - bottom
    );
    s.push_str("</svg>\n");
    s
}
