//! # The multi-host lab: hosts as Linux network namespaces
//!
//! A [`Lab`] builds five hosts on this machine, each a network namespace of its own, wired
//! with veth pairs (root needed):
//!
//! ```text
//!  facility A LAN 192.0.2.0/26       WAN 203.0.113.0/24 (a bridge in      facility B LAN 198.51.100.0/24
//!                                    a namespace of its own)
//!  prod 192.0.2.10 ── gwa 192.0.2.1 | 203.0.113.1 ──┬── 203.0.113.2 | gwb 198.51.100.1 ── cons 198.51.100.10
//!                                                    │
//!                                           user 203.0.113.100
//! ```
//!
//! The gateways forward nothing (`net.ipv4.ip_forward=0`): the only path between `prod` and
//! `cons` is through the data servers the gateways run. Each gateway still carries a route to
//! the other facility's LAN, so that disabled forwarding — not a missing route — is what
//! separates the applications (the lab's reachability test switches forwarding on for a moment
//! to show the path would otherwise exist). The applications' hosts route everything through
//! their own gateway; the user's host has only its WAN segment, which holds both gateways.
//!
//! Everything is named `ssl-<pid>-<n>-<host>` and removed on drop, also when a test panics:
//! the processes left in the lab's namespaces are killed by pid, then the namespaces deleted
//! (which deletes their veths and the bridge). Namespaces left by a lab whose process is gone
//! (killed with SIGKILL) are removed by the next [`Lab::new`]. Every command the lab runs is
//! bounded in time.

use std::ffi::OsStr;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

pub mod gateway;

/// How long any one command of the lab (`ip`, `ss`, `sysctl`, `kill`) may take.
const CMD_LIMIT: Duration = Duration::from_secs(10);

/// The producer's host, on facility A's LAN.
pub const PROD_IP: &str = "192.0.2.10";
/// Gateway A's LAN address.
pub const GWA_LAN_IP: &str = "192.0.2.1";
/// Gateway A's WAN address.
pub const GWA_WAN_IP: &str = "203.0.113.1";
/// Gateway B's WAN address.
pub const GWB_WAN_IP: &str = "203.0.113.2";
/// The user's host, on the WAN.
pub const USER_IP: &str = "203.0.113.100";
/// Gateway B's LAN address.
pub const GWB_LAN_IP: &str = "198.51.100.1";
/// The consumer's host, on facility B's LAN.
pub const CONS_IP: &str = "198.51.100.10";

/// A host of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The producer's host (facility A's LAN).
    Prod,
    /// Gateway A (facility A's LAN and the WAN).
    Gwa,
    /// Gateway B (the WAN and facility B's LAN).
    Gwb,
    /// The user's host (the WAN).
    User,
    /// The consumer's host (facility B's LAN).
    Cons,
}

impl Host {
    /// Every host.
    pub const ALL: [Self; 5] = [Self::Prod, Self::Gwa, Self::Gwb, Self::User, Self::Cons];

    /// Its short name, the last part of its namespace's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prod => "prod",
            Self::Gwa => "gwa",
            Self::Gwb => "gwb",
            Self::User => "user",
            Self::Cons => "cons",
        }
    }

    /// Its interfaces and their addresses (`lan0` on a LAN, `wan0` on the WAN).
    fn addresses(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Prod => &[("lan0", "192.0.2.10/26")],
            Self::Gwa => &[("lan0", "192.0.2.1/26"), ("wan0", "203.0.113.1/24")],
            Self::Gwb => &[("wan0", "203.0.113.2/24"), ("lan0", "198.51.100.1/24")],
            Self::User => &[("wan0", "203.0.113.100/24")],
            Self::Cons => &[("lan0", "198.51.100.10/24")],
        }
    }

    /// Its routes beyond the connected ones, as `ip route replace` arguments.
    fn routes(self) -> &'static [&'static [&'static str]] {
        match self {
            Self::Prod => &[&["default", "via", GWA_LAN_IP]],
            Self::Cons => &[&["default", "via", GWB_LAN_IP]],
            Self::Gwa => &[&["198.51.100.0/24", "via", GWB_WAN_IP]],
            Self::Gwb => &[&["192.0.2.0/26", "via", GWA_WAN_IP]],
            Self::User => &[],
        }
    }
}

/// Runs `program args` to completion within `limit` (killed past it); its output is captured
/// (the lab's commands print little: a pipe's buffer holds all of it).
pub fn bounded<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S], limit: Duration) -> Result<Output> {
    let program = program.as_ref();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    match crate::wait_within(child, limit)? {
        Ok(out) => Ok(out),
        Err(_) => bail!("{} ran longer than {limit:?}", describe(program, args)),
    }
}

fn describe<S: AsRef<OsStr>>(program: &OsStr, args: &[S]) -> String {
    let mut s = program.to_string_lossy().into_owned();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// [`bounded`] with [`CMD_LIMIT`], and an error unless it exits 0.
fn must<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output> {
    let out = bounded(program, args, CMD_LIMIT)?;
    if !out.status.success() {
        bail!("{} failed: {}", describe(program.as_ref(), args), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// Writes a line to the test process's standard error as it is, past the test harness's
/// capture (which takes only `eprintln!`), so it shows in `cargo test`'s output whether the
/// test passes or not; and appends it to the file `SCISTREAM_LAB_REPORT` names, if any, where
/// `tests/run.sh` reads whether the lab ran (the harness's own lines may interleave on stderr).
pub fn note(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    if let Some(path) = std::env::var_os("SCISTREAM_LAB_REPORT")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Deletes namespace `ns` after killing (SIGKILL, by pid) every process still in it.
fn remove_ns(ns: &str) {
    if let Ok(out) = bounded("ip", &["netns", "pids", ns], CMD_LIMIT) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.parse::<u32>().is_ok_and(|p| p != std::process::id()) {
                let _ = bounded("kill", &["-9", pid], CMD_LIMIT);
            }
        }
    }
    if let Err(e) = must("ip", &["netns", "del", ns]) {
        note(&format!("lab: could not remove namespace {ns}: {e:#}"));
    }
}

/// The namespaces of labs (`ssl-...`) present now, this process's and any other's.
pub fn lab_namespaces() -> Vec<String> {
    let Ok(out) = bounded("ip", &["netns", "list"], CMD_LIMIT) else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("ssl-"))
        .map(str::to_owned)
        .collect()
}

/// Removes the namespaces of labs whose process is gone.
fn reap_stale() {
    for ns in lab_namespaces() {
        let pid = ns.strip_prefix("ssl-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            note(&format!("lab: removing {ns}, left by process {pid} which is gone"));
            remove_ns(&ns);
        }
    }
}

/// The lab's hosts, built at [`Lab::new`] and removed on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    /// The namespaces made so far, in order.
    made: Vec<String>,
}

/// A listening TCP socket of a host, as `ss` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// Its local address.
    pub addr: SocketAddr,
    /// The name of the process holding it.
    pub process: String,
}

impl Lab {
    /// Whether a lab can be built here: root, and `ip netns` creating a namespace that runs a
    /// command and holds a veth and a bridge. `Err` says why not. `SCISTREAM_LAB=off` says no.
    pub fn available() -> Result<(), String> {
        static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
        AVAILABLE
            .get_or_init(|| {
                if std::env::var("SCISTREAM_LAB").is_ok_and(|v| v == "off") {
                    return Err("SCISTREAM_LAB=off".into());
                }
                let uid = bounded("id", &["-u"], CMD_LIMIT).map_err(|e| format!("id -u: {e:#}"))?;
                if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
                    return Err("not root (network namespaces need root)".into());
                }
                let ns = format!("ssl-{}-probe", std::process::id());
                must("ip", &["netns", "add", &ns]).map_err(|e| format!("{e:#}"))?;
                let probe = (|| -> Result<()> {
                    must("ip", &["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
                    must("ip", &["-n", &ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
                    must("ip", &["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
                    Ok(())
                })();
                remove_ns(&ns);
                probe.map_err(|e| format!("{e:#}"))
            })
            .clone()
    }

    /// Builds the lab's hosts (see the module's documentation). What it made is removed again
    /// if a step fails.
    pub fn new() -> Result<Self> {
        static N: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut g = N.lock().unwrap_or_else(|e| e.into_inner());
            *g += 1;
            *g
        };
        reap_stale();
        let mut lab = Self { prefix: format!("ssl-{}-{n}", std::process::id()), made: Vec::new() };
        lab.build()?;
        Ok(lab)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: Host) -> String {
        format!("{}-{}", self.prefix, host.name())
    }

    fn wan_ns(&self) -> String {
        format!("{}-wan", self.prefix)
    }

    /// Every namespace of this lab.
    pub fn namespaces(&self) -> &[String] {
        &self.made
    }

    fn build(&mut self) -> Result<()> {
        let wan = self.wan_ns();
        let all: Vec<String> = Host::ALL.iter().map(|h| self.ns(*h)).chain([wan.clone()]).collect();
        for ns in all {
            must("ip", &["netns", "add", &ns])?;
            self.made.push(ns.clone());
            must("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            // Explicitly: a new namespace's default depends on the kernel's settings.
            self.sysctl_in(&ns, "net.ipv4.ip_forward=0")?;
        }
        // The LANs: one veth pair each, `lan0` at both ends, made in the namespaces (never in
        // the root one).
        for (a, b) in [(Host::Prod, Host::Gwa), (Host::Gwb, Host::Cons)] {
            let (na, nb) = (self.ns(a), self.ns(b));
            must("ip", &["-n", &na, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", &nb])?;
        }
        // The WAN: a bridge in a namespace of its own, a port for each host on it.
        must("ip", &["-n", &wan, "link", "add", "br0", "type", "bridge"])?;
        must("ip", &["-n", &wan, "link", "set", "br0", "up"])?;
        for host in [Host::Gwa, Host::Gwb, Host::User] {
            let (port, ns) = (host.name(), self.ns(host));
            must("ip", &["-n", &wan, "link", "add", port, "type", "veth", "peer", "name", "wan0", "netns", &ns])?;
            must("ip", &["-n", &wan, "link", "set", port, "master", "br0"])?;
            must("ip", &["-n", &wan, "link", "set", port, "up"])?;
        }
        for host in Host::ALL {
            let ns = self.ns(host);
            for (dev, addr) in host.addresses() {
                must("ip", &["-n", &ns, "addr", "add", addr, "dev", dev])?;
                must("ip", &["-n", &ns, "link", "set", dev, "up"])?;
            }
        }
        // Routes once every link is up (a gateway's route needs its next hop's link).
        for host in Host::ALL {
            self.add_routes(host)?;
        }
        Ok(())
    }

    fn add_routes(&self, host: Host) -> Result<()> {
        let ns = self.ns(host);
        for route in host.routes() {
            let mut a = vec!["-n", &ns, "route", "replace"];
            a.extend_from_slice(route);
            must("ip", &a)?;
        }
        Ok(())
    }

    fn sysctl_in(&self, ns: &str, setting: &str) -> Result<()> {
        must("ip", &["netns", "exec", ns, "sysctl", "-qw", setting]).map(drop)
    }

    /// The pids of the processes in `host` now (`ip netns pids`).
    pub fn pids(&self, host: Host) -> Result<Vec<u32>> {
        let out = must("ip", &["netns", "pids", &self.ns(host)])?;
        Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect())
    }

    /// Switches IPv4 forwarding of `host` on or off.
    pub fn set_forwarding(&self, host: Host, on: bool) -> Result<()> {
        self.sysctl_in(&self.ns(host), if on { "net.ipv4.ip_forward=1" } else { "net.ipv4.ip_forward=0" })
    }

    /// Whether `host` forwards IPv4.
    pub fn forwarding(&self, host: Host) -> Result<bool> {
        let out = must("ip", &["netns", "exec", &self.ns(host), "sysctl", "-n", "net.ipv4.ip_forward"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "1")
    }

    /// Runs `f` on a thread of its own inside `host`'s network namespace: the sockets it makes
    /// belong to that host (and stay there when used from other threads afterwards).
    pub fn within<T: Send>(&self, host: Host, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.ns(host));
        let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|s| {
            let thread = s.spawn(move || -> Result<T> {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering {path}"))?;
                Ok(f())
            });
            match thread.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs `program args` inside `host` (`ip netns exec`) to completion within `limit`.
    pub fn run<S: AsRef<OsStr>>(&self, host: Host, program: &Path, args: &[S], limit: Duration) -> Result<Output> {
        let mut all: Vec<&OsStr> = vec!["netns".as_ref(), "exec".as_ref()];
        let ns = self.ns(host);
        all.push(ns.as_ref());
        all.push(program.as_os_str());
        all.extend(args.iter().map(AsRef::as_ref));
        bounded("ip", &all, limit)
    }

    /// Starts `program args` inside `host` (`ip netns exec`, which becomes the program: the
    /// child's pid is the program's), stdout piped, stderr appended to `log`.
    pub fn spawn<S: AsRef<OsStr>>(&self, host: Host, program: &Path, args: &[S], log: &Path) -> Result<NsChild> {
        spawn_in(&self.ns(host), program, args, log)
    }

    /// The TCP sockets listening in `host` (`ss -ltnp`).
    pub fn listening(&self, host: Host) -> Result<Vec<Listening>> {
        let out = must("ip", &["netns", "exec", &self.ns(host), "ss", "-Hltnp"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let addr = fields.get(3).with_context(|| format!("ss line {line:?}"))?;
                let addr: SocketAddr = addr.parse().with_context(|| format!("ss address {addr:?}"))?;
                let process = line
                    .split_once("((\"")
                    .and_then(|(_, r)| r.split_once('"'))
                    .map_or_else(String::new, |(name, _)| name.to_owned());
                Ok(Listening { addr, process })
            })
            .collect()
    }

    /// Cuts `host`'s WAN link (`ip link set wan0 down` in it).
    pub fn cut_wan(&self, host: Host) -> Result<()> {
        must("ip", &["-n", &self.ns(host), "link", "set", "wan0", "down"]).map(drop)
    }

    /// Restores `host`'s WAN link and the routes the cut took with it.
    pub fn restore_wan(&self, host: Host) -> Result<()> {
        must("ip", &["-n", &self.ns(host), "link", "set", "wan0", "up"])?;
        self.add_routes(host)
    }

    /// Cuts `host`'s LAN link (`ip link set lan0 down` in it): the other end of the veth
    /// loses its carrier, so the host and its LAN neighbour no longer reach each other. The
    /// host's own addresses stay local to it (a gateway's control server still reaches its
    /// data server's link on the gateway's LAN address).
    pub fn cut_lan(&self, host: Host) -> Result<()> {
        must("ip", &["-n", &self.ns(host), "link", "set", "lan0", "down"]).map(drop)
    }

    /// Restores `host`'s LAN link and every route the cut may have taken, at both ends.
    pub fn restore_lan(&self, host: Host) -> Result<()> {
        must("ip", &["-n", &self.ns(host), "link", "set", "lan0", "up"])?;
        for h in Host::ALL {
            self.add_routes(h)?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            remove_ns(ns);
        }
    }
}

fn spawn_in<S: AsRef<OsStr>>(ns: &str, program: &Path, args: &[S], log: &Path) -> Result<NsChild> {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {} in {ns}", program.display()))?;
    Ok(NsChild { child: Some(child), log: log.to_owned() })
}

/// A process inside a host of the lab, killed (SIGKILL, by its pid) and reaped on drop.
#[derive(Debug)]
pub struct NsChild {
    child: Option<Child>,
    log: PathBuf,
}

impl NsChild {
    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its stdout's lines as they come; once only.
    pub fn stdout_lines(&mut self) -> Result<Receiver<String>> {
        let out = self.child.as_mut().and_then(|c| c.stdout.take()).context("no stdout to read")?;
        Ok(crate::lines(out))
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for it to finish; its stdout unread so far and its exit status.
    pub fn wait(mut self, limit: Duration) -> Result<Output> {
        let child = self.child.take().context("not running")?;
        match crate::wait_within(child, limit)? {
            Ok(out) => Ok(out),
            Err(_) => bail!("ran longer than {limit:?}; stderr: {}", self.log()),
        }
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends it SIGTERM (by its pid) and waits for it to exit, at most `limit` (then kills
    /// it and fails); its exit code (None: ended by a signal).
    pub fn terminate(&mut self, limit: Duration) -> Result<Option<i32>> {
        let mut child = self.child.take().context("not running")?;
        must("kill", &["-TERM", &child.id().to_string()])?;
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("still running {limit:?} after SIGTERM; stderr: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A daemon (`s2cs`, `s2ds`) inside a host of the lab: started, and read up to its
/// `<name> ready on ADDR` line; killed on drop; restartable with the same flags.
#[derive(Debug)]
pub struct Daemon {
    ns: String,
    name: &'static str,
    args: Vec<String>,
    log: PathBuf,
    child: Option<NsChild>,
    /// The address it printed as ready on.
    pub addr: String,
}

impl Daemon {
    /// Starts binary `name` inside `host` with `args`, its stderr in `log`; waits (20 s at
    /// most) until it says it is ready.
    pub fn start(lab: &Lab, host: Host, name: &'static str, args: Vec<String>, log: &Path) -> Result<Self> {
        let mut d = Self { ns: lab.ns(host), name, args, log: log.to_owned(), child: None, addr: String::new() };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut child = spawn_in(&self.ns, &crate::bin(self.name), &self.args, &self.log)?;
        let mut inner = child.child.take().ok_or_else(|| anyhow!("not started"))?;
        let addr = crate::ready_line(&mut inner, self.name, &self.log);
        child.child = Some(inner);
        self.addr = addr?;
        self.child = Some(child);
        Ok(())
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(NsChild::pid)
    }

    /// Its log so far (every run of it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// Stops it with SIGTERM, within `limit`; its exit code.
    pub fn terminate(&mut self, limit: Duration) -> Result<Option<i32>> {
        let mut c = self.child.take().with_context(|| format!("{} is not running", self.name))?;
        c.terminate(limit).with_context(|| format!("{} in {}", self.name, self.ns))
    }

    /// Starts it again with the same flags (after [`Daemon::kill9`], or kills it first).
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn()
    }
}
