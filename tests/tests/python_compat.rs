//! SciStream 1.2 wire compatibility, checked with the Python gRPC stack 1.2 itself runs on:
//! the 1.2 clients' call sequences (`python/replay_12.py`) against our `s2cs`, over TLS and plain
//! gRPC, and our `s2uc` and `appctrl` against a server that speaks only 1.2
//! (`python/server_12.py`).
//!
//! These tests need python3 with grpcio and grpcio-tools; `bash tests/run.sh` installs them.
//! Without them the tests fail and say so: they never skip.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use scistream_tests::{
    Background, Request, Scratch, Server, ServerOpts, args, free_range, json_field, json_lines, lines, listening, run,
};
use serde_json::Value;

/// How long a Python script may run.
const PY_BOUND: Duration = Duration::from_secs(60);
/// How long one of our commands may run.
const CMD_BOUND: Duration = Duration::from_secs(30);

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Fails the test, naming the fix, when python3 or its gRPC packages are missing.
fn require_python() {
    const FIX: &str = "run `bash tests/run.sh`, which installs grpcio and grpcio-tools";
    match Command::new("python3").args(["-c", "import grpc, grpc_tools"]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "python3 cannot import grpc and grpc_tools ({}): {FIX}",
            String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or_default()
        ),
        Err(e) => panic!("python3 is not available ({e}): install Python 3, then {FIX}"),
    }
}

fn python(script: &str) -> Command {
    let mut cmd = Command::new("python3");
    // No __pycache__ left in the source tree.
    cmd.arg("-u").arg(python_dir().join(script)).env("PYTHONDONTWRITEBYTECODE", "1").stdin(Stdio::null());
    cmd
}

/// Reads a pipe to its end on a thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs a Python script to completion within `limit`.
fn run_python(script: &str, args: &[String], limit: Duration) -> Result<Output> {
    let mut child =
        python(script).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("starting python3")?;
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
            bail!(
                "{script} ran longer than {limit:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// A SciStream 1.2 control server (`server_12.py serve12`), killed on drop. It prints a line
/// per call it serves; `saw` checks them.
struct Server12 {
    child: Child,
    addr: String,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
}

impl Server12 {
    /// Starts one in `dir`, inventing listeners from `first_port` on.
    fn start(dir: &Path, name: &str, first_port: u16) -> Result<Self> {
        let stderr = dir.join(format!("{name}.log"));
        let mut child = python("server_12.py")
            .args(["serve12", "--port", "0", "--hello-timeout", "30", "--first-port", &first_port.to_string()])
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr)?)
            .spawn()
            .context("starting python3 server_12.py")?;
        let lines = lines(child.stdout.take().context("server_12.py stdout")?);
        let mut server = Self { child, addr: String::new(), lines, seen: Vec::new(), stderr };
        let ready = server.wait_for(|l| l.starts_with("ready "), Duration::from_secs(20))?;
        server.addr = format!("127.0.0.1:{}", &ready["ready ".len()..]);
        Ok(server)
    }

    /// The next line that satisfies `want`, within `limit`.
    fn wait_for(&mut self, want: impl Fn(&str) -> bool, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => bail!(
                    "server_12.py printed no awaited line within {limit:?}; it printed {:?}; stderr:\n{}",
                    self.seen,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            }
        }
    }

    /// Checks that the server printed `line` (now or within a few seconds).
    fn saw(&mut self, line: &str) -> Result<()> {
        if !self.seen.iter().any(|l| l == line) {
            self.wait_for(|l| l == line, Duration::from_secs(5))?;
        }
        Ok(())
    }
}

impl Drop for Server12 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh session uid (UUID text).
fn fresh_uid() -> String {
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let pid = std::process::id();
    format!(
        "{pid:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (n >> 64) & 0xffff,
        (n >> 52) & 0xfff,
        (n >> 40) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Starts two facilities' `s2cs`, replays the 1.2 clients against them, then checks that every
/// session they made is released and none of its listeners is still bound.
fn replay_12_against_s2cs(insecure: bool) -> Result<()> {
    require_python();
    let dirs = [Scratch::new("py12-prod"), Scratch::new("py12-cons")];
    let opts: Vec<ServerOpts> = (0..2)
        .map(|_| ServerOpts {
            port_range: free_range(40),
            hello_timeout: 30.0,
            insecure,
            extra: vec!["--allow-plain-wan".into(), "--allow-keyless-sessions".into()],
            ..ServerOpts::default()
        })
        .collect();
    let prod = Server::start(&dirs[0].0, &opts[0])?;
    let cons = Server::start(&dirs[1].0, &opts[1])?;
    let mut py_args = args(&["--prod", &prod.addr, "--cons", &cons.addr]);
    match (&prod.cert, &cons.cert) {
        (Some(p), Some(c)) => {
            py_args.extend(["--cert".into(), p.display().to_string(), "--cert".into(), c.display().to_string()]);
        }
        _ => py_args.push("--insecure".into()),
    }
    let out = run_python("replay_12.py", &py_args, PY_BOUND)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = || {
        format!(
            "replay_12.py:\n{stdout}\nstderr:\n{}\nproducer s2cs log:\n{}\nconsumer s2cs log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            prod.log(),
            cons.log()
        )
    };
    assert!(out.status.success(), "replay_12.py exited with {}; {}", out.status, report());
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.ends_with(" 0 failed"), "last line {last:?}; {}", report());
    let passed: usize = last.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let pass_lines = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(passed >= 6 && passed == pass_lines, "{passed} passed of {pass_lines} PASS lines; {}", report());

    // Every session the replay made is released and holds no port. (Not a scan of the whole
    // port range: other tests' servers may be given an ephemeral port inside it.)
    for server in [&prod, &cons] {
        let mut list_args = server.client_flags();
        list_args.extend(args(&["--json", "list", "--s2cs", &server.addr]));
        let list = run("s2uc", &list_args, CMD_BOUND)?;
        assert!(list.status.success(), "s2uc list: {}", String::from_utf8_lossy(&list.stderr));
        let sessions: Vec<Value> = scistream_tests::json_list(&list).context("s2uc list --json")?;
        assert!(sessions.len() >= 3, "the replay made sessions at {}: {sessions:?}", server.addr);
        for s in &sessions {
            assert_eq!(s["state"], "Released", "a session the replay left behind at {}: {s}", server.addr);
            for addr in s["listeners"].as_str().unwrap_or_default().split(',').filter(|a| !a.is_empty()) {
                let port: u16 = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).context("listener port")?;
                assert!(!listening(port), "released session {} still listens on {addr}", s["uid"]);
            }
        }
    }
    Ok(())
}

#[test]
fn python_12_clients_work_unchanged_against_s2cs_over_tls() -> Result<()> {
    replay_12_against_s2cs(false)
}

#[test]
fn python_12_clients_work_unchanged_against_s2cs_insecure() -> Result<()> {
    replay_12_against_s2cs(true)
}

/// Our `s2uc request` against two servers that behave as 1.2's does: each holds a REQ until a
/// Hello for its uid arrives, the consumer's too (our client says the consumer's Hello itself).
#[test]
fn our_s2uc_drives_servers_that_only_speak_1_2() -> Result<()> {
    require_python();
    let dir = Scratch::new("py12-s2uc");
    let mut prod = Server12::start(&dir.0, "prod12", 7100)?;
    let mut cons = Server12::start(&dir.0, "cons12", 7200)?;
    let request = Request::start(&args(&["--insecure"]), &prod.addr, &cons.addr, &["--num-conn", "2"])?;
    assert_eq!(request.created["event"], "created", "{}", request.created);
    let (uid, key) = (request.uid.clone(), request.app_key.as_str());
    assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()), "app key {key:?}");

    // At once, as a user's script would: this Hello may reach the 1.2 server before s2uc's REQ
    // does. No key: a 1.2 server knows none.
    let hello = run(
        "appctrl",
        &args(&[&uid, "--s2cs", &prod.addr, "--insecure", "--listeners", "127.0.0.1:7000,127.0.0.1:7001"]),
        CMD_BOUND,
    )?;
    assert!(hello.status.success(), "appctrl: {}", String::from_utf8_lossy(&hello.stderr));
    let Request { process, lines, created, .. } = request;
    let out = process.wait(CMD_BOUND)?;
    let mut printed = vec![created.to_string()];
    loop {
        match lines.recv_timeout(Duration::from_secs(5)) {
            Ok(l) => printed.push(l),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => bail!("s2uc's stdout stayed open after it exited"),
        }
    }
    assert!(
        out.status.success(),
        "s2uc exited with {}: {printed:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let established = printed
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "established")
        .with_context(|| format!("no established line in {printed:?}"))?;
    assert_eq!(established["uid"], uid.as_str());
    assert_eq!(established["producer_listeners"], "127.0.0.1:7100,127.0.0.1:7101", "{established}");
    assert_eq!(established["consumer_listeners"], "127.0.0.1:7200,127.0.0.1:7201", "{established}");
    assert_eq!(established["prod_app_listeners"], "127.0.0.1:7000,127.0.0.1:7001", "{established}");

    // What the 1.2 servers were told.
    prod.saw(&format!("req {uid} PROD num_conn=2"))?;
    prod.saw(&format!("hello {uid} PROD key=absent prod_listeners=127.0.0.1:7000,127.0.0.1:7001"))?;
    prod.saw(&format!("update {uid} remote=127.0.0.1:7000,127.0.0.1:7001"))?;
    cons.saw(&format!("req {uid} CONS num_conn=2"))?;
    cons.saw(&format!("hello {uid} CONS key=present prod_listeners="))?;
    cons.saw(&format!("update {uid} remote=127.0.0.1:7100,127.0.0.1:7101"))?;
    Ok(())
}

/// The four single-facility commands of 1.2, each against a server that behaves as 1.2's does
/// (a REQ held until a Hello for its uid): `prod-req` with the producer's appctrl, then
/// `cons-req` with what it printed; `inbound-request`, which says the producer's Hello itself,
/// then `outbound-request` towards its listeners, which says a consumer's Hello itself.
#[test]
fn our_single_facility_commands_drive_servers_that_only_speak_1_2() -> Result<()> {
    require_python();
    let dir = Scratch::new("py12-single");
    let mut prod = Server12::start(&dir.0, "prod12", 7400)?;
    let mut cons = Server12::start(&dir.0, "cons12", 7500)?;

    // prod-req waits for the producer's Hello, which appctrl says with the uid it printed.
    let prod_req = Background::start(
        "s2uc",
        &args(&["--insecure", "--json", "prod-req", "--s2cs", &prod.addr, "--num-conn", "2"]),
    )?;
    let line = prod.wait_for(|l| l.starts_with("req ") && l.ends_with("PROD num_conn=2"), CMD_BOUND)?;
    let uid = line.split_whitespace().nth(1).context("uid")?.to_owned();
    // A producer that takes its time: prod-req retransmits its REQ meanwhile, which a 1.2 server
    // answers UNKNOWN (it holds the first until the Hello). The session must go on.
    std::thread::sleep(Duration::from_secs(3));
    let hello =
        run("appctrl", &args(&[&uid, "--s2cs", &prod.addr, "--insecure", "--listeners", "127.0.0.1:7000"]), CMD_BOUND)?;
    assert!(hello.status.success(), "appctrl: {}", String::from_utf8_lossy(&hello.stderr));
    let out = prod_req.wait(CMD_BOUND)?;
    assert!(out.status.success(), "prod-req: {}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out)?;
    assert_eq!(json_field(&lines, "listeners")?, "127.0.0.1:7400,127.0.0.1:7401");
    let creds = json_field(&lines, "credentials")?;
    prod.saw(&format!("update {uid} remote=127.0.0.1:7000"))?;

    // cons-req with the uid, the producer gateway's listeners and the credentials it printed.
    let out = run(
        "s2uc",
        &args(&[
            "--insecure",
            "--json",
            "cons-req",
            "--s2cs",
            &cons.addr,
            "--num-conn",
            "2",
            "--credentials",
            &creds,
            &uid,
            "127.0.0.1:7400,127.0.0.1:7401",
        ]),
        CMD_BOUND,
    )?;
    assert!(out.status.success(), "cons-req: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_field(&json_lines(&out)?, "listeners")?, "127.0.0.1:7500,127.0.0.1:7501");
    cons.saw(&format!("hello {uid} CONS key=present prod_listeners="))?;
    cons.saw(&format!("update {uid} remote=127.0.0.1:7400,127.0.0.1:7401"))?;

    // inbound-request: no appctrl; it names the service's listeners in its own Hello.
    let out = run(
        "s2uc",
        &args(&[
            "--insecure",
            "--json",
            "inbound-request",
            "--s2cs",
            &prod.addr,
            "--num-conn",
            "2",
            "--remote_ip",
            "127.0.0.1",
            "--receiver_ports",
            "7010,7011",
        ]),
        CMD_BOUND,
    )?;
    assert!(out.status.success(), "inbound-request: {}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out)?;
    let uid = json_field(&lines, "uid")?;
    assert_eq!(json_field(&lines, "prod_listeners")?, "127.0.0.1:7010,127.0.0.1:7011");
    let listeners = json_field(&lines, "listeners")?;
    prod.saw(&format!("hello {uid} PROD key=present prod_listeners=127.0.0.1:7010,127.0.0.1:7011"))?;
    prod.saw(&format!("update {uid} remote=127.0.0.1:7010,127.0.0.1:7011"))?;

    // outbound-request towards those listeners: the 1.2 server answers its REQ only once a
    // Hello for the uid arrived, which outbound-request says itself.
    let out = run(
        "s2uc",
        &args(&["--insecure", "--json", "outbound-request", "--s2cs", &cons.addr, "--num-conn", "2", &uid, &listeners]),
        CMD_BOUND,
    )?;
    assert!(out.status.success(), "outbound-request: {}", String::from_utf8_lossy(&out.stderr));
    cons.saw(&format!("req {uid} CONS num_conn=2"))?;
    cons.saw(&format!("update {uid} remote={listeners}"))?;
    Ok(())
}

#[test]
fn our_appctrl_retries_a_hello_that_a_1_2_server_answers_unknown_until_the_req_arrives() -> Result<()> {
    require_python();
    let dir = Scratch::new("py12-appctrl");
    let mut facility = Server12::start(&dir.0, "cons12", 7300)?;
    let uid = fresh_uid();
    // A consumer's controller, started before the session exists.
    let appctrl = Background::start(
        "appctrl",
        &args(&[&uid, "--s2cs", &facility.addr, "--insecure", "--role", "CONS", "--hello-timeout", "20"]),
    )?;
    facility.wait_for(|l| l == format!("hello {uid} refused: unknown uid"), Duration::from_secs(20))?;
    // 1.2's `cons-req UID PROD_LSTN` makes the session.
    let req = run(
        "s2uc",
        &args(&["--insecure", "cons-req", "--s2cs", &facility.addr, "--num-conn", "1", &uid, "127.0.0.1:7000"]),
        CMD_BOUND,
    )?;
    assert!(req.status.success(), "s2uc cons-req: {}", String::from_utf8_lossy(&req.stderr));
    let out = appctrl.wait(CMD_BOUND)?;
    assert!(out.status.success(), "appctrl gave up: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("hello accepted; facility listeners 127.0.0.1:7300"), "appctrl printed {said:?}");
    facility.saw(&format!("req {uid} CONS num_conn=1"))?;
    facility.saw(&format!("hello {uid} CONS key=absent prod_listeners="))?;
    Ok(())
}

/// A 1.2 Python client against an `s2cs` that checks tokens: the raw token (as 1.2 sends it)
/// and `Bearer` both accepted, `INVALID_TOKEN` and no metadata UNAUTHENTICATED before any uid
/// is looked up, another scope's token PERMISSION_DENIED.
#[test]
fn python_12_clients_authenticate_with_their_raw_token() -> Result<()> {
    use scistream_tests::authsrv::{AuthServer, Facility};
    require_python();
    let auth = AuthServer::start(&[Facility { client_id: "fac".into(), secret: "sec".into() }])?;
    let dir = Scratch::new("py12-auth");
    let mut flags = auth.s2cs_flags(&Facility { client_id: "fac".into(), secret: "sec".into() }, "ss:fac");
    flags.push("--allow-keyless-sessions".into());
    let server =
        Server::start(&dir.0, &ServerOpts { port_range: free_range(10), extra: flags, ..ServerOpts::default() })?;
    let (good, wrong) = (auth.mint("alice", "ss:fac", 600), auth.mint("alice", "ss:other", 600));
    let cert = server.cert.clone().context("TLS")?.display().to_string();
    let py_args = args(&["--s2cs", &server.addr, "--cert", &cert, "--token", &good, "--wrong-scope", &wrong]);
    let out = run_python("auth_12.py", &py_args, PY_BOUND)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("7 passed, 0 failed"),
        "auth_12.py:\n{stdout}\nstderr:\n{}\ns2cs log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    Ok(())
}
