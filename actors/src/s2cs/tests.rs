//! The actor tree driven as the gRPC layer drives it, with real listeners on loopback and
//! tokio's clock paused (timers advance only when the test says so, or when all is idle).

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef};
use scistream_fsm::timing::Profile;
use scistream_fsm::{
    Addr, AppKey, Credentials, ErrorCode, Faces, Msg, Peer, Principal, Role, SessionParams, Token, Uid, s2cs, s2ds,
};
use scistream_transport::server::{Backend, Call, Query};
use tokio::sync::oneshot;

use super::{ActorBackend, DataServerSite, S2csActor, S2csArgs, S2csMsg};

const LEASE: Duration = Duration::from_secs(20);

/// A range of `n` free ports for this test process and test (`salt`). An s2ds needs a
/// contiguous range, which the OS does not hand out, so it is drawn below the kernel's
/// ephemeral ports (32768 and up, where client connections take theirs) and every port of it
/// is checked bindable; a busy block is skipped for the next one.
fn ports(salt: u16, n: u16) -> std::ops::RangeInclusive<u16> {
    const LOW: u32 = 20_000;
    const BLOCKS: u32 = 120; // of 100 ports: 20000..32000
    let first = (std::process::id() + u32::from(salt) * 7) % BLOCKS;
    for i in 0..BLOCKS {
        let base = (LOW + (first + i) % BLOCKS * 100 + u32::from(salt) * 10) as u16;
        let range = base..=base + n - 1;
        if range.clone().all(|p| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()) {
            return range;
        }
    }
    panic!("no {n} free contiguous ports below the ephemeral range");
}

async fn start(salt: u16) -> ActorRef<S2csMsg> {
    let timing = Profile {
        hello_timeout: LEASE,
        ds_lease_margin: Duration::from_secs(10),
        tombstone: Duration::from_secs(60),
        ..Profile::production()
    };
    let args = S2csArgs {
        cs: s2cs::Config {
            facility: Role::Prod,
            nodes: 1,
            max_num_conn: 8,
            timing,
            require_app_keys: false,
            allow_plain_wan: false,
            capacity: None,
            default_rate: 0,
            operators: Vec::new(),
            policy: Default::default(),
        },
        epoch: 1,
        ds: DataServerSite::Embedded {
            cfg: Box::new(s2ds::Config {
                facility: Role::Prod,
                ports: ports(salt, 6),
                advertise: Faces::both("127.0.0.1".into()),
                timing,
                capacity: None,
            }),
            bind: Faces::both(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            backend: std::sync::Arc::new(scistream_transport::backend::native::Native),
        },
        store: None,
        recovered: Vec::new(),
        metrics: None,
        audit: None,
    };
    let (actor, _) = Actor::spawn(None, S2csActor, args).await.expect("actor starts");
    assert!(ActorBackend(actor.clone()).ready().await, "attached to its data server");
    actor
}

fn alice() -> Option<Principal> {
    Some(Principal("alice".into()))
}

/// Submits `msg` as call `n` and returns the receiver of its answers.
fn call(actor: &ActorRef<S2csMsg>, n: u32, msg: Msg) -> oneshot::Receiver<Msg> {
    let (answers, rx) = oneshot::channel();
    let from = if matches!(msg, Msg::Hello { .. }) { Peer::App(n) } else { Peer::Client(n) };
    let caller = if matches!(msg, Msg::Hello { .. }) { None } else { alice() };
    assert!(ActorBackend(actor.clone()).submit(Call { from, caller, msg, answers, remote: None }));
    rx
}

async fn answer(rx: &mut oneshot::Receiver<Msg>) -> Msg {
    tokio::time::timeout(Duration::from_secs(60), rx).await.expect("an answer in time").expect("open")
}

fn req(uid: Uid, role: Role) -> Msg {
    let params = SessionParams { role, num_conn: 2, rate: 0 };
    Msg::Req { uid, seq: 1, token: Token::default(), params, key: AppKey([1; 16]) }
}

/// UpdateTargets of `uid` towards `remote`, with credentials made of the byte `c` (0: none).
fn update(uid: Uid, seq: u32, remote: &[Addr], c: u8) -> Msg {
    Msg::Update { uid, seq, token: Token::default(), remote: remote.to_vec(), creds: Credentials([c; 32]) }
}

fn is_listening(addr: &Addr) -> bool {
    TcpStream::connect((addr.host.as_str(), addr.port)).is_ok()
}

async fn listeners_of(actor: &ActorRef<S2csMsg>, n: u32, uid: Uid, role: Role) -> Vec<Addr> {
    let mut rx = call(actor, n, req(uid, role));
    match answer(&mut rx).await {
        Msg::Resp { listeners, .. } => listeners,
        other => panic!("expected RESP, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_binds_real_listeners_and_release_closes_them() {
    let actor = start(0).await;
    let uid = Uid::from_u128(1);
    let listeners = listeners_of(&actor, 1, uid, Role::Cons).await;
    assert_eq!(listeners.len(), 2);
    assert!(listeners.iter().all(is_listening), "{listeners:?} not bound");
    let mut rx = call(&actor, 2, Msg::Rel { uid, seq: 2, token: Token::default() });
    assert!(matches!(answer(&mut rx).await, Msg::Released { .. }));
    assert!(!listeners.iter().any(is_listening), "{listeners:?} still bound after REL");
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hello_that_never_comes_expires_with_deadline_exceeded_and_frees_the_ports() {
    let actor = start(1).await;
    let uid = Uid::from_u128(2);
    let mut rx = call(&actor, 1, req(uid, Role::Prod));
    // The listeners are reserved, but a producer's REQ is answered only with its Hello, which
    // never comes.
    let listeners = bound_listeners(&actor, uid).await;
    assert!(listeners.iter().all(is_listening));
    assert!(rx.try_recv().is_err(), "a producer's REQ answered before its Hello");
    tokio::time::advance(LEASE).await;
    match answer(&mut rx).await {
        Msg::Error { code, .. } => assert_eq!(code, ErrorCode::DeadlineExceeded),
        other => panic!("expected ERROR, got {other:?}"),
    }
    // The release reaches the data server and its listeners close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!listeners.iter().any(is_listening), "ports still bound after the lease");
    actor.stop_and_wait(None, None).await.unwrap();
}

/// The session's listeners as the control server's status shows them, once reserved.
async fn bound_listeners(actor: &ActorRef<S2csMsg>, uid: Uid) -> Vec<Addr> {
    for _ in 0..100 {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let caller = Principal("alice".into());
        assert!(ActorBackend(actor.clone()).query(Query::Status { caller, uid, reply }));
        if let Ok(Ok(v)) = rx.await
            && !v.listeners.is_empty()
        {
            return v.listeners;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session {uid} never reserved its listeners");
}

/// The embedded data server: the control server's first child.
fn data_server(actor: &ActorRef<S2csMsg>) -> ActorCell {
    actor.get_children().into_iter().min_by_key(|c| c.get_id().pid()).expect("embedded data server")
}

/// The relay actors: the data server's children.
fn relays(actor: &ActorRef<S2csMsg>) -> Vec<ActorCell> {
    data_server(actor).get_children()
}

/// The session actors: the control server's children but its data server.
fn session_actors(actor: &ActorRef<S2csMsg>) -> Vec<ActorCell> {
    let ds = data_server(actor).get_id();
    actor.get_children().into_iter().filter(|c| c.get_id() != ds).collect()
}

#[tokio::test(start_paused = true)]
async fn a_dying_relay_actor_fails_only_its_session_and_the_server_keeps_serving() {
    let actor = start(2).await;
    let (a, b) = (Uid::from_u128(10), Uid::from_u128(11));
    let la = listeners_of(&actor, 1, a, Role::Cons).await;
    let lb = listeners_of(&actor, 2, b, Role::Cons).await;
    // A session waiting for its bridges holds only its listeners; a relay runs once they start.
    assert!(relays(&actor).is_empty(), "relays before any bridge");
    assert!(matches!(answer(&mut call(&actor, 3, update(a, 3, &la, 2))).await, Msg::Updated { .. }));
    let victim = relays(&actor);
    assert_eq!(victim.len(), 1);
    victim[0].kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!la.iter().any(is_listening), "the dead relay's listeners are closed");
    // Its session failed at the control server too: an UpdateTargets now gets an ERROR.
    let mut again = call(&actor, 4, update(a, 4, &la, 2));
    assert!(matches!(answer(&mut again).await, Msg::Error { code: ErrorCode::Aborted, .. }), "session a did not fail");
    // b is untouched and still goes through its whole life; the server takes new sessions.
    assert!(lb.iter().all(is_listening));
    assert!(matches!(answer(&mut call(&actor, 5, update(b, 5, &lb, 3))).await, Msg::Updated { .. }));
    let lc = listeners_of(&actor, 6, Uid::from_u128(12), Role::Cons).await;
    assert!(lc.iter().all(is_listening));
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_dying_data_server_is_restarted_its_sessions_fail_and_new_ones_work() {
    let actor = start(3).await;
    let uid = Uid::from_u128(20);
    let listeners = listeners_of(&actor, 1, uid, Role::Cons).await;
    data_server(&actor).kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!listeners.iter().any(is_listening), "listeners died with the data server");
    // The old session is failed: an update is refused.
    let mut up = call(&actor, 2, update(uid, 2, &listeners, 4));
    assert!(matches!(answer(&mut up).await, Msg::Error { .. }));
    // A new data server took over: a new session binds real listeners.
    let fresh = listeners_of(&actor, 3, Uid::from_u128(21), Role::Cons).await;
    assert!(fresh.iter().all(is_listening));
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stopping_the_control_server_closes_every_listener() {
    let actor = start(4).await;
    let l1 = listeners_of(&actor, 1, Uid::from_u128(30), Role::Cons).await;
    let l2 = listeners_of(&actor, 2, Uid::from_u128(31), Role::Cons).await;
    actor.stop_and_wait(None, None).await.unwrap();
    assert!(!l1.iter().chain(&l2).any(is_listening));
}

#[tokio::test(start_paused = true)]
async fn a_dying_session_actor_releases_its_ports_and_the_server_keeps_serving() {
    let actor = start(5).await;
    let (a, b) = (Uid::from_u128(40), Uid::from_u128(41));
    let la = listeners_of(&actor, 1, a, Role::Cons).await;
    let lb = listeners_of(&actor, 2, b, Role::Cons).await;
    let sessions = session_actors(&actor);
    assert_eq!(sessions.len(), 2, "one session actor per session");
    // Kill a's session actor (spawned first): its core is gone, so the control server
    // releases what the data server held for it and forgets it.
    sessions.iter().min_by_key(|c| c.get_id().pid()).expect("two").kill();
    for _ in 0..100 {
        if !la.iter().any(is_listening) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!la.iter().any(is_listening), "the lost session's ports are released");
    let mut rel = call(&actor, 3, Msg::Rel { uid: a, seq: 3, token: Token::default() });
    assert!(matches!(answer(&mut rel).await, Msg::Error { code: ErrorCode::NotFound, .. }));
    // b goes on; new sessions are served.
    assert!(lb.iter().all(is_listening));
    let mut up = call(&actor, 4, update(b, 4, &lb, 3));
    assert!(matches!(answer(&mut up).await, Msg::Updated { .. }));
    let lc = listeners_of(&actor, 5, Uid::from_u128(42), Role::Cons).await;
    assert!(lc.iter().all(is_listening));
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn update_targets_without_credentials_is_refused_failed_precondition_by_default() {
    let actor = start(6).await;
    let uid = Uid::from_u128(50);
    let l = listeners_of(&actor, 1, uid, Role::Cons).await;
    // No credentials (a 1.2 client) and plain WAN legs not allowed: the core refuses first.
    let mut up = call(&actor, 2, update(uid, 2, &l, 0));
    assert!(matches!(answer(&mut up).await, Msg::Error { code: ErrorCode::FailedPrecondition, .. }));
    actor.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_relay_answers_once_it_forwards_or_says_why_it_cannot() {
    use crate::relay::{RelayActor, RelayArgs, RelayMsg};
    use ractor::rpc::CallResult;
    let start = |ports: Vec<u16>| RelayArgs {
        uid: Uid::from_u128(60),
        listeners: crate::relay::bind_all(IpAddr::V4(Ipv4Addr::LOCALHOST), &ports).expect("binds"),
        counters: Default::default(),
        allow_plain_wan: false,
        backend: std::sync::Arc::new(scistream_transport::backend::native::Native),
    };
    let bridges = |relay: ActorRef<RelayMsg>, targets: Vec<Addr>, creds| async move {
        let asked = relay.call(|reply| RelayMsg::Bridges { targets, creds, role: Role::Cons, rate: 0, reply }, None);
        match asked.await.expect("relay alive") {
            CallResult::Success(r) => r,
            other => panic!("no answer: {other:?}"),
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = vec![Addr::new("127.0.0.1", port)];
    let (relay, _) = Actor::spawn(None, RelayActor, start(vec![0])).await.expect("binds");
    // No credentials and plain WAN legs not allowed here: refused, with the reason.
    assert_eq!(
        bridges(relay.clone(), target.clone(), Credentials::default()).await,
        Err(ErrorCode::FailedPrecondition)
    );
    assert_eq!(bridges(relay.clone(), Vec::new(), Credentials([7; 32])).await, Err(ErrorCode::InvalidArgument));
    // With the session's credentials it forwards, and says so once it does (again: still so).
    assert_eq!(bridges(relay.clone(), target.clone(), Credentials([7; 32])).await, Ok(()));
    assert_eq!(bridges(relay.clone(), target, Credentials([7; 32])).await, Ok(()));
    relay.stop_and_wait(None, None).await.unwrap();
}

/// A backend that records the rate each session is started with and forwards nothing.
struct RecordsRate(std::sync::Mutex<Vec<Option<u64>>>);

impl scistream_transport::backend::Backend for RecordsRate {
    fn kind(&self) -> scistream_transport::backend::Kind {
        scistream_transport::backend::Kind::Native
    }

    fn start(
        &self,
        session: scistream_transport::backend::Session,
    ) -> scistream_transport::backend::BoxFuture<
        '_,
        Result<Box<dyn scistream_transport::backend::Forwarding>, scistream_transport::backend::StartError>,
    > {
        self.0.lock().unwrap().push(session.rate);
        Box::pin(async { Err(scistream_transport::backend::StartError::Unsupported("records only".into())) })
    }
}

#[tokio::test]
async fn a_sessions_rate_is_in_kilobytes_per_second_so_20000_reaches_the_backend_as_20_mb_per_second() {
    use crate::relay::{RelayActor, RelayArgs, RelayMsg};
    use ractor::rpc::CallResult;
    let backend = std::sync::Arc::new(RecordsRate(std::sync::Mutex::default()));
    let target = vec![Addr::new("127.0.0.1", 9)];
    for rate in [20_000, 0] {
        let args = RelayArgs {
            uid: Uid::from_u128(61),
            listeners: crate::relay::bind_all(IpAddr::V4(Ipv4Addr::LOCALHOST), &[0]).expect("binds"),
            counters: Default::default(),
            allow_plain_wan: false,
            backend: backend.clone(),
        };
        let (relay, _) = Actor::spawn(None, RelayActor, args).await.expect("binds");
        let (targets, creds) = (target.clone(), Credentials([7; 32]));
        let asked = relay.call(|reply| RelayMsg::Bridges { targets, creds, role: Role::Prod, rate, reply }, None);
        let CallResult::Success(answer) = asked.await.expect("relay alive") else { panic!("no answer") };
        assert_eq!(answer, Err(ErrorCode::FailedPrecondition), "the recording backend refuses every start");
        relay.stop_and_wait(None, None).await.unwrap();
    }
    // SciStream 1.2's unit (docs/data-plane.md, "Rate"): --rate 20000 is 20 MB/s; 0 is unlimited.
    assert_eq!(*backend.0.lock().unwrap(), vec![Some(20_000_000), None]);
}
