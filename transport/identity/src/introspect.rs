//! The facility's side: each caller's token checked by RFC 7662 introspection.
//!
//! [`IntrospectAuth`] asks the authorization server about a token with the facility's client
//! credentials (HTTP basic, as Globus Auth wants them) and accepts it only when the answer says
//! it is active, not expired, not yet-to-start, and grants the facility's scope. The caller's
//! identity is the token's subject (`sub`, else `username`).
//!
//! Answers are cached, keyed by the token's SHA-256 (the cache never holds a token): positive
//! ones until the earlier of the token's expiry and a TTL, refusals (inactive, expired, wrong
//! scope) for [`REFUSAL_TTL`] at most, so a caller repeating a bad token does not turn each
//! call into a request to the authorization server. The cache is bounded and evicts what
//! expires first. A revoked token is therefore accepted for at most the TTL. When the
//! authorization server cannot be asked the call fails UNAVAILABLE with a generic message (the
//! detail goes to the log): nothing is ever let through because the check could not be made.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicTokenIntrospectionResponse};
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl, TokenIntrospectionResponse,
};
use scistream_fsm::Principal;
use scistream_transport::server::{AuthError, AuthFuture, Authenticator};

use super::{OAuthError, Url, unix_now};

/// Longest time a refusal is remembered (never longer than the configured TTL).
pub const REFUSAL_TTL: Duration = Duration::from_secs(10);

/// How a facility checks tokens.
#[derive(Clone)]
pub struct IntrospectConfig {
    /// The RFC 7662 endpoint.
    pub url: Url,
    /// The facility's client id.
    pub client_id: String,
    /// The facility's client secret.
    pub client_secret: String,
    /// The scope a token must grant (full form, see [`super::full_scope`]).
    pub scope: String,
    /// Longest time a positive answer is trusted without asking again.
    pub cache_ttl: Duration,
    /// Most answers cached at once.
    pub cache_size: usize,
    /// Deadline of one introspection call.
    pub timeout: Duration,
}

impl std::fmt::Debug for IntrospectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectConfig")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_size", &self.cache_size)
            .finish()
    }
}

type Client = BasicClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet>;

/// Authentication by token introspection (see the module's documentation).
pub struct IntrospectAuth {
    client: Client,
    http: reqwest::Client,
    scope: String,
    ttl: Duration,
    cache: Mutex<Cache>,
    asked: AtomicU64,
}

impl std::fmt::Debug for IntrospectAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectAuth").field("scope", &self.scope).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl IntrospectAuth {
    /// An authenticator for `cfg`.
    pub fn new(cfg: IntrospectConfig) -> Result<Self, OAuthError> {
        if cfg.client_id.trim().is_empty() {
            return Err(OAuthError::Config("the client id is empty".into()));
        }
        if cfg.client_secret.is_empty() {
            return Err(OAuthError::Config("the client secret is empty".into()));
        }
        if cfg.scope.trim().is_empty() {
            return Err(OAuthError::Config("the required scope is empty".into()));
        }
        let client = BasicClient::new(ClientId::new(cfg.client_id))
            .set_client_secret(ClientSecret::new(cfg.client_secret))
            .set_introspection_url(IntrospectionUrl::from_url(cfg.url));
        Ok(Self {
            client,
            http: super::http_client(cfg.timeout)?,
            scope: cfg.scope,
            ttl: cfg.cache_ttl,
            cache: Mutex::new(Cache::new(cfg.cache_size)),
            asked: AtomicU64::new(0),
        })
    }

    /// How many introspection calls were made (cache misses).
    pub fn introspections(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }

    async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        let key = digest(token);
        if let Some(answer) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key, Instant::now()) {
            return answer;
        }
        let answer = self.ask(token).await;
        let life = match &answer {
            Ok((_, life)) => *life,
            Err(AuthError::Unavailable(_)) => Duration::ZERO,
            Err(_) => self.ttl.min(REFUSAL_TTL),
        };
        let answer = answer.map(|(who, _)| who);
        if !life.is_zero() {
            self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(key, answer.clone(), Instant::now() + life);
        }
        answer
    }

    /// Asks the authorization server; the identity and how long to trust the answer.
    async fn ask(&self, token: &str) -> Result<(Principal, Duration), AuthError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .client
            .introspect(&AccessToken::new(token.to_owned()))
            .set_token_type_hint("access_token")
            .request_async(&self.http)
            .await
            .map_err(|e| {
                let e = super::request_error(e);
                tracing::warn!("token introspection failed: {e}");
                AuthError::Unavailable("the facility cannot check tokens right now; try again later".into())
            })?;
        verdict(&answer, &self.scope, self.ttl, unix_now())
    }
}

/// What an introspection answer says of the caller at `now` (seconds since the Unix epoch):
/// its identity and how long to trust that, when the token is active, within its validity, names
/// a subject and grants `scope`; trusted for `ttl` at most, never past the token's expiry.
pub fn verdict(
    answer: &BasicTokenIntrospectionResponse,
    scope: &str,
    ttl: Duration,
    now: i64,
) -> Result<(Principal, Duration), AuthError> {
    if !answer.active() {
        return Err(AuthError::Unauthenticated);
    }
    let exp = answer.exp().map(|t| t.timestamp());
    if exp.is_some_and(|exp| exp <= now) || answer.nbf().is_some_and(|nbf| nbf.timestamp() > now) {
        return Err(AuthError::Unauthenticated);
    }
    let who = answer.sub().or(answer.username()).filter(|s| !s.is_empty());
    let Some(who) = who.map(|s| Principal(s.to_owned())) else {
        tracing::warn!("introspection says a token is active but names no subject; refused");
        return Err(AuthError::Unauthenticated);
    };
    if !answer.scopes().is_some_and(|s| s.iter().any(|s| **s == scope)) {
        tracing::info!(caller = %who.0, "token without the facility's scope refused");
        return Err(AuthError::WrongScope);
    }
    let mut life = ttl;
    if let Some(exp) = exp {
        life = life.min(Duration::from_secs(u64::try_from(exp - now).unwrap_or(0)));
    }
    Ok((who, life))
}

impl Authenticator for IntrospectAuth {
    fn authenticate<'a>(&'a self, token: Option<&'a str>) -> AuthFuture<'a> {
        Box::pin(async move {
            match token {
                Some(t) => self.check(t).await,
                None => Err(AuthError::Unauthenticated),
            }
        })
    }
}

type Key = [u8; 32];

fn digest(token: &str) -> Key {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(d.as_ref());
    key
}

type Answer = Result<Principal, AuthError>;

/// Answers until they expire; at most `cap` of them.
struct Cache {
    cap: usize,
    map: HashMap<Key, (Answer, Instant)>,
}

impl Cache {
    fn new(cap: usize) -> Self {
        Self { cap, map: HashMap::new() }
    }

    fn get(&mut self, key: &Key, now: Instant) -> Option<Answer> {
        match self.map.get(key) {
            Some((who, until)) if *until > now => Some(who.clone()),
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: Key, who: Answer, until: Instant) {
        if self.cap == 0 {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            let now = Instant::now();
            self.map.retain(|_, (_, u)| *u > now);
            if self.map.len() >= self.cap
                && let Some(first) = self.map.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k)
            {
                self.map.remove(&first);
            }
        }
        self.map.insert(key, (who, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Principal {
        Principal(s.into())
    }

    #[test]
    fn cache_answers_until_expiry() {
        let mut c = Cache::new(4);
        let t0 = Instant::now();
        c.put(digest("a"), Ok(p("alice")), t0 + Duration::from_secs(5));
        assert_eq!(c.get(&digest("a"), t0), Some(Ok(p("alice"))));
        assert_eq!(c.get(&digest("b"), t0), None);
        assert_eq!(c.get(&digest("a"), t0 + Duration::from_secs(5)), None);
        assert!(c.map.is_empty(), "an expired answer is dropped when seen");
    }

    #[test]
    fn full_cache_evicts_what_expires_first() {
        let mut c = Cache::new(2);
        let t0 = Instant::now() + Duration::from_secs(100);
        c.put(digest("late"), Ok(p("l")), t0 + Duration::from_secs(50));
        c.put(digest("soon"), Ok(p("s")), t0 + Duration::from_secs(10));
        c.put(digest("new"), Ok(p("n")), t0 + Duration::from_secs(30));
        assert_eq!(c.map.len(), 2);
        assert_eq!(c.get(&digest("soon"), t0), None);
        assert_eq!(c.get(&digest("late"), t0), Some(Ok(p("l"))));
        assert_eq!(c.get(&digest("new"), t0), Some(Ok(p("n"))));
    }

    #[test]
    fn zero_sized_cache_holds_nothing() {
        let mut c = Cache::new(0);
        c.put(digest("a"), Ok(p("alice")), Instant::now() + Duration::from_secs(5));
        assert_eq!(c.get(&digest("a"), Instant::now()), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let cfg = IntrospectConfig {
            url: Url::parse("http://127.0.0.1:1/introspect").unwrap(),
            client_id: "facility".into(),
            client_secret: "s3cr3t-value".into(),
            scope: "scistream".into(),
            cache_ttl: Duration::from_secs(60),
            cache_size: 10,
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let auth = IntrospectAuth::new(cfg).unwrap();
        assert!(!format!("{auth:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable_never_open() {
        // A port nothing listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let auth = IntrospectAuth::new(IntrospectConfig {
            url: Url::parse(&format!("http://127.0.0.1:{port}/introspect")).unwrap(),
            client_id: "facility".into(),
            client_secret: "secret".into(),
            scope: "scistream".into(),
            cache_ttl: Duration::from_secs(60),
            cache_size: 10,
            timeout: Duration::from_secs(2),
        })
        .unwrap();
        assert!(matches!(auth.authenticate(Some("tok")).await, Err(AuthError::Unavailable(_))));
        assert_eq!(auth.authenticate(None).await, Err(AuthError::Unauthenticated));
        assert_eq!(auth.introspections(), 1, "no token, no call");
    }
}
