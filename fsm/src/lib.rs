//! # scistream-fsm — the SciStream protocol, pure
//!
//! This crate is the protocol and nothing else: domain types ([`types`]), the messages
//! ([`msg`]), and for every participant a state machine declared with rust-fsm's
//! `state_machine!` plus a sans-IO *core* that carries the data of each phase. No I/O, no
//! clock, no randomness, no async runtime: the actors (production) and the simulator drive the
//! very same cores.
//!
//! ## Driving a core
//!
//! 1. Build it with its config (`S2cs::new(..)`, …). Time is an [`Instant`] the driver passes
//!    in; randomness (app keys, credentials) arrives inside inputs.
//! 2. Feed it inputs with `core.handle(now, input, &mut out)`. `out` is an [`Outbox`]: the
//!    core pushes [`Effect`]s into it (send a message, set or cancel a timer, bind ports, start
//!    bridges, tell the user something) instead of doing them.
//! 3. Execute the effects in order. When a timer fires, feed `Input::Timer(..)` back.
//! 4. `handle` returns `Err(ProtocolError)` for an input its machine does not accept in the
//!    current state. Such an input leaves the state unchanged (it may still push a reply, e.g.
//!    an ERROR for the sender); it never panics.
//!
//! The machines: [`s2uc`] (per session at the user client), [`s2cs`] (the control server
//! itself), [`session`] (per session at a control server), [`s2ds`] (per session at a data
//! server), [`prod_app`] and [`cons_app`] (the application controllers). Their diagrams are
//! generated into `docs/fsm/*.mmd` by [`diagram`].
//!
//! The facility's [`policy`] — which addresses its gateway may dial, who may request what —
//! is pure data the control server's core consults before a session sees a call; each
//! decision that matters it also says as an [`audit`] record.

pub mod alphabet;
pub mod audit;
pub mod cons_app;
pub mod diagram;
pub mod effect;
pub mod error;
pub mod msg;
pub mod policy;
pub mod prod_app;
pub mod s2cs;
pub mod s2ds;
pub mod s2uc;
pub mod session;
pub mod step;
#[cfg(test)]
mod testkit;
pub mod time;
pub mod timing;
pub mod types;

pub use effect::{Effect, Notice, Outbox, TimerKey, TimerKind};
pub use error::ProtocolError;
pub use msg::{Msg, Token};
pub use step::Core;
pub use time::Instant;
pub use types::{
    Addr, AppKey, Credentials, ErrorCode, Face, Faces, Guard, Limit, Node, Peer, Pool, Principal, Role, SessionParams,
    Uid, Why,
};
