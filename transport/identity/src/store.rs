//! Where `s2uc` keeps its tokens: `tokens.json` in the user's configuration folder
//! (`$SCISTREAM_CONFIG_DIR`, else `$XDG_CONFIG_HOME/scistream`, else `~/.config/scistream`),
//! one entry per scope. The folder is kept at mode 0700 and the file written with mode 0600,
//! whole or not at all (a fresh temporary file, never a link, renamed over it). A
//! refresh (read again, refresh, write) holds an advisory lock (`tokens.lock`, on Linux), so two
//! `s2uc` processes (or two tasks of one) never refresh the same token at once or undo each
//! other's writes. Tokens never
//! appear in `Debug` output or logs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::OAuthError;

/// One scope's tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The scope (full form).
    pub scope: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the server gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, seconds since the Unix epoch (None: the server did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Who logged in, when the server said (an OpenID Connect id_token's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// When it was obtained or last refreshed, seconds since the Unix epoch.
    pub obtained_at: i64,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("scope", &self.scope)
            .field("access_token", &"<redacted>")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .field("identity", &self.identity)
            .finish()
    }
}

impl StoredToken {
    /// Seconds until the access token expires at `now` (negative once it has), if known.
    /// Saturates: the expiry comes from a file, which may hold any number.
    pub fn remaining(&self, now: i64) -> Option<i64> {
        self.expires_at.map(|e| e.saturating_sub(now))
    }
}

/// The token file of one user.
#[derive(Debug, Clone)]
pub struct TokenStore {
    dir: PathBuf,
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    tokens: BTreeMap<String, StoredToken>,
}

impl TokenStore {
    /// The store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store in the user's configuration folder (see the module's documentation).
    pub fn default_location() -> Result<Self, OAuthError> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(d) = var("SCISTREAM_CONFIG_DIR") {
            return Ok(Self::at(d));
        }
        if let Some(d) = var("XDG_CONFIG_HOME") {
            return Ok(Self::at(d.join("scistream")));
        }
        match var("HOME") {
            Some(h) => Ok(Self::at(h.join(".config").join("scistream"))),
            None => Err(OAuthError::Store("no HOME, XDG_CONFIG_HOME or SCISTREAM_CONFIG_DIR to keep tokens in".into())),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The token file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("tokens.json")
    }

    fn load(&self) -> Result<File, OAuthError> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|e| {
                OAuthError::Store(format!("{} is damaged ({e}); delete it and log in again", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
            Err(e) => Err(OAuthError::Store(format!("reading {}: {e}", path.display()))),
        }
    }

    fn save(&self, file: &File) -> Result<(), OAuthError> {
        let text = serde_json::to_vec_pretty(file).map_err(|e| OAuthError::Store(e.to_string()))?;
        write_private(&self.dir, "tokens.json", &text)
    }

    /// Holds the store's advisory lock until the guard is dropped; waits (asynchronously) up
    /// to `within` while another holder has it. Where locks cannot be had at all (a read-only
    /// folder, a file system without locks such as NFS mounted `nolock`), goes on without one
    /// and says so in the log.
    pub async fn lock(&self, within: std::time::Duration) -> Result<StoreLock, OAuthError> {
        let path = self.dir.join("tokens.lock");
        let started = std::time::Instant::now();
        loop {
            let file = create_private_dir(&self.dir)
                .and_then(|()| private_options().read(true).write(true).create(true).truncate(false).open(&path));
            let file = match file {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("cannot lock {}: {e}; going on without the lock", path.display());
                    return Ok(StoreLock(None));
                }
            };
            match try_lock(file) {
                Ok(lock) => return Ok(StoreLock(Some(lock))),
                Err(Busy::Held) if started.elapsed() < within => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(Busy::Held) => {
                    return Err(OAuthError::Store(format!(
                        "{} is held by another s2uc for over {} s",
                        path.display(),
                        within.as_secs()
                    )));
                }
                Err(Busy::Unsupported(e)) => {
                    tracing::warn!("cannot lock {}: {e}; going on without the lock", path.display());
                    return Ok(StoreLock(None));
                }
            }
        }
    }

    /// The tokens of `scope`.
    pub fn get(&self, scope: &str) -> Result<Option<StoredToken>, OAuthError> {
        Ok(self.load()?.tokens.remove(scope))
    }

    /// Every stored entry.
    pub fn all(&self) -> Result<Vec<StoredToken>, OAuthError> {
        Ok(self.load()?.tokens.into_values().collect())
    }

    /// Stores `token` under its scope (replacing what was there).
    pub fn put(&self, token: StoredToken) -> Result<(), OAuthError> {
        let mut file = self.load()?;
        file.tokens.insert(token.scope.clone(), token);
        self.save(&file)
    }

    /// Forgets `scope`'s tokens; whether there were any.
    pub fn remove(&self, scope: &str) -> Result<bool, OAuthError> {
        let mut file = self.load()?;
        let had = file.tokens.remove(scope).is_some();
        if had {
            self.save(&file)?;
        }
        Ok(had)
    }
}

fn parse(text: &str) -> Result<File, serde_json::Error> {
    serde_json::from_str(text)
}

/// The entries of a token file's text, as [`TokenStore::all`] reads them from `tokens.json`.
pub fn parse_file(text: &str) -> Result<Vec<StoredToken>, OAuthError> {
    parse(text).map(|f| f.tokens.into_values().collect()).map_err(|e| OAuthError::Store(e.to_string()))
}

/// The store's advisory lock (`None`: none could be had), released on drop.
#[derive(Debug)]
pub struct StoreLock(#[allow(dead_code)] Option<LockHandle>);

#[cfg(target_os = "linux")]
type LockHandle = nix::fcntl::Flock<std::fs::File>;
#[cfg(not(target_os = "linux"))]
type LockHandle = std::fs::File;

/// Why a lock was not had.
enum Busy {
    /// Another holder has it.
    Held,
    /// The file system cannot lock.
    Unsupported(String),
}

#[cfg(target_os = "linux")]
fn try_lock(file: std::fs::File) -> Result<LockHandle, Busy> {
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| match e {
        nix::errno::Errno::EWOULDBLOCK => Busy::Held,
        other => Busy::Unsupported(other.to_string()),
    })
}

/// Elsewhere than Linux the store is not locked (the `nix` dependency is Linux-only here).
#[cfg(not(target_os = "linux"))]
fn try_lock(file: std::fs::File) -> Result<LockHandle, Busy> {
    Ok(file)
}

/// Writes `name` in `dir` whole or not at all, readable by its owner only: a fresh temporary
/// file (created exclusively, so never an existing file or a link planted there) renamed over it.
pub(crate) fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), OAuthError> {
    let err = |what: &str, e: std::io::Error| OAuthError::Store(format!("{what} {}: {e}", dir.display()));
    create_private_dir(dir).map_err(|e| err("creating", e))?;
    let tmp = dir.join(format!(".{name}.{}.{:016x}", std::process::id(), rand_suffix()));
    let write = || -> std::io::Result<()> {
        let mut f = private_options().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(&format!("writing {name} in"), e)
    })
}

/// Options that create files only their owner can read, and never follow a link planted at
/// the path.
fn private_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
        #[cfg(target_os = "linux")]
        o.custom_flags(nix::libc::O_NOFOLLOW);
    }
    o
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    // ring's system RNG; a clock-based fallback is good enough for a name made exclusively.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(b)
}

/// A folder only its owner can enter: made with mode 0700, or tightened to it when it exists.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(scope: &str, access: &str) -> StoredToken {
        StoredToken {
            scope: scope.into(),
            access_token: access.into(),
            refresh_token: Some("refresh-secret".into()),
            expires_at: Some(1_000),
            identity: Some("alice".into()),
            obtained_at: 10,
        }
    }

    #[test]
    fn entries_per_scope_round_trip_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::at(dir.path().join("cfg"));
        assert_eq!(store.get("a").unwrap(), None);
        store.put(tok("a", "at-a")).unwrap();
        store.put(tok("b", "at-b")).unwrap();
        store.put(tok("a", "at-a2")).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().access_token, "at-a2");
        assert_eq!(store.all().unwrap().len(), 2);
        assert!(store.remove("a").unwrap());
        assert!(!store.remove("a").unwrap());
        assert_eq!(store.get("a").unwrap(), None);
        assert_eq!(store.get("b").unwrap().unwrap().access_token, "at-b");
    }

    #[cfg(unix)]
    #[test]
    fn file_is_0600_and_folder_0700() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::at(dir.path().join("cfg"));
        store.put(tok("a", "at")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
        // Loosened by hand: the next write tightens it again.
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        store.put(tok("b", "at")).unwrap();
        assert_eq!(mode(&store.path()), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(store.dir()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_open_folder_is_tightened() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg");
        std::fs::create_dir(&cfg).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o755)).unwrap();
        TokenStore::at(&cfg).put(tok("a", "at")).unwrap();
        assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[tokio::test]
    async fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::at(dir.path());
        let held = store.lock(std::time::Duration::from_secs(1)).await.unwrap();
        let e = store.lock(std::time::Duration::from_millis(100)).await.unwrap_err();
        assert!(e.to_string().contains("held by another"), "{e}");
        drop(held);
        store.lock(std::time::Duration::from_secs(1)).await.unwrap();
    }

    #[test]
    fn damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::at(dir.path());
        std::fs::write(store.path(), "{not json").unwrap();
        let e = store.get("a").unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("tokens.json"), "{e}");
    }

    /// Found by the `token_store` fuzz target: an expiry far in the past overflowed (a panic
    /// in a debug build; in a release build it wrapped into a token that never expires, so
    /// `s2uc` never refreshed it).
    #[test]
    fn a_damaged_expiry_saturates_instead_of_overflowing() {
        let text =
            r#"{"tokens":{"s":{"scope":"s","access_token":"a","expires_at":-9223372036854775808,"obtained_at":0}}}"#;
        let t = parse_file(text).unwrap().remove(0);
        assert_eq!(t.remaining(1_750_000_000), Some(i64::MIN), "long expired, not about to");
        let far = StoredToken { expires_at: Some(i64::MAX), ..t };
        assert_eq!(far.remaining(-1), Some(i64::MAX));
    }

    #[test]
    fn debug_never_shows_tokens() {
        let text = format!("{:?}", tok("a", "access-secret"));
        assert!(!text.contains("access-secret") && !text.contains("refresh-secret"), "{text}");
    }
}
