//! The named properties every run is checked against, and the reachability marks that prove a
//! batch of runs was not vacuous.

use std::fmt;

use scistream_fsm::Instant;

/// When a property must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// At every step, faults or not.
    Always,
    /// Once the faults healed and the system had time to settle.
    Eventually,
}

/// A named property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prop {
    /// No bridge starts before UpdateTargets carried that session's credentials.
    BridgeNeedsCredentials,
    /// No two live sessions hold the same port.
    PortsExclusive,
    /// A released or expired session's ports are free.
    ReleasedPortsFree,
    /// Both control servers agree on an established session's connection map.
    MapsAgree,
    /// A message without the session's identity or key never changes it.
    ForgeryChangesNothing,
    /// Nothing changes after a terminal state.
    TerminalIsFinal,
    /// No reservation outlives its lease.
    LeaseBounded,
    /// What a node sends comes back as itself through the production encoder and decoder.
    WireFaithful,
    /// The run ends within its bounds (no livelock).
    BoundedDrive,
    /// Every session is established, or released/failed with an ERROR delivered to S2UC.
    SessionsSettle,
    /// After all releases every port is free and no reservation is left.
    AllPortsFree,
    /// A client tells its user to start the producer's controller only for a session the
    /// producer's control server admitted for that user, with its listeners bound.
    AnnouncedAdmitted,
    /// A session is released at a control server only by its owner's call, or an operator's
    /// where operators are configured.
    OwnerReleases,
    /// No data server starts a bridge to an address its facility's policy refuses (a
    /// producer's target outside `allow-targets`, a peer outside `allow-peers`, the control
    /// server's own port), whatever the faults.
    TargetsWithinPolicy,
    /// A property a script added ([`crate::script::Property`]), by its name.
    Scripted(&'static str),
}

impl Prop {
    /// Every property, in report order.
    pub const ALL: [Self; 14] = [
        Self::BridgeNeedsCredentials,
        Self::PortsExclusive,
        Self::ReleasedPortsFree,
        Self::MapsAgree,
        Self::ForgeryChangesNothing,
        Self::TerminalIsFinal,
        Self::LeaseBounded,
        Self::WireFaithful,
        Self::BoundedDrive,
        Self::SessionsSettle,
        Self::AllPortsFree,
        Self::AnnouncedAdmitted,
        Self::OwnerReleases,
        Self::TargetsWithinPolicy,
    ];

    /// When it must hold.
    pub fn kind(self) -> Kind {
        match self {
            Self::SessionsSettle | Self::AllPortsFree | Self::BoundedDrive => Kind::Eventually,
            _ => Kind::Always,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::BridgeNeedsCredentials => "bridge-needs-credentials",
            Self::PortsExclusive => "ports-exclusive",
            Self::ReleasedPortsFree => "released-ports-free",
            Self::MapsAgree => "maps-agree",
            Self::ForgeryChangesNothing => "forgery-changes-nothing",
            Self::TerminalIsFinal => "terminal-is-final",
            Self::LeaseBounded => "lease-bounded",
            Self::WireFaithful => "wire-faithful",
            Self::BoundedDrive => "bounded-drive",
            Self::SessionsSettle => "sessions-settle",
            Self::AllPortsFree => "all-ports-free",
            Self::AnnouncedAdmitted => "announced-admitted",
            Self::OwnerReleases => "only-owner-releases",
            Self::TargetsWithinPolicy => "targets-within-policy",
            Self::Scripted(name) => name,
        }
    }
}

impl fmt::Display for Prop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken property in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which.
    pub prop: Prop,
    /// When.
    pub at: Instant,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.at, self.prop, self.detail)
    }
}

macro_rules! reach {
    ($($variant:ident => $name:literal: $doc:literal,)+) => {
        /// Something interesting a run reached ("sometimes" properties).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reach { $(#[doc = $doc] $variant,)+ }

        impl Reach {
            /// Every mark.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// Its name in scenarios and reports.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)+ }
            }

            /// The mark called `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

reach! {
    Established => "established": "A session was established.",
    Streamed => "streamed": "A consumer opened its channels through both gateways.",
    Released => "released": "A session was released on both sides.",
    FailedDeadline => "failed-deadline": "A session failed with DEADLINE_EXCEEDED.",
    FailedExhausted => "failed-exhausted": "A session failed with RESOURCE_EXHAUSTED.",
    FailedConflict => "failed-conflict": "A session failed with ALREADY_EXISTS.",
    FailedAborted => "failed-aborted": "A session failed with ABORTED (a peer crashed).",
    FailedPrecondition => "failed-precondition": "A session failed with FAILED_PRECONDITION (no plain WAN leg here, or a relay that cannot run).",
    FailedPermission => "failed-permission": "A session failed with PERMISSION_DENIED (a 1.2 client's session where app keys are required).",
    ForgeryRefused => "forgery-refused": "A forged message was refused.",
    CorruptionDetected => "corruption-detected": "A corrupted frame was detected and dropped.",
    Recovered => "recovered": "A crashed node restarted and the run went on.",
    DataServerLost => "data-server-lost": "A control server took its silent data server for lost, failed its sessions and attached again.",
    BridgesKept => "bridges-kept": "A restarted control server recovered an established session and its data server kept the session's bridges.",
    RelayFailed => "relay-failed": "A data server could not start a session's relay.",
    OperatorReleased => "operator-released": "An operator released another identity's session.",
    OtherNode => "other-node": "A control server placed a session on a data-server node other than its first.",
    PolicyRefused => "policy-refused": "A control server refused a producer's target outside its facility's policy.",
}

impl Reach {
    /// The known names, comma-separated.
    pub fn names() -> String {
        Self::ALL.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
    }
}
