//! stunnel: one foreground process per session, one service per listener; it binds the
//! session's ports itself (it cannot inherit them). TLS WAN legs only: stunnel has no plain
//! to plain forwarding, and no rate limit.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use crate::wan::SESSION_NAME;

use super::{Installed, Plan, Probe, Ready, Rendered, Side, version_after};
use crate::backend::{Kind, SetupError};

/// The oldest OpenSSL under it: TLS 1.3.
const MIN_OPENSSL: (u32, u32, u32) = (1, 1, 1);

/// Finds stunnel and checks its version (5.45: `sslVersionMin`) and its OpenSSL's.
pub(super) fn check(program: Option<&Path>) -> Result<Installed, SetupError> {
    let kind = Kind::Stunnel;
    let found = Probe {
        kind,
        name: "stunnel",
        programs: &["stunnel", "stunnel4"],
        package: "stunnel4",
        flag: "-version",
        marker: "stunnel ",
        min: (5, 45, 0),
    }
    .run(program)?;
    let (text, v) = (&found.said, found.version);
    let ssl = version_after(text, "with OpenSSL ").unwrap_or((0, 0, 0));
    if ssl < MIN_OPENSSL {
        return Err(SetupError::Unfit {
            kind,
            what: format!(
                "stunnel {}.{} runs on OpenSSL {}.{}.{}, without TLS 1.3: OpenSSL 1.1.1 or later is needed",
                v.0, v.1, ssl.0, ssl.1, ssl.2
            ),
        });
    }
    let running =
        version_after(text, "Running  with OpenSSL ").or_else(|| version_after(text, "Running with OpenSSL "));
    let openssl3 = running.unwrap_or(ssl) >= (3, 0, 0);
    Ok(Installed { version: found.version_string(), program: found.program, stream_module: None, openssl3 })
}

/// One session's configuration and command (TLS sessions only: the backend refuses others).
pub(super) fn render(inst: &Installed, plan: &Plan) -> Rendered {
    let mut c = String::new();
    let _ = writeln!(c, "; SciStream data server: one session's relays (generated; private to the session)");
    let _ = writeln!(c, "foreground = yes");
    let _ = writeln!(c, "pid =");
    let _ = writeln!(c, "debug = notice");
    for (i, l) in plan.listeners.iter().enumerate() {
        let _ = writeln!(c, "[listener{i}]");
        let _ = writeln!(c, "accept = {}", l.addr);
        let _ = writeln!(c, "connect = {}:{}", l.target.host, l.target.port);
        // A stream may be quiet for long.
        let _ = writeln!(c, "TIMEOUTidle = 2000000");
        if let Some(t) = &plan.tls {
            let _ = writeln!(c, "client = {}", if t.side == Side::Dial { "yes" } else { "no" });
            let _ = writeln!(c, "cert = {}", t.crt.display());
            let _ = writeln!(c, "key = {}", t.key.display());
            let _ = writeln!(c, "CAfile = {}", t.crt.display());
            let _ = writeln!(c, "verifyPeer = yes");
            let _ = writeln!(c, "sslVersionMin = TLSv1.3");
            if inst.openssl3 {
                // Nginx half-closes a TLS stream with a bare FIN: the end of that direction,
                // not a broken connection (the other direction flows on).
                let _ = writeln!(c, "options = IGNORE_UNEXPECTED_EOF");
            }
            if t.side == Side::Dial {
                let _ = writeln!(c, "sni = {SESSION_NAME}");
            }
        }
    }
    let cfg = plan.dir.join("stunnel.conf");
    Rendered { config: ("stunnel.conf", c), args: vec![OsString::from(cfg)], inherits: false, ready: Ready::Listening }
}
