//! The user's command line as a person and a script meet it (issue 12, items 8 and 9): human
//! units in `status` and `list`, raw numbers and one shape in `--json` (an `event` on every
//! object, a list as an array, failures as `error` events with the exit status kept),
//! `status --watch` and how it ends, the wait for the Hello shown on a terminal only, the
//! default rate (none, unless the facility sets one), completions and man pages.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use scistream_tests::{
    Background, Request, Scratch, Server, ServerOpts, args, bin, echo_producer, free_range, json_lines, run, trust,
};
use serde_json::Value;

use crate::testkit::shared;

const LIMIT: Duration = Duration::from_secs(30);

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// `s2uc FLAGS A…`, bounded.
fn s2uc(flags: &[String], a: &[&str]) -> Output {
    let mut all = flags.to_vec();
    all.extend(args(a));
    run("s2uc", &all, LIMIT).expect("s2uc ran")
}

/// The one JSON value a `--json` command printed.
fn one_json(out: &Output) -> Value {
    let lines = json_lines(out).expect("stdout is JSON lines");
    assert_eq!(lines.len(), 1, "one JSON value: {lines:?}");
    lines.into_iter().next().expect("one")
}

/// Two facilities on loopback, the second with `cons_extra` flags, the first with `prod_extra`.
fn facilities(dir: &Scratch, prod_extra: &[&str], cons_extra: &[&str]) -> (Server, Server) {
    let opts = |extra: &[&str]| ServerOpts { port_range: free_range(6), extra: args(extra), ..ServerOpts::default() };
    let prod = Server::start(&dir.0, &opts(prod_extra)).expect("producer's s2cs");
    let cons = Server::start(&dir.0, &opts(cons_extra)).expect("consumer's s2cs");
    (prod, cons)
}

/// A stream set up by `s2uc --json request` (with `extra`) and `appctrl` for an echo producer;
/// the `established` event.
fn establish(prod: &Server, cons: &Server, extra: &[&str]) -> Value {
    let client = trust(&[prod, cons]);
    let request = Request::start(&client, &prod.addr, &cons.addr, extra).expect("s2uc request");
    let app = format!("127.0.0.1:{}", echo_producer());
    let mut hello = args(&[&request.uid, "--s2cs", &prod.addr, "--key", &request.app_key, "--listeners", &app]);
    hello.extend(trust(&[prod]));
    let out = run("appctrl", &hello, LIMIT).expect("appctrl ran");
    assert!(out.status.success(), "appctrl: {}", text(&out.stderr));
    let established = request.next_json(LIMIT).expect("the established event");
    assert_eq!(established["event"], "established", "{established}");
    let out = request.process.wait(LIMIT).expect("s2uc request ends");
    assert!(out.status.success(), "s2uc request: {}", text(&out.stderr));
    established
}

/// Sends `n` bytes through the consumer gateway's listener and reads the echo back; the time
/// it took.
fn echo_through(established: &Value, n: usize) -> Duration {
    let listener = established["consumer_listeners"].as_str().expect("consumer listeners").to_owned();
    let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let started = Instant::now();
    let mut c = TcpStream::connect(&listener).expect("the consumer gateway's listener");
    c.set_read_timeout(Some(LIMIT)).unwrap();
    c.write_all(&data).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("the echo");
    assert!(back == data, "{} bytes back of {n}", back.len());
    started.elapsed()
}

/// The lines still to come from a process that has ended (until its pipe closes; bounded).
fn rest(lines: &Receiver<String>) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        all.push(line);
    }
    all
}

fn send_signal(child: &std::process::Child, sig: &str) {
    scistream_tests::send_signal(child.id(), sig).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn status_and_list_print_human_units_json_keeps_raw_numbers_and_every_json_object_has_an_event() {
    let _serial = shared();
    let dir = Scratch::new("cli-units");
    let (prod, cons) = facilities(&dir, &[], &[]);
    let established = establish(&prod, &cons, &["--num-conn", "1"]);
    let uid = established["uid"].as_str().expect("uid").to_owned();
    let n = 3 * 1024 * 1024 + 5;
    echo_through(&established, n);
    let flags = trust(&[&prod, &cons]);

    // A person reads units.
    let out = s2uc(&flags, &["status", &uid, "--s2cs", &prod.addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let human = text(&out.stdout);
    assert!(human.contains("in 3.0 MiB ("), "bytes in binary units: {human}");
    assert!(human.contains("out 3.0 MiB ("), "{human}");
    assert!(human.contains("rate=unlimited"), "the session's rate in words: {human}");
    assert!(human.contains("B/s)"), "throughput in bytes per second: {human}");
    let out = s2uc(&flags, &["list", "--s2cs", &prod.addr]);
    assert!(text(&out.stdout).contains("in 3.0 MiB ("), "{}", text(&out.stdout));

    // A script reads raw numbers, an event on each object, a list as one array.
    let st = one_json(&s2uc(&flags, &["--json", "status", &uid, "--s2cs", &prod.addr]));
    assert_eq!(st["event"], "session", "{st}");
    assert_eq!(st["bytes_in"], n as u64, "{st}");
    assert_eq!(st["bytes_out"], n as u64, "{st}");
    assert_eq!(st["rate"], 0, "no rate asked, none set by the facility: {st}");
    let list = one_json(&s2uc(&flags, &["--json", "list", "--s2cs", &prod.addr]));
    let items = list.as_array().unwrap_or_else(|| panic!("list --json is an array: {list}"));
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["event"], "session");
    assert_eq!(items[0]["bytes_in"], n as u64);

    // A failure is an `error` event on stdout too, and the exit status is kept.
    let unknown = "4f3c2b1a-0000-4000-8000-00000000beef";
    let out = s2uc(&flags, &["--json", "status", unknown, "--s2cs", &prod.addr]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = one_json(&out);
    assert_eq!(
        (err["event"].as_str(), err["code"].as_str(), err["exit_code"].as_u64()),
        (Some("error"), Some("NOT_FOUND"), Some(1)),
        "{err}"
    );
    let out =
        s2uc(&flags, &["--json", "request", "--prod-s2cs", &prod.addr, "--cons-s2cs", &cons.addr, "--num-conn", "0"]);
    assert_eq!(out.status.code(), Some(2), "a server's INVALID_ARGUMENT is bad usage: {}", text(&out.stderr));
    let err = one_json(&out);
    assert_eq!((err["event"].as_str(), err["code"].as_str()), (Some("error"), Some("INVALID_ARGUMENT")), "{err}");
    let out = s2uc(&flags, &["--json", "status", "not-a-uid"]);
    assert_eq!(out.status.code(), Some(2), "a bad command line keeps clap's exit status");
    assert_eq!(one_json(&out)["event"], "error");
    let cfg = dir.0.join("empty-cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let out = s2uc(&[], &["--config-dir", cfg.to_str().unwrap(), "--json", "logout"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = one_json(&out);
    assert_eq!((v["event"].as_str(), v["scopes"].as_array().map(Vec::len)), (Some("logged-out"), Some(0)), "{v}");

    // `status --watch`: bounded by --count …
    let out = s2uc(&flags, &["status", &uid, "--s2cs", &prod.addr, "--watch", "--interval", "0.2", "--count", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("Established") && l.contains("B/s") && l.contains("3.0 MiB")), "{lines:?}");
    let out =
        s2uc(&flags, &["--json", "status", &uid, "--s2cs", &prod.addr, "--watch", "--interval", "0.2", "--count", "2"]);
    let watched = json_lines(&out).expect("JSON lines");
    assert_eq!(watched.len(), 2, "{watched:?}");
    assert!(watched.iter().all(|v| v["event"] == "session" && v["elapsed_s"].is_number()), "{watched:?}");
    // … by Ctrl-C …
    let mut a = flags.clone();
    a.extend(args(&["status", &uid, "--s2cs", &prod.addr, "--watch", "--interval", "0.2"]));
    let mut watch = Background::start("s2uc", &a).unwrap();
    let watch_lines = watch.stdout_lines().unwrap();
    watch_lines.recv_timeout(LIMIT).expect("a first refresh");
    send_signal(watch.0.as_ref().expect("running"), "INT");
    let out = watch.wait(Duration::from_secs(10)).expect("Ctrl-C ends the watch");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // … and by the session's end.
    let mut watch = Background::start("s2uc", &a).unwrap();
    let watch_lines = watch.stdout_lines().unwrap();
    watch_lines.recv_timeout(LIMIT).expect("a first refresh");
    let out = s2uc(&flags, &["--json", "release", &uid, "--s2cs", &prod.addr, "--s2cs", &cons.addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rel = one_json(&out);
    assert_eq!(rel["event"], "released", "{rel}");
    assert_eq!(rel["released_at"], serde_json::json!([prod.addr, cons.addr]), "{rel}");
    let out = watch.wait(Duration::from_secs(10)).expect("the watch ends with its session");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rest = rest(&watch_lines);
    assert!(rest.last().is_some_and(|l| l.contains("released")), "{rest:?}");
}

#[test]
fn a_request_without_a_rate_is_unlimited_unless_the_facility_sets_a_default_rate() {
    let _serial = shared();
    let dir = Scratch::new("cli-rate");
    // 500 kB/s at the producer's facility; none at the consumer's.
    let (prod, cons) = facilities(&dir, &["--default-rate", "500"], &[]);
    let established = establish(&prod, &cons, &["--num-conn", "1"]);
    let uid = established["uid"].as_str().expect("uid").to_owned();
    let flags = trust(&[&prod, &cons]);
    let rate_at =
        |server: &Server| one_json(&s2uc(&flags, &["--json", "status", &uid, "--s2cs", &server.addr]))["rate"].clone();
    assert_eq!(rate_at(&prod), 500, "the facility's default rate");
    assert_eq!(rate_at(&cons), 0, "no default: unlimited");
    let human = text(&s2uc(&flags, &["status", &uid, "--s2cs", &prod.addr]).stdout);
    assert!(human.contains("rate=500.0kB/s"), "{human}");
    // And it is enforced: 1 MB at 500 kB/s takes about 2 s (less a burst).
    let took = echo_through(&established, 1_000_000);
    assert!(took >= Duration::from_millis(1_200), "paced at the default rate, yet took {took:?}");
}

/// A pseudo-terminal's output, read on a thread, and the terminal side to give a process.
fn pty() -> (OwnedFd, Receiver<Vec<u8>>) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut master = std::fs::File::from(pty.master);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    (pty.slave, rx)
}

/// What the terminal showed within `limit`, or until it showed `until`.
fn screen(rx: &Receiver<Vec<u8>>, limit: Duration, until: Option<&str>) -> String {
    let start = Instant::now();
    let mut all = Vec::new();
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(chunk) => all.extend(chunk),
            Err(_) => break,
        }
        if until.is_some_and(|u| String::from_utf8_lossy(&all).contains(u)) {
            break;
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// `s2uc request` (human or `--json`) with its stderr on `stderr`; its stdout lines, and once
/// it announced the session, its uid and app key.
fn request_to(
    prod: &Server,
    cons: &Server,
    json: bool,
    stderr: Stdio,
) -> (std::process::Child, Receiver<String>, String, String) {
    let mut a = trust(&[prod, cons]);
    if json {
        a.push("--json".into());
    }
    a.extend(args(&[
        "request",
        "--prod-s2cs",
        &prod.addr,
        "--cons-s2cs",
        &cons.addr,
        "--num-conn",
        "1",
        "--hello-timeout",
        "30",
    ]));
    let mut child = Command::new(bin("s2uc")).args(&a).stdout(Stdio::piped()).stderr(stderr).spawn().expect("s2uc");
    let lines = scistream_tests::lines(child.stdout.take().expect("piped"));
    let (mut uid, mut key) = (String::new(), String::new());
    while uid.is_empty() || key.is_empty() {
        let line = lines.recv_timeout(LIMIT).expect("s2uc announces the session");
        if json {
            let v: Value = serde_json::from_str(&line).expect("JSON");
            (uid, key) = (v["uid"].as_str().unwrap().to_owned(), v["app_key"].as_str().unwrap().to_owned());
        } else if let Some(u) = line.strip_prefix("uid ") {
            uid = u.to_owned();
        } else if let Some(k) = line.strip_prefix("app key ") {
            key = k.to_owned();
        }
    }
    (child, lines, uid, key)
}

fn hello(prod: &Server, uid: &str, key: &str) {
    let mut a = args(&[uid, "--s2cs", &prod.addr, "--key", key, "--listeners", "127.0.0.1:7000"]);
    a.extend(trust(&[prod]));
    let out = run("appctrl", &a, LIMIT).expect("appctrl");
    assert!(out.status.success(), "appctrl: {}", text(&out.stderr));
}

const WAITING: &str = "left (Ctrl-C releases the session)";

#[test]
fn request_shows_its_wait_for_the_hello_and_the_time_left_only_on_a_terminal() {
    let _serial = shared();
    let dir = Scratch::new("cli-wait");
    let (prod, cons) = facilities(&dir, &[], &[]);

    // stderr on a terminal: the line shows, with the time left, and is erased at the end.
    let (term, shown) = pty();
    let (child, lines, uid, key) = request_to(&prod, &cons, false, Stdio::from(term));
    let seen = screen(&shown, Duration::from_secs(10), Some(WAITING));
    assert!(seen.contains("waiting for the producer's Hello: "), "{seen:?}");
    assert!(seen.contains(&format!("s {WAITING}")), "how long is left, in seconds: {seen:?}");
    hello(&prod, &uid, &key);
    let out = scistream_tests::wait_within(child, LIMIT).unwrap().expect("s2uc request ends");
    assert!(out.status.success());
    let printed = rest(&lines);
    assert!(printed.iter().any(|l| l.starts_with("established")), "{printed:?}");
    let after = screen(&shown, Duration::from_secs(2), None);
    assert!(after.contains("\r\x1b[2K"), "the line is erased when the wait is over: {after:?}");

    // stderr piped: nothing of it.
    let (child, _lines, uid, key) = request_to(&prod, &cons, false, Stdio::piped());
    std::thread::sleep(Duration::from_millis(1_500));
    hello(&prod, &uid, &key);
    let out = scistream_tests::wait_within(child, LIMIT).unwrap().expect("s2uc request ends");
    assert!(out.status.success());
    assert!(!text(&out.stderr).contains(WAITING), "{}", text(&out.stderr));

    // --json on a terminal: nothing of it either.
    let (term, shown) = pty();
    let (child, _lines, uid, key) = request_to(&prod, &cons, true, Stdio::from(term));
    let seen = screen(&shown, Duration::from_millis(1_500), Some(WAITING));
    hello(&prod, &uid, &key);
    let out = scistream_tests::wait_within(child, LIMIT).unwrap().expect("s2uc request ends");
    assert!(out.status.success());
    let seen = seen + &screen(&shown, Duration::from_secs(1), None);
    assert!(!seen.contains(WAITING), "{seen:?}");
}

#[test]
fn every_binary_prints_its_completions_and_man_page() {
    let dir = Scratch::new("cli-manuals");
    for name in ["s2uc", "s2cs", "s2ds", "appctrl"] {
        let out = run(name, &args(&["completions", "bash"]), LIMIT).unwrap();
        assert!(out.status.success(), "{name} completions bash: {}", text(&out.stderr));
        let script = dir.0.join(format!("{name}.bash"));
        std::fs::write(&script, &out.stdout).unwrap();
        // Bash loads it and registers the completion of NAME.
        let check = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p {name}", script.display()))
            .output()
            .expect("bash");
        assert!(check.status.success(), "{name}: {}", text(&check.stderr));
        assert!(text(&check.stdout).contains(name), "{}", text(&check.stdout));
        let zsh = run(name, &args(&["completions", "zsh"]), LIMIT).unwrap();
        assert!(text(&zsh.stdout).starts_with(&format!("#compdef {name}")), "{name}: {}", text(&zsh.stdout));

        let man = run(name, &args(&["man"]), LIMIT).unwrap();
        assert!(man.status.success(), "{name} man: {}", text(&man.stderr));
        let page = text(&man.stdout);
        assert!(
            page.starts_with(&format!(".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH {name} 1")),
            "{name}: {page:.200}"
        );
    }
    // What the pages and completions hold comes from the flags themselves.
    let page = text(&run("s2cs", &args(&["man"]), LIMIT).unwrap().stdout);
    assert!(page.contains("default\\-rate"), "s2cs's page names --default-rate");
    let page = text(&run("appctrl", &args(&["man"]), LIMIT).unwrap().stdout);
    assert!(page.contains("grace"), "appctrl's page names --grace");
    assert!(page.contains("appctrl \\- SciStream application controller"), "its own NAME line: {page:.300}");
    // Bash completes a subcommand of s2uc from its first letters.
    let script = dir.0.join("s2uc.bash");
    let complete = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(s2uc sta) && COMP_CWORD=1 && _s2uc s2uc sta s2uc && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .expect("bash");
    assert_eq!(text(&complete.stdout).trim(), "status", "{}", text(&complete.stderr));
    // One page per subcommand into a folder.
    let pages = dir.0.join("man");
    let out = run("s2uc", &args(&["man", "--out-dir", pages.to_str().unwrap()]), LIMIT).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in ["s2uc.1", "s2uc-request.1", "s2uc-status.1", "s2uc-completions.1"] {
        assert!(pages.join(page).is_file(), "{page} written");
    }
}
