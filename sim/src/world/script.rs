//! The simulator as a library a researcher scripts: build a world from a scenario, step it or
//! run it to a time, crash and partition nodes at chosen moments, read the cores' state and the
//! trace, and add properties as data — a name, when it must hold, and a predicate over a
//! read-only [`View`] — without touching the execution code. The `sim` CLI runs every seed
//! through this same API (with no scripted properties).
//!
//! ```no_run
//! use std::time::Duration;
//! use scistream_sim::script::{Property, Sim};
//! use scistream_sim::{Scenario, world::Options};
//! use scistream_fsm::{Instant, Peer, Role, s2cs};
//!
//! let sc = Scenario::load("happy").unwrap();
//! let mut sim = Sim::new(&sc, Options { seed: 7, ..Options::default() })
//!     .with(Property::eventually("both-serving", |v| {
//!         Role::ALL.iter().all(|r| v.control_server(*r).is_some_and(|c| c.state() == s2cs::State::Serving))
//!     }));
//! sim.run_until(Instant::ZERO + Duration::from_secs(2));
//! sim.partition(&["s2cs/PROD"], &["s2ds/PROD"], Duration::from_secs(3));
//! let outcome = sim.finish();
//! assert!(outcome.violations.is_empty());
//! ```

use std::time::Duration;

use scistream_fsm::{Instant, Node, Peer, Role, s2cs, s2ds, s2uc};

use super::{Outcome, World};
use crate::check::Prop;
use crate::scenario::{Partition, Scenario};
use crate::world::Options;

/// When a scripted property must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// After every event.
    Always,
    /// At the end of the run, after the final release.
    Eventually,
    /// At least once during the run (reported in [`Outcome::scripted`]; a batch of runs
    /// decides whether that is enough).
    Sometimes,
}

/// A property as data: a name, when it must hold, and a predicate over the world's state.
pub struct Property {
    /// Its name in reports (a violation's [`Prop::Scripted`]).
    pub name: &'static str,
    /// When it must hold.
    pub when: When,
    /// Whether it holds now.
    pub check: Box<dyn Fn(&View<'_>) -> bool>,
}

impl Property {
    /// A property that must hold after every event.
    pub fn always(name: &'static str, check: impl Fn(&View<'_>) -> bool + 'static) -> Self {
        Self { name, when: When::Always, check: Box::new(check) }
    }

    /// A property that must hold at the end of the run.
    pub fn eventually(name: &'static str, check: impl Fn(&View<'_>) -> bool + 'static) -> Self {
        Self { name, when: When::Eventually, check: Box::new(check) }
    }

    /// A property the run should reach at least once.
    pub fn sometimes(name: &'static str, check: impl Fn(&View<'_>) -> bool + 'static) -> Self {
        Self { name, when: When::Sometimes, check: Box::new(check) }
    }
}

/// A read-only view of the simulated cluster, for properties and scripts.
pub struct View<'w> {
    w: &'w World<'w>,
}

impl View<'_> {
    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.w.now
    }

    /// The control server of the facility serving `role`, unless it is down.
    pub fn control_server(&self, role: Role) -> Option<&s2cs::ControlServer> {
        self.w.cs[crate::nodes::role_index(role)].as_ref()
    }

    /// The first data-server node of the facility serving `role`, unless it is down.
    pub fn data_server(&self, role: Role) -> Option<&s2ds::S2ds> {
        self.node(role, Node(0))
    }

    /// Data-server node `n` of the facility serving `role`, unless it is down or not there.
    pub fn node(&self, role: Role, n: Node) -> Option<&s2ds::S2ds> {
        if n.0 >= self.w.sc.nodes {
            return None;
        }
        self.w.ds[self.w.ds_index(role, n)].as_ref()
    }

    /// User client `n`, unless it is down.
    pub fn client(&self, n: u32) -> Option<&s2uc::S2uc> {
        self.w.clients.get(n as usize).and_then(Option::as_ref)
    }

    /// Sessions established so far (as their clients reported).
    pub fn established(&self) -> u32 {
        self.w.established
    }

    /// The ports bound right now on the hosts of the facility serving `role` (all its nodes),
    /// with the session holding each.
    pub fn bound_ports(&self, role: Role) -> impl Iterator<Item = (u16, scistream_fsm::Uid)> + '_ {
        self.w.ds_nodes(role).flat_map(|(_, i)| self.w.os[i].iter().map(|(p, u)| (*p, *u)))
    }
}

/// One run, driven step by step.
pub struct Sim<'a> {
    w: World<'a>,
    props: Vec<Property>,
    reached: Vec<bool>,
    failed: Vec<bool>,
}

impl<'a> Sim<'a> {
    /// The run of `sc` with `opts` (its seed), booted and ready to step.
    pub fn new(sc: &'a Scenario, opts: Options) -> Self {
        let mut w = World::new(sc, opts);
        w.boot();
        Self { w, props: Vec::new(), reached: Vec::new(), failed: Vec::new() }
    }

    /// Adds a property.
    pub fn with(mut self, p: Property) -> Self {
        self.add(p);
        self
    }

    /// Adds a property.
    pub fn add(&mut self, p: Property) {
        self.props.push(p);
        self.reached.push(false);
        self.failed.push(false);
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.w.now
    }

    /// The cluster's state.
    pub fn view(&self) -> View<'_> {
        View { w: &self.w }
    }

    /// The trace so far (recorded when [`Options::trace`] is set).
    pub fn trace(&self) -> &[String] {
        self.w.trace.as_deref().unwrap_or_default()
    }

    /// Processes the next event and checks the scripted properties; `false` once the run is over.
    pub fn step(&mut self) -> bool {
        let more = self.w.step_event();
        if more {
            self.check(|w| w != When::Eventually);
        }
        more
    }

    /// Processes every event up to `t`; the clock then reads `t` (or the end of the run).
    pub fn run_until(&mut self, t: Instant) {
        while self.w.next_at().is_some_and(|at| at <= t) {
            if !self.step() {
                break;
            }
        }
        self.w.now = self.w.now.max(t.min(self.w.end_at));
    }

    /// Crashes `node` now; it restarts with only its durable state after `down`.
    pub fn crash(&mut self, node: Peer, down: Duration) {
        let ms = u64::try_from(down.as_millis()).unwrap_or(u64::MAX);
        self.w.crash(node, ms);
    }

    /// Cuts every link between the nodes named in `a` and those in `b` (names or kinds, as in
    /// scenarios: `s2cs/PROD`, `s2ds`, `app#3`, …) from now for `lasting`.
    pub fn partition(&mut self, a: &[&str], b: &[&str], lasting: Duration) {
        let from_ms = self.w.now.as_micros() / 1000;
        let until_ms = from_ms.saturating_add(u64::try_from(lasting.as_millis()).unwrap_or(u64::MAX));
        let names = |g: &[&str]| g.iter().map(|s| (*s).to_string()).collect();
        self.w.note(|| format!("PARTITION {a:?} | {b:?} for {lasting:?}"));
        self.w.net.cut(Partition { a: names(a), b: names(b), from_ms, until_ms });
    }

    /// Runs to the end (the final release and its settling), checks the final and scripted
    /// properties, and returns what the run found.
    pub fn finish(mut self) -> Outcome {
        while self.step() {}
        let props = std::mem::take(&mut self.props);
        let reached = std::mem::take(&mut self.reached);
        let mut out = self.w.into_outcome_with(|w| {
            let view = View { w };
            props
                .iter()
                .filter(|p| p.when == When::Eventually)
                .filter(|p| !(p.check)(&view))
                .map(|p| p.name)
                .collect::<Vec<_>>()
        });
        out.scripted =
            props.iter().zip(&reached).filter(|(p, r)| p.when == When::Sometimes && **r).map(|(p, _)| p.name).collect();
        out
    }

    fn check(&mut self, which: impl Fn(When) -> bool) {
        let view = View { w: &self.w };
        let mut broken = Vec::new();
        for (i, p) in self.props.iter().enumerate() {
            if !which(p.when) {
                continue;
            }
            let holds = (p.check)(&view);
            match p.when {
                When::Sometimes => self.reached[i] |= holds,
                // The first breach of an always-property is reported; later ones repeat it.
                _ if !holds && !self.failed[i] => {
                    self.failed[i] = true;
                    broken.push(p.name);
                }
                _ => {}
            }
        }
        for name in broken {
            self.w.violate(Prop::Scripted(name), "scripted property broken".into());
        }
    }
}
