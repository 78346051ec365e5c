//! The S2DS relay engine (plain TCP legs): per session, accept on its listeners and forward
//! each connection to a target, both ways, through fixed buffers.
//!
//! Contract:
//! - The connection accepted on listener `i` goes to `targets[i % targets.len()]` (SciStream
//!   1.2 maps remote listeners round-robin onto the session's connections); any number of
//!   connections per listener.
//! - Each direction copies through one buffer of [`BUF`] bytes: memory per relayed connection
//!   is fixed at `2 × BUF` plus the two sockets.
//! - A clean end of stream on one side is passed on as a half-close (FIN) on the other; the
//!   other direction keeps flowing until it ends too.
//! - A broken leg (a reset, an error) is passed on as a reset: the other end sees an error,
//!   never a clean end of stream, so no truncation goes unnoticed.
//! - Dropping the [`Relay`] (REL) closes the listeners and every connection at once.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use scistream_fsm::Addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Buffer per direction of a relayed connection.
pub const BUF: usize = 64 * 1024;

/// A session's traffic so far.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes from the accepting side to the target.
    pub bytes_in: AtomicU64,
    /// Bytes from the target back to the accepting side.
    pub bytes_out: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted in all.
    pub total: AtomicU64,
    /// Connections that ended with an error on either leg.
    pub failed: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Bytes from the accepting side to the target.
    pub bytes_in: u64,
    /// Bytes from the target back.
    pub bytes_out: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted in all.
    pub total: u64,
    /// Connections that ended with an error.
    pub failed: u64,
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    tasks: JoinSet<()>,
    counters: Arc<Counters>,
}

impl Relay {
    /// Starts relaying from `listeners` to `targets` (must not be empty).
    pub fn start(listeners: Vec<TcpListener>, targets: Vec<Addr>) -> Self {
        assert!(!targets.is_empty(), "a relay needs a target");
        let counters = Arc::new(Counters::default());
        let mut tasks = JoinSet::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let target = targets[i % targets.len()].clone();
            tasks.spawn(accept_loop(listener, target, counters.clone()));
        }
        Self { tasks, counters }
    }

    /// The session's traffic so far.
    pub fn traffic(&self) -> Traffic {
        self.counters.snapshot()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_loop(listener: TcpListener, target: Addr, counters: Arc<Counters>) {
    // Connections live in this task's set: aborting the accept loop drops them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    counters.total.fetch_add(1, Ordering::Relaxed);
                    counters.open.fetch_add(1, Ordering::Relaxed);
                    let (target, counters) = (target.clone(), counters.clone());
                    conns.spawn(async move {
                        if let Err(e) = relay_one(inbound, &target, &counters).await {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, %target, "relayed connection failed: {e}");
                        }
                        counters.open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Forwards one accepted connection to `target` until both directions end.
async fn relay_one(mut inbound: TcpStream, target: &Addr, counters: &Counters) -> io::Result<()> {
    let mut outbound = match TcpStream::connect((target.host.as_str(), target.port)).await {
        Ok(s) => s,
        Err(e) => {
            // The target is not there: the client must not see a clean, empty stream.
            let _ = inbound.set_zero_linger();
            return Err(e);
        }
    };
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    // Borrowed halves: dropping them sends nothing, so only an explicit shutdown sends a FIN.
    let result = {
        let (mut in_r, mut in_w) = inbound.split();
        let (mut out_r, mut out_w) = outbound.split();
        let up = pump(&mut in_r, &mut out_w, &counters.bytes_in);
        let down = pump(&mut out_r, &mut in_w, &counters.bytes_out);
        tokio::pin!(up, down);
        // A clean end of one direction waits for the other; an error ends both at once.
        tokio::select! {
            r = &mut up => match r { Ok(()) => down.await, e => e },
            r = &mut down => match r { Ok(()) => up.await, e => e },
        }
    };
    if result.is_err() {
        // Reset both legs: each end sees an error, never a clean end of a truncated stream.
        let _ = inbound.set_zero_linger();
        let _ = outbound.set_zero_linger();
    }
    result
}

/// Copies `from` into `to` until end of stream, then half-closes `to`.
async fn pump(from: &mut ReadHalf<'_>, to: &mut WriteHalf<'_>, count: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
