//! The backends with the real proxies (HAProxy, Nginx with its stream module, stunnel: what
//! `tests/run.sh` installs), on loopback: one gateway's forwarding of each kind towards the
//! other's, the WAN leg pinned mutual TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scistream_fsm::{Addr, Credentials, Role, Uid};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::backend::{self, Backend, Kind, Session, StartError};
use crate::relay::Counters;

/// A uid no other test uses.
fn fresh() -> Uid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Uid::from_u128(0x5c15_7ea0_0000_0000_0000_0000_0000_0000 | u128::from(NEXT.fetch_add(1, Ordering::Relaxed)))
}

fn addr(a: SocketAddr) -> Addr {
    Addr { host: a.ip().to_string(), port: a.port() }
}

async fn listeners(n: usize) -> Vec<TcpListener> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    v
}

/// An echo server standing in for the producer; counts the connections it accepted.
async fn echo() -> (Addr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = addr(l.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (a, accepted)
}

fn open(kind: Kind, dir: &std::path::Path) -> Arc<dyn Backend> {
    backend::open(kind, &dir.join(format!("rt-{kind}")), None).unwrap_or_else(|e| panic!("{e}"))
}

fn session(uid: Uid, role: Role, listeners: Vec<TcpListener>, targets: Vec<Addr>, creds: Credentials) -> Session {
    Session {
        uid,
        listeners,
        targets,
        role,
        creds,
        allow_plain_wan: false,
        rate: None,
        counters: Arc::new(Counters::default()),
    }
}

/// Sends `n` bytes of a pattern through `to` and checks the echo comes back byte for byte.
async fn round_trip(to: SocketAddr, n: usize, seed: u8) {
    let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(to)).await.unwrap().unwrap();
    let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::with_capacity(n);
    let recv = async { r.read_to_end(&mut back).await.unwrap() };
    tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(send, recv) })
        .await
        .expect("the echo did not come back in 30 s");
    assert!(back == data, "{} bytes sent through {to}, {} came back, or other bytes", n, back.len());
}

/// Writes an executable script at `path` by way of `install(1)`, so that this process never
/// holds the file open for writing: a process it forks at that instant (another test's) would
/// keep the descriptor until its exec, and running the script would fail "Text file busy".
fn write_script(path: &std::path::Path, text: &str) {
    let draft = path.with_extension("draft");
    std::fs::write(&draft, text).unwrap();
    let ok = std::process::Command::new("install").arg("-m").arg("755").arg(&draft).arg(path).status();
    assert!(ok.is_ok_and(|s| s.success()), "install -m 755 {}", path.display());
    std::fs::remove_file(&draft).unwrap();
}

/// Whether `port` can be bound again within 10 s. (A process another test forks at the
/// instant a listener closes holds a copy of it until it execs: briefly, but not never.)
fn free(port: u16) -> bool {
    for _ in 0..1_000 {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Processes whose command line names `dir`.
fn running_in(dir: &std::path::Path) -> Vec<i32> {
    let naming = super::child::processes_naming(dir.as_os_str().as_encoded_bytes());
    naming.into_iter().filter(|p| super::child::alive(*p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_of_backends_relays_byte_exact_over_the_pinned_wan_leg() {
    let tmp = tempfile::tempdir().unwrap();
    let backends: Vec<Arc<dyn Backend>> = Kind::ALL.iter().map(|k| open(*k, tmp.path())).collect();
    let (producer, _) = echo().await;
    for (i, prod) in backends.iter().enumerate() {
        for (j, cons) in backends.iter().enumerate() {
            eprintln!("{} -> {}", prod.kind(), cons.kind());
            let creds = Credentials([(i * 4 + j + 1) as u8; 32]);
            let uid = fresh();
            let wan = listeners(2).await;
            let wan_addrs: Vec<SocketAddr> = wan.iter().map(|l| l.local_addr().unwrap()).collect();
            let lan = listeners(2).await;
            let lan_addrs: Vec<SocketAddr> = lan.iter().map(|l| l.local_addr().unwrap()).collect();
            let p = prod.start(session(uid, Role::Prod, wan, vec![producer.clone()], creds)).await;
            let p = p.unwrap_or_else(|e| panic!("{} as the producer's gateway: {e}", prod.kind()));
            let c =
                cons.start(session(uid, Role::Cons, lan, wan_addrs.iter().copied().map(addr).collect(), creds)).await;
            let c = c.unwrap_or_else(|e| panic!("{} as the consumer's gateway: {e}", cons.kind()));
            for (k, to) in lan_addrs.iter().enumerate() {
                round_trip(*to, 300_000 + k * 7, k as u8).await;
            }
            c.stop().await;
            p.stop().await;
            for port in wan_addrs.iter().chain(&lan_addrs).map(SocketAddr::port) {
                assert!(free(port), "{} -> {}: port {port} still held after stop", prod.kind(), cons.kind());
            }
        }
    }
    for k in [Kind::Haproxy, Kind::Nginx, Kind::Stunnel] {
        let rt = tmp.path().join(format!("rt-{k}"));
        assert_eq!(running_in(&rt), Vec::<i32>::new(), "{k} processes left after every session stopped");
        assert_eq!(std::fs::read_dir(&rt).unwrap().count(), 0, "{k} left session folders");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wan_connection_without_the_session_certificate_reaches_no_producer() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in [Kind::Haproxy, Kind::Nginx, Kind::Stunnel] {
        let b = open(kind, tmp.path());
        let (producer, accepted) = echo().await;
        let wan = listeners(1).await;
        let at = wan[0].local_addr().unwrap();
        let f = b.start(session(fresh(), Role::Prod, wan, vec![producer], Credentials([9; 32]))).await.unwrap();
        // Plain bytes, where TLS is expected.
        if let Ok(mut s) = TcpStream::connect(at).await {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        }
        // TLS, with another session's certificate: the consumer side of another session,
        // pointed at this one.
        let other = backend::native::Native;
        let lan = listeners(1).await;
        let lan_at = lan[0].local_addr().unwrap();
        let wrong =
            other.start(session(fresh(), Role::Cons, lan, vec![addr(at)], Credentials([10; 32]))).await.unwrap();
        if let Ok(mut s) = TcpStream::connect(lan_at).await {
            let _ = s.write_all(b"secret-free bytes").await;
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            assert!(
                !matches!(n, Ok(Ok(k)) if k > 0),
                "{kind}: bytes came back over a connection with the wrong certificate"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "{kind}: an unauthenticated connection reached the producer");
        wrong.stop().await;
        f.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_wan_legs_only_when_allowed_and_never_with_stunnel() {
    let tmp = tempfile::tempdir().unwrap();
    let (producer, _) = echo().await;
    for kind in [Kind::Haproxy, Kind::Nginx, Kind::Stunnel] {
        let b = open(kind, tmp.path());
        let refused = b
            .start(session(fresh(), Role::Prod, listeners(1).await, vec![producer.clone()], Credentials::default()))
            .await;
        assert!(
            matches!(refused, Err(StartError::Wan(crate::wan::WanError::PlainNotAllowed))),
            "{kind}: {refused:?}",
            refused = refused.err()
        );
        let mut s = session(fresh(), Role::Prod, listeners(1).await, vec![producer.clone()], Credentials::default());
        s.allow_plain_wan = true;
        let at = s.listeners[0].local_addr().unwrap();
        match (kind, b.start(s).await) {
            (Kind::Stunnel, Err(StartError::Unsupported(why))) => assert!(why.contains("only speaks TLS"), "{why}"),
            (Kind::Stunnel, other) => panic!("stunnel took a plain session: {:?}", other.map(|f| f.describe())),
            (_, Ok(f)) => {
                round_trip(at, 100_000, 3).await;
                f.stop().await;
            }
            (_, Err(e)) => panic!("{kind}: {e}"),
        }
        assert!(free(at.port()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_dies_ends_its_forwarding_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (producer, _) = echo().await;
    for kind in [Kind::Haproxy, Kind::Nginx, Kind::Stunnel] {
        let b = open(kind, tmp.path());
        let mut f = b
            .start(session(fresh(), Role::Prod, listeners(1).await, vec![producer.clone()], Credentials([4; 32])))
            .await
            .unwrap();
        let pid: i32 = f.describe().rsplit(' ').next().unwrap().parse().unwrap();
        let ended = f.ended().expect("a proxy can end on its own");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        let why = tokio::time::timeout(Duration::from_secs(10), ended).await.expect("the death was not seen");
        assert!(why.contains(&format!("{kind} (pid {pid}) exited")) && why.contains("signal"), "{why}");
        f.stop().await;
        assert_eq!(std::fs::read_dir(tmp.path().join(format!("rt-{kind}"))).unwrap().count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_does_not_resolve_is_refused_before_any_proxy_starts() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in [Kind::Haproxy, Kind::Nginx, Kind::Stunnel] {
        let b = open(kind, tmp.path());
        let bad = Addr { host: "no-such-host.invalid".into(), port: 9 };
        let l = listeners(1).await;
        let port = l[0].local_addr().unwrap().port();
        match b.start(session(fresh(), Role::Prod, l, vec![bad], Credentials([5; 32]))).await {
            Err(StartError::Proxy(why)) => {
                assert!(why.starts_with(&format!("{kind}: cannot resolve the target no-such-host.invalid")), "{why}");
            }
            other => panic!("{kind}: {:?}", other.map(|f| f.describe())),
        }
        assert!(free(port), "{kind}: port held after a refused start");
        assert_eq!(running_in(&tmp.path().join(format!("rt-{kind}"))), Vec::<i32>::new());
        assert_eq!(std::fs::read_dir(tmp.path().join(format!("rt-{kind}"))).unwrap().count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_exits_at_start_fails_the_session_with_what_it_said() {
    let tmp = tempfile::tempdir().unwrap();
    let (producer, _) = echo().await;
    for (kind, version) in [
        (Kind::Haproxy, "HAProxy version 2.6.12"),
        (Kind::Nginx, "nginx version: nginx/1.22.1 --with-stream --with-stream_ssl_module"),
        (Kind::Stunnel, "stunnel 5.68 on x86_64\nCompiled with OpenSSL 3.0.9"),
    ] {
        // A "proxy" that knows its version, passes its configuration test, and dies when run.
        let fake = tmp.path().join(format!("fake-{kind}"));
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in -v|-V|-version) echo '{version}' >&2; exit 0;; -c|-t) exit 0;; esac\necho 'cannot bind: out of luck' >&2\nexit 3\n"
        );
        write_script(&fake, &script);
        let rt = tmp.path().join(format!("rt-fake-{kind}"));
        let b = backend::open(kind, &rt, Some(&fake)).unwrap_or_else(|e| panic!("{e}"));
        let l = listeners(1).await;
        let port = l[0].local_addr().unwrap().port();
        match b.start(session(fresh(), Role::Prod, l, vec![producer.clone()], Credentials([5; 32]))).await {
            Err(StartError::Proxy(why)) => {
                assert!(why.contains("exited at start") && why.contains("out of luck"), "{kind}: {why}");
            }
            other => panic!("{kind}: {:?}", other.map(|f| f.describe())),
        }
        assert!(free(port), "{kind}: port held after a failed start");
        assert_eq!(std::fs::read_dir(&rt).unwrap().count(), 0, "{kind}: files left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_files_are_private_and_haproxy_counts_the_traffic() {
    use std::os::unix::fs::MetadataExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let (producer, _) = echo().await;
    let b = open(Kind::Haproxy, tmp.path());
    let mut s = session(fresh(), Role::Prod, listeners(1).await, vec![producer], Credentials::default());
    s.allow_plain_wan = true;
    let counters = s.counters.clone();
    let at = s.listeners[0].local_addr().unwrap();
    let uid = s.uid;
    let f = b.start(s).await.unwrap();
    let dir = tmp.path().join("rt-haproxy").join(format!("session-{:032x}", uid.0.as_u128()));
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_file() {
            assert_eq!(m.mode() & 0o777, 0o600, "{}", e.path().display());
        }
    }
    round_trip(at, 123_456, 1).await;
    let mut seen = 0;
    // Read once a second over the admin socket, each read bounded at 2 s: 20 s is ample.
    for _ in 0..200 {
        seen = counters.bytes_in.load(Ordering::Relaxed);
        if seen == 123_456 && counters.bytes_out.load(Ordering::Relaxed) == 123_456 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 123_456, "HAProxy's byte count did not reach the session's counters");
    assert_eq!(counters.total.load(Ordering::Relaxed), 1);
    f.stop().await;
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_holds_the_sessions_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let (producer, _) = echo().await;
    let b = open(Kind::Nginx, tmp.path());
    let mut s = session(fresh(), Role::Prod, listeners(1).await, vec![producer], Credentials::default());
    s.allow_plain_wan = true;
    s.rate = Some(200_000);
    let at = s.listeners[0].local_addr().unwrap();
    let f = b.start(s).await.unwrap();
    let started = std::time::Instant::now();
    round_trip(at, 600_000, 2).await;
    // The echo comes back at no more than 200 kB/s: not before ~2 s (a lower bound only, which
    // a slow machine cannot break).
    assert!(started.elapsed() >= Duration::from_millis(1800), "600 kB came back in {:?}", started.elapsed());
    f.stop().await;
}

#[test]
fn a_missing_or_too_old_proxy_is_refused_at_start_naming_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tmp.path().join("rt");
    let e = backend::open(Kind::Haproxy, &rt, Some(&tmp.path().join("nowhere/haproxy"))).unwrap_err().to_string();
    assert!(e.contains("not installed") && e.contains("apt-get install haproxy"), "{e}");
    for (kind, says, package) in [
        (Kind::Haproxy, "HAProxy version 1.8.19 2019/02/11", "haproxy"),
        (Kind::Nginx, "nginx version: nginx/1.14.2", "nginx"),
        (Kind::Stunnel, "stunnel 5.40 on x86_64-pc-linux-gnu platform\nCompiled with OpenSSL 1.1.0", "stunnel4"),
    ] {
        let fake = tmp.path().join(format!("old-{kind}"));
        write_script(&fake, &format!("#!/bin/sh\necho '{says}' >&2\n"));
        let e = backend::open(kind, &rt, Some(&fake)).unwrap_err().to_string();
        assert!(e.contains("too old") && e.contains(package), "{kind}: {e}");
    }
    // An Nginx without its stream module.
    let fake = tmp.path().join("nginx-no-stream");
    write_script(
        &fake,
        "#!/bin/sh\necho 'nginx version: nginx/1.22.1\nconfigure arguments: --with-http_ssl_module' >&2\n",
    );
    let e = backend::open(Kind::Nginx, &rt, Some(&fake)).unwrap_err().to_string();
    assert!(e.contains("stream module") && e.contains("libnginx-mod-stream"), "{e}");
}

#[test]
fn a_runtime_folder_too_long_for_haproxys_sockets_is_refused_at_start() {
    let long = std::path::PathBuf::from("/tmp").join("x".repeat(80));
    let e = backend::open(Kind::Haproxy, &long, None).unwrap_err().to_string();
    assert!(e.contains("too long") && e.contains("--runtime-dir"), "{e}");
    assert!(!long.exists(), "the folder was made anyway");
}

#[test]
fn versions_parse() {
    assert_eq!(super::version_after("HAProxy version 2.6.12-1+deb12u4", "version "), Some((2, 6, 12)));
    assert_eq!(super::version_after("nginx version: nginx/1.22.1", "nginx/"), Some((1, 22, 1)));
    assert_eq!(super::version_after("stunnel 5.68 on x86_64", "stunnel "), Some((5, 68, 0)));
    assert_eq!(super::version_after("no version here", "nginx/"), None);
}

#[test]
fn haproxy_statistics_add_up_the_frontends() {
    let csv = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout\n\
               listener0,FRONTEND,,,1,2,100,5,1000,2000\n\
               target0,target0,0,0,1,1,,5,1000,2000\n\
               target0,BACKEND,0,0,1,1,,5,1000,2000\n\
               listener1,FRONTEND,,,0,1,100,2,10,20\n";
    assert_eq!(
        super::haproxy::totals(csv),
        super::haproxy::Totals { bytes_in: 1010, bytes_out: 2020, open: 1, total: 7 }
    );
    assert_eq!(super::haproxy::totals(""), super::haproxy::Totals::default());
}
