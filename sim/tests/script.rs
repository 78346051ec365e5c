//! The scripting API: properties added as data fire when broken and are reached when true,
//! scripted faults act on the run, a scripted run is deterministic, and the worked example runs.

use std::time::Duration;

use scistream_fsm::{Instant, Peer, Role, s2cs};
use scistream_sim::script::{Property, Sim};
use scistream_sim::{Options, Prop, Scenario};

fn happy() -> Scenario {
    Scenario::load("happy").expect("shipped")
}

#[test]
fn a_scripted_property_that_breaks_is_reported_by_its_name_once() {
    let sc = happy();
    let out = Sim::new(&sc, Options { seed: 3, ..Options::default() })
        .with(Property::always("nothing-ever-established", |v| v.established() == 0))
        .with(Property::eventually("a-client-down-at-the-end", |v| v.client(0).is_none()))
        .finish();
    let names: Vec<_> = out.violations.iter().map(|v| v.prop).collect();
    assert_eq!(
        names,
        vec![Prop::Scripted("nothing-ever-established"), Prop::Scripted("a-client-down-at-the-end")],
        "{:?}",
        out.violations
    );
}

#[test]
fn a_scripted_property_that_holds_is_silent_and_a_reached_sometimes_is_reported() {
    let sc = happy();
    let out = Sim::new(&sc, Options { seed: 3, ..Options::default() })
        .with(Property::always("clients-up", |v| v.client(0).is_some()))
        .with(Property::sometimes("something-established", |v| v.established() > 0))
        .with(Property::sometimes("a-hundred-established", |v| v.established() >= 100))
        .finish();
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    assert!(out.scripted.contains("something-established"));
    assert!(!out.scripted.contains("a-hundred-established"), "10 sessions never make 100");
}

#[test]
fn a_scripted_partition_keeps_sessions_from_being_established_while_it_lasts() {
    let sc = happy();
    let cut = Duration::from_secs(30);
    let mut sim = Sim::new(&sc, Options { seed: 5, ..Options::default() });
    // The producer's control server cannot reach its data server: no REQ gets its ports.
    sim.partition(&["s2cs/PROD"], &["s2ds/PROD"], cut);
    sim.run_until(Instant::ZERO + cut);
    assert_eq!(sim.view().established(), 0);
    assert!(sim.view().bound_ports(Role::Prod).next().is_none(), "the producer's data server bound ports");
    let out = sim.finish();
    assert!(out.violations.is_empty(), "{:?}", out.violations);
    assert!(out.established > 0, "after the heal, sessions are set up again");
}

#[test]
fn a_scripted_crash_takes_the_node_down_and_it_comes_back() {
    let sc = happy();
    let mut sim = Sim::new(&sc, Options { seed: 9, trace: true, ..Options::default() });
    sim.run_until(Instant::ZERO + Duration::from_secs(1));
    sim.crash(Peer::ControlServer(Role::Cons), Duration::from_secs(2));
    assert!(sim.view().control_server(Role::Cons).is_none());
    sim.run_until(Instant::ZERO + Duration::from_secs(4));
    assert!(sim.view().control_server(Role::Cons).is_some_and(|c| c.state() == s2cs::State::Serving));
    assert!(sim.trace().iter().any(|l| l.contains("s2cs/CONS CRASHES")));
    let out = sim.finish();
    assert!(out.violations.is_empty(), "{:?}", out.violations);
}

#[test]
fn a_scripted_run_replays_exactly() {
    let sc = happy();
    let run = || {
        let mut sim = Sim::new(&sc, Options { seed: 11, trace: true, ..Options::default() });
        sim.run_until(Instant::ZERO + Duration::from_millis(1500));
        sim.partition(&["s2uc"], &["s2cs"], Duration::from_secs(3));
        sim.finish().trace
    };
    assert_eq!(run(), run());
}

#[test]
fn the_worked_example_runs_and_holds() {
    // `cargo test` builds examples beside the tests (target/<profile>/examples); a filtered run
    // may not have: build it then.
    let exe = std::env::current_exe().expect("test binary");
    let examples = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples");
    let example = examples.join("partition_lan");
    if !example.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "scistream-sim", "--example", "partition_lan"])
            .status()
            .expect("cargo runs");
        assert!(built.success(), "building the example failed");
    }
    let out = std::process::Command::new(&example).output().unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("200 seeds: 0 violations"), "{said}");
}
