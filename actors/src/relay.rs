//! One stream session's relay at a data server: the session's listeners (bound by the data
//! server when it reserved them, [`bind_all`]) forwarded to their targets, the WAN leg TLS
//! pinned to the session. The data server spawns it, a child of its own, when the bridges
//! start (a session waiting for its Hello holds only its listeners, no actor); stopping it
//! closes every listener and connection at once. Starting the relay is a call: the data server
//! reports BridgesUp only once the relay runs, and a relay that cannot start is a refusal with
//! its reason, never a session that claims to forward. What forwards is the data server's
//! [`Backend`] (the native relay, or a proxy child per session); a forwarding that ends on
//! its own (a proxy died) fails this actor, so the data server fails the session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use scistream_fsm::{Addr, Credentials, ErrorCode, Role, Uid};
use scistream_transport::backend::{self, Backend, Forwarding, Session};
use scistream_transport::relay::Counters;
use tokio::net::{TcpListener, TcpSocket};

/// A port that could not be bound (another process holds it, or the address is not local).
#[derive(Debug, thiserror::Error)]
#[error("cannot bind port {port}: {source}")]
pub struct BindError {
    /// The port.
    pub port: u16,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// What a relay actor is started with.
#[derive(Debug)]
pub struct RelayArgs {
    /// Session.
    pub uid: Uid,
    /// The session's bound listeners.
    pub listeners: Vec<TcpListener>,
    /// Where its relay counts its traffic.
    pub counters: Arc<Counters>,
    /// Whether a session without credentials may have a plain WAN leg.
    pub allow_plain_wan: bool,
    /// What forwards.
    pub backend: Arc<dyn Backend>,
}

/// Messages to a relay actor.
#[derive(Debug)]
pub enum RelayMsg {
    /// UpdateTargets arrived: start forwarding to the targets, the WAN leg secured with the
    /// credentials; answers once the relay runs, or why it cannot.
    Bridges {
        /// Targets.
        targets: Vec<Addr>,
        /// WAN credentials.
        creds: Credentials,
        /// The end this facility serves.
        role: Role,
        /// The session's rate (1.2 unit: kB/s, 0 unlimited).
        rate: u32,
        /// The outcome: `Ok` once forwarding, or the code to refuse the session with.
        reply: RpcReplyPort<Result<(), ErrorCode>>,
    },
    /// The forwarding ended on its own (a proxy died): why.
    Ended(String),
}

/// The relay actor's state: what it holds.
pub struct RelayState {
    uid: Uid,
    listeners: Vec<TcpListener>,
    forwarding: Option<Box<dyn Forwarding>>,
    /// The task waiting for the forwarding to end on its own (never, for the native relay):
    /// ended with the actor.
    watch: Option<tokio::task::AbortHandle>,
    counters: Arc<Counters>,
    allow_plain_wan: bool,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for RelayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayState")
            .field("uid", &self.uid)
            .field("forwarding", &self.forwarding.as_ref().map(|f| f.describe()))
            .finish_non_exhaustive()
    }
}

/// The per-session relay actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayActor;

impl RelayActor {
    /// Starts forwarding, once: a repeated start of a running relay is a success.
    async fn start(
        myself: &ActorRef<RelayMsg>,
        state: &mut RelayState,
        targets: Vec<Addr>,
        creds: Credentials,
        role: Role,
        rate: u32,
    ) -> Result<(), ErrorCode> {
        if state.forwarding.is_some() {
            return Ok(());
        }
        // What is wrong with the request itself is refused before the listeners are handed
        // over, so a corrected start may follow.
        if let Err(e) = backend::precheck(&targets, &creds, state.allow_plain_wan) {
            tracing::warn!(uid = %state.uid, "refusing to start the relay: {e}");
            return Err(e.code());
        }
        if state.listeners.is_empty() {
            // A start that failed gave its listeners away: the session cannot forward.
            return Err(ErrorCode::Aborted);
        }
        let session = Session {
            uid: state.uid,
            listeners: std::mem::take(&mut state.listeners),
            targets,
            role,
            creds,
            allow_plain_wan: state.allow_plain_wan,
            // SciStream 1.2's unit: --rate=20000 is 20 MB/s.
            rate: (rate > 0).then(|| u64::from(rate) * 1000),
            counters: state.counters.clone(),
        };
        let mut forwarding = state.backend.start(session).await.map_err(|e| {
            tracing::warn!(uid = %state.uid, backend = %state.backend.kind(), "cannot start the relay: {e}");
            e.code()
        })?;
        // Watched only where it can end on its own (a proxy process).
        if let Some(ended) = forwarding.ended() {
            let me = myself.clone();
            let watch = tokio::spawn(async move {
                let why = ended.await;
                let _ = me.send_message(RelayMsg::Ended(why));
            });
            state.watch = Some(watch.abort_handle());
        }
        state.forwarding = Some(forwarding);
        Ok(())
    }
}

/// Binds a session's listeners on `ip`, every port or none (those bound so far are closed
/// again when one fails).
pub fn bind_all(ip: IpAddr, ports: &[u16]) -> Result<Vec<TcpListener>, BindError> {
    ports.iter().map(|port| bind(ip, *port)).collect()
}

fn bind(ip: IpAddr, port: u16) -> Result<TcpListener, BindError> {
    let wrap = |source| BindError { port, source };
    let socket = if ip.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(wrap)?;
    socket.set_reuseaddr(true).map_err(wrap)?;
    socket.bind(SocketAddr::new(ip, port)).map_err(wrap)?;
    socket.listen(1024).map_err(wrap)
}

impl Actor for RelayActor {
    type Msg = RelayMsg;
    type State = RelayState;
    type Arguments = RelayArgs;

    async fn pre_start(&self, _: ActorRef<RelayMsg>, args: RelayArgs) -> Result<RelayState, ActorProcessingErr> {
        Ok(RelayState {
            uid: args.uid,
            listeners: args.listeners,
            forwarding: None,
            watch: None,
            counters: args.counters,
            allow_plain_wan: args.allow_plain_wan,
            backend: args.backend,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RelayMsg>,
        msg: RelayMsg,
        state: &mut RelayState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RelayMsg::Bridges { targets, creds, role, rate, reply } => {
                let _ = reply.send(Self::start(&myself, state, targets, creds, role, rate).await);
            }
            RelayMsg::Ended(why) => {
                // Nothing forwards any more: failing here fails the session at its data server
                // (what the forwarding held, its folder and key, is removed first).
                if let Some(f) = state.forwarding.take() {
                    f.stop().await;
                }
                return Err(format!("its forwarding ended: {why}").into());
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<RelayMsg>, state: &mut RelayState) -> Result<(), ActorProcessingErr> {
        tracing::debug!(uid = %state.uid, traffic = ?state.counters.snapshot(), "session closed");
        state.listeners.clear();
        if let Some(watch) = state.watch.take() {
            watch.abort();
        }
        // Wait for the listeners to close (a proxy to exit): the pool may hand their ports out
        // again at once.
        if let Some(f) = state.forwarding.take() {
            f.stop().await;
        }
        Ok(())
    }
}
