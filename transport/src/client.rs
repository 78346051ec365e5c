//! The client side of `scistream.Control`, for S2UC and AppCtrl.
//!
//! One method per rpc. Each call carries the caller's token (raw, as 1.2 sends it) and a
//! deadline (sent as `grpc-timeout` and enforced locally), and each answer is validated through
//! `scistream_proto::convert` before the caller sees it. Every failure is a [`CallError`] that
//! separates the protocol's answers (an [`ErrorCode`]) from a failing server, a missed
//! deadline, an unreachable server, a malformed answer and an rpc the server lacks.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use scistream_fsm::{Addr, AppKey, Credentials, ErrorCode, Role, SessionParams, Uid};
use scistream_proto::convert::{self, HelloArgs, ReqArgs, UpdateArgs};
pub use scistream_proto::convert::{Listeners, SessionStatus};
use scistream_proto::{WireError, pb};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::auth::{self, TokenError};
use crate::tls::error_chain;

type Inner = pb::control_client::ControlClient<Channel>;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server refused the call with one of the protocol's codes (its gRPC status code maps
    /// onto an [`ErrorCode`]).
    #[error("{code}: {message}")]
    Status {
        /// Why, as the protocol names it.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// The server failed rather than answered: a status code with no protocol meaning
    /// (`UNKNOWN`, as a 1.2 server reports every error, `INTERNAL`, `DATA_LOSS`, …).
    #[error("server failure ({code:?}): {message}")]
    Server {
        /// The gRPC status code.
        code: Code,
        /// The server's explanation.
        message: String,
    },
    /// No answer before the call's deadline (ours, or the server's reading of it).
    #[error("no answer before the deadline")]
    Deadline,
    /// The server could not be reached or the connection failed during the call (the reason
    /// with its causes).
    #[error("server unreachable: {0}")]
    Unavailable(String),
    /// The server answered something that does not validate.
    #[error("malformed answer: {0}")]
    BadAnswer(#[from] WireError),
    /// The server does not have this rpc (the rpc's name): a SciStream 1.2 server lacks
    /// `listeners`.
    #[error("server does not implement the {0} call")]
    Unimplemented(&'static str),
}

impl CallError {
    /// Whether the same call may succeed later: a missed deadline, an unreachable server, or
    /// the server's own `UNAVAILABLE`.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Deadline | Self::Unavailable(_))
            || matches!(self, Self::Status { code, .. } if code.is_transient())
    }

    /// Classifies a failed call's status. tonic reports its own failures as statuses too;
    /// those carry a source error, statuses read from the wire never do.
    fn from_status(rpc: &'static str, status: &Status) -> Self {
        if caused_by_timeout(status) {
            return Self::Deadline;
        }
        if let Some(cause) = status.source() {
            let mut reason = status.message().to_owned();
            let cause = error_chain(cause);
            if !reason.contains(&cause) {
                reason = if reason.is_empty() { cause } else { format!("{reason}: {cause}") };
            }
            return Self::Unavailable(reason);
        }
        let message = status.message().to_owned();
        match status.code() {
            Code::Unimplemented => Self::Unimplemented(rpc),
            // tonic's server answers an expired `grpc-timeout` with CANCELLED.
            Code::Cancelled => Self::Deadline,
            code => match convert::error_code_from_status(code) {
                Some(code) => Self::Status { code, message },
                None => Self::Server { code, message },
            },
        }
    }
}

fn caused_by_timeout(status: &Status) -> bool {
    let mut cause = status.source();
    while let Some(err) = cause {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// A typed client of one control server's `scistream.Control` service.
///
/// Cloning is cheap and clones share the connection; methods take `&self`, so calls may run
/// concurrently.
#[derive(Clone)]
pub struct ControlClient {
    inner: Inner,
    token: Option<MetadataValue<Ascii>>,
    timeout: Duration,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = self.token.as_ref().map(|_| "<redacted>");
        f.debug_struct("ControlClient").field("token", &token).field("timeout", &self.timeout).finish()
    }
}

impl ControlClient {
    /// A client on `channel` (see [`tls::connect`](crate::tls::connect)) that sends `token` with
    /// every call (none: no `authorization` metadata) and gives each call `timeout`.
    pub fn new(channel: Channel, token: Option<&str>, timeout: Duration) -> Result<Self, TokenError> {
        let token = token.map(auth::token_value).transpose()?;
        Ok(Self { inner: Inner::new(channel), token, timeout })
    }

    /// The same client with another per-call deadline (a producer's `req` waits for the
    /// producer's Hello, so it may need longer than the other calls).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// REQ: reserves `num_conn` connections at `rate` kB/s (0: unlimited) for session `uid` in
    /// `role`; answers this facility's listeners and, for a producer once its Hello is in, the
    /// producer's listeners. `app_key` is the key the application controller will present.
    pub async fn req(
        &self,
        uid: Uid,
        role: Role,
        num_conn: u16,
        rate: u32,
        app_key: Option<AppKey>,
    ) -> Result<Listeners, CallError> {
        let args = ReqArgs { uid, params: SessionParams { role, num_conn, rate }, key: app_key };
        let msg = convert::request_to_wire(&args);
        let resp = self.call("req", msg, |mut c, r| async move { c.req(r).await }).await?;
        Ok(convert::response_from_wire(&resp)?)
    }

    /// UpdateTargets: where this facility's data server forwards the session `uid` (`remote`,
    /// mapped round-robin onto its connections), with the WAN channel's `credentials`; answers
    /// the session's listeners.
    pub async fn update(
        &self,
        uid: Uid,
        role: Role,
        remote: &[Addr],
        credentials: Option<Credentials>,
    ) -> Result<Listeners, CallError> {
        let args = UpdateArgs { uid, role: Some(role), remote: remote.to_vec(), creds: credentials };
        let msg = convert::update_to_wire(&args);
        let resp = self.call("update", msg, |mut c, r| async move { c.update(r).await }).await?;
        Ok(convert::response_from_wire(&resp)?)
    }

    /// REL: releases everything session `uid` holds at this facility. Idempotent.
    pub async fn release(&self, uid: Uid) -> Result<(), CallError> {
        let msg = convert::release_to_wire(uid);
        let resp = self.call("release", msg, |mut c, r| async move { c.release(r).await }).await?;
        convert::response_from_wire(&resp)?;
        Ok(())
    }

    /// Hello from an application controller of session `uid` in `role`, proving itself with
    /// `app_key`; a producer's controller gives the producer's listeners. Answers this
    /// facility's listeners for the session.
    pub async fn hello(
        &self,
        uid: Uid,
        role: Role,
        prod_listeners: &[Addr],
        app_key: Option<AppKey>,
    ) -> Result<Vec<Addr>, CallError> {
        let args = HelloArgs { uid, role: Some(role), prod_listeners: prod_listeners.to_vec(), key: app_key };
        let msg = convert::hello_to_wire(&args);
        let resp = self.call("hello", msg, |mut c, r| async move { c.hello(r).await }).await?;
        Ok(convert::app_response_from_wire(&resp)?)
    }

    /// ReqListeners (a SciStream-rs rpc): the session's listeners again and, once the
    /// producer's Hello is in, the producer's. A 1.2 server answers
    /// [`CallError::Unimplemented`].
    pub async fn listeners(&self, uid: Uid) -> Result<Listeners, CallError> {
        let msg = convert::req_listeners_to_wire(uid);
        let resp = self.call("listeners", msg, |mut c, r| async move { c.listeners(r).await }).await?;
        Ok(convert::response_from_wire(&resp)?)
    }

    /// Status (a SciStream-rs rpc): session `uid` as this facility holds it.
    pub async fn status(&self, uid: Uid) -> Result<SessionStatus, CallError> {
        let msg = pb::StatusRequest { uid: convert::uid_to_wire(uid) };
        let resp = self.call("status", msg, |mut c, r| async move { c.status(r).await }).await?;
        Ok(convert::session_status_from_wire(&resp)?)
    }

    /// List (a SciStream-rs rpc): the caller's sessions at this facility.
    pub async fn list(&self) -> Result<Vec<SessionStatus>, CallError> {
        Ok(self.list_as().await?.1)
    }

    /// List, with the identity this facility authenticated the caller as.
    pub async fn list_as(&self) -> Result<(String, Vec<SessionStatus>), CallError> {
        let resp = self.call("list", pb::ListRequest {}, |mut c, r| async move { c.list(r).await }).await?;
        let sessions = resp.sessions.iter().map(convert::session_status_from_wire).collect::<Result<_, _>>()?;
        Ok((resp.caller, sessions))
    }

    /// Sends one call with the token and the deadline; the local timer backs up tonic's, which
    /// does not cover waiting for a connection.
    async fn call<M, R, F, Fut>(&self, rpc: &'static str, msg: M, send: F) -> Result<R, CallError>
    where
        F: FnOnce(Inner, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut request = tonic::Request::new(msg);
        request.set_timeout(self.timeout);
        if let Some(token) = &self.token {
            request.metadata_mut().insert(auth::AUTHORIZATION, token.clone());
        }
        match tokio::time::timeout(self.timeout, send(self.inner.clone(), request)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(CallError::from_status(rpc, &status)),
            Err(_) => Err(CallError::Deadline),
        }
    }
}

#[cfg(test)]
mod tests;
