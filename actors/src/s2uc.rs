//! The S2UC actor: hosts the user client's core and carries its messages to the facilities'
//! control servers over gRPC (one call per message, see [`crate::remote`]). The core decides
//! everything — phases, which facilities a plan drives, the Hellos it says itself,
//! retransmission, deadlines, releasing the other side when one fails; the actor reports the
//! core's notices to its owner (the `s2uc` command).

use ractor::{Actor, ActorProcessingErr, ActorRef};
use scistream_fsm::{Effect, ErrorCode, Msg, Notice, Peer, Role, TimerKey, Uid, s2uc};
use scistream_transport::client::ControlClient;
use tokio::sync::mpsc;

use crate::driver::Driver;
use crate::remote;

/// Messages to the S2UC actor.
#[derive(Debug)]
pub enum S2ucMsg {
    /// A user command for the core: `s2uc::Input::Start` or `s2uc::Input::Release`.
    Command(s2uc::Input),
    /// A control server's answer, with its explanation when it is an ERROR.
    Answer(Role, Msg, Option<String>),
    /// A core timer fired.
    Timer(TimerKey, u64),
}

/// What the S2UC actor starts with.
#[derive(Debug)]
pub struct S2ucArgs {
    /// The core's configuration.
    pub cfg: s2uc::Config,
    /// The producer facility's control server (any client when the plans never drive it).
    pub prod: ControlClient,
    /// The consumer facility's control server (any client when the plans never drive it).
    pub cons: ControlClient,
    /// Where the core's notices go, each with the server's explanation of the last ERROR of
    /// its session.
    pub notices: mpsc::UnboundedSender<(Notice, Option<String>)>,
}

/// The S2UC actor's state.
#[derive(Debug)]
pub struct S2ucState {
    driver: Driver<s2uc::S2uc, S2ucMsg>,
    clients: [ControlClient; 2],
    notices: mpsc::UnboundedSender<(Notice, Option<String>)>,
    /// The server's explanation of each session's last ERROR.
    why: std::collections::BTreeMap<Uid, String>,
}

/// The user client actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct S2ucActor;

impl S2ucActor {
    fn step(myself: &ActorRef<S2ucMsg>, st: &mut S2ucState, input: s2uc::Input) {
        for eff in st.driver.step(myself, input) {
            match eff {
                Effect::Send { to: Peer::ControlServer(role), msg } => {
                    let client = st.clients[usize::from(role == Role::Cons)].clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        if let Some((a, why)) = remote::call(&client, role, msg).await {
                            let _ = me.send_message(S2ucMsg::Answer(role, a, why));
                        }
                    });
                }
                Effect::Notify(n) => {
                    let why = match &n {
                        Notice::Failed { uid, .. } => st.why.remove(uid),
                        _ => None,
                    };
                    let _ = st.notices.send((n, why));
                }
                other => tracing::debug!("user client effect not for it: {other:?}"),
            }
        }
    }
}

impl Actor for S2ucActor {
    type Msg = S2ucMsg;
    type State = S2ucState;
    type Arguments = S2ucArgs;

    async fn pre_start(&self, _: ActorRef<S2ucMsg>, args: S2ucArgs) -> Result<S2ucState, ActorProcessingErr> {
        Ok(S2ucState {
            driver: Driver::new(s2uc::S2uc::new(args.cfg), S2ucMsg::Timer, "user client"),
            clients: [args.prod, args.cons],
            notices: args.notices,
            why: std::collections::BTreeMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<S2ucMsg>,
        msg: S2ucMsg,
        st: &mut S2ucState,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            S2ucMsg::Command(input) => input,
            S2ucMsg::Answer(role, msg, why) => {
                // The answer to a Hello the client said itself never decides the session: its
                // explanation is not the session's.
                let hello = matches!(msg, Msg::Error { seq, .. } if s2uc::is_hello_seq(seq));
                if let (Some(uid), Some(why)) = (msg.uid(), why)
                    && !hello
                    && !matches!(msg, Msg::Error { code: ErrorCode::Unavailable, .. })
                {
                    // The first refusal is the reason; later ones (the release of the other side) are not.
                    let side = if role == Role::Prod { "producer's" } else { "consumer's" };
                    st.why.entry(uid).or_insert_with(|| format!("at the {side} facility: {why}"));
                }
                s2uc::Input::Msg { from: Peer::ControlServer(role), msg }
            }
            S2ucMsg::Timer(key, generation) => {
                if !st.driver.fired(key, generation) {
                    return Ok(());
                }
                s2uc::Input::Timer(key)
            }
        };
        Self::step(&myself, st, input);
        Ok(())
    }
}
