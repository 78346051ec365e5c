//! Tests of `client` against a small in-test `Control` server over TLS 1.3 on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use scistream_proto::pb::control_server::{Control, ControlServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Request, Response};

use super::*;
use crate::testkit::{TestCert, test_cert};
use crate::tls::{self, Trust};

/// Bound on every wait in these tests.
const BOUND: Duration = Duration::from_secs(5);

/// How the test server answers.
#[derive(Debug, Clone, Copy)]
enum Canned {
    /// Well-formed answers that echo the request.
    Echo,
    /// `req` fails with the gRPC code whose number is the request's `rate`.
    FailWithRateAsCode,
    /// Never answers.
    Stall,
    /// Answers listeners that are not `host:port`.
    BadAddress,
    /// Lacks the `listeners` rpc, as a SciStream 1.2 server does.
    Legacy,
}

/// What the server saw: the raw `authorization` value of each call.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

struct Canner {
    canned: Canned,
    seen: Seen,
}

impl Canner {
    async fn answer<T>(&self, req: &Request<T>, listeners: Vec<String>) -> Result<Response<pb::Response>, Status> {
        let auth = req.metadata().get(auth::AUTHORIZATION).map(|v| v.to_str().unwrap().to_owned());
        self.seen.lock().unwrap().push(auth);
        match self.canned {
            Canned::Stall => std::future::pending().await,
            Canned::BadAddress => {
                Ok(Response::new(pb::Response { listeners: vec!["nohost".into()], ..Default::default() }))
            }
            _ => Ok(Response::new(pb::Response { listeners, prod_listeners: vec!["10.0.0.9:5000".into()] })),
        }
    }
}

#[tonic::async_trait]
impl Control for Canner {
    async fn req(&self, req: Request<pb::Request>) -> Result<Response<pb::Response>, Status> {
        if let Canned::FailWithRateAsCode = self.canned {
            return Err(Status::new(Code::from_i32(req.get_ref().rate), "canned refusal"));
        }
        let n = req.get_ref().num_conn;
        self.answer(&req, (1..=n).map(|i| format!("127.0.0.1:{}", 5000 + i)).collect()).await
    }
    async fn update(&self, req: Request<pb::UpdateTargets>) -> Result<Response<pb::Response>, Status> {
        let echo = req.get_ref().remote_listeners.clone();
        self.answer(&req, echo).await
    }
    async fn release(&self, req: Request<pb::Release>) -> Result<Response<pb::Response>, Status> {
        self.answer(&req, Vec::new()).await.map(|_| Response::new(pb::Response::default()))
    }
    async fn hello(&self, req: Request<pb::Hello>) -> Result<Response<pb::AppResponse>, Status> {
        let echo = req.get_ref().prod_listeners.clone();
        let resp = self.answer(&req, echo).await?.into_inner();
        Ok(Response::new(pb::AppResponse { message: "hello".into(), listeners: resp.listeners }))
    }
    async fn listeners(&self, req: Request<pb::ReqListeners>) -> Result<Response<pb::Response>, Status> {
        if let Canned::Legacy = self.canned {
            return Err(Status::unimplemented("unknown method listeners"));
        }
        self.answer(&req, vec!["127.0.0.1:5001".into()]).await
    }
    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::SessionStatus>, Status> {
        Err(Status::unimplemented("not canned"))
    }
    async fn list(&self, _: Request<pb::ListRequest>) -> Result<Response<pb::SessionList>, Status> {
        Err(Status::unimplemented("not canned"))
    }
}

/// A running test server; stops when dropped.
struct TestServer {
    addr: String,
    cert: TestCert,
    seen: Seen,
    _stop: oneshot::Sender<()>,
}

async fn serve(canned: Canned) -> TestServer {
    let cert = test_cert();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let limits = crate::ports::PortLimits::default();
    let incoming = tls::serve_tls_incoming(listener, tls::server_config(&cert.cert, &cert.key).unwrap(), &limits).await;
    let seen = Seen::default();
    let svc = ControlServer::new(Canner { canned, seen: seen.clone() });
    let (stop, stopped) = oneshot::channel::<()>();
    // Without tonic's `router` feature a server serves one service directly.
    let server = limits.server::<tls::TlsInfo>().serve_with_incoming_shutdown(svc, incoming, async {
        drop(stopped.await);
    });
    tokio::spawn(server);
    TestServer { addr, cert, seen, _stop: stop }
}

async fn client(server: &TestServer, token: Option<&str>, timeout: Duration) -> ControlClient {
    let channel = tls::connect(&server.addr, &Trust::File(server.cert.cert.clone()), BOUND).await.unwrap();
    ControlClient::new(channel, token, timeout).unwrap()
}

fn uid() -> Uid {
    Uid::from_u128(0x5c1_57ea)
}

fn key() -> Option<AppKey> {
    Some(AppKey([7; 16]))
}

#[tokio::test]
async fn tls13_only_server_is_reachable_and_req_answer_is_converted() {
    let server = serve(Canned::Echo).await;
    let client = client(&server, Some("tok"), BOUND).await;
    let got = client.req(uid(), Role::Prod, 2, 0, key()).await.unwrap();
    assert_eq!(got.listeners, [Addr::new("127.0.0.1", 5001), Addr::new("127.0.0.1", 5002)]);
    assert_eq!(got.prod_listeners, [Addr::new("10.0.0.9", 5000)]);
}

#[tokio::test]
async fn every_call_sends_its_arguments_and_reads_its_answer() {
    let server = serve(Canned::Echo).await;
    let client = client(&server, Some("tok"), BOUND).await;
    let remote = [Addr::new("192.0.2.1", 7000), Addr::new("::1", 7001)];
    assert_eq!(client.update(uid(), Role::Cons, &remote, Some(Credentials([1; 32]))).await.unwrap().listeners, remote);
    assert_eq!(client.hello(uid(), Role::Prod, &remote, key()).await.unwrap(), remote);
    assert_eq!(client.listeners(uid()).await.unwrap().listeners, [Addr::new("127.0.0.1", 5001)]);
    client.release(uid()).await.unwrap();
}

#[tokio::test]
async fn token_arrives_raw_in_authorization_metadata() {
    let server = serve(Canned::Echo).await;
    client(&server, Some("Ag4xyz"), BOUND).await.release(uid()).await.unwrap();
    client(&server, None, BOUND).await.release(uid()).await.unwrap();
    assert_eq!(*server.seen.lock().unwrap(), [Some("Ag4xyz".to_owned()), None]);
}

#[tokio::test]
async fn client_refuses_a_token_metadata_cannot_carry() {
    let server = serve(Canned::Echo).await;
    let channel = tls::connect(&server.addr, &Trust::File(server.cert.cert.clone()), BOUND).await.unwrap();
    assert_eq!(ControlClient::new(channel, Some("a\nb"), BOUND).unwrap_err(), TokenError::NotAscii);
}

#[tokio::test]
async fn server_error_code_comes_back_as_the_matching_error_code() {
    let server = serve(Canned::FailWithRateAsCode).await;
    let client = client(&server, None, BOUND).await;
    for code in ErrorCode::ALL {
        let rate = u32::try_from(convert::status_code(code) as i32).unwrap();
        let err = client.req(uid(), Role::Cons, 1, rate, None).await.unwrap_err();
        if code == ErrorCode::Unimplemented {
            // The rpc the server lacks, named (the cores read it back as UNIMPLEMENTED).
            assert_eq!(err, CallError::Unimplemented("req"));
        } else {
            assert_eq!(err, CallError::Status { code, message: "canned refusal".into() });
        }
    }
}

#[tokio::test]
async fn unknown_and_internal_codes_are_server_failures() {
    let server = serve(Canned::FailWithRateAsCode).await;
    let client = client(&server, None, BOUND).await;
    for code in [Code::Unknown, Code::Internal, Code::DataLoss] {
        let err = client.req(uid(), Role::Cons, 1, code as u32, None).await.unwrap_err();
        assert_eq!(err, CallError::Server { code, message: "canned refusal".into() });
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn deadline_expires_as_deadline_error() {
    let server = serve(Canned::Stall).await;
    let client = client(&server, None, Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    let err = client.req(uid(), Role::Prod, 1, 0, None).await.unwrap_err();
    assert_eq!(err, CallError::Deadline);
    assert!(err.is_transient());
    assert!(started.elapsed() < BOUND);
}

#[tokio::test]
async fn client_trusting_another_certificate_fails_clearly() {
    let server = serve(Canned::Echo).await;
    let stranger = test_cert();
    let err = tls::connect(&server.addr, &Trust::File(stranger.cert.clone()), BOUND).await.unwrap_err();
    let tls::TlsError::Connect { addr, reason } = &err else { panic!("{err}") };
    assert_eq!(*addr, server.addr);
    assert!(reason.contains("invalid peer certificate"), "{reason}");
}

#[tokio::test]
async fn malformed_address_in_an_answer_is_bad_answer() {
    let server = serve(Canned::BadAddress).await;
    let client = client(&server, None, BOUND).await;
    let err = client.req(uid(), Role::Cons, 1, 0, None).await.unwrap_err();
    assert!(matches!(err, CallError::BadAnswer(WireError::BadAddr(_))), "{err}");
}

#[tokio::test]
async fn listeners_on_a_server_without_the_rpc_is_unimplemented() {
    let server = serve(Canned::Legacy).await;
    let client = client(&server, None, BOUND).await;
    assert_eq!(client.listeners(uid()).await.unwrap_err(), CallError::Unimplemented("listeners"));
}

#[tokio::test]
async fn call_to_a_closed_port_is_unavailable() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{closed}")).unwrap().connect_lazy();
    let client = ControlClient::new(channel, None, BOUND).unwrap();
    let err = client.release(uid()).await.unwrap_err();
    let CallError::Unavailable(reason) = &err else { panic!("{err:?}") };
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn debug_output_redacts_the_token() {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let client = ControlClient::new(channel, Some("secret-token"), BOUND).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("secret-token") && shown.contains("<redacted>"), "{shown}");
}

#[test]
fn tonic_local_timeout_is_deadline_not_unavailable() {
    let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
    assert_eq!(status.code(), Code::Cancelled);
    assert_eq!(CallError::from_status("req", &status), CallError::Deadline);
}

#[test]
fn server_unavailable_is_an_answer_and_local_unavailable_a_transport_failure() {
    let answered = Status::unavailable("data server reattaching");
    let expected = CallError::Status { code: ErrorCode::Unavailable, message: "data server reattaching".into() };
    assert_eq!(CallError::from_status("req", &answered), expected);
    let local = Status::from_error(Box::new(tonic::ConnectError(Box::new(std::io::Error::other("reset")))));
    assert_eq!(CallError::from_status("req", &local), CallError::Unavailable("reset".into()));
}
