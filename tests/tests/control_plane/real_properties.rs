//! The simulator's properties, checked on the real processes: random sequences of setup, a
//! setup left waiting for its Hello, stream, release, `kill -9` and restart of a control server
//! or of a data-server node, run against two facilities on loopback (each `s2cs --state-dir`
//! driving an `s2ds` node), with the invariants checked after every step:
//!
//! - **no forwarding without an owner**: every port a node listens on (but its link) is a
//!   listener of a session its control server lists as live;
//! - **released ports are free**: no port of a session the user released is still bound;
//! - **every session a user created is releasable**: each facility either knows it (and
//!   releasing it succeeds) or holds nothing of it;
//! - and an established session whose nodes did not restart still carries bytes after its
//!   control servers were killed and restarted.
//!
//! Each run draws its sequence from a seed, printed first; `SCISTREAM_PROPS_SEED=N` replays one.
//! `SCISTREAM_PROPS_RUNS` (default 2) and `SCISTREAM_PROPS_STEPS` (default 12) size it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use scistream_fsm::{ErrorCode, Role, Uid};
use scistream_tests::{Node, Scratch, Server, ServerOpts, args, echo_producer, free_range};
use scistream_transport::client::{CallError, ControlClient};

use crate::testkit::{client, fresh_uid, key, runtime, shared};

/// How long an invariant may take to hold after a step (ports close, sessions settle).
const SETTLE: Duration = Duration::from_secs(20);

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

fn echo(listener: &str, n: usize) -> bool {
    let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
    let Ok(mut c) = TcpStream::connect(listener) else { return false };
    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
    if c.write_all(&data).is_err() || c.shutdown(std::net::Shutdown::Write).is_err() {
        return false;
    }
    let mut back = Vec::new();
    c.read_to_end(&mut back).is_ok() && back == data
}

struct World {
    _dirs: [Scratch; 2],
    nodes: [Node; 2],
    servers: [Server; 2],
    clients: [ControlClient; 2],
    rt: tokio::runtime::Runtime,
    app: u16,
    sessions: BTreeMap<Uid, Tracked>,
    /// Producer REQs left waiting for a Hello that never comes (their sessions expire).
    waiting: Vec<tokio::task::JoinHandle<()>>,
    log: Vec<String>,
}

impl World {
    fn new() -> Self {
        let dirs = [Scratch::new("props-p"), Scratch::new("props-c")];
        let nodes = [0, 1].map(|i| Node::start(&dirs[i].0, &free_range(8), &[]).expect("node starts"));
        let servers = [0, 1].map(|i| {
            let state = dirs[i].0.join("state");
            let opts = ServerOpts {
                node: Some(nodes[i].link()),
                hello_timeout: 8.0,
                extra: args(&["--state-dir", state.to_str().expect("utf-8")]),
                ..ServerOpts::default()
            };
            Server::start(&dirs[i].0, &opts).expect("s2cs starts")
        });
        let rt = runtime();
        let clients = rt.block_on(async { [client(&servers[0]).await, client(&servers[1]).await] });
        Self {
            _dirs: dirs,
            nodes,
            servers,
            clients,
            rt,
            app: echo_producer(),
            sessions: BTreeMap::new(),
            waiting: Vec::new(),
            log: Vec::new(),
        }
    }

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

    fn setup(&mut self) {
        // A node's 8 ports nearly all taken: make room first (a refused REQ would leave the
        // establishing helper waiting for a Hello that has no session to go to).
        if self.node_ports(0).len() >= 6 || self.node_ports(1).len() >= 6 {
            let Some(uid) = self.sessions.iter().find(|(_, t)| !t.released).map(|(u, _)| *u) else { return };
            return self.release_uid(uid);
        }
        let uid = fresh_uid();
        let (p, c) = (&self.clients[0], &self.clients[1]);
        let done = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), scistream_tests::establish(p, c, uid, self.app)).await
        });
        let mut t = Tracked::default();
        match done {
            Ok(Ok(_)) => {
                t.established = true;
                t.ports = [self.status_ports(0, uid), self.status_ports(1, uid)];
                t.cons_listener = self
                    .rt
                    .block_on(self.clients[1].status(uid))
                    .ok()
                    .and_then(|s| s.listeners.first().map(ToString::to_string));
                self.log.push(format!("setup {uid}: established, ports {:?}", t.ports));
            }
            // Refused (no free port, say) or cut short: it must hold nothing, or be releasable.
            other => self.log.push(format!("setup {uid}: {other:?}")),
        }
        self.sessions.insert(uid, t);
    }

    fn setup_without_hello(&mut self) {
        if self.node_ports(0).len() >= 6 {
            return self.setup();
        }
        let uid = fresh_uid();
        let p = self.clients[0].clone();
        // The producer's REQ waits for a Hello that never comes: the session expires by its lease.
        self.waiting.push(self.rt.spawn(async move {
            let _ = p.req(uid, Role::Prod, 1, 0, Some(key(9))).await;
        }));
        std::thread::sleep(Duration::from_millis(200));
        let t = Tracked { ports: [self.status_ports(0, uid), Vec::new()], ..Tracked::default() };
        self.log.push(format!("setup {uid} without a Hello: ports {:?}", t.ports[0]));
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
    }

    fn stream(&mut self, rng: &mut Rng) {
        let Some(uid) = self.pick(rng, |t| t.established && !t.released && !t.lost) else { return self.setup() };
        let listener = self.sessions[&uid].cons_listener.clone().expect("established sessions have a listener");
        self.log.push(format!("stream through {uid} at {listener}"));
        assert!(
            echo(&listener, 100_000),
            "an established session of live nodes carries no bytes\n{}",
            self.log.join("\n")
        );
    }

    fn kill_control_server(&mut self, side: usize) {
        self.log.push(format!("kill -9 s2cs {side}"));
        self.servers[side].kill9_and_restart().expect("s2cs restarts");
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
        self.nodes[side].restart().expect("the node restarts");
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
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemons' logs, their last lines, for a failure's report.
    fn logs(&self) -> String {
        let tail = |name: &str, text: String| {
            let lines: Vec<&str> = text.lines().collect();
            format!("--- {name}\n{}", lines[lines.len().saturating_sub(40)..].join("\n"))
        };
        [0, 1]
            .iter()
            .flat_map(|&i| {
                [tail(&format!("s2cs {i}"), self.servers[i].log()), tail(&format!("s2ds {i}"), self.nodes[i].log())]
            })
            .collect::<Vec<_>>()
            .join("\n")
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
        let link = self.nodes[side].addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
        self.nodes[side].listening_ports().expect("ss").into_iter().filter(|p| Some(*p) != link).collect()
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

    fn finish(mut self) {
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
    }
}

#[test]
fn random_sequences_on_the_real_daemons_keep_the_simulators_invariants() {
    let _serial = shared();
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let runs = env("SCISTREAM_PROPS_RUNS").unwrap_or(2);
    let steps = env("SCISTREAM_PROPS_STEPS").unwrap_or(12);
    let first = env("SCISTREAM_PROPS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    for run in 0..runs {
        let seed = first.wrapping_add(run);
        println!(
            "real-process properties: seed {seed} (replay with SCISTREAM_PROPS_SEED={seed} SCISTREAM_PROPS_RUNS=1)"
        );
        let mut rng = Rng(seed);
        let mut w = World::new();
        for _ in 0..steps {
            w.step(&mut rng);
            w.check();
        }
        w.finish();
    }
}
