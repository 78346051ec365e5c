//! # scistream-actors — the actors that host the protocol cores
//!
//! This crate will own the supervision tree: one ractor actor per participant (S2UC, S2CS,
//! S2DS, application controllers) and one per stream session, a supervised child of its S2CS
//! actor. Actors are drivers only: a message becomes a core input (`scistream-fsm`), the core
//! steps, the actor executes the effects through `scistream-transport` and arms timers with
//! ractor's `send_after`. A failing session actor is reported and released; the server goes on.
//!
//! It arrives with the control-plane work (issue 3); until then the crate is empty by design.
