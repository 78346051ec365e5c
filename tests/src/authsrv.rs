//! A local OAuth2 authorization server for the tests, on loopback, laid out as Globus Auth is
//! (`/v2/oauth2/authorize`, `/token`, `/token/introspect`, `/token/revoke`). It is strict where
//! a real server is: PKCE S256 checked on every code, codes used once and bound to their
//! client and redirect, refresh tokens revocable, introspection only for a client presenting
//! its secret (HTTP basic). The test drives it: who logs in next, how long tokens live, which
//! are revoked; it counts the introspection calls.
//!
//! It runs on a thread of its own, so synchronous and asynchronous tests alike can use it;
//! dropping it (or [`AuthServer::stop`]) closes the port and every connection to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context as _, Result};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

/// A confidential client (a facility) allowed to introspect.
#[derive(Debug, Clone)]
pub struct Facility {
    /// Its client id.
    pub client_id: String,
    /// Its secret.
    pub secret: String,
}

#[derive(Debug, Clone)]
struct Code {
    user: String,
    scope: String,
    client_id: String,
    redirect: String,
    challenge: String,
}

#[derive(Debug, Clone)]
struct Access {
    user: String,
    scope: String,
    exp: i64,
    revoked: bool,
    refresh: Option<String>,
}

#[derive(Debug, Clone)]
struct Refresh {
    user: String,
    scope: String,
    revoked: bool,
}

#[derive(Debug)]
struct Inner {
    user: String,
    lifetime: i64,
    rotate_refresh: bool,
    expired_active: bool,
    facilities: Vec<Facility>,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    introspections: u64,
    introspect_delay: std::time::Duration,
    introspecting: u64,
    most_introspecting: u64,
    refreshes: u64,
    /// Refresh grants refused: the refresh token was revoked (rotated away) or unknown.
    refused_refreshes: u64,
    /// How long a refresh grant takes to answer.
    refresh_delay: std::time::Duration,
    revocations: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn fresh() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The running server.
pub struct AuthServer {
    /// `http://IP:PORT` (127.0.0.1 unless started on another socket), the base the endpoints
    /// hang under (`--auth-url`).
    pub base: String,
    state: Shared,
    stop: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl AuthServer {
    /// Starts on a free loopback port; `facilities` may introspect. Users log in as `alice`
    /// until [`set_user`](Self::set_user) says otherwise; tokens live an hour until
    /// [`set_lifetime`](Self::set_lifetime).
    pub fn start(facilities: &[Facility]) -> Result<Self> {
        Self::start_on(facilities, vec![std::net::TcpListener::bind("127.0.0.1:0").context("auth server bind")?])
    }

    /// [`start`](Self::start) on sockets bound already, all serving the same server; the
    /// first names its [`base`](Self::base). (The lab binds the same loopback port in each
    /// host that calls the server: a socket stays in the network namespace it was made in.)
    pub fn start_on(facilities: &[Facility], listeners: Vec<std::net::TcpListener>) -> Result<Self> {
        let state: Shared = Arc::new(Mutex::new(Inner {
            user: "alice".into(),
            lifetime: 3600,
            rotate_refresh: false,
            expired_active: false,
            facilities: facilities.to_vec(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            introspections: 0,
            introspect_delay: std::time::Duration::ZERO,
            introspecting: 0,
            most_introspecting: 0,
            refreshes: 0,
            refused_refreshes: 0,
            refresh_delay: std::time::Duration::ZERO,
            revocations: 0,
        }));
        let app = Router::new()
            .route("/v2/oauth2/authorize", get(authorize))
            .route("/v2/oauth2/token", post(token))
            .route("/v2/oauth2/token/introspect", post(introspect))
            .route("/v2/oauth2/token/revoke", post(revoke))
            .with_state(state.clone());
        let addr: SocketAddr = listeners.first().context("no socket to serve on")?.local_addr()?;
        for l in &listeners {
            l.set_nonblocking(true)?;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("auth server runtime")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let mut serving = tokio::task::JoinSet::new();
                for l in listeners {
                    let Ok(l) = tokio::net::TcpListener::from_std(l) else { return };
                    serving.spawn(std::future::IntoFuture::into_future(axum::serve(l, app.clone())));
                }
                tokio::select! {
                    _ = serving.join_next() => {}
                    _ = rx => {}
                }
            });
            // Dropping the runtime closes the listener and every open connection.
            rt.shutdown_background();
        });
        Ok(Self { base: format!("http://{addr}"), state, stop: Some((tx, thread)) })
    }

    /// The `s2cs` flags that make a control server check tokens here as `facility`, requiring
    /// `scope`.
    pub fn s2cs_flags(&self, facility: &Facility, scope: &str) -> Vec<String> {
        [
            "--client-id",
            &facility.client_id,
            "--client-secret",
            &facility.secret,
            "--auth-url",
            &self.base,
            "--scope",
            scope,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// Closes the port and its connections: calls to it are refused from now on.
    pub fn stop(&mut self) {
        if let Some((tx, thread)) = self.stop.take() {
            let _ = tx.send(());
            let _ = thread.join();
        }
    }

    /// Who logs in from now on.
    pub fn set_user(&self, user: &str) {
        lock(&self.state).user = user.into();
    }

    /// How long access tokens issued from now on live, seconds (0 or less: expired at birth).
    pub fn set_lifetime(&self, secs: i64) {
        lock(&self.state).lifetime = secs;
    }

    /// Whether a refresh hands out a new refresh token (revoking the old one).
    pub fn set_rotate_refresh(&self, rotate: bool) {
        lock(&self.state).rotate_refresh = rotate;
    }

    /// Whether introspection calls an expired token active (with its past `exp`), as a sloppy
    /// server might: the facility must still refuse it.
    pub fn set_expired_active(&self, sloppy: bool) {
        lock(&self.state).expired_active = sloppy;
    }

    /// Mints an access token directly (no login), as if `user` had logged in for `scope`.
    pub fn mint(&self, user: &str, scope: &str, lifetime: i64) -> String {
        let t = fresh();
        let a = Access { user: user.into(), scope: scope.into(), exp: now() + lifetime, revoked: false, refresh: None };
        lock(&self.state).access.insert(t.clone(), a);
        t
    }

    /// Revokes an access token (as if its owner had logged out elsewhere).
    pub fn revoke_access(&self, token: &str) {
        if let Some(a) = lock(&self.state).access.get_mut(token) {
            a.revoked = true;
        }
    }

    /// Whether `token` (access or refresh) is still good.
    pub fn is_active(&self, token: &str) -> bool {
        let g = lock(&self.state);
        g.access.get(token).is_some_and(|a| !a.revoked && a.exp > now())
            || g.refresh.get(token).is_some_and(|r| !r.revoked)
    }

    /// How long each introspection takes to answer from now on (a distant server's latency);
    /// the server keeps answering others meanwhile.
    pub fn set_introspect_delay(&self, delay: std::time::Duration) {
        lock(&self.state).introspect_delay = delay;
    }

    /// Introspection calls answered so far (counted when they arrive).
    pub fn introspections(&self) -> u64 {
        lock(&self.state).introspections
    }

    /// The most introspection calls that were in progress at once (they overlap only with
    /// [`set_introspect_delay`](Self::set_introspect_delay)).
    pub fn most_concurrent_introspections(&self) -> u64 {
        lock(&self.state).most_introspecting
    }

    /// Refresh grants answered so far.
    pub fn refreshes(&self) -> u64 {
        lock(&self.state).refreshes
    }

    /// Refresh grants refused so far: a refresh token spent twice under rotation, or unknown.
    pub fn refused_refreshes(&self) -> u64 {
        lock(&self.state).refused_refreshes
    }

    /// Makes every refresh grant take `delay` before it is decided (0: at once), so callers
    /// that do not wait for one another overlap.
    pub fn set_refresh_delay(&self, delay: std::time::Duration) {
        lock(&self.state).refresh_delay = delay;
    }

    /// Revocation calls answered so far.
    pub fn revocations(&self) -> u64 {
        lock(&self.state).revocations
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn oauth_error(status: StatusCode, error: &str, why: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": why}))).into_response()
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let need = ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge"];
    if let Some(missing) = need.iter().find(|k| !q.contains_key(**k)) {
        return (StatusCode::BAD_REQUEST, format!("missing {missing}")).into_response();
    }
    if q["response_type"] != "code" || q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return (StatusCode::BAD_REQUEST, "PKCE with S256 is required").into_response();
    }
    let code = fresh();
    let mut g = lock(&s);
    let user = g.user.clone();
    g.codes.insert(
        code.clone(),
        Code {
            user,
            scope: q["scope"].clone(),
            client_id: q["client_id"].clone(),
            redirect: q["redirect_uri"].clone(),
            challenge: q["code_challenge"].clone(),
        },
    );
    let sep = if q["redirect_uri"].contains('?') { '&' } else { '?' };
    let state: String = url_encode(&q["state"]);
    let location = format!("{}{sep}code={code}&state={state}", q["redirect_uri"]);
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

fn issue(g: &mut Inner, user: &str, scope: &str, refresh: Option<String>) -> Response {
    let access = fresh();
    let refresh = refresh.unwrap_or_else(|| {
        let r = fresh();
        g.refresh.insert(r.clone(), Refresh { user: user.into(), scope: scope.into(), revoked: false });
        r
    });
    g.access.insert(
        access.clone(),
        Access {
            user: user.into(),
            scope: scope.into(),
            exp: now() + g.lifetime,
            revoked: false,
            refresh: Some(refresh.clone()),
        },
    );
    let enc = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let id_token = format!(
        "{}.{}.",
        enc(json!({"alg": "none"})),
        enc(json!({"sub": format!("id-{user}"), "preferred_username": user}))
    );
    Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": g.lifetime.max(0),
        "refresh_token": refresh,
        "scope": scope,
        "id_token": id_token,
    }))
    .into_response()
}

async fn token(State(s): State<Shared>, Form(f): Form<TokenForm>) -> Response {
    if f.grant_type == "refresh_token" {
        let delay = lock(&s).refresh_delay;
        tokio::time::sleep(delay).await;
    }
    let mut g = lock(&s);
    match f.grant_type.as_str() {
        "authorization_code" => {
            let Some(code) = f.code.as_ref().and_then(|c| g.codes.remove(c)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
            };
            if f.client_id.as_deref() != Some(code.client_id.as_str()) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "code issued to another client");
            }
            if f.redirect_uri.as_deref() != Some(code.redirect.as_str()) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri differs");
            }
            let Some(verifier) = f.code_verifier.as_deref() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code_verifier missing");
            };
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
            if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) != code.challenge {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verification failed");
            }
            issue(&mut g, &code.user, &code.scope, None)
        }
        "refresh_token" => {
            let Some(rt) = f.refresh_token.clone() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token missing");
            };
            let Some(r) = g.refresh.get(&rt).filter(|r| !r.revoked).cloned() else {
                g.refused_refreshes += 1;
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token revoked or unknown");
            };
            g.refreshes += 1;
            if g.rotate_refresh {
                if let Some(old) = g.refresh.get_mut(&rt) {
                    old.revoked = true;
                }
                issue(&mut g, &r.user, &r.scope, None)
            } else {
                issue(&mut g, &r.user, &r.scope, Some(rt))
            }
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "no such grant"),
    }
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = value.strip_prefix("Basic ")?;
    let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

#[derive(Deserialize)]
struct TokenParam {
    token: String,
}

async fn introspect(State(s): State<Shared>, headers: HeaderMap, Form(f): Form<TokenParam>) -> Response {
    let delay = {
        let mut g = lock(&s);
        let authorized = basic_auth(&headers)
            .is_some_and(|(id, secret)| g.facilities.iter().any(|c| c.client_id == id && c.secret == secret));
        if !authorized {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "introspection needs client credentials");
        }
        g.introspections += 1;
        g.introspecting += 1;
        g.most_introspecting = g.most_introspecting.max(g.introspecting);
        g.introspect_delay
    };
    // Counted out however the call ends (a client that gives up drops this future).
    let counted = Introspecting(s.clone());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    drop(counted);
    let g = lock(&s);
    match g.access.get(&f.token) {
        Some(a) if !a.revoked && (a.exp > now() || g.expired_active) => Json(json!({
            "active": true,
            "scope": a.scope,
            "sub": format!("id-{}", a.user),
            "username": a.user,
            "exp": a.exp,
            "token_type": "Bearer",
            "client_id": "native",
        }))
        .into_response(),
        _ => Json(json!({"active": false})).into_response(),
    }
}

/// One introspection in progress.
struct Introspecting(Shared);

impl Drop for Introspecting {
    fn drop(&mut self) {
        lock(&self.0).introspecting -= 1;
    }
}

async fn revoke(State(s): State<Shared>, Form(f): Form<TokenParam>) -> Response {
    let mut g = lock(&s);
    g.revocations += 1;
    if let Some(r) = g.refresh.get_mut(&f.token) {
        r.revoked = true;
        // Revoking a refresh token ends the access tokens it begot.
        let token = f.token.clone();
        for a in g.access.values_mut().filter(|a| a.refresh.as_deref() == Some(token.as_str())) {
            a.revoked = true;
        }
    } else if let Some(a) = g.access.get_mut(&f.token) {
        a.revoked = true;
    }
    StatusCode::OK.into_response()
}

/// The user at the browser, already logged in at this server: opens the authorization `url`
/// and returns the code the server sends them back with (from its redirect).
pub fn browse_for_code(url: &str) -> Result<String> {
    let back = browse(url)?;
    back.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).context("no code in the redirect")
}

/// The user at the browser, already logged in at this server: opens the authorization `url`
/// and returns where the server's redirect sends them back.
pub fn browse(url: &str) -> Result<scistream_identity::Url> {
    use std::io::{Read as _, Write as _};
    let u = scistream_identity::Url::parse(url).context("an authorization URL")?;
    let addr = format!("{}:{}", u.host_str().context("a host")?, u.port_or_known_default().context("a port")?);
    let mut s = std::net::TcpStream::connect(&addr).with_context(|| format!("the authorization server at {addr}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    write!(s, "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let location = answer
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.trim()))
        .with_context(|| format!("no redirect from the authorization server: {answer}"))?;
    scistream_identity::Url::parse(location).context("the redirect")
}
