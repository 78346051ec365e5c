//! # scistream-tests — end-to-end tests and benchmarks
//!
//! The harness here starts the real binaries (`s2cs`, `s2ds`, `s2uc`, `appctrl`) on loopback with
//! certificates generated on the fly, reads their output, and stops every process it started
//! (also when a test panics). The tests live in `tests/tests/`; the protocol's own tests live
//! beside the code they test (`fsm`, `proto`, `sim`).

pub mod authsrv;
pub mod flood;
pub mod lab;
pub mod props;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// Builds the binaries once per test process and returns the path of `name`.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/<test> (a test) or target/<profile>/<bin> (a benchmark).
        let mut profile_dir = exe.parent().ok_or("no target dir")?.to_path_buf();
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir.pop();
        }
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into()));
        // Run from outside cargo (a benchmark), rustup would pick a toolchain per crate folder.
        if let Some(tc) = option_env!("RUSTUP_TOOLCHAIN") {
            cmd.env("RUSTUP_TOOLCHAIN", tc);
        }
        // Not the variables cargo set for this test process: a build script that watches one
        // (ring's reruns when CARGO_MANIFEST_DIR changes) would rebuild it and all that depends
        // on it here, and again at the next plain `cargo build` — every run.
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE"]
                    .contains(&name.as_ref())
                || ["CARGO_TARGET_TMPDIR", "CARGO_BIN_NAME", "CARGO_RUSTC_CURRENT_DIR"].contains(&name.as_ref())
            {
                cmd.env_remove(&var);
            }
        }
        cmd.args(["build", "--quiet", "-p", "scistream-bins", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build of the binaries failed".into());
        }
        Ok(profile_dir)
    });
    match dir {
        Ok(d) => d.join(name),
        Err(e) => panic!("{e}"),
    }
}

/// A scratch folder removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh folder under the system's temp dir.
    pub fn new(tag: &str) -> Self {
        static N: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut g = N.lock().unwrap_or_else(|e| e.into_inner());
            *g += 1;
            *g
        };
        let dir = std::env::temp_dir().join(format!("scistream-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `s2cs`, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Its control address, `127.0.0.1:PORT`.
    pub addr: String,
    /// The certificate clients trust (None when insecure).
    pub cert: Option<PathBuf>,
    stderr: PathBuf,
    /// Its command line but for `--port`, to start it again.
    cmdline: Vec<std::ffi::OsString>,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    /// Data ports FIRST-LAST.
    pub port_range: String,
    /// `--hello-timeout` seconds.
    pub hello_timeout: f64,
    /// Plain gRPC.
    pub insecure: bool,
    /// Extra flags.
    pub extra: Vec<String>,
    /// A data server node to link to instead of the embedded data server (`port_range` is
    /// then the node's, not used here).
    pub node: Option<NodeLink>,
    /// More nodes after `node` (`--s2ds` again), each trusting `node`'s control-server
    /// certificate ([`Node::start_trusting`]).
    pub more_nodes: Vec<NodeLink>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            port_range: free_range(20),
            hello_timeout: 30.0,
            insecure: false,
            extra: Vec::new(),
            node: None,
            more_nodes: Vec::new(),
        }
    }
}

/// What a control server needs to link to a [`Node`]: its address, its certificate, and the
/// certificate and key the node trusts the control server by.
#[derive(Debug, Clone)]
pub struct NodeLink {
    /// The node's link address.
    pub addr: String,
    /// The node's certificate.
    pub node_cert: PathBuf,
    /// The control server's certificate, which the node trusts.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// A running `s2ds` on loopback, killed on drop. Its folder holds its own certificate and the
/// one of the control server it trusts.
#[derive(Debug)]
pub struct Node {
    child: Option<Child>,
    /// Its link address, `127.0.0.1:PORT`.
    pub addr: String,
    dir: PathBuf,
    flags: Vec<String>,
    stderr: PathBuf,
}

fn gen_cert(dir: &Path) -> Result<()> {
    let out = Command::new(bin("s2ds"))
        .args(["gen-cert", "--listener-ip", "127.0.0.1", "--force", "--out-dir"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        bail!("gen-cert failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Reads the `<name> ready on ADDR` line a daemon prints, bounded.
pub(crate) fn ready_line(child: &mut Child, name: &str, stderr: &Path) -> Result<String> {
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    match line.trim().strip_prefix(&format!("{name} ready on ")) {
        Some(addr) => Ok(addr.to_owned()),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not start: {}", std::fs::read_to_string(stderr).unwrap_or_default())
        }
    }
}

impl Node {
    /// Starts `s2ds` on 127.0.0.1 handing out `port_range`, with `extra` flags, certificates
    /// made in a folder of `dir`; waits until it serves.
    pub fn start(dir: &Path, port_range: &str, extra: &[&str]) -> Result<Self> {
        Self::start_with(dir, port_range, extra, None)
    }

    /// As [`Node::start`], but the node trusts the control server `cs` links with (another
    /// node's [`Node::link`]): one control server, several nodes.
    pub fn start_trusting(dir: &Path, port_range: &str, extra: &[&str], cs: &NodeLink) -> Result<Self> {
        Self::start_with(dir, port_range, extra, Some(cs))
    }

    fn start_with(dir: &Path, port_range: &str, extra: &[&str], cs: Option<&NodeLink>) -> Result<Self> {
        static N: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut g = N.lock().unwrap_or_else(|e| e.into_inner());
            *g += 1;
            *g
        };
        let dir = dir.join(format!("s2ds-{n}"));
        for side in ["node", "cs"] {
            std::fs::create_dir_all(dir.join(side))?;
            match cs {
                Some(cs) if side == "cs" => {
                    std::fs::copy(&cs.cert, dir.join("cs/cert.pem"))?;
                    std::fs::copy(&cs.key, dir.join("cs/key.pem"))?;
                }
                _ => gen_cert(&dir.join(side))?,
            }
        }
        let mut flags = args(&["--port-range", port_range]);
        flags.extend(extra.iter().map(|s| (*s).to_owned()));
        let stderr = dir.join("s2ds.log");
        let mut node = Self { child: None, addr: "127.0.0.1:0".into(), dir, flags, stderr };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(bin("s2ds"));
        cmd.args(["--listen", &self.addr]);
        cmd.arg("--cert").arg(self.dir.join("node/cert.pem")).arg("--key").arg(self.dir.join("node/key.pem"));
        cmd.arg("--trust").arg(self.dir.join("cs/cert.pem"));
        cmd.args(&self.flags);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.stderr)?;
        cmd.stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().context("starting s2ds")?;
        self.addr = ready_line(&mut child, "s2ds", &self.stderr)?;
        self.child = Some(child);
        Ok(())
    }

    /// What a control server needs to link to it.
    pub fn link(&self) -> NodeLink {
        NodeLink {
            addr: self.addr.clone(),
            node_cert: self.dir.join("node/cert.pem"),
            cert: self.dir.join("cs/cert.pem"),
            key: self.dir.join("cs/key.pem"),
        }
    }

    /// Its log so far (every run of it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its OS process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The TCP ports it listens on now (its session listeners and its link), read with `ss`.
    pub fn listening_ports(&self) -> Result<Vec<u16>> {
        let Some(pid) = self.pid() else { return Ok(Vec::new()) };
        listening_ports_of(pid)
    }

    /// Its exit code once it exited within `limit` (`None` inside: ended by a signal);
    /// `Ok(None)` outside when it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Option<Option<i32>>> {
        exit_within(self.child.as_mut().context("not running")?, limit)
    }

    /// Where it serves metrics and health, as its log says (with `--metrics-addr`).
    pub fn metrics_addr(&self) -> Option<String> {
        metrics_addr_in(&self.log())
    }

    /// Sends it `signal` (`STOP`, `CONT`, ...) by its pid.
    pub fn signal(&self, signal: &str) -> Result<()> {
        send_signal(self.child.as_ref().context("not running")?.id(), signal)
    }

    /// Starts it again on the same address (after [`Node::kill9`]).
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.spawn()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The TCP ports process `pid` listens on, from `ss -ltnpH` (bounded in time).
pub fn listening_ports_of(pid: u32) -> Result<Vec<u16>> {
    let child = Command::new("ss").args(["-ltnpH"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let out = match wait_within(child, Duration::from_secs(10))? {
        Ok(out) => out,
        Err(out) => bail!("ss did not answer: {}", String::from_utf8_lossy(&out.stderr)),
    };
    let tag = format!("pid={pid},");
    let mut ports: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| l.split_whitespace().nth(3).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| p.parse().ok()))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// A producer application on 127.0.0.1 that reads each connection to its end, then sends it
/// all back and half-closes; returns its port. Its threads live as long as the test process.
pub fn echo_producer() -> u16 {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).is_ok() {
                    let _ = s.write_all(&all);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
            });
        }
    });
    port
}

/// A range of `n` ports unlikely to be in use: drawn per process from 20000–32767, below the
/// kernel's ephemeral ports (32768 and up), so no client connection sits in it.
pub fn free_range(n: u16) -> String {
    static NEXT: Mutex<u16> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    if *next == 0 {
        *next = 20_000 + (std::process::id() % 60) as u16 * 100;
    }
    let first = *next;
    *next += n + 1;
    if *next > 32_000 {
        *next = 20_000;
    }
    format!("{first}-{}", first + n - 1)
}

impl Server {
    /// Starts `s2cs` on 127.0.0.1 with a fresh certificate in `dir`, waits until it is ready.
    pub fn start(dir: &Path, opts: &ServerOpts) -> Result<Self> {
        static N: Mutex<u32> = Mutex::new(0);
        let n = {
            let mut g = N.lock().unwrap_or_else(|e| e.into_inner());
            *g += 1;
            *g
        };
        // Each server its own certificate: two facilities never share a key.
        let own = dir.join(format!("s2cs-{n}"));
        std::fs::create_dir_all(&own)?;
        let cert = if let Some(node) = &opts.node {
            // The certificate the node trusts.
            std::fs::copy(&node.cert, own.join("cert.pem"))?;
            std::fs::copy(&node.key, own.join("key.pem"))?;
            Some(own.join("cert.pem"))
        } else if opts.insecure {
            None
        } else {
            let out = Command::new(bin("s2cs"))
                .args(["gen-cert", "--listener-ip", "127.0.0.1", "--force", "--out-dir"])
                .arg(&own)
                .output()?;
            if !out.status.success() {
                bail!("gen-cert failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            Some(own.join("cert.pem"))
        };
        let stderr = dir.join(format!("s2cs-{n}.log"));
        let mut cmd = Command::new(bin("s2cs"));
        cmd.args(["--listener-ip", "127.0.0.1"]);
        match &opts.node {
            Some(node) => {
                cmd.args(["--s2ds", &node.addr, "--s2ds-trust"]).arg(&node.node_cert);
                for more in &opts.more_nodes {
                    cmd.args(["--s2ds", &more.addr, "--s2ds-trust"]).arg(&more.node_cert);
                }
                if opts.insecure {
                    cmd.arg("--insecure");
                }
            }
            None => {
                cmd.args(["--port-range", &opts.port_range]);
            }
        }
        cmd.args(["--hello-timeout", &opts.hello_timeout.to_string()]);
        match &cert {
            Some(c) => {
                cmd.arg("--server-crt").arg(c).arg("--server-key").arg(own.join("key.pem"));
            }
            None => {
                cmd.arg("--insecure");
            }
        }
        let cert = cert.filter(|_| !opts.insecure);
        cmd.args(&opts.extra);
        let cmdline: Vec<std::ffi::OsString> = cmd.get_args().map(ToOwned::to_owned).collect();
        std::fs::File::create(&stderr)?;
        let (child, addr) = Self::spawn(&cmdline, "0", &stderr)?;
        Ok(Self { addr, child, cert, stderr, cmdline })
    }

    fn spawn(cmdline: &[std::ffi::OsString], port: &str, stderr: &Path) -> Result<(Child, String)> {
        let log = std::fs::OpenOptions::new().append(true).open(stderr)?;
        let mut child = Command::new(bin("s2cs"))
            .args(cmdline)
            .args(["--port", port])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting s2cs")?;
        let addr = ready_line(&mut child, "s2cs", stderr)?;
        Ok((child, addr))
    }

    /// Kills it with SIGKILL, reaps it, and starts it again with the same flags on the same
    /// address; waits until it serves.
    pub fn kill9_and_restart(&mut self) -> Result<()> {
        self.kill9();
        self.restart()
    }

    /// Kills it with SIGKILL and reaps it; [`Server::restart`] starts it again.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again (after [`Server::kill9`]) with the same flags on the same address; waits
    /// until it serves.
    pub fn restart(&mut self) -> Result<()> {
        let port = self.addr.rsplit_once(':').map(|(_, p)| p.to_owned()).context("the address has a port")?;
        let (child, addr) = Self::spawn(&self.cmdline, &port, &self.stderr)?;
        (self.child, self.addr) = (child, addr);
        Ok(())
    }

    /// The flags a client needs to reach this server.
    pub fn client_flags(&self) -> Vec<String> {
        match &self.cert {
            Some(c) => vec!["--server-cert".into(), c.display().to_string()],
            None => vec!["--insecure".into()],
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns its exit code.
    pub fn terminate(mut self) -> Result<Option<i32>> {
        self.signal("TERM")?;
        // Its shutdown may take the drain, the connections' grace and the actors' stops.
        self.wait_exit(Duration::from_secs(20))?.ok_or_else(|| anyhow!("s2cs did not exit within 20 s of SIGTERM"))
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it `signal` (`HUP`, `TERM`, ...) by its pid.
    pub fn signal(&self, signal: &str) -> Result<()> {
        send_signal(self.child.id(), signal)
    }

    /// Its exit code once it exited within `limit` (`None` inside: ended by a signal);
    /// `Ok(None)` outside when it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Option<Option<i32>>> {
        exit_within(&mut self.child, limit)
    }

    /// Where it serves metrics and health, as its log says (with `--metrics-addr`).
    pub fn metrics_addr(&self) -> Option<String> {
        metrics_addr_in(&self.log())
    }
}

/// Sends `signal` (`HUP`, `TERM`, ...) to process `pid` (one the caller started), without
/// starting a `kill` process.
pub fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let sig: nix::sys::signal::Signal =
        format!("SIG{signal}").parse().with_context(|| format!("no signal {signal}"))?;
    let pid = i32::try_from(pid).context("a pid")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).with_context(|| format!("kill -{signal} {pid}"))
}

/// `child`'s exit code once it exited within `limit` (`None` inside: ended by a signal);
/// `Ok(None)` outside when it still runs.
pub fn exit_within(child: &mut Child, limit: Duration) -> Result<Option<Option<i32>>> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status.code()));
        }
        if start.elapsed() >= limit {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The metrics address a daemon's log announces.
pub fn metrics_addr_in(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("metrics and health served over HTTP"))?;
    let at = line.split_once("addr=")?.1;
    Some(at.split_whitespace().next()?.to_owned())
}

/// `GET path` over HTTP/1.0 from `addr` (5 s bounds): its status code and body.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    let code = all.split_whitespace().nth(1).context("no status line")?.parse()?;
    let body = all.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((code, body))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a binary to completion with a bounded time; returns its output.
pub fn run(name: &str, args: &[String], limit: Duration) -> Result<Output> {
    Background::start(name, args)?.wait(limit).with_context(|| format!("{name} {args:?}"))
}

/// A background command, killed on drop.
#[derive(Debug)]
pub struct Background(pub Option<Child>);

impl Background {
    /// Starts `name` with `args`, output captured.
    pub fn start(name: &str, args: &[String]) -> Result<Self> {
        let child = Command::new(bin(name)).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        Ok(Self(Some(child)))
    }

    /// Waits (bounded) for it to finish.
    pub fn wait(mut self, limit: Duration) -> Result<Output> {
        let child = self.0.take().expect("running");
        match wait_within(child, limit)? {
            Ok(out) => Ok(out),
            Err(out) => bail!("ran longer than {limit:?}; stderr: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

/// Waits for `child` at most `limit`: `Ok(output)` once it exits, `Err(output)` (what it wrote
/// until then) when it had to be killed. Its pipes are read while it runs (a child writing more
/// than a pipe holds would otherwise block until the limit), and its exit is seen as it happens,
/// not at the next turn of a polling loop (the benchmarks time commands through this).
pub fn wait_within(mut child: Child, limit: Duration) -> Result<Result<Output, Output>> {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<std::thread::JoinHandle<Vec<u8>>> {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut all = Vec::new();
                let _ = p.read_to_end(&mut all);
                all
            })
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let pid = child.id();
    let (exited, done) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = exited.send(());
        status
    });
    // Not reaped until the waiter's wait returns, so the pid is still the child's.
    let in_time = done.recv_timeout(limit).is_ok();
    if !in_time {
        let _ = send_signal(pid, "KILL");
    }
    let status = waiter.join().map_err(|_| anyhow::anyhow!("the waiting thread panicked"))??;
    let read =
        |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    let out = Output { status, stdout: read(stdout), stderr: read(stderr) };
    Ok(if in_time { Ok(out) } else { Err(out) })
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A pipe's lines, sent to a channel as they come (read on a thread).
pub fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Background {
    /// Its stdout's lines as they come; once only (the pipe is taken).
    pub fn stdout_lines(&mut self) -> Result<Receiver<String>> {
        let stdout = self.0.as_mut().and_then(|c| c.stdout.take()).context("no running command with piped stdout")?;
        Ok(lines(stdout))
    }
}

/// `--server-cert` flags trusting each of these servers' certificates.
pub fn trust(servers: &[&Server]) -> Vec<String> {
    servers
        .iter()
        .filter_map(|s| s.cert.as_ref())
        .flat_map(|c| ["--server-cert".to_string(), c.display().to_string()])
        .collect()
}

/// `s2uc --json request` between two facilities, running in the background, past the
/// `created` line it prints once the producer's facility admitted the session.
#[derive(Debug)]
pub struct Request {
    /// The `s2uc` process.
    pub process: Background,
    /// Its further stdout lines.
    pub lines: Receiver<String>,
    /// The `created` line, parsed.
    pub created: serde_json::Value,
    /// The session's uid, from it.
    pub uid: String,
    /// The session's app key (hex), from it.
    pub app_key: String,
}

impl Request {
    /// Starts `s2uc CLIENT_FLAGS --json request --prod-s2cs PROD --cons-s2cs CONS EXTRA` and
    /// reads its first line (within 20 s).
    pub fn start(client_flags: &[String], prod: &str, cons: &str, extra: &[&str]) -> Result<Self> {
        let mut all = client_flags.to_vec();
        all.extend(args(&["--json", "request", "--prod-s2cs", prod, "--cons-s2cs", cons]));
        all.extend(args(extra));
        let mut process = Background::start("s2uc", &all)?;
        let lines = process.stdout_lines()?;
        let first = lines.recv_timeout(Duration::from_secs(20)).context("s2uc announced no session")?;
        let created: serde_json::Value =
            serde_json::from_str(&first).with_context(|| format!("s2uc's first line {first:?}"))?;
        let field =
            |name: &str| created[name].as_str().map(str::to_owned).with_context(|| format!("no {name} in {first}"));
        let (uid, app_key) = (field("uid")?, field("app_key")?);
        Ok(Self { process, lines, created, uid, app_key })
    }

    /// Its next line, parsed as JSON, within `limit`.
    pub fn next_json(&self, limit: Duration) -> Result<serde_json::Value> {
        let line = self.lines.recv_timeout(limit).context("s2uc printed no further line")?;
        serde_json::from_str(&line).with_context(|| format!("s2uc printed {line:?}"))
    }
}

/// The JSON objects a `--json` command printed on stdout, one per line; a line that is not
/// JSON is an error.
pub fn json_lines(out: &Output) -> Result<Vec<serde_json::Value>> {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().map(|l| serde_json::from_str(l).with_context(|| format!("{l:?} is not JSON"))).collect()
}

/// The sessions `s2uc --json list` printed: one JSON array.
pub fn json_list(out: &Output) -> Result<Vec<serde_json::Value>> {
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str(text.trim()).with_context(|| format!("{text:?} is not JSON"))? {
        serde_json::Value::Array(all) => Ok(all),
        other => bail!("s2uc list --json printed {other}, not an array"),
    }
}

/// The first string `key` among `lines` (as [`json_lines`] reads them).
pub fn json_field(lines: &[serde_json::Value], key: &str) -> Result<String> {
    lines.iter().find_map(|v| v[key].as_str().map(str::to_owned)).with_context(|| format!("no {key} in {lines:?}"))
}

/// Writes an executable script at `path` by way of `install(1)`, so that this process never
/// holds the file open for writing: a process it forks at that instant (another test's) would
/// keep the descriptor until its exec, and running the script would fail "Text file busy".
pub fn write_script(path: &Path, text: &str) {
    let draft = path.with_extension("draft");
    std::fs::write(&draft, text).expect("writing a script");
    let ok = Command::new("install").arg("-m").arg("755").arg(&draft).arg(path).status();
    assert!(ok.is_ok_and(|s| s.success()), "install -m 755 {}", path.display());
    std::fs::remove_file(&draft).expect("removing a script's draft");
}

/// Strings from `&str`s.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_string()).collect()
}

/// Whether something listens on 127.0.0.1:`port`. Only a refusal (or no answer at all) means
/// no: a session's listener may accept the probe and reset it at once (its producer is not
/// there), and on a loaded machine that reset can land before the probe looks — it still
/// proves a listener.
pub fn listening(port: u16) -> bool {
    match std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(3)) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut),
    }
}

/// One whole two-facility setup as `s2uc request` and `appctrl` make it (REQ at both, the
/// producer's Hello retried until the REQ is there, UpdateTargets at both), left established;
/// returns how long it took. The producer's listener is `127.0.0.1:prod_port`.
pub async fn establish(
    p: &scistream_transport::client::ControlClient,
    c: &scistream_transport::client::ControlClient,
    uid: scistream_fsm::Uid,
    prod_port: u16,
) -> Result<Duration> {
    establish_to(p, c, uid, scistream_fsm::Addr::new("127.0.0.1", prod_port)).await
}

/// As [`establish`], the producer listening at `producer`.
pub async fn establish_to(
    p: &scistream_transport::client::ControlClient,
    c: &scistream_transport::client::ControlClient,
    uid: scistream_fsm::Uid,
    producer: scistream_fsm::Addr,
) -> Result<Duration> {
    let t = std::time::Instant::now();
    setup(p, c, uid, producer, 1).await?;
    Ok(t.elapsed())
}

/// As [`establish_to`], with `num_conn` connections; returns the consumer gateway's
/// listeners, where the consumer connects.
pub async fn setup(
    p: &scistream_transport::client::ControlClient,
    c: &scistream_transport::client::ControlClient,
    uid: scistream_fsm::Uid,
    producer: scistream_fsm::Addr,
    num_conn: u16,
) -> Result<Vec<scistream_fsm::Addr>> {
    setup_with(p, c, uid, producer, num_conn, Some(scistream_fsm::Credentials([7; 32]))).await
}

/// As [`setup`], with `creds` as the WAN leg's credentials (`None`: a plain leg, where the
/// gateways allow it).
pub async fn setup_with(
    p: &scistream_transport::client::ControlClient,
    c: &scistream_transport::client::ControlClient,
    uid: scistream_fsm::Uid,
    producer: scistream_fsm::Addr,
    num_conn: u16,
    creds: Option<scistream_fsm::Credentials>,
) -> Result<Vec<scistream_fsm::Addr>> {
    use scistream_fsm::{AppKey, Role};
    let key = AppKey(*uuid::Uuid::new_v4().as_bytes());
    let prod = vec![producer];
    let (pl, cl, h) = tokio::join!(
        p.req(uid, Role::Prod, num_conn, 0, Some(key)),
        c.req(uid, Role::Cons, num_conn, 0, Some(key)),
        hello_once_held(p, uid, &prod, key)
    );
    let (pl, cl, _h) = (pl?, cl?, h?);
    let (a, b) = tokio::join!(
        p.update(uid, Role::Prod, &pl.prod_listeners, creds),
        c.update(uid, Role::Cons, &pl.listeners, creds)
    );
    a?;
    b?;
    Ok(cl.listeners)
}

/// A producer's Hello for `uid` sent alongside its REQ: retried at once while the REQ has not
/// made the session yet (NOT_FOUND; the benchmarks time this, so no sleep), for at most 10 s,
/// so that a REQ that fails does not leave it spinning. Answers the Hello's last answer.
pub async fn hello_once_held(
    p: &scistream_transport::client::ControlClient,
    uid: scistream_fsm::Uid,
    prod: &[scistream_fsm::Addr],
    key: scistream_fsm::AppKey,
) -> Result<Vec<scistream_fsm::Addr>, scistream_transport::client::CallError> {
    use scistream_fsm::{ErrorCode, Role};
    use scistream_transport::client::CallError;
    let started = std::time::Instant::now();
    loop {
        match p.hello(uid, Role::Prod, prod, Some(key)).await {
            Err(CallError::Status { code: ErrorCode::NotFound, .. }) if started.elapsed() < Duration::from_secs(10) => {
                tokio::task::yield_now().await
            }
            other => return other,
        }
    }
}

/// The pids of processes whose command line names a session folder of `dir` (a backend's
/// runtime folder): its proxies.
pub fn proxies_in(dir: &Path) -> Vec<u32> {
    let needle = dir.join("session-").as_os_str().as_encoded_bytes().to_vec();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|p| {
            // Zombies (already dead, waiting for their reaper) do not count.
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|st| st.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')))
        })
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Resident memory of process `pid` in MB (NaN when it cannot be read).
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A TLS client of `server` (trusting its own certificate) that sends `token`, each call with
/// deadline `timeout`.
pub async fn connect_as(
    server: &Server,
    token: Option<&str>,
    timeout: Duration,
) -> Result<scistream_transport::client::ControlClient> {
    use scistream_transport::tls::{self, Trust};
    let cert = server.cert.clone().context("a TLS server")?;
    let channel = tls::connect(&server.addr, &Trust::File(cert), timeout).await?;
    Ok(scistream_transport::client::ControlClient::new(channel, token, timeout)?)
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::wait_within;

    fn sh(script: &str) -> std::process::Child {
        Command::new("sh").args(["-c", script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    #[test]
    fn a_child_writing_more_than_a_pipe_holds_is_read_while_it_runs() {
        // 1 MB on stdout, 300 KB on stderr: far beyond the 64 KB a pipe holds.
        let child = sh("head -c 1000000 /dev/zero; head -c 300000 /dev/zero >&2; exit 3");
        let out = wait_within(child, Duration::from_secs(20)).unwrap().expect("it exited by itself");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!((out.stdout.len(), out.stderr.len()), (1_000_000, 300_000));
    }

    #[test]
    fn a_child_past_its_limit_is_killed_and_what_it_wrote_kept() {
        let started = Instant::now();
        let child = sh("echo before; exec sleep 30");
        let out = wait_within(child, Duration::from_secs(2)).unwrap().expect_err("killed at its limit");
        assert!(started.elapsed() < Duration::from_secs(10), "not killed at its limit: {:?}", started.elapsed());
        assert_eq!(out.stdout, b"before\n");
        assert_eq!(out.status.code(), None, "ended by a signal");
    }
}
