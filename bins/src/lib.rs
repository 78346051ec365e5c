//! # scistream-bins — the gateway daemons and the user's commands
//!
//! This package will hold the thin binaries `s2cs`, `s2ds`, `s2uc` and `appctrl`: flags and
//! configuration files, logging, and the root supervisor from `scistream-actors`. No protocol
//! logic lives here. The binaries arrive with the control-plane work (issue 3); the protocol
//! simulator's binary, `sim`, lives in `scistream-sim`.
