//! The gateway daemons' flags, shared by their command lines and their `--config` files, so
//! a file is read by the same code however it arrives (and the fuzz targets reach it).

pub mod s2cs;
pub mod s2ds;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use scistream_transport::backend::{self, Backend, Kind, SetupError};

/// The data-server backend a daemon runs (`--type`, `--runtime-dir`, `--proxy-program`),
/// merged from its flags and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// Which backend.
    pub kind: Kind,
    /// Where a proxy backend keeps its sessions' private folders.
    pub runtime_dir: PathBuf,
    /// The proxy's program, when not the one on PATH.
    pub program: Option<PathBuf>,
}

impl BackendSettings {
    /// The settings `kind` (a `--type` value), `runtime_dir` and `program` give; without a
    /// runtime folder: systemd's `$RUNTIME_DIRECTORY`, else `fallback`.
    pub fn merge(
        kind: Option<&str>,
        runtime_dir: Option<PathBuf>,
        program: Option<PathBuf>,
        fallback: impl FnOnce() -> PathBuf,
    ) -> Result<Self> {
        let kind = kind.map(str::parse::<Kind>).transpose().map_err(|e| anyhow!("--type: {e}"))?.unwrap_or_default();
        if program.is_some() && kind == Kind::Native {
            bail!(
                "--proxy-program names the program of --type haproxy, nginx or stunnel; the native data server runs none"
            );
        }
        let runtime_dir = runtime_dir
            .or_else(|| {
                // systemd's RuntimeDirectory= (several are separated by colons: the first).
                std::env::var("RUNTIME_DIRECTORY").ok().and_then(|v| v.split(':').next().map(PathBuf::from))
            })
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(fallback);
        if !runtime_dir.is_absolute() {
            bail!("--runtime-dir {}: give an absolute path", runtime_dir.display());
        }
        Ok(Self { kind, runtime_dir, program })
    }

    /// The backend, ready: a proxy's program and version checked, its runtime folder prepared
    /// (what a previous run left there ended). Its error means the daemon cannot serve.
    pub fn open(&self) -> Result<Arc<dyn Backend>, SetupError> {
        backend::open(self.kind, &self.runtime_dir, self.program.as_deref())
    }
}

/// A daemon's runtime folder when none is configured: under the temporary folder, named by
/// the daemon, this user and the port it serves on (so its next run on that port finds what
/// this one left; a port picked at start names the process instead).
pub fn default_runtime_dir(daemon: &str, port: u16) -> PathBuf {
    let me = nix::unistd::geteuid().as_raw();
    let which = if port == 0 { format!("pid{}", std::process::id()) } else { port.to_string() };
    std::env::temp_dir().join(format!("scistream-{daemon}-{me}-{which}"))
}
