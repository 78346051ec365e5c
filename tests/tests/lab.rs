//! The multi-host lab (`tests/src/lab.rs`): five hosts as network namespaces, the gateways'
//! `s2cs` and `s2ds` each on its own addresses, the producer and the consumer on their
//! facilities' LANs, the user on the WAN. A stream crosses it, and survives (or ends cleanly
//! under) faults. Each test builds a lab of its own and removes it; where namespaces cannot be
//! made (not root, no `ip netns`) each test says `lab: skipped: WHY` and passes, unless
//! `SCISTREAM_LAB=require`, which makes that a failure.
//!
//! `cargo test -p scistream-tests --test lab` (as root).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scistream_tests::lab::{
    CONS_IP, Daemon, GWA_LAN_IP, GWA_WAN_IP, GWB_LAN_IP, GWB_WAN_IP, Host, Lab, Listening, PROD_IP, lab_namespaces,
    note,
};
use scistream_tests::{Scratch, args, bin, json_lines};
use serde_json::Value;

/// One lab at a time: two cores, and the faults are timed.
static SERIAL: Mutex<()> = Mutex::new(());

/// The port every gateway's control server serves on (each lab host has its own ports).
const CONTROL_PORT: u16 = 5000;
/// The port every data server node's link is served on.
const LINK_PORT: u16 = 5010;
/// The ports the data server nodes hand out.
const RANGE: (u16, u16) = (5100, 5119);
/// The producer application's port on `prod`.
const APP_PORT: u16 = 7000;

/// Holds a test's turn and reports how it went, past the harness's capture (`lab: ran NAME` or
/// `lab: FAILED NAME`), so `tests/run.sh` can say whether the lab ran.
struct Turn {
    name: &'static str,
    started: Instant,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let took = self.started.elapsed().as_secs_f64();
        if std::thread::panicking() {
            note(&format!("lab: FAILED {} after {took:.1} s", self.name));
        } else {
            note(&format!("lab: ran {} in {took:.1} s", self.name));
        }
    }
}

/// A fresh lab for test `name`, or None (said on stderr) where none can be made.
fn lab(name: &'static str) -> Option<(Turn, Lab)> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = Lab::available() {
        assert!(!std::env::var("SCISTREAM_LAB").is_ok_and(|v| v == "require"), "SCISTREAM_LAB=require: {why}");
        note(&format!("lab: skipped: {name}: {why}"));
        return None;
    }
    let turn = Turn { name, started: Instant::now(), _serial: serial };
    Some((turn, Lab::new().expect("building the lab")))
}

/// Waits (bounded) until `done`.
fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: still not so after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a TCP connection from `host` to `addr` is accepted within `limit`.
fn connects(lab: &Lab, host: Host, addr: &str, limit: Duration) -> bool {
    let addr: SocketAddr = addr.parse().expect("ip:port");
    lab.within(host, || TcpStream::connect_timeout(&addr, limit).is_ok()).expect("entering the host")
}

/// A producer application in `prod`: echoes every connection back as it reads it. Stops (its
/// threads end) on drop.
struct EchoApp {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoApp {
    fn start(lab: &Lab, host: Host, addr: &str) -> Self {
        let addr = addr.to_owned();
        let listener = lab.within(host, move || TcpListener::bind(addr)).expect("entering the host").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        std::thread::spawn(move || echo(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { stop, thread: Some(thread) }
    }
}

/// Echoes `s` until EOF or an error (or 30 s of silence).
fn echo(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

impl Drop for EchoApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One facility's gateway: its data server node and its control server, both in its host.
struct Gateway {
    ds: Daemon,
    cs: Daemon,
    /// The control server's certificate, which the user's and the producer's tools pin.
    cs_cert: PathBuf,
}

impl Gateway {
    /// Starts `s2ds` (link on `lan`, WAN-facing listeners on `wan`, LAN-facing ones on `lan`)
    /// and `s2cs --s2ds` (control on `control`) in `host`; with `state`, the control server
    /// keeps its sessions in a state folder.
    fn start(lab: &Lab, host: Host, dir: &Path, lan: &str, wan: &str, control: &str, state: bool) -> Self {
        let dir = dir.join(host.name());
        let (ds_dir, cs_dir) = (dir.join("ds"), dir.join("cs"));
        for (tool, d, ip) in [("s2ds", &ds_dir, lan), ("s2cs", &cs_dir, control)] {
            std::fs::create_dir_all(d).expect("mkdir");
            let mut a = args(&["gen-cert", "--listener-ip", ip, "--force", "--out-dir"]);
            a.push(d.display().to_string());
            let out = scistream_tests::run(tool, &a, Duration::from_secs(20)).expect("gen-cert");
            assert!(out.status.success(), "{tool} gen-cert: {}", String::from_utf8_lossy(&out.stderr));
        }
        let p = |d: &Path, f: &str| d.join(f).display().to_string();
        let range = format!("{}-{}", RANGE.0, RANGE.1);
        let link = format!("{lan}:{LINK_PORT}");
        let ds_args = args(&[
            "--listen",
            &link,
            "--cert",
            &p(&ds_dir, "cert.pem"),
            "--key",
            &p(&ds_dir, "key.pem"),
            "--trust",
            &p(&cs_dir, "cert.pem"),
            "--port-range",
            &range,
            "--wan-ip",
            wan,
            "--lan-ip",
            lan,
        ]);
        let ds = Daemon::start(lab, host, "s2ds", ds_args, &dir.join("s2ds.log")).expect("s2ds starts");
        assert_eq!(ds.addr, link, "s2ds serves its link where it is told");
        let mut cs_args = args(&[
            "--listener-ip",
            control,
            "--port",
            &CONTROL_PORT.to_string(),
            "--s2ds",
            &link,
            "--s2ds-trust",
            &p(&ds_dir, "cert.pem"),
            "--server-crt",
            &p(&cs_dir, "cert.pem"),
            "--server-key",
            &p(&cs_dir, "key.pem"),
        ]);
        if state {
            cs_args.extend(args(&["--state-dir", &p(&dir, "state")]));
        }
        let cs = Daemon::start(lab, host, "s2cs", cs_args, &dir.join("s2cs.log")).expect("s2cs starts");
        assert_eq!(cs.addr, format!("{control}:{CONTROL_PORT}"), "s2cs serves where it is told");
        eventually(Duration::from_secs(15), "the control server links to its node", || {
            ds.log().contains("control server linked")
        });
        Self { ds, cs, cs_cert: cs_dir.join("cert.pem") }
    }

    fn trust(&self) -> Vec<String> {
        vec!["--server-cert".into(), self.cs_cert.display().to_string()]
    }
}

/// Both facilities' gateways, each on its own addresses: control servers on the WAN
/// addresses (where the user's host reaches them; the producer's host reaches gwa's through
/// its route to gwa), data server links on the LAN addresses.
fn gateways(lab: &Lab, dir: &Path, state: bool) -> (Gateway, Gateway) {
    let a = Gateway::start(lab, Host::Gwa, dir, GWA_LAN_IP, GWA_WAN_IP, GWA_WAN_IP, state);
    let b = Gateway::start(lab, Host::Gwb, dir, GWB_LAN_IP, GWB_WAN_IP, GWB_WAN_IP, state);
    (a, b)
}

/// The session the user sets up from `user` (`s2uc request`), with the producer's Hello from
/// `prod` (`appctrl`) naming the echo application: its `established` line.
fn establish(lab: &Lab, dir: &Path, a: &Gateway, b: &Gateway) -> Value {
    let mut req = a.trust();
    req.extend(b.trust());
    req.extend(args(&["--json", "request", "--prod-s2cs", &a.cs.addr, "--cons-s2cs", &b.cs.addr, "--num-conn", "2"]));
    let mut s2uc = lab.spawn(Host::User, &bin("s2uc"), &req, &dir.join("s2uc.log")).expect("s2uc starts");
    let lines = s2uc.stdout_lines().expect("stdout");
    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("s2uc: {}", s2uc.log()));
    let created: Value = serde_json::from_str(&first).expect("json");
    let (uid, key) = (created["uid"].as_str().expect("uid"), created["app_key"].as_str().expect("app_key"));

    let app = format!("{PROD_IP}:{APP_PORT}");
    let mut hello = args(&[uid, "--s2cs", &a.cs.addr, "--key", key, "--listeners", &app]);
    hello.extend(a.trust());
    let out = lab.run(Host::Prod, &bin("appctrl"), &hello, Duration::from_secs(30)).expect("appctrl");
    assert!(out.status.success(), "appctrl on prod: {}", String::from_utf8_lossy(&out.stderr));

    let line = lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("s2uc: {}", s2uc.log()));
    let established: Value = serde_json::from_str(&line).expect("json");
    let out = s2uc.wait(Duration::from_secs(20)).expect("s2uc ends");
    assert!(out.status.success(), "s2uc request on user: {}", String::from_utf8_lossy(&out.stderr));
    established
}

fn listeners(established: &Value, side: &str) -> Vec<String> {
    let l = established[side].as_str().unwrap_or_else(|| panic!("no {side} in {established}"));
    l.split(',').map(str::to_owned).collect()
}

/// `s2uc status` of the session at `gw`, run on `user`.
fn status(lab: &Lab, gw: &Gateway, uid: &str) -> Value {
    let mut a = gw.trust();
    a.extend(args(&["--json", "status", uid, "--s2cs", &gw.cs.addr]));
    let out = lab.run(Host::User, &bin("s2uc"), &a, Duration::from_secs(20)).expect("s2uc status");
    assert!(out.status.success(), "s2uc status: {}", String::from_utf8_lossy(&out.stderr));
    json_lines(&out).expect("json").into_iter().next().expect("a status line")
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// What a consumer saw.
struct Seen {
    /// Its writes (an error once the stream broke).
    wrote: std::io::Result<()>,
    /// Its read to the end: the bytes, or the error that ended it.
    read: std::io::Result<Vec<u8>>,
    /// How long the whole took.
    took: Duration,
}

/// A consumer in `cons` streaming `data` through `listener` while it reads the echo. After
/// the first `split` bytes are written and half of them are back (the stream flows), `fault`
/// runs; then the rest is written. Every read and write is bounded (20 s each).
fn consume(lab: &Lab, listener: &str, data: &[u8], split: usize, fault: impl FnOnce()) -> Seen {
    let started = Instant::now();
    let addr: SocketAddr = listener.parse().expect("ip:port");
    let mut c = lab
        .within(Host::Cons, || TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .expect("entering cons")
        .expect("the consumer connects to its gateway's listener");
    c.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    c.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let got = Arc::new(AtomicUsize::new(0));
    let (mut r, counter) = (c.try_clone().expect("clone"), got.clone());
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(all),
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    counter.store(all.len(), Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
    });
    let wrote = (|| {
        c.write_all(&data[..split])?;
        eventually(Duration::from_secs(20), "the echo flows before the fault", || {
            got.load(Ordering::Relaxed) >= split / 2
        });
        fault();
        c.write_all(&data[split..])?;
        c.shutdown(std::net::Shutdown::Write)
    })();
    let read = reader.join().expect("reader");
    Seen { wrote, read, took: started.elapsed() }
}

/// Stops the gateways and checks that no process is left in any host of the lab.
fn stop_and_check_nothing_left(lab: &Lab, gateways: (Gateway, Gateway)) {
    drop(gateways);
    for host in Host::ALL {
        eventually(Duration::from_secs(5), "every process of the host ends", || {
            lab.pids(host).expect("ip netns pids").is_empty()
        });
    }
}

/// The listeners of `host` but the ones of other processes than `s2cs` and `s2ds`.
fn daemon_listeners(lab: &Lab, host: Host) -> Vec<Listening> {
    let all = lab.listening(host).expect("ss");
    for l in &all {
        assert!(["s2cs", "s2ds"].contains(&l.process.as_str()), "{host:?}: unexpected listener {l:?}");
    }
    all
}

/// Asserts each daemon of the gateway listens only on addresses it was given: the control
/// server on `control`, the node's link on `lan`, its session listeners on `sessions`.
fn assert_binds(lab: &Lab, host: Host, control: &str, lan: &str, sessions: &str, want_sessions: usize) {
    let all = daemon_listeners(lab, host);
    let mut seen_sessions = 0;
    for l in &all {
        let ip = l.addr.ip().to_string();
        match l.process.as_str() {
            "s2cs" => assert_eq!(l.addr.to_string(), format!("{control}:{CONTROL_PORT}"), "{host:?} s2cs: {all:?}"),
            _ if l.addr.port() == LINK_PORT => assert_eq!(ip, lan, "{host:?} s2ds link: {all:?}"),
            _ => {
                assert_eq!(ip, sessions, "{host:?} s2ds session listener: {all:?}");
                assert!((RANGE.0..=RANGE.1).contains(&l.addr.port()), "{host:?}: {l:?} out of the range");
                seen_sessions += 1;
            }
        }
    }
    assert_eq!(seen_sessions, want_sessions, "{host:?}: {all:?}");
}

#[test]
fn reachability_the_applications_meet_only_through_the_gateways() {
    let Some((_turn, lab)) = lab("reachability") else { return };
    for gw in [Host::Gwa, Host::Gwb] {
        assert!(!lab.forwarding(gw).unwrap(), "{gw:?} forwards");
    }
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let app = format!("{PROD_IP}:{APP_PORT}");
    // The application serves: its own host and its gateway reach it.
    assert!(connects(&lab, Host::Prod, &app, Duration::from_secs(2)));
    assert!(connects(&lab, Host::Gwa, &app, Duration::from_secs(2)));
    // Neither the consumer's host, nor the user's, nor gwb reaches it (a gateway that does not
    // forward drops the packets silently: the attempts time out, bounded).
    for from in [Host::Cons, Host::User, Host::Gwb] {
        let t = Instant::now();
        assert!(!connects(&lab, from, &app, Duration::from_secs(2)), "{from:?} reaches prod");
        assert!(t.elapsed() < Duration::from_secs(3), "bounded");
    }
    // Not for want of routes: with forwarding on at both gateways, the consumer's host gets
    // through; off again, it does not.
    for gw in [Host::Gwa, Host::Gwb] {
        lab.set_forwarding(gw, true).unwrap();
    }
    assert!(connects(&lab, Host::Cons, &app, Duration::from_secs(3)), "routed path with forwarding on");
    for gw in [Host::Gwa, Host::Gwb] {
        lab.set_forwarding(gw, false).unwrap();
    }
    assert!(!connects(&lab, Host::Cons, &app, Duration::from_secs(2)), "cons reaches prod with forwarding off");

    // The user's host reaches both gateways on their WAN addresses (and nothing on a LAN).
    let _gwa = EchoApp::start(&lab, Host::Gwa, &format!("{GWA_WAN_IP}:{CONTROL_PORT}"));
    let _gwb = EchoApp::start(&lab, Host::Gwb, &format!("{GWB_WAN_IP}:{CONTROL_PORT}"));
    let _cons = EchoApp::start(&lab, Host::Cons, &format!("{CONS_IP}:{APP_PORT}"));
    for gw in [GWA_WAN_IP, GWB_WAN_IP] {
        assert!(connects(&lab, Host::User, &format!("{gw}:{CONTROL_PORT}"), Duration::from_secs(2)), "user -> {gw}");
    }
    assert!(!connects(&lab, Host::User, &format!("{CONS_IP}:{APP_PORT}"), Duration::from_secs(2)), "user -> cons");
    // And the producer's host reaches its gateway's control address through its route.
    assert!(connects(&lab, Host::Prod, &format!("{GWA_WAN_IP}:{CONTROL_PORT}"), Duration::from_secs(2)));
}

/// Whether process `pid` is gone (or a zombie its parent has yet to reap).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn the_lab_removes_its_namespaces_and_processes_also_when_a_test_panics() {
    let Some((_turn, lab)) = lab("cleanup") else { return };
    let made = lab.namespaces().to_vec();
    assert_eq!(made.len(), 6, "five hosts and the WAN's bridge: {made:?}");
    assert!(made.iter().all(|n| lab_namespaces().contains(n)), "{made:?}");
    let before = Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = lab;
        // A process the test holds, and one nobody holds (left in the background).
        let dir = Scratch::new("lab-cleanup");
        let held = lab.spawn(Host::Gwa, Path::new("/bin/sleep"), &["60"], &dir.0.join("sleep.log")).expect("spawn");
        let out = lab
            .run(Host::Gwb, Path::new("/bin/sh"), &["-c", "sleep 60 >/dev/null 2>&1 &"], Duration::from_secs(5))
            .expect("sh");
        assert!(out.status.success());
        let mut pids = lab.pids(Host::Gwb).expect("pids");
        pids.extend(held.pid());
        assert_eq!(pids.len(), 2, "{pids:?}");
        before.lock().unwrap().extend(pids);
        panic!("a test failing with a lab up");
    }));
    assert!(outcome.is_err());
    let pids = before.into_inner().unwrap();
    eventually(Duration::from_secs(5), "the lab's processes end", || pids.iter().all(|p| gone(*p)));
    let now = lab_namespaces();
    assert!(made.iter().all(|n| !now.contains(n)), "left behind: {now:?}");
}

#[test]
fn a_stream_crosses_the_lab_through_both_gateways() {
    let Some((_turn, lab)) = lab("stream") else { return };
    let dir = Scratch::new("lab-stream");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let (a, b) = gateways(&lab, &dir.0, false);
    let established = establish(&lab, &dir.0, &a, &b);
    let uid = established["uid"].as_str().expect("uid").to_owned();
    let (prod_l, cons_l) =
        (listeners(&established, "producer_listeners"), listeners(&established, "consumer_listeners"));
    // Advertised where each side is dialled from: gwa's on the WAN, gwb's on its LAN.
    assert!(prod_l.iter().all(|l| l.starts_with(&format!("{GWA_WAN_IP}:"))), "{prod_l:?}");
    assert!(cons_l.iter().all(|l| l.starts_with(&format!("{GWB_LAN_IP}:"))), "{cons_l:?}");
    // And bound there only.
    assert_binds(&lab, Host::Gwa, GWA_WAN_IP, GWA_LAN_IP, GWA_WAN_IP, prod_l.len());
    assert_binds(&lab, Host::Gwb, GWB_WAN_IP, GWB_LAN_IP, GWB_LAN_IP, cons_l.len());

    let data = pattern(1 << 20);
    let seen = consume(&lab, &cons_l[0], &data, data.len() / 2, || {});
    seen.wrote.expect("the consumer writes all");
    let back = seen.read.expect("the echo comes back");
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());
    // The second connection of the session works too.
    let seen = consume(&lab, &cons_l[1], &data[..100_000], 50_000, || {});
    assert!(seen.read.expect("echo") == data[..100_000]);
    assert_eq!(status(&lab, &b, &uid)["state"], "Established");

    // Released from the user's host: both nodes close the session's listeners.
    let mut release = a.trust();
    release.extend(b.trust());
    release.extend(args(&["release", &uid, "--s2cs", &a.cs.addr, "--s2cs", &b.cs.addr]));
    let out = lab.run(Host::User, &bin("s2uc"), &release, Duration::from_secs(30)).expect("s2uc release");
    assert!(out.status.success(), "s2uc release: {}", String::from_utf8_lossy(&out.stderr));
    for gw in [Host::Gwa, Host::Gwb] {
        eventually(Duration::from_secs(10), "the node closes the released listeners", || {
            daemon_listeners(&lab, gw).len() == 2
        });
    }
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn fault_the_producers_control_server_killed_mid_stream_and_restarted_drops_nothing() {
    let Some((_turn, lab)) = lab("s2cs-kill9-restart") else { return };
    let dir = Scratch::new("lab-cs-restart");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let (mut a, b) = gateways(&lab, &dir.0, true);
    let established = establish(&lab, &dir.0, &a, &b);
    let uid = established["uid"].as_str().expect("uid").to_owned();
    let cons_l = listeners(&established, "consumer_listeners");

    let data = pattern(1 << 20);
    let old = a.cs.pid();
    let seen = consume(&lab, &cons_l[0], &data, data.len() / 2, || {
        a.cs.restart().expect("s2cs restarts in gwa");
    });
    assert_ne!(a.cs.pid(), old, "a new process");
    seen.wrote.expect("the consumer writes all across the restart");
    let back = seen.read.expect("the echo comes back across the restart");
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());
    assert!(a.cs.log().contains("recovered=1"), "{}", a.cs.log());
    eventually(Duration::from_secs(15), "the node confirms the recovered session", || {
        a.cs.log().contains("data server node attached")
    });
    assert_eq!(status(&lab, &a, &uid)["state"], "Established");
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn fault_the_wan_link_cut_mid_stream_and_restored_drops_nothing() {
    let Some((_turn, lab)) = lab("wan-cut") else { return };
    let dir = Scratch::new("lab-wan-cut");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let (a, b) = gateways(&lab, &dir.0, false);
    let established = establish(&lab, &dir.0, &a, &b);
    let cons_l = listeners(&established, "consumer_listeners");

    let data = pattern(1 << 20);
    let seen = consume(&lab, &cons_l[0], &data, data.len() / 2, || {
        lab.cut_wan(Host::Gwa).expect("cut");
        // Cut indeed: the user's host no longer reaches gwa.
        assert!(!connects(&lab, Host::User, &a.cs.addr, Duration::from_secs(1)), "gwa reachable while cut");
        std::thread::sleep(Duration::from_secs(2));
        lab.restore_wan(Host::Gwa).expect("restore");
    });
    seen.wrote.expect("the consumer writes all across the cut");
    let back = seen.read.expect("the echo comes back across the cut");
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());
    assert!(connects(&lab, Host::User, &a.cs.addr, Duration::from_secs(2)), "gwa reachable again");
    assert!(b.ds.log().contains("control server linked"));
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn fault_a_data_server_killed_mid_stream_ends_the_consumers_stream_without_a_hang() {
    let Some((_turn, lab)) = lab("s2ds-kill9") else { return };
    let dir = Scratch::new("lab-ds-kill");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let (mut a, b) = gateways(&lab, &dir.0, false);
    let established = establish(&lab, &dir.0, &a, &b);
    let cons_l = listeners(&established, "consumer_listeners");

    let data = pattern(4 << 20);
    let seen = consume(&lab, &cons_l[0], &data, 1 << 20, || a.ds.kill9());
    // The consumer's connection ends (EOF or reset) well before its 20 s read timeout: no hang,
    // and not the whole echo.
    match &seen.read {
        Ok(back) => assert!(back.len() < data.len(), "the whole echo came back from a dead gateway"),
        Err(e) => assert!(
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "the consumer hung: {e}"
        ),
    }
    assert!(seen.took < Duration::from_secs(15), "took {:?}", seen.took);
    stop_and_check_nothing_left(&lab, (a, b));
}
