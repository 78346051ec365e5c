//! The S2DS actor: hosts the data server's core; executes its effects by binding a session's
//! listeners when it reserves them, and spawning, feeding and stopping one [`RelayActor`] per
//! session once its bridges start (its children). Its answers go upstream through a callback,
//! so it does not know who hosts it (the embedded control server today).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use scistream_fsm::alphabet::Alphabet as _;
use scistream_fsm::{Effect, ErrorCode, Faces, Msg, Outbox, Peer, Role, TimerKey, Uid, s2ds};
use scistream_transport::backend::Backend;
use scistream_transport::relay::Counters;

use crate::driver::Driver;
use crate::relay::{RelayActor, RelayArgs, RelayMsg, bind_all};

/// Each session's traffic counters: the data server's relay actors count into them, the
/// control server reads them for `status` and `list`.
pub type TrafficBook = Arc<Mutex<BTreeMap<Uid, Arc<Counters>>>>;

/// Where a data server's messages for its control server go; `false` once nobody listens.
pub type Upstream = Arc<dyn Fn(Msg) -> bool + Send + Sync>;

/// Messages to the S2DS actor.
#[derive(Debug)]
pub enum S2dsMsg {
    /// A message from the control server.
    FromCs(Msg),
    /// A core timer fired.
    Timer(TimerKey, u64),
    /// A session's relay started, or could not.
    Bridges(Uid, Result<(), ErrorCode>),
    /// Set these metrics' gauges from the state now, then answer.
    Refresh(crate::metrics::DsMetrics, tokio::sync::oneshot::Sender<()>),
    /// Whether a control server is attached, and how many sessions are not over.
    Health(tokio::sync::oneshot::Sender<NodeHealth>),
    /// Drain: offer no port, admit no new session (the core's [`s2ds::Input::Drain`]).
    Drain,
}

/// What a node says of itself for its health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeHealth {
    /// A control server is attached.
    pub attached: bool,
    /// Sessions not over.
    pub holding: usize,
}

/// What the S2DS actor starts with.
#[derive(Clone)]
pub struct S2dsArgs {
    /// The core's configuration.
    pub cfg: s2ds::Config,
    /// This incarnation (grows across restarts).
    pub inc: u64,
    /// Where listeners are bound, per side they face (the core's `advertise` says where they
    /// are reached).
    pub bind: Faces<IpAddr>,
    /// Where its messages for the control server go.
    pub upstream: Upstream,
    /// Each session's traffic, for the control server to report.
    pub traffic: TrafficBook,
    /// Whether sessions without credentials may have a plain WAN leg.
    pub allow_plain_wan: bool,
    /// What forwards sessions (`--type`).
    pub backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for S2dsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2dsArgs").field("cfg", &self.cfg).field("inc", &self.inc).finish_non_exhaustive()
    }
}

/// The S2DS actor's state.
pub struct S2dsState {
    driver: Driver<s2ds::S2ds, S2dsMsg>,
    facility: Role,
    args: S2dsArgs,
    /// Listeners of sessions whose bridges have not started.
    bound: BTreeMap<Uid, Vec<tokio::net::TcpListener>>,
    /// Relays of sessions whose bridges started.
    relays: BTreeMap<Uid, ActorRef<RelayMsg>>,
}

/// The data server actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct S2dsActor;

impl S2dsActor {
    async fn step(myself: &ActorRef<S2dsMsg>, st: &mut S2dsState, input: s2ds::Input) {
        let held = st.driver.core().sessions().len();
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            let out: Outbox = st.driver.step(myself, input);
            for eff in out {
                if let Some(next) = Self::execute(myself, st, eff).await {
                    pending.push(next);
                }
            }
        }
        if st.driver.core().sessions().len() < held {
            // The core forgot sessions (tombstones): forget their traffic too.
            let core = st.driver.core();
            st.args
                .traffic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|uid, _| core.sessions().contains_key(uid));
        }
    }

    /// Carries out one effect; returns the input it produces right away, if any.
    async fn execute(myself: &ActorRef<S2dsMsg>, st: &mut S2dsState, eff: Effect) -> Option<s2ds::Input> {
        match eff {
            Effect::Send { msg, .. } => {
                if !(st.args.upstream)(msg) {
                    tracing::warn!("control server gone; dropping a data-server answer");
                }
                None
            }
            Effect::Listen { uid, ports, face } => match bind_all(*st.args.bind.get(face), &ports) {
                Ok(listeners) => {
                    let counters = Arc::new(Counters::default());
                    st.args.traffic.lock().unwrap_or_else(|e| e.into_inner()).insert(uid, counters);
                    tracing::debug!(%uid, ?ports, "session listening");
                    st.bound.insert(uid, listeners);
                    Some(s2ds::Input::Bound(uid))
                }
                Err(b) => {
                    tracing::warn!(%uid, "{b}; drawing other ports");
                    Some(s2ds::Input::BindFailed { uid, port: b.port })
                }
            },
            Effect::Unlisten { uid, .. } => {
                // Closed at once; a relay is waited for, so the ports are free before the pool
                // hands them out again.
                st.bound.remove(&uid);
                if let Some(relay) = st.relays.remove(&uid) {
                    let _ = relay.stop_and_wait(Some("released".into()), None).await;
                }
                None
            }
            Effect::StartBridges { uid, targets, creds, role, rate, .. } => {
                let relay = match (st.relays.get(&uid).cloned(), st.bound.remove(&uid)) {
                    (Some(relay), _) => relay,
                    (None, Some(listeners)) => {
                        let counters = st.args.traffic.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).cloned();
                        let args = RelayArgs {
                            uid,
                            listeners,
                            counters: counters.unwrap_or_default(),
                            allow_plain_wan: st.args.allow_plain_wan,
                            backend: st.args.backend.clone(),
                        };
                        match Actor::spawn_linked(None, RelayActor, args, myself.get_cell()).await {
                            Ok((relay, _)) => {
                                st.relays.insert(uid, relay.clone());
                                relay
                            }
                            Err(e) => {
                                tracing::error!(%uid, "relay actor failed to start: {e}");
                                return Some(s2ds::Input::BridgesFailed { uid, code: ErrorCode::Aborted });
                            }
                        }
                    }
                    (None, None) => return Some(s2ds::Input::BridgesFailed { uid, code: ErrorCode::Aborted }),
                };
                // The outcome comes back as a message: the relay answers once it forwards.
                let me = myself.clone();
                tokio::spawn(async move {
                    let asked = relay.call(|reply| RelayMsg::Bridges { targets, creds, role, rate, reply }, None).await;
                    let outcome = match asked {
                        Ok(ractor::rpc::CallResult::Success(r)) => r,
                        _ => Err(ErrorCode::Aborted),
                    };
                    let _ = me.send_message(S2dsMsg::Bridges(uid, outcome));
                });
                None
            }
            other => {
                tracing::debug!("data server effect not for it: {other:?}");
                None
            }
        }
    }
}

impl Actor for S2dsActor {
    type Msg = S2dsMsg;
    type State = S2dsState;
    type Arguments = S2dsArgs;

    async fn pre_start(&self, myself: ActorRef<S2dsMsg>, args: S2dsArgs) -> Result<S2dsState, ActorProcessingErr> {
        let mut st = S2dsState {
            facility: args.cfg.facility,
            driver: Driver::new(s2ds::S2ds::new(args.cfg.clone(), args.inc), S2dsMsg::Timer, "data server"),
            args,
            bound: BTreeMap::new(),
            relays: BTreeMap::new(),
        };
        Self::step(&myself, &mut st, s2ds::Input::Boot).await;
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<S2dsMsg>,
        msg: S2dsMsg,
        st: &mut S2dsState,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            S2dsMsg::FromCs(msg) => s2ds::Input::Msg { from: Peer::ControlServer(st.facility), msg },
            S2dsMsg::Timer(key, generation) => {
                if !st.driver.fired(key, generation) {
                    return Ok(());
                }
                s2ds::Input::Timer(key)
            }
            S2dsMsg::Bridges(uid, Ok(())) => s2ds::Input::BridgesUp(uid),
            S2dsMsg::Bridges(uid, Err(code)) => s2ds::Input::BridgesFailed { uid, code },
            S2dsMsg::Refresh(m, done) => {
                let core = st.driver.core();
                crate::metrics::set_states(&m.sessions, core.sessions().values().map(|s| s.state().name()));
                m.attached.set(i64::from(core.epoch().is_some()));
                let book = st.args.traffic.lock().unwrap_or_else(|e| e.into_inner());
                let all: Vec<(String, scistream_transport::relay::Traffic)> = book
                    .iter()
                    .filter(|(uid, _)| core.sessions().get(uid).is_some_and(|s| !s.state().is_terminal()))
                    .map(|(uid, c)| (uid.to_string(), c.snapshot()))
                    .collect();
                m.traffic.set(all.iter().map(|(u, t)| (u.clone(), t)));
                let _ = done.send(());
                return Ok(());
            }
            S2dsMsg::Drain => s2ds::Input::Drain,
            S2dsMsg::Health(reply) => {
                let core = st.driver.core();
                let holding = core.sessions().values().filter(|s| !s.state().is_terminal()).count();
                let _ = reply.send(NodeHealth { attached: core.epoch().is_some(), holding });
                return Ok(());
            }
        };
        Self::step(&myself, st, input).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<S2dsMsg>,
        evt: SupervisionEvent,
        st: &mut S2dsState,
    ) -> Result<(), ActorProcessingErr> {
        // A relay actor that dies takes its listeners with it: only its session fails. The
        // data server itself keeps serving the others. (Relays this actor stops on purpose
        // leave the map first.)
        let dead = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => Some((cell.get_id(), err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, why) => Some((cell.get_id(), format!("{why:?}"))),
            _ => None,
        };
        if let Some((id, why)) = dead
            && let Some(uid) = st.relays.iter().find(|(_, s)| s.get_id() == id).map(|(u, _)| *u)
        {
            tracing::error!(%uid, "relay actor died ({why}); failing its session");
            st.relays.remove(&uid);
            Self::step(&myself, st, s2ds::Input::SessionLost(uid)).await;
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<S2dsMsg>, st: &mut S2dsState) -> Result<(), ActorProcessingErr> {
        st.bound.clear();
        for (_, relay) in std::mem::take(&mut st.relays) {
            let _ = relay.stop_and_wait(Some("data server stopping".into()), None).await;
        }
        Ok(())
    }
}
