//! The calls waiting on a session, and the one rule that decides what each is answered.

use crate::effect::{Effect, Outbox};
use crate::msg::Msg;
use crate::types::{ErrorCode, Peer, Role, Why};

use super::{Session, State};

/// At most this many calls wait on one session; a newer call evicts the oldest, which is
/// answered UNAVAILABLE (transient: its client tries again).
pub const MAX_WAITERS: usize = 16;

/// What a waiting call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A REQ: answered with the listeners (RESP).
    Req,
    /// An UpdateTargets: answered once the bridges are up (Updated).
    Update,
    /// A REL: answered once everything is released (Released).
    Rel,
    /// A controller's Hello: answered with the listeners (HelloAck).
    Hello,
}

/// A call waiting on a session for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Waiter {
    /// Who called.
    pub from: Peer,
    /// The call's sequence number, echoed by its answer.
    pub seq: u32,
    /// What it asked for.
    pub kind: Kind,
}

impl Session {
    /// Makes `waiter` wait (once: an identical retransmission does not wait twice).
    pub(super) fn wait(&mut self, waiter: Waiter, out: &mut Outbox) {
        if self.waiters.contains(&waiter) {
            return;
        }
        if self.waiters.len() >= MAX_WAITERS {
            let old = self.waiters.remove(0);
            self.answer(old, Err(ErrorCode::Unavailable), out);
        }
        self.waiters.push(waiter);
    }

    /// Answers every waiting call that the session's state and data answer now; the others
    /// keep waiting.
    pub(super) fn settle(&mut self, out: &mut Outbox) {
        if self.waiters.is_empty() {
            return;
        }
        let state = self.state();
        let failure = self.failure.unwrap_or(ErrorCode::Aborted);
        let producer = self.setup.params.role == Role::Prod;
        let listening = !self.listeners.is_empty();
        let waiters = std::mem::take(&mut self.waiters);
        for w in waiters {
            let answer = match (state, w.kind) {
                // Over: every call gets its verdict.
                (State::Released | State::Failed, Kind::Rel) => Some(Ok(())),
                (State::Released | State::Failed, _) => Some(Err(failure)),
                // A failure being cleaned up: the REL waits for the data server, nothing else.
                (State::Aborting, Kind::Rel) | (State::Releasing, _) => None,
                (State::Aborting, _) => Some(Err(failure)),
                // A producer's REQ is answered once the producer's Hello is in (as 1.2 does).
                (_, Kind::Req) => (listening && (!producer || !self.prod_listeners.is_empty())).then_some(Ok(())),
                (_, Kind::Hello) => listening.then_some(Ok(())),
                (State::Established, Kind::Update) => Some(Ok(())),
                (_, Kind::Update | Kind::Rel) => None,
            };
            match answer {
                Some(a) => self.answer(w, a, out),
                None => self.waiters.push(w),
            }
        }
    }

    /// Sends `waiter` its answer: the success its kind calls for, or an ERROR.
    fn answer(&self, waiter: Waiter, answer: Result<(), ErrorCode>, out: &mut Outbox) {
        let (uid, seq) = (self.setup.uid, waiter.seq);
        let msg = match (answer, waiter.kind) {
            (Err(code), _) => {
                Msg::Error { uid, seq, code, why: if self.failure == Some(code) { self.why } else { Why::Unspecified } }
            }
            (Ok(()), Kind::Req) => {
                Msg::Resp { uid, seq, listeners: self.listeners.clone(), prod_listeners: self.prod_listeners.clone() }
            }
            (Ok(()), Kind::Update) => Msg::Updated { uid, seq },
            (Ok(()), Kind::Rel) => Msg::Released { uid, seq },
            (Ok(()), Kind::Hello) => Msg::HelloAck { uid, seq, listeners: self.listeners.clone() },
        };
        out.push(Effect::Send { to: waiter.from, msg });
    }

    /// Answers one call at once with an ERROR, without making it wait.
    pub(super) fn refuse(&self, from: Peer, seq: u32, code: ErrorCode, why: Why, out: &mut Outbox) {
        out.push(Effect::Send { to: from, msg: Msg::Error { uid: self.setup.uid, seq, code, why } });
    }
}
