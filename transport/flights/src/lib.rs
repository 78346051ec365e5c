//! # scistream-flights — one question in flight per key
//!
//! [`Flights`] coalesces concurrent askers of the same key: the first to [`join`](Flights::join)
//! a key becomes its [`Leader`] and asks; everyone who joins while the leader has not finished
//! gets a [`Follower`], a future that resolves to the leader's answer. `s2cs` uses it so that
//! fifty calls carrying one uncached token cost one introspection, not fifty.
//!
//! The contract:
//! - at most one leader per key at a time: a key's entry exists from its leader's `join` until
//!   that leader finishes, and `join` finds it under the same lock that inserts it;
//! - [`Leader::complete`] publishes the answer to every follower of its flight and removes the
//!   entry, so whoever joins afterwards leads a new flight (this type caches nothing: an answer
//!   worth keeping is the caller's to keep before it completes);
//! - a leader dropped without completing (its caller gave up) abandons the flight: the entry is
//!   removed and every follower resolves to `None`, so they join again and one of them leads;
//!   no follower is stranded waiting for a leader that is gone;
//! - a follower dropped while waiting changes nothing for the others.
//!
//! The shared state is two levels of plain mutexes (the map, then each flight's slot; always
//! taken in that order) and the followers' wakers. Its synchronisation primitives come from
//! `std`, or from [loom](https://docs.rs/loom) when built with `--cfg loom`, whose model checker
//! explores every interleaving of the tests in `models.rs`:
//! `RUSTFLAGS="--cfg loom" cargo test -p scistream-flights --release loom`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use sync::{Arc, Mutex, MutexGuard};

/// The primitives the shared state is made of: loom's under `--cfg loom` (tests only), so its
/// model checker sees every access; `std`'s otherwise.
mod sync {
    #[cfg(all(test, loom))]
    pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
    #[cfg(not(all(test, loom)))]
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
}

/// A lock that a panicking holder did not spoil: every critical section below leaves the state
/// whole before anything that could panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The flights in progress, one per key (see the crate's documentation).
pub struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

impl<K, V> std::fmt::Debug for Flights<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights").field("in_flight", &lock(&self.map).len()).finish()
    }
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }
}

/// Where one flight's answer is published.
struct Slot<V> {
    state: Mutex<State<V>>,
}

enum State<V> {
    /// The leader is asking; the followers' wakers (a departed follower leaves `None`).
    Waiting(Vec<Option<Waker>>),
    /// The leader's answer.
    Done(V),
    /// The leader gave up without an answer.
    Abandoned,
}

/// What [`Flights::join`] made of the caller.
#[must_use = "a leader that is dropped abandons its flight"]
pub enum Join<'a, K: Eq + Hash, V> {
    /// No flight for the key was in progress: ask, then [`Leader::complete`].
    Lead(Leader<'a, K, V>),
    /// A flight was in progress: await its answer.
    Follow(Follower<V>),
}

impl<K: Eq + Hash + Clone, V> Flights<K, V> {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the flight for `key`, leading a new one when none is in progress.
    pub fn join(&self, key: K) -> Join<'_, K, V> {
        let mut map = lock(&self.map);
        if let Some(slot) = map.get(&key) {
            return Join::Follow(Follower { slot: slot.clone(), seat: None });
        }
        let slot = Arc::new(Slot { state: Mutex::new(State::Waiting(Vec::new())) });
        map.insert(key.clone(), slot.clone());
        Join::Lead(Leader { flights: self, key: Some(key), slot })
    }

    /// How many flights are in progress.
    pub fn in_flight(&self) -> usize {
        lock(&self.map).len()
    }

    /// How many callers are in the flight for `key`, its leader included (0: none in progress).
    pub fn joined(&self, key: &K) -> usize {
        // The map's reference, the leader's and one per follower still waiting.
        lock(&self.map).get(key).map_or(0, |slot| Arc::strong_count(slot) - 1)
    }
}

/// The one caller of a flight that asks. Dropping it without [`complete`](Self::complete)
/// abandons the flight (its followers resolve to `None`).
pub struct Leader<'a, K: Eq + Hash, V> {
    flights: &'a Flights<K, V>,
    /// `None` once finished.
    key: Option<K>,
    slot: Arc<Slot<V>>,
}

impl<K: Eq + Hash, V> Leader<'_, K, V> {
    /// Publishes `answer` to the flight's followers and ends the flight.
    pub fn complete(mut self, answer: V) {
        self.finish(State::Done(answer));
    }

    fn finish(&mut self, end: State<V>) {
        let Some(key) = self.key.take() else { return };
        let waiting = {
            let mut map = lock(&self.flights.map);
            // Published before the entry goes, both under the map's lock: a caller joining now
            // either follows this flight and finds the answer there, or finds no entry and
            // leads a new flight.
            let waiting = match std::mem::replace(&mut *lock(&self.slot.state), end) {
                State::Waiting(w) => w,
                State::Done(_) | State::Abandoned => Vec::new(),
            };
            // Only this leader removes its entry, so the entry is still this flight's.
            if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
                map.remove(&key);
            }
            waiting
        };
        // Woken outside the locks: a waker may run its task's poll right here.
        for waker in waiting.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl<K: Eq + Hash, V> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        self.finish(State::Abandoned);
    }
}

/// A caller waiting for another's answer: resolves to `Some(answer)`, or to `None` when the
/// leader gave up (join again).
pub struct Follower<V> {
    slot: Arc<Slot<V>>,
    /// Where this follower's waker sits in the slot, once registered.
    seat: Option<usize>,
}

impl<V: Clone> Future for Follower<V> {
    type Output = Option<V>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<V>> {
        let this = &mut *self;
        let mut state = lock(&this.slot.state);
        match &mut *state {
            State::Done(answer) => Poll::Ready(Some(answer.clone())),
            State::Abandoned => Poll::Ready(None),
            State::Waiting(wakers) => {
                let waker = Some(cx.waker().clone());
                match this.seat {
                    Some(seat) => wakers[seat] = waker,
                    None => {
                        this.seat = Some(wakers.len());
                        wakers.push(waker);
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<V> Drop for Follower<V> {
    fn drop(&mut self) {
        if let Some(seat) = self.seat
            && let State::Waiting(wakers) = &mut *lock(&self.slot.state)
        {
            wakers[seat] = None;
        }
    }
}

#[cfg(all(test, loom))]
mod models;
#[cfg(all(test, not(loom)))]
mod tests;
