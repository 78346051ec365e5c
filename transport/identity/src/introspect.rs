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
//!
//! Under pressure, what a token the cache does not know may cost is bounded three ways:
//! - **one question per token** ([`scistream_flights`]): concurrent calls with the same
//!   uncached token wait for one introspection and share its answer, a refusal or an
//!   UNAVAILABLE included (the latter shared, never cached); a caller that gives up leaves the
//!   others to ask again, one of them leading;
//! - **a limit on introspections in flight** ([`IntrospectConfig::max_inflight`]): a caller
//!   beyond it waits for a turn, at most its call's deadline and the introspection timeout,
//!   then gets UNAVAILABLE;
//! - **a token bucket per caller address** ([`PeerLimit`]), charged only when a call would
//!   send a request (a cached answer and a wait for another caller's flight are free) and
//!   refunded when the token proves valid, so it counts bad tokens: over it
//!   the call is refused RESOURCE_EXHAUSTED ([`AuthError::Throttled`]) without asking, with a
//!   warning in the log at most every [`WARN_EVERY`].

mod cache;
mod peers;

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicTokenIntrospectionResponse};
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl, TokenIntrospectionResponse,
};
use scistream_flights::{Flights, Join};
use scistream_fsm::Principal;
use scistream_transport::server::{AuthError, AuthFuture, Authenticator};
use tokio::sync::Semaphore;

use self::cache::{Answer, Cache, Key, digest};
use self::peers::{PeerKey, Peers, Verdict};
pub use self::peers::{PeerLimit, WARN_EVERY};
use super::{OAuthError, Url, unix_now};

/// Longest time a refusal is remembered (never longer than the configured TTL).
pub const REFUSAL_TTL: Duration = Duration::from_secs(10);

/// `s2cs`'s default limit on introspections in flight.
pub const DEFAULT_MAX_INFLIGHT: usize = 16;

/// What a caller hears when the check could not be made (the reason goes to the log).
const CANNOT_CHECK: &str = "the facility cannot check tokens right now; try again later";

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
    /// Deadline of one introspection call, and longest wait for a turn under `max_inflight`.
    pub timeout: Duration,
    /// Most introspections in flight at once; 0: no limit.
    pub max_inflight: usize,
    /// What unknown tokens may cost per caller address.
    pub peer_limit: PeerLimit,
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
            .field("timeout", &self.timeout)
            .field("max_inflight", &self.max_inflight)
            .field("peer_limit", &self.peer_limit)
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
    flights: Flights<Key, Answer>,
    /// Turns to introspect; `None`: no limit.
    turns: Option<Semaphore>,
    /// Longest wait for a turn.
    wait: Duration,
    peers: Mutex<Peers>,
    /// When the last warning that callers found no turn was logged.
    busy_warned: Mutex<Option<Instant>>,
    asked: AtomicU64,
    throttled: AtomicU64,
    hits: AtomicU64,
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
            flights: Flights::new(),
            turns: (cfg.max_inflight > 0).then(|| Semaphore::new(cfg.max_inflight)),
            wait: cfg.timeout,
            peers: Mutex::new(Peers::new(cfg.peer_limit)),
            busy_warned: Mutex::new(None),
            asked: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        })
    }

    /// How many introspection calls were made (cache misses).
    pub fn introspections(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }

    /// How many calls were refused unchecked for their address's limit.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// How many calls were answered from the cache.
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn cached(&self, key: &Key) -> Option<Answer> {
        lock(&self.cache).get(key, Instant::now())
    }

    async fn check(&self, token: &str, peer: Option<IpAddr>) -> Answer {
        let key = digest(token);
        loop {
            if let Some(answer) = self.cached(&key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return answer;
            }
            let leader = match self.flights.join(key) {
                Join::Lead(leader) => leader,
                Join::Follow(flight) => match flight.await {
                    Some(answer) => return answer,
                    // Its leader gave up (its caller left, or its address was over the limit).
                    None => continue,
                },
            };
            // A flight that ended between the look-up and the join left its answer here.
            if let Some(answer) = self.cached(&key) {
                leader.complete(answer.clone());
                return answer;
            }
            if !self.admit(peer) {
                // Abandoned, not answered: each follower is charged to its own address.
                drop(leader);
                return Err(AuthError::Throttled);
            }
            let answer = self.introspect(key, token).await;
            if answer.is_ok() {
                lock(&self.peers).refund(PeerKey::of(peer));
            }
            leader.complete(answer.clone());
            return answer;
        }
    }

    /// Charges `peer` one request to the authorization server; `false` when over its limit.
    fn admit(&self, peer: Option<IpAddr>) -> bool {
        let who = PeerKey::of(peer);
        let verdict = lock(&self.peers).admit(who, Instant::now());
        let Verdict::Refuse { warn } = verdict else { return true };
        self.throttled.fetch_add(1, Ordering::Relaxed);
        if let Some(refused) = warn {
            tracing::warn!(
                peer = %who,
                refused,
                "unknown tokens over the per-address limit refused without introspection ({refused} calls since the last warning, the latest from {who})"
            );
        }
        false
    }

    /// Asks in turn (bounded wait), caches what is worth caching, answers.
    async fn introspect(&self, key: Key, token: &str) -> Answer {
        let _turn = match &self.turns {
            None => None,
            Some(turns) => match tokio::time::timeout(self.wait, turns.acquire()).await {
                Ok(Ok(turn)) => Some(turn),
                _ => {
                    self.warn_busy();
                    return Err(AuthError::Unavailable(CANNOT_CHECK.into()));
                }
            },
        };
        let answer = self.ask(token).await;
        let life = match &answer {
            Ok((_, life)) => *life,
            // Shared with the callers waiting for it, never kept.
            Err(AuthError::Unavailable(_)) => Duration::ZERO,
            Err(_) => self.ttl.min(REFUSAL_TTL),
        };
        let answer = answer.map(|(who, _)| who);
        if !life.is_zero() {
            lock(&self.cache).put(key, answer.clone(), Instant::now() + life);
        }
        answer
    }

    fn warn_busy(&self) {
        let now = Instant::now();
        let mut last = lock(&self.busy_warned);
        if last.is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY) {
            *last = Some(now);
            tracing::warn!(
                wait = ?self.wait,
                "no turn to introspect within the wait: every allowed introspection is in flight; callers get UNAVAILABLE"
            );
        }
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
                AuthError::Unavailable(CANNOT_CHECK.into())
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
    fn authenticate<'a>(&'a self, token: Option<&'a str>, peer: Option<IpAddr>) -> AuthFuture<'a> {
        Box::pin(async move {
            match token {
                Some(t) => self.check(t, peer).await,
                None => Err(AuthError::Unauthenticated),
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
