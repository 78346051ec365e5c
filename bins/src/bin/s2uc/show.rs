//! What `s2uc` prints. For a person: human units (GiB, MB/s) and one line per fact. With
//! `--json`: one JSON object per line on stdout, each with an `event` naming what it says
//! (`created`, `established`, `requested`, `session`, `released`, `logged-out`, `error`, …),
//! raw numbers (bytes, bytes per second, the rate in kB/s), and a list as one JSON array.

use scistream_bins::format_addrs;
use scistream_bins::units::{bytes, bytes_per_sec, session_rate};
use scistream_fsm::{Addr, AppKey, ErrorCode, Uid};
use scistream_transport::client::SessionStatus;
use serde_json::{Value, json};

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A protocol code as gRPC spells it (`RESOURCE_EXHAUSTED`).
pub(crate) fn code_name(code: ErrorCode) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A failed command as a JSON event: what went wrong, the protocol code when a server said
/// one, and the exit status the command ends with.
pub(crate) fn error_event(message: &str, code: Option<ErrorCode>, exit_code: u8) -> Value {
    json!({"event": "error", "message": message, "code": code.map(code_name), "exit_code": exit_code})
}

/// A session as a control server holds it, as JSON (`event: session`).
pub(crate) fn session_json(v: &SessionStatus) -> Value {
    json!({
        "event": "session",
        "uid": v.uid.to_string(), "state": v.state, "role": v.params.role.as_wire(), "num_conn": v.params.num_conn,
        "rate": v.params.rate, "listeners": format_addrs(&v.listeners),
        "prod_listeners": format_addrs(&v.prod_listeners), "targets": format_addrs(&v.targets),
        "failure": v.failure.map(|c| c.to_string()),
        "failure_reason": (!v.failure_reason.is_empty()).then_some(&v.failure_reason),
        "bytes_in": v.traffic.bytes_in, "bytes_out": v.traffic.bytes_out,
        "open_connections": v.traffic.open, "total_connections": v.traffic.total,
        "refused_connections": v.traffic.refused,
        "rate_in": v.traffic.rate_in, "rate_out": v.traffic.rate_out,
        "owner": v.owner, "node": v.node,
        "path": if v.traffic.problem.is_empty() { "ok" } else { "degraded" },
        "problem": (!v.traffic.problem.is_empty()).then_some(&v.traffic.problem),
        "dial_failures": v.traffic.dial_failures, "handshake_failures": v.traffic.handshake_failures,
        "resets": v.traffic.resets,
    })
}

/// `s2uc status`: one session.
pub(crate) fn status(json: bool, v: &SessionStatus) {
    if json {
        say!("{}", session_json(v));
    } else {
        session_lines(v);
    }
}

/// `s2uc list`: a JSON array, or each session's lines.
pub(crate) fn list(json: bool, all: &[SessionStatus]) {
    if json {
        say!("{}", Value::Array(all.iter().map(session_json).collect()));
    } else if all.is_empty() {
        say!("no sessions");
    } else {
        all.iter().for_each(session_lines);
    }
}

fn session_lines(v: &SessionStatus) {
    let t = &v.traffic;
    say!(
        "{} {} {} num_conn={} rate={} listeners={} targets={} node={}{}",
        v.uid,
        v.params.role,
        v.state,
        v.params.num_conn,
        session_rate(v.params.rate).replace(' ', ""),
        format_addrs(&v.listeners),
        format_addrs(&v.targets),
        if v.node.is_empty() { "?" } else { &v.node },
        v.failure
            .map(|c| match v.failure_reason.as_str() {
                "" => format!(" failure={c}"),
                why => format!(" failure={c} ({why})"),
            })
            .unwrap_or_default()
    );
    say!(
        "    traffic: in {} ({}), out {} ({}), connections {} open / {} total, {} refused, {} reset",
        bytes(t.bytes_in),
        bytes_per_sec(t.rate_in),
        bytes(t.bytes_out),
        bytes_per_sec(t.rate_out),
        t.open,
        t.total,
        t.refused,
        t.resets
    );
    if !t.problem.is_empty() {
        say!(
            "    path DEGRADED: {} ({} failed dials, {} failed handshakes)",
            t.problem,
            t.dial_failures,
            t.handshake_failures
        );
    }
}

/// One refresh of `s2uc status --watch`: a line of live throughput (or the session as JSON,
/// with the seconds since the watch began).
pub(crate) fn watch_line(json: bool, v: &SessionStatus, elapsed: f64) {
    if json {
        let mut o = session_json(v);
        o["elapsed_s"] = json!((elapsed * 10.0).round() / 10.0);
        say!("{o}");
    } else {
        let t = &v.traffic;
        say!(
            "{elapsed:>7.1} s  {:<11} in {:>10} ({:>9})  out {:>10} ({:>9})  {} open",
            v.state,
            bytes_per_sec(t.rate_in),
            bytes(t.bytes_in),
            bytes_per_sec(t.rate_out),
            bytes(t.bytes_out),
            t.open
        );
    }
}

/// The outcome of a 1.2-style setup command (`prod-req`, `cons-req`, `inbound-request`,
/// `outbound-request`): the uid, listener lists, and the secrets to hand on, which a person
/// is told what to do with.
pub(crate) fn requested(json: bool, uid: Uid, fields: &[(&str, &[Addr])], secrets: &[(&str, String, &str)]) {
    if json {
        let mut m = serde_json::Map::new();
        m.insert("event".into(), "requested".into());
        m.insert("uid".into(), uid.to_string().into());
        for (k, v) in fields {
            m.insert((*k).into(), format_addrs(v).into());
        }
        for (k, v, _) in secrets {
            m.insert((*k).into(), v.clone().into());
        }
        say!("{}", Value::Object(m));
    } else {
        say!("uid {uid}");
        for (k, v) in fields {
            say!("{k} {}", format_addrs(v));
        }
        for (k, v, what) in secrets {
            say!("{} {v} (secret: {what})", k.replace('_', " "));
        }
    }
}

/// Prints the session's uid and app key once the producer's facility admitted the session (its
/// listeners are bound), so they reach the producer's controller while this command waits for
/// its Hello; a refused session is never announced.
pub(crate) fn announce(json: bool, uid: Uid, key: AppKey, prod_s2cs: &str) {
    if json {
        say!("{}", json!({"event": "created", "uid": uid.to_string(), "app_key": hex(&key.0)}));
    } else {
        say!("uid {uid}");
        say!("app key {}", hex(&key.0));
        say!(
            "waiting for the producer's Hello: appctrl {uid} --s2cs {prod_s2cs} --key {} --listeners HOST:PORT,...",
            hex(&key.0)
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(ErrorCode::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(ErrorCode::NotFound), "NOT_FOUND");
        assert_eq!(code_name(ErrorCode::Aborted), "ABORTED");
    }
}
