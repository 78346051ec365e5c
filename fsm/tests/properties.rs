//! Properties of the five cores under arbitrary input sequences, through the public API only.
//!
//! Inputs come from small pools (two or three uids, both roles, a few principals including
//! none, right and wrong keys, every message kind, every timer kind, a clock that only moves
//! forward), weighted towards what each participant really receives, so that sequences reach
//! deep states. The `sometimes_*` tests sample the very same generators and prove they reach
//! every state a core can be in, so the `always` properties are not vacuous.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use scistream_fsm::alphabet::{Alphabet, Machine};
use scistream_fsm::cons_app::{self, ConsApp};
use scistream_fsm::prod_app::{self, ProdApp};
use scistream_fsm::s2cs::{self, ControlServer as S2cs};
use scistream_fsm::s2ds::{self, S2ds};
use scistream_fsm::s2uc::{self, S2uc};
use scistream_fsm::timing::Profile;
use scistream_fsm::{
    Addr, AppKey, Credentials, Effect, ErrorCode, Faces, Instant, Msg, Node, Outbox, Peer, Pool, Principal,
    ProtocolError, Role, SessionParams, TimerKey, TimerKind, Token, Uid, session,
};

/// The control server's boot epoch in every generated case.
const EPOCH: u64 = 2;

/// One generated case: a fresh core and the inputs to feed it, each after a delay (µs).
type Case<C> = (C, Vec<(u64, <C as Core>::Input)>);

/// A (machine, state) pair a core or one of its sessions was seen in.
type Seen = (&'static str, &'static str);

/// What the properties need of a core.
trait Core: Clone + PartialEq + Debug {
    type Input: Clone + Debug;
    fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError>;
    /// The (machine, state) of the core and of each session it holds.
    fn states(&self) -> Vec<Seen>;
    /// Every session it holds, and whether it is finished.
    fn finished(&self) -> BTreeMap<Uid, bool>;
}

fn seen<M: Machine>(state: M::S) -> Seen {
    (M::NAME, state.name())
}

impl Core for S2ds {
    type Input = s2ds::Input;
    fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        self.handle(now, input, out)
    }
    fn states(&self) -> Vec<Seen> {
        self.sessions().values().map(|s| seen::<s2ds::Declaration>(s.state())).collect()
    }
    fn finished(&self) -> BTreeMap<Uid, bool> {
        self.sessions().iter().map(|(u, s)| (*u, s.state().is_terminal())).collect()
    }
}

impl Core for S2cs {
    type Input = s2cs::Input;
    fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        self.handle(now, input, out)
    }
    fn states(&self) -> Vec<Seen> {
        let sessions = self.sessions().values().map(|s| seen::<session::Declaration>(s.state()));
        std::iter::once(seen::<s2cs::Declaration>(self.state())).chain(sessions).collect()
    }
    fn finished(&self) -> BTreeMap<Uid, bool> {
        self.sessions().iter().map(|(u, s)| (*u, s.state().is_terminal())).collect()
    }
}

impl Core for S2uc {
    type Input = s2uc::Input;
    fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        self.handle(now, input, out)
    }
    fn states(&self) -> Vec<Seen> {
        self.sessions().values().map(|s| seen::<s2uc::Declaration>(s.state())).collect()
    }
    fn finished(&self) -> BTreeMap<Uid, bool> {
        self.sessions().iter().map(|(u, s)| (*u, s.state().is_terminal())).collect()
    }
}

impl Core for ProdApp {
    type Input = prod_app::Input;
    fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        self.handle(now, input, out)
    }
    fn states(&self) -> Vec<Seen> {
        vec![seen::<prod_app::Declaration>(self.state())]
    }
    fn finished(&self) -> BTreeMap<Uid, bool> {
        BTreeMap::from([(Uid::from_u128(0), self.state() == prod_app::State::Failed)])
    }
}

impl Core for ConsApp {
    type Input = cons_app::Input;
    fn step(&mut self, _now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        self.handle(input, out)
    }
    fn states(&self) -> Vec<Seen> {
        vec![seen::<cons_app::Declaration>(self.state())]
    }
    fn finished(&self) -> BTreeMap<Uid, bool> {
        let done = matches!(self.state(), cons_app::State::Done | cons_app::State::Failed);
        BTreeMap::from([(Uid::from_u128(0), done)])
    }
}

/// Feeds `inputs` to `core`, the clock moving forward by each delay; `check` sees the core
/// before and after every step, the input, its result and the effects it asked for.
fn drive<C: Core>(
    core: &mut C,
    inputs: &[(u64, C::Input)],
    mut check: impl FnMut(&C, &C, &C::Input, &Result<(), ProtocolError>, &Outbox) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut now = Instant::ZERO;
    for (delay, input) in inputs {
        now = now + Duration::from_micros(*delay);
        let before = core.clone();
        let mut out = Outbox::new();
        let result = core.step(now, input.clone(), &mut out);
        check(&before, core, input, &result, &out)?;
    }
    Ok(())
}

fn never_panics<C: Core>((mut core, inputs): Case<C>) -> Result<(), TestCaseError> {
    drive(&mut core, &inputs, |_, _, _, _, _| Ok(()))
}

fn rejected_input_leaves_core_unchanged<C: Core>((mut core, inputs): Case<C>) -> Result<(), TestCaseError> {
    drive(&mut core, &inputs, |before, after, input, result, _| {
        if let Err(e) = result {
            prop_assert_eq!(after, before, "refused {:?} ({}) changed the core", input, e);
        }
        Ok(())
    })
}

fn finished_sessions_stay_finished<C: Core>((mut core, inputs): Case<C>) -> Result<(), TestCaseError> {
    drive(&mut core, &inputs, |before, after, input, _, _| {
        let after = after.finished();
        for (uid, done) in before.finished() {
            if done && let Some(still) = after.get(&uid) {
                prop_assert!(*still, "{:?} brought finished session {} back to life", input, uid);
            }
        }
        Ok(())
    })
}

/// Samples `runs` cases of `strategy` deterministically; returns every (machine, state) seen.
fn reached<C: Core>(strategy: impl Strategy<Value = Case<C>>, runs: usize) -> BTreeSet<Seen> {
    let mut runner = TestRunner::deterministic();
    let mut all = BTreeSet::new();
    for _ in 0..runs {
        let (mut core, inputs) = strategy.new_tree(&mut runner).expect("the generator generates").current();
        all.extend(core.states());
        let _ = drive(&mut core, &inputs, |_, after, _, _, _| {
            all.extend(after.states());
            Ok(())
        });
    }
    all
}

/// Every state of machine `M` but those listed in `never_held` (a core never stores a
/// session in its machine's initial state).
fn states_of<M: Machine>(never_held: &[M::S]) -> BTreeSet<Seen> {
    M::S::ALL.iter().filter(|s| !never_held.contains(s)).map(|s| seen::<M>(*s)).collect()
}

#[track_caller]
fn assert_reaches(seen: &BTreeSet<Seen>, expected: BTreeSet<Seen>) {
    let missing: Vec<_> = expected.difference(seen).collect();
    assert!(missing.is_empty(), "the generator never reaches {missing:?}");
}

// ----- pools -----

fn uid() -> impl Strategy<Value = Uid> + Clone {
    (1u128..=2).prop_map(Uid::from_u128)
}

fn seq() -> impl Strategy<Value = u32> + Clone {
    // Mostly a phase's, sometimes a Hello's or an admission probe's the client said.
    prop_oneof![
        8 => 0u32..=4,
        1 => (1u32..=3).prop_map(|n| s2uc::HELLO_SEQ | n),
        1 => (1u32..=3).prop_map(|n| s2uc::PROBE_SEQ | n),
    ]
}

fn delay() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..1_000_000, 1 => 1_000_000u64..200_000_000]
}

fn role() -> impl Strategy<Value = Role> + Clone {
    select(Role::ALL.to_vec())
}

fn code() -> impl Strategy<Value = ErrorCode> + Clone {
    select(ErrorCode::ALL.to_vec())
}

fn timer_key() -> impl Strategy<Value = TimerKey> {
    let kind = select(vec![TimerKind::Retransmit, TimerKind::Lease, TimerKind::Deadline, TimerKind::Tombstone]);
    (prop_oneof![1 => Just(None), 4 => uid().prop_map(Some)], kind).prop_map(|(uid, kind)| TimerKey { uid, kind })
}

fn addrs() -> impl Strategy<Value = Vec<Addr>> + Clone {
    let a = Addr::new("10.0.0.1", 7000);
    let b = Addr::new("10.0.0.1", 7001);
    select(vec![vec![], vec![a.clone()], vec![a, b]])
}

fn ports() -> impl Strategy<Value = Vec<u16>> + Clone {
    select(vec![vec![], vec![5000], vec![5000, 5001], vec![5002, 5003]])
}

fn app_key() -> impl Strategy<Value = AppKey> + Clone {
    select(vec![AppKey([1; 16]), AppKey([2; 16]), AppKey::default()])
}

fn creds() -> impl Strategy<Value = Credentials> + Clone {
    select(vec![Credentials([1; 32]), Credentials([2; 32])])
}

fn token() -> Token {
    Token("tok".to_owned())
}

fn principal() -> impl Strategy<Value = Option<Principal>> {
    let named = |n: &str| Just(Some(Principal(n.to_owned())));
    prop_oneof![1 => Just(None), 4 => named("alice"), 1 => named("bob")]
}

fn any_peer() -> impl Strategy<Value = Peer> {
    select(vec![
        Peer::Client(1),
        Peer::ControlServer(Role::Prod),
        Peer::ControlServer(Role::Cons),
        Peer::DataServer(Role::Prod, Node(0)),
        Peer::DataServer(Role::Cons, Node(0)),
        Peer::DataServer(Role::Prod, Node(1)),
        Peer::App(1),
    ])
}

fn inc() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![6 => Just(1u64), 1 => Just(2u64)]
}

fn epoch() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![6 => Just(EPOCH), 1 => Just(EPOCH - 1), 1 => Just(EPOCH + 1)]
}

fn params() -> impl Strategy<Value = SessionParams> + Clone {
    let num_conn = prop_oneof![1 => Just(0u16), 6 => 1u16..=2, 1 => Just(3u16)];
    (role(), num_conn, prop_oneof![3 => Just(0u32), 1 => Just(100u32)])
        .prop_map(|(role, num_conn, rate)| SessionParams { role, num_conn, rate })
}

fn req() -> impl Strategy<Value = Msg> {
    (uid(), seq(), params(), app_key()).prop_map(|(uid, seq, params, key)| Msg::Req {
        uid,
        seq,
        token: token(),
        params,
        key,
    })
}

fn req_listeners() -> impl Strategy<Value = Msg> {
    (uid(), seq()).prop_map(|(uid, seq)| Msg::ReqListeners { uid, seq, token: token() })
}

fn update() -> impl Strategy<Value = Msg> {
    (uid(), seq(), addrs(), creds()).prop_map(|(uid, seq, remote, creds)| Msg::Update {
        uid,
        seq,
        token: token(),
        remote,
        creds,
    })
}

fn rel() -> impl Strategy<Value = Msg> {
    (uid(), seq()).prop_map(|(uid, seq)| Msg::Rel { uid, seq, token: token() })
}

fn hello() -> impl Strategy<Value = Msg> {
    (uid(), seq(), app_key(), addrs()).prop_map(|(uid, seq, key, prod_listeners)| Msg::Hello {
        uid,
        seq,
        key,
        prod_listeners,
    })
}

/// What a control server hears from its data server.
fn ds_up_msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        1 => inc().prop_map(|inc| Msg::DsBoot { inc }),
        2 => (epoch(), inc(), 0u32..8, prop::option::of(0u64..20_000)).prop_map(|(epoch, inc, ports, capacity)| {
            Msg::AttachAck { epoch, attachment: 1, inc, held: vec![], pool: Pool { ports, capacity } }
        }),
        4 => (uid(), inc(), ports()).prop_map(|(uid, inc, ports)| Msg::Lstn { uid, inc, host: "gw.prod".into(), ports }),
        1 => (uid(), inc(), code()).prop_map(|(uid, inc, code)| Msg::Refused { uid, inc, code }),
        3 => (uid(), inc()).prop_map(|(uid, inc)| Msg::Connected { uid, inc }),
        3 => (uid(), inc()).prop_map(|(uid, inc)| Msg::DsReleased { uid, inc }),
    ]
}

/// What a data server hears from its control server.
fn cs_down_msg(uid: impl Strategy<Value = Uid> + Clone + 'static) -> impl Strategy<Value = Msg> {
    prop_oneof![
        1 => epoch().prop_map(|epoch| Msg::Attach { epoch, attachment: 1, keep: vec![] }),
        4 => (uid.clone(), epoch(), 0u16..=3, role())
            .prop_map(|(uid, epoch, num_conn, role)| Msg::StartLstn { uid, epoch, num_conn, role }),
        3 => (uid.clone(), epoch(), addrs(), creds(), role(), 0u32..=30_000)
            .prop_map(|(uid, epoch, targets, creds, role, rate)| Msg::StartConn { uid, epoch, targets, creds, role, rate }),
        2 => (uid, epoch()).prop_map(|(uid, epoch)| Msg::DsRel { uid, epoch }),
    ]
}

/// What a user client hears from a control server.
fn cs_answer() -> impl Strategy<Value = Msg> {
    // A RESP rarely carries the producer's listeners already, so the poll phase is reached.
    let prod_listeners = prop_oneof![3 => Just(vec![]), 1 => addrs()];
    prop_oneof![
        4 => (uid(), seq(), addrs(), prod_listeners)
            .prop_map(|(uid, seq, listeners, prod_listeners)| Msg::Resp { uid, seq, listeners, prod_listeners }),
        2 => (uid(), seq(), addrs(), addrs())
            .prop_map(|(uid, seq, listeners, prod_listeners)| Msg::ProdLstn { uid, seq, listeners, prod_listeners }),
        3 => (uid(), seq()).prop_map(|(uid, seq)| Msg::Updated { uid, seq }),
        3 => (uid(), seq()).prop_map(|(uid, seq)| Msg::Released { uid, seq }),
        1 => (uid(), seq(), code()).prop_map(|(uid, seq, code)| Msg::Error { uid, seq, code, why: scistream_fsm::Why::Unspecified }),
    ]
}

/// Any message of the protocol, of every kind.
fn any_msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        req(),
        req_listeners(),
        update(),
        rel(),
        hello(),
        cs_answer(),
        (uid(), seq(), addrs()).prop_map(|(uid, seq, listeners)| Msg::HelloAck { uid, seq, listeners }),
        ds_up_msg(),
        cs_down_msg(uid()),
    ]
}

// ----- one generator per core -----

/// The production timing with a 60 s Hello and a drawn jitter seed.
fn timing() -> impl Strategy<Value = Profile> {
    any::<u64>()
        .prop_map(|seed| Profile { hello_timeout: Duration::from_secs(60), ..Profile::production() }.seeded(seed))
}

fn s2ds_case() -> impl Strategy<Value = Case<S2ds>> {
    let cs = Peer::ControlServer(Role::Prod);
    let uid3 = || (1u128..=3).prop_map(Uid::from_u128);
    // Mostly the pool's ports (a port held elsewhere), rarely one outside it (a confused driver).
    let port = prop_oneof![8 => 5000u16..=5003, 1 => Just(5004u16)];
    let input = prop_oneof![
        1 => Just(s2ds::Input::Boot),
        3 => timer_key().prop_map(s2ds::Input::Timer),
        4 => uid3().prop_map(s2ds::Input::Bound),
        2 => (uid3(), port).prop_map(|(uid, port)| s2ds::Input::BindFailed { uid, port }),
        2 => uid3().prop_map(s2ds::Input::BridgesUp),
        1 => (uid3(), code()).prop_map(|(uid, code)| s2ds::Input::BridgesFailed { uid, code }),
        1 => uid3().prop_map(s2ds::Input::SessionLost),
        10 => cs_down_msg(uid3()).prop_map(move |msg| s2ds::Input::Msg { from: cs, msg }),
        1 => (any_peer(), any_msg()).prop_map(|(from, msg)| s2ds::Input::Msg { from, msg }),
    ];
    (timing(), prop::collection::vec((delay(), input), 0..80)).prop_map(|(timing, inputs)| {
        let advertise = Faces { wan: "wan.prod".to_owned(), lan: "lan.prod".to_owned() };
        let cfg = s2ds::Config { facility: Role::Prod, ports: 5000..=5003, advertise, timing, capacity: None };
        (S2ds::new(cfg, 1), inputs)
    })
}

fn s2cs_case() -> impl Strategy<Value = Case<S2cs>> {
    (role(), any::<bool>(), timing()).prop_flat_map(|(facility, require_app_keys, timing)| {
        let ds = Peer::DataServer(facility, Node(0));
        let client = select(vec![Peer::Client(1), Peer::Client(2)]);
        let input = prop_oneof![
            1 => Just(s2cs::Input::Boot),
            4 => timer_key().prop_map(s2cs::Input::Timer),
            3 => (client.clone(), principal(), req()).prop_map(|(from, caller, msg)| s2cs::Input::Msg { from, caller, msg }),
            4 => (client, principal(), prop_oneof![1 => req_listeners(), 2 => update(), 1 => rel()])
                .prop_map(|(from, caller, msg)| s2cs::Input::Msg { from, caller, msg }),
            2 => hello().prop_map(|msg| s2cs::Input::Msg { from: Peer::App(1), caller: None, msg }),
            8 => ds_up_msg().prop_map(move |msg| s2cs::Input::Msg { from: ds, caller: None, msg }),
            1 => (any_peer(), principal(), any_msg()).prop_map(|(from, caller, msg)| s2cs::Input::Msg { from, caller, msg }),
        ];
        let cfg = s2cs::Config {
            facility,
            nodes: 1,
            max_num_conn: 2,
            timing,
            require_app_keys,
            allow_plain_wan: require_app_keys,
            capacity: None,
            default_rate: 0,
            operators: Vec::new(),
            policy: Default::default(),
        };
        (Just(S2cs::new(cfg, EPOCH)), prop::collection::vec((delay(), input), 0..80))
    })
}

/// Every kind of plan: both facilities, the producer's alone (saying its Hello or not), the
/// consumer's alone (saying a Hello or not).
fn plan() -> impl Strategy<Value = s2uc::Plan> {
    prop_oneof![
        3 => Just(s2uc::Plan::both()),
        1 => prop::option::of(addrs()).prop_map(s2uc::Plan::producer),
        1 => (addrs(), any::<bool>()).prop_map(|(remote, hello)| s2uc::Plan::consumer(remote, hello)),
    ]
}

/// Session 1's happy path at a client, up to established: random answers rarely match a
/// session's num_conn on both sides, so cases start with a prefix of this path.
fn s2uc_happy_path() -> Vec<s2uc::Input> {
    let u = Uid::from_u128(1);
    let gw = |host: &str| vec![Addr::new(host, 5000), Addr::new(host, 5001)];
    let answer = |role, msg| s2uc::Input::Msg { from: Peer::ControlServer(role), msg };
    vec![
        s2uc::Input::Start {
            uid: u,
            num_conn: 2,
            rate: 0,
            key: AppKey([1; 16]),
            creds: Credentials([1; 32]),
            plan: s2uc::Plan::both(),
        },
        answer(
            Role::Prod,
            Msg::ProdLstn { uid: u, seq: s2uc::PROBE_SEQ | 1, listeners: gw("p"), prod_listeners: vec![] },
        ),
        answer(Role::Prod, Msg::Resp { uid: u, seq: 1, listeners: gw("p"), prod_listeners: vec![] }),
        answer(Role::Cons, Msg::Resp { uid: u, seq: 1, listeners: gw("c"), prod_listeners: vec![] }),
        answer(Role::Prod, Msg::ProdLstn { uid: u, seq: 2, listeners: gw("p"), prod_listeners: gw("app") }),
        answer(Role::Prod, Msg::Updated { uid: u, seq: 3 }),
        answer(Role::Cons, Msg::Updated { uid: u, seq: 3 }),
    ]
}

fn s2uc_case() -> impl Strategy<Value = Case<S2uc>> {
    let input = prop_oneof![
        2 => (uid(), 1u16..=2, app_key(), creds(), plan())
            .prop_map(|(uid, num_conn, key, creds, plan)| s2uc::Input::Start { uid, num_conn, rate: 0, key, creds, plan }),
        1 => uid().prop_map(s2uc::Input::Release),
        1 => Just(s2uc::Input::Recover),
        3 => timer_key().prop_map(s2uc::Input::Timer),
        12 => (role(), cs_answer()).prop_map(|(role, msg)| s2uc::Input::Msg { from: Peer::ControlServer(role), msg }),
        1 => (any_peer(), any_msg()).prop_map(|(from, msg)| s2uc::Input::Msg { from, msg }),
    ];
    let cut = 0..=s2uc_happy_path().len();
    (any::<bool>(), timing(), cut, prop::collection::vec((delay(), input), 0..80)).prop_map(
        |(recovered, timing, cut, suffix)| {
            let cfg = s2uc::Config { token: token(), timing };
            let core = if recovered {
                // Session 2 was left unfinished by the crashed client; session 1 is the new one.
                S2uc::recover(cfg, &BTreeSet::from([Uid::from_u128(2)]))
            } else {
                S2uc::new(cfg)
            };
            let prefix = s2uc_happy_path().into_iter().take(cut).map(|input| (1_000, input));
            (core, prefix.chain(suffix).collect())
        },
    )
}

fn prod_app_case() -> impl Strategy<Value = Case<ProdApp>> {
    let answer = prop_oneof![
        2 => (uid(), seq(), addrs()).prop_map(|(uid, seq, listeners)| Msg::HelloAck { uid, seq, listeners }),
        3 => (uid(), seq(), code()).prop_map(|(uid, seq, code)| Msg::Error { uid, seq, code, why: scistream_fsm::Why::Unspecified }),
    ];
    let server = prop_oneof![6 => Just(Peer::ControlServer(Role::Prod)), 1 => Just(Peer::ControlServer(Role::Cons))];
    let input = prop_oneof![
        2 => (uid(), app_key(), addrs())
            .prop_map(|(uid, key, prod_listeners)| prod_app::Input::Start { uid, key, prod_listeners }),
        3 => timer_key().prop_map(prod_app::Input::Timer),
        6 => (server, answer).prop_map(|(from, msg)| prod_app::Input::Msg { from, msg }),
        1 => (any_peer(), any_msg()).prop_map(|(from, msg)| prod_app::Input::Msg { from, msg }),
    ];
    (timing(), prop::collection::vec((delay(), input), 0..40))
        .prop_map(|(timing, inputs)| (ProdApp::new(prod_app::Config { timing }), inputs))
}

fn cons_app_case() -> impl Strategy<Value = Case<ConsApp>> {
    let input = prop_oneof![
        addrs().prop_map(cons_app::Input::Listeners),
        Just(cons_app::Input::Connected),
        Just(cons_app::Input::ConnectFailed),
        Just(cons_app::Input::Closed),
    ];
    (uid(), prop::collection::vec((delay(), input), 0..20)).prop_map(|(uid, inputs)| (ConsApp::new(uid), inputs))
}

// ----- always -----

proptest! {
    #[test]
    fn s2ds_never_panics_on_arbitrary_inputs(case in s2ds_case()) {
        never_panics(case)?;
    }

    #[test]
    fn s2ds_rejected_input_leaves_core_unchanged(case in s2ds_case()) {
        rejected_input_leaves_core_unchanged(case)?;
    }

    #[test]
    fn s2ds_finished_sessions_stay_finished(case in s2ds_case()) {
        finished_sessions_stay_finished(case)?;
    }

    #[test]
    fn s2ds_free_busy_and_live_sessions_ports_partition_the_pool(case in s2ds_case()) {
        let (mut ds, inputs) = case;
        let pool: BTreeSet<u16> = (5000..=5003).collect();
        drive(&mut ds, &inputs, |before, ds, input, _, _| {
            let mut held = BTreeSet::new();
            for (uid, s) in ds.sessions().iter().filter(|(_, s)| !s.state().is_terminal()) {
                for p in &s.ports {
                    prop_assert!(held.insert(*p), "after {:?}: port {} lent twice (to {})", input, p, uid);
                }
            }
            let (free, busy) = (ds.free_ports(), ds.busy_ports());
            prop_assert!(held.is_disjoint(free), "after {:?}: a held port is free", input);
            prop_assert!(held.is_disjoint(busy), "after {:?}: a busy port is held", input);
            prop_assert!(free.is_disjoint(busy), "after {:?}: a busy port is free", input);
            prop_assert!(before.busy_ports().is_subset(busy), "after {:?}: a busy port came back", input);
            let all: BTreeSet<u16> = held.iter().chain(free).chain(busy).copied().collect();
            prop_assert_eq!(all, pool.clone(), "after {:?}: ports lost", input);
            Ok(())
        })?;
    }

    #[test]
    fn s2ds_never_listens_on_a_busy_port(case in s2ds_case()) {
        let (mut ds, inputs) = case;
        drive(&mut ds, &inputs, |_, ds, input, _, out| {
            for e in out {
                if let Effect::Listen { ports, .. } = e {
                    prop_assert!(ports.iter().all(|p| !ds.busy_ports().contains(p)), "{:?} listens on a busy port: {:?}", input, e);
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn s2ds_sends_lstn_only_for_bound_ports(case in s2ds_case()) {
        let (mut ds, inputs) = case;
        drive(&mut ds, &inputs, |before, after, input, _, out| {
            for e in out {
                let Effect::Send { msg: Msg::Lstn { uid, ports, .. }, .. } = e else { continue };
                let s = &after.sessions()[uid];
                prop_assert!(
                    matches!(s.state(), s2ds::State::Reserving | s2ds::State::Updating | s2ds::State::Bridging),
                    "{:?} answered Lstn for a session in {:?}", input, s.state()
                );
                prop_assert_eq!(ports, &s.ports, "{:?} answered other ports than the session's", input);
                // The ports of a Lstn were bound: by this very input, or before it.
                let was_bound = before.sessions().get(uid).is_some_and(|b| b.state() != s2ds::State::Binding);
                prop_assert!(was_bound || *input == s2ds::Input::Bound(*uid), "{:?} answered Lstn before Bound", input);
            }
            Ok(())
        })?;
    }

    #[test]
    fn s2cs_never_panics_on_arbitrary_inputs(case in s2cs_case()) {
        never_panics(case)?;
    }

    #[test]
    fn s2cs_rejected_input_leaves_core_unchanged(case in s2cs_case()) {
        rejected_input_leaves_core_unchanged(case)?;
    }

    #[test]
    fn s2cs_finished_sessions_stay_finished(case in s2cs_case()) {
        finished_sessions_stay_finished(case)?;
    }

    #[test]
    fn s2cs_sessions_never_change_owner_params_or_key(case in s2cs_case()) {
        let (mut cs, inputs) = case;
        drive(&mut cs, &inputs, |before, after, input, _, _| {
            // The registry's record and the session's own core alike.
            for (uid, b) in before.core().sessions() {
                if let Some(a) = after.core().session(uid) {
                    prop_assert!(
                        a.owner == b.owner && a.params == b.params && a.key == b.key,
                        "{:?} rewrote session {}", input, uid
                    );
                }
            }
            for (uid, b) in before.sessions() {
                if let Some(a) = after.session(uid) {
                    prop_assert!(a.owner() == b.owner() && a.params() == b.params(), "{:?} rewrote session {}", input, uid);
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn s2uc_never_panics_on_arbitrary_inputs(case in s2uc_case()) {
        never_panics(case)?;
    }

    #[test]
    fn s2uc_rejected_input_leaves_core_unchanged(case in s2uc_case()) {
        rejected_input_leaves_core_unchanged(case)?;
    }

    #[test]
    fn s2uc_finished_sessions_stay_finished(case in s2uc_case()) {
        finished_sessions_stay_finished(case)?;
    }

    #[test]
    fn prod_app_never_panics_on_arbitrary_inputs(case in prod_app_case()) {
        never_panics(case)?;
    }

    #[test]
    fn prod_app_rejected_input_leaves_core_unchanged(case in prod_app_case()) {
        rejected_input_leaves_core_unchanged(case)?;
    }

    #[test]
    fn cons_app_never_panics_on_arbitrary_inputs(case in cons_app_case()) {
        never_panics(case)?;
    }

    #[test]
    fn cons_app_rejected_input_leaves_core_unchanged(case in cons_app_case()) {
        rejected_input_leaves_core_unchanged(case)?;
    }
}

// ----- sometimes: the generators reach every state -----
//
// S2DS, S2CS and the controllers get there from arbitrary inputs alone; S2UC from a prefix of
// its happy path (cut anywhere) followed by arbitrary inputs.

#[test]
fn sometimes_s2ds_sessions_reach_every_state() {
    let expected = states_of::<s2ds::Declaration>(&[s2ds::State::Idle]);
    assert_reaches(&reached(s2ds_case(), 256), expected);
}

/// Every (from, to) pair of distinct states the declaration of `M` has a transition for.
fn moves_of<M: Machine>() -> BTreeSet<Seen> {
    let mut moves = BTreeSet::new();
    for state in M::S::ALL {
        for input in M::I::ALL {
            if let Some(next) = M::transition(state, input)
                && next != *state
            {
                moves.insert((state.name(), next.name()));
            }
        }
    }
    moves
}

/// What a session that stays Binding but holds other ports did: it bound afresh.
const REBOUND: Seen = ("Binding", "Binding with fresh ports");

#[test]
fn sometimes_s2ds_sessions_take_every_declared_move_and_rebind() {
    let strategy = s2ds_case();
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    for _ in 0..1024 {
        let (mut ds, inputs) = strategy.new_tree(&mut runner).expect("the generator generates").current();
        let _ = drive(&mut ds, &inputs, |before, after, _, _, _| {
            for (uid, a) in after.sessions() {
                let b = before.sessions().get(uid);
                let from = b.map_or(s2ds::State::Idle, |b| b.state());
                if from != a.state() {
                    seen.insert((from.name(), a.state().name()));
                } else if from == s2ds::State::Binding && b.is_some_and(|b| b.ports != a.ports) {
                    seen.insert(REBOUND);
                }
            }
            Ok(())
        });
    }
    let mut expected = moves_of::<s2ds::Declaration>();
    expected.insert(REBOUND);
    assert_reaches(&seen, expected);
}

#[test]
fn sometimes_s2cs_and_its_sessions_reach_every_state() {
    let mut expected = states_of::<s2cs::Declaration>(&[]);
    expected.extend(states_of::<session::Declaration>(&[session::State::Idle]));
    assert_reaches(&reached(s2cs_case(), 1024), expected);
}

#[test]
fn sometimes_s2uc_sessions_reach_every_state() {
    assert_reaches(&reached(s2uc_case(), 256), states_of::<s2uc::Declaration>(&[]));
}

#[test]
fn sometimes_prod_app_reaches_every_state() {
    assert_reaches(&reached(prod_app_case(), 256), states_of::<prod_app::Declaration>(&[]));
}

#[test]
fn sometimes_cons_app_reaches_every_state() {
    assert_reaches(&reached(cons_app_case(), 256), states_of::<cons_app::Declaration>(&[]));
}
