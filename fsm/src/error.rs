//! The protocol error every core returns for an input it refuses.

use crate::types::{ErrorCode, Uid};

/// Why a core refused an input. The core's state is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The machine's declaration has no transition for this input in this state.
    #[error("{machine}: {input} is not allowed in state {state}")]
    NotAllowed {
        /// Machine name.
        machine: &'static str,
        /// Current state.
        state: &'static str,
        /// Refused input.
        input: &'static str,
    },
    /// A request was refused with an ERROR to its sender.
    #[error("session {uid}: refused: {code}")]
    Refused {
        /// Session.
        uid: Uid,
        /// The code sent back.
        code: ErrorCode,
    },
    /// The message belongs to an earlier epoch, incarnation or phase and was dropped.
    #[error("stale {0} dropped")]
    Stale(&'static str),
    /// The message concerns a session this participant does not hold.
    #[error("unknown session {0}")]
    UnknownSession(Uid),
    /// The message is not one this participant ever receives.
    #[error("{0} is not addressed to this participant")]
    Misdirected(&'static str),
}
