//! What the user-side commands share: how to reach a control server.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use scistream_transport::client::ControlClient;
use scistream_transport::tls::{self, Trust};

/// How to reach control servers.
#[derive(Args, Debug, Clone)]
pub struct ConnectOpts {
    /// A control server's certificate or CA (PEM), repeatable (one per facility); without it
    /// the system's roots are trusted.
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
        let channel = if self.insecure {
            tls::connect_insecure(addr, self.timeout).await?
        } else {
            let trust = match self.server_cert.as_slice() {
                [] => Trust::System,
                [one] => Trust::File(one.clone()),
                many => Trust::Files(many.to_vec()),
            };
            tls::connect(addr, &trust, self.timeout).await?
        };
        Ok(ControlClient::new(channel, self.token.as_deref(), self.timeout)?)
    }
}

/// Says Hello for session `uid` until the server accepts it or `within` passes. The REQ may
/// still be on its way, so NOT_FOUND and transient failures are retried with backoff, and so is
/// UNKNOWN, the only answer a SciStream 1.2 server gives for a uid it does not hold yet.
pub async fn say_hello(
    client: &scistream_transport::client::ControlClient,
    uid: scistream_fsm::Uid,
    role: scistream_fsm::Role,
    listeners: &[scistream_fsm::Addr],
    key: Option<scistream_fsm::AppKey>,
    within: Duration,
) -> Result<Vec<scistream_fsm::Addr>, scistream_transport::client::CallError> {
    use scistream_fsm::ErrorCode;
    use scistream_transport::client::CallError;
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(2);
    loop {
        match client.hello(uid, role, listeners, key).await {
            Ok(l) => return Ok(l),
            Err(e)
                if (e.is_transient()
                    || matches!(e, CallError::Status { code: ErrorCode::NotFound, .. })
                    || matches!(e, CallError::Server { code: tonic::Code::Unknown, .. }))
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::debug!("Hello not accepted yet ({e}); again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}
