//! `appctrl … -- APP` (issue 12, item 4): SIGTERM and SIGINT reach the application it
//! launched, it waits for the application (bounded by `--grace`, then SIGKILL), and its exit
//! status says what happened: the application's own, 128 + N for signal N, 124 when it had to
//! be killed, 127 when it was not found.

use std::process::Output;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use scistream_tests::{Background, Request, Scratch, Server, ServerOpts, args, free_range, trust};

use crate::testkit::shared;

const LIMIT: Duration = Duration::from_secs(30);

/// A session waiting for its Hello: `s2uc request`, running until the Hello is in.
fn session(prod: &Server, cons: &Server) -> Request {
    Request::start(&trust(&[prod, cons]), &prod.addr, &cons.addr, &["--num-conn", "1"]).expect("s2uc request")
}

/// `appctrl` for `request`'s session launching `app` (after `--`), with `extra` flags; its
/// stdout lines once the application printed `started PID`, and that pid.
fn launch(prod: &Server, request: &Request, extra: &[&str], app: &[String]) -> (Background, Receiver<String>, u32) {
    let mut a = args(&[&request.uid, "--s2cs", &prod.addr, "--key", &request.app_key, "--listeners", "127.0.0.1:7000"]);
    a.extend(trust(&[prod]));
    a.extend(args(extra));
    a.push("--".into());
    a.extend(app.iter().cloned());
    let mut ctrl = Background::start("appctrl", &a).expect("appctrl");
    let lines = ctrl.stdout_lines().expect("stdout");
    let hello = lines.recv_timeout(LIMIT).expect("appctrl says the Hello was accepted");
    assert!(hello.starts_with("hello accepted"), "{hello}");
    let started = lines.recv_timeout(LIMIT).expect("the application starts");
    let pid = started.strip_prefix("started ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{started:?}"));
    (ctrl, lines, pid)
}

fn signal(pid: u32, sig: &str) {
    scistream_tests::send_signal(pid, sig).unwrap_or_else(|e| panic!("{e}"));
}

fn alive(pid: u32) -> bool {
    // A zombie has exited too.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// Signals `ctrl` with `sig` and waits (bounded) for it to end.
fn stop(ctrl: Background, sig: &str) -> (Output, Duration) {
    let pid = ctrl.0.as_ref().expect("running").id();
    let start = Instant::now();
    signal(pid, sig);
    let out = ctrl.wait(LIMIT).expect("appctrl ends");
    (out, start.elapsed())
}

/// A shell application that prints `started PID` then loops; `trap` sets how it takes signals.
fn app(trap: &str) -> Vec<String> {
    let script = format!("{trap}; echo started $$; while :; do sleep 0.05; done");
    vec!["sh".into(), "-c".into(), script]
}

#[test]
fn appctrl_passes_sigterm_and_sigint_to_its_application_waits_for_it_and_exits_as_it_did() {
    let _serial = shared();
    let dir = Scratch::new("appctrl-signals");
    let opts = || ServerOpts { port_range: free_range(8), ..ServerOpts::default() };
    let prod = Server::start(&dir.0, &opts()).unwrap();
    let cons = Server::start(&dir.0, &opts()).unwrap();

    // The application exits on SIGTERM with a code of its own: appctrl exits with it.
    let request = session(&prod, &cons);
    let (ctrl, _, pid) = launch(&prod, &request, &[], &app("trap 'exit 7' TERM"));
    let (out, _) = stop(ctrl, "TERM");
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!alive(pid), "the application is gone");

    // SIGINT likewise.
    let request = session(&prod, &cons);
    let (ctrl, _, pid) = launch(&prod, &request, &[], &app("trap 'exit 3' INT"));
    let (out, _) = stop(ctrl, "INT");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!alive(pid));

    // An application that SIGTERM ends: 128 + 15.
    let request = session(&prod, &cons);
    let (ctrl, _, pid) = launch(&prod, &request, &[], &app(":"));
    let (out, _) = stop(ctrl, "TERM");
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!alive(pid));

    // An application that ignores the signal is killed after --grace: 124, and it is gone.
    let request = session(&prod, &cons);
    let (ctrl, _, pid) = launch(&prod, &request, &["--grace", "1"], &app("trap '' TERM INT"));
    let (out, took) = stop(ctrl, "TERM");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(took >= Duration::from_millis(900), "it had its grace period: {took:?}");
    assert!(took < Duration::from_secs(10), "bounded: {took:?}");
    assert!(err.contains("did not exit within"), "{err}");
    assert!(!alive(pid), "killed");

    // An application that is not there: 127, as a shell says it.
    let request = session(&prod, &cons);
    let mut a = args(&[&request.uid, "--s2cs", &prod.addr, "--key", &request.app_key, "--listeners", "127.0.0.1:7000"]);
    a.extend(trust(&[&prod]));
    a.extend(args(&["--", "/nonexistent/scistream-app"]));
    let out = scistream_tests::run("appctrl", &a, LIMIT).unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", String::from_utf8_lossy(&out.stderr));
}
