//! HAProxy: one `haproxy -db` process per session, its listeners inherited (`bind fd@N`), an
//! admin socket in the session's folder (readiness, and the session's traffic counters).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::wan::SESSION_NAME;

use super::{Installed, Plan, Probe, Ready, Rendered, Side, output};
use crate::backend::{Kind, SetupError};
use crate::relay::Counters;

/// Finds HAProxy and checks its version (2.0: TLS 1.3 settings with `ssl-min-ver`, `log
/// stderr`, `fd@` binds).
pub(super) fn check(program: Option<&Path>) -> Result<Installed, SetupError> {
    let found = Probe {
        kind: Kind::Haproxy,
        name: "HAProxy",
        programs: &["haproxy"],
        package: "haproxy",
        flag: "-v",
        marker: "version ",
        min: (2, 0, 0),
    }
    .run(program)?;
    Ok(Installed { version: found.version_string(), program: found.program, stream_module: None, openssl3: false })
}

/// An address for HAProxy's `server` line (IPv6 literals with the `ipv6@` prefix).
fn server_addr(a: &scistream_fsm::Addr) -> String {
    if a.host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("ipv6@{}:{}", a.host, a.port)
    } else {
        format!("{}:{}", a.host, a.port)
    }
}

/// The configuration of one session; `bind` says how a listener is bound (`fd@N` for a
/// session, an address for the configuration test).
fn config(plan: &Plan, admin: &Path, bind: impl Fn(&super::Listener) -> String) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "# SciStream data server: one session's relays (generated; private to the session)");
    let _ = writeln!(c, "global");
    let _ = writeln!(c, "    log stderr format raw local0 notice");
    let _ = writeln!(c, "    stats socket {} mode 600 level admin", admin.display());
    let _ = writeln!(c, "defaults");
    let _ = writeln!(c, "    mode tcp");
    let _ = writeln!(c, "    log global");
    let _ = writeln!(c, "    option dontlognull");
    let _ = writeln!(c, "    timeout connect 10s");
    // A stream may be quiet for long: no idle limit short of HAProxy's largest.
    let _ = writeln!(c, "    timeout client 24d");
    let _ = writeln!(c, "    timeout server 24d");
    for (i, l) in plan.listeners.iter().enumerate() {
        let _ = writeln!(c, "frontend listener{i}");
        let mut b = format!("    bind {}", bind(l));
        if let Some(t) = plan.tls.as_ref().filter(|t| t.side == Side::Accept) {
            let _ = write!(
                b,
                " ssl crt {} ca-file {} verify required ssl-min-ver TLSv1.3",
                t.pem.display(),
                t.crt.display()
            );
        }
        let _ = writeln!(c, "{b}");
        let _ = writeln!(c, "    default_backend target{i}");
        let _ = writeln!(c, "backend target{i}");
        let mut s = format!("    server target{i} {}", server_addr(&l.target));
        if let Some(t) = plan.tls.as_ref().filter(|t| t.side == Side::Dial) {
            let _ = write!(
                s,
                " ssl crt {} ca-file {} verify required verifyhost {SESSION_NAME} sni str({SESSION_NAME}) ssl-min-ver TLSv1.3",
                t.pem.display(),
                t.crt.display()
            );
        }
        let _ = writeln!(c, "{s}");
    }
    c
}

/// One session's configuration and command.
pub(super) fn render(_: &Installed, plan: &Plan) -> Rendered {
    let admin = plan.socket.clone();
    let cfg = plan.dir.join("haproxy.cfg");
    Rendered {
        config: ("haproxy.cfg", config(plan, &admin, |l| format!("fd@{}", l.fd))),
        args: vec!["-db".into(), "-f".into(), OsString::from(cfg)],
        inherits: true,
        ready: Ready::AdminSocket(admin),
    }
}

/// HAProxy checks both sides' configurations (`haproxy -c`).
pub(super) fn test(inst: &Installed, accept: &Plan, dial: &Plan) -> Result<(), String> {
    for (name, plan) in [("accept", accept), ("dial", dial)] {
        let path = plan.dir.join(format!("test-{name}.cfg"));
        let text = config(plan, &plan.socket, |l| l.addr.to_string());
        super::child::write_private(&path, text.as_bytes()).map_err(|e| e.to_string())?;
        let (ok, said) = output(&inst.program, &["-c", "-f", &path.to_string_lossy()])?;
        if !ok {
            return Err(format!(
                "HAProxy {} refuses the configuration sessions need (TLS 1.3 with the session's Ed25519 certificate): {}",
                inst.version,
                said.trim()
            ));
        }
    }
    Ok(())
}

/// Sends one command to an admin socket and returns the answer.
pub(super) async fn admin(sock: &Path, command: &str) -> std::io::Result<String> {
    let mut s = tokio::net::UnixStream::connect(sock).await?;
    s.write_all(format!("{command}\n").as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(out)
}

/// Reads the session's traffic from HAProxy's statistics every second into `counters`, until
/// the process ends: bytes each way, connections open and in all.
pub(super) async fn count(
    sock: PathBuf,
    counters: Arc<Counters>,
    mut exit: tokio::sync::watch::Receiver<Option<String>>,
) {
    loop {
        if let Ok(csv) = admin(&sock, "show stat").await {
            let t = totals(&csv);
            counters.bytes_in.store(t.bytes_in, Ordering::Relaxed);
            counters.bytes_out.store(t.bytes_out, Ordering::Relaxed);
            counters.open.store(t.open, Ordering::Relaxed);
            counters.total.store(t.total, Ordering::Relaxed);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = exit.wait_for(Option::is_some) => return,
        }
    }
}

/// What the frontends of `show stat` add up to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    /// Bytes received from clients (towards the targets).
    pub bytes_in: u64,
    /// Bytes sent to clients (back from the targets).
    pub bytes_out: u64,
    /// Sessions open now.
    pub open: u64,
    /// Sessions in all.
    pub total: u64,
}

/// Sums the FRONTEND rows of `show stat`'s CSV.
pub(super) fn totals(csv: &str) -> Totals {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else { return Totals::default() };
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(sv), Some(bin), Some(bout), Some(scur), Some(stot)) =
        (at("svname"), at("bin"), at("bout"), at("scur"), at("stot"))
    else {
        return Totals::default();
    };
    let mut t = Totals::default();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(sv) != Some(&"FRONTEND") {
            continue;
        }
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        t.bytes_in += n(bin);
        t.bytes_out += n(bout);
        t.open += n(scur);
        t.total += n(stot);
    }
    t
}
