//! A control server as one synchronous unit: its core and its sessions' cores, each effect of
//! one routed to the other until only effects for the outside world remain. The simulator,
//! the unit tests and the property tests drive this; production hosts the same cores in
//! separate actors (the control server's and one per session) and routes the same effects
//! as messages.

use std::collections::BTreeMap;

use crate::effect::{Effect, Outbox};
use crate::error::ProtocolError;
use crate::session::{self, Session};
use crate::time::Instant;
use crate::types::Uid;

use super::{Config, Input, S2cs, State};

/// A control server's core with its sessions' cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlServer {
    core: S2cs,
    sessions: BTreeMap<Uid, Session>,
    /// The effects being routed during a step; always empty between steps (so it changes
    /// neither equality nor clones), kept to spare an allocation per step.
    pending: Outbox,
}

impl ControlServer {
    /// A fresh control server whose boot epoch is `epoch`.
    pub fn new(cfg: Config, epoch: u64) -> Self {
        Self::recover(cfg, epoch, Vec::new())
    }

    /// A restarted control server with what its durable store held ([`S2cs::recover`]).
    pub fn recover(cfg: Config, epoch: u64, records: Vec<super::Record>) -> Self {
        Self { core: S2cs::recover(cfg, epoch, records), sessions: BTreeMap::new(), pending: Outbox::new() }
    }

    /// The control server's own core (its registry).
    pub fn core(&self) -> &S2cs {
        &self.core
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        self.core.config()
    }

    /// Its own state.
    pub fn state(&self) -> State {
        self.core.state()
    }

    /// The session cores it hosts (live and remembered).
    pub fn sessions(&self) -> &BTreeMap<Uid, Session> {
        &self.sessions
    }

    /// One session's core.
    pub fn session(&self, uid: &Uid) -> Option<&Session> {
        self.sessions.get(uid)
    }

    /// Steps the control server: `input` goes to its core, or to a session's core for a
    /// session's timer; then every effect that one core asks of another is carried out, in
    /// order, and the rest is pushed to `out`. Returns the first refusal of any core.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        // One buffer for every core's effects: what one core asks of another is carried out in
        // order, the rest goes to `out`.
        let mut pending = std::mem::take(&mut self.pending);
        let mut result = match input {
            Input::Timer(crate::TimerKey { uid: Some(uid), kind }) => {
                self.step_session(now, uid, session::Input::Timer(kind), &mut pending)
            }
            other => self.core.handle(now, other, &mut pending),
        };
        let mut next = 0;
        while next < pending.len() {
            // Effects are taken in order; a step appends its own at the end.
            let effect = std::mem::replace(&mut pending[next], Effect::Retire { uid: Uid::from_u128(0) });
            next += 1;
            let r = match effect {
                Effect::Spawn(s) => {
                    self.sessions.insert(s.uid(), *s);
                    Ok(())
                }
                Effect::ToSession { uid, input } => self.step_session(now, uid, input, &mut pending),
                Effect::Report { uid, report } => self.core.handle(now, Input::Report { uid, report }, &mut pending),
                Effect::Retire { uid } => {
                    self.sessions.remove(&uid);
                    Ok(())
                }
                other => {
                    out.push(other);
                    Ok(())
                }
            };
            if result.is_ok() {
                result = r;
            }
        }
        pending.clear();
        self.pending = pending;
        result
    }

    fn step_session(
        &mut self,
        now: Instant,
        uid: Uid,
        input: session::Input,
        pending: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
        s.handle(now, input, pending)
    }
}
