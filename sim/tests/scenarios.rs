//! Every shipped scenario, swept over 2,000 seeds (override with `SIM_SEEDS`), holds every
//! property and reaches what it says it reaches; broken protocol variants are caught; runs are
//! deterministic.

use scistream_sim::run::{self, Report};
use scistream_sim::scenario::{BUILTIN, Scenario};
use scistream_sim::world::{self, Defect, Options};
use scistream_sim::{Prop, Reach};

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000)
}

fn sweep(name: &str) -> Report {
    let sc = Scenario::load(name).expect("shipped scenario parses");
    let report = run::run_seeds(name, &sc, 0..seeds(), Defect::None, 1);
    assert!(report.passed(), "{}", report.render(&run::sometimes(&sc)));
    report
}

macro_rules! sweeps {
    ($($test:ident => $name:literal,)+) => {
        $(
            #[test]
            fn $test() {
                sweep($name);
            }
        )+

        #[test]
        fn every_shipped_scenario_has_a_sweep() {
            let swept = [$($name),+];
            for (name, _) in BUILTIN {
                assert!(swept.contains(name), "scenario {name} is shipped but not swept");
            }
        }
    };
}

sweeps! {
    happy_holds_every_property => "happy",
    lossy_holds_every_property => "lossy",
    corrupting_holds_every_property => "corrupting",
    dup_reorder_holds_every_property => "dup-reorder",
    crash_s2uc_holds_every_property => "crash-s2uc",
    crash_s2cs_prod_holds_every_property => "crash-s2cs-prod",
    crash_s2cs_cons_holds_every_property => "crash-s2cs-cons",
    crash_s2ds_prod_holds_every_property => "crash-s2ds-prod",
    crash_s2ds_cons_holds_every_property => "crash-s2ds-cons",
    crash_app_holds_every_property => "crash-app",
    partition_during_setup_holds_every_property => "partition-during-setup",
    data_server_unreachable_holds_every_property => "data-server-unreachable",
    sparse_holds_every_property => "sparse",
    hundred_sessions_hold_every_property => "100-sessions",
    release_during_setup_holds_every_property => "release-during-setup",
    hello_never_holds_every_property => "hello-never",
    port_exhaustion_holds_every_property => "port-exhaustion",
    duplicate_uid_holds_every_property => "duplicate-uid",
    config_space_holds_every_property => "config-space",
    headline_holds_every_property => "headline",
    nodes_hold_every_property => "nodes",
    crash_s2uc_after_release_holds_every_property => "crash-s2uc-after-release",
    explore_one_holds_every_property => "explore-one",
    explore_two_holds_every_property => "explore-two",
    rogue_targets_hold_every_property => "rogue-targets",
}

/// Runs a broken variant until some seed breaks `prop`; panics if none does within `bound`.
fn caught_within(scenario: &str, defect: Defect, prop: Prop, bound: u64) -> u64 {
    let sc = Scenario::load(scenario).expect("shipped scenario parses");
    for seed in 0..bound {
        let out = world::run(&sc, Options { seed, trace: false, defect });
        if out.violations.iter().any(|v| v.prop == prop) {
            return seed;
        }
    }
    panic!("{defect:?} was not caught by {prop} within {bound} seeds of {scenario}");
}

#[test]
fn no_retransmission_is_caught_by_liveness_under_loss() {
    caught_within("lossy", Defect::NoRetransmit, Prop::SessionsSettle, 50);
}

#[test]
fn bridge_before_credentials_is_caught_by_safety() {
    caught_within("happy", Defect::BridgeBeforeCredentials, Prop::BridgeNeedsCredentials, 5);
}

#[test]
fn ports_not_freed_on_release_are_caught_by_safety_and_liveness() {
    caught_within("happy", Defect::LeakPortsOnRelease, Prop::ReleasedPortsFree, 5);
    caught_within("happy", Defect::LeakPortsOnRelease, Prop::AllPortsFree, 5);
}

#[test]
fn a_message_the_wire_refuses_is_caught_by_the_round_trip_check() {
    caught_within("happy", Defect::UnencodableRequest, Prop::WireFaithful, 20);
}

#[test]
fn a_mark_a_scenario_forbids_fails_the_batch() {
    let text = "name = \"never-established\"\ndescription = \"x\"\nsessions = 2\nnever = [\"established\"]\n";
    let sc = Scenario::parse("never-established", text).expect("parses");
    let report = run::run_seeds("never-established", &sc, 0..5, Defect::None, 1);
    assert!(!report.passed(), "{}", report.render(&[]));
    assert_eq!(report.forbidden.first().map(|(m, _)| *m), Some(scistream_sim::check::Reach::Established));
    assert!(report.render(&[]).contains("never      established"), "{}", report.render(&[]));
    // The shipped fault-free scenario forbids every failure: its sweep would catch a spurious one.
    assert!(Scenario::load("happy").expect("parses").never.iter().any(|m| m == "failed-aborted"));
}

#[test]
fn same_seed_gives_the_same_trace() {
    let sc = Scenario::load("headline").expect("parses");
    for seed in [0, 7, 123_456] {
        let a = world::run(&sc, Options { seed, trace: true, defect: Defect::None });
        let b = world::run(&sc, Options { seed, trace: true, defect: Defect::None });
        assert!(a.trace.len() > 100, "trace of seed {seed} is suspiciously short");
        assert_eq!(a, b, "seed {seed} is not deterministic");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let sc = Scenario::load("lossy").expect("parses");
    let a = world::run(&sc, Options { seed: 1, trace: true, defect: Defect::None });
    let b = world::run(&sc, Options { seed: 2, trace: true, defect: Defect::None });
    assert_ne!(a.trace, b.trace);
}

#[test]
fn forged_messages_are_injected_and_refused() {
    let sc = Scenario::load("duplicate-uid").expect("parses");
    let report = run::run_seeds("duplicate-uid", &sc, 0..50, Defect::None, 1);
    assert!(report.reached.get(&Reach::ForgeryRefused).copied().unwrap_or(0) > 25, "{report:?}");
    assert!(!report.failures.contains_key(&Prop::ForgeryChangesNothing));
}

#[test]
fn a_run_where_nothing_is_established_fails_its_sometimes_property() {
    let mut sc = Scenario::load("happy").expect("parses");
    sc.workload.hello_never = 1.0;
    let report = run::run_seeds("happy-without-hello", &sc, 0..20, Defect::None, 1);
    assert!(report.unreached.contains(&Reach::Established));
    assert!(!report.passed());
}
