//! One simulated run: the cores of both facilities, the clients and the applications, a
//! seeded network, virtual time, and the property checks.
//!
//! Every source of nondeterminism is the run's `ChaCha8Rng`, seeded from the seed alone; all
//! collections iterate in key order. The same scenario and seed give the same trace.

mod defect;
mod exec;
pub mod explore;
mod observe;
pub mod plan;
pub mod script;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scistream_fsm::policy::Policy;
use scistream_fsm::timing::{self, Profile};
use scistream_fsm::{
    Effect, Faces, Instant, Msg, Node, Peer, Principal, Role, TimerKey, Token, Uid, cons_app, prod_app, s2cs, s2ds,
    s2uc,
};

use crate::check::{Prop, Reach, Violation};
use crate::net::{self, Fate, Network};
use crate::nodes::{self, node_by_name};
use crate::scenario::Scenario;
pub use defect::{Defect, Step};
use plan::Plan;

/// How to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// The seed: the whole run follows from it.
    pub seed: u64,
    /// Record the event trace.
    pub trace: bool,
    /// Run a broken variant.
    pub defect: Defect,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Broken properties.
    pub violations: Vec<Violation>,
    /// Reachability marks hit.
    pub reached: BTreeSet<Reach>,
    /// Events processed.
    pub events: u64,
    /// Sessions established.
    pub established: u32,
    /// The trace, when asked for.
    pub trace: Vec<String>,
    /// The scripted "sometimes" properties this run reached ([`script::Property`]).
    pub scripted: BTreeSet<&'static str>,
}

/// Something scheduled on the virtual clock.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Deliver {
        from: Peer,
        to: Peer,
        wire: Wire,
    },
    Timer {
        node: Peer,
        key: TimerKey,
        generation: u64,
    },
    Start(usize),
    Hello(usize),
    Release(usize),
    SettleCheck,
    ReleaseAll,
    OperatorRelease(usize),
    BridgesUp(Role, Node, Uid),
    BridgesFailed(Role, Node, Uid),
    Bind(Role, Node, Uid, Option<u16>),
    ConsListeners(usize, Vec<scistream_fsm::Addr>),
    ConsResult(usize, bool),
    Crash(Peer, u64),
    Restart(Peer),
    /// The checks look again at a node's session when its lease must have ended, whether or not
    /// a step concerned it since.
    LeaseCheck(Peer, Uid),
}

/// What a delivery carries. The network frames a message with the production encoding only
/// when it damages it, or when the round-trip check samples it ([`ROUND_TRIP_EVERY`]): an
/// intact frame would decode to the very message sent, so the receiver is handed the message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    /// Delivered as sent.
    Intact(Box<Msg>),
    /// A damaged frame: the receiver checks and decodes it with the production decoder.
    Damaged(Vec<u8>),
}

/// The first port of every data server's range.
pub const FIRST_PORT: u16 = 5100;

/// One message in this many sent goes through the production encoder and decoder and must come
/// back as itself ([`Prop::WireFaithful`]); every damaged one goes through both anyway.
pub const ROUND_TRIP_EVERY: u64 = 8;

/// An event on the queue, ordered by its time and then by when it was scheduled (the order
/// in which events of one instant happen is part of what a seed determines).
#[derive(Debug, Clone)]
struct Scheduled {
    at: Instant,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Where a session was last seen, to check that terminal states are final and leases bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    state: &'static str,
    terminal: bool,
    /// Holding a reservation its lease bounds.
    leased: bool,
    since: Instant,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A simulated cluster during one run.
#[derive(Clone)]
pub struct World<'a> {
    sc: &'a Scenario,
    opts: Options,
    rng: ChaCha8Rng,
    now: Instant,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Messages sent so far (the round-trip check samples them).
    sent: u64,
    net: Network,
    clients: Vec<Option<s2uc::S2uc>>,
    cs: [Option<s2cs::ControlServer>; 2],
    /// The data-server nodes, each facility's in order ([`World::ds_index`]).
    ds: Vec<Option<s2ds::S2ds>>,
    apps: Vec<Option<prod_app::ProdApp>>,
    cons: Vec<cons_app::ConsApp>,
    /// Each client's journal: its durable state (the uids of its unfinished sessions).
    journals: Vec<BTreeSet<Uid>>,
    /// The sessions each client accepted from its user (`Input::Start` taken), by client.
    started: BTreeSet<(u32, Uid)>,
    /// The outcome each client reported to its user for a session (`Notice::Released` or
    /// `Notice::Failed`): after it, the client may legitimately forget the session.
    outcomes: BTreeMap<(u32, Uid), Option<scistream_fsm::ErrorCode>>,
    epochs: [u64; 2],
    /// Each control server's durable store: the established sessions it persisted.
    stores: [BTreeMap<Uid, s2cs::Record>; 2],
    /// Each data-server node's incarnation.
    incs: Vec<u64>,
    client_incs: Vec<u64>,
    /// The scenario's timing (every node's, but for its jitter seed).
    profile: Profile,
    /// The facilities' configuration, as drawn for this seed.
    config: Drawn,
    /// Scratch space of the checks, kept between steps.
    looks: Vec<(Uid, Option<observe::Look>)>,
    timers: BTreeMap<(Peer, TimerKey), u64>,
    generation: u64,
    /// The ports bound on each data-server node's host, with the session holding each.
    os: Vec<BTreeMap<u16, Uid>>,
    /// Ports another process holds, per data-server node.
    foreign: Vec<BTreeSet<u16>>,
    /// The sessions the producer's control server has held with listeners bound, with their
    /// owners: the ones a client may announce.
    admitted: BTreeSet<(Uid, Principal)>,
    /// The listeners the producer's control server held for each session, in every incarnation:
    /// where a consumer gateway may forward it.
    prod_gateway: BTreeMap<Uid, BTreeSet<Vec<scistream_fsm::Addr>>>,
    plans: Vec<Plan>,
    by_uid: BTreeMap<Uid, Vec<usize>>,
    seen: BTreeMap<Peer, BTreeMap<Uid, Seen>>,
    release_all_at: Instant,
    end_at: Instant,
    violations: Vec<Violation>,
    reached: BTreeSet<Reach>,
    established: u32,
    trace: Option<Vec<String>>,
    events: u64,
    scratch: Vec<Effect>,
    /// Set while a forged message is being handled: what the step does beyond answering the
    /// forger is collected in `forged_effects`.
    forging: bool,
    forged_effects: Vec<String>,
}

/// Runs one seed of a scenario to its end.
pub fn run(sc: &Scenario, opts: Options) -> Outcome {
    script::Sim::new(sc, opts).finish()
}

impl<'a> World<'a> {
    fn new(sc: &'a Scenario, opts: Options) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let plans = plan::draw(sc, &mut rng);
        let mut by_uid: BTreeMap<Uid, Vec<usize>> = BTreeMap::new();
        for (i, p) in plans.iter().enumerate() {
            by_uid.entry(p.uid).or_default().push(i);
        }
        let profile = sc.timing.profile();
        let longest = profile.setup_deadline().max(profile.ds_lease()).max(profile.hello_deadline());
        let settle = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX / 4) + 20_000;
        let last_fault = sc.crashes.iter().map(|c| c.at_ms + c.down_ms).max().unwrap_or(0);
        let release_all_at =
            Instant::ZERO + ms(sc.heal_at_ms.max(sc.workload.start_window_ms).max(last_fault) + settle);
        let n = sc.sessions as usize;
        let all_nodes = 2 * usize::from(sc.nodes);
        let mut foreign = vec![BTreeSet::new(); all_nodes];
        for set in &mut foreign {
            while set.len() < usize::from(sc.busy_ports) {
                set.insert(FIRST_PORT + rng.random_range(0..sc.ports));
            }
        }
        let config = Drawn {
            require_app_keys: sc.config.require_app_keys.unwrap_or_else(|| rng.random_bool(0.5)),
            allow_plain_wan: sc.config.allow_plain_wan.unwrap_or_else(|| rng.random_bool(0.5)),
            operators: sc.config.operators.unwrap_or_else(|| rng.random_bool(0.5)),
        };
        let mut w = Self {
            sc,
            opts,
            rng,
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            sent: 0,
            net: Network::new(sc),
            clients: (0..sc.clients).map(|c| Some(s2uc::S2uc::new(client_cfg(sc, opts.seed, c, 0)))).collect(),
            cs: [
                Some(s2cs::ControlServer::new(cs_cfg(sc, &config, opts.seed, Role::Prod, 1), 1)),
                Some(s2cs::ControlServer::new(cs_cfg(sc, &config, opts.seed, Role::Cons, 1), 1)),
            ],
            ds: Role::ALL
                .into_iter()
                .flat_map(|r| {
                    (0..sc.nodes).map(move |n| Some(s2ds::S2ds::new(ds_cfg(sc, opts.seed, r, Node(n), 1), 1)))
                })
                .collect(),
            apps: vec![None; n],
            cons: plans.iter().map(|p| cons_app::ConsApp::new(p.uid)).collect(),
            journals: vec![BTreeSet::new(); sc.clients as usize],
            started: BTreeSet::new(),
            outcomes: BTreeMap::new(),
            epochs: [1, 1],
            stores: [BTreeMap::new(), BTreeMap::new()],
            incs: vec![1; all_nodes],
            client_incs: vec![0; sc.clients as usize],
            profile,
            config,
            looks: Vec::new(),
            timers: BTreeMap::new(),
            generation: 0,
            os: vec![BTreeMap::new(); all_nodes],
            foreign,
            admitted: BTreeSet::new(),
            prod_gateway: BTreeMap::new(),
            plans,
            by_uid,
            seen: BTreeMap::new(),
            release_all_at,
            end_at: release_all_at + ms(90_000),
            violations: Vec::new(),
            reached: BTreeSet::new(),
            established: 0,
            trace: opts.trace.then(Vec::new),
            events: 0,
            scratch: Vec::new(),
            forging: false,
            forged_effects: Vec::new(),
        };
        w.note(|| format!("seed {} scenario {} sessions {}", opts.seed, sc.name, sc.sessions));
        w
    }

    /// Where data-server node `n` of the facility serving `r` sits in the per-node vectors.
    fn ds_index(&self, r: Role, n: Node) -> usize {
        nodes::role_index(r) * usize::from(self.sc.nodes) + n.index()
    }

    /// The data-server nodes of the facility serving `r`.
    fn ds_nodes(&self, r: Role) -> impl Iterator<Item = (Node, usize)> + use<> {
        let per = self.sc.nodes;
        (0..per).map(move |n| (Node(n), nodes::role_index(r) * usize::from(per) + usize::from(n)))
    }

    fn boot(&mut self) {
        for r in Role::ALL {
            for (n, _) in self.ds_nodes(r) {
                self.step_ds(r, n, s2ds::Input::Boot);
            }
            self.step_cs(r, Peer::ControlServer(r), s2cs::Input::Boot);
        }
        for i in 0..self.plans.len() {
            let at = Instant::ZERO + ms(self.plans[i].start_ms);
            self.schedule(at, Event::Start(i));
            if let Some(t) = self.plans[i].release_early_ms {
                self.schedule(Instant::ZERO + ms(t), Event::Release(i));
            }
            if let Some(t) = self.plans[i].operator_release_ms {
                self.schedule(Instant::ZERO + ms(t), Event::OperatorRelease(i));
            }
        }
        for c in self.sc.crashes.clone() {
            let node = node_by_name(&c.node, self.sc.clients, self.sc.sessions, self.sc.nodes).expect("validated");
            self.schedule(Instant::ZERO + ms(c.at_ms), Event::Crash(node, c.down_ms));
        }
        self.schedule(self.release_all_at, Event::SettleCheck);
        self.schedule(self.release_all_at, Event::ReleaseAll);
    }

    /// Processes the next event; `false` once the run is over (nothing left, the end time
    /// passed, or the event budget spent: a livelock, reported as bounded-drive).
    fn step_event(&mut self) -> bool {
        let Some(Reverse(Scheduled { at, ev, .. })) = self.queue.pop() else { return false };
        self.run_event(at, ev)
    }

    /// Processes `ev`, due at `at` (the clock never goes back: an event handled ahead of
    /// another happens at the later of the two times); `false` once the run is over.
    fn run_event(&mut self, at: Instant, ev: Event) -> bool {
        let max_events = 100_000 + 60_000 * u64::from(self.sc.sessions);
        if at > self.end_at {
            self.queue.clear();
            return false;
        }
        self.now = self.now.max(at);
        self.events += 1;
        if self.events > max_events {
            self.violate(Prop::BoundedDrive, format!("more than {max_events} events: livelock"));
            self.queue.clear();
            return false;
        }
        self.dispatch(ev);
        true
    }

    /// The time of the next event, if any.
    fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(s)| s.at)
    }

    /// Ends the run: the clock moves to its end, the final checks run, and so do the
    /// scripted end-of-run properties `eventually` names as broken.
    fn into_outcome_with(mut self, eventually: impl FnOnce(&Self) -> Vec<&'static str>) -> Outcome {
        self.now = self.now.max(self.end_at);
        // A run its event budget cut short never reached its end: what it holds then says
        // nothing about the end-of-run properties.
        if !self.violations.iter().any(|v| v.prop == Prop::BoundedDrive) {
            self.final_checks();
        }
        for name in eventually(&self) {
            self.violate(Prop::Scripted(name), "scripted property does not hold at the end".into());
        }
        Outcome {
            violations: self.violations,
            reached: self.reached,
            events: self.events,
            established: self.established,
            trace: self.trace.unwrap_or_default(),
            scripted: BTreeSet::new(),
        }
    }

    fn schedule(&mut self, at: Instant, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            t.push(format!("{:>14} {}", self.now.to_string(), line()));
        }
    }

    fn violate(&mut self, prop: Prop, detail: String) {
        self.note(|| format!("VIOLATION {prop}: {detail}"));
        self.violations.push(Violation { prop, at: self.now, detail });
    }

    fn dispatch(&mut self, ev: Event) {
        match ev {
            Event::Deliver { from, to, wire } => self.deliver(from, to, wire),
            Event::Timer { node, key, generation } => {
                if self.timers.get(&(node, key)) != Some(&generation) {
                    return;
                }
                self.timers.remove(&(node, key));
                self.note(|| format!("{node} timer {:?} {}", key.kind, key.uid.map(short).unwrap_or_default()));
                match node {
                    Peer::Client(n) => self.step_client(n, s2uc::Input::Timer(key)),
                    Peer::ControlServer(r) => self.step_cs(r, node, s2cs::Input::Timer(key)),
                    Peer::DataServer(r, n) => self.step_ds(r, n, s2ds::Input::Timer(key)),
                    Peer::App(i) => self.step_app(i, prod_app::Input::Timer(key)),
                }
            }
            Event::Start(i) => {
                let p = self.plans[i].clone();
                if self.clients[p.client as usize].is_none() {
                    // The user's client is down: the user tries again a little later.
                    self.schedule(self.now + ms(500), Event::Start(i));
                    return;
                }
                self.note(|| format!("s2uc#{} start {} num_conn {}", p.client, short(p.uid), p.num_conn));
                let input = s2uc::Input::Start {
                    uid: p.uid,
                    num_conn: p.num_conn,
                    rate: p.rate,
                    key: p.key,
                    creds: p.creds,
                    plan: s2uc::Plan::both(),
                };
                self.step_client(p.client, input);
            }
            Event::Hello(i) => {
                let p = &self.plans[i];
                let input = prod_app::Input::Start { uid: p.uid, key: p.key, prod_listeners: p.prod_listeners.clone() };
                self.apps[i] = Some(prod_app::ProdApp::new(app_cfg(self.sc, self.opts.seed, i as u32)));
                self.note(|| format!("app#{i} starts"));
                self.step_app(i as u32, input);
            }
            Event::Release(i) => self.release(i),
            Event::SettleCheck => self.settle_check(),
            Event::ReleaseAll => {
                for i in 0..self.plans.len() {
                    self.release(i);
                }
            }
            Event::OperatorRelease(i) => {
                // The operator's own client; its answers go nowhere (it is not simulated).
                let (uid, role) = (self.plans[i].uid, if self.rng.random_bool(0.5) { Role::Prod } else { Role::Cons });
                self.note(|| format!("operator releases {} at {}", short(uid), Peer::ControlServer(role)));
                self.reached.insert(Reach::OperatorReleased);
                let msg = Msg::Rel { uid, seq: 1, token: Token("tok-operator".into()) };
                self.send(Peer::Client(OPERATOR), Peer::ControlServer(role), msg);
            }
            Event::BridgesUp(r, n, uid) => self.step_ds(r, n, s2ds::Input::BridgesUp(uid)),
            Event::BridgesFailed(r, n, uid) => {
                let code = scistream_fsm::ErrorCode::FailedPrecondition;
                self.step_ds(r, n, s2ds::Input::BridgesFailed { uid, code });
            }
            Event::Bind(r, n, uid, None) => self.step_ds(r, n, s2ds::Input::Bound(uid)),
            Event::Bind(r, n, uid, Some(port)) => self.step_ds(r, n, s2ds::Input::BindFailed { uid, port }),
            Event::ConsListeners(i, listeners) => self.step_cons(i, cons_app::Input::Listeners(listeners)),
            Event::ConsResult(i, ok) => {
                let input = if ok { cons_app::Input::Connected } else { cons_app::Input::ConnectFailed };
                self.step_cons(i, input);
            }
            Event::Crash(node, down_ms) => self.crash(node, down_ms),
            Event::Restart(node) => self.restart(node),
            Event::LeaseCheck(node, uid) => self.observe(node, Some(uid)),
        }
    }

    fn release(&mut self, i: usize) {
        let p = &self.plans[i];
        let (client, uid) = (p.client, p.uid);
        let Some(c) = &self.clients[client as usize] else { return };
        if c.session(&uid).is_some_and(|s| !s.state().is_terminal()) {
            self.note(|| format!("s2uc#{client} release {}", short(uid)));
            self.step_client(client, s2uc::Input::Release(uid));
        }
    }

    fn deliver(&mut self, from: Peer, to: Peer, wire: Wire) {
        let msg = match wire {
            Wire::Intact(m) => *m,
            Wire::Damaged(frame) => match net::unframe(&frame) {
                Ok(m) => m,
                Err(e) => {
                    self.reached.insert(Reach::CorruptionDetected);
                    self.note(|| format!("{to} drops frame from {from}: {e}"));
                    return;
                }
            },
        };
        self.note(|| format!("{to} <- {from} {}", describe(&msg)));
        match to {
            Peer::Client(n) => self.step_client(n, s2uc::Input::Msg { from, msg }),
            Peer::ControlServer(r) => {
                let forge = matches!(from, Peer::Client(_) | Peer::App(_))
                    && self.sc.workload.forge > 0.0
                    && self.rng.random_bool(self.sc.workload.forge);
                let forged = forge.then(|| self.forge(&msg)).flatten();
                let caller = self.caller_of(r, &msg, false);
                let rel = match &msg {
                    // The identity the token really names, whatever the caller was taken for.
                    Msg::Rel { uid, .. } => Some((*uid, principal_of(&msg))),
                    _ => None,
                };
                let before = rel.as_ref().and_then(|(uid, _)| self.cs_state(r, *uid));
                self.step_cs(r, to, s2cs::Input::Msg { from, caller, msg });
                if let Some((uid, caller)) = rel {
                    self.check_releaser(r, uid, before, caller.as_ref());
                }
                if let Some(f) = forged {
                    self.deliver_forged(r, from, f);
                }
            }
            Peer::DataServer(r, n) => self.step_ds(r, n, s2ds::Input::Msg { from, msg }),
            Peer::App(i) => self.step_app(i, prod_app::Input::Msg { from, msg }),
        }
    }

    /// Sends through the network, applying its semantics and faults.
    fn send(&mut self, from: Peer, to: Peer, msg: Msg) {
        let alive = match to {
            Peer::Client(n) => (n as usize) < self.clients.len(),
            Peer::App(i) => (i as usize) < self.apps.len(),
            _ => true,
        };
        if !alive {
            return; // answers to a forger go to the forger, who is not simulated
        }
        match &msg {
            Msg::AttachAck { held, .. } if !held.is_empty() => {
                self.reached.insert(Reach::BridgesKept);
            }
            Msg::Attach { attachment, .. } if *attachment > 1 => {
                self.reached.insert(Reach::DataServerLost);
            }
            _ => {}
        }
        self.sent += 1;
        if self.sent.is_multiple_of(ROUND_TRIP_EVERY) {
            self.round_trip(from, to, &msg);
        }
        match self.net.send(&mut self.rng, self.now, from, to, &msg) {
            Fate::Lost(why) => self.note(|| format!("{from} -> {to} {} LOST ({why})", msg.name())),
            Fate::Delivered(copies) => {
                // The first copy of a duplicated message is a clone; the last takes the message.
                let (first, again) = match copies.again {
                    Some(again) => ((copies.first, msg.clone()), Some((again, msg))),
                    None => ((copies.first, msg), None),
                };
                for ((at, corrupt), m) in std::iter::once(first).chain(again) {
                    let wire = if corrupt {
                        let mut frame = net::frame(&m);
                        net::corrupt(&mut self.rng, &mut frame);
                        // The same damage to the call as a 1.2 client encodes it: the
                        // production rpc decoder and validation take it without panicking.
                        if let Some(mut wire) = net::rpc_12(&m) {
                            net::corrupt(&mut self.rng, &mut wire);
                            net::decode_rpc_12(&m, &wire);
                        }
                        Wire::Damaged(frame)
                    } else {
                        Wire::Intact(Box::new(m))
                    };
                    self.schedule(at, Event::Deliver { from, to, wire });
                }
            }
        }
    }

    /// The production encoder and decoder give back the message a node sent.
    fn round_trip(&mut self, from: Peer, to: Peer, msg: &Msg) {
        match net::unframe(&net::frame(msg)) {
            Ok(back) if back == *msg => {}
            Ok(back) => self.violate(
                Prop::WireFaithful,
                format!("{from} -> {to}: {} decodes as {}", describe(msg), describe(&back)),
            ),
            Err(e) => self.violate(
                Prop::WireFaithful,
                format!("{from} -> {to}: the production decoder refuses {}: {e}", describe(msg)),
            ),
        }
    }

    fn crash(&mut self, node: Peer, down_ms: u64) {
        self.note(|| format!("{node} CRASHES for {down_ms} ms"));
        self.timers.retain(|(n, _), _| *n != node);
        self.seen.remove(&node);
        match node {
            Peer::Client(n) => {
                if let Some(c) = self.clients[n as usize].take() {
                    self.journals[n as usize] = self.opts.defect.journal(&c);
                }
            }
            Peer::ControlServer(r) => self.cs[nodes::role_index(r)] = None,
            Peer::DataServer(r, n) => {
                let i = self.ds_index(r, n);
                self.ds[i] = None;
                // The process's listeners and connections die with it.
                let uids: BTreeSet<Uid> = std::mem::take(&mut self.os[i]).into_values().collect();
                for uid in uids {
                    self.close_streams(uid);
                }
            }
            Peer::App(i) => self.apps[i as usize] = None,
        }
        self.schedule(self.now + ms(down_ms), Event::Restart(node));
    }

    fn restart(&mut self, node: Peer) {
        self.note(|| format!("{node} RESTARTS"));
        self.reached.insert(Reach::Recovered);
        match node {
            Peer::Client(n) => {
                self.client_incs[n as usize] += 1;
                let cfg = client_cfg(self.sc, self.opts.seed, n, self.client_incs[n as usize]);
                self.clients[n as usize] = Some(s2uc::S2uc::recover(cfg, &self.journals[n as usize]));
                self.step_client(n, s2uc::Input::Recover);
            }
            Peer::ControlServer(r) => {
                let i = nodes::role_index(r);
                self.epochs[i] += 1;
                // It comes back with what its durable store held: the established sessions.
                let records = self.stores[i].values().cloned().collect();
                self.cs[i] = Some(s2cs::ControlServer::recover(
                    cs_cfg(self.sc, &self.config, self.opts.seed, r, self.epochs[i]),
                    self.epochs[i],
                    records,
                ));
                self.step_cs(r, node, s2cs::Input::Boot);
            }
            Peer::DataServer(r, n) => {
                let i = self.ds_index(r, n);
                self.incs[i] += 1;
                self.ds[i] = Some(s2ds::S2ds::new(ds_cfg(self.sc, self.opts.seed, r, n, self.incs[i]), self.incs[i]));
                self.step_ds(r, n, s2ds::Input::Boot);
            }
            Peer::App(i) => {
                // The operator relaunches the controller if it had been launched.
                let launched = self.plans[i as usize].hello_after_ms.is_some();
                if launched {
                    self.schedule(self.now, Event::Hello(i as usize));
                }
            }
        }
    }
}

/// A node's timing: the scenario's profile with a jitter seed of the node's own, drawn from
/// the run's seed, the node and its incarnation (so a restarted node jitters differently).
fn timing_of(sc: &Scenario, seed: u64, node: Peer, incarnation: u64) -> Profile {
    let tag = match node {
        Peer::Client(n) => u64::from(n),
        Peer::ControlServer(r) => 1 << 32 | nodes::role_index(r) as u64,
        Peer::DataServer(r, n) => 2 << 32 | u64::from(n.0) << 8 | nodes::role_index(r) as u64,
        Peer::App(n) => 3 << 32 | u64::from(n),
    };
    sc.timing.profile().seeded(timing::mix(seed ^ timing::mix(tag ^ incarnation << 40)))
}

fn client_cfg(sc: &Scenario, seed: u64, n: u32, incarnation: u64) -> s2uc::Config {
    s2uc::Config { token: Token(format!("tok-user{n}")), timing: timing_of(sc, seed, Peer::Client(n), incarnation) }
}

/// The facilities' configuration one seed runs with (drawn where the scenario leaves it open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Drawn {
    require_app_keys: bool,
    allow_plain_wan: bool,
    operators: bool,
}

/// The operator's client: not simulated (its answers go nowhere).
const OPERATOR: u32 = u32::MAX - 1;

fn cs_cfg(sc: &Scenario, config: &Drawn, seed: u64, r: Role, epoch: u64) -> s2cs::Config {
    s2cs::Config {
        facility: r,
        nodes: sc.nodes,
        max_num_conn: 64,
        timing: timing_of(sc, seed, Peer::ControlServer(r), epoch),
        require_app_keys: config.require_app_keys,
        allow_plain_wan: config.allow_plain_wan,
        capacity: sc.config.capacity,
        default_rate: 0,
        operators: if config.operators { vec![Principal("operator".into())] } else { Vec::new() },
        // Its own control port is never a target; no allow-lists (the simulated hosts are
        // names, which lists do not admit).
        policy: Policy { own: vec![own_addr(r)], ..Policy::default() },
    }
}

/// The simulated control server's own address (documentation ranges): never a target.
pub(crate) fn own_addr(r: Role) -> std::net::SocketAddr {
    match r {
        Role::Prod => std::net::SocketAddr::from(([192, 0, 2, 1], 5000)),
        Role::Cons => std::net::SocketAddr::from(([198, 51, 100, 1], 5000)),
    }
}

fn ds_cfg(sc: &Scenario, seed: u64, r: Role, n: Node, inc: u64) -> s2ds::Config {
    let host = |side: &str| match n {
        Node(0) => format!("{side}.gw-{}", r.as_wire().to_lowercase()),
        Node(n) => format!("{side}.gw{n}-{}", r.as_wire().to_lowercase()),
    };
    s2ds::Config {
        facility: r,
        ports: FIRST_PORT..=FIRST_PORT + (sc.ports - 1),
        advertise: Faces { wan: host("wan"), lan: host("lan") },
        timing: timing_of(sc, seed, Peer::DataServer(r, n), inc),
        capacity: sc.config.node_capacity,
    }
}

fn app_cfg(sc: &Scenario, seed: u64, i: u32) -> prod_app::Config {
    prod_app::Config { timing: timing_of(sc, seed, Peer::App(i), 0) }
}

/// The simulated token introspection: `tok-userN` is user N, `tok-mallory` is a valid
/// identity that owns nothing, `tok-operator` the operator (who may manage every session when
/// the configuration names it), anything else is invalid.
fn principal_of(msg: &Msg) -> Option<Principal> {
    let token = match msg {
        Msg::Req { token, .. }
        | Msg::ReqListeners { token, .. }
        | Msg::Update { token, .. }
        | Msg::Rel { token, .. } => token,
        _ => return None,
    };
    let name = token.0.strip_prefix("tok-")?;
    (name == "mallory" || name == "operator" || name.strip_prefix("user").is_some_and(|n| n.parse::<u32>().is_ok()))
        .then(|| Principal(name.to_string()))
}

fn short(uid: Uid) -> String {
    uid.to_string()[..8].to_string()
}

fn describe(msg: &Msg) -> String {
    match msg {
        Msg::Error { uid, seq, code, .. } => format!("ERROR {} seq {seq} ({code})", short(*uid)),
        Msg::Lstn { uid, ports, .. } => format!("Lstn {} ports {ports:?}", short(*uid)),
        Msg::Attach { epoch, attachment, keep } => format!("Attach epoch {epoch}.{attachment} keep {}", keep.len()),
        Msg::AttachAck { epoch, attachment, inc, held, pool } => {
            format!("AttachAck epoch {epoch}.{attachment} inc {inc} held {} ports {}", held.len(), pool.ports)
        }
        Msg::DsBoot { inc } => format!("DsBoot inc {inc}"),
        m => format!("{} {}", m.name(), m.uid().map(short).unwrap_or_default()),
    }
}
