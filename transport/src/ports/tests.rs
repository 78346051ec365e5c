//! Tests of `ports`: the connection cap closes the excess at accept and frees its slot when a
//! connection goes; the idle timeout closes a connection without calls and spares one with a
//! call in flight; the call cap answers the excess RESOURCE_EXHAUSTED; refusals are logged
//! once per window.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_stream::StreamExt as _;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::TcpConnectInfo;
use tower_layer::Layer as _;

use super::*;

/// Bound on every wait in these tests: generous, but a hang fails instead of blocking.
const BOUND: Duration = Duration::from_secs(5);

fn limits(max_connections: usize, idle_timeout: Duration) -> PortLimits {
    PortLimits { max_connections, idle_timeout, ..PortLimits::DEFAULT }
}

async fn listen(limits: &PortLimits) -> (SocketAddr, Incoming<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_tcp_incoming(listener, limits))
}

/// Whether the server closed `client`'s connection within `limit` (EOF or reset on read).
async fn closed_within(client: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(limit, client.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_accept_and_a_slot_frees_when_one_goes() {
    let (addr, mut incoming) = listen(&limits(2, Duration::from_secs(60))).await;
    let mut held = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(TcpStream::connect(addr).await.unwrap());
        held.push(tokio::time::timeout(BOUND, incoming.next()).await.unwrap().unwrap().unwrap());
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut third, BOUND).await, "a third connection over a cap of 2 stays open");
    assert!(!closed_within(&mut clients[0], Duration::from_millis(200)).await, "a connection within the cap closed");

    drop(held.pop());
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let conn = tokio::time::timeout(BOUND, incoming.next()).await.expect("a freed slot is used").unwrap().unwrap();
    fourth.write_all(b"x").await.unwrap();
    assert!(!closed_within(&mut fourth, Duration::from_millis(200)).await, "the connection in the freed slot closed");
    drop(conn);
}

#[tokio::test]
async fn a_connection_without_calls_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let (addr, mut incoming) = listen(&limits(8, idle)).await;
    // Before the connection exists, so its timer cannot have started earlier.
    let start = tokio::time::Instant::now();
    let _client = TcpStream::connect(addr).await.unwrap();
    let mut conn = tokio::time::timeout(BOUND, incoming.next()).await.unwrap().unwrap().unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(BOUND, conn.read(&mut buf)).await.expect("the idle timeout ends the read");
    assert_eq!(read.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert!(
        start.elapsed() >= idle - Duration::from_millis(20),
        "closed after {:?}, before the timeout",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_call_in_flight_keeps_its_connection_past_the_idle_timeout_and_its_end_starts_the_timer() {
    let idle = Duration::from_millis(300);
    let (addr, mut incoming) = listen(&limits(8, idle)).await;
    let _client = TcpStream::connect(addr).await.unwrap();
    let mut conn = tokio::time::timeout(BOUND, incoming.next()).await.unwrap().unwrap().unwrap();
    let call = conn.calls.start();
    let mut buf = [0u8; 8];
    assert!(
        tokio::time::timeout(idle * 3, conn.read(&mut buf)).await.is_err(),
        "the connection closed with a call in flight"
    );
    let ended = tokio::time::Instant::now();
    drop(call);
    let read = tokio::time::timeout(BOUND, conn.read(&mut buf)).await.expect("idle once the call ended");
    assert_eq!(read.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert!(ended.elapsed() >= idle - Duration::from_millis(20), "closed {:?} after the call", ended.elapsed());
}

#[test]
fn refusals_are_logged_once_per_window_with_the_count_held_back() {
    let t = Throttled::default();
    assert_eq!(t.note(), Some(0));
    assert_eq!(t.note(), None);
    assert_eq!(t.note(), None);
    // Back-date the last line: the next refusal is logged with the two held back.
    t.state.lock().unwrap().0 = Some(Instant::now() - LOG_EVERY);
    assert_eq!(t.note(), Some(2));
}

/// A service whose calls never end.
#[derive(Clone)]
struct Forever;

impl Service<Request<()>> for Forever {
    type Response = Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        Box::pin(std::future::pending())
    }
}

fn grpc_status(response: &Response<TrackedBody<tonic::body::Body>>) -> Option<&str> {
    response.headers().get("grpc-status").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn calls_beyond_the_cap_are_answered_resource_exhausted_and_a_slot_frees_when_a_call_ends() {
    let mut svc = CallLayer::<TcpConnectInfo>::new(2).layer(Forever);
    let first = svc.call(Request::new(()));
    let second = svc.call(Request::new(()));
    let third = tokio::time::timeout(BOUND, svc.call(Request::new(()))).await.unwrap().unwrap();
    // RESOURCE_EXHAUSTED is gRPC code 8.
    assert_eq!(grpc_status(&third), Some("8"));
    drop(first);
    let mut fourth = svc.call(Request::new(()));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut fourth).await.is_err(),
        "the call in the freed slot was answered instead of reaching the service"
    );
    drop(second);
}

#[tokio::test]
async fn a_call_is_counted_on_its_connection_and_sees_the_inner_connect_info() {
    let (addr, mut incoming) = listen(&limits(8, Duration::from_secs(60))).await;
    let _client = TcpStream::connect(addr).await.unwrap();
    let conn = tokio::time::timeout(BOUND, incoming.next()).await.unwrap().unwrap().unwrap();
    let info = tonic::transport::server::Connected::connect_info(&conn);

    /// Answers at once, saying whether the call saw a `TcpConnectInfo` and no `ConnInfo`.
    #[derive(Clone)]
    struct Sees;
    impl Service<Request<()>> for Sees {
        type Response = Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: Request<()>) -> Self::Future {
            let ok = req.extensions().get::<TcpConnectInfo>().is_some()
                && req.extensions().get::<ConnInfo<TcpConnectInfo>>().is_none();
            let mut response = Response::new(tonic::body::Body::empty());
            response.headers_mut().insert("sees", if ok { "yes" } else { "no" }.parse().unwrap());
            std::future::ready(Ok(response))
        }
    }

    let mut svc = CallLayer::<TcpConnectInfo>::new(8).layer(Sees);
    let mut req = Request::new(());
    req.extensions_mut().insert(info);
    let response = svc.call(req).await.unwrap();
    assert_eq!(response.headers().get("sees").unwrap(), "yes");
    assert!(conn.calls.idle_since().is_none(), "the call is not counted while its response lives");
    drop(response);
    assert!(conn.calls.idle_since().is_some(), "the call is still counted after its response ended");
}
