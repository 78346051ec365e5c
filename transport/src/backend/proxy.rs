//! HAProxy, Nginx and stunnel as data-server backends: one supervised child process per
//! session ([`child`](super::child)), its configuration rendered from the session.
//!
//! A session's life with a proxy backend:
//! 1. Its ports were bound by the data server when it reserved them (the proxy is not running
//!    yet: a session waiting for its Hello costs no process).
//! 2. UpdateTargets: its private folder is made (0700) under the runtime folder, with the
//!    session's certificate and key (0600) and the proxy's configuration; the proxy starts.
//!    HAProxy inherits the session's listening sockets (no instant where the ports are free for
//!    someone else to take); Nginx and stunnel bind them themselves, so the data server closes
//!    them and the proxy binds them again at once (docs/data-plane.md, "Backends").
//! 3. The proxy is checked before BridgesUp is reported: HAProxy answers on its admin socket,
//!    Nginx has written its pid file, stunnel holds every port; a proxy that exits or does not
//!    come up within [`UP_WITHIN`] fails the session with the last lines it logged.
//! 4. A proxy that exits later fails its session (reported, never silently gone).
//! 5. REL: SIGTERM to its process group, SIGKILL after [`GRACE`]; its folder is removed.
//!
//! Targets never change once a session's bridges run (the data server's core refuses an
//! UpdateTargets naming others), so a proxy is configured once and never reloaded.
//!
//! The WAN leg is TLS 1.3, mutual, pinned to the session: the proxy presents the session's
//! certificate and trusts exactly it (as its only CA: a self-signed certificate verifies only
//! against itself), as the native relay does.
//!
//! Rates: Nginx enforces a session's rate (per connection: the rate divided by the session's
//! connections, on the data coming back from the targets); HAProxy (before 2.7) and stunnel
//! cannot, and say so in the log when a session asks for one.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scistream_fsm::{Addr, Role};

use super::child::{self, Child, RuntimeDir, Spawn};
use super::{Backend, BoxFuture, Forwarding, Kind, Session, SetupError, StartError};
use crate::wan::SessionIdentity;

mod haproxy;
mod nginx;
mod stunnel;

/// How long a proxy has to come up.
pub const UP_WITHIN: Duration = Duration::from_secs(10);

/// How long a proxy has to exit after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// Which side of the WAN leg this gateway is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A producer's gateway: accepts the WAN leg (TLS server).
    Accept,
    /// A consumer's gateway: dials the WAN leg (TLS client).
    Dial,
}

/// The session's TLS files, when its WAN leg is TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Which side this gateway is.
    pub side: Side,
    /// The session's certificate (PEM); also the only certificate trusted.
    pub crt: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Both in one file (HAProxy's `crt`).
    pub pem: PathBuf,
}

/// One listener of a session and where it forwards.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Where it is bound.
    pub addr: SocketAddr,
    /// The descriptor number the proxy inherits it at (HAProxy).
    pub fd: i32,
    /// Its target.
    pub target: Addr,
}

/// What a proxy's configuration is rendered from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The session's private folder.
    pub dir: PathBuf,
    /// A path for a control socket of the session's (HAProxy's admin socket): in the runtime
    /// folder, short enough for a unix socket, never another session's.
    pub socket: PathBuf,
    /// Its listeners.
    pub listeners: Vec<Listener>,
    /// Its WAN leg's files; `None`: plain.
    pub tls: Option<TlsFiles>,
    /// Bytes per second per connection, where the proxy can hold it.
    pub rate_per_conn: Option<u64>,
}

/// How to tell a proxy is up.
#[derive(Debug, Clone)]
pub enum Ready {
    /// It answers `show info` on this admin socket (HAProxy).
    AdminSocket(PathBuf),
    /// It wrote its pid to this file (Nginx).
    PidFile(PathBuf),
    /// It holds a listening socket on every one of the session's ports (stunnel).
    Listening,
}

/// A proxy's configuration for one session, and how to start it.
#[derive(Debug)]
pub struct Rendered {
    /// The configuration file's name in the session folder, and its text.
    pub config: (&'static str, String),
    /// The arguments (the configuration file's path among them).
    pub args: Vec<OsString>,
    /// Whether it inherits the listeners (else they are closed before it starts).
    pub inherits: bool,
    /// How to tell it is up.
    pub ready: Ready,
}

/// What a proxy's checked installation is.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The program.
    pub program: PathBuf,
    /// Its version, as it prints it.
    pub version: String,
    /// Nginx's stream module, when it is a dynamic module to load.
    pub stream_module: Option<PathBuf>,
    /// Whether it runs on OpenSSL 3 (which can take a TLS peer's FIN without close_notify as
    /// an end of stream: `IGNORE_UNEXPECTED_EOF`).
    pub openssl3: bool,
}

/// A proxy backend.
#[derive(Debug)]
pub struct ProxyBackend {
    kind: Kind,
    installed: Installed,
    dir: RuntimeDir,
}

impl ProxyBackend {
    /// Finds and checks the proxy's program and version, prepares the runtime folder (ending
    /// what a previous run left in it), and has the proxy check a configuration like the ones
    /// sessions will get.
    /// `program` names the proxy's program when it is not the one on PATH.
    pub fn open(kind: Kind, runtime_dir: &Path, program: Option<&Path>) -> Result<Self, SetupError> {
        find(child::SETPRIV).ok_or(SetupError::Missing {
            kind,
            program: child::SETPRIV.into(),
            package: "util-linux",
        })?;
        let installed = match kind {
            Kind::Haproxy => haproxy::check(program)?,
            Kind::Nginx => nginx::check(program)?,
            Kind::Stunnel => stunnel::check(program)?,
            Kind::Native => unreachable!("the native backend runs no proxy"),
        };
        // HAProxy takes at most 97 bytes for a unix socket's path: the sessions' admin sockets,
        // in the runtime folder itself, must fit.
        let longest = RuntimeDir::socket_in(runtime_dir, u64::MAX);
        if kind == Kind::Haproxy && longest.as_os_str().len() > 97 {
            return Err(SetupError::RuntimeDir {
                path: runtime_dir.to_path_buf(),
                what: format!(
                    "too long for HAProxy's admin sockets in it ({} bytes of the 97 HAProxy takes for a socket's path): choose a shorter --runtime-dir",
                    longest.as_os_str().len()
                ),
            });
        }
        let dir = RuntimeDir::prepare(runtime_dir)?;
        let ended = dir.reap();
        if !ended.is_empty() {
            tracing::warn!(?ended, "ended proxies a previous run of this data server left");
        }
        let backend = Self { kind, installed, dir };
        backend.self_test()?;
        tracing::info!(
            backend = %kind,
            version = %backend.installed.version,
            program = %backend.installed.program.display(),
            runtime = %backend.dir.root().display(),
            "data server backend ready"
        );
        Ok(backend)
    }

    /// Renders a configuration with both TLS sides and lets the proxy check it (its own
    /// configuration test), so a proxy that cannot load the session's kind of key, or lacks a
    /// module, is found at start-up, not at the first session.
    fn self_test(&self) -> Result<(), SetupError> {
        let unfit = |what: String| SetupError::Unfit { kind: self.kind, what };
        let dir = self.dir.session("self-test").map_err(|e| unfit(format!("cannot make a folder to test in: {e}")))?;
        let result = (|| {
            let id = SessionIdentity::derive(&scistream_fsm::Credentials([7; 32])).map_err(|e| unfit(e.to_string()))?;
            let tls = write_tls(&dir, &id, Side::Accept).map_err(|e| unfit(e.to_string()))?;
            let plan = Plan {
                dir: dir.clone(),
                socket: dir.join("t.sock"),
                listeners: vec![Listener {
                    addr: SocketAddr::from(([127, 0, 0, 1], 1)),
                    fd: 3,
                    target: Addr { host: "127.0.0.1".into(), port: 2 },
                }],
                tls: Some(tls.clone()),
                rate_per_conn: Some(1_000_000),
            };
            let dial = Plan { tls: Some(TlsFiles { side: Side::Dial, ..tls }), ..plan.clone() };
            match self.kind {
                Kind::Haproxy => haproxy::test(&self.installed, &plan, &dial),
                Kind::Nginx => nginx::test(&self.installed, &plan, &dial),
                Kind::Stunnel => Ok(()),
                Kind::Native => Ok(()),
            }
            .map_err(unfit)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn render(&self, plan: &Plan) -> Rendered {
        match self.kind {
            Kind::Haproxy => haproxy::render(&self.installed, plan),
            Kind::Nginx => nginx::render(&self.installed, plan),
            Kind::Stunnel => stunnel::render(&self.installed, plan),
            Kind::Native => unreachable!("the native backend runs no proxy"),
        }
    }

    async fn launch(&self, s: Session) -> Result<Box<dyn Forwarding>, StartError> {
        super::precheck(&s.targets, &s.creds, s.allow_plain_wan)?;
        let identity = if !s.creds.is_none() {
            Some(SessionIdentity::derive(&s.creds)?)
        } else if self.kind == Kind::Stunnel {
            return Err(StartError::Unsupported(
                "stunnel only speaks TLS: a session without WAN credentials (a SciStream 1.2 client's) needs --type native, haproxy or nginx".into(),
            ));
        } else {
            None
        };
        let failed = |what: String| StartError::Proxy(format!("{}: {what}", self.kind));
        // The uid in 32 hex digits: HAProxy's admin socket path must stay short (see open).
        let name = format!("{:032x}", s.uid.0.as_u128());
        let dir = self.dir.session(&name).map_err(|e| failed(format!("cannot make its folder: {e}")))?;
        let socket = self.dir.socket();
        let outcome = self.run(s, identity, &dir, socket.clone()).await;
        if outcome.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(&socket);
        }
        outcome
    }

    /// Writes the session's files into `dir` and starts its proxy there.
    async fn run(
        &self,
        s: Session,
        identity: Option<SessionIdentity>,
        dir: &Path,
        socket: PathBuf,
    ) -> Result<Box<dyn Forwarding>, StartError> {
        let failed = |what: String| StartError::Proxy(format!("{}: {what}", self.kind));
        let dir = dir.to_path_buf();
        let side = match s.role {
            Role::Prod => Side::Accept,
            Role::Cons => Side::Dial,
        };
        let tls = match &identity {
            Some(id) => {
                Some(write_tls(&dir, id, side).map_err(|e| failed(format!("cannot write its TLS files: {e}")))?)
            }
            None => None,
        };
        // The proxy dials on its own: it is given the addresses the policy admits now,
        // resolved here, never a name to resolve again (the native relay checks each dial).
        let mut targets = Vec::with_capacity(s.targets.len());
        for t in &s.targets {
            match crate::relay::resolve_admitted(t, s.role).await {
                Ok(a) => targets.push(Addr { host: a.ip().to_string(), port: a.port() }),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(StartError::Policy(format!("{}: target {t}: {e}", self.kind)));
                }
                Err(e) => return Err(failed(format!("cannot resolve the target {t}: {e}"))),
            }
        }
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(s.listeners.len());
        let mut listeners = Vec::with_capacity(s.listeners.len());
        for (i, l) in s.listeners.into_iter().enumerate() {
            let addr = l.local_addr().map_err(|e| failed(e.to_string()))?;
            let std = l.into_std().map_err(|e| failed(e.to_string()))?;
            let fd = OwnedFd::from(std);
            listeners.push(Listener { addr, fd: fd.as_raw_fd(), target: targets[i % targets.len()].clone() });
            fds.push(fd);
        }
        let n = u64::try_from(listeners.len().max(1)).unwrap_or(1);
        let plan = Plan { dir: dir.clone(), socket, listeners, tls, rate_per_conn: s.rate.map(|r| (r / n).max(1)) };
        if s.rate.is_some() && self.kind != Kind::Nginx {
            tracing::warn!(uid = %s.uid, backend = %self.kind, "the session asks for a rate, which {} cannot enforce: it is forwarded at full speed", self.kind);
        }
        let rendered = self.render(&plan);
        let config = dir.join(rendered.config.0);
        child::write_private(&config, rendered.config.1.as_bytes())
            .map_err(|e| failed(format!("cannot write its configuration: {e}")))?;
        if !rendered.inherits {
            // Nginx and stunnel bind the ports themselves: free them just before it starts.
            fds.clear();
        }
        let log = dir.join("proxy.log");
        let child = Child::spawn(Spawn {
            program: self.installed.program.clone(),
            args: rendered.args,
            inherit: fds,
            log: log.clone(),
        })
        .await
        .map_err(|e| failed(format!("cannot start {}: {e}", self.installed.program.display())))?;
        let _ = child::write_private(&dir.join("pid"), child.pid().to_string().as_bytes());
        let ports: Vec<u16> = plan.listeners.iter().map(|l| l.addr.port()).collect();
        if let Err(why) = wait_up(&child, &rendered.ready, &ports).await {
            child.terminate(GRACE).await;
            let said = child::tail(&log, 5);
            return Err(failed(if said.is_empty() { why } else { format!("{why}; it said: {said}") }));
        }
        tracing::info!(uid = %s.uid, backend = %self.kind, pid = child.pid(), targets = ?s.targets, tls = plan.tls.is_some(), "forwarding");
        let poll = match (&rendered.ready, self.kind) {
            (Ready::AdminSocket(sock), Kind::Haproxy) => {
                Some(tokio::spawn(haproxy::count(sock.clone(), s.counters.clone(), child.watch())))
            }
            _ => None,
        };
        Ok(Box::new(ProxyForwarding { kind: self.kind, child: Arc::new(child), dir, socket: plan.socket, log, poll }))
    }
}

impl Backend for ProxyBackend {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn start(&self, session: Session) -> BoxFuture<'_, Result<Box<dyn Forwarding>, StartError>> {
        Box::pin(self.launch(session))
    }
}

/// Writes the session's certificate, key and both together, 0600, into `dir`.
fn write_tls(dir: &Path, id: &SessionIdentity, side: Side) -> std::io::Result<TlsFiles> {
    let (crt, key, pem) = (dir.join("session.crt"), dir.join("session.key"), dir.join("session.pem"));
    let (c, k) = (id.certificate_pem(), id.key_pem());
    child::write_private(&crt, c.as_bytes())?;
    child::write_private(&key, k.as_bytes())?;
    child::write_private(&pem, format!("{c}{k}").as_bytes())?;
    Ok(TlsFiles { side, crt, key, pem })
}

/// Polls until the proxy is up, has exited, or [`UP_WITHIN`] passed.
async fn wait_up(child: &Child, ready: &Ready, ports: &[u16]) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + UP_WITHIN;
    loop {
        if let Some(how) = child.exited() {
            return Err(format!("it exited at start ({how})"));
        }
        let up = match ready {
            Ready::AdminSocket(sock) => haproxy::admin(sock, "show info")
                .await
                .is_ok_and(|info| info.lines().any(|l| l.trim() == format!("Pid: {}", child.pid()))),
            Ready::PidFile(file) => std::fs::read_to_string(file).is_ok_and(|p| p.trim() == child.pid().to_string()),
            Ready::Listening => {
                let held = child::listening_ports(child.pid());
                ports.iter().all(|p| held.contains(p))
            }
        };
        if up {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("it did not come up within {UP_WITHIN:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Finds `program` on PATH, or in the system folders a daemon's PATH may lack.
pub fn find(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The proxy's program: `given`, or the first of `names` found on PATH.
pub fn locate(kind: Kind, given: Option<&Path>, names: &[&str], package: &'static str) -> Result<PathBuf, SetupError> {
    use std::os::unix::fs::PermissionsExt as _;
    match given {
        Some(p) if std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) => {
            Ok(p.to_path_buf())
        }
        Some(p) => Err(SetupError::Missing { kind, program: p.display().to_string(), package }),
        None => names.iter().find_map(|n| find(n)).ok_or_else(|| SetupError::Missing {
            kind,
            program: names[0].into(),
            package,
        }),
    }
}

/// How to find a proxy and read its version.
pub struct Probe {
    /// The backend.
    pub kind: Kind,
    /// Its name for people.
    pub name: &'static str,
    /// Its program's names, first found wins.
    pub programs: &'static [&'static str],
    /// The Debian packages to install, space-separated.
    pub package: &'static str,
    /// The flag that prints its version.
    pub flag: &'static str,
    /// What precedes the version in that output.
    pub marker: &'static str,
    /// The oldest version used.
    pub min: (u32, u32, u32),
}

/// A proxy found: its program, version and what its version flag printed.
pub struct Found {
    /// The program.
    pub program: PathBuf,
    /// Its version.
    pub version: (u32, u32, u32),
    /// What its version flag printed (stdout and stderr).
    pub said: String,
}

impl Probe {
    /// Finds the program (`given`, else on PATH) and checks its version is at least `min`.
    pub fn run(&self, given: Option<&Path>) -> Result<Found, SetupError> {
        let kind = self.kind;
        let program = locate(kind, given, self.programs, self.package)?;
        let (_, said) = output(&program, &[self.flag]).map_err(|what| SetupError::Unfit { kind, what })?;
        let v = version_after(&said, self.marker).ok_or_else(|| SetupError::Unfit {
            kind,
            what: format!("cannot read the version of {}: {said:?}", program.display()),
        })?;
        if v < self.min {
            let (m, name, package) = (self.min, self.name, self.package);
            return Err(SetupError::Unfit {
                kind,
                what: format!(
                    "{name} {}.{}.{} is too old: {}.{}.{} or later is needed (on Debian: apt-get install {package})",
                    v.0, v.1, v.2, m.0, m.1, m.2
                ),
            });
        }
        Ok(Found { program, version: v, said })
    }
}

impl Found {
    /// Its version as `x.y.z`.
    pub fn version_string(&self) -> String {
        format!("{}.{}.{}", self.version.0, self.version.1, self.version.2)
    }
}

/// Runs `program args` and returns what it printed on both outputs.
pub fn output(program: &Path, args: &[&str]) -> Result<(bool, String), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// The numeric version `x.y.z` parsed from the text after `marker`.
pub fn version_after(text: &str, marker: &str) -> Option<(u32, u32, u32)> {
    let at = text.find(marker)? + marker.len();
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut it = digits.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next().flatten().unwrap_or(0), it.next().flatten().unwrap_or(0)))
}

/// `host:port` for configuration files; an IPv6 literal in brackets (Nginx's form).
pub fn bracketed(addr: &Addr) -> String {
    if addr.host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{}]:{}", addr.host, addr.port)
    } else {
        format!("{}:{}", addr.host, addr.port)
    }
}

/// A session forwarded by a proxy process.
struct ProxyForwarding {
    kind: Kind,
    child: Arc<Child>,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    poll: Option<tokio::task::JoinHandle<()>>,
}

impl Forwarding for ProxyForwarding {
    fn ended(&mut self) -> Option<BoxFuture<'static, String>> {
        let mut rx = self.child.watch();
        let (kind, pid, log) = (self.kind, self.child.pid(), self.log.clone());
        Some(Box::pin(async move {
            let how = match rx.wait_for(Option::is_some).await {
                Ok(h) => h.clone().unwrap_or_default(),
                Err(_) => "lost".into(),
            };
            let said = child::tail(&log, 3);
            if said.is_empty() {
                format!("{kind} (pid {pid}) exited: {how}")
            } else {
                format!("{kind} (pid {pid}) exited: {how}; it said: {said}")
            }
        }))
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(p) = &self.poll {
                p.abort();
            }
            self.child.terminate(GRACE).await;
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!("cannot remove {}: {e}", self.dir.display());
            }
            let _ = std::fs::remove_file(&self.socket);
        })
    }

    fn describe(&self) -> String {
        format!("{} pid {}", self.kind, self.child.pid())
    }
}

impl Drop for ProxyForwarding {
    /// Dropped without [`Forwarding::stop`] (its owner failed): the proxy is killed at once and
    /// its folder removed, never left running.
    fn drop(&mut self) {
        if let Some(p) = &self.poll {
            p.abort();
        }
        if self.child.exited().is_none() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.child.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Gone already after stop(); after a death, the key it held goes too.
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests;
