//! The simulator's properties, checked on the real processes on loopback (the lab's test does
//! the same across the multi-host lab): see `scistream_tests::props` for the steps and the
//! invariants. `SCISTREAM_PROPS_SEED=N SCISTREAM_PROPS_RUNS=1` replays a run; the seed is
//! printed first.

use scistream_tests::props::{self, Loopback, Sizing};

use crate::testkit::{runtime, shared};

#[test]
fn random_sequences_on_the_real_daemons_keep_the_simulators_invariants() {
    let _serial = shared();
    let sizing = Sizing::from_env(2);
    let rt = runtime();
    for run in 0..sizing.runs {
        let mut env = Loopback::start().expect("both facilities start");
        props::run(&mut env, &rt, sizing.first.wrapping_add(run), sizing.steps);
    }
}
