//! The flights under real threads; `models.rs` checks every interleaving of the same rules.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Wake, Waker};
use std::thread::Thread;

use super::*;

/// Wakes the thread that waits in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it is ready.
fn block_on<F: Future + Unpin>(mut fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = Pin::new(&mut fut).poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_second_joiner_follows_and_gets_the_leaders_answer() {
    let flights = Flights::new();
    let Join::Lead(leader) = flights.join("k") else { panic!("the first joiner leads") };
    let Join::Follow(mut follower) = flights.join("k") else { panic!("the second joiner follows") };
    assert!(poll_once(&mut follower).is_pending(), "no answer before the leader's");
    leader.complete(42);
    assert_eq!(poll_once(&mut follower), Poll::Ready(Some(42)));
}

#[test]
fn other_keys_fly_on_their_own() {
    let flights: Flights<&str, u32> = Flights::new();
    let (a, b) = (flights.join("a"), flights.join("b"));
    assert!(matches!(a, Join::Lead(_)) && matches!(b, Join::Lead(_)));
    assert_eq!(flights.in_flight(), 2);
}

#[test]
fn a_completed_flight_is_gone_so_the_next_joiner_asks_again() {
    let flights = Flights::new();
    let Join::Lead(leader) = flights.join(1) else { panic!("leads") };
    leader.complete("first");
    assert_eq!(flights.in_flight(), 0);
    assert!(matches!(flights.join(1), Join::Lead(_)), "nothing is cached here");
}

#[test]
fn a_leader_that_gives_up_releases_its_followers_to_ask_again() {
    let flights: Flights<u8, u32> = Flights::new();
    let Join::Lead(leader) = flights.join(1) else { panic!("leads") };
    let Join::Follow(mut follower) = flights.join(1) else { panic!("follows") };
    assert!(poll_once(&mut follower).is_pending());
    drop(leader);
    assert_eq!(poll_once(&mut follower), Poll::Ready(None));
    assert_eq!(flights.in_flight(), 0);
    assert!(matches!(flights.join(1), Join::Lead(_)), "the follower leads when it joins again");
}

#[test]
fn a_follower_that_gives_up_changes_nothing_for_the_others() {
    let flights = Flights::new();
    let Join::Lead(leader) = flights.join(1) else { panic!("leads") };
    let (Join::Follow(mut gone), Join::Follow(mut stays)) = (flights.join(1), flights.join(1)) else {
        panic!("both follow")
    };
    assert!(poll_once(&mut gone).is_pending() && poll_once(&mut stays).is_pending());
    assert_eq!(flights.joined(&1), 3, "the leader and both followers");
    drop(gone);
    assert_eq!(flights.joined(&1), 2, "the follower that gave up left");
    leader.complete(7);
    assert_eq!(flights.joined(&1), 0, "the flight is over");
    assert_eq!(poll_once(&mut stays), Poll::Ready(Some(7)));
}

#[test]
fn fifty_threads_joining_at_once_make_one_leader_and_all_see_its_answer() {
    const N: usize = 50;
    let flights: Arc<Flights<u8, usize>> = Arc::new(Flights::new());
    let (joined, leaders) = (Arc::new(Barrier::new(N)), Arc::new(AtomicUsize::new(0)));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let (flights, joined, leaders) = (flights.clone(), joined.clone(), leaders.clone());
            std::thread::spawn(move || match flights.join(9) {
                Join::Lead(leader) => {
                    leaders.fetch_add(1, Ordering::SeqCst);
                    // Every thread has joined before the answer is published.
                    joined.wait();
                    leader.complete(i);
                    i
                }
                Join::Follow(follower) => {
                    joined.wait();
                    block_on(follower).expect("the leader answers")
                }
            })
        })
        .collect();
    let answers: Vec<usize> = threads.into_iter().map(|t| t.join().expect("no panic")).collect();
    assert_eq!(leaders.load(Ordering::SeqCst), 1);
    assert!(answers.iter().all(|a| *a == answers[0]), "one answer for all: {answers:?}");
    assert_eq!(flights.in_flight(), 0);
}
