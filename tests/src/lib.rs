//! # scistream-tests — end-to-end tests and benchmarks
//!
//! This package will hold the tests that start the real binaries on loopback (the control
//! plane over TLS, the data plane, SciStream 1.2 clients driving our server) and the benchmark
//! commands that print comparison tables. The protocol's own tests live beside the code they
//! test (`fsm`, `proto`, `sim`).
