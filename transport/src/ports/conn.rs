//! One accepted connection: its slot under the connection cap, the count of its calls in
//! flight, and the idle timer that closes it when it has none for too long.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

/// The calls of one connection: how many are in flight, and since when none is.
#[derive(Debug)]
pub(crate) struct Calls {
    in_flight: AtomicUsize,
    /// When the count last changed.
    changed: Mutex<Instant>,
}

impl Calls {
    fn new() -> Self {
        Self { in_flight: AtomicUsize::new(0), changed: Mutex::new(Instant::now()) }
    }

    /// Counts a call in flight until the guard drops.
    pub(crate) fn start(self: &Arc<Self>) -> CallGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        CallGuard(self.clone())
    }

    fn touch(&self) {
        *self.changed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// When the connection became idle, `None` while a call is in flight.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        let changed = *self.changed.lock().unwrap_or_else(|e| e.into_inner());
        (self.in_flight.load(Ordering::SeqCst) == 0).then_some(changed)
    }
}

/// One call in flight on its connection.
#[derive(Debug)]
pub(crate) struct CallGuard(Arc<Calls>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// What a call learns of its connection: the connect info of the connection inside (which
/// [`super::CallLayer`] hands on to the service) and the connection's call count.
#[derive(Debug, Clone)]
pub struct ConnInfo<I> {
    /// The inner connection's connect info.
    pub inner: I,
    pub(crate) calls: Arc<Calls>,
}

/// An accepted connection within the port's limits: it holds its slot under the connection
/// cap until it drops, and fails its reads (so the HTTP/2 server closes it) once no call has
/// been in flight for the idle timeout.
#[derive(Debug)]
pub struct Conn<T> {
    io: T,
    peer: SocketAddr,
    pub(super) calls: Arc<Calls>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    _slot: super::Slot,
}

impl<T> Conn<T> {
    pub(crate) fn new(io: T, peer: SocketAddr, slot: super::Slot, idle_timeout: Duration) -> Self {
        let calls = Arc::new(Calls::new());
        let idle = Box::pin(tokio::time::sleep(idle_timeout));
        Self { io, peer, calls, idle_timeout, idle, _slot: slot }
    }

    /// The connection inside.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Whether the idle timeout has run out; otherwise the timer is set to wake the reader
    /// when it may next run out.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match self.calls.idle_since() {
                Some(since) if now >= since + self.idle_timeout => return true,
                Some(since) => self.idle.as_mut().reset(since + self.idle_timeout),
                // A call in flight: look again one timeout later (its end moves `since`).
                None => self.idle.as_mut().reset(now + self.idle_timeout),
            }
        }
        false
    }
}

impl<T: Connected> Connected for Conn<T> {
    type ConnectInfo = ConnInfo<T::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo { inner: self.io.connect_info(), calls: self.calls.clone() }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.idle_expired(cx) {
            tracing::debug!(peer = %self.peer, timeout = ?self.idle_timeout, "idle control connection closed");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no call within the idle timeout")));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
