//! Federated identity end to end, against the local OAuth2 server the tests start on loopback
//! (`scistream_tests::authsrv`): `s2cs` checking every caller's token by introspection (scope,
//! expiry, revocation, cache, the server down), sessions owned by their creator, and `s2uc`
//! logging in with PKCE, refreshing, checking and logging out. SciStream 1.2 looked a uid up
//! before checking the caller and failed open without a secret; these tests hold the line.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scistream_fsm::{AppKey, ErrorCode, Role};
use scistream_identity::Url;
use scistream_tests::authsrv::{AuthServer, Facility, browse_for_code};
use scistream_tests::{Background, Request, Scratch, Server, ServerOpts, args, bin, free_range, run};
use scistream_transport::client::ControlClient;

use crate::testkit::{CALL, connect_as, creds, fresh_uid, key, refusal, refusal_message, runtime, shared};

const SCOPE_A: &str = "scistream:facility-a";
const SCOPE_B: &str = "scistream:facility-b";

fn facilities() -> Vec<Facility> {
    vec![
        Facility { client_id: "facility-a".into(), secret: "secret-a".into() },
        Facility { client_id: "facility-b".into(), secret: "secret-b".into() },
    ]
}

/// Flags that make an `s2cs` check tokens at `auth` as facility `which` ("a" or "b").
fn auth_flags(auth: &AuthServer, which: &str, extra: &[&str]) -> Vec<String> {
    let facility = Facility { client_id: format!("facility-{which}"), secret: format!("secret-{which}") };
    let mut f = auth.s2cs_flags(&facility, &format!("scistream:facility-{which}"));
    f.extend(args(extra));
    f
}

fn start(dir: &Path, auth: &AuthServer, which: &str, extra: &[&str]) -> Server {
    let opts = ServerOpts { port_range: free_range(8), extra: auth_flags(auth, which, extra), ..ServerOpts::default() };
    Server::start(dir, &opts).unwrap()
}

async fn as_user(server: &Server, token: Option<&str>) -> ControlClient {
    connect_as(&server.addr, server.cert.as_deref().expect("TLS"), token).await
}

#[test]
fn every_call_needs_an_active_unexpired_token_of_the_facilitys_scope_checked_before_any_uid_lookup() {
    let _serial = shared();
    let dir = Scratch::new("id-tokens");
    let auth = AuthServer::start(&facilities()).unwrap();
    // Its 25 bad tokens in a second from one address would be over the default per-address
    // limit (burst 20): raised so every one is checked (the limit: introspection.rs).
    let a = start(&dir.0, &auth, "a", &["--auth-cache-ttl", "0", "--auth-peer-burst", "100"]);
    let good = auth.mint("alice", SCOPE_A, 600);
    let expired = auth.mint("alice", SCOPE_A, -5);
    let revoked = auth.mint("alice", SCOPE_A, 600);
    auth.revoke_access(&revoked);
    let other_scope = auth.mint("alice", SCOPE_B, 600);
    runtime().block_on(async {
        // A session that exists, made by alice.
        let alice = as_user(&a, Some(&good)).await;
        let existing = fresh_uid();
        alice.req(existing, Role::Cons, 1, 0, Some(key(1))).await.expect("alice's REQ");
        let missing = fresh_uid();

        let asked_before = auth.introspections();
        for (what, token, code) in [
            ("no token", None, ErrorCode::Unauthenticated),
            ("a bogus token", Some("not-a-token"), ErrorCode::Unauthenticated),
            ("an expired token", Some(expired.as_str()), ErrorCode::Unauthenticated),
            ("a revoked token", Some(revoked.as_str()), ErrorCode::Unauthenticated),
            ("a token of another facility's scope", Some(other_scope.as_str()), ErrorCode::PermissionDenied),
        ] {
            let c = as_user(&a, token).await;
            // The same answer whether the uid exists or not: nothing to enumerate.
            for uid in [existing, missing] {
                assert_eq!(refusal(&format!("status with {what}"), c.status(uid).await), code, "{what}");
                assert_eq!(refusal(&format!("release with {what}"), c.release(uid).await), code, "{what}");
            }
            assert_eq!(refusal(&format!("list with {what}"), c.list().await), code, "{what}");
            let req = c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(2))).await;
            assert_eq!(refusal(&format!("REQ with {what}"), req), code, "{what}");
        }
        // Four tokens, six calls each, the cache off: every one asked (no token: nothing to ask).
        assert_eq!(auth.introspections() - asked_before, 4 * 6);
        // An expired token stays refused even when the server calls it active.
        auth.set_expired_active(true);
        let c = as_user(&a, Some(&expired)).await;
        assert_eq!(refusal("list with an expired token called active", c.list().await), ErrorCode::Unauthenticated);
        auth.set_expired_active(false);
        // Hello takes no token, only the session's app key: without the key, an existing uid is
        // answered exactly as a missing one (code and message), with or without a token.
        for token in [None, Some(good.as_str())] {
            let c = as_user(&a, token).await;
            let prod = vec!["127.0.0.1:7200".parse().unwrap()];
            let mut answers = Vec::new();
            for (uid, k) in [(existing, Some(key(2))), (existing, None), (missing, Some(key(1))), (missing, None)] {
                let what = format!("Hello without the session's key (token {})", token.is_some());
                answers.push(refusal_message(&what, c.hello(uid, Role::Cons, &prod, k).await));
            }
            assert!(answers.iter().all(|a| *a == answers[0]), "Hello told uids apart: {answers:?}");
            assert_eq!(answers[0].0, ErrorCode::NotFound);
        }
        // Only an authenticated caller learns that a uid does not exist.
        assert_eq!(refusal("alice's status of a missing uid", alice.status(missing).await), ErrorCode::NotFound);
        let (who, mine) = alice.list_as().await.expect("alice's list");
        assert_eq!(who, "id-alice", "the caller is the token's subject");
        assert_eq!(mine.len(), 1, "nothing the refused calls tried was created");
    });
    let log = a.log();
    assert!(!log.contains(&good) && !log.contains(&revoked), "a token reached the log");
}

#[test]
fn a_session_belongs_to_its_creator_and_to_configured_operators_only() {
    let _serial = shared();
    let dir = Scratch::new("id-owner");
    let auth = AuthServer::start(&facilities()).unwrap();
    let a = start(&dir.0, &auth, "a", &["--operator", "id-carol"]);
    let (alice_t, bob_t, carol_t) =
        (auth.mint("alice", SCOPE_A, 600), auth.mint("bob", SCOPE_A, 600), auth.mint("carol", SCOPE_A, 600));
    runtime().block_on(async {
        let (alice, bob, carol) =
            (as_user(&a, Some(&alice_t)).await, as_user(&a, Some(&bob_t)).await, as_user(&a, Some(&carol_t)).await);
        let uid = fresh_uid();
        alice.req(uid, Role::Cons, 2, 0, Some(key(3))).await.expect("alice's REQ");

        assert_eq!(refusal("bob's status", bob.status(uid).await), ErrorCode::PermissionDenied);
        let remote = vec!["127.0.0.1:9".parse().unwrap()];
        assert_eq!(
            refusal("bob's UpdateTargets", bob.update(uid, Role::Cons, &remote, Some(creds(1))).await),
            ErrorCode::PermissionDenied
        );
        assert_eq!(refusal("bob's release", bob.release(uid).await), ErrorCode::PermissionDenied);
        // Bob's REQ with alice's uid is a conflict, not a takeover.
        assert_eq!(
            refusal("bob's REQ of alice's uid", bob.req(uid, Role::Cons, 2, 0, Some(key(3))).await),
            ErrorCode::AlreadyExists
        );
        let (who, bobs) = bob.list_as().await.expect("bob's list");
        assert_eq!((who.as_str(), bobs.len()), ("id-bob", 0), "bob sees none of alice's sessions");

        // Nothing bob did changed it.
        let s = alice.status(uid).await.expect("alice's status");
        assert_eq!((s.state.as_str(), s.owner.as_str(), s.targets.len()), ("Listening", "id-alice", 0));

        // The operator sees and releases it.
        let (_, all) = carol.list_as().await.expect("carol's list");
        assert!(all.iter().any(|s| s.uid == uid && s.owner == "id-alice"), "the operator sees alice's session");
        carol.status(uid).await.expect("the operator's status");
        carol.release(uid).await.expect("the operator's release");
        let s = alice.status(uid).await.expect("alice's status after the release");
        assert_eq!(s.state, "Released");
    });
}

#[test]
fn positive_answers_are_cached_for_the_ttl_and_a_revoked_token_stops_working_after_it() {
    let _serial = shared();
    let dir = Scratch::new("id-cache");
    let auth = AuthServer::start(&facilities()).unwrap();
    let a = start(&dir.0, &auth, "a", &["--auth-cache-ttl", "5"]);
    let token = auth.mint("alice", SCOPE_A, 600);
    runtime().block_on(async {
        let c = as_user(&a, Some(&token)).await;
        // The answer is cached once it comes, so no sooner than this.
        let first_asked = Instant::now();
        c.list().await.expect("first call");
        let asked = auth.introspections();
        assert_eq!(asked, 1);
        for _ in 0..5 {
            c.list().await.expect("cached call");
        }
        assert_eq!(auth.introspections(), asked, "calls within the TTL are answered from the cache");

        auth.revoke_access(&token);
        let revoked_at = Instant::now();
        let mut refused = None;
        while revoked_at.elapsed() < Duration::from_secs(15) {
            match c.list().await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert_eq!(refusal("list with the revoked token", refused.map_or(Ok(()), Err)), ErrorCode::Unauthenticated);
        let held = first_asked.elapsed();
        assert!(held >= Duration::from_secs(5), "the revoked token worked for {held:?}, not for the 5 s TTL");
    });
}

#[test]
fn with_the_authorization_server_down_calls_fail_unavailable_never_open() {
    let _serial = shared();
    let dir = Scratch::new("id-down");
    let mut auth = AuthServer::start(&facilities()).unwrap();
    let a = start(&dir.0, &auth, "a", &["--auth-cache-ttl", "0"]);
    let token = auth.mint("alice", SCOPE_A, 600);
    runtime().block_on(async {
        let c = as_user(&a, Some(&token)).await;
        c.list().await.expect("while the server is up");
        auth.stop();
        assert_eq!(refusal("list", c.list().await), ErrorCode::Unavailable);
        let req = c.req(fresh_uid(), Role::Cons, 1, 0, Some(key(4))).await;
        assert_eq!(refusal("REQ", req), ErrorCode::Unavailable);
        // No token at all is still UNAUTHENTICATED: nothing to ask about.
        let anon = as_user(&a, None).await;
        assert_eq!(refusal("anonymous list", anon.list().await), ErrorCode::Unauthenticated);
    });
    assert!(a.log().contains("introspection failed"), "the failure is logged: {}", a.log());
}

#[test]
fn s2cs_refuses_to_start_with_authentication_half_configured() {
    let _serial = shared();
    let dir = Scratch::new("id-flags");
    let secret_file = dir.0.join("secret");
    std::fs::write(&secret_file, "\n").unwrap();
    let base = ["--insecure", "--port", "0", "--listener-ip", "127.0.0.1"];
    for (flags, says) in [
        (vec!["--require-auth"], "--require-auth"),
        (vec!["--client-secret", "secret-value"], "--client-id"),
        (vec!["--client-id", "x", "--client-secret", "s", "--auth-url", "http://auth.example.org"], "loopback"),
        (vec!["--client-id", "x", "--client-secret-file", secret_file.to_str().unwrap()], "empty"),
    ] {
        let mut all: Vec<&str> = base.to_vec();
        all.extend(&flags);
        let out = run("s2cs", &args(&all), Duration::from_secs(20)).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?} should say {says:?}: {err}");
        assert!(!err.contains("secret-value"), "no secret echoed");
    }
}

/// The user at the browser: opens `url` at the local authorization server (logged in already)
/// and returns where it sends them back.
fn open_in_browser(url: &str) -> Url {
    scistream_tests::authsrv::browse(url).expect("the authorization server's redirect")
}

fn path_and_query(u: &Url) -> String {
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

/// `s2uc --config-dir CFG ARGS`, bounded; (exit code, stdout, stderr).
fn s2uc(cfg: &Path, a: &[&str]) -> (Option<i32>, String, String) {
    let mut all = args(&["--config-dir", cfg.to_str().unwrap()]);
    all.extend(args(a));
    let out = run("s2uc", &all, Duration::from_secs(30)).unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `s2uc login` with the code pasted at its prompt, as a user would.
fn login_at_prompt(cfg: &Path, scope: &str) -> String {
    let mut child = Command::new(bin("s2uc"))
        .args(["--config-dir", cfg.to_str().unwrap(), "login", "--scope", scope])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut process = Background(Some(child));
    let lines = process.stdout_lines().unwrap();
    let url = lines.recv_timeout(Duration::from_secs(20)).expect("s2uc printed the URL");
    let code = browse_for_code(&url).unwrap();
    writeln!(stdin, "{code}").unwrap();
    drop(stdin);
    let out = process.wait(Duration::from_secs(30)).unwrap();
    // Everything it printed: the reader thread may still be passing the last lines on (under
    // load it is, after the process exited), until it reaches the end of the pipe.
    let mut rest = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
        rest.push(line);
    }
    assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
    rest.join("\n")
}

fn write_settings(cfg: &Path, auth: &AuthServer, a: &Server, b: &Server) {
    std::fs::create_dir_all(cfg).unwrap();
    let text = format!(
        "auth-url = \"{}\"\nclient-id = \"s2uc-native\"\n[scopes]\n\"{}\" = \"{SCOPE_A}\"\n\"{}\" = \"{SCOPE_B}\"\n",
        auth.base, a.addr, b.addr
    );
    std::fs::write(cfg.join("s2uc.toml"), text).unwrap();
}

#[test]
fn s2uc_logs_in_with_pkce_streams_across_two_facilities_refreshes_and_logs_out() {
    let _serial = shared();
    let dir = Scratch::new("id-s2uc");
    let auth = AuthServer::start(&facilities()).unwrap();
    let a = start(&dir.0, &auth, "a", &[]);
    let b = start(&dir.0, &auth, "b", &[]);
    let cfg = dir.0.join("cfg");
    write_settings(&cfg, &auth, &a, &b);
    let trust = scistream_tests::trust(&[&a, &b]);
    let trust: Vec<&str> = trust.iter().map(String::as_str).collect();

    // Not logged in: the facility refuses, and s2uc says what to do.
    let mut list_a = trust.clone();
    list_a.extend(["list", "--s2cs", &a.addr]);
    let (code, _, err) = s2uc(&cfg, &list_a);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.to_lowercase().contains("unauthenticated"), "{err}");
    assert!(err.contains("s2uc login"), "a hint: {err}");

    // Facility A: the code pasted at the prompt.
    let said = login_at_prompt(&cfg, SCOPE_A);
    assert!(said.contains("as alice"), "{said}");
    // Facility B: --url-only now, --code later.
    let (code, out, err) = s2uc(&cfg, &["login", "--scope", SCOPE_B, "--url-only"]);
    assert_eq!(code, Some(0), "{err}");
    let code = browse_for_code(out.lines().next().expect("the URL")).unwrap();
    let (code, out, err) = s2uc(&cfg, &["login", "--code", &code]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(SCOPE_B), "{out}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(cfg.join("tokens.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is the user's alone");
    }

    // check-auth: identity, scope, and acceptance by the facility.
    let mut check = trust.clone();
    check.extend(["--json", "check-auth", "--s2cs", &a.addr]);
    let (code, out, err) = s2uc(&cfg, &check);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["scope"], SCOPE_A);
    assert_eq!(v["identity"], "alice");
    assert_eq!(v["s2cs"]["identity"], "id-alice");
    assert!(v.get("access_token").is_none(), "the token only with --show-token");

    // A whole stream, each facility getting its own scope's token.
    let mut client = args(&["--config-dir", cfg.to_str().unwrap()]);
    client.extend(args(&trust));
    let request = Request::start(&client, &a.addr, &b.addr, &["--num-conn", "2", "--hello-timeout", "30"]).unwrap();
    let mut hello =
        args(&[&request.uid, "--s2cs", &a.addr, "--key", &request.app_key, "--listeners", "127.0.0.1:7100"]);
    hello.extend(args(&trust));
    let out = run("appctrl", &hello, Duration::from_secs(30)).unwrap();
    assert!(out.status.success(), "appctrl: {}", String::from_utf8_lossy(&out.stderr));
    let established = request.next_json(Duration::from_secs(30)).unwrap();
    assert_eq!(established["event"], "established");
    let _ = request.process.wait(Duration::from_secs(10)).unwrap();
    // A wrong app key is refused even with the right uid (keys are checked, not just uids).
    let wrong = if request.app_key.starts_with('f') { "e" } else { "f" }.repeat(32);
    let mut bad = args(&[&request.uid, "--s2cs", &a.addr, "--key", &wrong, "--listeners", "127.0.0.1:7100"]);
    bad.extend(args(&trust));
    bad.extend(args(&["--hello-timeout", "2"]));
    let out = run("appctrl", &bad, Duration::from_secs(30)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong app key was accepted");
    // Answered as an unknown uid (nothing tells a guesser the uid exists): the controller says
    // Hello until its deadline, then names both causes the user can check.
    assert!(err.contains("deadline exceeded") && err.contains("--key"), "said what to check: {err}");

    // Refresh: tokens that expire within the margin are renewed before use.
    auth.set_lifetime(30);
    login_at_prompt(&cfg, SCOPE_A);
    let before = auth.refreshes();
    let check_token = || {
        let (code, out, err) = s2uc(&cfg, &["--json", "check-auth", "--scope", SCOPE_A, "--show-token"]);
        assert_eq!(code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    };
    let refreshed = check_token();
    assert_eq!(auth.refreshes(), before + 1, "the token was refreshed before use");
    assert!(auth.is_active(&refreshed));
    // A server that rotates refresh tokens: each refresh must keep the new one, or the next
    // refresh (the token is still due) would be refused.
    auth.set_rotate_refresh(true);
    check_token();
    let refreshed = check_token();
    assert_eq!(auth.refreshes(), before + 3, "rotated refresh tokens were kept and used");
    assert!(auth.is_active(&refreshed));
    // Four processes sharing the store and its one refresh token, a server that rotates it and
    // takes 400 ms to answer: under the store's lock one refreshes and the others find the
    // token it wrote; none spends the old refresh token again (which would be refused, and
    // leave it using the old access token).
    auth.set_lifetime(30);
    login_at_prompt(&cfg, SCOPE_A);
    auth.set_lifetime(3600);
    auth.set_refresh_delay(Duration::from_millis(400));
    let (before, refused_before) = (auth.refreshes(), auth.refused_refreshes());
    let tokens: Vec<String> = std::thread::scope(|s| {
        let procs: Vec<_> = (0..4).map(|_| s.spawn(check_token)).collect();
        procs.into_iter().map(|p| p.join().expect("a check-auth process")).collect()
    });
    auth.set_refresh_delay(Duration::ZERO);
    assert_eq!(auth.refused_refreshes(), refused_before, "a refresh token was spent twice");
    assert_eq!(auth.refreshes(), before + 1, "one process refreshed, the others used its token");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "the processes used different tokens");
    assert!(auth.is_active(&tokens[0]));
    let refreshed = tokens[0].clone();
    auth.set_rotate_refresh(false);
    auth.set_lifetime(3600);

    // Logout revokes at the server (refresh and access token of both scopes), then forgets.
    let revoked_before = auth.revocations();
    let (code, out, err) = s2uc(&cfg, &["logout"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("logged out of").count(), 2, "{out}");
    assert_eq!(auth.revocations(), revoked_before + 4, "two tokens revoked per scope");
    assert!(!auth.is_active(&refreshed), "the token was revoked, not just deleted");
    let file = std::fs::read_to_string(cfg.join("tokens.json")).unwrap();
    assert!(!file.contains(&refreshed) && !file.contains(SCOPE_B), "{file}");
    let (code, _, err) = s2uc(&cfg, &list_a);
    assert_eq!(code, Some(1), "after logout: {err}");
}

#[test]
fn s2uc_login_through_a_loopback_redirect_and_its_failures() {
    let _serial = shared();
    let dir = Scratch::new("id-loopback");
    let mut auth = AuthServer::start(&facilities()).unwrap();
    let cfg = dir.0.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("s2uc.toml"), format!("auth-url = \"{}\"\nclient-id = \"s2uc-native\"\n", auth.base))
        .unwrap();

    auth.set_user("dana");
    let mut process = Background::start(
        "s2uc",
        &args(&["--config-dir", cfg.to_str().unwrap(), "login", "--scope", SCOPE_A, "--loopback", "--within", "30"]),
    )
    .unwrap();
    let lines = process.stdout_lines().unwrap();
    let url = lines.recv_timeout(Duration::from_secs(20)).expect("the URL");
    let back = open_in_browser(&url);
    assert_eq!(back.host_str(), Some("127.0.0.1"), "the redirect is the loopback one: {back}");
    // The browser follows the redirect to s2uc's loopback port.
    let addr = format!("127.0.0.1:{}", back.port().unwrap());
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(CALL)).unwrap();
    write!(s, "GET {} HTTP/1.1\r\nHost: {addr}\r\n\r\n", path_and_query(&back)).unwrap();
    let mut page = String::new();
    std::io::Read::read_to_string(&mut s, &mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let out = process.wait(Duration::from_secs(20)).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Until the end of its output (the reader thread may still be passing lines on).
    let mut said = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
        said.push(line);
    }
    assert!(said.iter().any(|l| l.contains("as dana")), "{said:?}");

    // A code replayed with another login's PKCE verifier is refused by the server.
    let (_, first, _) = s2uc(&cfg, &["login", "--scope", SCOPE_B, "--url-only"]);
    let (_, _second, _) = s2uc(&cfg, &["login", "--scope", SCOPE_B, "--url-only"]);
    let stolen = browse_for_code(first.lines().next().unwrap()).unwrap();
    let (code, _, err) = s2uc(&cfg, &["login", "--code", &stolen]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("PKCE"), "{err}");
    // --code with no login waiting.
    let (code, _, err) = s2uc(&cfg, &["login", "--code", "whatever"]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("no login is waiting"), "{err}");

    // Logout while the server is down keeps the token (to retry), unless --force.
    auth.stop();
    let (code, _, err) = s2uc(&cfg, &["logout"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(std::fs::read_to_string(cfg.join("tokens.json")).unwrap().contains(SCOPE_A), "kept to retry");
    let (code, _, err) = s2uc(&cfg, &["logout", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!std::fs::read_to_string(cfg.join("tokens.json")).unwrap().contains(SCOPE_A));
}

#[test]
fn without_home_s2uc_still_reaches_an_open_server_and_login_says_where_tokens_could_go() {
    let _serial = shared();
    let dir = Scratch::new("id-nohome");
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let cert = server.cert.clone().unwrap();
    let s2uc_without_home = |a: &[&str]| {
        let child = Command::new(bin("s2uc"))
            .args(a)
            .env_remove("HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SCISTREAM_CONFIG_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background(Some(child)).wait(Duration::from_secs(30)).unwrap()
    };
    let out = s2uc_without_home(&["--server-cert", cert.to_str().unwrap(), "list", "--s2cs", &server.addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s2uc_without_home(&["login", "--scope", SCOPE_A, "--url-only"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--config-dir"), "{err}");
}

#[test]
fn sessions_without_an_app_key_are_refused_unless_the_facility_allows_them() {
    let _serial = shared();
    let dir = Scratch::new("id-keyless");
    let strict = Server::start(&dir.0, &ServerOpts { port_range: free_range(4), ..ServerOpts::default() }).unwrap();
    let lax = Server::start(
        &dir.0,
        &ServerOpts { port_range: free_range(4), extra: args(&["--allow-keyless-sessions"]), ..ServerOpts::default() },
    )
    .unwrap();
    runtime().block_on(async {
        let c = as_user(&strict, None).await;
        let uid = fresh_uid();
        assert_eq!(refusal("keyless REQ", c.req(uid, Role::Cons, 1, 0, None).await), ErrorCode::PermissionDenied);
        assert_eq!(refusal("status after it", c.status(uid).await), ErrorCode::NotFound, "nothing was made");

        // Allowed: a 1.2 client's session, which takes only a Hello without a key.
        let c = as_user(&lax, None).await;
        let uid = fresh_uid();
        c.req(uid, Role::Cons, 1, 0, None).await.expect("keyless REQ where allowed");
        let prod = vec!["127.0.0.1:7200".parse().unwrap()];
        let keyed = c.hello(uid, Role::Cons, &prod, Some(key(5))).await;
        assert_eq!(refusal("a keyed Hello for a keyless session", keyed), ErrorCode::NotFound);
        c.hello(uid, Role::Cons, &prod, None).await.expect("the keyless Hello");
    });
    assert!(lax.log().contains("--allow-keyless-sessions"), "the facility is warned: {}", lax.log());
}

/// Hex of `bytes`, lowercase, as the tools print secrets.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn no_secret_reaches_any_log_at_any_level_in_either_format() {
    let _serial = shared();
    let dir = Scratch::new("id-nosecret");
    let auth = AuthServer::start(&facilities()).unwrap();
    // Trace level, every crate's: the most a log can say. One server logs text, the other JSON.
    let a = start(&dir.0, &auth, "a", &["-vv"]);
    let b = start(&dir.0, &auth, "b", &["-vv", "--log-format", "json"]);
    let (token_a, token_b) = (auth.mint("alice", SCOPE_A, 600), auth.mint("alice", SCOPE_B, 600));
    let uid = fresh_uid();
    let app_key = AppKey(*uuid::Uuid::new_v4().as_bytes());
    let mut wan = [0u8; 32];
    wan[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    wan[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let wan = scistream_fsm::Credentials(wan);
    let producer = scistream_fsm::Addr::new("127.0.0.1", scistream_tests::echo_producer());
    runtime().block_on(async {
        let (p, c) = (as_user(&a, Some(&token_a)).await, as_user(&b, Some(&token_b)).await);
        let hello = async {
            loop {
                match p.hello(uid, Role::Prod, std::slice::from_ref(&producer), Some(app_key)).await {
                    Err(scistream_transport::client::CallError::Status { code: ErrorCode::NotFound, .. }) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    other => return other,
                }
            }
        };
        let (pl, cl, h) = tokio::join!(
            p.req(uid, Role::Prod, 1, 0, Some(app_key)),
            c.req(uid, Role::Cons, 1, 0, Some(app_key)),
            hello
        );
        let (pl, cl) = (pl.expect("producer's REQ"), cl.expect("consumer's REQ"));
        h.expect("Hello");
        p.update(uid, Role::Prod, &pl.prod_listeners, Some(wan)).await.expect("producer's update");
        c.update(uid, Role::Cons, &pl.listeners, Some(wan)).await.expect("consumer's update");
        let listener = cl.listeners[0].to_string();
        assert!(scistream_tests::props::echo_through(&listener, 10_000), "the stream carries bytes");
        // A wrong token and a wrong key too: refusals are logged, their secrets are not.
        let _ = as_user(&a, Some("wrong-token-0123456789")).await.list().await;
        let _ = p.hello(uid, Role::Prod, std::slice::from_ref(&producer), Some(AppKey([0x42; 16]))).await;
        p.release(uid).await.expect("release A");
        c.release(uid).await.expect("release B");
    });
    let logs = [("s2cs a (text)", a.log()), ("s2cs b (json)", b.log())];
    let secrets = [
        ("facility A's access token", token_a.clone()),
        ("facility B's access token", token_b.clone()),
        ("a wrong token", "wrong-token-0123456789".to_owned()),
        ("facility A's client secret", "secret-a".to_owned()),
        ("facility B's client secret", "secret-b".to_owned()),
        ("the app key", hex(&app_key.0)),
        ("a wrong app key", hex(&[0x42; 16])),
        ("the WAN credentials", hex(&wan.0)),
    ];
    for (name, log) in &logs {
        assert!(log.lines().count() > 50, "{name} logged little at trace level: is -vv on?\n{log}");
        for (what, secret) in &secrets {
            assert!(!log.contains(secret.as_str()), "{what} is in the log of {name}");
        }
    }
    let json: Vec<serde_json::Value> = logs[1]
        .1
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // What the session's core logs while it steps carries the session's uid, in its span.
    let in_session: Vec<&serde_json::Value> = json
        .iter()
        .filter(|v| v["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == "session")))
        .collect();
    assert!(
        !in_session.is_empty(),
        "no line logged inside a session's span; lines with spans: {:?}",
        json.iter().filter(|v| v.get("spans").is_some()).take(5).collect::<Vec<_>>()
    );
    assert!(
        in_session.iter().all(|v| v["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["uid"] == uid.to_string()))),
        "a line of the session's span without its uid"
    );
}
