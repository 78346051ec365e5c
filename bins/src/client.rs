//! What the user-side commands share: how to reach a control server.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use scistream_transport::client::ControlClient;
use scistream_transport::tls::{self, Trust};

/// How to reach control servers. (No `Debug`: it holds the token.)
#[derive(Args, Clone)]
pub struct ConnectOpts {
    /// A control server's own certificate, pinned (accepted even when marked a CA, as
    /// `openssl req -x509` makes them; its names and dates still checked), or the CA that
    /// signed it (PEM), repeatable (one per facility); without it the system's roots are
    /// trusted.
    #[arg(long, alias = "server_cert", global = true)]
    pub server_cert: Vec<PathBuf>,
    /// Plain gRPC without TLS: for tests only.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Access token sent with every call (or set SCISTREAM_TOKEN).
    #[arg(long, env = "SCISTREAM_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Deadline of each call, seconds.
    #[arg(long, default_value = "30", value_parser = crate::parse_secs, global = true)]
    pub timeout: Duration,
}

impl ConnectOpts {
    /// A client of the control server at `addr`.
    pub async fn client(&self, addr: &str) -> anyhow::Result<ControlClient> {
        self.client_with_token(addr, self.token.as_deref()).await
    }

    /// A client of the control server at `addr` that sends `token`.
    pub async fn client_with_token(&self, addr: &str, token: Option<&str>) -> anyhow::Result<ControlClient> {
        let channel = if self.insecure {
            tls::connect_insecure(addr, self.timeout).await?
        } else {
            let trust = match self.server_cert.as_slice() {
                [] => Trust::System,
                many => Trust::Files(many.to_vec()),
            };
            tls::connect(addr, &trust, self.timeout).await?
        };
        Ok(ControlClient::new(channel, token, self.timeout)?)
    }
}

/// Says Hello for session `uid` through the application controller's core (hosted in an
/// actor): again while the session is not there yet, until the server accepts it or `within`
/// passes. Answers the facility's listeners.
pub async fn say_hello(
    client: scistream_transport::client::ControlClient,
    uid: scistream_fsm::Uid,
    role: scistream_fsm::Role,
    listeners: &[scistream_fsm::Addr],
    key: Option<scistream_fsm::AppKey>,
    within: Duration,
) -> anyhow::Result<Vec<scistream_fsm::Addr>> {
    use ractor::Actor;
    use scistream_actors::{AppCtrlActor, AppCtrlArgs};
    use scistream_fsm::timing::Profile;
    use scistream_fsm::{Notice, prod_app};

    let (notices, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg =
        prod_app::Config { timing: Profile { hello_timeout: within, ..Profile::production() }.seeded(rand::random()) };
    let key = key.unwrap_or_default();
    let started = tokio::time::Instant::now();
    let args = AppCtrlArgs { cfg, client, role, uid, key, listeners: listeners.to_vec(), notices };
    let (actor, handle) =
        Actor::spawn(None, AppCtrlActor, args).await.map_err(|e| anyhow::anyhow!("starting the controller: {e}"))?;
    let outcome = rx.recv().await;
    actor.stop(None);
    let _ = handle.await;
    match outcome {
        Some((Notice::Ready { listeners, .. }, _)) => Ok(listeners),
        // The control server answers a wrong key exactly as a uid it does not hold (so nobody
        // learns which uids exist): both end here, once the Hello's deadline passes.
        Some((Notice::Failed { code: scistream_fsm::ErrorCode::DeadlineExceeded, .. }, last))
            if started.elapsed() >= within =>
        {
            let last = last.map(|w| format!(" (its last answer: {w})")).unwrap_or_default();
            Err(anyhow::anyhow!(
                "Hello for {uid}: deadline exceeded: the control server did not accept it within {:.1} s{last}; \
                 it holds no session {uid} with this app key: check the uid, that `s2uc request` is still \
                 running, and --key (a wrong key is answered as an unknown uid)",
                within.as_secs_f64()
            ))
        }
        Some((Notice::Failed { code, .. }, Some(why))) => Err(anyhow::anyhow!("Hello for {uid}: {code}: {why}")),
        Some((Notice::Failed { code, .. }, None)) => Err(anyhow::anyhow!("Hello for {uid}: {code}")),
        other => Err(anyhow::anyhow!("Hello for {uid}: no outcome ({other:?})")),
    }
}
