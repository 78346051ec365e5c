//! # scistream-actors — the actors that host the protocol cores
//!
//! Drivers only: an actor's message becomes a core input (`scistream-fsm`), the core steps,
//! the actor executes the effects — messages to other actors, answers to pending gRPC calls,
//! timers through ractor's `send_after`, listeners bound and closed by relay actors. No actor
//! decides when or how a call is answered: the cores do, and the simulator checks them.
//!
//! Every actor runs its core through one generic [`driver::Driver`]: step with the clock's
//! `now`, timers on ractor's `send_after`, the other effects handed to the actor.
//!
//! The tree of a control server: [`S2csActor`] (the control server's core: admission,
//! ownership, the registry) supervises one [`SessionActor`] per stream session (that
//! session's core: its machine, the calls waiting on it, its timers) and [`S2dsActor`] (the
//! embedded data server's core), which supervises one [`RelayActor`] per session holding that
//! session's listeners and, once UpdateTargets came, its relay. A relay actor that fails is
//! reported to the data server, which fails only that session; a session actor that fails
//! loses only its session, whose ports the control server releases; a data server that fails
//! is restarted under a new incarnation and the control server fails the sessions it held; the
//! server keeps serving. Children report upward through callbacks, so no module of a child
//! knows its parent's. A data server may instead run on a node of its own (the `s2ds`
//! daemon hosts [`S2dsActor`] there): the control server then reaches it through a
//! [`scistream_transport::node::NodeLink`] ([`DataServerSite::Remote`]).
//!
//! The control server's core says each decision for the audit trail; [`audit`] writes them
//! to their sink.
//!
//! On the user's side, [`S2ucActor`] hosts the user client's core and [`AppCtrlActor`] the
//! application controller's; both carry their cores' messages as gRPC calls ([`remote`]).

pub mod appctrl;
pub mod audit;
pub mod driver;
pub mod metrics;
pub mod relay;
pub mod remote;
pub mod s2cs;
pub mod s2ds;
pub mod s2uc;
pub mod session;

pub use appctrl::{AppCtrlActor, AppCtrlArgs, AppCtrlMsg};
pub use relay::{RelayActor, RelayArgs, RelayMsg};
pub use s2cs::{ActorBackend, DataServerSite, S2csActor, S2csArgs, S2csMsg};
pub use s2ds::{S2dsActor, S2dsArgs, S2dsMsg};
pub use s2uc::{S2ucActor, S2ucArgs, S2ucMsg};
pub use session::{SessionActor, SessionArgs, SessionMsg};
