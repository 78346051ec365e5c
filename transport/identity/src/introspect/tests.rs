//! `IntrospectAuth` through the [`Authenticator`] interface, against a local introspection
//! endpoint that counts its requests and answers only when the test opens it (so a test can
//! hold many calls in flight at once).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;

const SCOPE: &str = "scistream";
/// Bound of every wait in these tests.
const LIMIT: Duration = Duration::from_secs(10);

/// An RFC 7662 endpoint: tokens starting with `good` are active (subject `id-<token>`, scope
/// [`SCOPE`]), any other is not. It answers while open, or fails every request with 503 when
/// told to.
struct Endpoint {
    url: Url,
    received: Arc<AtomicUsize>,
    in_progress: Arc<AtomicUsize>,
    most_in_progress: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    open: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Endpoint {
    async fn start(open: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/introspect", listener.local_addr().unwrap())).unwrap();
        let (open, gate) = watch::channel(open);
        let (received, in_progress, most_in_progress, failing) = (
            Arc::<AtomicUsize>::default(),
            Arc::<AtomicUsize>::default(),
            Arc::<AtomicUsize>::default(),
            Arc::<AtomicBool>::default(),
        );
        let counters = (received.clone(), in_progress.clone(), most_in_progress.clone(), failing.clone());
        let server = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (received, in_progress, most, failing) = counters.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    serve(conn, received, in_progress, most, failing, gate).await;
                });
            }
        });
        Self { url, received, in_progress, most_in_progress, failing, open, server }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::SeqCst)
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    /// Waits (bounded) until `n` requests have arrived.
    async fn until_received(&self, n: usize) {
        let start = Instant::now();
        while self.received() < n {
            assert!(start.elapsed() < LIMIT, "{n} requests not received within {LIMIT:?} ({})", self.received());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One connection's requests (HTTP/1.1 with keep-alive), each answered once the gate is open.
async fn serve(
    mut conn: TcpStream,
    received: Arc<AtomicUsize>,
    in_progress: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(body) = read_request(&mut conn, &mut buf).await else { return };
        received.fetch_add(1, Ordering::SeqCst);
        let now_in = in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now_in, Ordering::SeqCst);
        let opened = gate.wait_for(|open| *open).await.is_ok();
        in_progress.fetch_sub(1, Ordering::SeqCst);
        if !opened {
            return;
        }
        let token = body.split('&').find_map(|kv| kv.strip_prefix("token=")).unwrap_or("").to_owned();
        let (status, json) = if failing.load(Ordering::SeqCst) {
            ("503 Service Unavailable", r#"{"error":"temporarily_unavailable"}"#.to_owned())
        } else if token.starts_with("good") {
            let exp = unix_now() + 3600;
            ("200 OK", format!(r#"{{"active":true,"sub":"id-{token}","scope":"{SCOPE}","exp":{exp}}}"#))
        } else {
            ("200 OK", r#"{"active":false}"#.to_owned())
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        );
        if conn.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The body of the next request on `conn` (`buf` keeps what was read past it).
async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    buf.drain(..head_end + len);
    Some(body)
}

fn config(url: &Url) -> IntrospectConfig {
    IntrospectConfig {
        url: url.clone(),
        client_id: "facility".into(),
        client_secret: "secret".into(),
        scope: SCOPE.into(),
        cache_ttl: Duration::from_secs(60),
        cache_size: 1000,
        timeout: LIMIT,
        max_inflight: DEFAULT_MAX_INFLIGHT,
        peer_limit: PeerLimit::DEFAULT,
    }
}

fn peer(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

/// Waits (bounded) until `n` calls with `token` are in its introspection in flight.
async fn until_joined(auth: &IntrospectAuth, token: &str, n: usize) {
    tokio::time::timeout(LIMIT, async {
        while auth.flights.joined(&digest(token)) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("{} of {n} calls joined the introspection in flight", auth.flights.joined(&digest(token)))
    });
}

/// `n` concurrent authentications of `token` from `from`, each bounded by [`LIMIT`].
fn spawn_calls(
    auth: &Arc<IntrospectAuth>,
    n: usize,
    token: impl Fn(usize) -> String,
    from: Option<IpAddr>,
) -> Vec<tokio::task::JoinHandle<Answer>> {
    (0..n)
        .map(|i| {
            let (auth, token) = (auth.clone(), token(i));
            tokio::spawn(async move {
                tokio::time::timeout(LIMIT, auth.authenticate(Some(&token), from)).await.expect("answered in time")
            })
        })
        .collect()
}

async fn answers(calls: Vec<tokio::task::JoinHandle<Answer>>) -> Vec<Answer> {
    let mut out = Vec::with_capacity(calls.len());
    for c in calls {
        out.push(c.await.expect("no panic"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_with_one_uncached_token_cost_one_introspection() {
    let endpoint = Endpoint::start(false).await;
    // A burst far below fifty: the callers who wait for another's flight are not charged.
    let auth = Arc::new(
        IntrospectAuth::new(IntrospectConfig {
            peer_limit: PeerLimit { rate: 0.001, burst: 2, peers: 10 },
            ..config(&endpoint.url)
        })
        .unwrap(),
    );
    let calls = spawn_calls(&auth, 50, |_| "good-fresh".into(), peer(1));
    endpoint.until_received(1).await;
    // The answer is held until every caller has found the flight in progress.
    until_joined(&auth, "good-fresh", 50).await;
    endpoint.open();
    let got = answers(calls).await;
    assert!(got.iter().all(|a| *a == Ok(Principal("id-good-fresh".into()))), "{got:?}");
    assert_eq!(endpoint.received(), 1, "one introspection for fifty calls");
    assert_eq!(auth.introspections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_with_one_bogus_token_share_its_refusal() {
    let endpoint = Endpoint::start(false).await;
    let auth = Arc::new(IntrospectAuth::new(config(&endpoint.url)).unwrap());
    let calls = spawn_calls(&auth, 20, |_| "bogus".into(), peer(1));
    endpoint.until_received(1).await;
    until_joined(&auth, "bogus", 20).await;
    endpoint.open();
    let got = answers(calls).await;
    assert!(got.iter().all(|a| *a == Err(AuthError::Unauthenticated)), "{got:?}");
    assert_eq!(endpoint.received(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_answer_is_shared_by_those_waiting_but_not_cached() {
    let endpoint = Endpoint::start(false).await;
    endpoint.failing.store(true, Ordering::SeqCst);
    let auth = Arc::new(IntrospectAuth::new(config(&endpoint.url)).unwrap());
    let calls = spawn_calls(&auth, 10, |_| "good-x".into(), peer(1));
    endpoint.until_received(1).await;
    // Every call waits on the one introspection before it is answered (a late one would find
    // no flight and, the failure not being cached, ask again).
    until_joined(&auth, "good-x", 10).await;
    endpoint.open();
    let got = answers(calls).await;
    assert!(got.iter().all(|a| matches!(a, Err(AuthError::Unavailable(_)))), "{got:?}");
    assert_eq!(endpoint.received(), 1, "those waiting shared the failure");
    endpoint.failing.store(false, Ordering::SeqCst);
    assert_eq!(auth.authenticate(Some("good-x"), peer(1)).await, Ok(Principal("id-good-x".into())));
    assert_eq!(endpoint.received(), 2, "the failure was not cached: the next call asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_strand_those_waiting_for_its_answer() {
    let endpoint = Endpoint::start(false).await;
    let auth = Arc::new(IntrospectAuth::new(config(&endpoint.url)).unwrap());
    let first = spawn_calls(&auth, 1, |_| "good-y".into(), peer(1));
    endpoint.until_received(1).await;
    let second = spawn_calls(&auth, 1, |_| "good-y".into(), peer(2));
    until_joined(&auth, "good-y", 2).await;
    assert_eq!(endpoint.received(), 1, "the second caller waits for the first's flight");
    // The first caller's deadline: its future is dropped mid-introspection.
    first[0].abort();
    // The one still waiting asks again on its own.
    endpoint.until_received(2).await;
    endpoint.open();
    assert_eq!(answers(second).await, vec![Ok(Principal("id-good-y".into()))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspections_in_flight_never_exceed_the_limit() {
    let endpoint = Endpoint::start(false).await;
    let auth = Arc::new(
        IntrospectAuth::new(IntrospectConfig { max_inflight: 4, peer_limit: PeerLimit::OFF, ..config(&endpoint.url) })
            .unwrap(),
    );
    let calls = spawn_calls(&auth, 20, |i| format!("good-{i}"), peer(1));
    endpoint.until_received(4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(endpoint.in_progress(), 4, "the other sixteen wait for a turn");
    endpoint.open();
    let got = answers(calls).await;
    assert!(got.iter().all(Result::is_ok), "{got:?}");
    assert_eq!(endpoint.received(), 20);
    assert_eq!(endpoint.most_in_progress.load(Ordering::SeqCst), 4);
}

// On tokio's paused clock (the wait for a turn is a tokio timeout): the call waits the timeout
// exactly, neither less nor more, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn a_caller_without_a_turn_gets_unavailable_at_the_timeout_without_asking() {
    let endpoint = Endpoint::start(false).await;
    let auth = Arc::new(
        IntrospectAuth::new(IntrospectConfig {
            max_inflight: 1,
            timeout: Duration::from_millis(500),
            ..config(&endpoint.url)
        })
        .unwrap(),
    );
    // Every turn taken (by an introspection that outlasts the wait).
    let _taken = auth.turns.as_ref().expect("a limit").acquire().await.unwrap();
    let start = tokio::time::Instant::now();
    let waited = auth.authenticate(Some("good-other"), peer(2)).await;
    assert!(matches!(waited, Err(AuthError::Unavailable(_))), "{waited:?}");
    let took = start.elapsed();
    assert!(took.abs_diff(Duration::from_millis(500)) <= Duration::from_millis(2), "waited the timeout: {took:?}");
    assert_eq!(endpoint.received(), 0, "no turn, no request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_tokens_from_one_address_cost_at_most_its_burst_and_another_address_is_served() {
    let endpoint = Endpoint::start(true).await;
    let auth = Arc::new(
        IntrospectAuth::new(IntrospectConfig {
            peer_limit: PeerLimit { rate: 0.001, burst: 5, peers: 100 },
            ..config(&endpoint.url)
        })
        .unwrap(),
    );
    let got = answers(spawn_calls(&auth, 100, |i| format!("bogus-{i}"), peer(66))).await;
    let refused = got.iter().filter(|a| **a == Err(AuthError::Unauthenticated)).count();
    let throttled = got.iter().filter(|a| **a == Err(AuthError::Throttled)).count();
    assert_eq!((refused, throttled), (5, 95), "{got:?}");
    assert_eq!(endpoint.received(), 5, "the burst's worth of introspections");
    assert_eq!(auth.throttled(), 95);
    // Another address, a valid token: served.
    assert_eq!(auth.authenticate(Some("good-z"), peer(7)).await, Ok(Principal("id-good-z".into())));
    // The throttled address with a token already cached: served too (no request to charge).
    assert_eq!(auth.authenticate(Some("good-z"), peer(66)).await, Ok(Principal("id-good-z".into())));
    assert_eq!(endpoint.received(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_do_not_drain_their_addresss_bucket() {
    let endpoint = Endpoint::start(true).await;
    // No cache: every call is introspected, and charged.
    let auth = IntrospectAuth::new(IntrospectConfig {
        cache_ttl: Duration::ZERO,
        peer_limit: PeerLimit { rate: 0.001, burst: 2, peers: 10 },
        ..config(&endpoint.url)
    })
    .unwrap();
    for _ in 0..10 {
        assert_eq!(auth.authenticate(Some("good-w"), peer(3)).await, Ok(Principal("id-good-w".into())));
    }
    assert_eq!(endpoint.received(), 10);
    // The bad ones still find the whole burst, and no more.
    for i in 0..2 {
        assert_eq!(auth.authenticate(Some(&format!("bad-{i}")), peer(3)).await, Err(AuthError::Unauthenticated));
    }
    assert_eq!(auth.authenticate(Some("bad-2"), peer(3)).await, Err(AuthError::Throttled));
}

#[test]
fn debug_never_shows_the_secret() {
    let cfg = config(&Url::parse("http://127.0.0.1:1/introspect").unwrap());
    let cfg = IntrospectConfig { client_secret: "s3cr3t-value".into(), ..cfg };
    assert!(!format!("{cfg:?}").contains("s3cr3t"));
    let auth = IntrospectAuth::new(cfg).unwrap();
    assert!(!format!("{auth:?}").contains("s3cr3t"));
}

#[tokio::test]
async fn unreachable_server_is_unavailable_never_open() {
    // A port nothing listens on: bind one, learn it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/introspect")).unwrap();
    let auth = IntrospectAuth::new(IntrospectConfig { timeout: Duration::from_secs(2), ..config(&url) }).unwrap();
    assert!(matches!(auth.authenticate(Some("tok"), None).await, Err(AuthError::Unavailable(_))));
    assert_eq!(auth.authenticate(None, None).await, Err(AuthError::Unauthenticated));
    assert_eq!(auth.introspections(), 1, "no token, no call");
}

#[tokio::test]
async fn a_refusal_is_cached_for_the_refusal_ttl_only_even_under_a_longer_ttl() {
    let endpoint = Endpoint::start(true).await;
    let auth = IntrospectAuth::new(IntrospectConfig { cache_ttl: Duration::from_secs(3600), ..config(&endpoint.url) })
        .unwrap();
    let before = Instant::now();
    for _ in 0..2 {
        let refused = auth.authenticate(Some("bogus"), peer(3)).await;
        assert!(matches!(refused, Err(AuthError::Unauthenticated)), "{refused:?}");
    }
    let after = Instant::now();
    assert_eq!(endpoint.received(), 1, "the repeated bogus token was asked about again: its refusal was not cached");
    // Read the cache at chosen instants instead of waiting: the refusal is kept REFUSAL_TTL, not
    // the hour a valid token may be (a refusal kept for the TTL fails the second read).
    let key = cache::digest("bogus");
    let mut cache = lock(&auth.cache);
    assert!(cache.get(&key, before + REFUSAL_TTL - Duration::from_millis(500)).is_some(), "forgotten too early");
    assert!(cache.get(&key, after + REFUSAL_TTL + Duration::from_secs(1)).is_none(), "kept past REFUSAL_TTL");
}

/// An introspection answer, as the authorization server sends it.
fn answer(json: &str) -> BasicTokenIntrospectionResponse {
    serde_json::from_str(json).expect("an RFC 7662 answer")
}

#[test]
fn a_valid_tokens_answer_is_trusted_until_the_earlier_of_its_exp_and_the_ttl() {
    let now = 1_700_000_000;
    let active = |exp: i64| answer(&format!(r#"{{"active":true,"sub":"alice","scope":"{SCOPE}","exp":{exp}}}"#));
    let life = |exp, ttl| verdict(&active(exp), SCOPE, ttl, now).map(|(who, life)| (who.0, life));
    assert_eq!(
        life(now + 5, Duration::from_secs(60)),
        Ok(("alice".into(), Duration::from_secs(5))),
        "exp caps the TTL"
    );
    assert_eq!(
        life(now + 3600, Duration::from_secs(60)),
        Ok(("alice".into(), Duration::from_secs(60))),
        "the TTL caps exp"
    );
    assert_eq!(life(now, Duration::from_secs(60)), Err(AuthError::Unauthenticated), "expired at exp");
    let no_exp = answer(&format!(r#"{{"active":true,"sub":"alice","scope":"{SCOPE}"}}"#));
    assert_eq!(verdict(&no_exp, SCOPE, Duration::from_secs(60), now).map(|a| a.1), Ok(Duration::from_secs(60)));
}

#[test]
fn a_token_before_its_nbf_is_refused_and_accepted_from_it() {
    let now = 1_700_000_000;
    let with_nbf = |nbf: i64| answer(&format!(r#"{{"active":true,"sub":"alice","scope":"{SCOPE}","nbf":{nbf}}}"#));
    let ttl = Duration::from_secs(60);
    assert_eq!(verdict(&with_nbf(now + 1), SCOPE, ttl, now).map(|a| a.1), Err(AuthError::Unauthenticated));
    assert_eq!(verdict(&with_nbf(now), SCOPE, ttl, now).map(|a| a.1), Ok(ttl));
    assert_eq!(verdict(&with_nbf(now - 60), SCOPE, ttl, now).map(|a| a.1), Ok(ttl));
}
