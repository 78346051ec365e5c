//! Core timers on ractor's `send_after`, on tokio's clock (so tests can pause it): a timer is a generation number per key, so a
//! cancelled or replaced timer that still fires is recognised and ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use ractor::{ActorRef, Message};
use scistream_fsm::{Instant, TimerKey};

/// The core clock (microseconds since the actor started) and its armed timers.
#[derive(Debug)]
pub(crate) struct Timers {
    origin: tokio::time::Instant,
    armed: BTreeMap<TimerKey, u64>,
    generation: u64,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Self { origin: tokio::time::Instant::now(), armed: BTreeMap::new(), generation: 0 }
    }

    /// The core's `now`.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Arms `key` to deliver `wrap(key, generation)` to `actor` at `at`.
    pub(crate) fn set<M: Message>(
        &mut self,
        actor: &ActorRef<M>,
        key: TimerKey,
        at: Instant,
        wrap: fn(TimerKey, u64) -> M,
    ) {
        self.generation += 1;
        let generation = self.generation;
        self.armed.insert(key, generation);
        let delay: Duration = at.saturating_since(self.now());
        actor.send_after(delay, move || wrap(key, generation));
    }

    pub(crate) fn cancel(&mut self, key: TimerKey) {
        self.armed.remove(&key);
    }

    /// Whether a fired timer is still the armed one (and disarms it).
    pub(crate) fn fire(&mut self, key: TimerKey, generation: u64) -> bool {
        if self.armed.get(&key) == Some(&generation) {
            self.armed.remove(&key);
            true
        } else {
            false
        }
    }
}
