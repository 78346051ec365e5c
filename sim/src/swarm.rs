//! Swarm testing: every seed draws a world of its own before it runs.
//!
//! The shipped scenarios each stress one thing; a defect that needs two of them at once (a
//! client's crash after releases during setup, say) passes every one. [`draw`] expands a seed
//! into a whole [`Scenario`] — sessions and clients, num_conn, the port pool and its busy ports,
//! data-server nodes, network semantics and latencies, fault rules per link kind (loss,
//! corruption, duplication, reordering, delay), partitions between any groups of nodes, crashes
//! and restarts of any participant at any time, the workload mix and the configuration flags —
//! and the run then follows from the same seed as any scenario's. A drawn world is a scenario
//! like any other: [`Scenario::to_toml`] writes it, and `sim replay --scenario FILE --seed N`
//! replays the seed exactly (a test checks the file parses back to the very world drawn).
//!
//! The world is drawn from its own stream (the seed mixed with [`SALT`]), so the world and the
//! run inside it do not share random numbers. Every fault ends by the world's heal time and a
//! node's crashes never overlap (a node is down at most once at a time).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{ConfigSpace, Crash, FaultRule, Partition, Scenario, Semantics, Timing, Workload};

/// Mixed into the seed for the world's own stream.
pub const SALT: u64 = 0x5741_524d_5345_4544;

/// The link kinds a fault rule may name, as (sender, receiver) pairs: client and control server
/// (the WAN), control server and data server (a facility's LAN), controller and control server.
const LINKS: [(&str, &str); 7] = [
    ("s2uc", "s2cs"),
    ("s2cs", "s2uc"),
    ("s2cs", "s2ds"),
    ("s2ds", "s2cs"),
    ("app", "s2cs"),
    ("s2cs", "app"),
    ("any", "any"),
];

fn pick<T: Copy>(rng: &mut ChaCha8Rng, of: &[T]) -> T {
    of[rng.random_range(0..of.len())]
}

/// A probability that is zero half the time, else uniform in `[0, max]`, rounded to a
/// thousandth so the scenario file reads well and parses back to the same value.
fn sometimes(rng: &mut ChaCha8Rng, max: f64) -> f64 {
    if rng.random_bool(0.5) { 0.0 } else { thousandths(rng.random_range(0.0..=max)) }
}

fn thousandths(p: f64) -> f64 {
    (p * 1000.0).round() / 1000.0
}

fn range(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> [u64; 2] {
    let a = rng.random_range(lo..=hi);
    let b = rng.random_range(a..=hi);
    [a, b]
}

/// Every node of a world this size, by name: clients, control servers, data-server nodes,
/// controllers.
fn node_names(clients: u32, sessions: u32, nodes: u16) -> Vec<String> {
    let mut names: Vec<String> = (0..clients).map(|c| format!("s2uc#{c}")).collect();
    for r in ["PROD", "CONS"] {
        names.push(format!("s2cs/{r}"));
        names.push(format!("s2ds/{r}"));
        names.extend((1..nodes).map(|n| format!("s2ds/{r}.{n}")));
    }
    names.extend((0..sessions).map(|i| format!("app#{i}")));
    names
}

/// The world seed `seed` draws.
pub fn draw(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SALT);
    let rng = &mut rng;
    let sessions = rng.random_range(1..=12u32);
    let clients = if sessions > 1 { rng.random_range(1..=3u32) } else { 1 };
    let lo = rng.random_range(1..=4u16);
    let num_conn = [lo, rng.random_range(lo..=lo + 4)];
    let nodes = pick(rng, &[1u16, 1, 2, 3]);
    // From scarce (sessions fail RESOURCE_EXHAUSTED) to plenty.
    let ports = rng.random_range(num_conn[1].max(2)..=120);
    let busy_ports = if rng.random_bool(0.3) { rng.random_range(0..=ports / 4) } else { 0 };
    let network = pick(rng, &[Semantics::Ordered, Semantics::Unordered, Semantics::Duplicating]);
    let lan_ms = range(rng, 1, 5);
    let wan_ms = range(rng, 5, 80);
    let heal_at_ms = rng.random_range(5_000..=60_000u64);
    let workload = Workload {
        start_window_ms: rng.random_range(0..=10_000),
        hello_delay_ms: range(rng, 0, 4_000),
        hello_never: sometimes(rng, 0.3),
        release_during_setup: sometimes(rng, 0.6),
        hold_ms: range(rng, 0, 30_000),
        duplicate_uids: if clients >= 2 && sessions >= 2 && rng.random_bool(0.4) {
            rng.random_range(1..=sessions.div_ceil(3).min(sessions - 1))
        } else {
            0
        },
        forge: sometimes(rng, 0.1),
        legacy: sometimes(rng, 0.3),
        operator_release: sometimes(rng, 0.2),
        rogue_targets: sometimes(rng, 0.1),
    };
    let flag = |rng: &mut ChaCha8Rng| pick(rng, &[None, Some(false), Some(true)]);
    let config = ConfigSpace {
        require_app_keys: flag(rng),
        allow_plain_wan: flag(rng),
        operators: flag(rng),
        capacity: rng.random_bool(0.2).then(|| rng.random_range(10_000..=200_000)),
        node_capacity: rng.random_bool(0.2).then(|| rng.random_range(10_000..=100_000)),
        relay_failure: sometimes(rng, 0.2),
    };
    let mut faults = Vec::new();
    for _ in 0..rng.random_range(0..=4) {
        let (from, to) = pick(rng, &LINKS);
        let from_ms = rng.random_range(0..heal_at_ms);
        let until_ms = rng.random_bool(0.5).then(|| rng.random_range(from_ms + 1..=heal_at_ms));
        faults.push(FaultRule {
            from: from.into(),
            to: to.into(),
            msg: None,
            from_ms,
            until_ms,
            loss: sometimes(rng, 0.3),
            corrupt: sometimes(rng, 0.1),
            duplicate: sometimes(rng, 0.1),
            reorder: sometimes(rng, 0.3),
            reorder_ms: rng.random_range(1..=500),
            delay_ms: if rng.random_bool(0.3) { range(rng, 0, 300) } else { [0, 0] },
        });
    }
    let names = node_names(clients, sessions, nodes);
    let kinds = ["s2uc", "s2cs", "s2ds", "app"];
    let mut partitions = Vec::new();
    for _ in 0..pick(rng, &[0, 0, 1, 2]) {
        let group = |rng: &mut ChaCha8Rng| -> Vec<String> {
            if rng.random_bool(0.3) {
                vec![pick(rng, &kinds).to_string()]
            } else {
                (0..rng.random_range(1..=2)).map(|_| names[rng.random_range(0..names.len())].clone()).collect()
            }
        };
        let (a, b) = (group(rng), group(rng));
        let from_ms = rng.random_range(0..heal_at_ms);
        let until_ms = rng.random_range(from_ms + 1..=heal_at_ms.min(from_ms + 15_000));
        partitions.push(Partition { a, b, from_ms, until_ms });
    }
    let mut crashes: Vec<Crash> = Vec::new();
    for _ in 0..pick(rng, &[0, 1, 1, 2, 3, 4]) {
        let node = names[rng.random_range(0..names.len())].clone();
        let at_ms = rng.random_range(0..heal_at_ms);
        let down_ms = rng.random_range(1..=heal_at_ms.saturating_sub(at_ms).clamp(1, 8_000));
        // One crash of a node at a time: a node that is down cannot crash again.
        let overlaps =
            crashes.iter().any(|c| c.node == node && at_ms <= c.at_ms + c.down_ms && c.at_ms <= at_ms + down_ms);
        if !overlaps {
            crashes.push(Crash { node, at_ms, down_ms });
        }
    }
    Scenario {
        name: format!("swarm-{seed}"),
        description: format!("the world `sim swarm` draws for seed {seed}"),
        sessions,
        clients,
        num_conn,
        nodes,
        ports,
        busy_ports,
        network,
        lan_ms,
        wan_ms,
        heal_at_ms,
        workload,
        timing: Timing::default(),
        config,
        faults,
        partitions,
        crashes,
        sometimes: Vec::new(),
        never: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_world_is_a_valid_scenario_and_its_file_parses_back_to_it() {
        for seed in 0..500 {
            let sc = draw(seed);
            let text = sc.to_toml();
            let back = Scenario::parse(&sc.name, &text).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
            assert_eq!(back, sc, "seed {seed}\n{text}");
        }
    }

    #[test]
    fn seeds_draw_different_worlds() {
        // The name and description carry the seed: compared without them, only the worlds.
        let world = |s| Scenario { name: String::new(), description: String::new(), ..draw(s) }.to_toml();
        let worlds: std::collections::BTreeSet<String> = (0..50).map(world).collect();
        assert_eq!(worlds.len(), 50);
    }
}
