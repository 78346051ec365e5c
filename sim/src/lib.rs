//! # scistream-sim — deterministic simulation
