//! Every property is shown able to fire: each broken variant (`scistream_sim::world::Defect`,
//! rewrites inside the simulator, never in the production cores) is caught by the property it
//! must trip within a bounded number of swarm seeds, and every built-in property has a variant.

use scistream_sim::Prop;
use scistream_sim::run;
use scistream_sim::world::Defect;

/// Seeds of the swarm a variant may take to be caught (`sim catch` measures how many each
/// takes: docs/simulation.md, "Seeds until each broken variant is caught").
const BOUND: u64 = 100;

#[test]
fn every_property_has_a_broken_variant_that_trips_it() {
    for prop in Prop::ALL {
        assert!(Defect::CAUGHT_BY.iter().any(|(_, p)| *p == prop), "no broken variant shows {prop} can fire");
    }
    for (name, defect) in Defect::NAMED {
        assert!(
            defect == Defect::None || Defect::CAUGHT_BY.iter().any(|(d, _)| *d == defect),
            "{name} is caught by nothing"
        );
    }
}

#[test]
fn every_broken_variant_is_caught_by_its_property_in_the_swarm() {
    for (defect, prop) in Defect::CAUGHT_BY {
        let n = run::seeds_until_caught(defect, prop, 0, BOUND);
        assert!(n.is_some(), "{} slipped through {prop} for {BOUND} swarm seeds", defect.name());
    }
}

#[test]
fn the_correct_protocol_trips_nothing_the_variants_trip() {
    // The same seeds, no defect: what catches the variants is the variants.
    let report = run::run_swarm(0..BOUND, Defect::None, 1);
    assert!(report.failures.is_empty(), "{}", report.render(&[]));
}
