//! Zero-copy forwarding between two plain TCP sockets on Linux: `splice(2)` through a pipe,
//! so the bytes never enter user space. The pipe holds at most [`PIPE`] bytes: memory per
//! direction is that pipe, whatever the traffic.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::Bucket;

/// Bytes moved per splice call (the default pipe capacity).
pub(super) const PIPE: usize = 64 * 1024;

/// Moves `from`'s bytes into `to` until end of stream (then half-closes `to`), paced by
/// `bucket`, counting what reached `to`.
pub(super) async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    count: [&AtomicU64; 2],
    bucket: Option<&Bucket>,
) -> io::Result<()> {
    let (pipe_r, pipe_w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        // Socket to pipe: as much as is there, up to a pipe's worth.
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || Ok(splice(from, None, &pipe_w, None, PIPE, flags)?)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
        }
        if let Some(b) = bucket {
            b.take(n).await;
        }
        // Pipe to socket: all of it.
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || Ok(splice(&pipe_r, None, to, None, left, flags)?)) {
                Ok(m) => {
                    left -= m;
                    for c in count {
                        c.fetch_add(m as u64, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}
