//! The application controller actor: hosts the controller's core (its Hello, retried until
//! the session exists, within a deadline) and carries the Hello over gRPC.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use scistream_fsm::{Addr, AppKey, Effect, Msg, Notice, Peer, Role, TimerKey, Uid, prod_app};
use scistream_transport::client::ControlClient;
use tokio::sync::mpsc;

use crate::driver::Driver;
use crate::remote;

/// Messages to the controller actor.
#[derive(Debug)]
pub enum AppCtrlMsg {
    /// The control server's answer, with its explanation when it is an ERROR.
    Answer(Msg, Option<String>),
    /// A core timer fired.
    Timer(TimerKey, u64),
}

/// What the controller actor starts with: it says Hello at once.
#[derive(Debug)]
pub struct AppCtrlArgs {
    /// The core's configuration.
    pub cfg: prod_app::Config,
    /// The facility's control server.
    pub client: ControlClient,
    /// The application's role.
    pub role: Role,
    /// Session.
    pub uid: Uid,
    /// Its app key (zero for a SciStream 1.2 session).
    pub key: AppKey,
    /// Where a producer listens (empty for a consumer).
    pub listeners: Vec<Addr>,
    /// Where the core's notices go (Ready or Failed), a failure with the server's words.
    pub notices: mpsc::UnboundedSender<(Notice, Option<String>)>,
}

/// The controller actor's state.
#[derive(Debug)]
pub struct AppCtrlState {
    driver: Driver<prod_app::ProdApp, AppCtrlMsg>,
    client: ControlClient,
    role: Role,
    notices: mpsc::UnboundedSender<(Notice, Option<String>)>,
    /// The server's explanation of the last ERROR, for a Failed notice.
    why: Option<String>,
}

/// The application controller actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppCtrlActor;

impl AppCtrlActor {
    fn step(myself: &ActorRef<AppCtrlMsg>, st: &mut AppCtrlState, input: prod_app::Input) {
        for eff in st.driver.step(myself, input) {
            match eff {
                Effect::Send { msg, .. } => {
                    let (client, role, me) = (st.client.clone(), st.role, myself.clone());
                    tokio::spawn(async move {
                        if let Some((a, why)) = remote::call(&client, role, msg).await {
                            let _ = me.send_message(AppCtrlMsg::Answer(a, why));
                        }
                    });
                }
                Effect::Notify(n) => {
                    let why = matches!(n, Notice::Failed { .. }).then(|| st.why.take()).flatten();
                    let _ = st.notices.send((n, why));
                }
                other => tracing::debug!("controller effect not for it: {other:?}"),
            }
        }
    }
}

impl Actor for AppCtrlActor {
    type Msg = AppCtrlMsg;
    type State = AppCtrlState;
    type Arguments = AppCtrlArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AppCtrlMsg>,
        args: AppCtrlArgs,
    ) -> Result<AppCtrlState, ActorProcessingErr> {
        let mut st = AppCtrlState {
            driver: Driver::new(prod_app::ProdApp::new(args.cfg), AppCtrlMsg::Timer, "controller"),
            client: args.client,
            role: args.role,
            notices: args.notices,
            why: None,
        };
        let start = prod_app::Input::Start { uid: args.uid, key: args.key, prod_listeners: args.listeners };
        Self::step(&myself, &mut st, start);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<AppCtrlMsg>,
        msg: AppCtrlMsg,
        st: &mut AppCtrlState,
    ) -> Result<(), ActorProcessingErr> {
        let input = match msg {
            // The core names its server by the producer's facility; there is only one.
            AppCtrlMsg::Answer(msg, why) => {
                st.why = why;
                prod_app::Input::Msg { from: Peer::ControlServer(Role::Prod), msg }
            }
            AppCtrlMsg::Timer(key, generation) => {
                if !st.driver.fired(key, generation) {
                    return Ok(());
                }
                prod_app::Input::Timer(key)
            }
        };
        Self::step(&myself, st, input);
        Ok(())
    }
}
