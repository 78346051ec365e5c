//! The SciStream 1.2 rpc messages to and from the domain types, with validation.
//!
//! Every `*_from_wire` function checks what the wire can check and returns a [`WireError`]
//! naming the first failure; every `*_to_wire` function is infallible. The single fields
//! ([`field`]) are shared with the [`envelope`](crate::envelope); the rpc arguments ([`rpc`])
//! keep the 1.2 extensions optional, because 1.2 clients leave them empty; gRPC status codes
//! live in [`status`].
//!
//! [`WireError`]: crate::WireError

pub mod field;
pub mod rpc;
pub mod status;

pub use field::{
    addrs_from_wire, addrs_to_wire, creds_from_wire, error_code_from_wire, error_code_to_wire, key_from_wire,
    num_conn_from_wire, opt_creds_from_wire, opt_key_from_wire, opt_role_from_wire, rate_from_wire, role_from_wire,
    uid_from_wire, uid_to_wire,
};
pub use rpc::{
    HelloArgs, Listeners, ReqArgs, SessionStatus, SessionTraffic, UpdateArgs, app_response_from_wire,
    app_response_to_wire, hello_from_wire, hello_to_wire, node_traffic_from_wire, node_traffic_to_wire,
    release_from_wire, release_to_wire, req_listeners_from_wire, req_listeners_to_wire, request_from_wire,
    request_to_wire, response_from_wire, response_to_wire, session_status_from_wire, session_status_to_wire,
    update_from_wire, update_to_wire,
};
pub use status::{error_code_from_status, status_code};

/// Bounds a receiver enforces on what a peer may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The largest `num_conn` a REQ (or StartLstn) may carry; the smallest is always 1, since
    /// 1.2 read 0 as "the whole port range".
    pub max_num_conn: u16,
}

impl Limits {
    /// The default bound: 256 connections per session.
    pub const DEFAULT: Self = Self { max_num_conn: 256 };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests;
