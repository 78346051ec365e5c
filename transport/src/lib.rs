//! # scistream-transport — production I/O
//!
//! This crate will own everything that touches a socket in production, and nothing of the
//! protocol's logic (that is `scistream-fsm`'s):
//!
//! - the control plane: tonic gRPC server and client over rustls (TLS 1.3), serving the
//!   SciStream 1.2 `scistream.Control` service from `scistream-proto`;
//! - the S2DS relay engine: listeners, zero-copy forwarding, per-session mutual TLS on the WAN
//!   leg, rate enforcement and counters;
//! - authentication: OAuth2 token introspection for callers, app keys for controllers.
//!
//! Its contract: it executes the effects the fsm cores emit (`Effect::Send`, `Effect::Listen`,
//! `Effect::StartBridges`, `Effect::Unlisten`) and turns what happens on the wire back into
//! core inputs. It arrives with the control-plane and data-plane work (issues 3 and 4); until
//! then the crate is empty by design, not a stub.
