//! Domain types shared by every participant.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A stream session's identifier, chosen by S2UC (a UUID, as SciStream 1.2 does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(pub uuid::Uuid);

impl Uid {
    /// The uid whose 128 bits are `bits` (the simulator and tests build uids this way).
    pub const fn from_u128(bits: u128) -> Self {
        Self(uuid::Uuid::from_u128(bits))
    }

    /// Its 128 bits (a store's key).
    pub const fn as_u128(self) -> u128 {
        self.0.as_u128()
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Why a uid string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    /// The uid is empty.
    #[error("uid is empty")]
    Empty,
    /// The uid is not a UUID.
    #[error("uid {0:?} is not a UUID")]
    Malformed(String),
}

impl FromStr for Uid {
    type Err = UidError;
    fn from_str(s: &str) -> Result<Self, UidError> {
        if s.is_empty() {
            return Err(UidError::Empty);
        }
        uuid::Uuid::try_parse(s.trim()).map(Self).map_err(|_| UidError::Malformed(s.chars().take(64).collect()))
    }
}

/// Which end of the stream a facility (and a request) serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The producer's facility: its gateway forwards WAN connections to the producer.
    Prod,
    /// The consumer's facility: its gateway accepts the consumer and forwards over the WAN.
    Cons,
}

impl Role {
    /// Both roles, producer first.
    pub const ALL: [Self; 2] = [Self::Prod, Self::Cons];

    /// The 1.2 wire spelling: `PROD` or `CONS`.
    pub const fn as_wire(self) -> &'static str {
        match self {
            Self::Prod => "PROD",
            Self::Cons => "CONS",
        }
    }

    /// The other end.
    pub const fn peer(self) -> Self {
        match self {
            Self::Prod => Self::Cons,
            Self::Cons => Self::Prod,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_wire())
    }
}

/// Which network a data server's listeners face. A producer facility's listeners are reached
/// by the other gateway over the WAN; a consumer facility's by the consumer on its LAN. A
/// gateway whose LAN and WAN are separate interfaces binds (and advertises) each apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Face {
    /// The wide-area side: the other facility's gateway connects here.
    Wan,
    /// The facility's own network: its applications connect here.
    Lan,
}

impl Face {
    /// The side a session's listeners face at a facility serving `role`.
    pub const fn of(role: Role) -> Self {
        match role {
            Role::Prod => Self::Wan,
            Role::Cons => Self::Lan,
        }
    }
}

/// One value per [`Face`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Faces<T> {
    /// The WAN side's.
    pub wan: T,
    /// The LAN side's.
    pub lan: T,
}

impl<T> Faces<T> {
    /// The same value on both sides (a gateway with one address).
    pub fn both(v: T) -> Self
    where
        T: Clone,
    {
        Self { wan: v.clone(), lan: v }
    }

    /// The value of `face`.
    pub fn get(&self, face: Face) -> &T {
        match face {
            Face::Wan => &self.wan,
            Face::Lan => &self.lan,
        }
    }
}

/// A `host:port` address as the applications and gateways exchange it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    /// Host name, IPv4 literal, or IPv6 literal without brackets.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// No `:port` suffix.
    #[error("address {0:?} has no port (expected host:port)")]
    NoPort(String),
    /// The host part is empty or holds characters no host name has.
    #[error("address {0:?} has an invalid host")]
    BadHost(String),
    /// The port is not a number in 1..=65535.
    #[error("address {0:?} has an invalid port (expected 1..=65535)")]
    BadPort(String),
}

impl Addr {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port }
    }
}

impl Addr {
    /// Whether `host` may be an address's host: a DNS name or an IP literal (IPv6 without its
    /// brackets), 1 to 253 characters.
    pub fn valid_host(host: &str) -> bool {
        !host.is_empty()
            && host.len() <= 253
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    }
}

impl FromStr for Addr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let clip = || s.chars().take(128).collect::<String>();
        let (host, port) = s.rsplit_once(':').ok_or_else(|| AddrError::NoPort(clip()))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if !Self::valid_host(host) {
            return Err(AddrError::BadHost(clip()));
        }
        let port = port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| AddrError::BadPort(clip()))?;
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// An authenticated caller: the identity an access token was issued to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Principal(pub String);

/// The per-session secret an application controller proves itself with (128 bits, minted by S2UC).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AppKey(pub [u8; 16]);

impl AppKey {
    /// Compares in time independent of where the keys differ.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

/// The per-session data-channel credentials S2UC mints when it builds the connection map:
/// both gateways pin the WAN channel of this session to them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Credentials(pub [u8; 32]);

impl Credentials {
    /// All zero: the session has none (a SciStream 1.2 client's), so its WAN leg can only be
    /// plain.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// What a REQ asks a facility for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionParams {
    /// Which end this facility serves.
    pub role: Role,
    /// Number of parallel connections (ports) to reserve; 1..=limit.
    pub num_conn: u16,
    /// Requested rate in the 1.2 unit (kB/s: 20000 means 20 MB/s); 0 means unlimited.
    pub rate: u32,
}

/// Protocol-level error codes; each maps onto one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    /// A field failed validation.
    InvalidArgument,
    /// No session with that uid (or not visible to the caller).
    NotFound,
    /// A live session with that uid has different parameters or another owner.
    AlreadyExists,
    /// Not enough free ports or capacity.
    ResourceExhausted,
    /// A deadline passed: Hello never came, the lease expired, a peer never answered.
    DeadlineExceeded,
    /// No valid credentials.
    Unauthenticated,
    /// Valid credentials, but not for this session (owner or app key).
    PermissionDenied,
    /// The server cannot serve right now (its data server is reattaching); retry.
    Unavailable,
    /// The input is not allowed in the session's current state.
    FailedPrecondition,
    /// The session was lost: its data server restarted or its client gave up.
    Aborted,
    /// The server does not serve this request at all: a SciStream 1.2 server lacks the rpcs
    /// SciStream-rs added (ReqListeners). Never sent by our servers; a client learns it from
    /// the call.
    Unimplemented,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 11] = [
        Self::InvalidArgument,
        Self::NotFound,
        Self::AlreadyExists,
        Self::ResourceExhausted,
        Self::DeadlineExceeded,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::Unavailable,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::Unimplemented,
    ];

    /// Whether a sender should keep retrying after this answer.
    pub const fn is_transient(self) -> bool {
        matches!(self, Self::Unavailable)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::InvalidArgument => "invalid argument",
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::ResourceExhausted => "resource exhausted",
            Self::DeadlineExceeded => "deadline exceeded",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission denied",
            Self::Unavailable => "unavailable",
            Self::FailedPrecondition => "failed precondition",
            Self::Aborted => "aborted",
            Self::Unimplemented => "unimplemented",
        };
        f.write_str(s)
    }
}

/// Why a call was refused or a session failed, beyond its [`ErrorCode`]: what the user can act
/// on, decided by the core that refused. Shown after the code ("resource exhausted: no
/// data-server node has 5 free ports (at most 4)").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Why {
    /// Nothing more than the code.
    #[default]
    Unspecified,
    /// num_conn is 0 or above the facility's limit.
    NumConn {
        /// The largest num_conn the facility allows.
        max: u16,
    },
    /// The facility requires an app key and the REQ brought none.
    AppKeyRequired,
    /// The uid is taken by a session of another owner, parameters or key.
    UidTaken,
    /// No data-server node is attached to the control server.
    NoDataServer,
    /// No attached node has room for the session's ports.
    Ports {
        /// The ports asked for (num_conn).
        asked: u16,
        /// The most any attached node has free.
        free: u32,
    },
    /// The session's rate does not fit: in the facility's capacity, or in any node's.
    Capacity {
        /// The capacity that refused it, kB/s.
        capacity: u64,
        /// What is in use there, kB/s.
        in_use: u64,
    },
    /// The data server could not bind the ports (another process holds them).
    PortsBusy,
    /// Its data server restarted or stopped answering.
    DataServerLost,
    /// The session was not established within its lease (no Hello, or no UpdateTargets).
    Lease,
    /// The control server is draining (it is shutting down): no new session is admitted.
    Draining,
    /// The facility's destination policy refuses an address the call names (nothing was
    /// dialled).
    Policy {
        /// The rule that refused it.
        guard: Guard,
        /// The address, as resolved (unspecified for a name that did not resolve).
        ip: IpAddr,
        /// Its port.
        port: u16,
    },
    /// The caller's quota refuses the request.
    Quota {
        /// The limit it breaks.
        limit: Limit,
        /// The limit's value (0 for a yes/no limit).
        max: u64,
    },
}

/// The rule of the destination policy that refused an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guard {
    /// A producer's target outside `allow-targets`.
    AllowTargets,
    /// A peer gateway's WAN address outside `allow-peers`.
    AllowPeers,
    /// One of the control server's own ports: never a target.
    OwnPorts,
    /// A name that did not resolve, where a list applies (the lists admit addresses).
    Unresolved,
}

impl Guard {
    /// Every guard.
    pub const ALL: [Self; 4] = [Self::AllowTargets, Self::AllowPeers, Self::OwnPorts, Self::Unresolved];

    /// Its name in the configuration and on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AllowTargets => "allow-targets",
            Self::AllowPeers => "allow-peers",
            Self::OwnPorts => "own-ports",
            Self::Unresolved => "unresolved",
        }
    }
}

/// The limit of a quota that refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// The identity may not request sessions (`may-request = false`).
    MayRequest,
    /// The identity may not request sessions in this role (`roles`).
    Role(Role),
    /// It holds its most concurrent sessions already (`max-sessions`).
    Sessions,
    /// num_conn above its `max-num-conn`.
    NumConn,
    /// Rate above its `max-rate` (or no rate limit asked for).
    Rate,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Self; 6] =
        [Self::MayRequest, Self::Role(Role::Prod), Self::Role(Role::Cons), Self::Sessions, Self::NumConn, Self::Rate];

    /// Its name in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::MayRequest => "may-request",
            Self::Role(_) => "roles",
            Self::Sessions => "max-sessions",
            Self::NumConn => "max-num-conn",
            Self::Rate => "max-rate",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unspecified => Ok(()),
            Self::NumConn { max } => write!(f, "num_conn must be between 1 and {max}"),
            Self::AppKeyRequired => f.write_str(
                "this facility requires an app key (a SciStream 1.2 client sends none; its operator may allow keyless sessions)",
            ),
            Self::UidTaken => f.write_str("the uid is taken by a session with another owner, parameters or key"),
            Self::NoDataServer => f.write_str("no data server is attached to the control server yet"),
            Self::Ports { asked, free } => {
                write!(f, "no data server has {asked} free ports (the most any has is {free})")
            }
            Self::Capacity { capacity, in_use } => {
                write!(f, "the rate does not fit: capacity {capacity} kB/s, {in_use} kB/s in use")
            }
            Self::PortsBusy => f.write_str("the data server could not bind the session's ports (other processes hold them)"),
            Self::DataServerLost => f.write_str("its data server restarted or stopped answering"),
            Self::Lease => f.write_str("not established within its lease (no Hello or no UpdateTargets in time)"),
            Self::Draining => f.write_str("the control server is shutting down and admits no new session; try again later"),
            Self::Policy { guard, ip, port } => {
                let at = std::net::SocketAddr::new(ip, port);
                match guard {
                    Guard::AllowTargets => write!(f, "{at} is outside the facility's allow-targets: its gateway may not reach it"),
                    Guard::AllowPeers => write!(f, "{at} is outside the facility's allow-peers: its gateway may not dial it"),
                    Guard::OwnPorts => write!(f, "{at} is one of the control server's own ports (own-ports): never a target"),
                    Guard::Unresolved => write!(
                        f,
                        "a host named with port {port} did not resolve; the facility's allow-lists admit addresses only"
                    ),
                }
            }
            Self::Quota { limit, max } => match limit {
                Limit::MayRequest => f.write_str("your identity may not request sessions at this facility (quota may-request)"),
                Limit::Role(role) => write!(f, "your identity may not request {role} sessions at this facility (quota roles)"),
                Limit::Sessions => write!(f, "your identity holds its most concurrent sessions already (quota max-sessions {max})"),
                Limit::NumConn => write!(f, "num_conn above your identity's quota (max-num-conn {max})"),
                Limit::Rate => write!(f, "rate above your identity's quota (max-rate {max} kB/s; a rate is required)"),
            },
        }
    }
}

/// One of a facility's data-server nodes, numbered from 0 in the order its control server was
/// given them. A control server places each session on one node; the session's messages to
/// the data server go to that node only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Node(pub u16);

impl Node {
    /// Its position in the control server's list of nodes.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// What a data-server node offers, as it says when a control server attaches: how many ports
/// it may hand out and the rate it can carry. Its control server places sessions on it within
/// these (it counts what its own sessions there hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pool {
    /// The ports in its range.
    pub ports: u32,
    /// The rate it can carry in kB/s, the sum of its sessions' rates; `None`: no limit.
    pub capacity: Option<u64>,
}

/// Where a message comes from or goes to, as the cores name their peers. A driver maps each
/// onto a real endpoint (a gRPC channel, a pending call, a simulated node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A user client (S2UC), numbered by the driver.
    Client(u32),
    /// The control server of the facility serving that role.
    ControlServer(Role),
    /// One data-server node of the facility serving that role (node 0 is its first, and the
    /// only one of a facility with one data server).
    DataServer(Role, Node),
    /// An application controller, numbered by the driver.
    App(u32),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(n) => write!(f, "s2uc#{n}"),
            Self::ControlServer(r) => write!(f, "s2cs/{r}"),
            Self::DataServer(r, Node(0)) => write!(f, "s2ds/{r}"),
            Self::DataServer(r, Node(n)) => write!(f, "s2ds/{r}.{n}"),
            Self::App(n) => write!(f, "app#{n}"),
        }
    }
}
