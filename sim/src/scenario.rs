//! Scenarios: the cluster, the workload, and the fault rules of one kind of run, read from
//! TOML (`sim/scenarios/*.toml`, built into the binary, or any file).

use std::path::Path;

use scistream_fsm::timing::{Backoff, Profile};
use serde::{Deserialize, Serialize};

/// A scenario as written in its file. Every duration is in virtual milliseconds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// One line on what it exercises.
    pub description: String,
    /// Stream sessions in the workload.
    pub sessions: u32,
    /// User clients (S2UC instances), each with its own identity.
    #[serde(default = "one")]
    pub clients: u32,
    /// Range of num_conn per session (inclusive).
    #[serde(default = "default_num_conn")]
    pub num_conn: [u16; 2],
    /// Data-server nodes per facility (`s2ds/PROD`, `s2ds/PROD.1`, …): each control server
    /// places its sessions on them.
    #[serde(default = "one_node")]
    pub nodes: u16,
    /// Ports each data server may hand out.
    #[serde(default = "default_ports")]
    pub ports: u16,
    /// Ports of each data server's range that another process holds (drawn per seed): binding
    /// them fails.
    #[serde(default)]
    pub busy_ports: u16,
    /// Network semantics.
    #[serde(default)]
    pub network: Semantics,
    /// One-way latency, LAN links (S2CS↔S2DS, app↔S2CS): [min, max].
    #[serde(default = "default_lan")]
    pub lan_ms: [u64; 2],
    /// One-way latency, WAN links (S2UC↔S2CS): [min, max].
    #[serde(default = "default_wan")]
    pub wan_ms: [u64; 2],
    /// When every fault stops (partitions heal, rules end, crashed nodes are back).
    #[serde(default = "default_heal")]
    pub heal_at_ms: u64,
    /// The workload.
    #[serde(default)]
    pub workload: Workload,
    /// Protocol timing.
    #[serde(default)]
    pub timing: Timing,
    /// The facilities' configuration, fixed or drawn per seed.
    #[serde(default)]
    pub config: ConfigSpace,
    /// Message fault rules; every rule matching a message applies (losses, corruptions,
    /// duplications and reorderings each roll per rule; delays add up).
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultRule>,
    /// Partitions.
    #[serde(default, rename = "partition")]
    pub partitions: Vec<Partition>,
    /// Crashes (each followed by a restart).
    #[serde(default, rename = "crash")]
    pub crashes: Vec<Crash>,
    /// Reachability the runs must show at least once (see `Reach`).
    #[serde(default)]
    pub sometimes: Vec<String>,
    /// Reachability no run may show (a fault-free scenario's sessions never fail, say).
    #[serde(default)]
    pub never: Vec<String>,
}

/// How the network orders and repeats messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Semantics {
    /// Each link delivers in send order.
    Ordered,
    /// Each message takes its own latency: links reorder.
    #[default]
    Unordered,
    /// Unordered, and every message may be delivered twice.
    Duplicating,
}

/// What the users and applications do.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Sessions start uniformly in [0, start_window].
    pub start_window_ms: u64,
    /// Delay from session creation to the producer's controller saying Hello: [min, max].
    pub hello_delay_ms: [u64; 2],
    /// Probability that a session's producer never says Hello.
    pub hello_never: f64,
    /// Probability that a session is released at a random point of its setup.
    pub release_during_setup: f64,
    /// How long an established session streams before release: [min, max].
    pub hold_ms: [u64; 2],
    /// Sessions that reuse another session's uid from another client with other parameters.
    pub duplicate_uids: u32,
    /// Probability that a message from a client or app is followed by a forged copy.
    pub forge: f64,
    /// Probability that a session is a SciStream 1.2 client's: no app key, no credentials (so
    /// `require_app_keys` refuses it, and only `allow_plain_wan` lets it bridge).
    pub legacy: f64,
    /// Probability that an operator releases a session at a random moment of its life.
    pub operator_release: f64,
    /// Probability that a session's producer names, among its listeners, an address its
    /// facility's policy refuses (the control server's own port): its Hello must be refused
    /// and nothing bridged to it.
    pub rogue_targets: f64,
}

/// The configuration the control and data servers run with. An option left out is drawn per
/// seed (each value equally likely), so a batch covers both.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigSpace {
    /// Refuse a REQ without an app key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_app_keys: Option<bool>,
    /// Serve an UpdateTargets without credentials with a plain WAN leg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_plain_wan: Option<bool>,
    /// The operator identity is configured (else its releases are refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operators: Option<bool>,
    /// Each control server's capacity in the rate unit; absent: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// Each data-server node's capacity in the rate unit, as it announces it; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_capacity: Option<u64>,
    /// Probability that a data server cannot start a session's relay.
    pub relay_failure: f64,
}

/// Changes to the production timing profile (`scistream_fsm::timing::Profile::production`),
/// which every simulated core runs by default, as the daemons do. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// Deadline of one client call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_deadline_ms: Option<u64>,
    /// A control server's lease from REQ to established (the Hello timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hello_timeout_ms: Option<u64>,
    /// How much longer a data server's lease runs than its control server's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ds_lease_margin_ms: Option<u64>,
    /// How long finished sessions are remembered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tombstone_ms: Option<u64>,
    /// Control server ↔ data server backoff: [initial, max].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_backoff_ms: Option<[u64; 2]>,
    /// User client backoff: [initial, max].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_backoff_ms: Option<[u64; 2]>,
    /// Application controller backoff: [initial, max].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_backoff_ms: Option<[u64; 2]>,
    /// Jitter of every backoff, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_pct: Option<u8>,
    /// How often a control server asks a silent data server whether it is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_heartbeat_ms: Option<u64>,
    /// How long a control server waits without a word before it takes its data server for lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_silence_ms: Option<u64>,
}

impl Timing {
    /// The production profile with this scenario's changes.
    pub fn profile(&self) -> Profile {
        let ms = std::time::Duration::from_millis;
        let mut p = Profile::production();
        let backoff = |b: &mut Backoff, v: Option<[u64; 2]>| {
            if let Some([lo, hi]) = v {
                (b.initial, b.max) = (ms(lo), ms(hi));
            }
        };
        p.call_deadline = self.call_deadline_ms.map_or(p.call_deadline, ms);
        p.hello_timeout = self.hello_timeout_ms.map_or(p.hello_timeout, ms);
        p.ds_lease_margin = self.ds_lease_margin_ms.map_or(p.ds_lease_margin, ms);
        p.tombstone = self.tombstone_ms.map_or(p.tombstone, ms);
        p.link_heartbeat = self.link_heartbeat_ms.map_or(p.link_heartbeat, ms);
        p.link_silence = self.link_silence_ms.map_or(p.link_silence, ms);
        backoff(&mut p.server_backoff, self.server_backoff_ms);
        backoff(&mut p.client_backoff, self.client_backoff_ms);
        backoff(&mut p.app_backoff, self.app_backoff_ms);
        if let Some(j) = self.jitter_pct {
            for b in [&mut p.server_backoff, &mut p.client_backoff, &mut p.app_backoff] {
                b.jitter_pct = j;
            }
        }
        p
    }
}

/// A message fault rule. Matching: sender and receiver kinds (`s2uc`, `s2cs`, `s2ds`, `app`,
/// or `any`), optionally a message name (`REQ`, `Hello`, …), and a time window.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultRule {
    /// Sender kind.
    pub from: String,
    /// Receiver kind.
    pub to: String,
    /// Message name, if the rule is about one kind of message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// Start of the window.
    pub from_ms: u64,
    /// End of the window (default: the scenario's heal time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Probability the message is lost.
    pub loss: f64,
    /// Probability its encoded bytes are corrupted.
    pub corrupt: f64,
    /// Probability it is delivered twice.
    pub duplicate: f64,
    /// Probability it is held back by up to `reorder_ms`, overtaking later messages.
    pub reorder: f64,
    /// Longest hold-back of a reordered message.
    pub reorder_ms: u64,
    /// Extra delay added to every matching message: [min, max].
    pub delay_ms: [u64; 2],
}

/// A network partition between two groups of nodes (by name: `s2uc#0`, `s2cs/PROD`,
/// `s2ds/CONS`, `app#3`, or a kind: `s2uc`, `s2cs`, `s2ds`, `app`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// One side.
    pub a: Vec<String>,
    /// The other side.
    pub b: Vec<String>,
    /// Start.
    pub from_ms: u64,
    /// Heal.
    pub until_ms: u64,
}

/// A crash of one node and its restart with its durable state only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// Node name (`s2uc#0`, `s2cs/PROD`, `s2cs/CONS`, `s2ds/PROD`, `s2ds/CONS`).
    pub node: String,
    /// When it crashes.
    pub at_ms: u64,
    /// How long it stays down.
    pub down_ms: u64,
}

fn one() -> u32 {
    1
}
fn one_node() -> u16 {
    1
}
fn default_num_conn() -> [u16; 2] {
    [1, 4]
}
fn default_ports() -> u16 {
    200
}
fn default_lan() -> [u64; 2] {
    [1, 3]
}
fn default_wan() -> [u64; 2] {
    [10, 40]
}
fn default_heal() -> u64 {
    60_000
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            start_window_ms: 5_000,
            hello_delay_ms: [10, 2_000],
            hello_never: 0.0,
            release_during_setup: 0.0,
            hold_ms: [1_000, 20_000],
            duplicate_uids: 0,
            forge: 0.02,
            legacy: 0.0,
            operator_release: 0.0,
            rogue_targets: 0.0,
        }
    }
}

impl Default for FaultRule {
    fn default() -> Self {
        Self {
            from: "any".into(),
            to: "any".into(),
            msg: None,
            from_ms: 0,
            until_ms: None,
            loss: 0.0,
            corrupt: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_ms: 200,
            delay_ms: [0, 0],
        }
    }
}

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// No built-in scenario or file by that name.
    #[error("no scenario named {0:?} (see `sim list`) and no such file")]
    Unknown(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown fields.
    #[error("{name}: {source}")]
    Parse {
        /// Scenario name or path.
        name: String,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or names an unknown node.
    #[error("{name}: {what}")]
    Invalid {
        /// Scenario name.
        name: String,
        /// What is wrong.
        what: String,
    },
}

/// The shipped scenarios, built into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("happy", include_str!("../scenarios/happy.toml")),
    ("lossy", include_str!("../scenarios/lossy.toml")),
    ("corrupting", include_str!("../scenarios/corrupting.toml")),
    ("dup-reorder", include_str!("../scenarios/dup-reorder.toml")),
    ("crash-s2uc", include_str!("../scenarios/crash-s2uc.toml")),
    ("crash-s2cs-prod", include_str!("../scenarios/crash-s2cs-prod.toml")),
    ("crash-s2cs-cons", include_str!("../scenarios/crash-s2cs-cons.toml")),
    ("crash-s2ds-prod", include_str!("../scenarios/crash-s2ds-prod.toml")),
    ("crash-s2ds-cons", include_str!("../scenarios/crash-s2ds-cons.toml")),
    ("crash-app", include_str!("../scenarios/crash-app.toml")),
    ("partition-during-setup", include_str!("../scenarios/partition-during-setup.toml")),
    ("data-server-unreachable", include_str!("../scenarios/data-server-unreachable.toml")),
    ("sparse", include_str!("../scenarios/sparse.toml")),
    ("100-sessions", include_str!("../scenarios/100-sessions.toml")),
    ("release-during-setup", include_str!("../scenarios/release-during-setup.toml")),
    ("hello-never", include_str!("../scenarios/hello-never.toml")),
    ("port-exhaustion", include_str!("../scenarios/port-exhaustion.toml")),
    ("duplicate-uid", include_str!("../scenarios/duplicate-uid.toml")),
    ("config-space", include_str!("../scenarios/config-space.toml")),
    ("headline", include_str!("../scenarios/headline.toml")),
    ("nodes", include_str!("../scenarios/nodes.toml")),
    ("crash-s2uc-after-release", include_str!("../scenarios/crash-s2uc-after-release.toml")),
    ("explore-one", include_str!("../scenarios/explore-one.toml")),
    ("explore-two", include_str!("../scenarios/explore-two.toml")),
    ("rogue-targets", include_str!("../scenarios/rogue-targets.toml")),
];

impl Scenario {
    /// A built-in scenario by name, or a scenario file by path.
    pub fn load(name_or_file: &str) -> Result<Self, ScenarioError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_file) {
            return Self::parse(name, text);
        }
        let path = Path::new(name_or_file);
        if !path.exists() {
            return Err(ScenarioError::Unknown(name_or_file.to_string()));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: name_or_file.to_string(), source })?;
        Self::parse(name_or_file, &text)
    }

    /// The scenario as a file `Scenario::parse` reads back to the same scenario.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a scenario serialises")
    }

    /// Parses and validates scenario text.
    pub fn parse(name: &str, text: &str) -> Result<Self, ScenarioError> {
        let s: Self =
            toml::from_str(text).map_err(|e| ScenarioError::Parse { name: name.to_string(), source: Box::new(e) })?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |what: String| Err(ScenarioError::Invalid { name: self.name.clone(), what });
        if self.sessions == 0 || self.clients == 0 {
            return bad("sessions and clients must be at least 1".into());
        }
        if self.num_conn[0] == 0 || self.num_conn[0] > self.num_conn[1] {
            return bad(format!("num_conn {:?} must be a range within 1..", self.num_conn));
        }
        if !(1..=4).contains(&self.nodes) {
            return bad(format!("nodes {} must be in 1..=4", self.nodes));
        }
        if self.ports == 0 || u32::from(self.ports) > 60_000 {
            return bad(format!("ports {} must be in 1..=60000", self.ports));
        }
        if self.busy_ports >= self.ports {
            return bad(format!("busy_ports {} must be fewer than ports {}", self.busy_ports, self.ports));
        }
        if self.workload.duplicate_uids > 0 && (self.clients < 2 || self.workload.duplicate_uids >= self.sessions) {
            return bad("duplicate_uids needs at least 2 clients and fewer duplicates than sessions".into());
        }
        let probs = self.faults.iter().flat_map(|f| [f.loss, f.corrupt, f.duplicate, f.reorder]);
        let w = &self.workload;
        let probs = probs.chain([
            w.hello_never,
            w.release_during_setup,
            w.forge,
            w.legacy,
            w.operator_release,
            w.rogue_targets,
        ]);
        let probs = probs.chain([self.config.relay_failure]);
        if probs.clone().any(|p| !(0.0..=1.0).contains(&p)) {
            return bad("probabilities must be within 0..=1".into());
        }
        let t = &self.timing;
        let backoffs = [t.server_backoff_ms, t.client_backoff_ms, t.app_backoff_ms];
        if backoffs.iter().flatten().any(|[lo, hi]| *lo == 0 || lo > hi) || t.jitter_pct.is_some_and(|j| j > 100) {
            return bad(
                "timing: backoffs must be [initial, max] with 0 < initial <= max; jitter_pct at most 100".into()
            );
        }
        for c in &self.crashes {
            if crate::nodes::node_by_name(&c.node, self.clients, self.sessions, self.nodes).is_none() {
                return bad(format!("crash names unknown node {:?}", c.node));
            }
        }
        for n in self.partitions.iter().flat_map(|p| p.a.iter().chain(&p.b)) {
            if !crate::nodes::group_name_valid(n, self.clients, self.sessions, self.nodes) {
                return bad(format!("partition names unknown node or kind {n:?}"));
            }
        }
        for r in self.sometimes.iter().chain(&self.never) {
            if crate::check::Reach::from_name(r).is_none() {
                return bad(format!("unknown reachability {r:?}; known: {}", crate::check::Reach::names()));
            }
        }
        Ok(())
    }
}
