//! Data-server backends: what forwards a session's connections once its bridges start.
//!
//! The data server's core decides when a session listens, starts forwarding and stops; a
//! [`Backend`] carries out "forward these listeners to these targets, the WAN leg pinned to
//! these credentials" and "stop". Four implement it, chosen with `--type`:
//!
//! - [`Kind::Native`]: this crate's relay engine ([`crate::relay`]), in process.
//! - [`Kind::Haproxy`], [`Kind::Nginx`], [`Kind::Stunnel`]: the proxies SciStream 1.2 runs, as
//!   one supervised child process per session ([`proxy`]), configured from the session:
//!   its listeners, its targets (listener `i` to target `i % targets`, as the native relay),
//!   its WAN leg as mutual TLS 1.3 pinned to the session's certificate (the same certificate
//!   the native relay derives, [`crate::wan::SessionIdentity`]), so any backend at one gateway
//!   interoperates with any at the other.
//!
//! Neither the core nor the actors know which backend runs: they hand a [`Session`] to
//! [`Backend::start`] and get a [`Forwarding`] back, which they stop on release and watch for
//! an end of its own (a child that died fails its session; nothing claims to forward with
//! nothing behind it).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use scistream_fsm::{Addr, Credentials, ErrorCode, Role, Uid};
use tokio::net::TcpListener;

use crate::relay::Counters;
use crate::wan::WanError;

pub mod child;
pub mod native;
pub mod proxy;

/// A boxed future, as the backends' object-safe methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which backend forwards sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    /// The in-process relay engine.
    #[default]
    Native,
    /// HAProxy, one process per session.
    Haproxy,
    /// Nginx with its stream module, one process per session.
    Nginx,
    /// stunnel, one process per session (TLS WAN legs only).
    Stunnel,
}

impl Kind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [Self; 4] = [Self::Native, Self::Haproxy, Self::Nginx, Self::Stunnel];

    /// The name `--type` takes and logs show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Haproxy => "haproxy",
            Self::Nginx => "nginx",
            Self::Stunnel => "stunnel",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    /// Case-insensitive; SciStream 1.2's spellings (`HaproxySubprocess`, `NginxSubprocess`,
    /// `StunnelSubprocess`) name the same backends.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let name = lower.strip_suffix("subprocess").unwrap_or(&lower);
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            format!("unknown data server type {s:?}: use native, haproxy, nginx or stunnel (1.2's HaproxySubprocess, NginxSubprocess and StunnelSubprocess are accepted)")
        })
    }
}

/// One session handed to a backend: its bound listeners, where each forwards, and how its WAN
/// leg is secured.
#[derive(Debug)]
pub struct Session {
    /// The session.
    pub uid: Uid,
    /// Its listeners, bound when the data server reserved its ports.
    pub listeners: Vec<TcpListener>,
    /// Its targets: listener `i` forwards to `targets[i % targets.len()]`.
    pub targets: Vec<Addr>,
    /// The end this facility serves: a producer's gateway accepts the WAN leg, a consumer's
    /// dials it.
    pub role: Role,
    /// The WAN leg's credentials (all zero: none, a SciStream 1.2 client's session).
    pub creds: Credentials,
    /// Whether a session without credentials may have a plain WAN leg.
    pub allow_plain_wan: bool,
    /// The session's rate in bytes per second, across its connections; `None`: unlimited.
    pub rate: Option<u64>,
    /// Where its traffic is counted (what the native relay and HAProxy report).
    pub counters: Arc<Counters>,
}

/// What every backend refuses whatever it is: a session without targets, and one without
/// credentials where plain WAN legs are not allowed. The data server asks before it hands a
/// session's listeners over (so a corrected start may follow); each backend asks again.
pub fn precheck(targets: &[Addr], creds: &Credentials, allow_plain_wan: bool) -> Result<(), StartError> {
    if targets.is_empty() {
        return Err(StartError::NoTargets);
    }
    if creds.is_none() && !allow_plain_wan {
        return Err(WanError::PlainNotAllowed.into());
    }
    Ok(())
}

/// Why a backend could not start forwarding a session.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The session has no targets.
    #[error("no targets to forward to")]
    NoTargets,
    /// Its WAN leg cannot be secured (no credentials and plain legs not allowed, or a bad
    /// identity).
    #[error(transparent)]
    Wan(#[from] WanError),
    /// This backend cannot serve what the session needs.
    #[error("{0}")]
    Unsupported(String),
    /// A target the facility's policy does not admit (checked again where the proxy is told
    /// where to dial).
    #[error("{0}")]
    Policy(String),
    /// The proxy did not start, or did not come up.
    #[error("{0}")]
    Proxy(String),
}

impl StartError {
    /// The code the session is refused with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoTargets => ErrorCode::InvalidArgument,
            Self::Wan(WanError::PlainNotAllowed) | Self::Unsupported(_) => ErrorCode::FailedPrecondition,
            Self::Policy(_) => ErrorCode::PermissionDenied,
            Self::Wan(_) | Self::Proxy(_) => ErrorCode::Aborted,
        }
    }
}

/// Why a backend cannot be used at all (found at start-up: the daemon refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The proxy's program is not installed.
    #[error("--type {kind}: `{program}` is not installed (or not on PATH); on Debian: apt-get install {package}")]
    Missing {
        /// The backend.
        kind: Kind,
        /// The program looked for.
        program: String,
        /// The Debian packages that provide what is missing, space-separated.
        package: &'static str,
    },
    /// The installed version is too old, or lacks something the backend needs.
    #[error("--type {kind}: {what}")]
    Unfit {
        /// The backend.
        kind: Kind,
        /// What is wrong, and what to install.
        what: String,
    },
    /// The runtime folder cannot be used.
    #[error("runtime folder {path}: {what}")]
    RuntimeDir {
        /// The folder.
        path: std::path::PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// A session being forwarded; [`Forwarding::stop`] ends it.
pub trait Forwarding: Send + 'static {
    /// A future that resolves once forwarding ended on its own, with why (a proxy that died);
    /// only the first call's gets it. `None` for a backend that cannot end on its own (there is
    /// nothing to watch).
    fn ended(&mut self) -> Option<BoxFuture<'static, String>>;

    /// Stops forwarding: closes the listeners and every connection, and returns once its ports
    /// can be bound again (a child process has exited).
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;

    /// What runs it, for logs (`native`, `haproxy pid 1234`).
    fn describe(&self) -> String;
}

/// A data-server backend.
pub trait Backend: Send + Sync + 'static {
    /// Which one.
    fn kind(&self) -> Kind;

    /// Starts forwarding `session`; returns once it forwards (a proxy is up, listening on the
    /// session's ports), or why it cannot.
    fn start(&self, session: Session) -> BoxFuture<'_, Result<Box<dyn Forwarding>, StartError>>;
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.kind())
    }
}

/// The backend `kind`, ready to use: the native relay, or a proxy whose program and version
/// were checked, with its private runtime folder under `runtime_dir` (created 0700; what a
/// previous run left there, processes and files, is ended and removed first). `program`
/// names the proxy's program when it is not the one on PATH.
pub fn open(kind: Kind, runtime_dir: &Path, program: Option<&Path>) -> Result<Arc<dyn Backend>, SetupError> {
    match kind {
        Kind::Native => Ok(Arc::new(native::Native)),
        _ => Ok(Arc::new(proxy::ProxyBackend::open(kind, runtime_dir, program)?)),
    }
}

#[cfg(test)]
mod tests;
