//! The README's main job, small: `scistream-demo` streams, verifies and cleans up.

use std::process::Command;

#[test]
fn the_demo_streams_verifies_every_byte_and_leaves_nothing_behind() {
    let out = Command::new(env!("CARGO_BIN_EXE_scistream-demo"))
        .args(["--size", "24MiB", "--streams", "3"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{} bytes verified", 24 << 20)), "{stdout}");
    assert!(stdout.contains("0 mismatches"), "{stdout}");
    assert!(stdout.contains("logged in for both scopes"), "the user logged in at both facilities: {stdout}");
    assert!(stdout.contains("both daemons exited 0"), "{stdout}");
}

#[test]
fn a_bad_size_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_scistream-demo")).args(["--size", "2XB"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit"));
}

/// The same stream across the multi-host lab's hosts (docs/lab.md), where it can be built;
/// otherwise skipped as the lab's tests are (`lab: skipped: ...`; `SCISTREAM_LAB=require`
/// makes that a failure).
#[test]
fn the_demo_across_the_labs_hosts_streams_and_verifies_every_byte() {
    use scistream_tests::lab::{Lab, lab_namespaces, note};
    if let Err(why) = Lab::available() {
        assert!(!std::env::var("SCISTREAM_LAB").is_ok_and(|v| v == "require"), "SCISTREAM_LAB=require: {why}");
        note(&format!("lab: skipped: demo-hosts: {why}"));
        return;
    }
    let started = std::time::Instant::now();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_scistream-demo"));
    demo.args(["--hosts", "--size", "24MiB", "--streams", "3"]);
    let child = demo.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("runs");
    // Its lab's namespaces are named for its pid.
    let own = format!("ssl-{}-", child.id());
    let out = scistream_tests::wait_within(child, std::time::Duration::from_secs(240)).expect("waits");
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    let o = out.unwrap_or_else(|o| o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let took = started.elapsed().as_secs_f64();
    note(&format!("lab: {} demo-hosts in {took:.1} s", if ok { "ran" } else { "FAILED" }));
    assert!(ok, "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("across the lab's hosts"), "{stdout}");
    assert!(stdout.contains(&format!("{} bytes verified, 0 mismatches", 24 << 20)), "{stdout}");
    assert!(stdout.contains("all four daemons (two s2cs, two s2ds) exited 0"), "{stdout}");
    let left: Vec<String> = lab_namespaces().into_iter().filter(|n| n.starts_with(&own)).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn the_demo_across_hosts_where_no_lab_can_be_built_says_why_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_scistream-demo"))
        .args(["--hosts", "--size", "1MiB"])
        .env("SCISTREAM_LAB", "off")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--hosts needs the multi-host lab") && err.contains("SCISTREAM_LAB=off"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "nothing started: {}", String::from_utf8_lossy(&out.stdout));
}
