//! The S2CS actor: hosts the control server's core (and through it one session machine per
//! uid), answers the gRPC layer's calls and queries, and supervises its embedded data server,
//! which it restarts under a new incarnation if it dies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use scistream_fsm::{ErrorCode, Msg, Outbox, Peer, TimerKey, s2cs, s2ds, session};
use scistream_transport::server::{Backend, Call, Query, SessionView};
use tokio::sync::mpsc;

use crate::s2ds::{S2dsActor, S2dsArgs, S2dsMsg, TrafficBook};
use crate::timers::Timers;

/// Messages to the S2CS actor.
#[derive(Debug)]
pub enum S2csMsg {
    /// A gRPC call.
    Call(Call),
    /// A gRPC query.
    Query(Query),
    /// A message from the data server.
    FromDs(Msg),
    /// A core timer fired.
    Timer(TimerKey, u64),
    /// Answer once the control server is attached to its data server and serves requests.
    WhenReady(tokio::sync::oneshot::Sender<()>),
}

/// What the S2CS actor starts with.
#[derive(Debug, Clone)]
pub struct S2csArgs {
    /// The control server core's configuration.
    pub cs: s2cs::Config,
    /// Its boot epoch (must grow across restarts).
    pub epoch: u64,
    /// The embedded data server's configuration.
    pub ds: s2ds::Config,
    /// Where the data server binds its listeners.
    pub bind_ip: IpAddr,
}

/// The S2CS actor's state.
#[derive(Debug)]
pub struct S2csState {
    core: s2cs::S2cs,
    timers: Timers,
    /// Calls waiting for answers: who, for which session.
    calls: BTreeMap<Peer, (Option<scistream_fsm::Uid>, mpsc::UnboundedSender<Msg>)>,
    since_prune: u32,
    ds: ActorRef<S2dsMsg>,
    ds_args: S2dsArgs,
    ready: Vec<tokio::sync::oneshot::Sender<()>>,
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0.send_message(S2csMsg::WhenReady(tx)).is_ok() && rx.await.is_ok()
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
    fn step(myself: &ActorRef<S2csMsg>, st: &mut S2csState, input: s2cs::Input) {
        let mut out = Outbox::new();
        let held = st.core.sessions().len();
        if let Err(e) = st.core.handle(st.timers.now(), input, &mut out) {
            tracing::debug!("control server refused an input: {e}");
        }
        if st.core.sessions().len() < held {
            // The core forgot sessions (tombstones, a re-attach): forget their traffic too.
            let mut book = st.ds_args.traffic.lock().unwrap_or_else(|e| e.into_inner());
            book.retain(|uid, _| st.core.session(uid).is_some());
        }
        for eff in out {
            match eff {
                scistream_fsm::Effect::Send { to: Peer::DataServer(_), msg } => {
                    if st.ds.send_message(S2dsMsg::FromCs(msg)).is_err() {
                        tracing::warn!("data server gone; its restart will re-attach");
                    }
                }
                scistream_fsm::Effect::Send { to, msg } => deliver(&mut st.calls, to, msg),
                scistream_fsm::Effect::SetTimer { key, at } => st.timers.set(myself, key, at, S2csMsg::Timer),
                scistream_fsm::Effect::CancelTimer { key } => st.timers.cancel(key),
                other => tracing::debug!("control server effect not for it: {other:?}"),
            }
        }
    }

    fn answer(st: &S2csState, query: Query) {
        let book = st.ds_args.traffic.lock().unwrap_or_else(|e| e.into_inner());
        let traffic = |uid: &scistream_fsm::Uid| book.get(uid).map(|c| traffic_of(&c.snapshot())).unwrap_or_default();
        match query {
            Query::Status { caller, uid, reply } => {
                let answer = match st.core.session(&uid) {
                    None => Err(ErrorCode::NotFound),
                    Some(s) if !st.core.config().may_manage(&s.owner, &caller) => Err(ErrorCode::PermissionDenied),
                    Some(s) => Ok(view(uid, s, traffic(&uid))),
                };
                let _ = reply.send(answer);
            }
            Query::List { caller, reply } => {
                let mine = st.core.sessions().iter().filter(|(_, s)| st.core.config().may_manage(&s.owner, &caller));
                let _ = reply.send(mine.map(|(u, s)| view(*u, s, traffic(u))).collect());
            }
        }
    }

    async fn spawn_ds(myself: &ActorRef<S2csMsg>, args: S2dsArgs) -> Result<ActorRef<S2dsMsg>, ActorProcessingErr> {
        let (ds, _) = Actor::spawn_linked(None, S2dsActor, args, myself.get_cell()).await?;
        Ok(ds)
    }
}

/// Hands an answer of the core to the call it is for. The core answers a session's latest
/// caller; earlier calls of the same kind for the same session that still wait (an identical
/// retransmission overtook them, or two releases crossed) get the same successful answer, so
/// none is left to its deadline. An ERROR goes only to the call it answers.
fn deliver(calls: &mut BTreeMap<Peer, (Option<scistream_fsm::Uid>, mpsc::UnboundedSender<Msg>)>, to: Peer, msg: Msg) {
    let uid = msg.uid();
    if uid.is_some() && !matches!(msg, Msg::Error { .. }) {
        let same_kind = |p: &Peer| matches!((p, to), (Peer::Client(_), Peer::Client(_)) | (Peer::App(_), Peer::App(_)));
        let others: Vec<Peer> =
            calls.iter().filter(|(p, (u, _))| **p != to && *u == uid && same_kind(p)).map(|(p, _)| *p).collect();
        for p in others {
            if calls[&p].1.send(msg.clone()).is_err() {
                calls.remove(&p);
            }
        }
    }
    if let Some((_, tx)) = calls.get(&to)
        && tx.send(msg).is_err()
    {
        calls.remove(&to);
    }
}

fn traffic_of(t: &scistream_transport::relay::Traffic) -> scistream_proto::convert::SessionTraffic {
    scistream_proto::convert::SessionTraffic {
        bytes_in: t.bytes_in,
        bytes_out: t.bytes_out,
        open: t.open,
        total: t.total,
        refused: t.refused,
        rate_in: t.rate_in,
        rate_out: t.rate_out,
    }
}

fn view(
    uid: scistream_fsm::Uid,
    s: &session::Session,
    traffic: scistream_proto::convert::SessionTraffic,
) -> SessionView {
    use scistream_fsm::alphabet::Alphabet;
    SessionView {
        uid,
        state: s.state().name().to_string(),
        params: s.params,
        listeners: s.listeners.clone(),
        prod_listeners: s.prod_listeners.clone(),
        targets: s.bridge.as_ref().map(|b| b.0.clone()).unwrap_or_default(),
        failure: s.failure,
        traffic,
        owner: s.owner.0.clone(),
    }
}

impl Actor for S2csActor {
    type Msg = S2csMsg;
    type State = S2csState;
    type Arguments = S2csArgs;

    async fn pre_start(&self, myself: ActorRef<S2csMsg>, args: S2csArgs) -> Result<S2csState, ActorProcessingErr> {
        let traffic = TrafficBook::default();
        let ds_args = S2dsArgs {
            cfg: args.ds,
            inc: args.epoch,
            bind_ip: args.bind_ip,
            parent: myself.clone(),
            traffic,
            allow_plain_wan: args.cs.allow_plain_wan,
        };
        let ds = Self::spawn_ds(&myself, ds_args.clone()).await?;
        let mut st = S2csState {
            core: s2cs::S2cs::new(args.cs, args.epoch),
            timers: Timers::new(),
            calls: BTreeMap::new(),
            since_prune: 0,
            ds,
            ds_args,
            ready: Vec::new(),
        };
        Self::step(&myself, &mut st, s2cs::Input::Boot);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<S2csMsg>,
        msg: S2csMsg,
        st: &mut S2csState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            S2csMsg::Call(Call { from, caller, msg, answers }) => {
                st.since_prune += 1;
                if st.since_prune >= 256 {
                    // Calls whose clients gave up (deadline, disconnect) close their channel.
                    st.calls.retain(|_, (_, tx)| !tx.is_closed());
                    st.since_prune = 0;
                }
                st.calls.insert(from, (msg.uid(), answers));
                Self::step(&myself, st, s2cs::Input::Msg { from, caller, msg });
            }
            S2csMsg::Query(q) => Self::answer(st, q),
            S2csMsg::FromDs(msg) => {
                let from = Peer::DataServer(st.ds_args.cfg.facility);
                Self::step(&myself, st, s2cs::Input::Msg { from, caller: None, msg });
            }
            S2csMsg::Timer(key, generation) => {
                if st.timers.fire(key, generation) {
                    Self::step(&myself, st, s2cs::Input::Timer(key));
                }
            }
            S2csMsg::WhenReady(tx) => st.ready.push(tx),
        }
        if st.core.state() == s2cs::State::Serving {
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
        if let Some((id, why)) = died
            && id == st.ds.get_id()
        {
            // The server keeps serving: a new data server announces itself, the core fails
            // the sessions the old one held and re-attaches.
            tracing::error!("embedded data server stopped ({why}); restarting it");
            st.ds_args.inc += 1;
            st.ds = Self::spawn_ds(&myself, st.ds_args.clone()).await?;
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<S2csMsg>, st: &mut S2csState) -> Result<(), ActorProcessingErr> {
        st.calls.clear();
        let _ = st.ds.stop_and_wait(Some("control server stopping".into()), None).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
