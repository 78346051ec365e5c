//! One stream session's resources at a data server: its bound listeners, then the relay
//! forwarding them (WAN leg TLS pinned to the session). A child of the S2DS actor: stopping
//! it closes every listener and connection at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use scistream_fsm::{Addr, Credentials, Role, Uid};
use scistream_transport::relay::{Counters, Legs, Relay};
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

/// What a session actor is started with.
#[derive(Debug, Clone)]
pub struct SessionArgs {
    /// Session.
    pub uid: Uid,
    /// Address to bind on.
    pub ip: IpAddr,
    /// Ports to bind.
    pub ports: Vec<u16>,
    /// Where its relay counts its traffic.
    pub counters: Arc<Counters>,
    /// Whether a session without credentials may have a plain WAN leg.
    pub allow_plain_wan: bool,
}

/// Messages to a session actor.
#[derive(Debug)]
pub enum SessionMsg {
    /// UpdateTargets arrived: start forwarding to the targets, the WAN leg secured with the
    /// credentials.
    Bridges {
        /// Targets.
        targets: Vec<Addr>,
        /// WAN credentials.
        creds: Credentials,
        /// The end this facility serves.
        role: Role,
        /// The session's rate (1.2 unit: kB/s, 0 unlimited).
        rate: u32,
    },
}

/// The session's state: what it holds.
#[derive(Debug)]
pub struct SessionState {
    uid: Uid,
    listeners: Vec<TcpListener>,
    relay: Option<Relay>,
    counters: Arc<Counters>,
    allow_plain_wan: bool,
}

/// The per-session actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionActor;

fn bind(ip: IpAddr, port: u16) -> Result<TcpListener, BindError> {
    let wrap = |source| BindError { port, source };
    let socket = if ip.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(wrap)?;
    socket.set_reuseaddr(true).map_err(wrap)?;
    socket.bind(SocketAddr::new(ip, port)).map_err(wrap)?;
    socket.listen(1024).map_err(wrap)
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(&self, _: ActorRef<SessionMsg>, args: SessionArgs) -> Result<SessionState, ActorProcessingErr> {
        let mut listeners = Vec::with_capacity(args.ports.len());
        for port in &args.ports {
            // On failure the listeners bound so far are dropped, i.e. closed.
            listeners.push(bind(args.ip, *port)?);
        }
        tracing::debug!(uid = %args.uid, ports = ?args.ports, "session listening");
        Ok(SessionState {
            uid: args.uid,
            listeners,
            relay: None,
            counters: args.counters,
            allow_plain_wan: args.allow_plain_wan,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Bridges { targets, creds, role, rate } => {
                if state.relay.is_some() {
                    return Ok(());
                }
                // An error here fails this actor: its supervisor fails the session.
                let legs = Legs::for_session(role, &creds, state.allow_plain_wan)?;
                tracing::info!(uid = %state.uid, ?targets, ?legs, "forwarding");
                let listeners = std::mem::take(&mut state.listeners);
                // SciStream 1.2's unit: --rate=20000 is 20 MB/s.
                let limit = (rate > 0).then(|| u64::from(rate) * 1000);
                state.relay = Some(Relay::start(listeners, targets, legs, state.counters.clone(), limit));
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<SessionMsg>, state: &mut SessionState) -> Result<(), ActorProcessingErr> {
        tracing::debug!(uid = %state.uid, traffic = ?state.relay.as_ref().map(Relay::traffic), "session closed");
        state.listeners.clear();
        // Wait for the listeners to close: the pool may hand their ports out again at once.
        if let Some(relay) = state.relay.take() {
            relay.shutdown().await;
        }
        Ok(())
    }
}
