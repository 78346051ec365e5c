//! The `sim` binary through its command line.

use std::process::Command;

fn sim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sim")).args(args).output().expect("sim runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn run_prints_every_property_and_the_rate_and_exits_zero() {
    let (code, out, _) = sim(&["run", "--scenario", "lossy", "--seeds", "0..40"]);
    assert_eq!(code, 0, "{out}");
    for prop in scistream_sim::Prop::ALL {
        assert!(out.contains(prop.name()), "missing {prop} in\n{out}");
    }
    assert!(out.contains("seeds/s"), "{out}");
    assert!(out.contains("PASSED"), "{out}");
}

#[test]
fn failing_run_prints_the_seed_and_a_replay_command_that_reproduces_it() {
    let (code, out, _) =
        sim(&["run", "--scenario", "happy", "--seeds", "3..10", "--defect", "leak-ports", "--loss", "0.1"]);
    assert_eq!(code, 1, "{out}");
    let replay = out.lines().skip_while(|l| !l.starts_with("FAILED")).nth(1).expect("replay line").trim().to_string();
    assert!(
        replay.starts_with("sim replay --scenario happy --seed 3 --trace --defect leak-ports --loss 0.1"),
        "{replay}"
    );
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let (code, trace, _) = sim(&args);
    assert_eq!(code, 1, "replay must fail the same way");
    assert!(trace.contains("VIOLATION"), "{trace}");
    let (_, again, _) = sim(&args);
    assert_eq!(trace, again, "replay is exact");
}

#[test]
fn fault_overrides_change_the_run() {
    let (_, plain, _) = sim(&["replay", "--scenario", "happy", "--seed", "5"]);
    let (_, lossy, _) = sim(&["replay", "--scenario", "happy", "--seed", "5", "--loss", "0.3"]);
    assert_ne!(plain, lossy);
}

#[test]
fn list_names_every_shipped_scenario() {
    let (code, out, _) = sim(&["list"]);
    assert_eq!(code, 0);
    for (name, _) in scistream_sim::scenario::BUILTIN {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name} not listed");
    }
}

#[test]
fn unknown_scenario_and_bad_seeds_are_clear_errors() {
    let (code, _, err) = sim(&["run", "--scenario", "no-such-thing"]);
    assert_eq!(code, 2);
    assert!(err.contains("no scenario named \"no-such-thing\""), "{err}");
    let (code, _, err) = sim(&["run", "--scenario", "happy", "--seeds", "9..3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("empty seed range"), "{err}");
    let (code, _, err) = sim(&["run", "--scenario", "happy", "--loss", "1.5"]);
    assert_eq!(code, 2);
    assert!(err.contains("within 0..=1"), "{err}");
}

#[test]
fn scenario_files_are_read_and_validated() {
    let dir = std::env::temp_dir().join(format!("sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("mine.toml");
    std::fs::write(&good, "name = \"mine\"\ndescription = \"d\"\nsessions = 2\nsometimes = [\"established\"]\n")
        .unwrap();
    let (code, out, _) = sim(&["run", "--scenario", good.to_str().unwrap(), "--seeds", "0..5"]);
    assert_eq!(code, 0, "{out}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\ndescription = \"d\"\nsessions = 2\nsesions = 3\n").unwrap();
    let (code, _, err) = sim(&["run", "--scenario", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown field"), "{err}");
    let bad_node = dir.join("node.toml");
    std::fs::write(
        &bad_node,
        "name = \"n\"\ndescription = \"d\"\nsessions = 2\n[[crash]]\nnode = \"s2cs/MARS\"\nat_ms = 1\ndown_ms = 1\n",
    )
    .unwrap();
    let (code, _, err) = sim(&["run", "--scenario", bad_node.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown node"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diagrams_in_the_repository_are_current() {
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fsm");
    let (code, text, _) = sim(&["diagrams", "--out", out, "--check"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_failing_swarm_seed_prints_its_world_and_a_replay_command_that_reproduces_it() {
    let dir = std::env::temp_dir().join(format!("sim-swarm-cli-{}", std::process::id()));
    let out_dir = dir.to_str().expect("utf-8 path");
    let (code, out, _) = sim(&["swarm", "--seeds", "0..30", "--defect", "leak-ports", "--out", out_dir]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("name = \"swarm-"), "the world is printed as a scenario file:\n{out}");
    let replay = out.lines().skip_while(|l| !l.starts_with("replay exactly")).nth(1).expect("replay line").trim();
    assert!(replay.starts_with("sim replay --scenario ") && replay.ends_with("--defect leak-ports"), "{replay}");
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let (code, trace, _) = sim(&args);
    assert_eq!(code, 1, "the kept world and seed fail again:\n{trace}");
    assert!(trace.contains("VIOLATION"), "{trace}");
    let _ = std::fs::remove_dir_all(&dir);
}
