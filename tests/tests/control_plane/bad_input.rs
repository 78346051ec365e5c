//! Bad input to the commands: each fails at once with a message that says what to fix and the
//! exit code of its kind (2: what it was told, 1: what it met); a config file is read and the
//! flags win over it.

use std::net::TcpListener;
use std::time::Duration;

use scistream_fsm::{ErrorCode, Role};
use scistream_tests::{Scratch, Server, ServerOpts, args, free_range, run};
use scistream_transport::tls::{self, Trust};

use crate::testkit::{RawServer, client, connect, fresh_uid, key, ports, range_ports, refusal, runtime, shared};

const QUICK: Duration = Duration::from_secs(20);

/// Runs `name` with `a`; its exit code and stderr.
fn fails(name: &str, a: &[&str]) -> (Option<i32>, String) {
    let out = run(name, &args(a), QUICK).unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

#[test]
fn a_client_trusting_another_certificate_is_refused_with_a_certificate_error() {
    let _serial = shared();
    let (dir, other) = (Scratch::new("cp-trust"), Scratch::new("cp-trust-other"));
    let server = Server::start(&dir.0, &ServerOpts { port_range: free_range(2), ..ServerOpts::default() }).unwrap();
    RawServer::gen_cert(&other.0);
    let wrong = other.0.join("cert.pem");

    let refused = runtime().block_on(tls::connect(&server.addr, &Trust::File(wrong.clone()), Duration::from_secs(10)));
    let reason = refused.expect_err("a handshake with an untrusted certificate").to_string();
    assert!(reason.contains(&server.addr), "the error names the server: {reason}");
    assert!(reason.to_lowercase().contains("certificate"), "the error says the certificate is the problem: {reason}");

    let uid = fresh_uid().to_string();
    let wrong = wrong.to_str().expect("utf-8 path");
    let (code, stderr) = fails("s2uc", &["--server-cert", wrong, "status", &uid, "--s2cs", &server.addr]);
    assert_eq!(code, Some(1), "s2uc trusting another certificate: {stderr}");
    assert!(stderr.contains(&server.addr) && stderr.to_lowercase().contains("certificate"), "s2uc says why: {stderr}");
    // The right certificate works, so the refusal was the certificate's doing.
    runtime().block_on(async { client(&server).await.list().await.expect("list with the right certificate") });
}

#[test]
fn s2cs_without_a_certificate_or_insecure_exits_2_pointing_at_gen_cert() {
    let (code, stderr) = fails("s2cs", &["--listener-ip", "127.0.0.1", "--port", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("gen-cert"), "the message names gen-cert: {stderr}");
}

#[test]
fn s2cs_with_a_port_range_whose_first_port_is_after_its_last_exits_2() {
    let (code, stderr) = fails("s2cs", &["--insecure", "--port", "0", "--port-range", "10-5"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--port-range") && stderr.contains("10-5"), "the message names the flag: {stderr}");
}

#[test]
fn s2cs_with_an_unknown_data_server_type_exits_2_naming_the_types() {
    // SciStream 1.2's types run (control_plane/backends.rs); one it never had does not.
    let (code, stderr) = fails("s2cs", &["--insecure", "--port", "0", "--type", "EnvoySubprocess"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("EnvoySubprocess") && stderr.contains("native, haproxy, nginx or stunnel"), "{stderr}");
}

#[test]
fn s2cs_on_a_control_port_in_use_exits_1_naming_the_address() {
    let _serial = shared();
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let addr = taken.local_addr().expect("its address").to_string();
    let port = addr.rsplit_once(':').expect("host:port").1;
    let range = free_range(2);
    let (code, stderr) =
        fails("s2cs", &["--insecure", "--listener-ip", "127.0.0.1", "--port", port, "--port-range", &range]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&addr), "the message names {addr}: {stderr}");
}

#[test]
fn s2uc_against_a_closed_port_exits_1_naming_the_address() {
    let dir = Scratch::new("cp-closed");
    RawServer::gen_cert(&dir.0);
    let addr = format!("127.0.0.1:{}", closed_port());
    let cert = dir.0.join("cert.pem");
    let uid = fresh_uid().to_string();
    let a = ["--server-cert", cert.to_str().expect("utf-8"), "--timeout", "5", "status", &uid, "--s2cs", &addr];
    let (code, stderr) = fails("s2uc", &a);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&addr), "the message names {addr}: {stderr}");
}

#[test]
fn a_config_file_is_honoured_and_flags_override_it() {
    let _serial = shared();
    let dir = Scratch::new("cp-config");
    let (in_file, on_flag) = (free_range(3), free_range(3));
    let config = dir.0.join("s2cs.toml");
    std::fs::write(&config, format!("port-range = \"{in_file}\"\nmax-num-conn = 2\nhello-timeout = 30\n"))
        .expect("writing the config");
    let config = config.to_str().expect("utf-8 path");

    // From the file alone.
    RawServer::gen_cert(&dir.0);
    let from_file = RawServer::start(&dir.0, &["--config", config]);
    // The harness passes --port-range: the flag wins over the file's.
    let opts = ServerOpts { port_range: on_flag.clone(), extra: args(&["--config", config]), ..ServerOpts::default() };
    let other_dir = Scratch::new("cp-config-flags");
    let overridden = Server::start(&other_dir.0, &opts).unwrap();

    runtime().block_on(async {
        let c = connect(&from_file.addr, &dir.0.join("cert.pem")).await;
        let l = c.req(fresh_uid(), Role::Cons, 2, 0, Some(key(0))).await.expect("REQ");
        assert_eq!(ports(&l.listeners), range_ports(&in_file).take(2).collect::<Vec<_>>(), "ports of the file's range");
        let three = c.req(fresh_uid(), Role::Cons, 3, 0, Some(key(0))).await;
        assert_eq!(refusal("num_conn above the file's max-num-conn", three), ErrorCode::InvalidArgument);

        let c = client(&overridden).await;
        let l = c.req(fresh_uid(), Role::Cons, 2, 0, Some(key(0))).await.expect("REQ");
        assert_eq!(ports(&l.listeners), range_ports(&on_flag).take(2).collect::<Vec<_>>(), "ports of the flag's range");
        let three = c.req(fresh_uid(), Role::Cons, 3, 0, Some(key(0))).await;
        assert_eq!(refusal("num_conn above the file's max-num-conn", three), ErrorCode::InvalidArgument);
    });
}

#[test]
fn a_config_file_with_an_unknown_setting_exits_2_naming_it() {
    let dir = Scratch::new("cp-config-bad");
    let config = dir.0.join("s2cs.toml");
    std::fs::write(&config, "port_range = \"5100-5200\"\n").expect("writing the config");
    let (code, stderr) = fails("s2cs", &["--insecure", "--port", "0", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("port_range"), "the message names the unknown key: {stderr}");
}
