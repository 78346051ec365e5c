//! # scistream-sim — the protocol under faults, deterministically
//!
//! Steps the very cores of `scistream-fsm` — two facilities (control server and data server
//! each), user clients, producer controllers and consumers — on virtual time, over a network
//! with named semantics (ordered, unordered, duplicating) and the fault rules of a
//! [`Scenario`]: loss, corruption of the encoded bytes (the production
//! protobuf decoder runs; a CRC-32 frame check detects the damage and the frame counts as
//! lost), duplication, reordering, delay, partitions, and crash/restart of any participant.
//! Intact messages arrive as sent; a sample of them goes through the production encoder and
//! decoder and must come back equal (the `wire-faithful` property).
//!
//! Contract: a run is a pure function of (scenario, seed, defect). The seed drives one
//! `ChaCha8Rng`; collections iterate in key order; nothing reads the wall clock. Every run is
//! checked against the named properties in [`check`]: *always* (at every step, faults or
//! not), *eventually* (after the faults heal), and *sometimes* (across a batch, so a run where
//! nothing happens fails). A failing seed replays exactly with `sim replay`.
//!
//! Beyond the hand-written scenarios: [`swarm`] draws a whole world per seed (a failing one is
//! written back as a scenario file), [`world::explore`] checks every choice of a small world
//! within a bound (interleavings of messages in flight, losses and duplications, a crash of
//! any node), and [`world::Defect`] holds one broken variant per property, living here and
//! never in the production cores, to show each property can fire.

pub mod check;
pub mod net;
pub mod nodes;
pub mod run;
pub mod scenario;
pub mod swarm;
pub mod world;

pub use check::{Prop, Reach, Violation};
pub use scenario::Scenario;
pub use world::script::{self, Property, Sim, View, When};
pub use world::{Defect, Options, Outcome};
