//! The consumer application's side: once the user hands it the consumer gateway's listeners
//! it opens its channels, streams, and is done when the session is released.
//!
//! Drive it: feed [`Input::Listeners`], then the outcome of the [`Effect::Connect`] it asks for
//! ([`Input::Connected`] or [`Input::ConnectFailed`]), and [`Input::Closed`] when the gateway
//! closes the channels.

use crate::alphabet;
use crate::effect::{Effect, Notice, Outbox};
use crate::error::ProtocolError;
use crate::types::{Addr, ErrorCode, Uid};

crate::alphabet! {
    /// States of the consumer application.
    pub enum State { Idle, Connecting, Streaming, Done, Failed }
}

crate::alphabet! {
    /// Inputs of the consumer application.
    pub enum Event { Listeners, Connected, ConnectFailed, Closed }
}

crate::alphabet! {
    /// Outputs of the consumer application.
    pub enum Action { Connect, ReportStreaming, ReportFailed }
}

#[allow(missing_docs, unreachable_pub)]
mod declaration {
    use rust_fsm::state_machine;
    state_machine! {
        #[state_machine(input(crate::cons_app::Event), state(crate::cons_app::State), output(crate::cons_app::Action))]
        pub cons_app(Idle)

        Idle(Listeners) => Connecting [Connect],
        Connecting => {
            Connected => Streaming [ReportStreaming],
            ConnectFailed => Failed [ReportFailed],
            Closed => Failed [ReportFailed],
        },
        Streaming(Closed) => Done,
    }
}

crate::declared_machine!(cons_app);

/// An input to the consumer application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The user handed over the consumer gateway's listeners.
    Listeners(Vec<Addr>),
    /// The channels are open.
    Connected,
    /// The channels could not be opened.
    ConnectFailed,
    /// The gateway closed the channels.
    Closed,
}

/// The consumer application's core (one session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsApp {
    uid: Uid,
    machine: Machine,
}

impl ConsApp {
    /// An idle consumer for session `uid`.
    pub fn new(uid: Uid) -> Self {
        Self { uid, machine: Machine::new() }
    }

    /// Its state.
    pub fn state(&self) -> State {
        *self.machine.state()
    }

    /// Steps the core.
    pub fn handle(&mut self, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        let uid = self.uid;
        let (event, listeners) = match input {
            Input::Listeners(l) => (Event::Listeners, l),
            Input::Connected => (Event::Connected, Vec::new()),
            Input::ConnectFailed => (Event::ConnectFailed, Vec::new()),
            Input::Closed => (Event::Closed, Vec::new()),
        };
        match alphabet::fire(&mut self.machine, event)? {
            Some(Action::Connect) => out.push(Effect::Connect { uid, listeners }),
            Some(Action::ReportStreaming) => out.push(Effect::Notify(Notice::Streaming { uid })),
            Some(Action::ReportFailed) => {
                out.push(Effect::Notify(Notice::Failed { uid, code: ErrorCode::Unavailable }))
            }
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
