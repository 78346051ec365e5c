//! The broken protocol variants the simulator runs to show each property can fire (its
//! self-test). The production cores have no switch for any of them: every variant lives here,
//! as a rewrite of what a correct core asked for ([`Defect::rewrite`]), of what the simulated
//! introspection says a caller is ([`Defect::caller`]), or of what a driver keeps durable
//! ([`Defect::journal`]).

use std::collections::BTreeSet;

use scistream_fsm::{Addr, Credentials, Effect, Instant, Msg, Notice, Peer, Principal, TimerKind, Uid, s2uc};

use crate::check::Prop;

/// A deliberately broken protocol variant to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Defect {
    /// The correct protocol.
    #[default]
    None,
    /// Clients never retransmit.
    NoRetransmit,
    /// Data servers start bridges before UpdateTargets.
    BridgeBeforeCredentials,
    /// Data servers keep ports bound after release.
    LeakPortsOnRelease,
    /// Clients send REQs asking for no connections, which the wire refuses.
    UnencodableRequest,
    /// Data servers bind the first port of their range for every session: a port lent twice.
    PortLentTwice,
    /// Clients tell the consumer's facility to forward to the wrong producer-gateway ports.
    WrongMap,
    /// The control server takes any caller for the session's owner: the owner check skipped.
    OwnerCheckSkipped,
    /// A forged message makes the control server tell its data server to release the session,
    /// while the session itself stays as it was.
    ForgedReachesDataServer,
    /// A client's journal keeps its finished sessions too: a restarted client reopens them.
    TerminalReopened,
    /// A client's journal loses its unfinished sessions: a restarted client forgets them
    /// without an outcome.
    JournalLost,
    /// Control servers and data servers set no lease timer.
    NoLeaseTimer,
    /// Clients retransmit at once, forever: a livelock.
    Livelock,
    /// Clients announce a session (tell the user to start the producer's controller) as soon
    /// as they send its REQ.
    AnnounceEarly,
    /// The operator's calls are taken for the owner's, configured operator or not.
    OperatorAsOwner,
    /// Data servers bridge to their control server's own port, which the facility's policy
    /// never admits: a policy check skipped.
    PolicyBypassed,
}

/// Where a step happens, for the rewrite.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The node stepped.
    pub node: Peer,
    /// The virtual time.
    pub now: Instant,
    /// The step handles a forged message.
    pub forged: bool,
}

impl Defect {
    /// Rewrites the effects a correct core asked for into the broken variant's.
    pub fn rewrite(self, step: Step, out: &mut Vec<Effect>) {
        match (self, step.node) {
            (Self::NoRetransmit, Peer::Client(_)) => {
                out.retain(|e| !matches!(e, Effect::SetTimer { key, .. } if key.kind == TimerKind::Retransmit));
            }
            (Self::BridgeBeforeCredentials, Peer::DataServer(role, _)) => {
                let early: Vec<Effect> = out
                    .iter()
                    .filter_map(|e| match e {
                        Effect::Listen { uid, ports, .. } => Some(Effect::StartBridges {
                            uid: *uid,
                            ports: ports.clone(),
                            targets: Vec::new(),
                            creds: Credentials::default(),
                            role,
                            rate: 0,
                        }),
                        _ => None,
                    })
                    .collect();
                out.extend(early);
            }
            (Self::LeakPortsOnRelease, Peer::DataServer(..)) => out.retain(|e| !matches!(e, Effect::Unlisten { .. })),
            (Self::UnencodableRequest, Peer::Client(_)) => {
                for e in out.iter_mut() {
                    if let Effect::Send { msg: Msg::Req { params, .. }, .. } = e {
                        params.num_conn = 0;
                    }
                }
            }
            (Self::PortLentTwice, Peer::DataServer(..)) => {
                for e in out.iter_mut() {
                    if let Effect::Listen { ports, .. } = e
                        && let Some(first) = ports.first_mut()
                    {
                        *first = crate::world::FIRST_PORT;
                    }
                }
            }
            (Self::WrongMap, Peer::Client(_)) => {
                for e in out.iter_mut() {
                    if let Effect::Send {
                        to: Peer::ControlServer(scistream_fsm::Role::Cons),
                        msg: Msg::Update { remote, .. },
                    } = e
                    {
                        for a in remote.iter_mut() {
                            *a = Addr::new(a.host.clone(), a.port.wrapping_add(1));
                        }
                    }
                }
            }
            (Self::ForgedReachesDataServer, Peer::ControlServer(r)) if step.forged => {
                let uids: BTreeSet<Uid> = out.iter().filter_map(effect_uid).collect();
                for uid in uids {
                    let to = Peer::DataServer(r, scistream_fsm::Node(0));
                    out.push(Effect::Send { to, msg: Msg::DsRel { uid, epoch: 0 } });
                }
            }
            (Self::NoLeaseTimer, Peer::ControlServer(_) | Peer::DataServer(..)) => {
                out.retain(|e| !matches!(e, Effect::SetTimer { key, .. } if key.kind == TimerKind::Lease));
            }
            (Self::Livelock, Peer::Client(_)) => {
                for e in out.iter_mut() {
                    if let Effect::SetTimer { key, at } = e
                        && key.kind == TimerKind::Retransmit
                    {
                        *at = step.now;
                    }
                }
            }
            (Self::AnnounceEarly, Peer::Client(_)) => {
                let early: Vec<Effect> = out
                    .iter()
                    .filter_map(|e| match e {
                        Effect::Send {
                            to: Peer::ControlServer(scistream_fsm::Role::Prod),
                            msg: Msg::Req { uid, key, .. },
                        } => Some(Effect::Notify(Notice::Created { uid: *uid, key: *key })),
                        _ => None,
                    })
                    .collect();
                out.extend(early);
            }
            (Self::PolicyBypassed, Peer::DataServer(role, _)) => {
                let own = crate::world::own_addr(role);
                for e in out.iter_mut() {
                    if let Effect::StartBridges { targets, .. } = e
                        && let Some(first) = targets.first_mut()
                    {
                        *first = Addr::new(own.ip().to_string(), own.port());
                    }
                }
            }
            _ => {}
        }
    }

    /// Who the simulated introspection says the caller is: `token_holder` as the token names
    /// it, or, for the variants that skip the check, the session's owner.
    pub fn caller(self, token_holder: Option<Principal>, owner: Option<&Principal>, forged: bool) -> Option<Principal> {
        let operator = token_holder.as_ref().is_some_and(|p| p.0 == "operator");
        match (self, owner) {
            (Self::OwnerCheckSkipped, Some(owner)) if forged => Some(owner.clone()),
            (Self::OperatorAsOwner, Some(owner)) if operator => Some(owner.clone()),
            _ => token_holder,
        }
    }

    /// What a crashing client's driver keeps durable: its journal (or the broken variants').
    pub fn journal(self, client: &s2uc::S2uc) -> BTreeSet<Uid> {
        match self {
            Self::TerminalReopened => client.sessions().keys().copied().collect(),
            Self::JournalLost => BTreeSet::new(),
            _ => client.journal(),
        }
    }

    /// Every variant with its CLI name.
    pub const NAMED: [(&'static str, Self); 16] = [
        ("none", Self::None),
        ("no-retransmit", Self::NoRetransmit),
        ("bridge-before-credentials", Self::BridgeBeforeCredentials),
        ("leak-ports", Self::LeakPortsOnRelease),
        ("unencodable-request", Self::UnencodableRequest),
        ("port-lent-twice", Self::PortLentTwice),
        ("wrong-map", Self::WrongMap),
        ("owner-check-skipped", Self::OwnerCheckSkipped),
        ("forged-reaches-data-server", Self::ForgedReachesDataServer),
        ("terminal-reopened", Self::TerminalReopened),
        ("journal-lost", Self::JournalLost),
        ("no-lease-timer", Self::NoLeaseTimer),
        ("livelock", Self::Livelock),
        ("announce-early", Self::AnnounceEarly),
        ("operator-as-owner", Self::OperatorAsOwner),
        ("policy-bypassed", Self::PolicyBypassed),
    ];

    /// Its CLI name.
    pub fn name(self) -> &'static str {
        Self::NAMED.iter().find(|(_, d)| *d == self).map_or("none", |(n, _)| n)
    }

    /// The property each broken variant must trip: every built-in property has at least one.
    pub const CAUGHT_BY: [(Self, Prop); 16] = [
        (Self::NoRetransmit, Prop::SessionsSettle),
        (Self::BridgeBeforeCredentials, Prop::BridgeNeedsCredentials),
        (Self::LeakPortsOnRelease, Prop::ReleasedPortsFree),
        (Self::LeakPortsOnRelease, Prop::AllPortsFree),
        (Self::UnencodableRequest, Prop::WireFaithful),
        (Self::PortLentTwice, Prop::PortsExclusive),
        (Self::WrongMap, Prop::MapsAgree),
        (Self::OwnerCheckSkipped, Prop::ForgeryChangesNothing),
        (Self::ForgedReachesDataServer, Prop::ForgeryChangesNothing),
        (Self::TerminalReopened, Prop::TerminalIsFinal),
        (Self::JournalLost, Prop::SessionsSettle),
        (Self::NoLeaseTimer, Prop::LeaseBounded),
        (Self::Livelock, Prop::BoundedDrive),
        (Self::AnnounceEarly, Prop::AnnouncedAdmitted),
        (Self::OperatorAsOwner, Prop::OwnerReleases),
        (Self::PolicyBypassed, Prop::TargetsWithinPolicy),
    ];
}

fn effect_uid(e: &Effect) -> Option<Uid> {
    match e {
        Effect::Send { msg, .. } => msg.uid(),
        _ => None,
    }
}
