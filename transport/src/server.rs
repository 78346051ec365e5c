//! The `scistream.Control` gRPC service of a control server.
//!
//! A translator and nothing more: each rpc authenticates the caller (the token checked
//! before anything else), validates the request into a protocol message, hands it to the
//! [`Backend`] (the S2CS actor) as a [`Call`], awaits the one answer the core gives every call,
//! and turns it into the gRPC reply. When and what a call is answered is the protocol cores'
//! decision (`scistream-fsm`): a producer's `req` waits for the producer's Hello, as SciStream
//! 1.2's server does, bounded by the session's lease (DEADLINE_EXCEEDED). Errors carry the
//! protocol's code as their gRPC status code. Where the facility has allow-lists, the host
//! names a Hello or an UpdateTargets names are resolved here, once: the core sees, checks
//! against the facility's policy, and has dialled, the addresses they resolved to.

mod auth_check;
mod resolve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use scistream_fsm::{AppKey, Credentials, ErrorCode, Msg, Peer, Principal, Token, Uid, Why};
use scistream_proto::convert::{self, Limits};
use scistream_proto::pb;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

pub use auth_check::{AuthError, AuthFuture, Authenticator, CallerFuture, OpenAuth};

/// A message for the control server's core, from one gRPC call.
#[derive(Debug)]
pub struct Call {
    /// The caller as the core names it (`Client(n)` or `App(n)`, unique per call).
    pub from: Peer,
    /// The authenticated identity, `None` for none.
    pub caller: Option<Principal>,
    /// The message.
    pub msg: Msg,
    /// Where the core's answer to `from` goes (exactly one). A oneshot: a waiting call (a
    /// producer's REQ holds one until its Hello) keeps one slot, not a channel's block of 32.
    pub answers: oneshot::Sender<Msg>,
    /// The caller's network address, when known (for the audit trail).
    pub remote: Option<std::net::SocketAddr>,
}

pub use scistream_proto::convert::SessionStatus as SessionView;

/// A question about sessions, answered from the core's state without changing it.
#[derive(Debug)]
pub enum Query {
    /// One session of the caller's.
    Status {
        /// Authenticated caller.
        caller: Principal,
        /// Session.
        uid: Uid,
        /// The answer.
        reply: oneshot::Sender<Result<SessionView, ErrorCode>>,
    },
    /// Every session of the caller's.
    List {
        /// Authenticated caller.
        caller: Principal,
        /// The answer.
        reply: oneshot::Sender<Vec<SessionView>>,
    },
}

/// What serves the calls: the S2CS actor.
pub trait Backend: Send + Sync + 'static {
    /// Hands a call to the core; `false` when the server is shutting down.
    fn submit(&self, call: Call) -> bool;
    /// Hands a query to the core; `false` when the server is shutting down.
    fn query(&self, query: Query) -> bool;
}

/// The `Control` service.
pub struct ControlService {
    backend: Arc<dyn Backend>,
    auth: Arc<dyn Authenticator>,
    limits: Limits,
    next: AtomicU32,
    observer: Option<RpcObserver>,
    resolve: Arc<AtomicBool>,
}

/// Told of every rpc served: its name (one of the service's seven), its gRPC status code, and
/// how long it took (for metrics).
pub type RpcObserver = Arc<dyn Fn(&'static str, tonic::Code, std::time::Duration) + Send + Sync>;

impl ControlService {
    /// A service over `backend`, authenticating with `auth`.
    pub fn new(backend: Arc<dyn Backend>, auth: Arc<dyn Authenticator>, limits: Limits) -> Self {
        Self { backend, auth, limits, next: AtomicU32::new(0), observer: None, resolve: Arc::default() }
    }

    /// The same service, resolving the host names a Hello or UpdateTargets names (once, before
    /// the core sees the call) while `resolve` is set: the facility's allow-lists admit
    /// addresses, not names. Unset, names pass as they are (the relay checks what they resolve
    /// to when it dials).
    #[must_use]
    pub fn with_resolution(mut self, resolve: Arc<AtomicBool>) -> Self {
        self.resolve = resolve;
        self
    }

    /// `addrs` as the core gets them: resolved while resolution is on.
    async fn resolved(&self, addrs: Vec<scistream_fsm::Addr>) -> Vec<scistream_fsm::Addr> {
        if self.resolve.load(Ordering::Relaxed) { resolve::resolve_all(addrs).await } else { addrs }
    }

    /// The same service, telling `observer` of every rpc it serves.
    #[must_use]
    pub fn with_observer(mut self, observer: RpcObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs rpc `name`'s body and tells the observer how it ended and how long it took.
    async fn observed<T>(
        &self,
        name: &'static str,
        body: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        use tracing::Instrument as _;
        let started = std::time::Instant::now();
        let out = body.instrument(tracing::info_span!("rpc", rpc = name)).await;
        if let Some(o) = &self.observer {
            let code = out.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
            o(name, code, started.elapsed());
        }
        out
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> pb::control_server::ControlServer<Self> {
        pb::control_server::ControlServer::new(self)
    }

    fn id(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits `msg` from `from` for the rpc `rpc` and waits for the core's one answer; an
    /// ERROR comes back as its gRPC status.
    async fn ask(
        &self,
        rpc: &str,
        from: Peer,
        caller: Option<Principal>,
        msg: Msg,
        remote: Option<std::net::SocketAddr>,
    ) -> Result<Msg, Status> {
        let (answers, rx) = oneshot::channel();
        if !self.backend.submit(Call { from, caller, msg, answers, remote }) {
            return Err(Status::unavailable("control server is shutting down"));
        }
        match rx.await.map_err(|_| Status::unavailable("control server stopped while serving the call"))? {
            Msg::Error { code, why, .. } => Err(refusal(code, why, rpc)),
            answer => Ok(answer),
        }
    }
}

/// The gRPC status for a protocol error.
pub fn status_of(code: ErrorCode, what: &str) -> Status {
    refusal(code, Why::Unspecified, what)
}

/// The gRPC status of the control server's ERROR for the rpc `what`: the code as the status
/// code, and as the message what the user can act on — `why` when the core said more than the
/// code, else which call was refused (the code is not repeated: clients print it beside).
pub fn refusal(code: ErrorCode, why: Why, what: &str) -> Status {
    let message = match why {
        Why::Unspecified => format!("the control server refused the {what} call"),
        why => why.to_string(),
    };
    Status::new(convert::status_code(code), message)
}

fn wire(e: scistream_proto::WireError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The gRPC status of an answer that is not the one the rpc expects.
fn unexpected(rpc: &str, msg: &Msg) -> Status {
    Status::internal(format!("{rpc}: the control server answered {}", msg.name()))
}

/// The rpcs themselves, each observed by [`ControlService::observed`].
impl ControlService {
    async fn do_req(&self, request: Request<pb::Request>) -> Result<Response<pb::Response>, Status> {
        let peer = request.remote_addr();
        let (caller, token) = self.auth.caller(request.metadata(), peer).await?;
        let args = convert::request_from_wire(request.get_ref(), &self.limits).map_err(wire)?;
        let msg = Msg::Req {
            uid: args.uid,
            seq: 0,
            token: Token(token),
            params: args.params,
            key: args.key.unwrap_or_default(),
        };
        match self.ask("req", Peer::Client(self.id()), Some(caller), msg, peer).await? {
            Msg::Resp { listeners, prod_listeners, .. } => {
                Ok(Response::new(convert::response_to_wire(&listeners, &prod_listeners)))
            }
            other => Err(unexpected("req", &other)),
        }
    }

    async fn do_update(&self, request: Request<pb::UpdateTargets>) -> Result<Response<pb::Response>, Status> {
        let peer = request.remote_addr();
        let (caller, token) = self.auth.caller(request.metadata(), peer).await?;
        let args = convert::update_from_wire(request.get_ref()).map_err(wire)?;
        let creds = args.creds.unwrap_or_else(Credentials::default);
        let remote = self.resolved(args.remote).await;
        let msg = Msg::Update { uid: args.uid, seq: 0, token: Token(token), remote, creds };
        match self.ask("update", Peer::Client(self.id()), Some(caller), msg, peer).await? {
            Msg::Updated { .. } => Ok(Response::new(pb::Response::default())),
            other => Err(unexpected("update", &other)),
        }
    }

    async fn do_release(&self, request: Request<pb::Release>) -> Result<Response<pb::Response>, Status> {
        let peer = request.remote_addr();
        let (caller, token) = self.auth.caller(request.metadata(), peer).await?;
        let uid = convert::release_from_wire(request.get_ref()).map_err(wire)?;
        let msg = Msg::Rel { uid, seq: 0, token: Token(token) };
        match self.ask("release", Peer::Client(self.id()), Some(caller), msg, peer).await? {
            Msg::Released { .. } => Ok(Response::new(pb::Response::default())),
            other => Err(unexpected("release", &other)),
        }
    }

    async fn do_hello(&self, request: Request<pb::Hello>) -> Result<Response<pb::AppResponse>, Status> {
        let peer = request.remote_addr();
        let args = convert::hello_from_wire(request.get_ref()).map_err(wire)?;
        let key = args.key.unwrap_or_else(AppKey::default);
        let prod_listeners = self.resolved(args.prod_listeners).await;
        let msg = Msg::Hello { uid: args.uid, seq: 0, key, prod_listeners };
        // The app key, not a token, proves the controller.
        match self.ask("hello", Peer::App(self.id()), None, msg, peer).await? {
            Msg::HelloAck { listeners, .. } => {
                Ok(Response::new(convert::app_response_to_wire("Hello received", &listeners)))
            }
            other => Err(unexpected("hello", &other)),
        }
    }

    async fn do_listeners(&self, request: Request<pb::ReqListeners>) -> Result<Response<pb::Response>, Status> {
        let peer = request.remote_addr();
        let (caller, token) = self.auth.caller(request.metadata(), peer).await?;
        let uid = convert::req_listeners_from_wire(request.get_ref()).map_err(wire)?;
        let msg = Msg::ReqListeners { uid, seq: 0, token: Token(token) };
        match self.ask("listeners", Peer::Client(self.id()), Some(caller), msg, peer).await? {
            // The producer's listeners, empty while its Hello is not in.
            Msg::ProdLstn { listeners, prod_listeners, .. } => {
                Ok(Response::new(convert::response_to_wire(&listeners, &prod_listeners)))
            }
            other => Err(unexpected("listeners", &other)),
        }
    }

    async fn do_status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::SessionStatus>, Status> {
        let (caller, _) = self.auth.caller(request.metadata(), request.remote_addr()).await?;
        let uid = convert::uid_from_wire(&request.get_ref().uid).map_err(wire)?;
        let view = self.status_of(caller, uid).await?;
        Ok(Response::new(view_to_wire(&view)))
    }

    async fn do_list(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::SessionList>, Status> {
        let (caller, _) = self.auth.caller(request.metadata(), request.remote_addr()).await?;
        let (reply, rx) = oneshot::channel();
        let name = caller.0.clone();
        if !self.backend.query(Query::List { caller, reply }) {
            return Err(Status::unavailable("control server is shutting down"));
        }
        let views = rx.await.map_err(|_| Status::unavailable("control server stopped"))?;
        Ok(Response::new(pb::SessionList { sessions: views.iter().map(view_to_wire).collect(), caller: name }))
    }
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn req(&self, request: Request<pb::Request>) -> Result<Response<pb::Response>, Status> {
        self.observed("req", self.do_req(request)).await
    }

    async fn update(&self, request: Request<pb::UpdateTargets>) -> Result<Response<pb::Response>, Status> {
        self.observed("update", self.do_update(request)).await
    }

    async fn release(&self, request: Request<pb::Release>) -> Result<Response<pb::Response>, Status> {
        self.observed("release", self.do_release(request)).await
    }

    async fn hello(&self, request: Request<pb::Hello>) -> Result<Response<pb::AppResponse>, Status> {
        self.observed("hello", self.do_hello(request)).await
    }

    async fn listeners(&self, request: Request<pb::ReqListeners>) -> Result<Response<pb::Response>, Status> {
        self.observed("listeners", self.do_listeners(request)).await
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::SessionStatus>, Status> {
        self.observed("status", self.do_status(request)).await
    }

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<pb::SessionList>, Status> {
        self.observed("list", self.do_list(request)).await
    }
}

impl ControlService {
    async fn status_of(&self, caller: Principal, uid: Uid) -> Result<SessionView, Status> {
        let (reply, rx) = oneshot::channel();
        if !self.backend.query(Query::Status { caller, uid, reply }) {
            return Err(Status::unavailable("control server is shutting down"));
        }
        rx.await.map_err(|_| Status::unavailable("control server stopped"))?.map_err(|code| status_of(code, "status"))
    }
}

/// A session view on the wire.
pub fn view_to_wire(v: &SessionView) -> pb::SessionStatus {
    convert::session_status_to_wire(v)
}
