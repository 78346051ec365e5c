//! The facility's policy across the lab: a user cannot make gateway A reach a host of its LAN
//! outside `allow-targets`; gateway B refuses to dial a WAN address outside `allow-peers`; a
//! quota refuses the session beyond its limit; an anonymous control server on a WAN address is
//! refused at start unless the operator says `--allow-anonymous`.

use super::*;

/// Another service on the producer's host, which the facility does not offer (an SSH
/// server, say).
const OTHER_PORT: u16 = 2222;

/// `appctrl` on `prod` saying the Hello of `req` with `listeners`: its output.
fn hello(lab: &Lab, req: &Requested, a: &Gateway, listeners: &str) -> std::process::Output {
    let hello = req.hello_args_to(a, listeners);
    lab.run(Host::Prod, &bin("appctrl"), &hello, Duration::from_secs(30)).expect("appctrl")
}

#[test]
fn policy_a_user_cannot_make_the_gateway_reach_a_producer_lan_host_outside_allow_targets() {
    let Some((_turn, lab)) = lab("policy-targets") else { return };
    let dir = Scratch::new("lab-policy-targets");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let _other = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{OTHER_PORT}"));
    let only_app = format!("{PROD_IP}/32:{APP_PORT}");
    let fence = ["--allow-target", only_app.as_str()];
    let (a, b) = gateways_flagged(&lab, &dir.0, false, [&fence, &[]], [&fence, &[]]);
    // The service is there, reachable from the gateway's LAN: only the policy stands between.
    assert!(connects(&lab, Host::Gwa, &format!("{PROD_IP}:{OTHER_PORT}"), Duration::from_secs(5)));
    let req = Requested::start(&lab, &dir.0, "s2uc.log", &a, &b);
    let out = hello(&lab, &req, &a, &format!("{PROD_IP}:{OTHER_PORT}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a Hello naming {PROD_IP}:{OTHER_PORT} is refused: {err}");
    assert!(err.contains("permission denied") && err.contains("allow-targets"), "names the rule: {err}");
    // No session listener of gwa's node was bridged anywhere: the right Hello then makes the
    // stream, to the application only.
    let out = hello(&lab, &req, &a, &format!("{PROD_IP}:{APP_PORT}"));
    assert!(out.status.success(), "appctrl with the application: {}", String::from_utf8_lossy(&out.stderr));
    let established = req.established();
    let cons_l = listeners(&established, "consumer_listeners");
    let data = pattern(100_000);
    let seen = consume(&lab, &cons_l[0], &data, 50_000, || {});
    assert!(seen.read.expect("the echo comes back") == data);
    let audit = a.cs.log();
    assert!(
        audit.lines().any(|l| l.contains("targets-refused") && l.contains(&format!("{PROD_IP}:{OTHER_PORT}"))),
        "gwa's audit trail (its log) records the refusal: {audit}"
    );
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn policy_the_consumer_gateway_refuses_to_dial_a_wan_address_outside_allow_peers() {
    let Some((_turn, lab)) = lab("policy-peers") else { return };
    let dir = Scratch::new("lab-policy-peers");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    // Gateway B's only partner is some other gateway, not A.
    let fence = ["--allow-peer", "203.0.113.200/32:5100-5119"];
    let (a, b) = gateways_flagged(&lab, &dir.0, false, [&[], &fence], [&[], &fence]);
    let req = Requested::start(&lab, &dir.0, "s2uc.log", &a, &b);
    let out = hello(&lab, &req, &a, &format!("{PROD_IP}:{APP_PORT}"));
    assert!(out.status.success(), "the producer's side is within its policy: {}", String::from_utf8_lossy(&out.stderr));
    let out = req.s2uc.wait(Duration::from_secs(60)).expect("s2uc ends");
    let err = std::fs::read_to_string(dir.0.join("s2uc.log")).unwrap_or_default();
    assert!(!out.status.success(), "the consumer's gateway refuses the connection map: {err}");
    assert!(err.contains("allow-peers") && err.contains(GWA_WAN_IP), "names the rule and the address: {err}");
    // Gateway B never bridged the session; the failed setup is released on both sides.
    assert!(b.ds.log().contains("control server linked"), "gwb's node ran: {}", b.ds.log());
    nodes_hold(&lab, 0, Duration::from_secs(15), &format!("the refused session's listeners close; s2uc: {err}"));
    assert!(!b.ds.log().contains(GWA_WAN_IP), "gwb's node never dialled gwa: {}", b.ds.log());
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn policy_a_quota_of_one_session_refuses_the_second() {
    let Some((_turn, lab)) = lab("policy-quota") else { return };
    let dir = Scratch::new("lab-policy-quota");
    let _app = EchoApp::start(&lab, Host::Prod, &format!("{PROD_IP}:{APP_PORT}"));
    let config = dir.0.join("quota.toml");
    std::fs::write(&config, "[[quota]]\nname = \"lab\"\nidentities = [\"anonymous\"]\nmax-sessions = 1\n").unwrap();
    let quota = ["--config", config.to_str().unwrap()];
    let (a, b) = gateways_flagged(&lab, &dir.0, false, [&quota, &[]], [&[], &[]]);
    establish(&lab, &dir.0, &a, &b);
    let mut req = a.trust();
    req.extend(b.trust());
    req.extend(args(&["request", "--prod-s2cs", &a.cs.addr, "--cons-s2cs", &b.cs.addr, "--num-conn", "1"]));
    let out = lab.run(Host::User, &bin("s2uc"), &req, Duration::from_secs(60)).expect("s2uc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second session is refused: {err}");
    assert!(err.contains("resource exhausted") && err.contains("max-sessions 1"), "names the limit: {err}");
    stop_and_check_nothing_left(&lab, (a, b));
}

#[test]
fn policy_an_anonymous_control_server_on_a_wan_address_is_refused_at_start_unless_named() {
    let Some((_turn, lab)) = lab("policy-anonymous") else { return };
    let dir = Scratch::new("lab-policy-anonymous");
    let base = ["--insecure", "--listener-ip", GWA_WAN_IP, "--port", "5001", "--port-range", "5200-5201"];
    let out = lab.run(Host::Gwa, &bin("s2cs"), &args(&base), Duration::from_secs(20)).expect("s2cs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--allow-anonymous"), "{err}");
    assert!(!err.contains("s2cs serving"), "it served before refusing: {err}");
    let mut named = args(&base);
    named.push("--allow-anonymous".into());
    let log = dir.0.join("s2cs.log");
    let mut cs = lab.spawn(Host::Gwa, &bin("s2cs"), &named, &log).expect("s2cs starts");
    eventually(Duration::from_secs(15), "s2cs serves", || cs.log().contains("s2cs serving"));
    assert!(cs.log().contains("--allow-anonymous: authentication is OFF"), "said at start: {}", cs.log());
    assert!(connects(&lab, Host::User, &format!("{GWA_WAN_IP}:5001"), Duration::from_secs(5)));
    cs.terminate(Duration::from_secs(15)).expect("stops");
}
