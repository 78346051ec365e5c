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
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scistream_tests::lab::gateway::{CONTROL_PORT, Gateway, GatewaySpec, LINK_PORT, RANGE};
use scistream_tests::lab::{
    CONS_IP, GWA_LAN_IP, GWA_WAN_IP, GWB_LAN_IP, GWB_WAN_IP, Host, Lab, Listening, NsChild, PROD_IP, lab_namespaces,
    note,
};
use scistream_tests::props::{self, LabFacilities, Sizing};
use scistream_tests::{Scratch, args, bin, json_lines};
use serde_json::Value;

#[path = "lab/policy.rs"]
mod policy;

/// One lab at a time: two cores, and the faults are timed.
static SERIAL: Mutex<()> = Mutex::new(());

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

/// Both facilities' gateways, each on its own addresses: control servers on the WAN
/// addresses (where the user's host reaches them; the producer's host reaches gwa's through
/// its route to gwa), data server links on the LAN addresses.
fn gateways(lab: &Lab, dir: &Path, state: bool) -> (Gateway, Gateway) {
    gateways_with(lab, dir, state, [&[], &[]])
}

/// [`gateways`] whose control servers get more flags (gwa's, gwb's), e.g. `--hello-timeout`.
fn gateways_with(lab: &Lab, dir: &Path, state: bool, cs_extra: [&[&str]; 2]) -> (Gateway, Gateway) {
    gateways_flagged(lab, dir, state, cs_extra, [&[], &[]])
}

/// [`gateways`] whose control servers and data server nodes get more flags (gwa's, gwb's).
fn gateways_flagged(
    lab: &Lab,
    dir: &Path,
    state: bool,
    cs_extra: [&[&str]; 2],
    ds_extra: [&[&str]; 2],
) -> (Gateway, Gateway) {
    let start = |mut spec: GatewaySpec, cs: &[&str], ds: &[&str]| {
        (spec.state, spec.cs_extra, spec.ds_extra) = (state, args(cs), args(ds));
        Gateway::start(lab, dir, &spec).unwrap_or_else(|e| panic!("{:?} starts: {e:#}", spec.host))
    };
    (start(GatewaySpec::a(), cs_extra[0], ds_extra[0]), start(GatewaySpec::b(), cs_extra[1], ds_extra[1]))
}

/// An `s2uc --json request` (2 connections) running on `user`, past its `created` line.
struct Requested {
    s2uc: NsChild,
    /// Its further stdout lines.
    lines: Receiver<String>,
    uid: String,
    key: String,
}

impl Requested {
    /// Starts it between the gateways, its stderr in `dir/log`.
    fn start(lab: &Lab, dir: &Path, log: &str, a: &Gateway, b: &Gateway) -> Self {
        let mut req = a.trust();
        req.extend(b.trust());
        req.extend(args(&["--json", "request", "--prod-s2cs", &a.cs.addr, "--cons-s2cs", &b.cs.addr]));
        req.extend(args(&["--num-conn", "2"]));
        let mut s2uc = lab.spawn(Host::User, &bin("s2uc"), &req, &dir.join(log)).expect("s2uc starts");
        let lines = s2uc.stdout_lines().expect("stdout");
        let first = lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("s2uc: {}", s2uc.log()));
        let created: Value = serde_json::from_str(&first).expect("json");
        assert_eq!(created["event"], "created", "{first}");
        let field = |k: &str| created[k].as_str().unwrap_or_else(|| panic!("no {k} in {first}")).to_owned();
        Self { uid: field("uid"), key: field("app_key"), s2uc, lines }
    }

    /// The producer's Hello for it (`appctrl` flags), naming the echo application.
    fn hello_args(&self, a: &Gateway) -> Vec<String> {
        self.hello_args_to(a, &format!("{PROD_IP}:{APP_PORT}"))
    }

    /// [`hello_args`](Self::hello_args) naming `listeners` as the producer's.
    fn hello_args_to(&self, a: &Gateway, listeners: &str) -> Vec<String> {
        let mut hello = args(&[&self.uid, "--s2cs", &a.cs.addr, "--key", &self.key, "--listeners", listeners]);
        hello.extend(a.trust());
        hello
    }

    /// Its `established` line (within 30 s), and its clean exit.
    fn established(self) -> Value {
        let line =
            self.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("s2uc: {}", self.s2uc.log()));
        let established: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(established["event"], "established", "{line}");
        assert_eq!(established["uid"], self.uid.as_str(), "{line}");
        let out = self.s2uc.wait(Duration::from_secs(20)).expect("s2uc ends");
        assert!(out.status.success(), "s2uc request on user: {}", String::from_utf8_lossy(&out.stderr));
        established
    }
}

/// The session the user sets up from `user` (`s2uc request`), with the producer's Hello from
/// `prod` (`appctrl`) naming the echo application: its `established` line.
fn establish(lab: &Lab, dir: &Path, a: &Gateway, b: &Gateway) -> Value {
    let req = Requested::start(lab, dir, "s2uc.log", a, b);
    let out = lab.run(Host::Prod, &bin("appctrl"), &req.hello_args(a), Duration::from_secs(30)).expect("appctrl");
    assert!(out.status.success(), "appctrl on prod: {}", String::from_utf8_lossy(&out.stderr));
    req.established()
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

/// How many session listeners the data server node of `host` holds (its listeners but the
/// control server's and its own link).
fn session_listeners(lab: &Lab, host: Host) -> usize {
    daemon_listeners(lab, host)
        .iter()
        .filter(|l| l.process == "s2ds" && (RANGE.0..=RANGE.1).contains(&l.addr.port()))
        .count()
}

/// Waits (bounded) until the nodes of both gateways hold `n` session listeners each.
fn nodes_hold(lab: &Lab, n: usize, limit: Duration, what: &str) {
    for gw in [Host::Gwa, Host::Gwb] {
        eventually(limit, &format!("{what} ({gw:?} holds {n} session listeners)"), || session_listeners(lab, gw) == n);
    }
}

/// `s2uc release UID` at both gateways, run on `user`; its output.
fn release(lab: &Lab, a: &Gateway, b: &Gateway, uid: &str) -> std::process::Output {
    let mut release = a.trust();
    release.extend(b.trust());
    release.extend(args(&["release", uid, "--s2cs", &a.cs.addr, "--s2cs", &b.cs.addr]));
    lab.run(Host::User, &bin("s2uc"), &release, Duration::from_secs(30)).expect("s2uc release")
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
    let out = release(&lab, &a, &b, &uid);
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

/// When the producer's controller starts in [`lan_cut_during_setup`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum HelloFrom {
    /// While gwa's LAN is cut: it must keep saying Hello until the link is back.
    DuringTheCut,
    /// Once the link is back.
    AfterTheCut,
}

/// A session requested, gwa's LAN (the producer's only way to its control server) cut for 4 s
/// before the producer's Hello, then restored. What docs/protocol.md promises: nothing of the
/// session expires before its lease (180 s from the REQ, far off), a late Hello is answered,
/// so the session completes once the link is back, and streams.
fn lan_cut_during_setup(name: &'static str, hello_from: HelloFrom) {
    let Some((_turn, lab)) = lab(name) else { return };
    let dir = Scratch::new("lab-lan-cut");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let (a, b) = gateways(&lab, &dir.0, false);
    let req = Requested::start(&lab, &dir.0, "s2uc.log", &a, &b);
    // The REQ is in at both facilities: their nodes hold the session's two listeners each.
    nodes_hold(&lab, 2, Duration::from_secs(20), "the REQ reserves");

    lab.cut_lan(Host::Gwa).expect("cut");
    assert!(!connects(&lab, Host::Prod, &a.cs.addr, Duration::from_secs(1)), "prod reaches gwa while cut");
    let appctrl = || lab.spawn(Host::Prod, &bin("appctrl"), &req.hello_args(&a), &dir.0.join("appctrl.log")).unwrap();
    let early = (hello_from == HelloFrom::DuringTheCut).then(appctrl);
    std::thread::sleep(Duration::from_secs(4));
    // Still in setup at both facilities, nothing failed, nothing freed.
    for (gw, host) in [(&a, Host::Gwa), (&b, Host::Gwb)] {
        let st = status(&lab, gw, &req.uid);
        assert_eq!(st["state"], "Listening", "{host:?} during the cut: {st}");
        assert!(st["failure"].is_null(), "{host:?} during the cut: {st}");
    }
    nodes_hold(&lab, 2, Duration::from_secs(1), "the cut frees nothing");
    assert!(req.lines.try_recv().is_err(), "the session went on without the producer's Hello");
    if let Some(hello) = &early {
        let pid = hello.pid().expect("appctrl runs");
        assert!(!gone(pid), "appctrl gave up while the LAN was cut: {}", hello.log());
    }
    let restored = Instant::now();
    lab.restore_lan(Host::Gwa).expect("restore");

    let hello = early.unwrap_or_else(appctrl);
    let out = hello.wait(Duration::from_secs(30)).expect("appctrl ends");
    assert!(out.status.success(), "appctrl on prod after the cut: {}", String::from_utf8_lossy(&out.stderr));
    let uid = req.uid.clone();
    let established = req.established();
    assert!(restored.elapsed() < Duration::from_secs(30), "took {:?} after the link came back", restored.elapsed());
    for (gw, host) in [(&a, Host::Gwa), (&b, Host::Gwb)] {
        assert_eq!(status(&lab, gw, &uid)["state"], "Established", "{host:?}");
    }
    let cons_l = listeners(&established, "consumer_listeners");
    let data = pattern(1 << 20);
    let seen = consume(&lab, &cons_l[0], &data, data.len() / 2, || {});
    seen.wrote.expect("the consumer writes all");
    let back = seen.read.expect("the echo comes back");
    assert!(back == data, "{} bytes back of {}", back.len(), data.len());

    let out = release(&lab, &a, &b, &uid);
    assert!(out.status.success(), "s2uc release: {}", String::from_utf8_lossy(&out.stderr));
    nodes_hold(&lab, 0, Duration::from_secs(10), "the release frees the ports");
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn fault_the_producers_gateway_lan_cut_before_the_hello_the_session_waits_and_completes() {
    lan_cut_during_setup("lan-cut-setup", HelloFrom::AfterTheCut);
}

#[test]
fn fault_the_producers_gateway_lan_cut_while_appctrl_says_hello_it_keeps_trying_and_completes() {
    lan_cut_during_setup("lan-cut-appctrl-retries", HelloFrom::DuringTheCut);
}

/// `s2uc list` at `gw`, run on `user`: the sessions' status lines.
fn list(lab: &Lab, gw: &Gateway) -> Vec<Value> {
    let mut a = gw.trust();
    a.extend(args(&["--json", "list", "--s2cs", &gw.cs.addr]));
    let out = lab.run(Host::User, &bin("s2uc"), &a, Duration::from_secs(20)).expect("s2uc list");
    assert!(out.status.success(), "s2uc list: {}", String::from_utf8_lossy(&out.stderr));
    scistream_tests::json_list(&out).expect("json")
}

/// The state `s2uc list` at `gw` shows for `uid`, if it lists it.
fn listed_state(lab: &Lab, gw: &Gateway, uid: &str) -> Option<String> {
    list(lab, gw).into_iter().find(|v| v["uid"] == uid).map(|v| v["state"].as_str().unwrap_or_default().to_owned())
}

/// The lease the tests shorten to, seconds (`s2cs --hello-timeout`; 180 in production).
const SHORT_LEASE: u64 = 5;

#[test]
fn fault_appctrl_killed_at_its_hello_the_session_expires_by_its_lease_and_frees_its_ports() {
    let Some((_turn, lab)) = lab("appctrl-kill9-setup") else { return };
    let dir = Scratch::new("lab-appctrl-kill");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    // Only the producer's facility has the short lease: the consumer's side is then freed by
    // the client's release, not by its own lease.
    let lease = SHORT_LEASE.to_string();
    let (a, b) = gateways_with(&lab, &dir.0, false, [&["--hello-timeout", &lease], &[]]);
    // Before the REQ leaves, so that no lease can start before it.
    let requested = Instant::now();
    let req = Requested::start(&lab, &dir.0, "s2uc.log", &a, &b);
    nodes_hold(&lab, 2, Duration::from_secs(20), "the REQ reserves");

    // The controller is started and killed while it tries to reach its control server: the
    // LAN is cut so that its Hello cannot slip through before the kill.
    lab.cut_lan(Host::Gwa).expect("cut");
    let mut hello =
        lab.spawn(Host::Prod, &bin("appctrl"), &req.hello_args(&a), &dir.0.join("appctrl.log")).expect("appctrl");
    let pid = hello.pid().expect("appctrl runs");
    eventually(Duration::from_secs(5), "appctrl runs", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "appctrl")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!gone(pid), "appctrl ended before the kill: {}", hello.log());
    hello.kill9();
    assert!(gone(pid), "appctrl is dead");
    lab.restore_lan(Host::Gwa).expect("restore");

    // docs/protocol.md, "Hello ... or never": the lease expires, the control server releases
    // the ports and answers the waiting REQ with DEADLINE_EXCEEDED; the client releases the
    // other side and exits non-zero.
    let out = req.s2uc.wait(Duration::from_secs(SHORT_LEASE + 30)).expect("s2uc ends");
    let took = requested.elapsed();
    let err = std::fs::read_to_string(dir.0.join("s2uc.log")).expect("s2uc's log");
    assert_eq!(out.status.code(), Some(1), "s2uc request: {err}");
    assert!(err.contains("deadline exceeded") && err.contains("everything it held is released"), "{err}");
    assert!(took >= Duration::from_secs(SHORT_LEASE), "failed after {took:?}, before the lease");
    // After `created`, only the failure, as a JSON event (the words are on stderr).
    let mut after = Vec::new();
    while let Ok(line) = req.lines.recv_timeout(Duration::from_secs(5)) {
        after.push(line);
    }
    assert_eq!(after.len(), 1, "s2uc printed more after created: {after:?}");
    let failed: Value = serde_json::from_str(&after[0]).expect("a JSON event");
    assert_eq!(
        (failed["event"].as_str(), failed["code"].as_str(), failed["exit_code"].as_u64()),
        (Some("error"), Some("DEADLINE_EXCEEDED"), Some(1)),
        "{failed}"
    );
    nodes_hold(&lab, 0, Duration::from_secs(10), "both facilities free the session's ports");
    let st = status(&lab, &a, &req.uid);
    assert_eq!((st["state"].as_str(), st["failure"].as_str()), (Some("Failed"), Some("deadline exceeded")), "{st}");
    assert_eq!(status(&lab, &b, &req.uid)["state"], "Released", "gwb: released by the client");
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn fault_s2uc_killed_during_setup_its_session_is_listed_releasable_and_else_expires() {
    let Some((_turn, lab)) = lab("s2uc-kill9-setup") else { return };
    let dir = Scratch::new("lab-s2uc-kill");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    // A lease long enough for the steps below before it runs out (each a process in a host).
    let lease = (2 * SHORT_LEASE).to_string();
    let flags: &[&str] = &["--hello-timeout", &lease];
    let (a, b) = gateways_with(&lab, &dir.0, false, [flags, flags]);
    // Two sessions, each s2uc killed while it waits for the producer's Hello, once both
    // facilities list the session (the REQ is in at both).
    // Before the REQs leave, so that no lease can start before it.
    let requested = Instant::now();
    let mut kept = Requested::start(&lab, &dir.0, "s2uc-1.log", &a, &b);
    let mut freed = Requested::start(&lab, &dir.0, "s2uc-2.log", &a, &b);
    for req in [&kept, &freed] {
        for (gw, host) in [(&a, Host::Gwa), (&b, Host::Gwb)] {
            eventually(Duration::from_secs(20), &format!("{host:?} lists the session"), || {
                listed_state(&lab, gw, &req.uid).is_some()
            });
        }
    }
    for req in [&mut kept, &mut freed] {
        let pid = req.s2uc.pid().expect("s2uc runs");
        req.s2uc.kill9();
        assert!(gone(pid), "s2uc is dead");
    }
    nodes_hold(&lab, 4, Duration::from_secs(1), "the client's death frees nothing by itself");

    // Its owner still sees both sessions, in setup, at both facilities (s2uc list).
    for req in [&kept, &freed] {
        for (gw, host) in [(&a, Host::Gwa), (&b, Host::Gwb)] {
            assert_eq!(listed_state(&lab, gw, &req.uid).as_deref(), Some("Listening"), "{host:?} {}", req.uid);
        }
    }
    // The producer's Hello for the first still comes (and is answered): the session at gwa
    // then waits for UpdateTargets that no client will send.
    let out = lab.run(Host::Prod, &bin("appctrl"), &kept.hello_args(&a), Duration::from_secs(30)).expect("appctrl");
    assert!(out.status.success(), "appctrl: {}", String::from_utf8_lossy(&out.stderr));
    // And the user releases the second by hand: its ports are freed at once, long before its
    // lease, while the first's stay held.
    let out = release(&lab, &a, &b, &freed.uid);
    assert!(out.status.success(), "s2uc release: {}", String::from_utf8_lossy(&out.stderr));
    nodes_hold(&lab, 2, Duration::from_secs(5), "the release frees the second session's ports");
    assert!(requested.elapsed() < Duration::from_secs(2 * SHORT_LEASE), "too slow to tell release from lease");
    for gw in [&a, &b] {
        assert_eq!(status(&lab, gw, &freed.uid)["state"], "Released");
    }

    // The first expires by its lease at both facilities (docs/protocol.md: a reservation that
    // never reaches UpdateTargets expires on its own), freeing its ports.
    nodes_hold(&lab, 0, Duration::from_secs(2 * SHORT_LEASE + 10), "the lease frees the first session's ports");
    assert!(requested.elapsed() >= Duration::from_secs(2 * SHORT_LEASE), "freed before the lease");
    for (gw, host) in [(&a, Host::Gwa), (&b, Host::Gwb)] {
        let st = status(&lab, gw, &kept.uid);
        let got = (st["state"].as_str(), st["failure"].as_str());
        assert_eq!(got, (Some("Failed"), Some("deadline exceeded")), "{host:?}: {st}");
    }
    stop_and_check_nothing_left(&lab, (a, b));
}

/// The simulator's properties on the real daemons across the lab (`scistream_tests::props`):
/// random setups, setups left without a Hello, streams from the consumer's host, releases,
/// `kill -9` and restart of either gateway's control server or node, the invariants checked
/// after every step, the control calls made from the user's host on the WAN.
/// `SCISTREAM_PROPS_SEED=N SCISTREAM_PROPS_RUNS=1` replays a run; the seed is printed first.
#[test]
fn random_sequences_across_the_lab_keep_the_simulators_invariants() {
    let Some((_turn, lab)) = lab("random_sequences_across_the_lab_keep_the_simulators_invariants") else { return };
    let sizing = Sizing::from_env(1);
    for run in 0..sizing.runs {
        let mut env = LabFacilities::start(&lab).expect("both gateways and the producer start");
        let seed = sizing.first.wrapping_add(run);
        LabFacilities::run_as_user(&lab, |rt| props::run(&mut env, rt, seed, sizing.steps))
            .expect("entering the user's host");
    }
}
