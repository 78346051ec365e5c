//! End-to-end regression tests of the control plane: the real `s2cs` on loopback over TLS,
//! driven by our `s2uc` and `appctrl` where the point is the command line, and by an in-test
//! `ControlClient` where the point is the exact gRPC code.
//!
//! Most modules guard one defect of the SciStream 1.2 server (DESIGN.md §3) that ours must not
//! have. Each test starts its own servers on its own port range and stops them, also when it
//! fails; every wait is bounded. The liveness test times a call, so it runs alone (see
//! [`testkit::exclusive`]).

mod appctrl_signals;
mod backends;
mod bad_input;
mod data_path;
mod held_ports;
mod identity;
mod introspection;
mod isolation;
mod limits;
mod liveness;
mod nodes;
mod operations;
mod policy;
mod pool;
mod real_properties;
mod refusals;
mod shutdown;
mod tls_trust;
mod two_facilities;
mod user_cli;

mod testkit;
