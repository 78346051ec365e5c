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
