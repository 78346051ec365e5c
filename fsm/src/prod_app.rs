//! The producer application's controller (`appctrl` on the producer side): says Hello to the
//! producer facility's control server with the session's uid, app key and the producer's
//! listening addresses, until the server acknowledges.
//!
//! Drive it: feed [`Input::Start`] once the user handed over the uid and key, every answer as
//! [`Input::Msg`] and every fired timer as [`Input::Timer`]. NOT_FOUND and UNAVAILABLE answers
//! are retried (the REQ may still be on its way to the server); any other ERROR, or the
//! deadline, fails the controller.

use crate::alphabet;
use crate::effect::{Effect, Notice, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::time::Instant;
use crate::timing::{self, Profile};
use crate::types::{Addr, AppKey, ErrorCode, Peer, Role, Uid};

crate::alphabet! {
    /// States of the producer's controller.
    pub enum State { Idle, Greeting, Ready, Failed }
}

crate::alphabet! {
    /// Inputs of the producer's controller.
    pub enum Event {
        /// The user handed over the session.
        Start,
        /// The server accepted the Hello.
        Ack,
        /// The server does not know the session yet, or is busy: say Hello again later.
        NotYet,
        /// The server refused the Hello for good.
        Refused,
        /// The controller's deadline passed.
        Deadline,
    }
}

crate::alphabet! {
    /// Outputs of the producer's controller.
    pub enum Action { SendHello, ReportReady, ReportFailed }
}

#[allow(missing_docs, unreachable_pub)]
mod declaration {
    use rust_fsm::state_machine;
    state_machine! {
        #[state_machine(input(crate::prod_app::Event), state(crate::prod_app::State), output(crate::prod_app::Action))]
        pub prod_app(Idle)

        Idle(Start) => Greeting [SendHello],
        Greeting => {
            Ack => Ready [ReportReady],
            NotYet => Greeting,
            Refused => Failed [ReportFailed],
            Deadline => Failed [ReportFailed],
        },
        Ready(Ack) => Ready,
    }
}

crate::declared_machine!(prod_app);

/// Controller configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The timing: Hello retransmission (`app_backoff`) and how long to keep saying Hello
    /// (`hello_deadline`).
    pub timing: Profile,
}

/// An input to the producer's controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The user handed over the session.
    Start {
        /// Session.
        uid: Uid,
        /// Its app key.
        key: AppKey,
        /// Where the producer listens.
        prod_listeners: Vec<Addr>,
    },
    /// An answer arrived.
    Msg {
        /// Sender.
        from: Peer,
        /// The message.
        msg: Msg,
    },
    /// A timer fired.
    Timer(TimerKey),
}

/// The producer controller's core (one session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProdApp {
    cfg: Config,
    machine: Machine,
    session: Option<(Uid, AppKey, Vec<Addr>)>,
    seq: u32,
    /// The gateway's listeners from the ack.
    listeners: Vec<Addr>,
    failure: Option<ErrorCode>,
}

impl ProdApp {
    /// An idle controller.
    pub fn new(cfg: Config) -> Self {
        Self { cfg, machine: Machine::new(), session: None, seq: 0, listeners: Vec::new(), failure: None }
    }

    /// Its state.
    pub fn state(&self) -> State {
        *self.machine.state()
    }

    /// The gateway's listeners, once acknowledged.
    pub fn listeners(&self) -> &[Addr] {
        &self.listeners
    }

    /// Why it failed, if it did.
    pub fn failure(&self) -> Option<ErrorCode> {
        self.failure
    }

    /// Steps the core.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        match input {
            Input::Start { uid, key, prod_listeners } => {
                alphabet::fire(&mut self.machine, Event::Start)?;
                self.session = Some((uid, key, prod_listeners));
                out.push(Effect::SetTimer {
                    key: key_of(uid, TimerKind::Deadline),
                    at: now + self.cfg.timing.hello_deadline(),
                });
                self.send_hello(now, out);
                Ok(())
            }
            Input::Timer(key) => match key.kind {
                TimerKind::Retransmit if self.state() == State::Greeting => {
                    self.send_hello(now, out);
                    Ok(())
                }
                TimerKind::Deadline => {
                    alphabet::fire(&mut self.machine, Event::Deadline)?;
                    self.fail(ErrorCode::DeadlineExceeded, out);
                    Ok(())
                }
                _ => Err(ProtocolError::Stale("timer")),
            },
            Input::Msg { from, msg } => {
                if from != Peer::ControlServer(Role::Prod) {
                    return Err(ProtocolError::Misdirected(msg.name()));
                }
                let Some((uid, ..)) = self.session else { return Err(ProtocolError::Stale(msg.name())) };
                if msg.uid() != Some(uid) {
                    return Err(ProtocolError::UnknownSession(msg.uid().unwrap_or(uid)));
                }
                match msg {
                    Msg::HelloAck { listeners, .. } => {
                        if alphabet::fire(&mut self.machine, Event::Ack)? == Some(Action::ReportReady) {
                            self.listeners = listeners.clone();
                            for kind in [TimerKind::Retransmit, TimerKind::Deadline] {
                                out.push(Effect::CancelTimer { key: key_of(uid, kind) });
                            }
                            out.push(Effect::Notify(Notice::Ready { uid, listeners }));
                        }
                        Ok(())
                    }
                    Msg::Error { code: ErrorCode::NotFound | ErrorCode::Unavailable, .. } => {
                        alphabet::fire(&mut self.machine, Event::NotYet).map(|_| ())
                    }
                    Msg::Error { code, .. } => {
                        alphabet::fire(&mut self.machine, Event::Refused)?;
                        self.fail(code, out);
                        Ok(())
                    }
                    other => Err(ProtocolError::Misdirected(other.name())),
                }
            }
        }
    }

    fn send_hello(&mut self, now: Instant, out: &mut Outbox) {
        let Some((uid, key, prod_listeners)) = &self.session else { return };
        self.seq += 1;
        let msg = Msg::Hello { uid: *uid, seq: self.seq, key: *key, prod_listeners: prod_listeners.clone() };
        out.push(Effect::Send { to: Peer::ControlServer(Role::Prod), msg });
        out.push(Effect::SetTimer {
            key: key_of(*uid, TimerKind::Retransmit),
            at: now
                + self.cfg.timing.app_backoff.delay(self.seq, timing::salt(self.cfg.timing.jitter_seed, Some(*uid))),
        });
    }

    fn fail(&mut self, code: ErrorCode, out: &mut Outbox) {
        let Some((uid, ..)) = self.session else { return };
        self.failure = Some(code);
        for kind in [TimerKind::Retransmit, TimerKind::Deadline] {
            out.push(Effect::CancelTimer { key: key_of(uid, kind) });
        }
        out.push(Effect::Notify(Notice::Failed { uid, code }));
    }
}

fn key_of(uid: Uid, kind: TimerKind) -> TimerKey {
    TimerKey { uid: Some(uid), kind }
}

#[cfg(test)]
mod tests;
