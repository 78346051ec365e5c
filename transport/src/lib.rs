//! # scistream-transport — production I/O
//!
//! This crate owns everything that touches a socket in production, and nothing of the
//! protocol's logic (that is `scistream-fsm`'s):
//!
//! - the control plane: tonic gRPC server and client over rustls (TLS 1.3), serving the
//!   SciStream 1.2 `scistream.Control` service from `scistream-proto`;
//! - the S2DS relay engine: listeners, zero-copy forwarding, per-session mutual TLS on the WAN
//!   leg, rate enforcement and counters;
//! - authentication: the caller's token read from the call, checked by an
//!   [`Authenticator`](server::Authenticator) (OAuth2 introspection lives in the
//!   `scistream-identity` crate, `transport/identity/`).
//!
//! Its contract: it executes the effects the fsm cores emit (`Effect::Send`, `Effect::Listen`,
//! `Effect::StartBridges`, `Effect::Unlisten`) and turns what happens on the wire back into
//! core inputs.
//!
//! The control plane's building blocks:
//!
//! - [`tls`]: the server's TLS 1.3 configuration from PEM files, the stream of TLS connections
//!   tonic's server consumes (handshakes run concurrently; failures never reach tonic), and
//!   client channels that trust a pinned certificate or the system's roots;
//! - [`ports`]: what one gRPC port lets its peers hold (connections, streams, calls in flight,
//!   idle and handshake timeouts), before any authentication;
//! - [`certgen`]: self-signed server certificates for facilities without a CA;
//! - [`auth`]: the caller's token in `authorization` metadata, raw as 1.2 sends it or `Bearer`;
//! - [`client`]: [`ControlClient`](client::ControlClient), one typed method per rpc, each with
//!   a deadline and the token, every answer validated, every failure a [`client::CallError`];
//! - [`node`]: the control server ↔ data server node link (`scistream.DataServer`, one stream
//!   of protocol messages each way over mutual TLS): the node's service and the control
//!   server's self-healing link;
//! - [`server`]: the `scistream.Control` gRPC service of a control server, each call's token
//!   checked by the [`Authenticator`](server::Authenticator) it is given (with the caller's
//!   address, so an authenticator can bound what one address costs it); a translator only:
//!   it submits each call and returns the one answer the cores give it.
//!
//! A control server's state: [`store`], its durable record of every established session
//! (redb), from which a restart recovers them.
//!
//! The data plane's:
//!
//! - [`relay`]: per session, listeners forwarded to targets — splice on plain legs, a fixed
//!   buffer on TLS legs, half-close passed on, breaks passed on as resets, a token-bucket rate,
//!   counters;
//! - [`wan`]: the WAN leg's mutual TLS 1.3, both gateways pinned to an identity derived from
//!   the session's credentials.

pub mod auth;
pub mod backend;
pub mod certgen;
pub mod client;
pub mod node;
pub mod ports;
pub mod relay;
pub mod server;
pub mod store;
#[cfg(test)]
mod testkit;
pub mod tls;
pub mod wan;
