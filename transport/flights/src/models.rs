//! The flights' shared state under loom's model checker: every interleaving of a few threads
//! joining, completing and giving up. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p scistream-flights --release loom` (seconds).
//!
//! Each test states a rule of the crate's contract. Breaking the coalescing (letting `join`
//! lead without looking for the key's entry) fails the first test.

use loom::sync::{Arc, Condvar};
use loom::thread;

use super::*;

/// Runs `f` under loom's model checker: every interleaving with up to three preemptions
/// (loom's advice: bugs need few; the run stays within seconds).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Counts the threads that have joined; lets a leader wait for all of them.
#[derive(Default)]
struct Gate {
    joined: Mutex<usize>,
    all_in: Condvar,
}

impl Gate {
    fn arrive(&self) {
        *lock(&self.joined) += 1;
        self.all_in.notify_all();
    }

    fn wait_for(&self, all: usize) {
        let mut joined = lock(&self.joined);
        while *joined < all {
            joined = self.all_in.wait(joined).unwrap();
        }
    }
}

/// Joins key 1; a leader waits until `all` threads have joined (so every join happens while
/// the flight is live), then answers `me`. Returns whether it led, and the answer it saw.
fn join_and_answer(flights: &Flights<u8, usize>, gate: &Gate, all: usize, me: usize) -> (bool, Option<usize>) {
    match flights.join(1) {
        Join::Lead(leader) => {
            gate.arrive();
            gate.wait_for(all);
            leader.complete(me);
            (true, Some(me))
        }
        Join::Follow(follower) => {
            gate.arrive();
            (false, loom::future::block_on(follower))
        }
    }
}

#[test]
fn loom_concurrent_joiners_make_exactly_one_leader_whose_answer_every_follower_sees() {
    model(|| {
        const N: usize = 2;
        let flights = Arc::new(Flights::new());
        let joined = Arc::new(Gate::default());
        let threads: Vec<_> = (0..N)
            .map(|me| {
                let (flights, joined) = (flights.clone(), joined.clone());
                thread::spawn(move || join_and_answer(&flights, &joined, N, me))
            })
            .collect();
        let seen: Vec<(bool, Option<usize>)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let leaders: Vec<usize> = seen.iter().filter(|(led, _)| *led).filter_map(|(_, a)| *a).collect();
        assert_eq!(leaders.len(), 1, "one leader among concurrent joiners: {seen:?}");
        assert!(seen.iter().all(|(_, a)| *a == Some(leaders[0])), "every follower sees the leader's answer: {seen:?}");
        // The entry went with the completion: a later caller asks again.
        assert_eq!(flights.in_flight(), 0);
        assert!(matches!(flights.join(1), Join::Lead(_)), "a later join leads a new flight");
    });
}

#[test]
fn loom_joins_racing_a_completion_each_get_an_answer_of_some_leader() {
    model(|| {
        let flights: Arc<Flights<u8, usize>> = Arc::new(Flights::new());
        let threads: Vec<_> = (0..2)
            .map(|me| {
                let flights = flights.clone();
                thread::spawn(move || match flights.join(1) {
                    Join::Lead(leader) => {
                        leader.complete(me);
                        (true, me)
                    }
                    Join::Follow(follower) => (false, loom::future::block_on(follower).expect("no leader gives up")),
                })
            })
            .collect();
        let seen: Vec<(bool, usize)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Either both led one after the other, or one followed the other's flight.
        for (led, answer) in &seen {
            assert!(seen.iter().any(|(l, a)| *l && a == answer), "{led}: {answer} is a leader's answer: {seen:?}");
        }
        assert_eq!(flights.in_flight(), 0);
    });
}

#[test]
fn loom_a_leader_that_gives_up_strands_no_follower() {
    model(|| {
        let flights: Arc<Flights<u8, usize>> = Arc::new(Flights::new());
        let quitter = {
            let flights = flights.clone();
            thread::spawn(move || match flights.join(1) {
                // Its caller gave up: the leader is dropped without an answer.
                Join::Lead(leader) => drop(leader),
                Join::Follow(follower) => assert_eq!(loom::future::block_on(follower), Some(7)),
            })
        };
        let asker = {
            let flights = flights.clone();
            thread::spawn(move || {
                loop {
                    match flights.join(1) {
                        Join::Lead(leader) => {
                            leader.complete(7);
                            return 7;
                        }
                        Join::Follow(follower) => {
                            if let Some(answer) = loom::future::block_on(follower) {
                                return answer;
                            }
                        }
                    }
                }
            })
        };
        quitter.join().unwrap();
        assert_eq!(asker.join().unwrap(), 7, "the one still asking gets its own answer");
        assert_eq!(flights.in_flight(), 0);
    });
}
