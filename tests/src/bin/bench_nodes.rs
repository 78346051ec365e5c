//! `bench-nodes`: data servers on nodes of their own, measured against the embedded data
//! server in the same run, and a control server's restart with many established sessions.
//!
//! `cargo run --release -p scistream-tests --bin bench-nodes [-- --setups N --recovered N]`
//!
//! 1. Two-facility setup latency (REQ×2, Hello, UpdateTargets×2 from an in-process client,
//!    each setup released before the next): embedded data servers, then `s2ds` nodes linked
//!    over mutual TLS, in alternating blocks so the machine's drift hits both alike.
//! 2. `N` sessions established through nodes with `--state-dir`; the producer's `s2cs` is
//!    killed with SIGKILL and started again: the time until it serves, until its node has
//!    confirmed every recovered session, its RSS then, and the store's size on disk.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scistream_fsm::Uid;
use scistream_tests::{Node, Scratch, Server, ServerOpts, args, free_range, rss_mb};
use scistream_transport::client::ControlClient;

struct Opts {
    setups: usize,
    recovered: usize,
}

fn opts() -> Result<Opts> {
    let mut o = Opts { setups: 600, recovered: 1_000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v: usize = it.next().context("flag without value")?.parse().context("not a number")?;
        match flag.as_str() {
            "--setups" => o.setups = v,
            "--recovered" => o.recovered = v,
            other => bail!("unknown flag {other}; known: --setups --recovered"),
        }
    }
    Ok(o)
}

async fn client(server: &Server) -> Result<ControlClient> {
    scistream_tests::connect_as(server, None, Duration::from_secs(30)).await
}

async fn setup_and_release(p: &ControlClient, c: &ControlClient) -> Result<Duration> {
    let uid = Uid(uuid::Uuid::new_v4());
    let took = scistream_tests::establish(p, c, uid, 7000).await?;
    let (a, b) = tokio::join!(p.release(uid), c.release(uid));
    a?;
    b?;
    Ok(took)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A pair of control servers: embedded data servers, or each linked to a node of its own.
struct Pair {
    prod: Server,
    cons: Server,
    _nodes: Vec<Node>,
}

fn pair(dir: &std::path::Path, nodes: bool, ports: u16, state: bool) -> Result<Pair> {
    let state_of = |w: &str| -> Vec<String> {
        if state { args(&["--state-dir", dir.join(format!("state-{w}")).to_str().unwrap_or(".")]) } else { Vec::new() }
    };
    let opts = |node: Option<&Node>, w: &str| ServerOpts {
        port_range: free_range(ports),
        hello_timeout: 600.0,
        extra: state_of(w),
        node: node.map(Node::link),
        ..ServerOpts::default()
    };
    if nodes {
        let (pn, cn) = (Node::start(dir, &free_range(ports), &[])?, Node::start(dir, &free_range(ports), &[])?);
        let prod = Server::start(dir, &opts(Some(&pn), "p"))?;
        let cons = Server::start(dir, &opts(Some(&cn), "c"))?;
        Ok(Pair { prod, cons, _nodes: vec![pn, cn] })
    } else {
        Ok(Pair {
            prod: Server::start(dir, &opts(None, "p"))?,
            cons: Server::start(dir, &opts(None, "c"))?,
            _nodes: vec![],
        })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = opts()?;
    let dir = Scratch::new("bench-nodes");

    // 1. Setup latency, embedded and through nodes, in alternating blocks.
    let (emb, node) = (pair(&dir.0, false, 20, false)?, pair(&dir.0, true, 20, false)?);
    let clients =
        [(client(&emb.prod).await?, client(&emb.cons).await?), (client(&node.prod).await?, client(&node.cons).await?)];
    let mut lat: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for (p, c) in &clients {
        for _ in 0..30 {
            setup_and_release(p, c).await?; // warm-up
        }
    }
    let block = 50;
    for round in 0..o.setups.div_ceil(block) {
        for (k, (p, c)) in clients.iter().enumerate() {
            for _ in 0..block.min(o.setups - round * block) {
                lat[k].push(setup_and_release(p, c).await?);
            }
        }
    }
    for l in &mut lat {
        l.sort();
    }
    drop(clients);
    drop(emb);
    drop(node);

    // 2. A restart with N established sessions through nodes.
    let n = o.recovered;
    let mut rp = pair(&dir.0, true, u16::try_from(n + 20)?, true)?;
    let (p, c) = (client(&rp.prod).await?, client(&rp.cons).await?);
    let uids: Vec<Uid> = (0..n).map(|_| Uid(uuid::Uuid::new_v4())).collect();
    let t = Instant::now();
    for chunk in uids.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for u in chunk {
            let (p, c, u) = (p.clone(), c.clone(), *u);
            set.spawn(async move { scistream_tests::establish(&p, &c, u, 7000).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    }
    eprintln!("bench-nodes: {n} sessions established in {:.1} s", t.elapsed().as_secs_f64());
    drop(p);
    let store = dir.0.join("state-p").join(scistream_transport::store::FILE);
    // Let the store's writer catch up before the kill (what is not on disk is not recovered).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let disk = std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    rp.prod.kill9_and_restart()?;
    let serving = t.elapsed();
    let p = client(&rp.prod).await?;
    let attached = loop {
        let list = p.list().await.map_err(|e| anyhow::anyhow!("list: {e}"))?;
        let established = list.iter().filter(|s| s.state == "Established").count();
        if rp.prod.log().matches("data server node attached").count() >= 2 && established == n {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("after 60 s: {established} of {n} sessions established at the restarted server");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rss = rss_mb(rp.prod.pid());
    let first = uids[0];
    p.release(first).await.map_err(|e| anyhow::anyhow!("release after restart: {e}"))?;

    println!("| measure | embedded data servers | data servers on nodes (mutual TLS link) | nodes / embedded |");
    println!("|---|---:|---:|---:|");
    for (what, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (ms(pct(&lat[0], q)), ms(pct(&lat[1], q)));
        println!("| two-facility setup {what} ({} setups each) | {a:.2} ms | {b:.2} ms | {:.2} |", o.setups, b / a);
    }
    println!();
    println!("| restart of the producer's s2cs (SIGKILL) with {n} established sessions on its node | |");
    println!("|---|---:|");
    println!("| restart until it serves (process start, store read, `s2cs ready`) | {:.0} ms |", ms(serving));
    println!(
        "| restart until its node confirmed all {n} sessions (all `Established` in `list`) | {:.0} ms |",
        ms(attached)
    );
    println!("| RSS of the restarted s2cs | {rss:.1} MB |");
    println!(
        "| store on disk (`sessions.redb`) | {:.1} KiB ({:.0} B per session) |",
        disk as f64 / 1024.0,
        disk as f64 / n as f64
    );
    Ok(())
}
