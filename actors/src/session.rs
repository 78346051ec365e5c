//! One stream session's actor at a control server: hosts the session's core (its declared
//! machine, the calls waiting on it, its timers). A child of the S2CS actor, which routes the
//! session's calls and data-server answers to it; what the session asks of the outside goes
//! back through a callback (requests for the data server, reports for the registry), and its
//! answers go straight to the calls waiting on it. A session actor that fails takes only its
//! own session with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use scistream_fsm::{Effect, Msg, Node, Peer, TimerKey, Uid, session};

use crate::driver::Driver;

/// Where the answer to one waiting call goes.
pub type Answer = tokio::sync::oneshot::Sender<Msg>;

/// What a session asks of its control server's actor.
#[derive(Debug)]
pub enum Upward {
    /// A message for the session's data-server node.
    ToDs(Node, Msg),
    /// A change for the registry.
    Report(Uid, session::Report),
}

/// Where a session's requests upward go.
pub type Up = Arc<dyn Fn(Upward) + Send + Sync>;

/// Messages to a session actor.
#[derive(Debug)]
pub enum SessionMsg {
    /// An input the control server's core routed here, with the answer channel of the call
    /// it carries (if it carries one).
    Input(session::Input, Option<Answer>),
    /// A core timer fired.
    Timer(TimerKey, u64),
}

/// What a session actor starts with.
pub struct SessionArgs {
    /// The session's core, as its control server's core created it.
    pub core: Box<session::Session>,
    /// Where its requests upward go.
    pub up: Up,
}

/// The session actor's state.
pub struct SessionState {
    driver: Driver<session::Session, SessionMsg>,
    up: Up,
    /// The answer channels of the calls waiting on the session.
    calls: BTreeMap<Peer, Answer>,
}

/// The per-session actor at a control server.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionActor;

impl SessionActor {
    fn step(myself: &ActorRef<SessionMsg>, st: &mut SessionState, input: session::Input) {
        let before = st.driver.core().state();
        tracing::trace!(?input, "session input");
        let mut out = st.driver.step(myself, input);
        let after = st.driver.core().state();
        if after != before {
            tracing::debug!(from = ?before, to = ?after, "session state");
        }
        // Reports go up before any answer goes out: a caller who hears the answer and then asks
        // for the status (through the control server's mailbox, behind the report) sees the
        // state the answer told it.
        out.sort_by_key(|e| !matches!(e, Effect::Report { .. }));
        for eff in out {
            match eff {
                Effect::Send { to: Peer::DataServer(_, node), msg } => (st.up)(Upward::ToDs(node, msg)),
                Effect::Send { to, msg } => {
                    // Each call is answered once: its channel is done with.
                    if let Some(tx) = st.calls.remove(&to) {
                        let _ = tx.send(msg);
                    }
                }
                Effect::Report { uid, report } => (st.up)(Upward::Report(uid, report)),
                other => tracing::debug!("session effect not for it: {other:?}"),
            }
        }
    }
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(&self, _: ActorRef<SessionMsg>, args: SessionArgs) -> Result<SessionState, ActorProcessingErr> {
        Ok(SessionState {
            driver: Driver::new(*args.core, SessionMsg::Timer, "session"),
            up: args.up,
            calls: BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        st: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        // Every line logged while the session steps carries its uid (no await below).
        let _span = tracing::info_span!("session", uid = %st.driver.core().uid()).entered();
        match msg {
            SessionMsg::Input(input, answer) => {
                if let (session::Input::Call { from, .. }, Some(tx)) = (&input, answer) {
                    st.calls.insert(*from, tx);
                }
                Self::step(&myself, st, input);
                // Calls whose callers gave up (deadline, disconnect) are not kept.
                st.calls.retain(|_, tx| !tx.is_closed());
            }
            SessionMsg::Timer(key, generation) => {
                if st.driver.fired(key, generation) {
                    Self::step(&myself, st, session::Input::Timer(key.kind));
                }
            }
        }
        Ok(())
    }
}
