//! Error codes as gRPC status codes (1.2 answered every error as `UNKNOWN`).

use scistream_fsm::ErrorCode;
use tonic::{Code, Status};

use crate::WireError;

/// The gRPC status code an error is answered with; each domain code has its own.
pub fn status_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Aborted => Code::Aborted,
        ErrorCode::Unimplemented => Code::Unimplemented,
    }
}

/// The domain code of a gRPC status code, for the codes [`status_code`] produces; `None` for
/// the others (`OK`, `UNKNOWN`, `INTERNAL`, …), which a client treats as a failure of the
/// server rather than an answer of the protocol.
pub fn error_code_from_status(code: Code) -> Option<ErrorCode> {
    Some(match code {
        Code::InvalidArgument => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::NotFound,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::ResourceExhausted => ErrorCode::ResourceExhausted,
        Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::Unavailable => ErrorCode::Unavailable,
        Code::FailedPrecondition => ErrorCode::FailedPrecondition,
        Code::Aborted => ErrorCode::Aborted,
        Code::Unimplemented => ErrorCode::Unimplemented,
        _ => return None,
    })
}

/// A refused wire message is the caller's mistake: `INVALID_ARGUMENT`, with the reason.
impl From<WireError> for Status {
    fn from(err: WireError) -> Self {
        Self::invalid_argument(err.to_string())
    }
}
