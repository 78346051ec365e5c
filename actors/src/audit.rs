//! The control server's audit trail: the records its core decides ([`Audit`]) written to
//! their own sink, one JSON object per line, with the caller's network address added.
//!
//! Format (one line per decision; keys always present, `null` when unknown):
//!
//! ```text
//! {"ts_ms":1764550000123,"decision":"targets-refused","uid":"…","identity":"alice",
//!  "role":"PROD","addrs":["192.0.2.40:22"],"peer":"203.0.113.100:40112",
//!  "why":"192.0.2.40:22 is outside the facility's allow-targets: its gateway may not reach it"}
//! ```
//!
//! `decision` is one of `created`, `refused`, `targets-accepted`, `targets-refused`,
//! `released`, `expired`. A record never holds a secret: the core's record has no token, app
//! key or credentials to give.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use scistream_fsm::Why;
use scistream_fsm::audit::Audit;

/// Where the trail goes.
#[derive(Debug)]
pub enum AuditSink {
    /// The daemon's log, at INFO with target `audit`.
    Log,
    /// A file, appended to: one write per record, so a record is never split.
    File(std::fs::File),
}

impl AuditSink {
    /// A file sink, appending to `path` (made if missing, owner read/write only).
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        Ok(Self::File(opts.open(path)?))
    }

    /// Writes one record; `peer` is the network address of the call that made it, if any.
    pub fn write(&self, a: &Audit, peer: Option<SocketAddr>) {
        let mut line = line(a, peer, std::time::SystemTime::now());
        match self {
            Self::Log => tracing::info!(target: "audit", "{line}"),
            Self::File(f) => {
                // `&File` writes without a lock: the file is opened to append, and a record goes
                // in one write (write_all loops only on a short write, which a local file makes
                // only when its disk is full).
                line.push('\n');
                if let Err(e) = (&*f).write_all(line.as_bytes()) {
                    tracing::error!("cannot write the audit trail: {e}; the record was: {}", line.trim_end());
                }
            }
        }
    }
}

/// The JSON line of one record.
pub fn line(a: &Audit, peer: Option<SocketAddr>, at: std::time::SystemTime) -> String {
    let ts = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let why = match a.why {
        Why::Unspecified => serde_json::Value::Null,
        why => why.to_string().into(),
    };
    serde_json::json!({
        "ts_ms": ts,
        "decision": a.decision.name(),
        "uid": a.uid.to_string(),
        "identity": a.identity.0,
        "role": a.role.as_wire(),
        "addrs": a.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "peer": peer.map(|p| p.to_string()),
        "why": why,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use scistream_fsm::audit::Decision;
    use scistream_fsm::{Addr, Guard, Principal, Role, Uid};

    use super::*;

    #[test]
    fn a_record_is_one_json_line_with_every_key_and_an_identity_is_escaped() {
        let a = Audit {
            decision: Decision::TargetsRefused,
            uid: Uid::from_u128(7),
            identity: Principal("eve\"\n{}".into()),
            role: Role::Prod,
            addrs: vec![Addr::new("192.0.2.40", 22)],
            from: None,
            why: Why::Policy { guard: Guard::AllowTargets, ip: "192.0.2.40".parse().unwrap(), port: 22 },
        };
        let text = line(&a, Some("203.0.113.100:40112".parse().unwrap()), std::time::UNIX_EPOCH);
        assert!(!text.contains('\n'), "one line: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["decision"], "targets-refused");
        assert_eq!(v["identity"], "eve\"\n{}");
        assert_eq!(v["addrs"][0], "192.0.2.40:22");
        assert_eq!(v["peer"], "203.0.113.100:40112");
        assert!(v["why"].as_str().unwrap().contains("allow-targets"));
        assert_eq!(v["ts_ms"], 0);
        let released = Audit { decision: Decision::Released, why: Why::Unspecified, ..a };
        let v: serde_json::Value = serde_json::from_str(&line(&released, None, std::time::UNIX_EPOCH)).unwrap();
        assert!(v["peer"].is_null() && v["why"].is_null(), "{v}");
    }
}
