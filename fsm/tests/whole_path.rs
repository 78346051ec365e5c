//! Every core wired to every other through the public API, on virtual time with an ordered
//! network that may drop messages: the session is established, streams, and its release
//! returns every port on both sides. (The simulator explores faults; this checks the cores
//! compose at all.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use scistream_fsm::cons_app::{self, ConsApp};
use scistream_fsm::prod_app::{self, ProdApp};
use scistream_fsm::s2cs::{self, ControlServer as S2cs};
use scistream_fsm::s2ds::{self, S2ds};
use scistream_fsm::s2uc::{self, S2uc};
use scistream_fsm::timing::Profile;
use scistream_fsm::{
    Addr, AppKey, Credentials, Effect, ErrorCode, Faces, Instant, Msg, Notice, Outbox, Peer, Principal, Role, TimerKey,
    Token, Uid, session,
};

const UID: Uid = Uid::from_u128(42);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Client,
    Control(Role),
    Data(Role),
    Producer,
    /// The consumer application: no messages, only effects.
    Consumer,
}

impl Node {
    /// How the others name this node.
    fn peer(self) -> Peer {
        match self {
            Self::Client => Peer::Client(1),
            Self::Control(r) => Peer::ControlServer(r),
            Self::Data(r) => Peer::DataServer(r, scistream_fsm::Node(0)),
            Self::Producer | Self::Consumer => Peer::App(1),
        }
    }

    fn of(peer: Peer) -> Self {
        match peer {
            Peer::Client(_) => Self::Client,
            Peer::ControlServer(r) => Self::Control(r),
            Peer::DataServer(r, _) => Self::Data(r),
            Peer::App(_) => Self::Producer,
        }
    }
}

fn idx(role: Role) -> usize {
    match role {
        Role::Prod => 0,
        Role::Cons => 1,
    }
}

fn app_listeners() -> Vec<Addr> {
    vec![Addr::new("10.1.0.5", 7000), Addr::new("10.1.0.5", 7001)]
}

/// Decides whether the network loses a message (from, to, message).
type Loss = Box<dyn FnMut(Peer, Peer, &Msg) -> bool>;

struct World {
    now: Instant,
    client: S2uc,
    control: [S2cs; 2],
    data: [S2ds; 2],
    producer: ProdApp,
    consumer: ConsApp,
    network: VecDeque<(Node, Peer, Msg)>,
    timers: BTreeMap<(Node, TimerKey), Instant>,
    notices: Vec<(Node, Notice)>,
    loss: Loss,
    /// Per data server, the ports another process holds: binding them fails.
    foreign: [BTreeSet<u16>; 2],
}

impl World {
    fn new(loss: Loss) -> Self {
        // One profile for every participant, as the binaries use: a 60 s Hello (the control
        // servers' lease), data-server leases 30 s longer, 200 ms backoffs without jitter.
        let backoff = scistream_fsm::timing::Backoff::default();
        let timing = Profile {
            hello_timeout: Duration::from_secs(60),
            tombstone: Duration::from_secs(120),
            server_backoff: backoff,
            client_backoff: backoff,
            app_backoff: backoff,
            ..Profile::production()
        };
        let control = |facility| {
            let cfg = s2cs::Config {
                facility,
                nodes: 1,
                max_num_conn: 4,
                timing,
                require_app_keys: false,
                allow_plain_wan: false,
                capacity: None,
                default_rate: 0,
                operators: Vec::new(),
                policy: Default::default(),
            };
            S2cs::new(cfg, 1)
        };
        let data = |facility, host: &str, base: u16| {
            let advertise = Faces::both(host.to_owned());
            let cfg = s2ds::Config { facility, ports: base..=base + 3, advertise, timing, capacity: None };
            S2ds::new(cfg, 1)
        };
        let client = s2uc::Config { token: Token("tok".to_owned()), timing };
        let mut world = Self {
            now: Instant::ZERO,
            client: S2uc::new(client),
            control: [control(Role::Prod), control(Role::Cons)],
            data: [data(Role::Prod, "gw.prod", 5000), data(Role::Cons, "gw.cons", 6000)],
            producer: ProdApp::new(prod_app::Config { timing }),
            consumer: ConsApp::new(UID),
            network: VecDeque::new(),
            timers: BTreeMap::new(),
            notices: Vec::new(),
            loss,
            foreign: [BTreeSet::new(), BTreeSet::new()],
        };
        for role in Role::ALL {
            world.data_input(role, s2ds::Input::Boot);
            world.control_input(role, s2cs::Input::Boot);
        }
        world
    }

    fn client_input(&mut self, input: s2uc::Input) {
        let mut out = Outbox::new();
        let _ = self.client.handle(self.now, input, &mut out);
        self.apply(Node::Client, out);
    }

    fn control_input(&mut self, role: Role, input: s2cs::Input) {
        let mut out = Outbox::new();
        let _ = self.control[idx(role)].handle(self.now, input, &mut out);
        self.apply(Node::Control(role), out);
    }

    fn data_input(&mut self, role: Role, input: s2ds::Input) {
        let mut out = Outbox::new();
        let _ = self.data[idx(role)].handle(self.now, input, &mut out);
        self.apply(Node::Data(role), out);
    }

    fn producer_input(&mut self, input: prod_app::Input) {
        let mut out = Outbox::new();
        let _ = self.producer.handle(self.now, input, &mut out);
        self.apply(Node::Producer, out);
    }

    fn consumer_input(&mut self, input: cons_app::Input) {
        let mut out = Outbox::new();
        let _ = self.consumer.handle(input, &mut out);
        self.apply(Node::Consumer, out);
    }

    /// Carries out what `node` asked for; listeners bind (unless another process holds the
    /// port), bridges and channels come up at once, and the outcome is reported at once.
    fn apply(&mut self, node: Node, out: Outbox) {
        for effect in out {
            match effect {
                Effect::Send { to, msg } => {
                    if !(self.loss)(node.peer(), to, &msg) {
                        self.network.push_back((Node::of(to), node.peer(), msg));
                    }
                }
                Effect::SetTimer { key, at } => {
                    self.timers.insert((node, key), at);
                }
                Effect::CancelTimer { key } => {
                    self.timers.remove(&(node, key));
                }
                Effect::Listen { uid, ports, .. } => {
                    let Node::Data(role) = node else { panic!("{node:?} binds ports") };
                    let outcome = match ports.iter().find(|p| self.foreign[idx(role)].contains(p)) {
                        Some(&port) => s2ds::Input::BindFailed { uid, port },
                        None => s2ds::Input::Bound(uid),
                    };
                    self.data_input(role, outcome);
                }
                Effect::Unlisten { .. } | Effect::Persist(_) | Effect::Unpersist { .. } | Effect::Audit(_) => {}
                Effect::StartBridges { uid, .. } => {
                    let Node::Data(role) = node else { panic!("{node:?} starts bridges") };
                    self.data_input(role, s2ds::Input::BridgesUp(uid));
                }
                Effect::Connect { .. } => self.consumer_input(cons_app::Input::Connected),
                Effect::Notify(notice) => {
                    match &notice {
                        Notice::Created { uid, key } => self.producer_input(prod_app::Input::Start {
                            uid: *uid,
                            key: *key,
                            prod_listeners: app_listeners(),
                        }),
                        Notice::Established { cons_listeners, .. } => {
                            self.consumer_input(cons_app::Input::Listeners(cons_listeners.clone()))
                        }
                        _ => {}
                    }
                    self.notices.push((node, notice));
                }
                Effect::Spawn(_) | Effect::ToSession { .. } | Effect::Report { .. } | Effect::Retire { .. } => {
                    panic!("{node:?} leaked an effect between a control server's cores: {effect:?}")
                }
            }
        }
    }

    /// Delivers the next message, or else fires the earliest timer. False when nothing is left.
    fn tick(&mut self) -> bool {
        if let Some((to, from, msg)) = self.network.pop_front() {
            match to {
                Node::Client => self.client_input(s2uc::Input::Msg { from, msg }),
                Node::Control(role) => {
                    let caller = matches!(from, Peer::Client(_)).then(|| Principal("alice".to_owned()));
                    self.control_input(role, s2cs::Input::Msg { from, caller, msg })
                }
                Node::Data(role) => self.data_input(role, s2ds::Input::Msg { from, msg }),
                Node::Producer => self.producer_input(prod_app::Input::Msg { from, msg }),
                Node::Consumer => unreachable!("nobody sends to the consumer"),
            }
            return true;
        }
        let Some((&(node, key), &at)) = self.timers.iter().min_by_key(|(_, at)| **at) else { return false };
        self.timers.remove(&(node, key));
        self.now = self.now.max(at);
        match node {
            Node::Client => self.client_input(s2uc::Input::Timer(key)),
            Node::Control(role) => self.control_input(role, s2cs::Input::Timer(key)),
            Node::Data(role) => self.data_input(role, s2ds::Input::Timer(key)),
            Node::Producer => self.producer_input(prod_app::Input::Timer(key)),
            Node::Consumer => unreachable!("the consumer sets no timer"),
        }
        true
    }

    /// Runs until `done` holds; a bounded number of steps turns a livelock into a failure.
    fn run_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        for _ in 0..10_000 {
            if done(self) {
                return;
            }
            assert!(self.tick(), "stuck before {what} at {}; notices {:?}", self.now, self.notices);
        }
        panic!("no {what} within 10000 steps (at {}); notices {:?}", self.now, self.notices);
    }

    /// Whether the client told the user something `f` accepts.
    fn noticed(&self, f: impl Fn(&Notice) -> bool) -> bool {
        self.notices.iter().any(|(node, n)| *node == Node::Client && f(n))
    }

    fn start(&mut self) {
        let start = s2uc::Input::Start {
            uid: UID,
            num_conn: 2,
            rate: 0,
            key: AppKey([7; 16]),
            creds: Credentials([9; 32]),
            plan: s2uc::Plan::both(),
        };
        self.client_input(start);
    }

    /// Whether the client told the user how the session ended.
    fn over(&self) -> bool {
        self.noticed(|n| matches!(n, Notice::Released { .. } | Notice::Failed { .. }))
    }

    /// Whether `role`'s data server has every port back in its pool but those it found held by
    /// another process.
    fn pool_returned(&self, role: Role) -> bool {
        let ds = &self.data[idx(role)];
        ds.busy_ports().is_subset(&self.foreign[idx(role)]) && ds.free_ports().len() + ds.busy_ports().len() == 4
    }

    /// Whether both facilities hold nothing more of the session.
    fn all_returned(&self) -> bool {
        Role::ALL.into_iter().all(|r| {
            self.pool_returned(r) && self.control[idx(r)].session(&UID).is_none_or(|s| s.state().is_terminal())
        })
    }

    /// Establishes the session, whose producer-side gateway must listen on `prod_ports`, lets it
    /// stream and releases it.
    fn establish_stream_and_release(&mut self, prod_ports: [u16; 2]) {
        self.start();
        self.run_until("Established", |w| w.noticed(|n| matches!(n, Notice::Established { .. })));
        self.run_until("Streaming", |w| w.consumer.state() == cons_app::State::Streaming);
        // The HelloAck may still be on its way (or lost and awaiting the next Hello).
        self.run_until("producer Ready", |w| w.producer.state() != prod_app::State::Greeting);
        assert_eq!(self.producer.state(), prod_app::State::Ready);
        let prod_gateway: Vec<Addr> = prod_ports.iter().map(|p| Addr::new("gw.prod", *p)).collect();
        assert_eq!(self.producer.listeners(), prod_gateway);
        let bridged = |w: &Self, r: Role| w.data[idx(r)].sessions()[&UID].state() == s2ds::State::Bridging;
        assert!(Role::ALL.into_iter().all(|r| bridged(self, r)));
        for role in Role::ALL {
            let s = self.control[idx(role)].session(&UID).expect("held");
            assert_eq!(s.state(), session::State::Established, "{role}");
        }
        let (prod_targets, cons_targets) = (&self.data[0].sessions()[&UID], &self.data[1].sessions()[&UID]);
        assert_eq!(prod_targets.ports, prod_ports);
        assert_eq!(prod_targets.bridge, Some((app_listeners(), Credentials([9; 32]))));
        assert_eq!(cons_targets.bridge, Some((prod_gateway, Credentials([9; 32]))));

        self.client_input(s2uc::Input::Release(UID));
        self.run_until("Released", |w| w.noticed(|n| *n == Notice::Released { uid: UID }));
        for role in Role::ALL {
            assert_eq!(self.control[idx(role)].session(&UID).unwrap().state(), session::State::Released);
            assert!(self.pool_returned(role), "{role}: ports not returned: {:?}", self.data[idx(role)].free_ports());
        }
        assert!(!self.notices.iter().any(|(_, n)| matches!(n, Notice::Failed { .. })), "{:?}", self.notices);
    }
}

#[test]
fn a_session_is_established_streams_and_its_release_returns_every_port() {
    let mut world = World::new(Box::new(|_, _, _| false));
    world.establish_stream_and_release([5000, 5001]);
}

#[test]
fn the_first_copy_of_every_message_lost_still_establishes_and_releases() {
    let mut seen = BTreeMap::<(Peer, Peer, &'static str), u32>::new();
    let mut world = World::new(Box::new(move |from, to, msg| {
        let n = seen.entry((from, to, msg.name())).or_default();
        *n += 1;
        *n == 1
    }));
    world.establish_stream_and_release([5000, 5001]);
}

#[test]
fn a_port_another_process_holds_is_set_aside_and_the_session_establishes_on_fresh_ports() {
    let mut world = World::new(Box::new(|_, _, _| false));
    world.foreign[idx(Role::Prod)] = BTreeSet::from([5000]);
    world.establish_stream_and_release([5001, 5002]);
    assert_eq!(*world.data[idx(Role::Prod)].busy_ports(), BTreeSet::from([5000]));
    assert!(world.data[idx(Role::Cons)].busy_ports().is_empty());
}

#[test]
fn ports_other_processes_hold_exhaust_the_pool_and_the_session_fails_returning_every_port() {
    let mut world = World::new(Box::new(|_, _, _| false));
    world.foreign[idx(Role::Prod)] = BTreeSet::from([5000, 5001, 5002]);
    world.start();
    world.run_until("the end", World::over);
    assert!(
        world.noticed(|n| *n == Notice::Failed { uid: UID, code: ErrorCode::ResourceExhausted }),
        "{:?}",
        world.notices
    );
    world.run_until("every port returned", World::all_returned);
    assert_eq!(*world.data[idx(Role::Prod)].busy_ports(), BTreeSet::from([5000, 5001, 5002]));
    assert_eq!(*world.data[idx(Role::Prod)].free_ports(), BTreeSet::from([5003]));
}

/// Loses each message with probability `percent`/100, drawn from a xorshift generator seeded
/// with `seed` (a periodic pattern would lock step with the equal backoffs and never let the
/// same retransmission through).
fn random_loss(seed: u64, percent: u64) -> Loss {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Box::new(move |_, _, _| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 100 < percent
    })
}

#[test]
fn a_third_of_all_messages_lost_at_random_still_establishes_and_releases() {
    for seed in 1..=32 {
        let mut world = World::new(random_loss(seed, 33));
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.establish_stream_and_release([5000, 5001])));
        assert!(result.is_ok(), "seed {seed} failed");
    }
}

#[test]
fn half_of_all_messages_lost_every_session_still_ends_and_returns_its_ports() {
    for seed in 1..=64 {
        let mut world = World::new(random_loss(seed, 50));
        world.start();
        world.run_until("Established or the end", |w| {
            w.over() || w.noticed(|n| matches!(n, Notice::Established { .. }))
        });
        if !world.over() {
            world.client_input(s2uc::Input::Release(UID));
        }
        world.run_until("the end", World::over);
        world.run_until("every port returned", World::all_returned);
        world.run_until("the producer stops saying Hello", |w| w.producer.state() != prod_app::State::Greeting);
    }
}
