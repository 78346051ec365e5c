//! `scistream-demo`: the main job on one machine. Two facilities' `s2cs` daemons on loopback
//! (certificates made on the fly) checking every caller's token at a local OAuth2 server, the
//! user's `s2uc login` (authorization code with PKCE) for each facility's scope, a producer
//! application serving `--size` bytes of verifiable data, orchestration by `s2uc request` and
//! `appctrl` over TLS, a consumer reading through the consumer's gateway and checking every
//! byte. Exits non-zero on any mismatch or leftover.
//!
//! With `--hosts` the same stream crosses the multi-host lab (docs/lab.md): each party on a
//! host of its own (network namespaces, root needed), each gateway running `s2cs` with a remote
//! `s2ds`. Where the lab cannot be built it says why and exits 2.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use scistream_tests::lab::{CONS_IP, PROD_IP, USER_IP};
use scistream_tests::{Scratch, args};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod site;
use site::Site;

/// A complete two-facility stream on this machine.
#[derive(Parser)]
#[command(name = "scistream-demo", version, about)]
struct Cli {
    /// Bytes to stream: a number with an optional unit (KiB, MiB, GiB, KB, MB, GB).
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    size: u64,
    /// Parallel connections (num_conn).
    #[arg(long, default_value_t = 4)]
    streams: u16,
    /// Run each party on a host of its own: the multi-host lab's network namespaces (root).
    #[arg(long)]
    hosts: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a number with an optional unit"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?} (KiB, MiB, GiB, KB, MB, GB)")),
    };
    n.checked_mul(mult).filter(|n| *n > 0).ok_or_else(|| format!("{s:?}: must be positive and fit 64 bits"))
}

/// The verifiable content of stream `k`: 8 bytes of splitmix64 per position.
fn fill(k: u64, offset: u64, buf: &mut [u8]) {
    debug_assert!(offset.is_multiple_of(8));
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut z = (k << 48) ^ (offset / 8 + i as u64);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

fn share(size: u64, streams: u16, k: u16) -> u64 {
    let base = size / u64::from(streams);
    if k + 1 == streams { size - base * u64::from(streams - 1) } else { base }
}

const CHUNK: usize = 256 * 1024;

/// Longest time the stream may stand still before the demo gives up.
const STALL: Duration = Duration::from_secs(30);

/// The producer application: stream `k` on listener `k`, once, then end of stream.
async fn produce(listener: TcpListener, k: u16, len: u64) -> Result<()> {
    let (mut s, _) = listener.accept().await?;
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < len {
        let n = (len - sent).min(CHUNK as u64) as usize;
        fill(u64::from(k), sent, &mut buf[..n]);
        s.write_all(&buf[..n]).await?;
        sent += n as u64;
    }
    s.shutdown().await?;
    Ok(())
}

/// What a consumer found: bytes read and compared, and how many of them differed from what
/// the producer sent.
#[derive(Default)]
struct Checked {
    bytes: u64,
    mismatched: u64,
}

/// The bytes of `got` that differ from `want`.
fn differing(got: &[u8], want: &[u8]) -> u64 {
    // Equal slices (every run that passes) take one memcmp; only a mismatch is counted byte
    // by byte.
    if got == want {
        return 0;
    }
    got.iter().zip(want).filter(|(a, b)| a != b).count() as u64
}

/// The consumer application: reads stream `k` from `s` and compares every byte with what the
/// producer sent, counting the ones that differ.
async fn consume(mut s: TcpStream, k: u16, len: u64, done: Arc<AtomicU64>) -> Result<Checked> {
    let (mut buf, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut got = 0u64;
    let mut mismatched = 0u64;
    // Reads land on 8-byte positions only at chunk starts, so keep a carry of partial data.
    let mut pending = Vec::with_capacity(2 * CHUNK);
    loop {
        let n = s.read(&mut buf).await.with_context(|| format!("stream {k} broke after {got} bytes"))?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        let whole = pending.len() - pending.len() % 8;
        if whole > 0 {
            let check = &pending[..whole];
            // whole ≤ 2·CHUNK: check in chunk-sized steps.
            let mut off = 0;
            while off < whole {
                let step = (whole - off).min(CHUNK);
                fill(u64::from(k), got + off as u64, &mut want[..step]);
                mismatched += differing(&check[off..off + step], &want[..step]);
                off += step;
            }
            got += whole as u64;
            done.fetch_add(whole as u64, Ordering::Relaxed);
            pending.drain(..whole);
        }
    }
    if !pending.is_empty() {
        fill(u64::from(k), got, &mut want[..8]);
        mismatched += differing(&pending, &want[..pending.len()]);
        got += pending.len() as u64;
        done.fetch_add(pending.len() as u64, Ordering::Relaxed);
    }
    if got != len {
        bail!("stream {k}: {got} bytes arrived of {len}: truncated");
    }
    Ok(Checked { bytes: got, mismatched })
}

fn step(n: u8, what: &str) {
    print!("[{n}/6] {what} ... ");
    let _ = std::io::stdout().flush();
}

fn gbit(bytes: u64, d: Duration) -> f64 {
    bytes as f64 * 8.0 / d.as_secs_f64() / 1e9
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.hosts
        && let Err(why) = Site::hosts_available()
    {
        eprintln!(
            "scistream-demo: --hosts needs the multi-host lab, which cannot be built here: {why}. \
             Run it as root on Linux with `ip netns` (iproute2), or without --hosts on loopback."
        );
        return ExitCode::from(2);
    }
    match demo(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!();
            eprintln!("scistream-demo: FAILED: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn demo(cli: Cli) -> Result<()> {
    if cli.streams == 0 {
        bail!("--streams must be at least 1");
    }
    let where_ = if cli.hosts {
        format!("across the lab's hosts (prod {PROD_IP} -> gwa -> WAN -> gwb -> cons {CONS_IP}; user {USER_IP})")
    } else {
        "on 127.0.0.1".to_owned()
    };
    println!(
        "SciStream-rs demo: {:.2} GiB over {} connections, producer facility -> consumer facility {where_}",
        cli.size as f64 / f64::from(1u32 << 30),
        cli.streams
    );
    if cli.hosts {
        step(1, "five hosts, certificates, an OAuth2 server, two gateways (s2cs + remote s2ds) checking tokens");
    } else {
        step(1, "certificates, a local OAuth2 server, two s2cs daemons checking tokens");
    }
    let (da, db, user) = (Scratch::new("demo-prod"), Scratch::new("demo-cons"), Scratch::new("demo-user"));
    let site = if cli.hosts { Site::hosts()? } else { Site::loopback(cli.streams, (&da, &db))? };
    let (prod, cons) = site.control();
    let (prod, cons) = (prod.to_owned(), cons.to_owned());
    println!("ok (producer facility {prod}, consumer facility {cons}, authorization {})", site.auth_base());

    step(2, "identity: s2uc login (OAuth2, PKCE) for each facility's scope");
    let cfg = user.0.join("config");
    std::fs::create_dir_all(&cfg)?;
    std::fs::write(
        cfg.join("s2uc.toml"),
        format!(
            "auth-url = \"{}\"\nclient-id = \"s2uc\"\n[scopes]\n\"{}\" = \"scistream:prod\"\n\"{}\" = \"scistream:cons\"\n",
            site.auth_base(),
            prod,
            cons
        ),
    )?;
    let cfg_flag = args(&["--config-dir", cfg.to_str().context("a UTF-8 path")?]);
    for scope in ["scistream:prod", "scistream:cons"] {
        let mut begin = cfg_flag.clone();
        begin.extend(args(&["login", "--scope", scope, "--url-only"]));
        let out = site.s2uc(&begin, Duration::from_secs(30))?;
        let url = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned();
        if !out.status.success() || url.is_empty() {
            bail!("s2uc login --url-only: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The user opens the URL and logs in; the server sends the browser back with a code.
        let code = site.browse_for_code(&url)?;
        let mut finish = cfg_flag.clone();
        finish.extend(args(&["login", "--code", &code]));
        let out = site.s2uc(&finish, Duration::from_secs(30))?;
        if !out.status.success() {
            bail!("s2uc login --code: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    println!("ok (logged in for both scopes; tokens in {} (0600))", cfg.join("tokens.json").display());

    // The producer application: one listener per connection.
    let mut producer = Vec::new();
    let mut app_addrs = Vec::new();
    for k in 0..cli.streams {
        let (l, addr): (TcpListener, String) = site.producer_listener()?;
        app_addrs.push(addr);
        producer.push(tokio::spawn(produce(l, k, share(cli.size, cli.streams, k))));
    }

    step(3, "orchestration: s2uc request + appctrl over TLS");
    let (trust_prod, trust_both) = site.trust();
    let mut both = cfg_flag.clone();
    both.extend(trust_both);
    let streams = cli.streams.to_string();
    let started = Instant::now();
    let mut request = both.clone();
    request.extend(args(&["--json", "request", "--prod-s2cs", &prod, "--cons-s2cs", &cons]));
    request.extend(args(&["--num-conn", &streams, "--rate", "0"]));
    let (process, lines) = site.s2uc_background(&request)?;
    let next_json = |what: &str| -> Result<serde_json::Value> {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .with_context(|| format!("s2uc request printed no {what} line: {}", site.s2uc_log()))?;
        serde_json::from_str(&line).with_context(|| format!("s2uc printed {line:?}"))
    };
    let created = next_json("created")?;
    let field = |k: &str| created[k].as_str().map(str::to_owned).with_context(|| format!("no {k} in {created}"));
    let (uid, app_key) = (field("uid")?, field("app_key")?);
    let mut hello_args = args(&[&uid, "--s2cs", &prod, "--key", &app_key]);
    hello_args.extend(trust_prod);
    hello_args.extend(args(&["--listeners", &app_addrs.join(",")]));
    let hello = site.appctrl(&hello_args, Duration::from_secs(60))?;
    if !hello.status.success() {
        bail!("appctrl: {}", String::from_utf8_lossy(&hello.stderr));
    }
    let established = next_json("established")?;
    let out = process.wait(Duration::from_secs(30))?;
    if !out.status.success() || established["event"] != "established" {
        bail!("s2uc request: {established} {}{}", String::from_utf8_lossy(&out.stderr), site.s2uc_log());
    }
    let setup = started.elapsed();
    println!("established in {:.1} ms (s2uc and appctrl processes included)", setup.as_secs_f64() * 1e3);
    let consumer_side: Vec<String> = established["consumer_listeners"]
        .as_str()
        .context("consumer listeners")?
        .split(',')
        .map(String::from)
        .collect();

    step(4, "streaming through both gateways (WAN leg TLS 1.3, pinned to the session)");
    println!();
    let done = Arc::new(AtomicU64::new(0));
    let bar = ProgressBar::new(cli.size);
    bar.set_style(
        ProgressStyle::with_template("      {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .map_err(|e| anyhow!("{e}"))?,
    );
    let t = Instant::now();
    let mut consumers = Vec::new();
    for (k, addr) in consumer_side.iter().enumerate() {
        let k = u16::try_from(k)?;
        let s = site.consumer_connect(addr).await?;
        consumers.push(tokio::spawn(consume(s, k, share(cli.size, cli.streams, k), done.clone())));
    }
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut verified = 0;
    let mut mismatched = 0u64;
    let mut failure = None;
    let aborts: Vec<_> = consumers
        .iter()
        .map(tokio::task::JoinHandle::abort_handle)
        .chain(producer.iter().map(tokio::task::JoinHandle::abort_handle))
        .collect();
    // Every wait is bounded: a stream that moves no byte for STALL ends the demo with an error.
    let watchdog = {
        let done = done.clone();
        async move {
            let (mut last, mut since) = (u64::MAX, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = done.load(Ordering::Relaxed);
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() > STALL {
                    return now;
                }
            }
        }
    };
    let joined = async {
        let mut out = Vec::new();
        for c in consumers {
            out.push(c.await);
        }
        out
    };
    tokio::select! {
        results = joined => {
            for r in results {
                match r? {
                    Ok(c) => {
                        verified += c.bytes;
                        mismatched += c.mismatched;
                    }
                    Err(e) => failure = Some(e),
                }
            }
        }
        at = watchdog => {
            failure = Some(anyhow!("no byte moved for {} s (stalled at {at} bytes)", STALL.as_secs()));
        }
    }
    let took = t.elapsed();
    ticker.abort();
    bar.set_position(done.load(Ordering::Relaxed));
    bar.finish();
    if failure.is_some() {
        // A producer whose connection never came would wait for it forever.
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
    for p in producer {
        match tokio::time::timeout(STALL, p).await {
            Ok(Ok(Err(e))) => {
                failure.get_or_insert(e.context("producer"));
            }
            Ok(Ok(Ok(()))) | Ok(Err(_)) => {}
            Err(_) => {
                failure.get_or_insert(anyhow!("a producer did not finish within {} s", STALL.as_secs()));
            }
        }
    }
    step(5, "verification");
    if let Some(e) = failure {
        return Err(e);
    }
    if verified != cli.size {
        bail!("{verified} bytes verified of {}", cli.size);
    }
    if mismatched > 0 {
        bail!("{mismatched} of {verified} bytes differ from what the producer sent");
    }
    println!("{verified} bytes verified in {:.2} s = {:.2} Gbit/s", took.as_secs_f64(), gbit(verified, took));

    step(6, "release and shutdown");
    let mut release = both.clone();
    release.extend(args(&["release", &uid, "--s2cs", &prod, "--s2cs", &cons]));
    let rel = site.s2uc(&release, Duration::from_secs(30))?;
    if !rel.status.success() {
        bail!("release: {}", String::from_utf8_lossy(&rel.stderr));
    }
    let session: Vec<String> = consumer_side
        .iter()
        .cloned()
        .chain(established["producer_listeners"].as_str().unwrap_or_default().split(',').map(str::to_string))
        .collect();
    let left = site.still_listening(&session)?;
    if !left.is_empty() {
        bail!("ports still listening after release: {left:?}");
    }
    let daemons = site.shutdown()?;
    println!("ok: every session port closed, {daemons} exited 0");
    println!(
        "summary: setup {:.1} ms, {:.2} Gbit/s, {} bytes verified, {} mismatches",
        setup.as_secs_f64() * 1e3,
        gbit(verified, took),
        verified,
        mismatched
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mismatch_count_is_counted_not_written() {
        let mut want = vec![0u8; 64];
        fill(3, 8, &mut want);
        let mut got = want.clone();
        assert_eq!(differing(&got, &want), 0);
        got[5] ^= 1;
        got[40] ^= 0xff;
        assert_eq!(differing(&got, &want), 2);
    }
}
