//! One frame per protocol message: [`Msg`] as a protobuf `Envelope`.
//!
//! The simulator encodes every message it delivers and decodes what arrives, so corrupted bytes
//! exercise the real decoder; links between our own processes use the same frames. [`encode`]
//! is infallible; [`decode`] either returns a message that passes every wire check (see the
//! crate's contract) or a [`WireError`], and never panics, whatever the bytes.
//!
//! Both directions are on the simulator's hot path: encoding builds the prost message from
//! borrowed fields and writes it into one buffer sized by `encoded_len`; decoding moves the
//! decoded strings (tokens) into the domain value instead of copying them.

use prost::Message as _;
use scistream_fsm::{Credentials, Msg, Pool, SessionParams, Token, Uid};

use crate::convert::Limits;
use crate::convert::field::{
    addrs_from_wire, addrs_to_wire, creds_from_wire, error_code_from_wire, error_code_to_wire, host_from_wire,
    key_from_wire, num_conn_from_wire, ports_from_wire, role_from_wire, uid_from_wire, uid_to_wire, why_from_wire,
    why_to_wire,
};
use crate::pb::envelope::Body;
use crate::{WireError, pb};

/// Encodes a message as an `Envelope`.
pub fn encode(msg: &Msg) -> Vec<u8> {
    to_pb(msg).encode_to_vec()
}

/// A message as an `Envelope` value (for a gRPC stream of them).
pub fn to_pb(msg: &Msg) -> pb::Envelope {
    pb::Envelope { body: Some(body_of(msg)) }
}

/// Validates an `Envelope` value a gRPC stream delivered; `num_conn` within `limits`.
pub fn from_pb(envelope: pb::Envelope, limits: &Limits) -> Result<Msg, WireError> {
    msg_of(envelope.body.ok_or(WireError::MissingBody)?, limits)
}

/// Decodes and validates an `Envelope` under [`Limits::DEFAULT`].
pub fn decode(bytes: &[u8]) -> Result<Msg, WireError> {
    decode_with(bytes, &Limits::DEFAULT)
}

/// Decodes and validates an `Envelope`; `num_conn` (REQ, StartLstn) must be within `limits`.
pub fn decode_with(bytes: &[u8], limits: &Limits) -> Result<Msg, WireError> {
    from_pb(pb::Envelope::decode(bytes)?, limits)
}

fn call(uid: Uid, seq: u32, token: &Token) -> pb::EnvCall {
    pb::EnvCall { uid: uid_to_wire(uid), seq, token: token.0.clone() }
}

fn ack(uid: Uid, seq: u32) -> pb::EnvAck {
    pb::EnvAck { uid: uid_to_wire(uid), seq }
}

fn ds_ack(uid: Uid, inc: u64) -> pb::EnvDsAck {
    pb::EnvDsAck { uid: uid_to_wire(uid), inc }
}

fn uids_to_wire(uids: &[Uid]) -> Vec<String> {
    uids.iter().map(|u| uid_to_wire(*u)).collect()
}

/// The uids of an Attach or AttachAck, all or nothing.
fn uids_from_wire(texts: &[String]) -> Result<Vec<Uid>, WireError> {
    texts.iter().map(|t| uid_from_wire(t)).collect()
}

fn creds_to_wire(creds: &Credentials) -> Vec<u8> {
    creds.0.to_vec()
}

fn body_of(msg: &Msg) -> Body {
    match msg {
        Msg::Req { uid, seq, token, params, key } => Body::Req(pb::EnvReq {
            uid: uid_to_wire(*uid),
            seq: *seq,
            token: token.0.clone(),
            role: params.role.as_wire().to_owned(),
            num_conn: u32::from(params.num_conn),
            rate: params.rate,
            app_key: key.0.to_vec(),
        }),
        Msg::ReqListeners { uid, seq, token } => Body::ReqListeners(call(*uid, *seq, token)),
        Msg::Update { uid, seq, token, remote, creds } => Body::Update(pb::EnvUpdate {
            uid: uid_to_wire(*uid),
            seq: *seq,
            token: token.0.clone(),
            remote: addrs_to_wire(remote),
            credentials: creds_to_wire(creds),
        }),
        Msg::Rel { uid, seq, token } => Body::Rel(call(*uid, *seq, token)),
        Msg::Resp { uid, seq, listeners, prod_listeners } => Body::Resp(pb::EnvResp {
            uid: uid_to_wire(*uid),
            seq: *seq,
            listeners: addrs_to_wire(listeners),
            prod_listeners: addrs_to_wire(prod_listeners),
        }),
        Msg::ProdLstn { uid, seq, listeners, prod_listeners } => Body::ProdLstn(pb::EnvProdLstn {
            uid: uid_to_wire(*uid),
            seq: *seq,
            prod_listeners: addrs_to_wire(prod_listeners),
            listeners: addrs_to_wire(listeners),
        }),
        Msg::Updated { uid, seq } => Body::Updated(ack(*uid, *seq)),
        Msg::Released { uid, seq } => Body::Released(ack(*uid, *seq)),
        Msg::Error { uid, seq, code, why } => Body::Error(pb::EnvError {
            uid: uid_to_wire(*uid),
            seq: *seq,
            code: error_code_to_wire(*code).into(),
            why: why_to_wire(*why),
        }),
        Msg::Hello { uid, seq, key, prod_listeners } => Body::Hello(pb::EnvHello {
            uid: uid_to_wire(*uid),
            seq: *seq,
            app_key: key.0.to_vec(),
            prod_listeners: addrs_to_wire(prod_listeners),
        }),
        Msg::HelloAck { uid, seq, listeners } => {
            Body::HelloAck(pb::EnvHelloAck { uid: uid_to_wire(*uid), seq: *seq, listeners: addrs_to_wire(listeners) })
        }
        Msg::DsBoot { inc } => Body::DsBoot(pb::EnvDsBoot { inc: *inc }),
        Msg::Attach { epoch, attachment, keep } => {
            Body::Attach(pb::EnvAttach { epoch: *epoch, attachment: *attachment, keep: uids_to_wire(keep) })
        }
        Msg::AttachAck { epoch, attachment, inc, held, pool } => Body::AttachAck(pb::EnvAttachAck {
            epoch: *epoch,
            attachment: *attachment,
            inc: *inc,
            held: uids_to_wire(held),
            ports: pool.ports,
            capacity: pool.capacity.unwrap_or(0),
        }),
        Msg::StartLstn { uid, epoch, num_conn, role } => Body::StartLstn(pb::EnvStartLstn {
            uid: uid_to_wire(*uid),
            epoch: *epoch,
            num_conn: u32::from(*num_conn),
            role: role.as_wire().to_string(),
        }),
        Msg::Lstn { uid, inc, host, ports } => Body::Lstn(pb::EnvLstn {
            uid: uid_to_wire(*uid),
            inc: *inc,
            ports: ports.iter().map(|&p| u32::from(p)).collect(),
            host: host.clone(),
        }),
        Msg::Refused { uid, inc, code } => {
            Body::Refused(pb::EnvRefused { uid: uid_to_wire(*uid), inc: *inc, code: error_code_to_wire(*code).into() })
        }
        Msg::StartConn { uid, epoch, targets, creds, role, rate } => Body::StartConn(pb::EnvStartConn {
            uid: uid_to_wire(*uid),
            epoch: *epoch,
            targets: addrs_to_wire(targets),
            credentials: creds_to_wire(creds),
            role: role.as_wire().to_string(),
            rate: *rate,
        }),
        Msg::Connected { uid, inc } => Body::Connected(ds_ack(*uid, *inc)),
        Msg::DsRel { uid, epoch } => Body::DsRel(pb::EnvDsRel { uid: uid_to_wire(*uid), epoch: *epoch }),
        Msg::DsReleased { uid, inc } => Body::DsReleased(ds_ack(*uid, *inc)),
    }
}

fn msg_of(body: Body, limits: &Limits) -> Result<Msg, WireError> {
    Ok(match body {
        Body::Req(m) => Msg::Req {
            uid: uid_from_wire(&m.uid)?,
            seq: m.seq,
            params: SessionParams {
                role: role_from_wire(&m.role)?,
                num_conn: num_conn_from_wire(i64::from(m.num_conn), limits)?,
                rate: m.rate,
            },
            key: key_from_wire(&m.app_key)?,
            token: Token(m.token),
        },
        Body::ReqListeners(m) => Msg::ReqListeners { uid: uid_from_wire(&m.uid)?, seq: m.seq, token: Token(m.token) },
        Body::Update(m) => Msg::Update {
            uid: uid_from_wire(&m.uid)?,
            seq: m.seq,
            remote: addrs_from_wire(&m.remote)?,
            creds: creds_from_wire(&m.credentials)?,
            token: Token(m.token),
        },
        Body::Rel(m) => Msg::Rel { uid: uid_from_wire(&m.uid)?, seq: m.seq, token: Token(m.token) },
        Body::Resp(m) => Msg::Resp {
            uid: uid_from_wire(&m.uid)?,
            seq: m.seq,
            listeners: addrs_from_wire(&m.listeners)?,
            prod_listeners: addrs_from_wire(&m.prod_listeners)?,
        },
        Body::ProdLstn(m) => Msg::ProdLstn {
            uid: uid_from_wire(&m.uid)?,
            seq: m.seq,
            listeners: addrs_from_wire(&m.listeners)?,
            prod_listeners: addrs_from_wire(&m.prod_listeners)?,
        },
        Body::Updated(m) => Msg::Updated { uid: uid_from_wire(&m.uid)?, seq: m.seq },
        Body::Released(m) => Msg::Released { uid: uid_from_wire(&m.uid)?, seq: m.seq },
        Body::Error(m) => Msg::Error {
            uid: uid_from_wire(&m.uid)?,
            seq: m.seq,
            code: error_code_from_wire(m.code)?,
            why: why_from_wire(m.why.as_ref())?,
        },
        Body::Hello(m) => Msg::Hello {
            uid: uid_from_wire(&m.uid)?,
            seq: m.seq,
            key: key_from_wire(&m.app_key)?,
            prod_listeners: addrs_from_wire(&m.prod_listeners)?,
        },
        Body::HelloAck(m) => {
            Msg::HelloAck { uid: uid_from_wire(&m.uid)?, seq: m.seq, listeners: addrs_from_wire(&m.listeners)? }
        }
        Body::DsBoot(m) => Msg::DsBoot { inc: m.inc },
        Body::Attach(m) => Msg::Attach { epoch: m.epoch, attachment: m.attachment, keep: uids_from_wire(&m.keep)? },
        Body::AttachAck(m) => Msg::AttachAck {
            epoch: m.epoch,
            attachment: m.attachment,
            inc: m.inc,
            held: uids_from_wire(&m.held)?,
            pool: Pool { ports: m.ports, capacity: Some(m.capacity).filter(|c| *c > 0) },
        },
        Body::StartLstn(m) => Msg::StartLstn {
            uid: uid_from_wire(&m.uid)?,
            epoch: m.epoch,
            num_conn: num_conn_from_wire(i64::from(m.num_conn), limits)?,
            role: role_from_wire(&m.role)?,
        },
        Body::Lstn(m) => Msg::Lstn {
            uid: uid_from_wire(&m.uid)?,
            inc: m.inc,
            host: host_from_wire(&m.host)?,
            ports: ports_from_wire(&m.ports)?,
        },
        Body::Refused(m) => {
            Msg::Refused { uid: uid_from_wire(&m.uid)?, inc: m.inc, code: error_code_from_wire(m.code)? }
        }
        Body::StartConn(m) => Msg::StartConn {
            uid: uid_from_wire(&m.uid)?,
            epoch: m.epoch,
            targets: addrs_from_wire(&m.targets)?,
            creds: creds_from_wire(&m.credentials)?,
            role: role_from_wire(&m.role)?,
            rate: m.rate,
        },
        Body::Connected(m) => Msg::Connected { uid: uid_from_wire(&m.uid)?, inc: m.inc },
        Body::DsRel(m) => Msg::DsRel { uid: uid_from_wire(&m.uid)?, epoch: m.epoch },
        Body::DsReleased(m) => Msg::DsReleased { uid: uid_from_wire(&m.uid)?, inc: m.inc },
    })
}

#[cfg(test)]
mod tests;
