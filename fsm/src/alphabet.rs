//! The alphabets of our machines: fieldless enums that list their members, so a machine's
//! whole transition table can be enumerated (for diagrams and exhaustive tests), plus the one
//! way every core steps its machine ([`fire`]).

use rust_fsm::StateMachineImpl;

use crate::error::ProtocolError;

/// A finite alphabet: every member listed, each with a stable name.
pub trait Alphabet: Copy + Eq + std::fmt::Debug + 'static {
    /// Every member, in declaration order.
    const ALL: &'static [Self];
    /// The member's name as declared.
    fn name(self) -> &'static str;
}

/// A declared machine: its name and its alphabets.
pub trait Machine: StateMachineImpl<State = Self::S, Input = Self::I, Output = Self::O> {
    /// The machine's name (file name of its diagram).
    const NAME: &'static str;
    /// State alphabet.
    type S: Alphabet;
    /// Input alphabet.
    type I: Alphabet;
    /// Output alphabet.
    type O: Alphabet;
}

/// Declares a fieldless enum that implements [`Alphabet`].
#[macro_export]
macro_rules! alphabet {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        // Members are the words of a machine's declaration; its module doc and diagram say
        // what each means, so a doc line per member would only repeat the name.
        #[allow(missing_docs)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::alphabet::Alphabet for $name {
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn name(self) -> &'static str {
                match self { $(Self::$variant => stringify!($variant)),+ }
            }
        }
    };
}

/// A machine instance: the current state of a declared machine `M`.
pub struct Fsm<M: Machine> {
    state: M::S,
}

impl<M: Machine> Fsm<M> {
    /// A machine in its declared initial state.
    pub fn new() -> Self {
        Self { state: M::INITIAL_STATE }
    }

    /// The current state.
    pub fn state(&self) -> &M::S {
        &self.state
    }
}

impl<M: Machine> Default for Fsm<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Machine> Clone for Fsm<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Machine> Copy for Fsm<M> {}

impl<M: Machine> PartialEq for Fsm<M> {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl<M: Machine> Eq for Fsm<M> {}

impl<M: Machine> std::fmt::Debug for Fsm<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", M::NAME, self.state.name())
    }
}

/// Names a `state_machine!` declaration made in the calling module's private `declaration`
/// module over its `State`, `Event` and `Action` alphabets: defines `Declaration` (the
/// transition and output functions), `Machine` (an instance) and implements [`Machine`].
#[macro_export]
macro_rules! declared_machine {
    ($name:ident) => {
        /// The declaration: `state_machine!`'s transition and output functions.
        pub type Declaration = declaration::$name::Impl;

        /// An instance of the declared machine.
        pub type Machine = $crate::alphabet::Fsm<Declaration>;

        impl $crate::alphabet::Machine for Declaration {
            const NAME: &'static str = stringify!($name);
            type S = State;
            type I = Event;
            type O = Action;
        }
    };
}

/// Feeds `input` to `machine`. On success returns the declared output of the transition;
/// an input the declaration does not allow in the current state is a
/// [`ProtocolError::NotAllowed`] and leaves the state unchanged.
pub fn fire<M: Machine>(machine: &mut Fsm<M>, input: M::I) -> Result<Option<M::O>, ProtocolError> {
    let Some(next) = M::transition(&machine.state, &input) else {
        return Err(ProtocolError::NotAllowed { machine: M::NAME, state: machine.state.name(), input: input.name() });
    };
    let output = M::output(&machine.state, &input);
    machine.state = next;
    Ok(output)
}

/// Whether the declaration has a transition for `input` in the machine's current state.
pub fn allows<M: Machine>(machine: &Fsm<M>, input: M::I) -> bool {
    M::transition(&machine.state, &input).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s2ds::{Action, Declaration, Event, State};

    #[test]
    fn fire_on_a_not_allowed_input_returns_not_allowed_with_its_names_and_keeps_the_state() {
        let mut m = Fsm::<Declaration>::new();
        let err = fire(&mut m, Event::StartConn).unwrap_err();
        assert_eq!(err, ProtocolError::NotAllowed { machine: "s2ds", state: "Idle", input: "StartConn" });
        assert_eq!(err.to_string(), "s2ds: StartConn is not allowed in state Idle");
        assert_eq!(*m.state(), State::Idle);
        assert!(!allows(&m, Event::StartConn));

        assert_eq!(fire(&mut m, Event::StartLstn), Ok(Some(Action::Listen)));
        assert_eq!(fire(&mut m, Event::Rel), Ok(Some(Action::Unlisten)));
        let err = fire(&mut m, Event::BridgesUp).unwrap_err();
        assert_eq!(err, ProtocolError::NotAllowed { machine: "s2ds", state: "Released", input: "BridgesUp" });
        assert_eq!(*m.state(), State::Released);
    }

    #[test]
    fn fire_on_an_allowed_input_without_output_moves_and_returns_none() {
        let mut m = Fsm::<Declaration>::new();
        fire(&mut m, Event::StartLstn).unwrap();
        assert!(allows(&m, Event::StartLstn));
        assert_eq!(fire(&mut m, Event::StartLstn), Ok(None));
        assert_eq!(*m.state(), State::Binding);
        assert_eq!(format!("{m:?}"), "s2ds::Binding");
    }
}
