//! Carrying a client core's messages over gRPC: each protocol message a user client or an
//! application controller sends becomes one unary call, and the call's outcome becomes the
//! protocol message the core expects back. The core keeps every decision — retransmission,
//! deadlines, what an ERROR means; a transient failure is answered as UNAVAILABLE, which the
//! cores retry.

use scistream_fsm::{ErrorCode, Msg, Role, Why};
use scistream_transport::client::{CallError, ControlClient};

/// The protocol answer to `msg`, sent by a client of facility `role`, obtained through
/// `client`, with the server's explanation when it is an ERROR. `None` for a message that is
/// not a client's request.
pub async fn call(client: &ControlClient, role: Role, msg: Msg) -> Option<(Msg, Option<String>)> {
    let uid = msg.uid()?;
    let (seq, answer) = match msg {
        Msg::Req { seq, params, key, .. } => (
            seq,
            client.req(uid, role, params.num_conn, params.rate, Some(key)).await.map(|l| Msg::Resp {
                uid,
                seq,
                listeners: l.listeners,
                prod_listeners: l.prod_listeners,
            }),
        ),
        Msg::ReqListeners { seq, .. } => {
            let answer = client.listeners(uid).await;
            (seq, answer.map(|l| Msg::ProdLstn { uid, seq, listeners: l.listeners, prod_listeners: l.prod_listeners }))
        }
        Msg::Update { seq, remote, creds, .. } => {
            (seq, client.update(uid, role, &remote, Some(creds)).await.map(|_| Msg::Updated { uid, seq }))
        }
        Msg::Rel { seq, .. } => (seq, client.release(uid).await.map(|()| Msg::Released { uid, seq })),
        Msg::Hello { seq, key, prod_listeners, .. } => {
            let key = (key != scistream_fsm::AppKey::default()).then_some(key);
            let acked = client.hello(uid, role, &prod_listeners, key).await;
            (seq, acked.map(|listeners| Msg::HelloAck { uid, seq, listeners }))
        }
        _ => return None,
    };
    Some(match answer {
        Ok(m) => (m, None),
        Err(e) => (Msg::Error { uid, seq, code: code_of(&e), why: Why::Unspecified }, Some(explain(&e))),
    })
}

/// What a failed call says beyond its code: the server's own words for a refusal (its message;
/// the code is said beside it), else the whole error.
pub fn explain(e: &CallError) -> String {
    match e {
        CallError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The protocol code of a failed call: a translation of the wire, as proto's conversions are.
/// An rpc the server lacks (a SciStream 1.2 server has no `listeners`) is UNIMPLEMENTED. What
/// is not the server's protocol answer (deadline, connection lost, a server failure) is
/// UNAVAILABLE, which the cores treat as transient.
/// SciStream 1.2 servers answer UNKNOWN for a uid they do not hold (their ValidationException):
/// NOT_FOUND, which is what it says.
pub fn code_of(e: &CallError) -> ErrorCode {
    match e {
        CallError::Status { code, .. } => *code,
        CallError::Server { code: tonic::Code::Unknown, .. } => ErrorCode::NotFound,
        CallError::BadAnswer(_) => ErrorCode::InvalidArgument,
        CallError::Unimplemented(_) => ErrorCode::Unimplemented,
        CallError::Deadline | CallError::Unavailable(_) | CallError::Server { .. } => ErrorCode::Unavailable,
    }
}
