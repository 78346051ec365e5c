//! Swarm testing: every seed draws a world of its own (`scistream_sim::swarm`). A bounded batch
//! runs with the other tests (`SIM_SWARM_SEEDS` overrides); `sim swarm --seeds 0..1000000
//! --jobs 2` runs many.

use scistream_sim::run;
use scistream_sim::swarm;
use scistream_sim::world::{self, Defect, Options};

fn seeds() -> u64 {
    std::env::var("SIM_SWARM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5_000)
}

#[test]
fn drawn_worlds_hold_every_property_and_reach_every_required_mark() {
    let report = run::run_swarm(0..seeds(), Defect::None, 1);
    assert!(report.passed(), "{}", report.render(&run::SWARM_SOMETIMES));
}

#[test]
fn a_drawn_world_written_as_a_scenario_replays_its_seed_exactly() {
    for seed in [3, 17, 4_242] {
        let drawn = swarm::draw(seed);
        let kept = scistream_sim::Scenario::parse("kept", &drawn.to_toml()).expect("parses");
        let a = world::run(&drawn, Options { seed, trace: true, defect: Defect::None });
        let b = world::run(&kept, Options { seed, trace: true, defect: Defect::None });
        assert!(a.trace.len() > 20, "seed {seed}: trace suspiciously short");
        assert_eq!(a, b, "seed {seed}: the kept file does not replay the drawn world");
    }
}

#[test]
fn the_swarm_draws_every_kind_of_fault_and_workload() {
    let worlds: Vec<_> = (0..300).map(swarm::draw).collect();
    let crashed = |kind: &str| worlds.iter().any(|w| w.crashes.iter().any(|c| c.node.starts_with(kind)));
    for kind in ["s2uc#", "s2cs/", "s2ds/", "app#"] {
        assert!(crashed(kind), "no world crashes a {kind} node");
    }
    assert!(worlds.iter().any(|w| !w.partitions.is_empty()));
    assert!(worlds.iter().any(|w| w.faults.iter().any(|f| f.corrupt > 0.0)));
    assert!(worlds.iter().any(|w| w.faults.iter().any(|f| f.duplicate > 0.0)));
    assert!(worlds.iter().any(|w| w.workload.duplicate_uids > 0));
    assert!(
        worlds
            .iter()
            .any(|w| w.workload.release_during_setup > 0.0 && w.crashes.iter().any(|c| c.node.starts_with("s2uc#")))
    );
    assert!(worlds.iter().any(|w| w.busy_ports > 0 && w.nodes > 1));
}
