//! Why a wire message was refused.

use scistream_fsm::types::AddrError;

/// Why a wire message does not make a valid domain value. Every decode path returns the first
/// check that failed; a server answers it as `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes are not a protobuf encoding of the expected message.
    #[error("undecodable message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// An envelope without a body (its `oneof` is unset or has a case this build does not know).
    #[error("envelope has no body")]
    MissingBody,
    /// The uid is empty.
    #[error("uid is empty")]
    EmptyUid,
    /// The uid is not a UUID (the offending text, clipped).
    #[error("uid {0:?} is not a UUID")]
    MalformedUid(String),
    /// The role is neither `PROD` nor `CONS` (the offending text, clipped).
    #[error("role {0:?} is not PROD or CONS")]
    BadRole(String),
    /// The number of connections is outside `1..=max`.
    #[error("num_conn {got} is outside 1..={max}")]
    NumConnOutOfRange {
        /// The number received.
        got: i64,
        /// The largest number accepted.
        max: u16,
    },
    /// The rate is negative.
    #[error("rate {0} is negative")]
    NegativeRate(i32),
    /// An address is not a valid `host:port`.
    #[error(transparent)]
    BadAddr(#[from] AddrError),
    /// A port is outside `1..=65535`.
    #[error("port {0} is outside 1..=65535")]
    BadPort(u32),
    /// An app key is not 16 bytes long (its length).
    #[error("app key has {0} bytes (expected 16)")]
    KeyLength(usize),
    /// Data credentials are not 32 bytes long (their length).
    #[error("credentials have {0} bytes (expected 32)")]
    CredentialsLength(usize),
    /// The error code is `UNSPECIFIED` (zero, the value of a missing field).
    #[error("error code is unspecified")]
    UnspecifiedErrorCode,
    /// The error code is not one this build knows.
    #[error("error code {0} is unknown")]
    UnknownErrorCode(i32),
    /// An ERROR's explanation is not one this build knows, or its numbers are out of range.
    #[error("error explanation {0:?} is unknown or out of range")]
    BadWhy(String),
}
