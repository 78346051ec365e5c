//! The `Dockerfile` (and `.dockerignore`): two images, `s2cs` and `s2ds`, from one build.

use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::daemons::{self, flag_value};
use crate::{read, repo, run_tool, tool};

/// The Dockerfile's instructions, continuation lines joined: `(KEYWORD, rest)`.
fn instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (kw, rest) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        out.push((kw.to_ascii_uppercase(), rest.trim().to_owned()));
    }
    out
}

/// The stages: `(name, instructions after FROM)`.
fn stages() -> Vec<(String, Vec<(String, String)>)> {
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (kw, rest) in instructions() {
        if kw == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words[..] {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_owned(),
                _ => String::new(),
            };
            stages.push((name, Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push((kw, rest));
        }
    }
    stages
}

/// A JSON-form (exec form) argument list.
fn exec_form(what: &str, text: &str) -> Result<Vec<String>> {
    let v: Value = serde_json::from_str(text).with_context(|| format!("{what} {text}: not in JSON form"))?;
    let Value::Array(items) = v else { bail!("{what} {text}: not a list") };
    items.iter().map(|i| i.as_str().map(str::to_owned).context("not a string")).collect()
}

#[test]
fn dockerfile_passes_hadolint_at_every_severity() {
    let (ok, out) = run_tool(
        Command::new(tool("hadolint"))
            .args(["--no-color", "--failure-threshold", "style"])
            .arg(repo().join("Dockerfile")),
    );
    assert!(ok, "hadolint Dockerfile:\n{out}");
}

/// One daemon's final stage: non-root, its binary as entry point, a health check on the
/// metrics port its default command serves.
fn check_stage(daemon: &str, body: &[(String, String)]) -> Result<u16> {
    let last = |kw: &str| body.iter().rev().find(|(k, _)| k == kw).map(|(_, r)| r.as_str());
    let user = last("USER").context("no USER: the image would run as root")?;
    let uid: u32 = user.split(':').next().unwrap_or_default().parse().context("USER: give a numeric uid")?;
    ensure!(uid != 0, "USER {user}: root");
    let bin = format!("/usr/local/bin/{daemon}");
    ensure!(
        body.iter().any(|(k, r)| k == "COPY" && r.starts_with("--from=build") && r.ends_with(&format!(" {bin}"))),
        "the stage does not copy {bin} from the build"
    );
    ensure!(exec_form("ENTRYPOINT", last("ENTRYPOINT").context("no ENTRYPOINT")?)? == [bin.clone()], "ENTRYPOINT");
    let cmd = exec_form("CMD", last("CMD").context("no CMD")?)?;
    // The default command: the file a container mounts at /etc/scistream, and metrics where
    // the health check asks, whatever the file says (flags win).
    let config = flag_value(&cmd, "--config").context("CMD gives no --config")?;
    ensure!(config == format!("/etc/scistream/{daemon}.toml"), "CMD --config {config}");
    daemons::accepts_flags(daemon, &cmd).with_context(|| format!("CMD {cmd:?}"))?;
    let metrics = flag_value(&cmd, "--metrics-addr").context("CMD gives no --metrics-addr")?;
    let port = daemons::port_of(&metrics)?;
    let health = last("HEALTHCHECK").context("no HEALTHCHECK")?;
    let (_, probe) = health.split_once(" CMD ").context("HEALTHCHECK without CMD")?;
    let want = [bin, "health".into(), "--metrics-addr".into(), format!("127.0.0.1:{port}")];
    ensure!(exec_form("HEALTHCHECK CMD", probe.trim())? == want, "HEALTHCHECK CMD {probe}: expected {want:?}");
    let exposed: Vec<&str> =
        body.iter().filter(|(k, _)| k == "EXPOSE").flat_map(|(_, r)| r.split_whitespace()).collect();
    ensure!(exposed.contains(&port.to_string().as_str()), "EXPOSE {exposed:?} lacks the metrics port {port}");
    Ok(port)
}

#[test]
fn images_run_their_daemon_unprivileged_with_a_health_check() {
    let stages = stages();
    for daemon in ["s2cs", "s2ds"] {
        let (_, body) = stages.iter().find(|(n, _)| n == daemon).unwrap_or_else(|| panic!("no stage {daemon}"));
        check_stage(daemon, body).unwrap_or_else(|e| panic!("Dockerfile, stage {daemon}: {e:#}"));
    }
    assert_eq!(stages.last().map(|(n, _)| n.as_str()), Some("s2cs"), "a build without --target makes s2cs");
}

#[test]
fn image_build_copies_every_workspace_member() {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    let members = manifest["workspace"]["members"].as_array().expect("workspace.members");
    let stages = stages();
    let (_, build) = stages.iter().find(|(n, _)| n == "build").expect("a build stage");
    let ignore = read(".dockerignore");
    for m in members {
        let top = m.as_str().unwrap().split('/').next().unwrap();
        assert!(
            build.iter().any(|(k, r)| k == "COPY" && r == &format!("{top} {top}")),
            "the build stage does not COPY {top}, a workspace member: cargo would not load the workspace"
        );
        assert!(ignore.lines().any(|l| l.trim() == format!("!{top}/")), ".dockerignore leaves {top}/ out");
    }
}

/// A one-shot `/readyz`: answers the first request with `status`, on a port of its own.
fn readyz(status: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = write!(conn, "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\n\r\n{status}\n");
        String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned()
    });
    (port, served)
}

#[test]
fn health_check_command_is_one_the_daemons_take() {
    // HEALTHCHECK runs `<daemon> health --metrics-addr 127.0.0.1:PORT`: 0 when /readyz says
    // 200, 1 when it says otherwise; 2 would be a command line the daemon refuses.
    for daemon in ["s2cs", "s2ds"] {
        for (status, want) in [("200 OK", 0), ("503 Service Unavailable", 1)] {
            let (port, served) = readyz(status);
            let out = Command::new(scistream_tests::bin(daemon))
                .args(["health", "--metrics-addr", &format!("127.0.0.1:{port}")])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(want),
                "{daemon} health against /readyz answering {status}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            let request = served.join().unwrap();
            assert!(request.starts_with("GET /readyz "), "{daemon} health asked {request:?}");
        }
    }
}
