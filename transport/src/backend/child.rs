//! Supervised child processes and their private runtime folder.
//!
//! - **Never orphaned.** A child is started through `setpriv --pdeathsig KILL` (util-linux)
//!   from a thread of its own that does nothing but wait for it: the kernel sends it SIGKILL
//!   the moment that thread ends, so also when the data server is killed with `kill -9`. It
//!   runs in a process group of its own, which stopping it signals as a whole.
//! - **Found again.** Every child's command line names its session folder under the runtime
//!   folder, and the folder records its pid: a data server that starts ends whatever a previous
//!   run left under its runtime folder ([`RuntimeDir::reap`]) before it serves.
//! - **Private.** The runtime folder and each session's folder are 0700 and owned by this
//!   user, every file in them 0600: they hold the sessions' private keys. A session's folder
//!   is removed when it stops.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use command_fds::CommandFdExt as _;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::backend::SetupError;

/// The program that starts children with a parent-death signal (util-linux).
pub const SETPRIV: &str = "setpriv";

/// Names of the folders sessions run in, under the runtime folder.
const SESSION_PREFIX: &str = "session-";

/// Names of the sessions' control sockets, under the runtime folder.
const SOCKET_PREFIX: &str = "sock-";

/// A data server's runtime folder: one folder per running session under it.
#[derive(Debug, Clone)]
pub struct RuntimeDir {
    root: PathBuf,
}

impl RuntimeDir {
    /// Creates the folder (0700) if it is not there, and checks it is a real folder owned by
    /// this user that nobody else can enter.
    pub fn prepare(root: &Path) -> Result<Self, SetupError> {
        let fail = |what: String| SetupError::RuntimeDir { path: root.to_path_buf(), what };
        if !root.is_absolute() {
            return Err(fail("must be an absolute path".into()));
        }
        DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| fail(format!("cannot create: {e}")))?;
        let meta = std::fs::symlink_metadata(root).map_err(|e| fail(e.to_string()))?;
        if !meta.file_type().is_dir() {
            return Err(fail("is not a folder (a symbolic link is refused)".into()));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(fail(format!("is owned by uid {}, not by this user (uid {me})", meta.uid())));
        }
        if meta.mode() & 0o077 != 0 {
            // A shared folder (/tmp) is not to be closed: name a folder of its own instead.
            let fix = if meta.mode() & 0o002 != 0 {
                "give the daemon a folder of its own (--runtime-dir)".to_string()
            } else {
                format!("`chmod 700 {}`, or give the daemon a folder of its own (--runtime-dir)", root.display())
            };
            return Err(fail(format!(
                "is open to others (mode {:o}); it holds private keys: {fix}",
                meta.mode() & 0o777
            )));
        }
        Ok(Self { root: root.to_path_buf() })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Ends every process a previous run left (any whose command line names a session folder
    /// of this runtime folder) and removes the session folders; returns the pids it ended.
    pub fn reap(&self) -> Vec<i32> {
        let marker = self.root.join(SESSION_PREFIX);
        let mut pids: BTreeSet<i32> = processes_naming(marker.as_os_str().as_encoded_bytes()).into_iter().collect();
        // The pids the folders record, when their process still names the folder (a pid the
        // system handed to someone else since is left alone).
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                if let Some(pid) =
                    std::fs::read_to_string(e.path().join("pid")).ok().and_then(|s| s.trim().parse().ok())
                    && names(pid, e.path().as_os_str().as_encoded_bytes())
                {
                    pids.insert(pid);
                }
            }
        }
        let me = std::process::id() as i32;
        pids.remove(&me);
        for &pid in &pids {
            tracing::warn!(pid, "ending a proxy a previous run of this data server left running");
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Bounded wait for them to be gone (a zombie waiting for its reaper counts as gone).
        for _ in 0..200 {
            if pids.iter().all(|p| !alive(*p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().starts_with(SOCKET_PREFIX) {
                    let _ = std::fs::remove_file(e.path());
                } else if name.to_string_lossy().starts_with(SESSION_PREFIX)
                    && let Err(err) = std::fs::remove_dir_all(e.path())
                {
                    tracing::warn!("cannot remove {}: {err}", e.path().display());
                }
            }
        }
        pids.into_iter().collect()
    }

    /// A path for a session's control socket, `n` a number no other session of this process
    /// has (see [`RuntimeDir::socket`]).
    pub fn socket_in(root: &Path, n: u64) -> PathBuf {
        root.join(format!("{SOCKET_PREFIX}{n}.sock"))
    }

    /// A fresh path for a session's control socket (short, unlike a session folder's files:
    /// a unix socket's path is limited).
    pub fn socket(&self) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let path = Self::socket_in(&self.root, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        // A previous run's (reaped) socket of the same name goes.
        let _ = std::fs::remove_file(&path);
        path
    }

    /// A fresh private folder named `name` (whatever was there before is removed).
    pub fn session(&self, name: &str) -> io::Result<PathBuf> {
        let dir = self.root.join(format!("{SESSION_PREFIX}{name}"));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        DirBuilder::new().mode(0o700).create(&dir)?;
        // The umask may have taken bits away, never added them; set it exactly.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }
}

/// Writes a new file only this user can read (0600).
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether `pid`'s command line contains `needle`.
fn names(pid: i32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
}

/// The processes whose command line contains `needle`.
pub(super) fn processes_naming(needle: &[u8]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| names(*pid, needle))
        .collect()
}

/// The TCP ports `pid` has a listening socket on (its own descriptors, in its network
/// namespace).
pub fn listening_ports(pid: i32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && let Some(inode) =
                    link.to_str().and_then(|l| l.strip_prefix("socket:[")).and_then(|l| l.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9
                && f[3] == "0A"
                && inodes.contains(f[9])
                && let Some(port) = f[1].rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            {
                ports.insert(port);
            }
        }
    }
    ports
}

/// The last `n` lines of a file (a child's log), joined with " | ".
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// What a child is started with.
#[derive(Debug)]
pub struct Spawn {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Descriptors it inherits, at their numbers (closed in this process once it runs).
    pub inherit: Vec<OwnedFd>,
    /// Where its standard output and error go (created 0600).
    pub log: PathBuf,
}

/// A supervised child.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    /// `Some(how it ended)` once it has.
    exit: watch::Receiver<Option<String>>,
}

impl Child {
    /// Starts the child from a thread of its own, which waits for it.
    pub async fn spawn(s: Spawn) -> io::Result<Self> {
        let log = OpenOptions::new().append(true).create(true).mode(0o600).open(&s.log)?;
        let mut cmd = Command::new(SETPRIV);
        cmd.arg("--pdeathsig").arg("KILL").arg("--").arg(&s.program).args(&s.args);
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        cmd.process_group(0);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        // The listeners stay close-on-exec in this process: only the forked child clears the
        // flag, just before it runs the proxy. Clearing it here, even for an instant, would let
        // any other process this one starts meanwhile (a configuration test, another session's
        // proxy) inherit the session's ports and hold them after the session ends. The hook is
        // set only when there is something to hand on: it makes the standard library fork
        // rather than spawn, and a fork's copies of this process's descriptors live until its
        // exec.
        if !s.inherit.is_empty() {
            cmd.preserved_fds(s.inherit);
        }
        std::thread::Builder::new().name("proxy-child".into()).spawn(move || {
            let spawned = cmd.spawn();
            // This process's copies close here: the child holds the listeners now.
            drop(cmd);
            match spawned {
                Ok(mut child) => {
                    let _ = started_tx.send(Ok(child.id()));
                    let how = match child.wait() {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("lost: {e}"),
                    };
                    let _ = exit_tx.send(Some(how));
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            }
        })?;
        let pid = started_rx.await.map_err(|_| io::Error::other("the spawning thread ended"))??;
        Ok(Self { pid: pid as i32, exit: exit_rx })
    }

    /// Its pid (also its process group).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// How it ended, if it has.
    pub fn exited(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// A receiver that sees it end.
    pub fn watch(&self) -> watch::Receiver<Option<String>> {
        self.exit.clone()
    }

    /// Ends it and its process group: SIGTERM, then SIGKILL after `grace`; returns once it has
    /// exited (bounded: after SIGKILL the kernel ends it).
    pub async fn terminate(&self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let group = Pid::from_raw(self.pid);
        let _ = killpg(group, Signal::SIGTERM);
        if !self.wait_for(grace).await {
            let _ = killpg(group, Signal::SIGKILL);
            if !self.wait_for(Duration::from_secs(10)).await {
                tracing::error!(pid = self.pid, "a proxy did not exit 10 s after SIGKILL");
            }
        }
    }

    /// Waits at most `limit` for it to exit; whether it has.
    pub async fn wait_for(&self, limit: Duration) -> bool {
        let mut rx = self.exit.clone();
        tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await.is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_folder_open_to_others_or_a_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = RuntimeDir::prepare(&open).unwrap_err().to_string();
        assert!(e.contains("open to others") && e.contains("chmod 700"), "{e}");
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = RuntimeDir::prepare(&shared).unwrap_err().to_string();
        assert!(e.contains("a folder of its own") && !e.contains("chmod"), "{e}");
        let link = tmp.path().join("link");
        let private = tmp.path().join("private");
        RuntimeDir::prepare(&private).unwrap();
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let e = RuntimeDir::prepare(&link).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
        let e = RuntimeDir::prepare(Path::new("relative")).unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
        let meta = std::fs::metadata(&private).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    #[test]
    fn session_folders_and_files_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::prepare(&tmp.path().join("rt")).unwrap();
        let dir = rt.session("abc").unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        write_private(&dir.join("key"), b"secret").unwrap();
        assert_eq!(std::fs::metadata(dir.join("key")).unwrap().mode() & 0o777, 0o600);
        // A second session folder of the same name starts empty.
        let again = rt.session("abc").unwrap();
        assert!(std::fs::read_dir(&again).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn reaping_ends_what_a_previous_run_left_and_only_that() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::prepare(&tmp.path().join("rt")).unwrap();
        let dir = rt.session("left").unwrap();
        // A "proxy" whose command line names its session folder, as every child's does (the
        // shell's $0), with a child of its own in its process group.
        let left = Child::spawn(Spawn {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 60; true".into(), dir.clone().into()],
            inherit: vec![],
            log: dir.join("log"),
        })
        .await
        .unwrap();
        // A bystander that names the runtime folder but no session folder of it.
        let bystander = Child::spawn(Spawn {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 60; true".into(), rt.root().into()],
            inherit: vec![],
            log: tmp.path().join("bystander.log"),
        })
        .await
        .unwrap();
        // sh execs sleep, keeping the command line; give it the instant it needs.
        for _ in 0..100 {
            if names(left.pid(), dir.as_os_str().as_encoded_bytes()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rt2 = rt.clone();
        let reaped = tokio::task::spawn_blocking(move || rt2.reap()).await.unwrap();
        // (The shell's child may show the shell's command line for an instant: it may be
        // ended by name too.)
        assert!(reaped.contains(&left.pid()) && !reaped.contains(&bystander.pid()), "{reaped:?}");
        assert!(left.wait_for(Duration::from_secs(5)).await, "the leftover was not ended");
        assert!(!dir.exists(), "its folder was not removed");
        assert!(bystander.exited().is_none(), "a process outside the session folders was ended");
        bystander.terminate(Duration::from_secs(1)).await;
        assert!(bystander.exited().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listener_handed_to_a_child_reaches_no_other_process_started_meanwhile() {
        use std::os::fd::AsRawFd as _;
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let inode = |fd: &OwnedFd| nix::sys::stat::fstat(fd).unwrap().st_ino;
        // Another part of the process starts programs all the while (as the data server runs
        // configuration tests and other sessions' proxies): none may hold a session's port.
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let bystanders = std::thread::spawn(move || {
            let mut held = Vec::new();
            for _ in 0..5_000 {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let mut c = Command::new("/bin/sleep").arg("30").stdin(Stdio::null()).spawn().unwrap();
                // Its descriptors as they are after the exec (spawn returns once it has run).
                for e in std::fs::read_dir(format!("/proc/{}/fd", c.id())).into_iter().flatten().flatten() {
                    if let Ok(target) = std::fs::read_link(e.path()) {
                        held.push(target.to_string_lossy().into_owned());
                    }
                }
                c.kill().unwrap();
                c.wait().unwrap();
            }
            held
        });
        let mut handed = Vec::new();
        for i in 0..40 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let fd = OwnedFd::from(l);
            let (n, ino) = (fd.as_raw_fd(), inode(&fd));
            let log = tmp.path().join(format!("child-{i}.log"));
            let c = Child::spawn(Spawn {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), format!("readlink /proc/$$/fd/{n}").into()],
                inherit: vec![fd],
                log: log.clone(),
            })
            .await
            .unwrap();
            assert!(c.wait_for(Duration::from_secs(10)).await, "child {i} did not exit");
            // The child itself got it, at its number.
            let said = std::fs::read_to_string(&log).unwrap();
            assert_eq!(said.trim(), format!("socket:[{ino}]"), "child {i}");
            handed.push(format!("socket:[{ino}]"));
        }
        stop.store(true, Ordering::Relaxed);
        let held = bystanders.join().unwrap();
        let leaked: Vec<&String> = held.iter().filter(|h| handed.contains(h)).collect();
        assert!(leaked.is_empty(), "other processes inherited session listeners: {leaked:?}");
    }

    #[tokio::test]
    async fn a_child_dies_when_its_supervising_thread_does() {
        // The parent-death signal: the child of a thread that ends is killed with it. (The
        // data server killed with -9 ends every such thread at once.)
        let tmp = tempfile::tempdir().unwrap();
        let pidfile = tmp.path().join("pid");
        let pf = pidfile.clone();
        std::thread::spawn(move || {
            let child = Command::new(SETPRIV)
                .args(["--pdeathsig", "KILL", "--", "/bin/sleep", "60"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            std::fs::write(&pf, child.id().to_string()).unwrap();
            // Once setpriv has set the signal and become sleep (bounded: 30 s)...
            for _ in 0..3_000 {
                if std::fs::read_to_string(format!("/proc/{}/comm", child.id())).is_ok_and(|c| c.trim() == "sleep") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // ...the thread ends without waiting: as if the data server were killed.
            std::mem::forget(child);
        })
        .join()
        .unwrap();
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
        let mut gone = false;
        for _ in 0..3_000 {
            if !alive(pid) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Reap the zombie (it is this process's child).
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        assert!(gone, "the child outlived its parent thread");
    }

    #[test]
    fn listening_ports_sees_this_process_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening_ports(std::process::id() as i32).contains(&port));
        drop(l);
        assert!(!listening_ports(std::process::id() as i32).contains(&port));
    }
}
