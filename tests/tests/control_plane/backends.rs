//! The data-server backends through the daemons (`--type native|haproxy|nginx|stunnel`): a
//! stream across every pair of backends at the two gateways, release ending each proxy and
//! freeing its ports, a proxy that dies failing its session, `kill -9` of a data server leaving
//! nothing behind, and a proxy missing or too old refused at start (exit 2).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scistream_fsm::{Addr, Uid};
use scistream_tests::{Node, Scratch, Server, ServerOpts, args, free_range, proxies_in, run, setup, write_script};

use crate::testkit::{client, eventually, fresh_uid, runtime, shared};

const KINDS: [&str; 4] = ["native", "haproxy", "nginx", "stunnel"];

/// The session folders under a runtime folder.
fn session_folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
}

/// An echo server standing in for the producer.
fn producer() -> Addr {
    Addr::new("127.0.0.1", scistream_tests::echo_producer())
}

/// Sends a pattern through `to` and checks the echo comes back whole.
fn round_trip(to: &Addr, n: usize) {
    let mut s = TcpStream::connect((to.host.as_str(), to.port)).expect("the consumer connects");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("the echo comes back");
    writer.join().unwrap();
    assert!(back == data, "{} bytes back of {n}", back.len());
}

fn port_free(a: &Addr) -> bool {
    std::net::TcpListener::bind((a.host.as_str(), a.port)).is_ok()
}

#[test]
fn a_stream_crosses_every_pair_of_backends_and_release_ends_each_proxy() {
    let _serial = shared();
    let dir = Scratch::new("backends");
    let start = |kind: &str, side: &str| {
        let rt = dir.0.join(format!("rt-{side}-{kind}"));
        let extra = vec!["--type".into(), kind.into(), "--runtime-dir".into(), rt.display().to_string()];
        let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(2), extra, ..ServerOpts::default() })
            .unwrap_or_else(|e| panic!("s2cs --type {kind}: {e:#}"));
        (server, rt)
    };
    let prods: Vec<_> = KINDS.iter().map(|k| start(k, "prod")).collect();
    let conss: Vec<_> = KINDS.iter().map(|k| start(k, "cons")).collect();
    let producer = producer();
    let rt = runtime();
    for ((pk, (prod, prt)), (ck, (cons, crt))) in
        KINDS.iter().zip(&prods).flat_map(|p| KINDS.iter().zip(&conss).map(move |c| (p, c)))
    {
        let uid: Uid = fresh_uid();
        let (listeners, p, c) = rt.block_on(async {
            let (p, c) = (client(prod).await, client(cons).await);
            let l = setup(&p, &c, uid, producer.clone(), 2).await.unwrap_or_else(|e| {
                panic!("{pk} -> {ck}: {e:#}\nproducer's gateway:\n{}\nconsumer's gateway:\n{}", prod.log(), cons.log())
            });
            (l, p, c)
        });
        assert_eq!(listeners.len(), 2);
        for to in &listeners {
            round_trip(to, 200_000);
        }
        // A proxy per session at a proxy gateway while it runs; none once released.
        for (kind, rtdir) in [(pk, prt), (ck, crt)] {
            let running = proxies_in(rtdir);
            assert_eq!(running.len(), usize::from(*kind != "native"), "{pk} -> {ck}: {kind} runs {running:?}");
        }
        rt.block_on(async {
            p.release(uid).await.unwrap();
            c.release(uid).await.unwrap();
        });
        for rtdir in [prt, crt] {
            eventually(Duration::from_secs(10), "the proxies end at release", || proxies_in(rtdir).is_empty());
            assert!(session_folders(rtdir).is_empty(), "{pk} -> {ck}: session folders left in {}", rtdir.display());
        }
        eventually(Duration::from_secs(10), "the consumer gateway's ports are free", || {
            listeners.iter().all(port_free)
        });
    }
}

#[test]
fn a_proxy_that_dies_fails_its_session_with_the_reason() {
    let _serial = shared();
    let dir = Scratch::new("backend-dies");
    let rt_dir = dir.0.join("rt");
    let extra = vec!["--type".into(), "haproxy".into(), "--runtime-dir".into(), rt_dir.display().to_string()];
    let prod = Server::start(&dir.0, &ServerOpts { port_range: free_range(2), ..ServerOpts::default() }).unwrap();
    let cons =
        Server::start(&dir.0, &ServerOpts { port_range: free_range(2), extra, ..ServerOpts::default() }).unwrap();
    let rt = runtime();
    let uid = fresh_uid();
    let c = rt.block_on(async {
        let (p, c) = (client(&prod).await, client(&cons).await);
        setup(&p, &c, uid, producer(), 1).await.unwrap();
        c
    });
    let pids = proxies_in(&rt_dir);
    assert_eq!(pids.len(), 1, "{pids:?}");
    scistream_tests::send_signal(pids[0], "KILL").expect("SIGKILL to the proxy");
    eventually(Duration::from_secs(10), "the consumer's facility fails the session", || {
        rt.block_on(c.status(uid)).is_ok_and(|s| s.failure.is_some())
    });
    let status = rt.block_on(c.status(uid)).unwrap();
    assert_eq!(status.state, "Failed", "{status:?}");
    assert!(cons.log().contains("haproxy (pid"), "{}", cons.log());
    assert!(session_folders(&rt_dir).is_empty());
}

#[test]
fn kill_9_of_a_data_server_leaves_no_proxy_and_its_restart_cleans_up() {
    let _serial = shared();
    let dir = Scratch::new("backend-kill9");
    let rt_dir = dir.0.join("rt");
    let rt_flag = rt_dir.display().to_string();
    let mut node = Node::start(&dir.0, &free_range(4), &["--type", "nginx", "--runtime-dir", &rt_flag]).unwrap();
    let prod = Server::start(&dir.0, &ServerOpts { node: Some(node.link()), ..ServerOpts::default() }).unwrap();
    // (The consumer's facility keeps the two sessions until released: room for a third.)
    let cons = Server::start(&dir.0, &ServerOpts { port_range: free_range(3), ..ServerOpts::default() }).unwrap();
    let rt = runtime();
    let producer = producer();
    let uids = [fresh_uid(), fresh_uid()];
    rt.block_on(async {
        let (p, c) = (client(&prod).await, client(&cons).await);
        for uid in uids {
            let listeners = setup(&p, &c, uid, producer.clone(), 1).await.unwrap();
            round_trip(&listeners[0], 50_000);
        }
    });
    assert_eq!(proxies_in(&rt_dir).len(), 2);
    assert_eq!(session_folders(&rt_dir).len(), 2);
    // The worst moment: two sessions streaming through two proxies.
    node.kill9();
    eventually(Duration::from_secs(10), "the proxies die with their data server", || proxies_in(&rt_dir).is_empty());
    // What a dead run leaves is its folders: the next run removes them before it serves.
    assert_eq!(session_folders(&rt_dir).len(), 2);
    node.restart().unwrap();
    assert!(session_folders(&rt_dir).is_empty(), "the restarted node left {:?}", session_folders(&rt_dir));
    assert!(proxies_in(&rt_dir).is_empty());
    // The control server fails what the old run held, then serves a new session through a
    // new proxy.
    eventually(Duration::from_secs(20), "the old sessions fail at the producer's facility", || {
        uids.iter()
            .all(|uid| rt.block_on(async { client(&prod).await.status(*uid).await }).is_ok_and(|s| s.failure.is_some()))
    });
    // (Until the restarted node has attached, requests are refused: each try is released.)
    rt.block_on(async {
        let (p, c) = (client(&prod).await, client(&cons).await);
        let mut last = String::new();
        for _ in 0..50 {
            let uid = fresh_uid();
            match setup(&p, &c, uid, producer.clone(), 1).await {
                Ok(l) => {
                    round_trip(&l[0], 50_000);
                    return;
                }
                Err(e) => {
                    last = format!("{e:#}");
                    let _ = p.release(uid).await;
                    let _ = c.release(uid).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        panic!("no session through the restarted node: {last}\nnode:\n{}\ncontrol server:\n{}", node.log(), prod.log())
    });
    assert_eq!(proxies_in(&rt_dir).len(), 1);
}

#[test]
fn a_missing_or_too_old_proxy_or_an_unknown_type_stops_the_daemons_at_start_with_exit_2() {
    let dir = Scratch::new("backend-missing");
    let old = dir.0.join("haproxy");
    write_script(&old, "#!/bin/sh\necho 'HAProxy version 1.8.19 2019/02/11'\n");
    let rt = dir.0.join("rt").display().to_string();
    // Runs `name` (bounded: a daemon that started serving would otherwise hang the test) and
    // asserts it stopped with exit 2 saying `says`.
    let refused = |name: &str, flags: Vec<String>, says: &str| {
        let out = run(name, &flags, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{name} {flags:?}: {e:#}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {flags:?}: {err}");
        assert!(err.contains(says), "{name} {flags:?}: {err}");
    };
    let cases: [(&[&str], &str); 4] = [
        (
            &["--type", "nginx", "--proxy-program", "/nonexistent/nginx"],
            "apt-get install nginx-light libnginx-mod-stream",
        ),
        (&["--type", "HaproxySubprocess", "--proxy-program", old.to_str().unwrap()], "too old"),
        (&["--type", "envoy"], "native, haproxy, nginx or stunnel"),
        (&["--type", "native", "--proxy-program", "/usr/sbin/haproxy"], "runs none"),
    ];
    for (flags, says) in cases {
        let mut all = args(&["--insecure", "--listener-ip", "127.0.0.1", "--port", "0", "--runtime-dir", &rt]);
        all.extend(args(flags));
        refused("s2cs", all, says);
    }
    // The data server node says the same.
    let node = Node::start(&dir.0, &free_range(2), &[]).unwrap();
    let link = node.link();
    let (cert, key, trust) = (link.cert.display(), link.key.display(), link.node_cert.display());
    let (cert, key, trust) = (cert.to_string(), key.to_string(), trust.to_string());
    let flags = ["--listen", "127.0.0.1:0", "--runtime-dir", &rt, "--type", "stunnel"];
    let mut all = args(&flags);
    all.extend(args(&["--proxy-program", "/nonexistent/stunnel", "--cert", &cert, "--key", &key, "--trust", &trust]));
    refused("s2ds", all, "apt-get install stunnel4");
    // A proxy type with remote nodes belongs to the nodes.
    let flags = ["--insecure", "--listener-ip", "127.0.0.1", "--port", "0", "--type", "haproxy"];
    let mut all = args(&flags);
    all.extend(args(&["--s2ds", &link.addr, "--s2ds-trust", &trust]));
    refused("s2cs", all, "--type belongs to the data server node");
}
