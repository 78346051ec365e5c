//! The simulator's properties, checked on the real processes: random sequences of setup, a
//! setup left waiting for its Hello, stream, release, `kill -9` and restart of a control server
//! or of a data-server node, run against two facilities — each `s2cs --state-dir` driving one
//! `s2ds` node — with the invariants checked after every step:
//!
//! - **no forwarding without an owner**: every port a node listens on (but its link) is a
//!   listener of a session its control server lists as live;
//! - **released ports are free**: no port of a session the user released is still bound;
//! - **every session a user created is releasable**: each facility either knows it (and
//!   releasing it succeeds) or holds nothing of it;
//! - and an established session whose nodes did not restart still carries bytes after its
//!   control servers were killed and restarted.
//!
//! The facilities are a [`Facilities`]: [`Loopback`] (every daemon on 127.0.0.1) or, where
//! network namespaces can be made, [`LabFacilities`] (the multi-host lab: each gateway's
//! daemons on its own host, the producer and the consumer on their LANs, the test as the user
//! on the WAN).
//!
//! Each run draws its sequence from a seed, printed first; `SCISTREAM_PROPS_SEED=N` replays one.
//! `SCISTREAM_PROPS_RUNS` and `SCISTREAM_PROPS_STEPS` size it ([`Sizing::from_env`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use scistream_fsm::{Addr, ErrorCode, Role, Uid};
use scistream_transport::client::{CallError, ControlClient};
use scistream_transport::tls::{self, Trust};

use crate::lab::gateway::{Gateway, GatewaySpec, LINK_PORT, RANGE};
use crate::lab::{Host, Lab, PROD_IP};
use crate::{Node, Scratch, Server, ServerOpts, args, free_range};

/// How long an invariant may take to hold after a step (ports close, sessions settle).
const SETTLE: Duration = Duration::from_secs(20);

/// How long one setup may take.
const SETUP: Duration = Duration::from_secs(30);

/// Two facilities for the property run: index 0 is the producer's, 1 the consumer's; each a
/// control server with one data-server node.
pub trait Facilities {
    /// What they are, for the report.
    fn name(&self) -> &'static str;
    /// TLS clients of both control servers, made on the calling thread (whose network
    /// namespace the connections then belong to).
    fn connect(&self, rt: &tokio::runtime::Runtime) -> Result<[ControlClient; 2]>;
    /// Where the producer application (an echo server) listens, as its gateway reaches it.
    fn producer(&self) -> Addr;
    /// Whether `n` bytes sent to `listener` (a consumer gateway's listener) from the
    /// consumer's host come back whole.
    fn echo(&self, listener: &str, n: usize) -> bool;
    /// `kill -9` of a facility's control server, and its restart on the same flags.
    fn kill_control_server(&mut self, side: usize) -> Result<()>;
    /// `kill -9` of a facility's node, and its restart on the same flags.
    fn kill_node(&mut self, side: usize) -> Result<()>;
    /// The ports a facility's node listens on now, its link's excepted.
    fn node_ports(&self, side: usize) -> Result<Vec<u16>>;
    /// How many ports a node hands out.
    fn ports_per_node(&self) -> usize;
    /// The daemons' logs, their last lines, for a failure's report.
    fn logs(&self) -> String;
}

/// How many runs of how many steps, from which seed.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Runs, each on fresh facilities.
    pub runs: u64,
    /// Steps per run.
    pub steps: u64,
    /// The first run's seed; run `k` uses `first + k`.
    pub first: u64,
}

impl Sizing {
    /// `SCISTREAM_PROPS_RUNS` (default `runs`), `SCISTREAM_PROPS_STEPS` (default 12),
    /// `SCISTREAM_PROPS_SEED` (default: drawn from the clock).
    pub fn from_env(runs: u64) -> Self {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let first = env("SCISTREAM_PROPS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        Self {
            runs: env("SCISTREAM_PROPS_RUNS").unwrap_or(runs),
            steps: env("SCISTREAM_PROPS_STEPS").unwrap_or(12),
            first,
        }
    }
}

/// One run: `steps` random steps on `env` from `seed`, the invariants checked after each,
/// then everything released and checked free. Panics, with the steps taken and the daemons'
/// logs, at the first invariant that does not hold, and when the run established nothing (a
/// run that checks nothing). The client calls run on `rt`. Returns what it did.
pub fn run(env: &mut dyn Facilities, rt: &tokio::runtime::Runtime, seed: u64, steps: u64) -> Tally {
    println!(
        "real-process properties ({}): seed {seed} (replay with SCISTREAM_PROPS_SEED={seed} SCISTREAM_PROPS_RUNS=1)",
        env.name()
    );
    let clients = env.connect(rt).expect("connecting to both control servers");
    let mut rng = Rng(seed);
    let mut w = World {
        env,
        clients,
        rt,
        sessions: BTreeMap::new(),
        waiting: Vec::new(),
        log: Vec::new(),
        tally: Tally::default(),
    };
    for _ in 0..steps {
        w.step(&mut rng);
        w.check();
    }
    let tally = w.finish();
    println!("real-process properties: seed {seed}: {tally}");
    assert!(tally.established > 0, "seed {seed} established no session: it checked nothing");
    tally
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sessions set up.
    pub setups: u32,
    /// Of those, established.
    pub established: u32,
    /// Setups left without a Hello.
    pub unanswered: u32,
    /// Streams sent through established sessions.
    pub streams: u32,
    /// Sessions released (the final releases included).
    pub releases: u32,
    /// `kill -9` and restarts of control servers.
    pub cs_kills: u32,
    /// `kill -9` and restarts of nodes.
    pub ds_kills: u32,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} setups ({} established), {} left without a Hello, {} streams, {} releases, {} control-server and {} node kills",
            self.setups, self.established, self.unanswered, self.streams, self.releases, self.cs_kills, self.ds_kills
        )
    }
}

/// splitmix64: the sequence is a function of the seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the test, as the user, knows of a session it made.
#[derive(Debug, Clone, Default)]
struct Tracked {
    /// Its listener ports at the producer's and the consumer's nodes, once known.
    ports: [Vec<u16>; 2],
    /// The consumer's listener, once established.
    cons_listener: Option<String>,
    established: bool,
    released: bool,
    /// A node of its restarted since it was established: its stream is gone.
    lost: bool,
}

/// Sends `n` bytes to `listener` and reads them back (20 s bound per read).
pub fn echo_through(listener: &str, n: usize) -> bool {
    let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
    let Ok(mut c) = TcpStream::connect(listener) else { return false };
    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
    if c.write_all(&data).is_err() || c.shutdown(std::net::Shutdown::Write).is_err() {
        return false;
    }
    let mut back = Vec::new();
    c.read_to_end(&mut back).is_ok() && back == data
}

struct World<'a> {
    env: &'a mut dyn Facilities,
    clients: [ControlClient; 2],
    rt: &'a tokio::runtime::Runtime,
    sessions: BTreeMap<Uid, Tracked>,
    /// Producer REQs left waiting for a Hello that never comes (their sessions expire).
    waiting: Vec<tokio::task::JoinHandle<()>>,
    log: Vec<String>,
    tally: Tally,
}

impl World<'_> {
    fn pick(&self, rng: &mut Rng, pred: impl Fn(&Tracked) -> bool) -> Option<Uid> {
        let all: Vec<Uid> = self.sessions.iter().filter(|(_, t)| pred(t)).map(|(u, _)| *u).collect();
        (!all.is_empty()).then(|| all[rng.below(all.len())])
    }

    fn status_ports(&self, side: usize, uid: Uid) -> Vec<u16> {
        match self.rt.block_on(self.clients[side].status(uid)) {
            Ok(s) => s.listeners.iter().map(|a| a.port).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        match rng.below(8) {
            0 | 1 => self.setup(),
            2 => self.setup_without_hello(),
            3 => self.release(rng),
            4 => self.stream(rng),
            5 => self.kill_control_server(rng.below(2)),
            6 => self.kill_node(rng.below(2)),
            _ => self.stream(rng),
        }
    }

    /// Whether a node has at most two free ports left.
    fn nearly_full(&self, side: usize) -> bool {
        self.node_ports(side).len() + 2 >= self.env.ports_per_node()
    }

    fn setup(&mut self) {
        // A node's ports nearly all taken: make room first (a refused REQ would leave the
        // establishing helper waiting for a Hello that has no session to go to).
        if self.nearly_full(0) || self.nearly_full(1) {
            let Some(uid) = self.sessions.iter().find(|(_, t)| !t.released).map(|(u, _)| *u) else { return };
            return self.release_uid(uid);
        }
        let uid = Uid::from_u128(uuid::Uuid::new_v4().as_u128());
        let (p, c) = (&self.clients[0], &self.clients[1]);
        let producer = self.env.producer();
        let done =
            self.rt.block_on(async { tokio::time::timeout(SETUP, crate::establish_to(p, c, uid, producer)).await });
        let mut t = Tracked::default();
        self.tally.setups += 1;
        match done {
            Ok(Ok(_)) => {
                self.tally.established += 1;
                t.established = true;
                t.ports = [self.status_ports(0, uid), self.status_ports(1, uid)];
                t.cons_listener = self
                    .rt
                    .block_on(self.clients[1].status(uid))
                    .ok()
                    .and_then(|s| s.listeners.first().map(ToString::to_string));
                self.log.push(format!("setup {uid}: established, ports {:?}", t.ports));
                // The nodes' sockets as the system shows them agree (the checks read them).
                for side in 0..2 {
                    assert!(!t.ports[side].is_empty(), "established {uid} lists no listener at facility {side}");
                    let ports = t.ports[side].clone();
                    self.eventually(&format!("node {side} listens on {uid}'s ports {ports:?}"), |w| {
                        let bound = w.node_ports(side);
                        ports.iter().all(|p| bound.contains(p))
                    });
                }
            }
            // Refused (no free port, say) or cut short: it must hold nothing, or be releasable.
            other => self.log.push(format!("setup {uid}: {other:?}")),
        }
        self.sessions.insert(uid, t);
    }

    fn setup_without_hello(&mut self) {
        if self.nearly_full(0) {
            return self.setup();
        }
        let uid = Uid::from_u128(uuid::Uuid::new_v4().as_u128());
        let p = self.clients[0].clone();
        // The producer's REQ waits for a Hello that never comes: the session expires by its lease.
        let key = scistream_fsm::AppKey(*uuid::Uuid::new_v4().as_bytes());
        self.waiting.push(self.rt.spawn(async move {
            let _ = p.req(uid, Role::Prod, 1, 0, Some(key)).await;
        }));
        // On the client's runtime, which may be the calling thread's only.
        self.rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
        let t = Tracked { ports: [self.status_ports(0, uid), Vec::new()], ..Tracked::default() };
        self.log.push(format!("setup {uid} without a Hello: ports {:?}", t.ports[0]));
        self.tally.unanswered += 1;
        self.sessions.insert(uid, t);
    }

    fn release(&mut self, rng: &mut Rng) {
        let Some(uid) = self.pick(rng, |t| !t.released) else { return self.setup() };
        self.release_uid(uid);
    }

    /// Releases `uid` at both facilities: every session the user created is releasable.
    fn release_uid(&mut self, uid: Uid) {
        for side in 0..2 {
            let answer = self.rt.block_on(self.clients[side].release(uid));
            // Released, or not held there at all (refused, never reached it, or expired and
            // forgotten).
            match answer {
                Ok(()) | Err(CallError::Status { code: ErrorCode::NotFound, .. }) => {}
                Err(e) => panic!("session {uid} cannot be released at facility {side}: {e}\n{}", self.log.join("\n")),
            }
        }
        self.sessions.get_mut(&uid).expect("tracked").released = true;
        self.log.push(format!("release {uid}"));
        self.tally.releases += 1;
    }

    fn stream(&mut self, rng: &mut Rng) {
        let Some(uid) = self.pick(rng, |t| t.established && !t.released && !t.lost) else { return self.setup() };
        let listener = self.sessions[&uid].cons_listener.clone().expect("established sessions have a listener");
        self.log.push(format!("stream through {uid} at {listener}"));
        self.tally.streams += 1;
        assert!(
            self.env.echo(&listener, 100_000),
            "an established session of live nodes carries no bytes\n{}\n{}",
            self.log.join("\n"),
            self.env.logs()
        );
    }

    fn kill_control_server(&mut self, side: usize) {
        self.log.push(format!("kill -9 s2cs {side}"));
        self.tally.cs_kills += 1;
        self.env.kill_control_server(side).expect("s2cs restarts");
        // Its established sessions come back from the store, confirmed by the node.
        let live: Vec<Uid> =
            self.sessions.iter().filter(|(_, t)| t.established && !t.released && !t.lost).map(|(u, _)| *u).collect();
        for uid in live {
            self.eventually(&format!("{uid} established again at facility {side}"), |w| {
                w.rt.block_on(w.clients[side].status(uid)).is_ok_and(|s| s.state == "Established")
            });
        }
    }

    fn kill_node(&mut self, side: usize) {
        self.log.push(format!("kill -9 s2ds {side}"));
        self.tally.ds_kills += 1;
        self.env.kill_node(side).expect("the node restarts");
        for t in self.sessions.values_mut() {
            t.lost = true; // one node per facility: every session of both is broken now
        }
    }

    fn eventually(&self, what: &str, mut ok: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            assert!(
                start.elapsed() < SETTLE,
                "not within {SETTLE:?}: {what}\n{}\n{}",
                self.log.join("\n"),
                self.env.logs()
            );
            self.rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
        }
    }

    /// The ports each facility's control server says its live sessions hold.
    fn owned_ports(&self, side: usize) -> Option<Vec<u16>> {
        let list = self.rt.block_on(self.clients[side].list()).ok()?;
        let terminal = ["Released", "Failed"];
        Some(
            list.iter()
                .filter(|s| !terminal.contains(&s.state.as_str()))
                .flat_map(|s| s.listeners.iter().map(|a| a.port))
                .collect(),
        )
    }

    fn node_ports(&self, side: usize) -> Vec<u16> {
        self.env.node_ports(side).expect("the node's listening ports")
    }

    fn check(&self) {
        for side in 0..2 {
            // No forwarding without an owner.
            self.eventually(&format!("every port node {side} binds is a live session's"), |w| {
                let bound = w.node_ports(side);
                w.owned_ports(side).is_some_and(|owned| bound.iter().all(|p| owned.contains(p)))
            });
            // Released ports are free: the released session is over, and a port of it is bound
            // only if another live session holds it now (ports are handed out again).
            for (uid, t) in self.sessions.iter().filter(|(_, t)| t.released) {
                self.eventually(&format!("node {side} frees released {uid}'s ports {:?}", t.ports[side]), |w| {
                    let over = match w.rt.block_on(w.clients[side].status(*uid)) {
                        Ok(s) => s.state == "Released" || s.state == "Failed",
                        Err(CallError::Status { code: ErrorCode::NotFound, .. }) => true,
                        Err(_) => false,
                    };
                    let bound = w.node_ports(side);
                    let owned = w.owned_ports(side).unwrap_or_default();
                    over && t.ports[side].iter().all(|p| !bound.contains(p) || owned.contains(p))
                });
            }
        }
    }

    fn finish(mut self) -> Tally {
        let open: Vec<Uid> = self.sessions.iter().filter(|(_, t)| !t.released).map(|(u, _)| *u).collect();
        for uid in open {
            self.release_uid(uid);
        }
        self.check();
        for side in 0..2 {
            self.eventually(&format!("node {side} binds nothing but its link"), |w| w.node_ports(side).is_empty());
        }
        for h in self.waiting.drain(..) {
            h.abort();
        }
        self.tally
    }
}

/// An echo server (every connection read to its end and written back), stopped on drop.
pub struct EchoServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    /// Serves on `listener` (made in whichever network namespace it belongs to).
    pub fn serve(listener: TcpListener) -> Result<Self> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                            let mut all = Vec::new();
                            if s.read_to_end(&mut all).is_ok() {
                                let _ = s.write_all(&all);
                                let _ = s.shutdown(std::net::Shutdown::Write);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self { addr, stop })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The last `n` lines of `text`, under a heading.
fn tail(name: &str, text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    format!("--- {name}\n{}", lines[lines.len().saturating_sub(n)..].join("\n"))
}

/// Both facilities on loopback: a node (8 ports) and a control server with a state folder each.
pub struct Loopback {
    _dirs: [Scratch; 2],
    nodes: [Node; 2],
    servers: [Server; 2],
    app: EchoServer,
}

impl Loopback {
    /// Starts both facilities and the producer application.
    pub fn start() -> Result<Self> {
        let dirs = [Scratch::new("props-p"), Scratch::new("props-c")];
        let nodes = [Node::start(&dirs[0].0, &free_range(8), &[])?, Node::start(&dirs[1].0, &free_range(8), &[])?];
        let server = |i: usize| {
            let state = dirs[i].0.join("state");
            let opts = ServerOpts {
                node: Some(nodes[i].link()),
                hello_timeout: 8.0,
                extra: args(&["--state-dir", state.to_str().context("utf-8 path")?]),
                ..ServerOpts::default()
            };
            Server::start(&dirs[i].0, &opts)
        };
        let servers = [server(0)?, server(1)?];
        let app = EchoServer::serve(TcpListener::bind("127.0.0.1:0")?)?;
        Ok(Self { _dirs: dirs, nodes, servers, app })
    }
}

impl Facilities for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn connect(&self, rt: &tokio::runtime::Runtime) -> Result<[ControlClient; 2]> {
        let one = |s: &Server| rt.block_on(crate::connect_as(s, None, Duration::from_secs(20)));
        Ok([one(&self.servers[0])?, one(&self.servers[1])?])
    }

    fn producer(&self) -> Addr {
        Addr::new("127.0.0.1", self.app.addr.port())
    }

    fn echo(&self, listener: &str, n: usize) -> bool {
        echo_through(listener, n)
    }

    fn kill_control_server(&mut self, side: usize) -> Result<()> {
        self.servers[side].kill9_and_restart()
    }

    fn kill_node(&mut self, side: usize) -> Result<()> {
        self.nodes[side].restart()
    }

    fn node_ports(&self, side: usize) -> Result<Vec<u16>> {
        let link = self.nodes[side].addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
        Ok(self.nodes[side].listening_ports()?.into_iter().filter(|p| Some(*p) != link).collect())
    }

    fn ports_per_node(&self) -> usize {
        8
    }

    fn logs(&self) -> String {
        [0, 1]
            .iter()
            .flat_map(|&i| {
                [
                    tail(&format!("s2cs {i}"), &self.servers[i].log(), 40),
                    tail(&format!("s2ds {i}"), &self.nodes[i].log(), 40),
                ]
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Both facilities in the multi-host lab: gateway A's and B's `s2cs --state-dir` and `s2ds` on
/// their own hosts, the producer application on `prod`, streams sent from `cons`, the control
/// calls made from `user` on the WAN (the run must be on a thread inside `user`'s namespace:
/// see [`LabFacilities::run_as_user`]).
pub struct LabFacilities<'l> {
    lab: &'l Lab,
    _dir: Scratch,
    gateways: [Gateway; 2],
    app: EchoServer,
}

impl<'l> LabFacilities<'l> {
    /// Starts both gateways and the producer application on `prod` (port 7000).
    pub fn start(lab: &'l Lab) -> Result<Self> {
        let dir = Scratch::new("props-lab");
        let spec = |mut s: GatewaySpec| {
            s.state = true;
            s.cs_extra = args(&["--hello-timeout", "8"]);
            s
        };
        let gateways = [
            Gateway::start(lab, &dir.0, &spec(GatewaySpec::a()))?,
            Gateway::start(lab, &dir.0, &spec(GatewaySpec::b()))?,
        ];
        let listener = lab.within(Host::Prod, || TcpListener::bind((PROD_IP, 7000)))??;
        let app = EchoServer::serve(listener)?;
        Ok(Self { lab, _dir: dir, gateways, app })
    }

    /// Runs `f` on a thread inside the user's host with a runtime of that thread alone, so
    /// every connection the clients make, their reconnections included, starts from there.
    pub fn run_as_user<T: Send>(lab: &Lab, f: impl FnOnce(&tokio::runtime::Runtime) -> T + Send) -> Result<T> {
        lab.within(Host::User, || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            f(&rt)
        })
    }

    fn cert(&self, side: usize) -> PathBuf {
        self.gateways[side].cs_cert.clone()
    }
}

impl Facilities for LabFacilities<'_> {
    fn name(&self) -> &'static str {
        "multi-host lab"
    }

    fn connect(&self, rt: &tokio::runtime::Runtime) -> Result<[ControlClient; 2]> {
        let one = |side: usize| -> Result<ControlClient> {
            let addr = &self.gateways[side].cs.addr;
            let channel = rt.block_on(tls::connect(addr, &Trust::File(self.cert(side)), Duration::from_secs(20)))?;
            Ok(ControlClient::new(channel, None, Duration::from_secs(20))?)
        };
        Ok([one(0)?, one(1)?])
    }

    fn producer(&self) -> Addr {
        Addr::new(PROD_IP, self.app.addr.port())
    }

    fn echo(&self, listener: &str, n: usize) -> bool {
        self.lab.within(Host::Cons, || echo_through(listener, n)).unwrap_or(false)
    }

    fn kill_control_server(&mut self, side: usize) -> Result<()> {
        self.gateways[side].cs.restart()
    }

    fn kill_node(&mut self, side: usize) -> Result<()> {
        self.gateways[side].ds.restart()
    }

    fn node_ports(&self, side: usize) -> Result<Vec<u16>> {
        let host = if side == 0 { Host::Gwa } else { Host::Gwb };
        let all = self.lab.listening(host)?;
        Ok(all
            .into_iter()
            .filter(|l| l.process == "s2ds" && l.addr.port() != LINK_PORT)
            .map(|l| l.addr.port())
            .collect())
    }

    fn ports_per_node(&self) -> usize {
        usize::from(RANGE.1 - RANGE.0 + 1)
    }

    fn logs(&self) -> String {
        self.gateways
            .iter()
            .enumerate()
            .flat_map(|(i, g)| {
                [tail(&format!("s2cs {i}"), &g.cs.log(), 40), tail(&format!("s2ds {i}"), &g.ds.log(), 40)]
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
