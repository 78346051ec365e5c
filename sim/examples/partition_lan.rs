//! A researcher's script: what does a LAN partition between the producer's control server and
//! its data server do to sessions being set up, when the consumer's data server also crashes
//! while it lasts? Three properties of our own, added as data, over 200 seeds of the shipped
//! `happy` scenario:
//!
//! - always: no session waits on more calls than the protocol allows;
//! - eventually: both control servers serve again after the faults;
//! - sometimes: a session is established after the partition healed.
//!
//! Run it: `cargo run --release -p scistream-sim --example partition_lan`. Exit status 1 if a
//! property breaks or the "sometimes" is never reached.

use std::process::ExitCode;
use std::time::Duration;

use scistream_fsm::session::MAX_WAITERS;
use scistream_fsm::{Instant, Node, Peer, Role, s2cs};
use scistream_sim::script::{Property, Sim};
use scistream_sim::{Options, Scenario};

const HEAL: Duration = Duration::from_secs(6);

fn main() -> ExitCode {
    let sc = Scenario::load("happy").expect("a shipped scenario");
    let (mut broken, mut reached) = (0, 0);
    for seed in 0..200 {
        let mut sim = Sim::new(&sc, Options { seed, ..Options::default() })
            .with(Property::always("waiters-bounded", |v| {
                Role::ALL
                    .iter()
                    .filter_map(|r| v.control_server(*r))
                    .all(|cs| cs.sessions().values().all(|s| s.waiters().len() <= MAX_WAITERS))
            }))
            .with(Property::eventually("both-serving", |v| {
                Role::ALL.iter().all(|r| v.control_server(*r).is_some_and(|c| c.state() == s2cs::State::Serving))
            }))
            .with(Property::sometimes("established-after-heal", |v| {
                v.now() > Instant::ZERO + HEAL && v.established() > 0
            }));
        // One second in, cut the producer's LAN for five seconds; crash the consumer's data
        // server in the middle of it for two.
        sim.run_until(Instant::ZERO + Duration::from_secs(1));
        sim.partition(&["s2cs/PROD"], &["s2ds/PROD"], HEAL - Duration::from_secs(1));
        sim.run_until(Instant::ZERO + Duration::from_secs(3));
        sim.crash(Peer::DataServer(Role::Cons, Node(0)), Duration::from_secs(2));
        let outcome = sim.finish();
        for v in &outcome.violations {
            println!("seed {seed}: {v}");
            broken += 1;
        }
        reached += usize::from(outcome.scripted.contains("established-after-heal"));
    }
    println!("200 seeds: {broken} violations; a session established after the heal in {reached} runs");
    if broken > 0 || reached == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
