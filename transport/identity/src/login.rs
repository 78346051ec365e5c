//! The user's side: authorization code with PKCE (S256) for a native (public) client.
//!
//! [`LoginConfig::begin`] makes the authorization URL with a fresh PKCE challenge and CSRF
//! state; the user opens it, logs in, and comes back with a code — pasted at a prompt, given
//! later with `--code` (the [`PendingLogin`] waits in the store's folder, mode 0600), or caught
//! by [`loopback_code`] on a `http://127.0.0.1:PORT/callback` redirect.
//! [`LoginConfig::finish`] exchanges the code (with the PKCE verifier) for tokens;
//! [`LoginConfig::fresh`] hands out a stored token, refreshed first when it expires within a
//! margin; [`LoginConfig::revoke`] revokes the refresh and access tokens (RFC 7009).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RevocationUrl, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::store::{StoredToken, TokenStore};
use super::{Endpoints, OAuthError, Url, unix_now};

/// Token-response fields beyond RFC 6749 that we read: the OpenID Connect `id_token`, when the
/// server sends one, names who logged in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdFields {
    /// A JWT; only its claims are read (for display), never trusted for anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl ExtraTokenFields for IdFields {}

/// A token endpoint's answer (to a code exchange or a refresh), as `oauth2` parses its JSON.
pub type TokenAnswer = StandardTokenResponse<IdFields, BasicTokenType>;

type Client = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointSet,
>;

/// How `s2uc` logs in.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// The authorization server.
    pub endpoints: Endpoints,
    /// The native client's id (public: no secret).
    pub client_id: String,
    /// Where the server sends the user back with the code.
    pub redirect: Url,
    /// Deadline of each call to the authorization server.
    pub timeout: Duration,
}

/// A login waiting for its code.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// What the user opens.
    pub url: String,
    /// The scope asked for.
    pub scope: String,
    /// The redirect the code comes back on.
    pub redirect: String,
    verifier: String,
    state: String,
    /// When it began, seconds since the Unix epoch.
    pub started_at: i64,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin").field("scope", &self.scope).field("started_at", &self.started_at).finish()
    }
}

impl PendingLogin {
    /// The CSRF state the redirect must bring back.
    pub fn state(&self) -> &str {
        &self.state
    }

    fn path(store: &TokenStore) -> PathBuf {
        store.dir().join("pending-login.json")
    }

    /// Keeps it beside the tokens (mode 0600) for a later `--code`.
    pub fn save(&self, store: &TokenStore) -> Result<(), OAuthError> {
        let text = serde_json::to_vec(self).map_err(|e| OAuthError::Store(e.to_string()))?;
        super::store::write_private(store.dir(), "pending-login.json", &text)
    }

    /// The login saved by [`save`](Self::save), taken out of the store; refused once older than
    /// `max_age` (the server's code would be stale too).
    pub fn take(store: &TokenStore, max_age: Duration) -> Result<Self, OAuthError> {
        let path = Self::path(store);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                OAuthError::Config("no login is waiting for a code: run `s2uc login` first".into())
            }
            _ => OAuthError::Store(format!("reading {}: {e}", path.display())),
        })?;
        let _ = std::fs::remove_file(&path);
        Self::parse(&text, max_age).map_err(|e| match e {
            OAuthError::Store(e) => OAuthError::Store(format!("{}: {e}", path.display())),
            e => e,
        })
    }

    /// A waiting login from the text [`save`](Self::save) wrote; refused once older than
    /// `max_age`.
    pub fn parse(text: &str, max_age: Duration) -> Result<Self, OAuthError> {
        let p: Self = serde_json::from_str(text).map_err(|e| OAuthError::Store(e.to_string()))?;
        // Saturating: the start time comes from a file, which may hold any number.
        let age = unix_now().saturating_sub(p.started_at);
        if age < 0 || age > i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX) {
            return Err(OAuthError::Config(format!("the waiting login began {age} s ago: run `s2uc login` again")));
        }
        Ok(p)
    }
}

impl LoginConfig {
    fn client(&self, redirect: &str) -> Result<Client, OAuthError> {
        if self.client_id.trim().is_empty() {
            return Err(OAuthError::Config("the client id is empty".into()));
        }
        let redirect =
            RedirectUrl::new(redirect.to_owned()).map_err(|e| OAuthError::Config(format!("redirect: {e}")))?;
        Ok(oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(self.endpoints.authorize.clone()))
            .set_token_uri(TokenUrl::from_url(self.endpoints.token.clone()))
            .set_revocation_url(RevocationUrl::from_url(self.endpoints.revoke.clone()))
            .set_redirect_uri(redirect))
    }

    /// Starts a login for `scope` (full form) with the configured redirect.
    pub fn begin(&self, scope: &str) -> Result<PendingLogin, OAuthError> {
        self.begin_with_redirect(scope, self.redirect.as_str())
    }

    /// Starts a login for `scope` whose code comes back on `redirect`.
    pub fn begin_with_redirect(&self, scope: &str, redirect: &str) -> Result<PendingLogin, OAuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client(redirect)?
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new(scope.to_owned()))
            .set_pkce_challenge(challenge)
            // Globus Auth gives refresh tokens only when asked for offline access.
            .add_extra_param("access_type", "offline")
            .url();
        Ok(PendingLogin {
            url: url.to_string(),
            scope: scope.to_owned(),
            redirect: redirect.to_owned(),
            verifier: verifier.secret().clone(),
            state: state.secret().clone(),
            started_at: unix_now(),
        })
    }

    /// Exchanges `code` for tokens. `state`, when the code came with one, must be the login's.
    pub async fn finish(
        &self,
        pending: PendingLogin,
        code: &str,
        state: Option<&str>,
    ) -> Result<StoredToken, OAuthError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(OAuthError::Config("the authorization code is empty".into()));
        }
        if state.is_some_and(|s| s != pending.state) {
            return Err(OAuthError::Refused("the redirect's state is not this login's (a forged redirect?)".into()));
        }
        let http = super::http_client(self.timeout)?;
        let answer = self
            .client(&pending.redirect)?
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&http)
            .await
            .map_err(super::request_error)?;
        stored(&pending.scope, &answer, None)
    }

    /// New tokens for `t` from its refresh token.
    pub async fn refresh(&self, t: &StoredToken) -> Result<StoredToken, OAuthError> {
        let Some(rt) = &t.refresh_token else {
            return Err(OAuthError::Refused(format!("no refresh token for {}: log in again", t.scope)));
        };
        let http = super::http_client(self.timeout)?;
        let answer = self
            .client(self.redirect.as_str())?
            .exchange_refresh_token(&RefreshToken::new(rt.clone()))
            .add_scope(Scope::new(t.scope.clone()))
            .request_async(&http)
            .await
            .map_err(super::request_error)?;
        stored(&t.scope, &answer, Some(t))
    }

    /// `scope`'s stored token, refreshed (and stored again) first when it expires within
    /// `margin`. `None` when there is none; an error when it has expired and cannot be renewed.
    pub async fn fresh(
        &self,
        store: &TokenStore,
        scope: &str,
        margin: Duration,
    ) -> Result<Option<StoredToken>, OAuthError> {
        let margin = i64::try_from(margin.as_secs()).unwrap_or(i64::MAX);
        let due = |t: &StoredToken| t.remaining(unix_now()).is_some_and(|left| left <= margin);
        // Most uses need no refresh: read without the lock (the folder may be read-only).
        match store.get(scope)? {
            Some(t) if !due(&t) => return Ok(Some(t)),
            None => return Ok(None),
            Some(_) => {}
        }
        // Read again, refresh and write under the store's lock: a refresh token used twice may
        // end the whole grant at a server that rotates them, and another process may have
        // refreshed meanwhile.
        let _lock = store.lock(self.timeout.saturating_mul(2)).await?;
        let t = match store.get(scope)? {
            Some(t) if due(&t) => t,
            other => return Ok(other),
        };
        // Due, so its expiry is known.
        let left = t.remaining(unix_now()).unwrap_or(0);
        let expired = |why: String| {
            OAuthError::Refused(format!("the token for {scope} expired and {why}: run `s2uc login --scope {scope}`"))
        };
        if t.refresh_token.is_none() {
            return if left > 0 { Ok(Some(t)) } else { Err(expired("there is no refresh token".into())) };
        }
        match self.refresh(&t).await {
            Ok(new) => {
                store.put(new.clone())?;
                tracing::debug!(scope, "token refreshed");
                Ok(Some(new))
            }
            // Still valid for a while: use it, and try again next time.
            Err(e) if left > 0 => {
                tracing::warn!(scope, "could not refresh the token ({e}); using it until it expires");
                Ok(Some(t))
            }
            Err(e) => Err(expired(format!("could not be refreshed ({e})"))),
        }
    }

    /// Revokes `t`'s refresh token, then its access token (RFC 7009: a form POST with the
    /// token, its type hint and our client id; 200 means revoked, or unknown — gone either
    /// way). Done here rather than through `oauth2`, which accepts only https endpoints: the
    /// endpoint was already checked (https, or http to loopback only).
    pub async fn revoke(&self, t: &StoredToken) -> Result<(), OAuthError> {
        let http = super::http_client(self.timeout)?;
        let mut tokens = Vec::new();
        if let Some(rt) = &t.refresh_token {
            tokens.push((rt.as_str(), "refresh_token"));
        }
        tokens.push((t.access_token.as_str(), "access_token"));
        for (token, hint) in tokens {
            let form = [("token", token), ("token_type_hint", hint), ("client_id", self.client_id.as_str())];
            let resp = http
                .post(self.endpoints.revoke.clone())
                .form(&form)
                .send()
                .await
                .map_err(|e| OAuthError::Unavailable(scistream_transport::tls::error_chain(&e)))?;
            let status = resp.status();
            if !status.is_success() {
                let body = resp.text().await.unwrap_or_default();
                let why: String = body.chars().take(200).collect();
                return Err(OAuthError::Refused(format!("revocation answered {status}: {why}")));
            }
        }
        Ok(())
    }
}

/// The entry to store for `scope` from a token endpoint's answer; `before` is the entry it
/// refreshes (whose refresh token and identity carry over when the answer has none). Refused
/// when the answer grants other scopes only.
pub fn stored(scope: &str, answer: &TokenAnswer, before: Option<&StoredToken>) -> Result<StoredToken, OAuthError> {
    if let Some(granted) = answer.scopes()
        && !granted.iter().any(|s| **s == scope)
    {
        let granted: Vec<&str> = granted.iter().map(|s| s.as_str()).collect();
        return Err(OAuthError::Refused(format!("asked for {scope}, granted only {}", granted.join(" "))));
    }
    let now = unix_now();
    let identity = answer
        .extra_fields()
        .id_token
        .as_deref()
        .and_then(id_token_name)
        .or_else(|| before.and_then(|b| b.identity.clone()));
    Ok(StoredToken {
        scope: scope.to_owned(),
        access_token: answer.access_token().secret().clone(),
        // A server that does not rotate refresh tokens keeps the old one valid.
        refresh_token: answer
            .refresh_token()
            .map(|r| r.secret().clone())
            .or_else(|| before.and_then(|b| b.refresh_token.clone())),
        // Saturating: the server says how long, and may say anything up to u64::MAX seconds.
        expires_at: answer.expires_in().map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
        identity,
        obtained_at: now,
    })
}

/// The name in an OpenID Connect id_token's claims (`preferred_username`, else `email`, else
/// `sub`), read without checking the signature: it is shown to the user, never trusted.
pub fn id_token_name(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    ["preferred_username", "email", "sub"]
        .iter()
        .find_map(|k| claims.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()).map(str::to_owned))
}

/// What the loopback catcher makes of one request: the answer's status line and body, and
/// how the login ends (`None`: not this login's redirect, the wait goes on).
#[derive(Debug)]
pub struct Callback {
    /// The HTTP status, e.g. `404 Not Found`.
    pub status: &'static str,
    /// The page shown in the browser.
    pub body: &'static str,
    /// The code, or the server's refusal, when the request is this login's redirect.
    pub outcome: Option<Result<String, OAuthError>>,
}

/// Reads a request head the loopback catcher received (`GET /callback?code=…&state=… HTTP/1.1`,
/// whatever bytes a local process sent): only `/callback` with the login's `state` ends the
/// login.
pub fn callback(head: &[u8], state: &str) -> Callback {
    let head = String::from_utf8_lossy(head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let url = Url::parse(&format!("http://loopback{target}")).ok();
    let param =
        |k: &str| url.as_ref().and_then(|u| u.query_pairs().find(|(key, _)| key == k).map(|(_, v)| v.into_owned()));
    let ours = param("state").is_some_and(|s| s == state);
    let (status, body, outcome) = match (url.as_ref().map(Url::path), ours, param("code"), param("error")) {
        (Some("/callback"), true, _, Some(err)) => {
            let why = param("error_description").unwrap_or_default();
            ("400 Bad Request", "Login refused.", Some(Err(OAuthError::Refused(format!("{err} {why}")))))
        }
        (Some("/callback"), true, Some(code), None) => {
            ("200 OK", "Logged in: you may close this window.", Some(Ok(code)))
        }
        (Some("/callback"), false, _, _) => ("400 Bad Request", "Not this login's redirect.", None),
        _ => ("404 Not Found", "Not here.", None),
    };
    Callback { status, body, outcome }
}

/// Waits on `listener` (a loopback port, the login's redirect) for the browser to bring the
/// code back: `GET /callback?code=…&state=STATE`. Answers the code. Requests without the
/// login's `state` (a favicon, another local process, a web page probing localhost) get an
/// error page and the wait goes on, at most `within`; only the server's redirect, which
/// carries the state, can end it.
pub async fn loopback_code(
    listener: tokio::net::TcpListener,
    state: &str,
    within: Duration,
) -> Result<String, OAuthError> {
    let wait = async {
        loop {
            let (mut sock, _) =
                listener.accept().await.map_err(|e| OAuthError::Unavailable(format!("loopback redirect: {e}")))?;
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
            }
            let Callback { status, body, outcome } = callback(&buf[..n], state);
            let reply = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}\n");
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .map_err(|_| OAuthError::Unavailable(format!("no redirect came back within {} s", within.as_secs())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LoginConfig {
        LoginConfig {
            endpoints: Endpoints::under("http://127.0.0.1:9").unwrap(),
            client_id: "native-client".into(),
            redirect: Url::parse("http://127.0.0.1:9/v2/web/auth-code").unwrap(),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn authorization_url_carries_pkce_s256_state_and_scope() {
        let p = cfg().begin("scope:a").unwrap();
        let url = Url::parse(&p.url).unwrap();
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(url.path(), "/v2/oauth2/authorize");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "native-client");
        assert_eq!(q["scope"], "scope:a");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], p.state());
        assert_eq!(q["access_type"], "offline");
        // The challenge is the verifier's SHA-256, base64url: never the verifier itself.
        let digest = ring::digest::digest(&ring::digest::SHA256, p.verifier.as_bytes());
        assert_eq!(q["code_challenge"], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest));
        assert!(!p.url.contains(&p.verifier));
        let again = cfg().begin("scope:a").unwrap();
        assert_ne!(again.state, p.state);
        assert_ne!(again.verifier, p.verifier);
    }

    #[test]
    fn pending_login_waits_in_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::at(dir.path());
        let p = cfg().begin("scope:a").unwrap();
        p.save(&store).unwrap();
        let back = PendingLogin::take(&store, Duration::from_secs(600)).unwrap();
        assert_eq!(back.state, p.state);
        assert!(PendingLogin::take(&store, Duration::from_secs(600)).is_err(), "taken once");
        let mut old = cfg().begin("scope:a").unwrap();
        old.started_at -= 3600;
        old.save(&store).unwrap();
        assert!(PendingLogin::take(&store, Duration::from_secs(600)).unwrap_err().to_string().contains("ago"));
    }

    /// Found by the `token_answer` fuzz target: an `expires_in` near `i64::MAX` seconds
    /// overflowed the expiry (a panic in a debug build; in a release build a token that had
    /// expired before it was issued, refreshed at every use).
    #[test]
    fn a_huge_expires_in_saturates_into_a_far_expiry() {
        for secs in [i64::MAX as u64, u64::MAX] {
            let answer: TokenAnswer = serde_json::from_value(serde_json::json!({
                "access_token": "a", "token_type": "Bearer", "expires_in": secs,
            }))
            .unwrap();
            let t = stored("scope:a", &answer, None).unwrap();
            assert_eq!(t.expires_at, Some(i64::MAX), "expires_in {secs}");
        }
    }

    /// Seen while writing the `token_store` fuzz target (its structure-aware pending-login mode
    /// reaches it): a start time far in the past overflowed the login's age.
    #[test]
    fn a_damaged_start_time_is_a_stale_login_not_an_overflow() {
        let text =
            r#"{"url":"u","scope":"s","redirect":"r","verifier":"v","state":"s","started_at":-9223372036854775808}"#;
        let e = PendingLogin::parse(text, Duration::from_secs(900)).unwrap_err();
        assert!(e.to_string().contains("ago"), "{e}");
    }

    #[tokio::test]
    async fn wrong_state_is_refused_before_any_call() {
        let p = cfg().begin("scope:a").unwrap();
        let e = cfg().finish(p, "code", Some("forged")).await.unwrap_err();
        assert!(matches!(e, OAuthError::Refused(_)), "{e}");
    }

    #[test]
    fn id_token_names_are_read_for_display() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc(r#"{"sub":"u-1","preferred_username":"alice@uni"}"#));
        assert_eq!(id_token_name(&jwt).as_deref(), Some("alice@uni"));
        let jwt = format!("{}.{}.sig", enc("{}"), enc(r#"{"sub":"u-1"}"#));
        assert_eq!(id_token_name(&jwt).as_deref(), Some("u-1"));
        assert_eq!(id_token_name("garbage"), None);
    }

    #[tokio::test]
    async fn loopback_redirect_brings_the_code_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wait = tokio::spawn(async move { loopback_code(listener, "st", Duration::from_secs(10)).await });
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/favicon.ico").await.starts_with("HTTP/1.1 404"));
        // Without the login's state, neither a code nor an error ends the wait.
        assert!(get("/callback?code=forged&state=other").await.starts_with("HTTP/1.1 400"));
        assert!(get("/callback?error=access_denied").await.starts_with("HTTP/1.1 400"));
        assert!(get("/callback?code=abc%2B1&state=st").await.starts_with("HTTP/1.1 200"));
        assert_eq!(wait.await.unwrap().unwrap(), "abc+1");
    }

    #[tokio::test]
    async fn loopback_redirect_with_an_error_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wait = tokio::spawn(async move { loopback_code(listener, "st", Duration::from_secs(10)).await });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /callback?error=access_denied&state=st HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(wait.await.unwrap(), Err(OAuthError::Refused(_))));
    }
}
