//! Running a range of seeds of a scenario and reporting every property.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::ops::Range;
use std::time::{Duration, Instant as WallClock};

use crate::check::{Kind, Prop, Reach, Violation};
use crate::scenario::Scenario;
use crate::world::{self, Defect, Options};

/// The result of many seeds.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name as given.
    pub scenario: String,
    /// Seeds run.
    pub seeds: Range<u64>,
    /// Wall time taken.
    pub elapsed: Duration,
    /// Events processed in all runs.
    pub events: u64,
    /// Sessions established in all runs.
    pub established: u64,
    /// Per property: how many seeds broke it, and the first such seed with its violation.
    pub failures: BTreeMap<Prop, (u64, u64, Violation)>,
    /// Per reachability mark: in how many runs it was reached.
    pub reached: BTreeMap<Reach, u64>,
    /// Marks the scenario requires ("sometimes") that no run reached.
    pub unreached: Vec<Reach>,
    /// Marks the scenario forbids ("never") that some run reached, with how many runs did.
    pub forbidden: Vec<(Reach, u64)>,
    /// The defect run, if any.
    pub defect: Defect,
}

impl Report {
    /// Whether every property held and every required mark was reached.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.unreached.is_empty() && self.forbidden.is_empty()
    }

    /// The first failing seed, if any.
    pub fn first_failing_seed(&self) -> Option<u64> {
        self.failures.values().map(|(_, seed, _)| *seed).min()
    }

    /// Seeds per second.
    pub fn rate(&self) -> f64 {
        (self.seeds.end - self.seeds.start) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The human-readable report.
    pub fn render(&self, required: &[Reach]) -> String {
        let n = self.seeds.end - self.seeds.start;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {}: {n} seeds ({}..{}) in {:.2} s = {:.0} seeds/s; {} events, {} sessions established{}",
            self.scenario,
            self.seeds.start,
            self.seeds.end,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.events,
            self.established,
            if self.defect == Defect::None { String::new() } else { format!(" [defect {:?}]", self.defect) },
        );
        for prop in Prop::ALL {
            let kind = match prop.kind() {
                Kind::Always => "always",
                Kind::Eventually => "eventually",
            };
            match self.failures.get(&prop) {
                None => {
                    let _ = writeln!(s, "  {kind:<10} {:<26} PASS", prop.name());
                }
                Some((count, seed, v)) => {
                    let _ =
                        writeln!(s, "  {kind:<10} {:<26} FAIL in {count} seeds; first seed {seed}: {v}", prop.name());
                }
            }
        }
        for mark in Reach::ALL {
            let runs = self.reached.get(mark).copied().unwrap_or(0);
            let need = required.contains(mark);
            let verdict = match (need, runs) {
                (true, 0) => "FAIL (required, never reached)",
                (true, _) => "PASS",
                (false, _) => "seen",
            };
            if need || runs > 0 {
                let _ = writeln!(s, "  sometimes  {:<26} {verdict} in {runs} runs", mark.name());
            }
        }
        for (mark, runs) in &self.forbidden {
            let _ = writeln!(s, "  never      {:<26} FAIL (forbidden) in {runs} runs", mark.name());
        }
        s
    }
}

/// Runs `seeds` of `sc` on `jobs` threads.
pub fn run_seeds(name: &str, sc: &Scenario, seeds: Range<u64>, defect: Defect, jobs: usize) -> Report {
    let never: Vec<Reach> = sc.never.iter().filter_map(|n| Reach::from_name(n)).collect();
    run_batch(name, &|_| Cow::Borrowed(sc), seeds, defect, jobs, &sometimes(sc), &never)
}

/// The marks a batch of swarm seeds must reach between them (`SWARM_MIN_SEEDS` seeds or more):
/// the drawn worlds establish, stream, release, fail for a deadline, exhaust ports, crash and
/// recover, keep bridges over a control server's restart, detect corruption, refuse forgeries.
pub const SWARM_SOMETIMES: [Reach; 10] = [
    Reach::Established,
    Reach::Streamed,
    Reach::Released,
    Reach::FailedDeadline,
    Reach::FailedExhausted,
    Reach::FailedAborted,
    Reach::Recovered,
    Reach::BridgesKept,
    Reach::CorruptionDetected,
    Reach::ForgeryRefused,
];

/// Below this many seeds a swarm batch is too small to require [`SWARM_SOMETIMES`].
pub const SWARM_MIN_SEEDS: u64 = 200;

/// Runs `seeds` of the swarm on `jobs` threads: each seed runs the world it draws
/// ([`crate::swarm::draw`]).
pub fn run_swarm(seeds: Range<u64>, defect: Defect, jobs: usize) -> Report {
    let required: &[Reach] = if seeds.end - seeds.start >= SWARM_MIN_SEEDS { &SWARM_SOMETIMES } else { &[] };
    run_batch("swarm", &|seed| Cow::Owned(crate::swarm::draw(seed)), seeds, defect, jobs, required, &[])
}

/// The world a seed runs in.
type WorldOf<'s> = dyn Fn(u64) -> Cow<'s, Scenario> + Sync + 's;

fn run_batch(
    name: &str,
    world_of: &WorldOf<'_>,
    seeds: Range<u64>,
    defect: Defect,
    jobs: usize,
    required: &[Reach],
    never: &[Reach],
) -> Report {
    let started = WallClock::now();
    let jobs = jobs.max(1) as u64;
    let total = seeds.end.saturating_sub(seeds.start);
    let chunk = total.div_ceil(jobs).max(1);
    let parts: Vec<Partial> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|j| {
                let lo = seeds.start + j * chunk;
                let hi = (lo + chunk).min(seeds.end);
                scope.spawn(move || run_range(world_of, lo..hi, defect))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("simulation thread panicked")).collect()
    });
    let mut report = Report {
        scenario: name.to_string(),
        seeds,
        elapsed: Duration::ZERO,
        events: 0,
        established: 0,
        failures: BTreeMap::new(),
        reached: BTreeMap::new(),
        unreached: Vec::new(),
        forbidden: Vec::new(),
        defect,
    };
    for p in parts {
        report.events += p.events;
        report.established += p.established;
        for (prop, (count, seed, v)) in p.failures {
            let e = report.failures.entry(prop).or_insert((0, seed, v.clone()));
            e.0 += count;
            if seed < e.1 {
                (e.1, e.2) = (seed, v);
            }
        }
        for (mark, runs) in p.reached {
            *report.reached.entry(mark).or_default() += runs;
        }
    }
    report.unreached = required.iter().copied().filter(|m| !report.reached.contains_key(m)).collect();
    report.forbidden = never.iter().filter_map(|m| report.reached.get(m).map(|runs| (*m, *runs))).collect();
    report.elapsed = started.elapsed();
    report
}

/// The marks a scenario requires.
pub fn sometimes(sc: &Scenario) -> Vec<Reach> {
    sc.sometimes.iter().filter_map(|n| Reach::from_name(n)).collect()
}

struct Partial {
    events: u64,
    established: u64,
    failures: BTreeMap<Prop, (u64, u64, Violation)>,
    reached: BTreeMap<Reach, u64>,
}

fn run_range(world_of: &WorldOf<'_>, seeds: Range<u64>, defect: Defect) -> Partial {
    let mut p = Partial { events: 0, established: 0, failures: BTreeMap::new(), reached: BTreeMap::new() };
    for seed in seeds {
        let sc = world_of(seed);
        let out = world::run(&sc, Options { seed, trace: false, defect });
        p.events += out.events;
        p.established += u64::from(out.established);
        let mut props: Vec<Prop> = Vec::new();
        for v in out.violations {
            if props.contains(&v.prop) {
                continue;
            }
            props.push(v.prop);
            let e = p.failures.entry(v.prop).or_insert((0, seed, v));
            e.0 += 1;
        }
        for mark in out.reached {
            *p.reached.entry(mark).or_default() += 1;
        }
    }
    p
}

/// How many swarm seeds, from `start` on, run until one breaks `prop` under `defect` (the
/// catching seed counted); `None` if none of `limit` seeds does.
pub fn seeds_until_caught(defect: Defect, prop: Prop, start: u64, limit: u64) -> Option<u64> {
    (start..start + limit)
        .position(|seed| {
            let sc = crate::swarm::draw(seed);
            world::run(&sc, Options { seed, trace: false, defect }).violations.iter().any(|v| v.prop == prop)
        })
        .map(|n| n as u64 + 1)
}
