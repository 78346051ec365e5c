//! What the control-plane tests share: a TLS client of a started server, fresh session
//! identities, bounded waits, a raw `s2cs` for the flags the harness always sets, and the lock
//! that lets the timed test run alone.

use std::fmt::Debug;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use scistream_fsm::{Addr, AppKey, Credentials, ErrorCode, Uid};
use scistream_tests::{Server, bin, http_get};
use scistream_transport::client::{CallError, ControlClient, SessionStatus};
use scistream_transport::tls::{self, Trust};

/// Deadline of one control call from the tests (a producer's `req` gets its own).
pub(crate) const CALL: Duration = Duration::from_secs(10);

static SERIAL: RwLock<()> = RwLock::new(());

/// Taken by every test: tests run concurrently, except with the one holding [`exclusive`].
pub(crate) fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

/// Taken by a test that times a call: no other test of this file runs meanwhile.
pub(crate) fn exclusive() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}

/// A runtime for the in-test clients (the servers are other processes).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// `fut`'s output, or a panic naming `what` once `limit` has passed.
pub(crate) async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Polls `done` every 20 ms until it holds; panics naming `what` once `limit` has passed.
pub(crate) fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: still not so after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TLS client of `server` that trusts the server's own certificate.
pub(crate) async fn client(server: &Server) -> ControlClient {
    connect(&server.addr, server.cert.as_deref().expect("the tests' servers speak TLS")).await
}

/// A TLS client of the server at `addr` that trusts the certificate in `cert`.
pub(crate) async fn connect(addr: &str, cert: &Path) -> ControlClient {
    connect_as(addr, cert, None).await
}

/// A TLS client of the server at `addr` (trusting `cert`) that sends `token`.
pub(crate) async fn connect_as(addr: &str, cert: &Path, token: Option<&str>) -> ControlClient {
    let channel = within(CALL, "TLS connect", tls::connect(addr, &Trust::File(cert.to_owned()), CALL))
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    ControlClient::new(channel, token, CALL).expect("a client with a sendable token")
}

/// A uid no other session of this test process has.
pub(crate) fn fresh_uid() -> Uid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Uid::from_u128((u128::from(std::process::id()) << 64) | u128::from(n) | (0x5c15_u128 << 48))
}

/// The `n`th app key: distinct per `n` (secrecy is not what these tests are about).
pub(crate) fn key(n: u64) -> AppKey {
    AppKey((u128::from(n) ^ 0xa5a5_0000_0000_0000_1234_5678_9abc_def0).to_le_bytes())
}

/// The `n`th set of data credentials.
pub(crate) fn creds(n: u64) -> Credentials {
    let mut c = [0u8; 32];
    c[..8].copy_from_slice(&n.to_le_bytes());
    c[31] = 0xc5;
    Credentials(c)
}

/// Ports of a listener list.
pub(crate) fn ports(addrs: &[Addr]) -> Vec<u16> {
    addrs.iter().map(|a| a.port).collect()
}

/// The ports of a `FIRST-LAST` range from [`scistream_tests::free_range`].
pub(crate) fn range_ports(range: &str) -> RangeInclusive<u16> {
    let (a, b) = range.split_once('-').expect("FIRST-LAST");
    a.parse().expect("first port")..=b.parse().expect("last port")
}

/// The port of a `host:port` control address.
pub(crate) fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("host:port")
}

/// The protocol code a call was refused with; panics on success or on any other failure.
pub(crate) fn refusal<T: Debug>(what: &str, result: Result<T, CallError>) -> ErrorCode {
    refusal_message(what, result).0
}

/// The protocol code and message a call was refused with; panics on success or on any other
/// failure.
pub(crate) fn refusal_message<T: Debug>(what: &str, result: Result<T, CallError>) -> (ErrorCode, String) {
    match result {
        Err(CallError::Status { code, message }) => (code, message),
        other => panic!("{what}: expected a refusal with a protocol code, got {other:?}"),
    }
}

/// The session's status once it is in `state` (polled; bounded).
pub(crate) async fn await_state(c: &ControlClient, uid: Uid, state: &str) -> SessionStatus {
    let start = Instant::now();
    loop {
        match c.status(uid).await {
            Ok(s) if s.state == state => return s,
            Ok(s) if start.elapsed() > CALL => panic!("session {uid} stuck in {} (waiting for {state})", s.state),
            Err(e) if start.elapsed() > CALL => panic!("session {uid}: status failed: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// An `s2cs` started with exactly the flags given (the harness's `Server` always sets the
/// port range and the Hello timeout), killed on drop.
#[derive(Debug)]
pub(crate) struct RawServer {
    child: Child,
    /// Its control address.
    pub(crate) addr: String,
}

impl RawServer {
    /// Makes a certificate in `dir` (`cert.pem`, `key.pem`).
    pub(crate) fn gen_cert(dir: &Path) {
        let out = Command::new(bin("s2cs"))
            .args(["gen-cert", "--listener-ip", "127.0.0.1", "--force", "--out-dir"])
            .arg(dir)
            .output()
            .expect("running s2cs gen-cert");
        assert!(out.status.success(), "gen-cert: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `s2cs` on 127.0.0.1, a free control port, TLS with the certificate of
    /// [`gen_cert`](Self::gen_cert) in `dir`, and `args`; waits (bounded) for its ready line.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Self {
        let log = dir.join("s2cs-raw.log");
        let mut child = Command::new(bin("s2cs"))
            .args(["--listener-ip", "127.0.0.1", "--port", "0", "--server-crt"])
            .arg(dir.join("cert.pem"))
            .arg("--server-key")
            .arg(dir.join("key.pem"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("s2cs log file"))
            .spawn()
            .expect("starting s2cs");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Self { child, addr: String::new() };
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("s2cs ready on ") else {
            panic!("s2cs did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
        };
        server.addr = addr.to_owned();
        server
    }

    /// Sends `signal` (`TERM`, `INT`) and waits (bounded) for the exit; its exit code.
    pub(crate) fn signal(&mut self, signal: &str) -> Option<i32> {
        scistream_tests::send_signal(self.child.id(), signal).expect("signalling s2cs");
        let exited = scistream_tests::exit_within(&mut self.child, Duration::from_secs(20)).expect("waiting for s2cs");
        exited.unwrap_or_else(|| panic!("s2cs still running 20 s after SIG{signal}"))
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's metrics address, once its log says it.
pub(crate) fn metrics_of(server: &Server) -> String {
    let mut addr = None;
    eventually(Duration::from_secs(10), "the metrics address in the log", || {
        addr = server.metrics_addr();
        addr.is_some()
    });
    addr.expect("found")
}

/// `/metrics`, its text.
pub(crate) fn scrape(addr: &str) -> String {
    let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the series `series` (name with its labels, as exposed) in `text`.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}
