//! What the actors count for the daemons' Prometheus metrics: the control server's sessions by
//! state, setups and failures, setup latency, its data-server nodes, and every live session's
//! traffic; a node's sessions and traffic. Labels are bounded: states and codes are the
//! protocol's fixed names, and a per-session series exists only while its session is held (the
//! port range bounds them); nothing a caller sends becomes a label.
//!
//! Counters and the histogram are updated as things happen; the gauges are set from the
//! actor's state when the metrics are scraped (`Refresh` messages), so holding them costs
//! nothing between scrapes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use scistream_transport::relay::Traffic;

/// A label naming a state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state's name (`Listening`, `Established`, …).
    pub state: String,
}

/// A label naming an error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The gRPC code's name, as the protocol says it (`resource exhausted`, …).
    pub code: String,
}

/// A live session, and one direction of its traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionDirection {
    /// The session's uid.
    pub uid: String,
    /// `in` (towards the target) or `out` (back from it).
    pub direction: String,
}

/// A live session.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabel {
    /// The session's uid.
    pub uid: String,
}

/// Every live session's traffic, as the data server that relays it counts it.
#[derive(Debug, Clone, Default)]
pub struct SessionTraffic {
    /// Bytes relayed, per session and direction.
    pub bytes: Family<SessionDirection, Gauge>,
    /// Connections open now, per session.
    pub open: Family<SessionLabel, Gauge>,
}

impl SessionTraffic {
    fn register(&self, r: &mut Registry) {
        r.register("scistream_session_bytes", "Bytes relayed for a live session, per direction", self.bytes.clone());
        r.register("scistream_session_connections", "Connections open now for a live session", self.open.clone());
    }

    /// Sets the gauges to these sessions' traffic, and drops every other session's series.
    pub fn set<'a>(&self, all: impl IntoIterator<Item = (String, &'a Traffic)>) {
        self.bytes.clear();
        self.open.clear();
        for (uid, t) in all {
            let dir = |d: &str| SessionDirection { uid: uid.clone(), direction: d.into() };
            self.bytes.get_or_create(&dir("in")).set(gauge(t.bytes_in));
            self.bytes.get_or_create(&dir("out")).set(gauge(t.bytes_out));
            self.open.get_or_create(&SessionLabel { uid: uid.clone() }).set(gauge(t.open));
        }
    }
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A control server's metrics.
#[derive(Debug, Clone)]
pub struct CsMetrics {
    /// Sessions held, by state (set at each scrape).
    pub sessions: Family<StateLabel, Gauge>,
    /// Sessions that reached Established.
    pub setups: Counter,
    /// Sessions that failed, by code.
    pub failures: Family<CodeLabel, Counter>,
    /// From a session's REQ to its bridges up at this facility.
    pub setup_seconds: Histogram,
    /// Data-server nodes, `up` (attached) or `down` (set at each scrape).
    pub nodes: Family<StateLabel, Gauge>,
    /// Live sessions' traffic (the embedded data server's; a node's own metrics count its
    /// sessions').
    pub traffic: SessionTraffic,
}

impl Default for CsMetrics {
    fn default() -> Self {
        Self {
            sessions: Family::default(),
            setups: Counter::default(),
            failures: Family::default(),
            // 1 ms to about 9 minutes: a producer's REQ waits for its Hello.
            setup_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            nodes: Family::default(),
            traffic: SessionTraffic::default(),
        }
    }
}

impl CsMetrics {
    /// Registers every metric in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register("scistream_sessions", "Sessions the control server holds, by state", self.sessions.clone());
        r.register("scistream_setups", "Sessions that reached Established", self.setups.clone());
        r.register("scistream_session_failures", "Sessions that failed, by gRPC code", self.failures.clone());
        r.register(
            "scistream_setup_duration_seconds",
            "From a session's REQ to its bridges up at this facility",
            self.setup_seconds.clone(),
        );
        r.register("scistream_data_server_nodes", "Data-server nodes, up (attached) or down", self.nodes.clone());
        self.traffic.register(r);
    }
}

/// A data-server node's metrics.
#[derive(Debug, Clone, Default)]
pub struct DsMetrics {
    /// Sessions on the node, by state (set at each scrape).
    pub sessions: Family<StateLabel, Gauge>,
    /// Whether a control server is attached (1) or not (0).
    pub attached: Gauge,
    /// Live sessions' traffic.
    pub traffic: SessionTraffic,
}

impl DsMetrics {
    /// Registers every metric in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register("scistream_node_sessions", "Sessions on this data-server node, by state", self.sessions.clone());
        r.register(
            "scistream_node_attached",
            "Whether a control server is attached to this node (1) or not (0)",
            self.attached.clone(),
        );
        self.traffic.register(r);
    }
}

/// Counts `states` into `family`: one series per state some session is in now (the others
/// are dropped).
pub fn set_states<'a>(family: &Family<StateLabel, Gauge>, states: impl IntoIterator<Item = &'a str>) {
    let mut counts: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for s in states {
        *counts.entry(s).or_default() += 1;
    }
    family.clear();
    for (state, n) in counts {
        family.get_or_create(&StateLabel { state: state.into() }).set(n);
    }
}
