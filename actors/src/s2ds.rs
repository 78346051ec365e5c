//! The S2DS actor: hosts the data server's core; executes its effects by spawning, feeding
//! and stopping one [`SessionActor`] per session (its children). Embedded in the S2CS actor's
//! tree by default.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use scistream_fsm::{Effect, Msg, Outbox, TimerKey, Uid, s2ds};

use crate::s2cs::S2csMsg;
use crate::session::{BindError, SessionActor, SessionArgs, SessionMsg};
use crate::timers::Timers;
use scistream_transport::relay::Counters;

/// Each session's traffic counters: the data server's session actors count into them, the
/// control server reads them for `status` and `list`.
pub type TrafficBook = Arc<Mutex<BTreeMap<Uid, Arc<Counters>>>>;

/// Messages to the S2DS actor.
#[derive(Debug)]
pub enum S2dsMsg {
    /// A message from the control server.
    FromCs(Msg),
    /// A core timer fired.
    Timer(TimerKey, u64),
}

/// What the S2DS actor starts with.
#[derive(Debug, Clone)]
pub struct S2dsArgs {
    /// The core's configuration.
    pub cfg: s2ds::Config,
    /// This incarnation (grows across restarts).
    pub inc: u64,
    /// Where listeners are bound.
    pub bind_ip: IpAddr,
    /// The control server.
    pub parent: ActorRef<S2csMsg>,
    /// Each session's traffic, for the control server to report.
    pub traffic: TrafficBook,
    /// Whether sessions without credentials may have a plain WAN leg.
    pub allow_plain_wan: bool,
}

/// The S2DS actor's state.
#[derive(Debug)]
pub struct S2dsState {
    core: s2ds::S2ds,
    facility: scistream_fsm::Role,
    bind_ip: IpAddr,
    parent: ActorRef<S2csMsg>,
    traffic: TrafficBook,
    allow_plain_wan: bool,
    timers: Timers,
    sessions: BTreeMap<Uid, ActorRef<SessionMsg>>,
}

/// The data server actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct S2dsActor;

impl S2dsActor {
    async fn step(myself: &ActorRef<S2dsMsg>, st: &mut S2dsState, input: s2ds::Input) {
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            let mut out = Outbox::new();
            if let Err(e) = st.core.handle(st.timers.now(), input, &mut out) {
                tracing::debug!("data server refused an input: {e}");
            }
            for eff in out {
                if let Some(next) = Self::execute(myself, st, eff).await {
                    pending.push(next);
                }
            }
        }
    }

    /// Carries out one effect; returns the input it produces right away, if any.
    async fn execute(myself: &ActorRef<S2dsMsg>, st: &mut S2dsState, eff: Effect) -> Option<s2ds::Input> {
        match eff {
            Effect::Send { msg, .. } => {
                if st.parent.send_message(S2csMsg::FromDs(msg)).is_err() {
                    tracing::warn!("control server gone; dropping a data-server answer");
                }
                None
            }
            Effect::SetTimer { key, at } => {
                st.timers.set(myself, key, at, S2dsMsg::Timer);
                None
            }
            Effect::CancelTimer { key } => {
                st.timers.cancel(key);
                None
            }
            Effect::Listen { uid, ports } => {
                let counters = Arc::new(Counters::default());
                st.traffic.lock().unwrap_or_else(|e| e.into_inner()).insert(uid, counters.clone());
                let args = SessionArgs { uid, ip: st.bind_ip, ports, counters, allow_plain_wan: st.allow_plain_wan };
                match Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await {
                    Ok((session, _)) => {
                        st.sessions.insert(uid, session);
                        Some(s2ds::Input::Bound(uid))
                    }
                    Err(SpawnErr::StartupFailed(e)) => match e.downcast_ref::<BindError>() {
                        Some(b) => {
                            tracing::warn!(%uid, "{b}; drawing other ports");
                            Some(s2ds::Input::BindFailed { uid, port: b.port })
                        }
                        None => {
                            tracing::error!(%uid, "session actor failed to start: {e}");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::error!(%uid, "session actor failed to start: {e}");
                        None
                    }
                }
            }
            Effect::Unlisten { uid, .. } => {
                if let Some(session) = st.sessions.remove(&uid) {
                    // Wait, so the ports are free before the pool hands them out again.
                    let _ = session.stop_and_wait(Some("released".into()), None).await;
                }
                None
            }
            Effect::StartBridges { uid, targets, creds, role, rate, .. } => {
                let bridges = SessionMsg::Bridges { targets, creds, role, rate };
                let sent = st.sessions.get(&uid).map(|s| s.send_message(bridges));
                Some(match sent {
                    Some(Ok(())) => s2ds::Input::BridgesUp(uid),
                    _ => s2ds::Input::BridgesFailed(uid),
                })
            }
            Effect::Connect { .. } | Effect::Notify(_) => None,
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
            core: s2ds::S2ds::new(args.cfg, args.inc),
            bind_ip: args.bind_ip,
            parent: args.parent,
            traffic: args.traffic,
            allow_plain_wan: args.allow_plain_wan,
            timers: Timers::new(),
            sessions: BTreeMap::new(),
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
            S2dsMsg::FromCs(msg) => s2ds::Input::Msg { from: scistream_fsm::Peer::ControlServer(st.facility), msg },
            S2dsMsg::Timer(key, generation) => {
                if !st.timers.fire(key, generation) {
                    return Ok(());
                }
                s2ds::Input::Timer(key)
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
        // A session actor that dies takes its listeners with it: only its session fails.
        // The data server itself keeps serving the others. (Sessions this actor stops on
        // purpose leave the map first.)
        let dead = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => Some((cell.get_id(), err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, why) => Some((cell.get_id(), format!("{why:?}"))),
            _ => None,
        };
        if let Some((id, why)) = dead
            && let Some(uid) = st.sessions.iter().find(|(_, s)| s.get_id() == id).map(|(u, _)| *u)
        {
            tracing::error!(%uid, "session actor died ({why}); failing its session");
            st.sessions.remove(&uid);
            Self::step(&myself, st, s2ds::Input::SessionLost(uid)).await;
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<S2dsMsg>, st: &mut S2dsState) -> Result<(), ActorProcessingErr> {
        for (_, session) in std::mem::take(&mut st.sessions) {
            let _ = session.stop_and_wait(Some("data server stopping".into()), None).await;
        }
        Ok(())
    }
}
