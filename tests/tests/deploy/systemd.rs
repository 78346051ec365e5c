//! `deploy/systemd/`: the units, the user, the example configuration files.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use scistream_tests::Scratch;

use crate::daemons::{self, flag_value};
use crate::{STOP_AFTER_DRAIN, read, repo, run_tool, toml_table, tool};

const UNITS: [&str; 2] = ["s2cs.service", "s2ds.service"];

/// A unit file's `(section, key, value)` lines, in order.
fn unit(name: &str) -> Vec<(String, String, String)> {
    let text = read(&format!("deploy/systemd/{name}"));
    let mut section = String::new();
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            lines.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        } else {
            panic!("{name}: a line that is no section, key or comment: {line:?}");
        }
    }
    lines
}

/// The values of `key` in `[Service]`.
fn service<'a>(lines: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    lines.iter().filter(|(s, k, _)| s == "Service" && k == key).map(|(_, _, v)| v.as_str()).collect()
}

/// The one value of `key` in `[Service]`.
fn one<'a>(unit: &str, lines: &'a [(String, String, String)], key: &str) -> &'a str {
    match service(lines, key)[..] {
        [v] => v,
        ref vs => panic!("{unit}: expected one {key}=, found {vs:?}"),
    }
}

/// A root for `systemd-analyze --root`: this system's own units (the targets ours depend on),
/// `/bin/kill`, ours in /etc/systemd/system, and stand-ins for the binaries where
/// docs/deploy.md installs them (verify checks that ExecStart names an executable file).
fn analysis_root() -> Scratch {
    let root = Scratch::new("systemd-root");
    let r = &root.0;
    let system = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .unwrap_or_else(|| panic!("no systemd unit folder: install Debian's systemd package; {}", crate::FIX));
    for dir in ["usr/lib/systemd", "usr/bin", "usr/local/bin", "etc/systemd/system"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    let (ok, out) = run_tool(Command::new("cp").arg("-a").arg(system).arg(r.join("usr/lib/systemd/")));
    assert!(ok, "copying {system}: {out}");
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    let kill = std::fs::canonicalize("/bin/kill").expect("/bin/kill");
    std::fs::copy(kill, r.join("usr/bin/kill")).unwrap();
    for daemon in ["s2cs", "s2ds"] {
        let stub = r.join("usr/local/bin").join(daemon);
        scistream_tests::write_script(&stub, "#!/bin/sh\nexit 0\n");
    }
    for u in UNITS {
        std::fs::copy(repo().join("deploy/systemd").join(u), r.join("etc/systemd/system").join(u)).unwrap();
    }
    root
}

#[test]
fn units_pass_systemd_analyze_verify_without_a_warning() {
    let root = analysis_root();
    let (ok, out) = run_tool(
        Command::new(tool("systemd-analyze"))
            .arg("verify")
            .arg(format!("--root={}", root.0.display()))
            .arg("--man=no")
            .args(UNITS),
    );
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify {UNITS:?}:\n{out}");
}

#[test]
fn units_stay_hardened_by_systemd_analyze_security() {
    let root = analysis_root();
    // Exposure in tenths: both units rate 1.1 of 10 today; a change that exposes more must
    // say so here.
    let (ok, out) = run_tool(
        Command::new(tool("systemd-analyze"))
            .args(["security", "--offline=yes", "--threshold=11", "--no-pager"])
            .arg(format!("--root={}", root.0.display()))
            .args(UNITS),
    );
    let verdicts: Vec<&str> = out.lines().filter(|l| l.contains("Overall exposure")).collect();
    assert!(ok, "systemd-analyze security rates a unit above 1.1: {verdicts:?}\n{out}");
    assert_eq!(verdicts.len(), UNITS.len(), "{out}");
}

#[test]
fn sysusers_entry_is_read_by_systemd_sysusers() {
    let root = Scratch::new("sysusers-root");
    std::fs::create_dir_all(root.0.join("etc")).unwrap();
    let conf = repo().join("deploy/systemd/sysusers.d/scistream.conf");
    let (ok, out) = run_tool(
        Command::new(tool("systemd-sysusers")).arg(format!("--root={}", root.0.display())).arg("--dry-run").arg(&conf),
    );
    assert!(ok && out.contains("Creating user 'scistream'"), "systemd-sysusers --dry-run {}:\n{out}", conf.display());
}

/// Hardening every unit keeps: `systemd-analyze security` weighs some of these at nothing once
/// others are set, so the score alone would not notice one going.
const HARDENING: [(&str, &str); 15] = [
    ("NoNewPrivileges", "yes"),
    ("CapabilityBoundingSet", ""),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateUsers", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("RestrictNamespaces", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources"),
];

/// ExecStart's flags after the binary, with `%d` as systemd expands it for `unit`.
fn exec_start(name: &str, lines: &[(String, String, String)]) -> (String, Vec<String>) {
    let cmdline = one(name, lines, "ExecStart").replace("%d", &format!("/run/credentials/{name}"));
    let mut words = cmdline.split_whitespace().map(str::to_owned);
    let bin = words.next().expect("ExecStart names a binary");
    (bin, words.collect())
}

/// One daemon's unit: notify, reload by SIGHUP, the user, its configuration file, and a stop
/// timeout above its drain. Returns the flags ExecStart gives.
fn check_unit(daemon: &str) -> Result<(Vec<String>, toml::Table)> {
    let name = format!("{daemon}.service");
    let lines = unit(&name);
    ensure!(one(&name, &lines, "Type") == "notify", "{name}: Type= must be notify (the daemons send READY=1)");
    ensure!(one(&name, &lines, "ExecReload") == "/bin/kill -HUP $MAINPID", "{name}: ExecReload= must send SIGHUP");
    ensure!(
        service(&lines, "SuccessExitStatus").iter().any(|v| v.split_whitespace().any(|c| c == "3")),
        "{name}: SuccessExitStatus= lacks 3 (a drain that ended sessions at its timeout is a clean stop)"
    );
    for (key, value) in HARDENING {
        ensure!(service(&lines, key).contains(&value), "{name}: {key}={value} is gone");
    }
    let sysusers = read("deploy/systemd/sysusers.d/scistream.conf");
    let user = sysusers
        .lines()
        .find_map(|l| l.strip_prefix("u ").and_then(|r| r.split_whitespace().next()))
        .context("sysusers.d/scistream.conf makes no user")?;
    ensure!(one(&name, &lines, "User") == user, "{name}: User= is not the user sysusers.d makes ({user})");
    let (bin, args) = exec_start(&name, &lines);
    ensure!(bin == format!("/usr/local/bin/{daemon}"), "{name}: ExecStart runs {bin}");
    let config = flag_value(&args, "--config").context("ExecStart gives no --config")?;
    ensure!(
        config == format!("/etc/scistream/{daemon}.toml"),
        "{name}: --config {config}, not the /etc/scistream/{daemon}.toml deploy/systemd ships"
    );
    let text = read(&format!("deploy/systemd/{daemon}.toml"));
    let table = toml_table(&text, &config)?;
    let drain = daemons::drain(&args, &table)?;
    let stop: f64 = one(&name, &lines, "TimeoutStopSec").parse().context("TimeoutStopSec= in plain seconds")?;
    ensure!(
        stop > drain + STOP_AFTER_DRAIN,
        "{name}: TimeoutStopSec={stop} does not exceed drain-timeout {drain} + {STOP_AFTER_DRAIN} s: systemd would kill the draining streams"
    );
    Ok((args, table))
}

#[test]
fn units_run_the_shipped_configuration_as_the_daemons_read_it() {
    let (cs_args, cs_table) = check_unit("s2cs").unwrap();
    let (ds_args, ds_table) = check_unit("s2ds").unwrap();
    let cs = daemons::s2cs(&read("deploy/systemd/s2cs.toml"), &cs_args).expect("deploy/systemd/s2cs.toml");
    let ds = daemons::s2ds(&read("deploy/systemd/s2ds.toml"), &ds_args).expect("deploy/systemd/s2ds.toml");
    daemons::check_pair(&cs, &ds, &ds.listen.to_string()).unwrap();
    // The client secret: a credential of the unit, read from %d.
    let lines = unit("s2cs.service");
    let cred = one("s2cs.service", &lines, "LoadCredential");
    let (id, source) = cred.split_once(':').expect("LoadCredential=ID:PATH");
    assert!(source.starts_with("/etc/scistream/"), "the credential's source {source} is not under /etc/scistream");
    let secret = flag_value(&cs_args, "--client-secret-file").expect("s2cs.service gives --client-secret-file");
    assert_eq!(secret, format!("/run/credentials/s2cs.service/{id}"), "--client-secret-file must be %d/{id}");
    assert!(!cs_table.contains_key("client-secret"), "a secret in s2cs.toml");
    // The store in the unit's StateDirectory=.
    let state = one("s2cs.service", &lines, "StateDirectory");
    assert_eq!(cs.state_dir.as_deref(), Some(Path::new("/var/lib").join(state).as_path()), "state-dir");
    // Metrics (plain HTTP, unauthenticated) on the LAN, never where the WAN reaches.
    let wan = [cs.listener_ip, ds.sides.bind.wan];
    for (daemon, args, table) in [("s2cs", &cs_args, &cs_table), ("s2ds", &ds_args, &ds_table)] {
        let metrics = daemons::metrics_addr(args, table).unwrap_or_else(|| panic!("{daemon}.toml: no metrics-addr"));
        let addr: std::net::SocketAddr = metrics.parse().unwrap();
        assert!(
            !addr.ip().is_unspecified() && !wan.contains(&addr.ip()),
            "{daemon}: metrics on {addr}, which the WAN reaches"
        );
    }
}
