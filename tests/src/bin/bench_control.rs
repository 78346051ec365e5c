//! `bench-control`: the control plane's speed and footprint, against the real `s2cs` over
//! TLS on loopback, printed as a table beside SciStream 1.2's figures as issue 3 quotes them
//! (measured on this machine when the issue was written; this command does not run 1.2).
//!
//! `cargo run --release -p scistream-tests --bin bench-control [-- --setups N --waiting N]`
//!
//! It also measures what the facility's destination policy costs a setup: a pair of servers
//! with `--policy-rules N` rules (default 1,000) in both `allow-targets` and `allow-peers`,
//! the one that admits the setup's addresses last (every check scans them all), against a
//! pair without, setups alternating between the pairs. `--policy-only 1` measures only that.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scistream_fsm::{Addr, AppKey, Credentials, Role, Uid};
use scistream_tests::{Request, Scratch, Server, ServerOpts, args, free_range, rss_mb, trust};
use scistream_transport::client::ControlClient;

struct Opts {
    setups: usize,
    concurrency: usize,
    waiting: usize,
    cli_runs: usize,
    policy_rules: usize,
    policy_only: bool,
}

fn opts() -> Result<Opts> {
    let mut o =
        Opts { setups: 2_000, concurrency: 32, waiting: 10_000, cli_runs: 20, policy_rules: 1_000, policy_only: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!(
                "bench-control [--setups N (2000)] [--concurrency N (32)] [--waiting N (10000)] [--cli-runs N (20)] \
                 [--policy-rules N (1000)] [--policy-only 0|1]: the control plane's speed and footprint, a table"
            );
            std::process::exit(0);
        }
        let v: usize = it.next().with_context(|| format!("{flag} needs a value"))?.parse().context("not a number")?;
        match flag.as_str() {
            "--setups" => o.setups = v,
            "--concurrency" => o.concurrency = v,
            "--waiting" => o.waiting = v,
            "--cli-runs" => o.cli_runs = v,
            "--policy-rules" => o.policy_rules = v,
            "--policy-only" => o.policy_only = v != 0,
            other => bail!(
                "unknown flag {other}; known: --setups --concurrency --waiting --cli-runs --policy-rules --policy-only"
            ),
        }
    }
    Ok(o)
}

async fn client(server: &Server) -> Result<ControlClient> {
    client_as(server, None).await
}

async fn client_as(server: &Server, token: Option<&str>) -> Result<ControlClient> {
    scistream_tests::connect_as(server, token, Duration::from_secs(30)).await
}

/// Setup latency (p50, p99) with authentication on at both facilities, tokens checked by the
/// local authorization server on loopback with a cache TTL of `ttl` seconds; and the number of
/// introspections the `n` setups (and their releases) cost.
async fn auth_latency(dir: &std::path::Path, ttl: &str, n: usize) -> Result<(Duration, Duration, u64)> {
    use scistream_tests::authsrv::{AuthServer, Facility};
    let fac = |w: &str| Facility { client_id: format!("fac-{w}"), secret: format!("sec-{w}") };
    let auth = AuthServer::start(&[fac("p"), fac("c")])?;
    let start = |w: &str| {
        let mut extra = auth.s2cs_flags(&fac(w), &format!("scope-{w}"));
        extra.extend(args(&["--auth-cache-ttl", ttl]));
        Server::start(
            dir,
            &ServerOpts { port_range: free_range(50), hello_timeout: 600.0, extra, ..ServerOpts::default() },
        )
    };
    let (ps, cs) = (start("p")?, start("c")?);
    let (tp, tc) = (auth.mint("alice", "scope-p", 3600), auth.mint("alice", "scope-c", 3600));
    let (p, c) = (client_as(&ps, Some(&tp)).await?, client_as(&cs, Some(&tc)).await?);
    for i in 0..20 {
        setup(&p, &c, i).await?;
    }
    let before = auth.introspections();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        lat.push(setup(&p, &c, i as u16).await?);
    }
    lat.sort();
    Ok((pct(&lat, 0.5), pct(&lat, 0.99), auth.introspections() - before))
}

/// A configuration file with `n` rules in `allow-targets` and in `allow-peers`, none of
/// which admits loopback but the last.
fn policy_file(dir: &std::path::Path, n: usize) -> Result<std::path::PathBuf> {
    let rules = |base: u16| {
        let mut r: Vec<String> = (0..n.saturating_sub(1))
            .map(|i| {
                // Documentation ranges only; none is loopback.
                let net = ["192.0.2", "198.51.100", "203.0.113"][i % 3];
                format!("\"{net}.{}/32:{}\"", i % 256, base + (i % 1000) as u16)
            })
            .collect();
        r.push("\"127.0.0.1/32:*\"".into());
        r.join(", ")
    };
    let path = dir.join(format!("policy-{n}.toml"));
    std::fs::write(&path, format!("allow-targets = [{}]\nallow-peers = [{}]\n", rules(20_000), rules(30_000)))?;
    Ok(path)
}

/// Setup latency (p50, p99) without a policy and with one of `rules` rules, setups alternating
/// between a pair of servers without and a pair with (the producer's server of the pair checked
/// to enforce it first).
async fn policy_latency(dir: &std::path::Path, rules: usize, n: usize) -> Result<[(Duration, Duration); 2]> {
    let file = policy_file(dir, rules)?;
    let opts = |extra: Vec<String>| ServerOpts {
        port_range: free_range(50),
        hello_timeout: 600.0,
        extra,
        ..ServerOpts::default()
    };
    let with = args(&["--config", file.to_str().context("path")?]);
    let (np, nc) = (Server::start(dir, &opts(Vec::new()))?, Server::start(dir, &opts(Vec::new()))?);
    let (wp, wc) = (Server::start(dir, &opts(with.clone()))?, Server::start(dir, &opts(with))?);
    let (np, nc) = (client(&np).await?, client(&nc).await?);
    let (wp, wc) = (client(&wp).await?, client(&wc).await?);
    policy_enforced(&wp).await?;
    for i in 0..20 {
        setup(&np, &nc, i).await?;
        setup(&wp, &wc, i).await?;
    }
    let (mut none, mut some) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        none.push(setup(&np, &nc, i as u16).await?);
        some.push(setup(&wp, &wc, i as u16).await?);
    }
    none.sort();
    some.sort();
    Ok([(pct(&none, 0.5), pct(&none, 0.99)), (pct(&some, 0.5), pct(&some, 0.99))])
}

/// Fails unless the control server behind `p` enforces its policy: a producer's Hello naming
/// an address no rule admits (127.0.0.2) is refused PERMISSION_DENIED.
async fn policy_enforced(p: &ControlClient) -> Result<()> {
    use scistream_fsm::ErrorCode;
    use scistream_transport::client::CallError;
    let (uid, key) = (Uid(uuid::Uuid::new_v4()), AppKey(rand_bytes()));
    let waiting = {
        let p = p.clone();
        tokio::spawn(async move { p.req(uid, Role::Prod, 1, 0, Some(key)).await })
    };
    let verdict = scistream_tests::hello_once_held(p, uid, &[Addr::new("127.0.0.2", 9)], key).await;
    p.release(uid).await?;
    waiting.abort();
    match verdict {
        Err(CallError::Status { code: ErrorCode::PermissionDenied, .. }) => Ok(()),
        other => bail!("the servers with the policy let a Hello naming 127.0.0.2:9 through: {other:?}"),
    }
}

/// The core's check of one address against `rules` rules, the admitting one last: time per
/// check.
fn policy_check_cost(rules: usize) -> Duration {
    use scistream_fsm::policy::{Dialled, Policy, Rule};
    let mut list: Vec<Rule> = (0..rules.saturating_sub(1))
        .map(|i| format!("192.0.2.{}/32:{}", i % 256, 20_000 + i % 1000).parse().expect("rule"))
        .collect();
    list.push("127.0.0.1/32".parse().expect("rule"));
    let policy = Policy { targets: Some(list), ..Policy::default() };
    let target = [Addr::new("127.0.0.1", 7000)];
    let reps = 10_000u32;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(policy.admit_all(Dialled::Target, std::hint::black_box(&target))).expect("admitted");
    }
    t.elapsed() / reps
}

/// One whole two-facility setup ([`scistream_tests::establish`]), then its release (not timed).
async fn setup(p: &ControlClient, c: &ControlClient, n: u16) -> Result<Duration> {
    let uid = Uid(uuid::Uuid::new_v4());
    let took = scistream_tests::establish(p, c, uid, 7000 + n % 1000).await?;
    let (a, b) = tokio::join!(p.release(uid), c.release(uid));
    a?;
    b?;
    Ok(took)
}

fn rand_bytes() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = opts()?;
    let dir = Scratch::new("bench");
    let policy_n = (o.setups / 4).max(100);
    let [(n50, n99), (w50, w99)] = policy_latency(&dir.0, o.policy_rules, policy_n).await?;
    let check = policy_check_cost(o.policy_rules);
    // The check must not show in p50: within 10 %, or 0.2 ms (the gap one loaded run showed
    // and its rerun did not: docs/control-plane.md, "The destination policy's cost").
    let policy_ok = ms(w50) <= (ms(n50) * 1.1).max(ms(n50) + 0.2);
    let policy_table = || {
        println!("| measure | no policy | {} rules | target |", o.policy_rules);
        println!("|---|---:|---:|---:|");
        println!(
            "| two-facility setup, p50 ({policy_n} setups each, alternating) | {:.2} ms | {:.2} ms | within 10 % (or 0.2 ms) |",
            ms(n50),
            ms(w50)
        );
        println!("| two-facility setup, p99 | {:.2} ms | {:.2} ms | – |", ms(n99), ms(w99));
        println!(
            "| the core's check of one address (admitting rule last) | – | {:.1} µs | – |",
            check.as_secs_f64() * 1e6
        );
    };
    if o.policy_only {
        policy_table();
        println!("\n{}", if policy_ok { "the policy does not show in p50" } else { "THE POLICY SHOWS IN p50" });
        if !policy_ok {
            std::process::exit(1);
        }
        return Ok(());
    }
    let range = |n| ServerOpts { port_range: free_range(n), hello_timeout: 600.0, ..ServerOpts::default() };
    let ps = Server::start(&dir.0, &range(200))?;
    let cs = Server::start(&dir.0, &range(200))?;
    let (p, c) = (client(&ps).await?, client(&cs).await?);
    for i in 0..50 {
        setup(&p, &c, i).await?; // warm-up: connections, allocator
    }

    // Latency, one setup at a time.
    let mut lat = Vec::with_capacity(o.setups);
    for i in 0..o.setups {
        lat.push(setup(&p, &c, i as u16).await?);
    }
    lat.sort();

    // The same with authentication on: introspection answered from the cache, then every time.
    let auth_n = (o.setups / 4).max(10);
    let cached = auth_latency(&dir.0, "60", auth_n).await?;
    let uncached = auth_latency(&dir.0, "0", auth_n).await?;

    // Sustained rate with `concurrency` setups in flight.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..o.concurrency {
        let (p, c) = (p.clone(), c.clone());
        let share = o.setups / o.concurrency;
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                setup(&p, &c, (w * share + i) as u16).await?;
            }
            anyhow::Ok(share)
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    let rate = done as f64 / t.elapsed().as_secs_f64();

    // The whole setup as the user runs it: the s2uc process plus an appctrl process.
    let mut walls = Vec::new();
    let (both, prod_only) = (trust(&[&ps, &cs]), trust(&[&ps]));
    for _ in 0..o.cli_runs {
        let t = Instant::now();
        let request = Request::start(&both, &ps.addr, &cs.addr, &["--num-conn", "1"])?;
        let mut hello_args = args(&[&request.uid, "--s2cs", &ps.addr, "--key", &request.app_key]);
        hello_args.extend(prod_only.iter().cloned());
        hello_args.extend(args(&["--listeners", "127.0.0.1:7000", "--hello-timeout", "10"]));
        let hello = scistream_tests::run("appctrl", &hello_args, Duration::from_secs(30))?;
        let uid = request.uid.clone();
        let out = request.process.wait(Duration::from_secs(30))?;
        if !hello.status.success() || !out.status.success() {
            bail!(
                "appctrl: {}; s2uc: {}",
                String::from_utf8_lossy(&hello.stderr),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        walls.push(t.elapsed());
        let u: Uid = uid.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (a, b) = tokio::join!(p.release(u), c.release(u));
        a?;
        b?;
    }
    walls.sort();

    // Sessions waiting for Hello on one s2cs, and its memory.
    let ws = Server::start(&dir.0, &range(o.waiting as u16 + 10))?;
    let w = client(&ws).await?;
    let rss_idle = rss_mb(ws.pid());
    // Many users: a connection per 100 waiting sessions.
    let mut conns = Vec::new();
    for _ in 0..o.waiting.div_ceil(100) {
        conns.push(client(&ws).await?.with_timeout(Duration::from_secs(600)));
    }
    let mut waiting = Vec::with_capacity(o.waiting);
    for i in 0..o.waiting {
        let w = conns[i / 100].clone();
        waiting.push(tokio::spawn(async move {
            w.req(Uid(uuid::Uuid::new_v4()), Role::Prod, 1, 0, Some(AppKey(rand_bytes()))).await
        }));
    }
    let t = Instant::now();
    eprintln!("bench-control: {} REQs sent, waiting until the server holds them", o.waiting);
    let held = loop {
        let n = w
            .list()
            .await
            .map_err(|e| anyhow::anyhow!("listing the waiting sessions: {e}"))?
            .iter()
            .filter(|s| s.state == "Listening")
            .count();
        if n >= o.waiting || t.elapsed() > Duration::from_secs(120) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rss_held = rss_mb(ws.pid());
    eprintln!("bench-control: {held} sessions held");
    // A setup on the same server while they wait.
    let probe = Instant::now();
    let uid = Uid(uuid::Uuid::new_v4());
    w.req(uid, Role::Cons, 1, 0, Some(AppKey(rand_bytes()))).await?;
    w.update(uid, Role::Cons, &[Addr::new("127.0.0.1", 7000)], Some(Credentials([7; 32]))).await?;
    w.release(uid).await?;
    let probe = probe.elapsed();
    for t in waiting {
        t.abort();
    }

    println!("| measure | SciStream-rs | SciStream 1.2 (issue 3's figures) | target | ratio to 1.2 |");
    println!("|---|---:|---:|---:|---:|");
    let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
    println!(
        "| two-facility setup, in-process client, p50 | {:.2} ms | 1.8 ms (req+Hello only) | ≤ 5 ms | {:.1}x faster |",
        ms(p50),
        1.8 / ms(p50)
    );
    println!("| two-facility setup, in-process client, p99 | {:.2} ms | – | ≤ 25 ms | – |", ms(p99));
    for (what, (a50, a99, asked)) in [("cached 60 s", cached), ("every call introspected", uncached)] {
        println!(
            "| same, authentication on ({what}), p50 / p99 | {:.2} / {:.2} ms | – (1.2 asks Globus on every call) | – | {:.2} introspections per setup |",
            ms(a50),
            ms(a99),
            asked as f64 / auth_n as f64
        );
    }
    println!("| sustained setups/s ({} in flight) | {rate:.0} | – | ≥ 1000 | – |", o.concurrency);
    let (w50, wmax) = (pct(&walls, 0.5), pct(&walls, 1.0));
    println!(
        "| `s2uc request` + `appctrl` processes, wall p50 (max) | {:.1} ms ({:.1}) | 1720 ms (inbound 870 + outbound 850) | ≤ 50 ms | {:.0}x faster |",
        ms(w50),
        ms(wmax),
        1720.0 / ms(w50)
    );
    println!(
        "| sessions waiting for Hello on one s2cs | {held} | 10 (11th freezes the server) | 10000 | {:.0}x |",
        held as f64 / 10.0
    );
    println!("| s2cs RSS idle → with them waiting | {rss_idle:.1} → {rss_held:.1} MB | – | ≤ 256 MB | – |");
    println!("| CONS req+update+release while they wait | {:.2} ms | server frozen | – | – |", ms(probe));
    println!();
    policy_table();
    let ok = policy_ok
        && ms(p50) <= 5.0
        && ms(p99) <= 25.0
        && rate >= 1000.0
        && ms(w50) <= 50.0
        && held >= 10_000.min(o.waiting)
        && rss_held <= 256.0;
    println!("\n{}", if ok { "all targets met" } else { "SOME TARGETS MISSED" });
    drop(ps);
    drop(cs);
    drop(ws);
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
