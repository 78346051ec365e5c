//! Bounded exhaustive checking: every choice of a small world, not a sample of them.
//!
//! The explorer branches the very [`World`] the simulator runs — the same cores, network,
//! durable stores and checks — at every step of a run's first `depth` steps. At each such step
//! the choices are: the next event as scheduled; any message in flight within `window_ms` of
//! it arriving first instead (every interleaving of concurrent messages); any message in flight
//! lost or duplicated (while the `faults` budget lasts); any node crashing now and restarting
//! `down_ms` later with its durable state (while the `crashes` budget lasts). Past `depth`, or
//! with nothing left to choose, a branch runs to its end on its own schedule, so the end-of-run
//! properties are checked on every leaf. A state is a fingerprint of everything the run's
//! future depends on (cores, messages in flight, live timers, durable stores, the checks'
//! memory, the clock, the random stream's position, the budgets left): a state reached twice
//! is expanded once.
//!
//! Why our own explorer rather than the stateright crate: the cores are `Clone + Eq + Debug`
//! but not `Hash`, and the properties are written against the simulator's world (its network,
//! its crash model with durable state, its record of what each client reported). Stateright
//! would need `Hash` on every core type (a change across `fsm/`) and the network, the crashes
//! and every property written again in its actor model — a second checker that could disagree
//! with the first. Branching the simulator's world checks the same properties by construction.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hasher};
use std::time::{Duration, Instant as WallClock};

use scistream_fsm::{Node, Peer, Role};

use super::{Event, Options, Scheduled, World, ms};
use crate::check::{Prop, Violation};
use crate::scenario::Scenario;

/// How far to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Steps of a run at which choices are offered; the rest runs as scheduled.
    pub depth: u32,
    /// Messages the explorer may lose or duplicate on one branch.
    pub faults: u32,
    /// Nodes the explorer may crash on one branch.
    pub crashes: u32,
    /// Messages in flight due within this long of the next event may arrive first.
    pub window_ms: u64,
    /// How long a crashed node stays down.
    pub down_ms: u64,
    /// Steps run as scheduled before the choices start (a window of `depth` steps further in).
    pub skip: u32,
    /// Stop at the first violation (a counterexample is all a broken variant needs).
    pub first: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Self { depth: 4, faults: 1, crashes: 1, window_ms: 50, down_ms: 1_500, skip: 0, first: false }
    }
}

/// What an exploration found.
#[derive(Debug, Clone)]
pub struct Report {
    /// States expanded or reached (with repeats).
    pub explored: u64,
    /// Distinct states.
    pub unique: u64,
    /// Branches run to their end.
    pub leaves: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Per property broken: the first violation found and the choices that lead to it.
    pub violations: BTreeMap<Prop, (Violation, Vec<String>)>,
}

impl Report {
    /// States per second.
    pub fn rate(&self) -> f64 {
        self.explored as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One choice at a step.
#[derive(Debug, Clone, Copy)]
enum Choice {
    /// The event queued with this sequence number happens now (the next one, or a message in
    /// flight overtaking it).
    Take(u64),
    /// The message queued with this sequence number is lost.
    Lose(u64),
    /// The message queued with this sequence number is delivered twice.
    Duplicate(u64),
    /// This node crashes now.
    Crash(Peer),
}

struct Branch<'a> {
    w: World<'a>,
    depth: u32,
    faults: u32,
    crashes: u32,
    path: Vec<String>,
}

/// Explores every choice of `sc` run from `opts` within `bounds`, then every window of
/// `bounds.depth` steps further in, back to back, until a window starts past the run's end
/// (`windows` says how many at most): faults anywhere in the run, each window exhaustively.
pub fn explore_windows(sc: &Scenario, opts: Options, bounds: Bounds, windows: u32) -> Report {
    let started = WallClock::now();
    let steps = World::new(sc, opts).steps_to_end();
    let mut total = Report { explored: 0, unique: 0, leaves: 0, elapsed: Duration::ZERO, violations: BTreeMap::new() };
    for k in 0..windows {
        let skip = bounds.skip + k * bounds.depth.max(1);
        if u64::from(skip) >= steps || (bounds.first && !total.violations.is_empty()) {
            break;
        }
        let r = explore(sc, opts, Bounds { skip, ..bounds });
        total.explored += r.explored;
        total.unique += r.unique;
        total.leaves += r.leaves;
        for (prop, v) in r.violations {
            total.violations.entry(prop).or_insert(v);
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// Explores every choice of `sc` run from `opts` within `bounds`.
pub fn explore(sc: &Scenario, opts: Options, bounds: Bounds) -> Report {
    let started = WallClock::now();
    let mut report = Report { explored: 0, unique: 0, leaves: 0, elapsed: Duration::ZERO, violations: BTreeMap::new() };
    let mut seen: HashSet<u64> = HashSet::new();
    let mut w = World::new(sc, Options { trace: false, ..opts });
    w.boot();
    for _ in 0..bounds.skip {
        if !w.step_event() {
            break;
        }
    }
    let mut stack = vec![Branch { w, depth: 0, faults: bounds.faults, crashes: bounds.crashes, path: Vec::new() }];
    while let Some(b) = stack.pop() {
        if bounds.first && !report.violations.is_empty() {
            break;
        }
        report.explored += 1;
        if !seen.insert(fingerprint(&b)) {
            continue;
        }
        report.unique += 1;
        let choices = if b.depth < bounds.depth { choices(&b, bounds) } else { Vec::new() };
        if choices.is_empty() {
            report.leaves += 1;
            let out = b.w.finish_run();
            record(&mut report, out.violations, &b.path);
            continue;
        }
        for c in choices.into_iter().rev() {
            let mut next = Branch {
                w: b.w.clone(),
                depth: b.depth + 1,
                faults: b.faults,
                crashes: b.crashes,
                path: b.path.clone(),
            };
            next.path.push(next.w.describe_choice(c));
            let going = next.w.apply(c, &mut next.faults, &mut next.crashes, bounds);
            if !next.w.violations.is_empty() {
                report.explored += 1;
                let v = std::mem::take(&mut next.w.violations);
                record(&mut report, v, &next.path);
                continue;
            }
            if going {
                stack.push(next);
            } else {
                report.explored += 1;
                report.leaves += 1;
                let out = next.w.finish_run();
                record(&mut report, out.violations, &next.path);
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}

fn record(report: &mut Report, violations: Vec<Violation>, path: &[String]) {
    for v in violations {
        report.violations.entry(v.prop).or_insert_with(|| (v, path.to_vec()));
    }
}

/// The choices at a branch's next step.
fn choices(b: &Branch<'_>, bounds: Bounds) -> Vec<Choice> {
    let Some(Reverse(first)) = b.w.queue.peek() else { return Vec::new() };
    if first.at > b.w.end_at {
        return Vec::new();
    }
    let mut out = vec![Choice::Take(first.seq)];
    let horizon = first.at + ms(bounds.window_ms);
    let mut in_flight: Vec<&Scheduled> =
        b.w.queue
            .iter()
            .map(|Reverse(s)| s)
            .filter(|s| matches!(s.ev, Event::Deliver { .. }) && s.at <= horizon)
            .collect();
    in_flight.sort_by_key(|s| (s.at, s.seq));
    out.extend(in_flight.iter().filter(|s| s.seq != first.seq).map(|s| Choice::Take(s.seq)));
    if b.faults > 0 {
        for s in &in_flight {
            out.push(Choice::Lose(s.seq));
            out.push(Choice::Duplicate(s.seq));
        }
    }
    if b.crashes > 0 {
        out.extend(b.w.live_nodes().into_iter().map(Choice::Crash));
    }
    out
}

/// Everything the future of a branch depends on, hashed.
fn fingerprint(b: &Branch<'_>) -> u64 {
    struct H(DefaultHasher);
    impl std::fmt::Write for H {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    let w = &b.w;
    let mut h = H(DefaultHasher::new());
    let mut queue: Vec<&Scheduled> = w.queue.iter().map(|Reverse(s)| s).collect();
    queue.sort_by_key(|s| (s.at, s.seq));
    let _ = write!(h, "{:?}{}{}{}", w.now, b.faults, b.crashes, w.rng.get_word_pos());
    for s in queue {
        match &s.ev {
            // A timer superseded since it was set does nothing: only live ones matter.
            Event::Timer { node, key, generation } => {
                let live = w.timers.get(&(*node, *key)) == Some(generation);
                let _ = write!(h, "T{:?}{node:?}{key:?}{live}", s.at);
            }
            ev => {
                let _ = write!(h, "E{:?}{ev:?}", s.at);
            }
        }
    }
    let _ = write!(
        h,
        "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{}",
        // The network's memory too: an ordered link delivers nothing before its last delivery.
        w.net,
        w.clients,
        w.cs,
        w.ds,
        w.apps,
        w.cons,
        w.journals,
        w.started,
        w.outcomes,
        w.epochs,
        w.stores,
        w.incs,
        w.client_incs,
        w.os,
        w.seen,
        w.admitted,
        w.prod_gateway,
        w.sent,
    );
    h.0.finish()
}

impl World<'_> {
    /// The nodes up now (a crash takes one of them).
    fn live_nodes(&self) -> Vec<Peer> {
        let mut nodes: Vec<Peer> =
            (0..self.clients.len()).filter(|n| self.clients[*n].is_some()).map(|n| Peer::Client(n as u32)).collect();
        for r in Role::ALL {
            if self.cs[super::nodes::role_index(r)].is_some() {
                nodes.push(Peer::ControlServer(r));
            }
            for (n, i) in self.ds_nodes(r) {
                if self.ds[i].is_some() {
                    nodes.push(Peer::DataServer(r, Node(n.0)));
                }
            }
        }
        nodes.extend((0..self.apps.len()).filter(|i| self.apps[*i].is_some()).map(|i| Peer::App(i as u32)));
        nodes
    }

    /// Takes the event queued as `seq` off the queue.
    fn take_queued(&mut self, seq: u64) -> Option<Scheduled> {
        let mut all = std::mem::take(&mut self.queue).into_vec();
        let i = all.iter().position(|Reverse(s)| s.seq == seq);
        let taken = i.map(|i| all.swap_remove(i).0);
        self.queue = all.into();
        taken
    }

    fn describe_choice(&self, c: Choice) -> String {
        let what = |seq: u64| {
            self.queue
                .iter()
                .find(|Reverse(s)| s.seq == seq)
                .map(|Reverse(s)| match &s.ev {
                    Event::Deliver { from, to, wire } => match wire {
                        super::Wire::Intact(m) => format!("{from} -> {to} {}", super::describe(m)),
                        super::Wire::Damaged(_) => format!("{from} -> {to} (damaged)"),
                    },
                    ev => format!("{ev:?}"),
                })
                .unwrap_or_default()
        };
        match c {
            Choice::Take(seq) => format!("[{}] {}", self.now, what(seq)),
            Choice::Lose(seq) => format!("[{}] LOSE {}", self.now, what(seq)),
            Choice::Duplicate(seq) => format!("[{}] DUPLICATE {}", self.now, what(seq)),
            Choice::Crash(node) => format!("[{}] CRASH {node}", self.now),
        }
    }

    /// Carries out a choice; `false` once the run is over.
    fn apply(&mut self, c: Choice, faults: &mut u32, crashes: &mut u32, bounds: Bounds) -> bool {
        match c {
            Choice::Take(seq) => match self.take_queued(seq) {
                Some(s) => self.run_event(s.at, s.ev),
                None => false,
            },
            Choice::Lose(seq) => {
                *faults -= 1;
                self.take_queued(seq);
                true
            }
            Choice::Duplicate(seq) => {
                *faults -= 1;
                if let Some(s) = self.take_queued(seq) {
                    self.schedule(s.at + ms(1), s.ev.clone());
                    self.queue.push(Reverse(s));
                }
                true
            }
            Choice::Crash(node) => {
                *crashes -= 1;
                self.crash(node, bounds.down_ms);
                true
            }
        }
    }

    /// How many steps the run takes on its own schedule.
    fn steps_to_end(mut self) -> u64 {
        self.boot();
        let mut n = 0;
        while self.step_event() {
            n += 1;
        }
        n
    }

    /// Runs on its own schedule to the end and checks the end of the run.
    fn finish_run(mut self) -> super::Outcome {
        while self.step_event() {}
        self.into_outcome_with(|_| Vec::new())
    }
}
