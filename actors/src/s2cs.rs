//! The S2CS actor: hosts the control server's core (admission, placement, ownership, the
//! registry of sessions), supervises one [`SessionActor`] per session (hosting that session's
//! core), and reaches its data servers: an embedded one, which it restarts under a new
//! incarnation if it dies, or one or more nodes on the facility's LAN, each through a
//! [`NodeLink`] (mutual TLS) that redials by itself. The core numbers the nodes ([`Node`]) in
//! the order they were given; the actor names them by address (`embedded` for the embedded
//! one) for the store and for status.
//!
//! It decides nothing: a gRPC call becomes the core's input; the core's effects are carried
//! out — an ERROR to the caller, a message for the data server, a session spawned, fed or
//! retired — and a session's requests upward come back as the core's inputs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use scistream_fsm::alphabet::Alphabet;
use scistream_fsm::s2cs::Record;
use scistream_fsm::{Effect, Faces, Msg, Node, Peer, ProtocolError, TimerKey, Uid, s2cs, s2ds, session};
use scistream_proto::Limits;
use scistream_proto::convert::SessionTraffic;
use scistream_transport::node::{Inbound, LinkTls, NodeLink, TrafficSeen};
use scistream_transport::server::{Backend, Call, Query, SessionView};
use scistream_transport::store::SessionStore;
use tokio::sync::oneshot;

use crate::driver::Driver;
use crate::metrics::{self, CodeLabel, CsMetrics, StateLabel};
use crate::s2ds::{S2dsActor, S2dsArgs, S2dsMsg, TrafficBook};
use crate::session::{Answer, SessionActor, SessionArgs, SessionMsg, Upward};

/// Messages to the S2CS actor.
#[derive(Debug)]
pub enum S2csMsg {
    /// A gRPC call.
    Call(Call),
    /// A gRPC query.
    Query(Query),
    /// A message from a data-server node.
    FromDs(Node, Msg),
    /// What a session asks of its control server.
    Up(Upward),
    /// A core timer fired.
    Timer(TimerKey, u64),
    /// Answer once the control server is attached to its data server and serves requests.
    WhenReady(oneshot::Sender<()>),
    /// A session's actor could not be started: the session is lost.
    Lost(Uid),
    /// Set the metrics' gauges from the state now, then answer.
    Refresh(oneshot::Sender<()>),
    /// Drain: admit no new session (the core's [`s2cs::Input::Drain`]).
    Drain,
    /// New capacity, default rate, operators and policy (the core's
    /// [`s2cs::Input::Reconfigure`]).
    Reconfigure(Option<u64>, u32, Vec<scistream_fsm::Principal>, Box<scistream_fsm::policy::Policy>),
    /// Whether it serves (a data server attached), and how many sessions hold resources.
    Health(oneshot::Sender<Serving>),
}

/// What a control server says of itself for its health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// A data server (node) is attached: requests can be served.
    pub attached: bool,
    /// It drains.
    pub draining: bool,
    /// Sessions holding (or about to hold) ports and capacity.
    pub holding: usize,
}

/// What the S2CS actor starts with.
#[derive(Debug)]
pub struct S2csArgs {
    /// The control server core's configuration.
    pub cs: s2cs::Config,
    /// Its boot epoch (must grow across restarts).
    pub epoch: u64,
    /// Where its data server runs.
    pub ds: DataServerSite,
    /// Its durable store of established sessions, if it keeps one.
    pub store: Option<Arc<SessionStore>>,
    /// What the store held at start: sessions to host again.
    pub recovered: Vec<Record>,
    /// Where it counts what happens, if anywhere.
    pub metrics: Option<CsMetrics>,
    /// Where its audit trail goes (`None`: nowhere).
    pub audit: Option<Arc<crate::audit::AuditSink>>,
}

/// Where a control server's data server runs.
#[derive(Debug, Clone)]
pub enum DataServerSite {
    /// In this process.
    Embedded {
        /// Its core's configuration.
        cfg: Box<s2ds::Config>,
        /// Where it binds its listeners, per side they face.
        bind: Faces<IpAddr>,
        /// What forwards its sessions (`--type`).
        backend: Arc<dyn scistream_transport::backend::Backend>,
    },
    /// On gateway nodes of the facility's LAN (`s2ds` daemons), at least one.
    Remote {
        /// Their link addresses, `host:port`, in order ([`Node`] indexes them).
        addrs: Vec<String>,
        /// This control server's certificate and the certificates it trusts for the nodes.
        tls: LinkTls,
    },
}

impl DataServerSite {
    /// The names of its nodes, in order: their addresses, or `embedded`.
    pub fn node_names(&self) -> Vec<String> {
        match self {
            Self::Embedded { .. } => vec![EMBEDDED.to_owned()],
            Self::Remote { addrs, .. } => addrs.clone(),
        }
    }
}

/// The name of the data server inside `s2cs`, in the store and in status.
pub const EMBEDDED: &str = "embedded";

/// The data servers a control server talks to.
enum Ds {
    Embedded { actor: ActorRef<S2dsMsg>, args: Box<S2dsArgs> },
    Remote(Vec<RemoteNode>),
}

/// A node on the LAN: its link, and its sessions' traffic as it last reported it.
struct RemoteNode {
    link: NodeLink,
    seen: TrafficSeen,
}

/// The S2CS actor's state.
pub struct S2csState {
    driver: Driver<s2cs::S2cs, S2csMsg>,
    sessions: BTreeMap<Uid, ActorRef<SessionMsg>>,
    ds: Ds,
    /// Each session's traffic, as the embedded data server counts it (a node's stays on the
    /// node: empty then).
    traffic: TrafficBook,
    store: Option<Arc<SessionStore>>,
    /// The nodes' names, indexed by [`Node`].
    names: Vec<String>,
    ready: Vec<oneshot::Sender<()>>,
    metrics: Option<CsMetrics>,
    /// When each session still setting up was admitted (for the setup latency).
    born: BTreeMap<Uid, std::time::Instant>,
    audit: Option<Arc<crate::audit::AuditSink>>,
}

/// The control server actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct S2csActor;

/// The gRPC layer's view of the actor.
#[derive(Debug, Clone)]
pub struct ActorBackend(pub ActorRef<S2csMsg>);

impl ActorBackend {
    /// Resolves once the control server serves requests (attached to its data server).
    pub async fn ready(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.0.send_message(S2csMsg::WhenReady(tx)).is_ok() && rx.await.is_ok()
    }

    /// Stops admitting new sessions; the ones held go on. `false` once it stopped.
    pub fn drain(&self) -> bool {
        self.0.send_message(S2csMsg::Drain).is_ok()
    }

    /// Takes a new capacity, default rate, operators and policy for what it admits from now on.
    pub fn reconfigure(
        &self,
        capacity: Option<u64>,
        default_rate: u32,
        operators: Vec<scistream_fsm::Principal>,
        policy: scistream_fsm::policy::Policy,
    ) -> bool {
        self.0.send_message(S2csMsg::Reconfigure(capacity, default_rate, operators, Box::new(policy))).is_ok()
    }

    /// What it says of itself now; `None` once it stopped.
    pub async fn health(&self) -> Option<Serving> {
        let (tx, rx) = oneshot::channel();
        self.0.send_message(S2csMsg::Health(tx)).ok()?;
        rx.await.ok()
    }

    /// Sets the metrics' gauges from the control server's state now; `false` once it stopped.
    pub async fn refresh(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.0.send_message(S2csMsg::Refresh(tx)).is_ok() && rx.await.is_ok()
    }
}

impl Backend for ActorBackend {
    fn submit(&self, call: Call) -> bool {
        self.0.send_message(S2csMsg::Call(call)).is_ok()
    }

    fn query(&self, query: Query) -> bool {
        self.0.send_message(S2csMsg::Query(query)).is_ok()
    }
}

impl S2csActor {
    /// Steps the core and carries out its effects. `answer` is the answer channel of the call
    /// `input` carries, if any, with the caller's network address (for the audit records): it
    /// goes with the call to its session, or gets the core's ERROR.
    async fn step(
        myself: &ActorRef<S2csMsg>,
        st: &mut S2csState,
        input: s2cs::Input,
        mut answer: Option<(Peer, Answer, Option<std::net::SocketAddr>)>,
    ) -> Result<(), ActorProcessingErr> {
        // The call's network address, for its audit records (its answer is taken below).
        let remote = answer.as_ref().and_then(|(peer, _, addr)| addr.map(|a| (*peer, a)));
        let held = st.driver.core().sessions().len();
        let out = st.driver.step(myself, input);
        if st.driver.core().sessions().len() < held {
            // The core forgot sessions (tombstones, lost actors): forget their traffic and
            // their setup clocks too.
            let core = st.driver.core();
            st.born.retain(|uid, _| core.session(uid).is_some());
            let mut book = st.traffic.lock().unwrap_or_else(|e| e.into_inner());
            book.retain(|uid, _| core.session(uid).is_some());
            if let Ds::Remote(nodes) = &st.ds {
                for n in nodes {
                    n.seen.lock().unwrap_or_else(|e| e.into_inner()).retain(|uid, _| core.session(uid).is_some());
                }
            }
        }
        for eff in out {
            match eff {
                Effect::Send { to: Peer::DataServer(_, node), msg } => Self::to_ds(st, node, msg),
                Effect::Send { to, msg } => {
                    if let Some((_, tx, _)) = answer.take_if(|(peer, ..)| *peer == to) {
                        let _ = tx.send(msg);
                    }
                }
                Effect::Spawn(core) => {
                    let uid = core.uid();
                    st.born.insert(uid, std::time::Instant::now());
                    let me = myself.clone();
                    let up = Arc::new(move |u| {
                        let _ = me.send_message(S2csMsg::Up(u));
                    });
                    match Actor::spawn_linked(None, SessionActor, SessionArgs { core, up }, myself.get_cell()).await {
                        Ok((session, _)) => {
                            st.sessions.insert(uid, session);
                        }
                        Err(e) => {
                            // The server keeps serving; the core forgets the session it admitted.
                            tracing::error!(%uid, "cannot start the session's actor: {e}");
                            let _ = myself.send_message(S2csMsg::Lost(uid));
                        }
                    }
                }
                Effect::ToSession { uid, input } => {
                    let tx = match &input {
                        session::Input::Call { from, .. } => {
                            answer.take_if(|(peer, ..)| peer == from).map(|(_, tx, _)| tx)
                        }
                        _ => None,
                    };
                    match st.sessions.get(&uid) {
                        Some(s) => {
                            let _ = s.send_message(SessionMsg::Input(input, tx));
                        }
                        None => tracing::warn!(%uid, "no actor for a session the core routes to"),
                    }
                }
                Effect::Retire { uid } => {
                    if let Some(s) = st.sessions.remove(&uid) {
                        s.stop(Some("forgotten".into()));
                    }
                }
                Effect::Persist(record) => {
                    if let Some(store) = &st.store {
                        store.put(&record);
                    }
                }
                Effect::Unpersist { uid } => {
                    if let Some(store) = &st.store {
                        store.remove(uid);
                    }
                }
                Effect::Audit(a) => {
                    if let Some(sink) = &st.audit {
                        let peer = remote.filter(|(p, _)| Some(*p) == a.from).map(|(_, addr)| addr);
                        sink.write(&a, peer);
                    }
                }
                other => tracing::debug!("control server effect not for it: {other:?}"),
            }
        }
        Ok(())
    }

    fn to_ds(st: &S2csState, node: Node, msg: Msg) {
        match &st.ds {
            Ds::Embedded { actor, .. } => {
                if actor.send_message(S2dsMsg::FromCs(msg)).is_err() {
                    tracing::warn!("data server gone; its restart will re-attach");
                }
            }
            Ds::Remote(nodes) => match nodes.get(node.index()) {
                Some(n) => {
                    if !n.link.send(msg) {
                        tracing::warn!(node = %n.link.addr(), "link to the data server congested; a message is dropped");
                    }
                }
                None => tracing::error!(%node, "a message for a node this control server does not have"),
            },
        }
    }

    fn answer(st: &S2csState, query: Query) {
        let book = st.traffic.lock().unwrap_or_else(|e| e.into_inner());
        // A session's counters come from its own node only: a node cannot speak for another's.
        let traffic = |v: &s2cs::View| {
            let counted = match &st.ds {
                Ds::Embedded { .. } => book.get(&v.uid).map(|c| SessionTraffic::from(&c.snapshot())),
                Ds::Remote(nodes) => nodes
                    .get(v.node.index())
                    .and_then(|n| n.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&v.uid).cloned()),
            };
            counted.unwrap_or_default()
        };
        let name = |v: &s2cs::View| st.names.get(v.node.index()).cloned().unwrap_or_default();
        let core = st.driver.core();
        match query {
            Query::Status { caller, uid, reply } => {
                let _ = reply.send(core.status(&caller, uid).map(|v| view(&v, traffic(&v), name(&v))));
            }
            Query::List { caller, reply } => {
                let _ = reply.send(core.list(&caller).iter().map(|v| view(v, traffic(v), name(v))).collect());
            }
        }
    }

    /// Counts a session's change of state: a setup when it first reaches Established, a
    /// failure by its code.
    fn count(st: &mut S2csState, uid: Uid, before: Option<session::State>, report: &session::Report) {
        let session::Report::State { state, failure, .. } = report else { return };
        let established = *state == session::State::Established;
        // A session is timed from its admission to Established; it is forgotten there or at its end.
        let born = if established || state.is_terminal() { st.born.remove(&uid) } else { None };
        let Some(m) = &st.metrics else { return };
        if established && before != Some(session::State::Established) {
            m.setups.inc();
            if let Some(at) = born {
                m.setup_seconds.observe(at.elapsed().as_secs_f64());
            }
        } else if *state == session::State::Failed {
            let code = failure.map_or_else(|| "aborted".to_owned(), |c| c.to_string());
            m.failures.get_or_create(&CodeLabel { code }).inc();
        }
    }

    /// Sets the gauges: sessions by state, nodes up and down, live sessions' traffic.
    fn refresh(st: &S2csState) {
        let Some(m) = &st.metrics else { return };
        let core = st.driver.core();
        metrics::set_states(
            &m.sessions,
            core.sessions().values().map(|e| e.summary.state.unwrap_or(session::State::Idle).name()),
        );
        let up = core.nodes().iter().filter(|n| n.state() == s2cs::State::Serving).count();
        let down = core.nodes().len() - up;
        for (state, n) in [("up", up), ("down", down)] {
            m.nodes.get_or_create(&StateLabel { state: state.into() }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Ds::Embedded { .. } = &st.ds {
            let book = st.traffic.lock().unwrap_or_else(|e| e.into_inner());
            let live = book.iter().filter(|(uid, _)| core.session(uid).is_some_and(|e| !e.is_terminal()));
            let all: Vec<(String, scistream_transport::relay::Traffic)> =
                live.map(|(uid, c)| (uid.to_string(), c.snapshot())).collect();
            m.traffic.set(all.iter().map(|(u, t)| (u.clone(), t)));
        }
    }

    async fn spawn_ds(myself: &ActorRef<S2csMsg>, args: S2dsArgs) -> Result<ActorRef<S2dsMsg>, ActorProcessingErr> {
        let (ds, _) = Actor::spawn_linked(None, S2dsActor, args, myself.get_cell()).await?;
        Ok(ds)
    }
}

fn view(v: &s2cs::View, traffic: SessionTraffic, node: String) -> SessionView {
    let s = &v.summary;
    SessionView {
        uid: v.uid,
        state: s.state.unwrap_or(session::State::Idle).name().to_string(),
        params: v.params,
        listeners: s.listeners.clone(),
        prod_listeners: s.prod_listeners.clone(),
        targets: s.targets.clone(),
        failure: s.failure,
        traffic,
        owner: v.owner.0.clone(),
        node,
        failure_reason: if s.failure.is_some() { s.why.to_string() } else { String::new() },
    }
}

impl Actor for S2csActor {
    type Msg = S2csMsg;
    type State = S2csState;
    type Arguments = S2csArgs;

    async fn pre_start(&self, myself: ActorRef<S2csMsg>, args: S2csArgs) -> Result<S2csState, ActorProcessingErr> {
        let traffic = TrafficBook::default();
        let names = args.ds.node_names();
        let mut cs = args.cs;
        cs.nodes = u16::try_from(names.len()).map_err(|_| "too many data-server nodes")?;
        if cs.nodes == 0 {
            return Err("no data-server node".into());
        }
        let ds = match args.ds {
            DataServerSite::Embedded { cfg, bind, backend } => {
                let me = myself.clone();
                let args = S2dsArgs {
                    cfg: *cfg,
                    inc: args.epoch,
                    bind,
                    upstream: Arc::new(move |msg| me.send_message(S2csMsg::FromDs(Node(0), msg)).is_ok()),
                    traffic: traffic.clone(),
                    allow_plain_wan: cs.allow_plain_wan,
                    backend,
                };
                Ds::Embedded { actor: Self::spawn_ds(&myself, args.clone()).await?, args: Box::new(args) }
            }
            DataServerSite::Remote { addrs, tls } => {
                let limits = Limits { max_num_conn: cs.max_num_conn };
                let nodes = (0..cs.nodes).zip(addrs).map(|(n, addr)| {
                    let me = myself.clone();
                    let inbound: Inbound = Arc::new(move |msg| me.send_message(S2csMsg::FromDs(Node(n), msg)).is_ok());
                    let seen = TrafficSeen::default();
                    RemoteNode { link: NodeLink::spawn(addr, tls.clone(), inbound, seen.clone(), limits), seen }
                });
                Ds::Remote(nodes.collect())
            }
        };
        let mut st = S2csState {
            driver: Driver::new(s2cs::S2cs::recover(cs, args.epoch, args.recovered), S2csMsg::Timer, "control server"),
            sessions: BTreeMap::new(),
            ds,
            traffic,
            store: args.store,
            names,
            ready: Vec::new(),
            metrics: args.metrics,
            born: BTreeMap::new(),
            audit: args.audit,
        };
        Self::step(&myself, &mut st, s2cs::Input::Boot, None).await?;
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<S2csMsg>,
        msg: S2csMsg,
        st: &mut S2csState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            S2csMsg::Call(Call { from, caller, msg, answers, remote }) => {
                Self::step(&myself, st, s2cs::Input::Msg { from, caller, msg }, Some((from, answers, remote))).await?;
            }
            S2csMsg::Query(q) => Self::answer(st, q),
            S2csMsg::FromDs(node, msg) => {
                let from = Peer::DataServer(st.driver.core().config().facility, node);
                let what = msg.name();
                Self::step(&myself, st, s2cs::Input::Msg { from, caller: None, msg }, None).await?;
                if let Some(ProtocolError::UnknownSession(uid)) = st.driver.refused() {
                    // The core refused it (and had the node release ports it reserved for it).
                    let name = st.names.get(node.index()).map_or("?", String::as_str);
                    tracing::warn!(node = name, %uid, "the data server reports {what} for a session this control server does not hold there; refused");
                }
            }
            S2csMsg::Up(Upward::ToDs(node, msg)) => Self::to_ds(st, node, msg),
            S2csMsg::Up(Upward::Report(uid, report)) => {
                let before = st.driver.core().session(&uid).and_then(|e| e.summary.state);
                let counted = report.clone();
                Self::step(&myself, st, s2cs::Input::Report { uid, report }, None).await?;
                Self::count(st, uid, before, &counted);
            }
            S2csMsg::Refresh(done) => {
                Self::refresh(st);
                let _ = done.send(());
            }
            S2csMsg::Drain => {
                if !st.driver.core().draining() {
                    let holding = st.driver.core().holding();
                    tracing::info!(holding, "draining: no new session is admitted; the sessions held go on");
                }
                Self::step(&myself, st, s2cs::Input::Drain, None).await?;
            }
            S2csMsg::Reconfigure(capacity, default_rate, operators, policy) => {
                let input = s2cs::Input::Reconfigure { capacity, default_rate, operators, policy };
                Self::step(&myself, st, input, None).await?;
            }
            S2csMsg::Health(reply) => {
                let core = st.driver.core();
                let _ = reply.send(Serving {
                    attached: core.state() == s2cs::State::Serving,
                    draining: core.draining(),
                    holding: core.holding(),
                });
            }
            S2csMsg::Timer(key, generation) => {
                if st.driver.fired(key, generation) {
                    Self::step(&myself, st, s2cs::Input::Timer(key), None).await?;
                }
            }
            S2csMsg::WhenReady(tx) => st.ready.push(tx),
            S2csMsg::Lost(uid) => Self::step(&myself, st, s2cs::Input::SessionDied(uid), None).await?,
        }
        if st.driver.core().state() == s2cs::State::Serving {
            for tx in st.ready.drain(..) {
                let _ = tx.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<S2csMsg>,
        evt: SupervisionEvent,
        st: &mut S2csState,
    ) -> Result<(), ActorProcessingErr> {
        let died = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => Some((cell.get_id(), err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, reason) => Some((cell.get_id(), format!("{reason:?}"))),
            _ => None,
        };
        let Some((id, why)) = died else { return Ok(()) };
        if let Ds::Embedded { actor, args } = &mut st.ds
            && id == actor.get_id()
        {
            // The server keeps serving: a new data server announces itself, the core fails
            // the sessions the old one held and re-attaches.
            tracing::error!("embedded data server stopped ({why}); restarting it");
            args.inc += 1;
            let args = (**args).clone();
            *actor = Self::spawn_ds(&myself, args).await?;
        } else if let Some(uid) = st.sessions.iter().find(|(_, s)| s.get_id() == id).map(|(u, _)| *u) {
            // Only that session is lost (retired sessions leave the map before they stop).
            tracing::error!(%uid, "session actor stopped ({why}); releasing what it held");
            st.sessions.remove(&uid);
            Self::step(&myself, st, s2cs::Input::SessionDied(uid), None).await?;
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<S2csMsg>, st: &mut S2csState) -> Result<(), ActorProcessingErr> {
        for (_, s) in std::mem::take(&mut st.sessions) {
            s.stop(Some("control server stopping".into()));
        }
        if let Ds::Embedded { actor, .. } = &st.ds {
            let _ = actor.stop_and_wait(Some("control server stopping".into()), None).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
