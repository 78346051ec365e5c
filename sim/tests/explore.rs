//! Bounded exhaustive checking (`scistream_sim::world::explore`): the small worlds hold every
//! property under every choice within the CI bound, and every broken variant is caught within
//! that same bound. `sim explore` runs deeper bounds (docs/simulation.md).

use scistream_sim::Scenario;
use scistream_sim::world::explore::{self, Bounds};
use scistream_sim::world::{Defect, Options};

/// The CI bound: each small world with its seed and its depth, every window of the run, one
/// loss or duplication and one crash per branch.
const WORLDS: [(&str, u64, u32); 2] = [("explore-one", 0, 3), ("explore-two", 1, 2)];

fn run(world: &str, seed: u64, depth: u32, defect: Defect, first: bool) -> explore::Report {
    let sc = Scenario::load(world).expect("shipped scenario parses");
    let bounds = Bounds { depth, faults: 1, crashes: 1, first, ..Bounds::default() };
    explore::explore_windows(&sc, Options { seed, trace: false, defect }, bounds, u32::MAX)
}

#[test]
fn the_small_worlds_hold_every_property_under_every_choice_within_the_ci_bound() {
    for (world, seed, depth) in WORLDS {
        let r = run(world, seed, depth, Defect::None, false);
        assert!(r.unique > 1_000, "{world}: only {} states: the bound explores nothing", r.unique);
        assert!(r.violations.is_empty(), "{world}: {:#?}", r.violations);
    }
}

#[test]
fn every_broken_variant_is_caught_by_the_explorer_within_the_ci_bound() {
    for (defect, prop) in Defect::CAUGHT_BY {
        let caught = WORLDS
            .iter()
            .any(|(world, seed, depth)| run(world, *seed, *depth, defect, true).violations.contains_key(&prop));
        assert!(caught, "{} slipped through {prop} in the explorer's CI bound", defect.name());
    }
}
