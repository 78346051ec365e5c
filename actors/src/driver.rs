//! The one loop every actor runs around its core: step it with the clock's `now`, carry out
//! its timer effects on ractor's `send_after`, and hand the actor the effects that are its
//! own business (messages, listeners, answers). Timers run on tokio's clock, so tests can
//! pause it; a timer is a generation number per key, so a cancelled or replaced timer that
//! still fires is recognised and ignored.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use ractor::{ActorRef, Message};
use scistream_fsm::{Core, Effect, Instant, Outbox, ProtocolError, TimerKey};

/// A core, its clock and its armed timers, inside an actor whose messages are `M`.
#[derive(Debug)]
pub struct Driver<C, M> {
    core: C,
    origin: tokio::time::Instant,
    armed: BTreeMap<TimerKey, u64>,
    generation: u64,
    /// How a fired timer reaches the actor: `wrap(key, generation)`.
    wrap: fn(TimerKey, u64) -> M,
    /// The actor's name in logs.
    name: &'static str,
    /// Why the core refused the last input, if it did.
    refused: Option<ProtocolError>,
}

impl<C: Core, M: Message> Driver<C, M>
where
    C::Input: Debug,
{
    /// Drives `core`; fired timers come back to the actor as `wrap(key, generation)`.
    pub fn new(core: C, wrap: fn(TimerKey, u64) -> M, name: &'static str) -> Self {
        Self {
            core,
            origin: tokio::time::Instant::now(),
            armed: BTreeMap::new(),
            generation: 0,
            wrap,
            name,
            refused: None,
        }
    }

    /// The core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The core's `now`: microseconds since the actor started.
    pub fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Steps the core with `input`, arms and cancels its timers, and returns the rest of its
    /// effects in order. A refused input is logged (at debug: refusals are part of the
    /// protocol) and its effects (an ERROR for the sender) are returned all the same.
    pub fn step(&mut self, me: &ActorRef<M>, input: C::Input) -> Outbox {
        let mut out = Outbox::new();
        self.refused = self.core.step(self.now(), input, &mut out).err();
        if let Some(e) = &self.refused {
            tracing::debug!("{} refused an input: {e}", self.name);
        }
        out.retain(|effect| match effect {
            Effect::SetTimer { key, at } => {
                self.generation += 1;
                let generation = self.generation;
                self.armed.insert(*key, generation);
                let delay: Duration = at.saturating_since(self.now());
                let (key, wrap) = (*key, self.wrap);
                me.send_after(delay, move || wrap(key, generation));
                false
            }
            Effect::CancelTimer { key } => {
                self.armed.remove(key);
                false
            }
            _ => true,
        });
        out
    }

    /// Why the core refused the last input it was stepped with (`None`: it took it).
    pub fn refused(&self) -> Option<&ProtocolError> {
        self.refused.as_ref()
    }

    /// Whether a fired timer is still the armed one (and disarms it): only then feed it.
    pub fn fired(&mut self, key: TimerKey, generation: u64) -> bool {
        if self.armed.get(&key) == Some(&generation) {
            self.armed.remove(&key);
            true
        } else {
            false
        }
    }
}
