//! The user's identity in `s2uc`: `login`, `logout`, `check-auth`, and which token goes to
//! which control server.
//!
//! Settings come from flags, then `s2uc.toml` in the configuration folder (`--config-dir`, else
//! the token store's, see [`TokenStore::default_location`]), then Globus Auth's defaults:
//!
//! ```toml
//! auth-url = "https://auth.globus.org"      # endpoints under /v2/oauth2/
//! client-id = "…"                           # the native client s2uc logs in as
//! redirect-url = "https://auth.globus.org/v2/web/auth-code"
//! default-scope = "…"                       # for control servers not listed below
//! [scopes]                                  # which scope each control server needs
//! "10.16.42.61:5000" = "c42c0dac-0a52-408e-a04f-5d31bfe0aef8"
//! "gateway.facility-b.org" = "https://auth.globus.org/scopes/…/scistream"  # any port
//! ```
//!
//! A scope that is a bare client id (a UUID, as SciStream 1.2 takes it) means
//! `https://auth.globus.org/scopes/<id>/scistream`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use scistream_identity::login::{LoginConfig, PendingLogin, loopback_code};
use scistream_identity::store::{StoredToken, TokenStore};
use scistream_identity::{self as oauth, Endpoints};
use scistream_transport::client::ControlClient;
use serde::Deserialize;

use crate::client::ConnectOpts;

/// The native client SciStream 1.2's `s2uc` logs in as at Globus Auth.
pub const SCISTREAM_NATIVE_CLIENT: &str = "4787c84e-9c55-4881-b941-cb6720cea11c";

/// A token expiring within this long is refreshed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Longest wait for another `s2uc` holding the token store.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long a login started with `--url-only` waits for its `--code`.
pub const PENDING_LOGIN_LIFE: Duration = Duration::from_secs(900);

/// Identity flags shared by every `s2uc` command.
#[derive(Args, Clone, Debug, Default)]
pub struct AuthOpts {
    /// The scope to log in for, or to use with every control server of this command (a bare
    /// client id means <https://auth.globus.org/scopes/ID/scistream>) [default: from s2uc.toml].
    #[arg(long, global = true)]
    pub scope: Option<String>,
    /// The authorization server (endpoints under /v2/oauth2/) [default: <https://auth.globus.org>].
    #[arg(long, global = true)]
    pub auth_url: Option<String>,
    /// The native OAuth2 client id to log in as [default: SciStream's Globus client].
    #[arg(long, global = true)]
    pub client_id: Option<String>,
    /// Settings file [default: s2uc.toml in the configuration folder].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The configuration folder, where tokens are kept [default: $XDG_CONFIG_HOME/scistream
    /// or ~/.config/scistream].
    #[arg(long, env = "SCISTREAM_CONFIG_DIR", global = true)]
    pub config_dir: Option<PathBuf>,
}

/// `s2uc.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    auth_url: Option<String>,
    client_id: Option<String>,
    redirect_url: Option<String>,
    default_scope: Option<String>,
    #[serde(default)]
    scopes: BTreeMap<String, String>,
}

/// The user's identity settings and token store, resolved.
#[derive(Debug)]
pub struct UserAuth {
    opts: AuthOpts,
    file: FileSettings,
    /// Where tokens are kept; unknown without HOME (then commands that need no token still work).
    store: Result<TokenStore, String>,
    login: LoginConfig,
    margin: Duration,
}

impl UserAuth {
    /// Reads the settings (`opts` over `s2uc.toml` over the defaults).
    pub fn load(opts: &AuthOpts) -> Result<Self> {
        let store = match &opts.config_dir {
            Some(d) => Ok(TokenStore::at(d)),
            None => TokenStore::default_location().map_err(|e| e.to_string()),
        };
        let path = match (&opts.config, &store) {
            (Some(p), _) => Some((p.clone(), true)),
            (None, Ok(s)) => Some((s.dir().join("s2uc.toml"), false)),
            (None, Err(_)) => None,
        };
        let file: FileSettings = match path {
            None => FileSettings::default(),
            Some((path, explicit)) => match std::fs::read_to_string(&path) {
                Ok(text) => toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => FileSettings::default(),
                Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
            },
        };
        Self::resolve(opts, file, store)
    }

    /// The settings `opts` and the text of an `s2uc.toml` make, with tokens kept in `store`.
    pub fn from_settings_text(opts: &AuthOpts, text: &str, store: TokenStore) -> Result<Self> {
        Self::resolve(opts, toml::from_str(text).context("parsing s2uc.toml")?, Ok(store))
    }

    fn resolve(opts: &AuthOpts, file: FileSettings, store: Result<TokenStore, String>) -> Result<Self> {
        let base = opts.auth_url.clone().or_else(|| file.auth_url.clone()).unwrap_or_else(|| oauth::GLOBUS_AUTH.into());
        let endpoints = Endpoints::under(&base).context("--auth-url")?;
        let redirect = match &file.redirect_url {
            Some(r) => oauth::checked_url(r).context("redirect-url")?,
            None => oauth::checked_url(&format!("{}/v2/web/auth-code", base.trim_end_matches('/')))?,
        };
        let client_id =
            opts.client_id.clone().or_else(|| file.client_id.clone()).unwrap_or_else(|| SCISTREAM_NATIVE_CLIENT.into());
        let login = LoginConfig { endpoints, client_id, redirect, timeout: Duration::from_secs(15) };
        Ok(Self { opts: opts.clone(), file, store, login, margin: REFRESH_MARGIN })
    }

    /// Refresh tokens that expire within `REFRESH_MARGIN` plus `lasting`: a command that will
    /// keep using a token for a while (a setup waiting for its Hello) needs it valid throughout.
    pub fn lasting(mut self, lasting: Duration) -> Self {
        self.margin = REFRESH_MARGIN.saturating_add(lasting);
        self
    }

    /// The token store; an error when there is nowhere to keep tokens (no HOME, no
    /// `--config-dir`).
    pub fn store(&self) -> Result<&TokenStore> {
        self.store.as_ref().map_err(|e| anyhow!("{e}; pass --config-dir"))
    }

    /// The scope given on the command line or as the default, in full form.
    pub fn chosen_scope(&self) -> Option<String> {
        self.opts.scope.as_ref().or(self.file.default_scope.as_ref()).map(|s| oauth::full_scope(s))
    }

    /// The scope the control server at `addr` needs: `--scope`, else its entry in `[scopes]`
    /// (`host:port`, then the host alone), else `default-scope`.
    pub fn scope_for(&self, addr: &str) -> Option<String> {
        if let Some(s) = &self.opts.scope {
            return Some(oauth::full_scope(s));
        }
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        self.file
            .scopes
            .get(addr)
            .or_else(|| self.file.scopes.get(host))
            .or_else(|| self.file.scopes.get(host.trim_matches(['[', ']'])))
            .or(self.file.default_scope.as_ref())
            .map(|s| oauth::full_scope(s))
    }

    /// The token to send to `addr`: refreshed first when it is about to expire. `None` when
    /// no scope is configured for it or the user never logged in for that scope (a server with
    /// authentication off needs none; one with it on answers UNAUTHENTICATED).
    pub async fn token_for(&self, addr: &str) -> Result<Option<StoredToken>> {
        let (Some(scope), Ok(store)) = (self.scope_for(addr), &self.store) else { return Ok(None) };
        Ok(self.login.fresh(store, &scope, self.margin).await?)
    }

    /// A client of the control server at `addr` carrying the user's token for it (or the
    /// explicit `--token`).
    pub async fn client(&self, conn: &ConnectOpts, addr: &str) -> Result<ControlClient> {
        if conn.token.is_some() {
            return conn.client(addr).await;
        }
        let token = self.token_for(addr).await?;
        conn.client_with_token(addr, token.as_ref().map(|t| t.access_token.as_str())).await
    }

    fn need_scope(&self) -> Result<String> {
        self.chosen_scope().ok_or_else(|| {
            anyhow!(crate::Usage(
                "which scope? pass --scope (the facility's client id or a full scope) or set default-scope in s2uc.toml".into()
            ))
        })
    }

    /// `s2uc login`.
    pub async fn login(&self, how: &LoginHow, out: &mut dyn FnMut(&str)) -> Result<StoredToken> {
        let token = if let Some(code) = &how.code {
            let pending = PendingLogin::take(self.store()?, PENDING_LOGIN_LIFE)?;
            self.login.finish(pending, code, None).await?
        } else if how.loopback {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("loopback redirect")?;
            let redirect = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
            let pending = self.login.begin_with_redirect(&self.need_scope()?, &redirect)?;
            out(&pending.url);
            eprintln!("open the URL above and log in; waiting for the redirect to {redirect} …");
            let code = loopback_code(listener, pending.state(), how.within).await?;
            self.login.finish(pending, &code, None).await?
        } else {
            let pending = self.login.begin(&self.need_scope()?)?;
            out(&pending.url);
            if how.url_only {
                pending.save(self.store()?)?;
                eprintln!("open the URL above, log in, then run: s2uc login --code CODE");
                return Err(anyhow!(Pending));
            }
            eprintln!("open the URL above, log in, and paste the authorization code here:");
            let line = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .context("reading the code")??;
            if line.trim().is_empty() {
                bail!(crate::Usage("no authorization code given".into()));
            }
            self.login.finish(pending, line.trim(), None).await?
        };
        let store = self.store()?;
        let _lock = store.lock(LOCK_WAIT).await?;
        store.put(token.clone())?;
        Ok(token)
    }

    /// `s2uc logout`: revokes then forgets the tokens of `--scope`, or of every scope. A token
    /// whose revocation fails is kept (so the logout can be tried again) unless `force`.
    pub async fn logout(&self, force: bool) -> Result<Vec<(String, Result<(), String>)>> {
        let store = self.store()?;
        let tokens = match self.opts.scope.as_ref().map(|s| oauth::full_scope(s)) {
            Some(scope) => store.get(&scope)?.into_iter().collect(),
            None => store.all()?,
        };
        let mut done = Vec::new();
        for t in tokens {
            // Under the lock, what is stored now (another s2uc may have refreshed it) is what
            // gets revoked and forgotten.
            let _lock = store.lock(LOCK_WAIT).await?;
            let Some(t) = store.get(&t.scope)? else { continue };
            let outcome = match self.login.revoke(&t).await {
                Ok(()) => {
                    store.remove(&t.scope)?;
                    Ok(())
                }
                Err(e) if force => {
                    store.remove(&t.scope)?;
                    Err(format!("{e} (forgotten anyway: --force)"))
                }
                Err(e) => Err(format!("{e}; the token is kept: try again, or --force to forget it unrevoked")),
            };
            done.push((t.scope, outcome));
        }
        Ok(done)
    }

    /// `s2uc check-auth`: the stored token of `--scope` (or of `s2cs`'s scope), refreshed if
    /// due; with `s2cs`, also whether that control server accepts it and as whom.
    pub async fn check(&self, conn: &ConnectOpts, s2cs: Option<&str>) -> Result<AuthReport> {
        let scope = match s2cs {
            Some(addr) => self.scope_for(addr).ok_or_else(|| {
                anyhow!(crate::Usage(format!("no scope configured for {addr}: pass --scope or add it to [scopes]")))
            })?,
            None => self.need_scope()?,
        };
        let token = self.login.fresh(self.store()?, &scope, REFRESH_MARGIN).await?;
        let Some(token) = token else {
            bail!(NotLoggedIn(scope));
        };
        let accepted = match s2cs {
            Some(addr) => {
                let c = conn.client_with_token(addr, Some(&token.access_token)).await?;
                let (caller, sessions) =
                    c.list_as().await.map_err(|e| anyhow!(e).context(format!("{addr} refused the token")))?;
                Some((addr.to_owned(), caller, sessions.len()))
            }
            None => None,
        };
        Ok(AuthReport { token, accepted })
    }
}

/// How `s2uc login` gets its code.
#[derive(Debug, Clone)]
pub struct LoginHow {
    /// The code of a login begun with `url_only`.
    pub code: Option<String>,
    /// Print the URL, keep the login waiting, and stop (the code comes with a later `code`).
    pub url_only: bool,
    /// Catch the code on a loopback redirect instead of a prompt.
    pub loopback: bool,
    /// How long to wait for the loopback redirect.
    pub within: Duration,
}

/// What `check-auth` found.
#[derive(Debug)]
pub struct AuthReport {
    /// The stored token (refreshed if it was due).
    pub token: StoredToken,
    /// The control server asked, the identity it saw, how many sessions it holds for it.
    pub accepted: Option<(String, String, usize)>,
}

/// A login waiting for its `--code` (not a failure; exit status 0).
#[derive(Debug)]
pub struct Pending;

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("login waiting for its code")
    }
}

impl std::error::Error for Pending {}

/// No stored token for a scope.
#[derive(Debug)]
pub struct NotLoggedIn(pub String);

impl std::fmt::Display for NotLoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not logged in for {}: run `s2uc login --scope {}`", self.0, self.0)
    }
}

impl std::error::Error for NotLoggedIn {}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(opts: AuthOpts, toml_text: &str) -> UserAuth {
        let dir = std::env::temp_dir().join(format!("s2uc-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, toml_text).unwrap();
        let auth = UserAuth::load(&AuthOpts { config: Some(path.clone()), config_dir: Some(dir), ..opts }).unwrap();
        std::fs::remove_file(path).unwrap();
        auth
    }

    #[test]
    fn each_control_server_gets_the_scope_configured_for_it() {
        let a = with(
            AuthOpts::default(),
            "default-scope = \"dflt\"\n[scopes]\n\"10.0.0.1:5000\" = \"c42c0dac-0a52-408e-a04f-5d31bfe0aef8\"\n\"gw.b.org\" = \"scope:b\"\n\"[::1]\" = \"scope:v6\"\n",
        );
        assert_eq!(
            a.scope_for("10.0.0.1:5000").as_deref(),
            Some("https://auth.globus.org/scopes/c42c0dac-0a52-408e-a04f-5d31bfe0aef8/scistream")
        );
        assert_eq!(a.scope_for("gw.b.org:6000").as_deref(), Some("scope:b"), "host entries match any port");
        assert_eq!(a.scope_for("[::1]:5000").as_deref(), Some("scope:v6"));
        assert_eq!(a.scope_for("10.0.0.1:5001").as_deref(), Some("dflt"), "another port: the default");
        let forced =
            with(AuthOpts { scope: Some("forced".into()), ..AuthOpts::default() }, "default-scope = \"dflt\"\n");
        assert_eq!(forced.scope_for("10.0.0.1:5000").as_deref(), Some("forced"));
        let none = with(AuthOpts::default(), "");
        assert_eq!(none.scope_for("10.0.0.1:5000"), None);
    }

    #[test]
    fn settings_file_errors_are_clear() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("s2uc-bad-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, "auth-url = \"http://auth.example.org\"\n").unwrap();
        let e = UserAuth::load(&AuthOpts {
            config: Some(path.clone()),
            config_dir: Some(dir.clone()),
            ..AuthOpts::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("loopback"), "{e:#}");
        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        let e = UserAuth::load(&AuthOpts {
            config: Some(path.clone()),
            config_dir: Some(dir.clone()),
            ..AuthOpts::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        std::fs::remove_file(&path).unwrap();
        let e = UserAuth::load(&AuthOpts { config: Some(path.clone()), config_dir: Some(dir), ..AuthOpts::default() })
            .unwrap_err();
        assert!(format!("{e:#}").contains("reading"), "an explicit --config must exist: {e:#}");
    }
}
