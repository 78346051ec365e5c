//! The link between a facility's control server and a data server node: the
//! `scistream.DataServer` service over mutual TLS on the facility's LAN.
//!
//! One bidirectional stream of `Envelope`s carries the S2CS↔S2DS vocabulary. The node serves
//! it ([`NodeService`]); the control server dials it and keeps it up ([`NodeLink`]). Neither
//! end decides anything: each message, checked by the production decoder and for its
//! direction, becomes an input of the core on the other side. Messages sent while the link is
//! down are dropped, as the simulator's lossy LAN drops them: the cores retransmit.
//!
//! Only a peer whose certificate the facility trusts gets this far; the TLS layer
//! ([`crate::tls::mutual_server_config`], [`crate::tls::connect_mutual`]) refuses the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scistream_fsm::{Msg, Uid};
use scistream_proto::convert::{SessionTraffic, node_traffic_from_wire, node_traffic_to_wire};
use scistream_proto::envelope::{from_pb, to_pb};
use scistream_proto::pb::data_server_client::DataServerClient;
use scistream_proto::pb::data_server_server::{DataServer, DataServerServer};
use scistream_proto::{Limits, pb};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::tls;

/// Messages queued towards the other end before the sender sees the link as congested.
const QUEUE: usize = 1024;

/// The first and the longest pause between two attempts to reach a node.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// How long one attempt to reach a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the messages a link receives go; `false` once nobody listens (the link then closes).
pub type Inbound = Arc<dyn Fn(Msg) -> bool + Send + Sync>;

/// A node's sessions and their traffic, read when a control server asks.
pub type TrafficSource = Arc<dyn Fn() -> Vec<(Uid, SessionTraffic)> + Send + Sync>;

/// What a control server last heard of its node's traffic, per session.
pub type TrafficSeen = Arc<Mutex<BTreeMap<Uid, SessionTraffic>>>;

/// How often a control server asks its node for its sessions' traffic.
const TRAFFIC_EVERY: Duration = Duration::from_secs(1);

/// Whether a control server sends `msg` to its data server.
pub fn from_control_server(msg: &Msg) -> bool {
    matches!(msg, Msg::Attach { .. } | Msg::StartLstn { .. } | Msg::StartConn { .. } | Msg::DsRel { .. })
}

/// Whether a data server sends `msg` to its control server.
pub fn from_data_server(msg: &Msg) -> bool {
    matches!(
        msg,
        Msg::DsBoot { .. }
            | Msg::AttachAck { .. }
            | Msg::Lstn { .. }
            | Msg::Refused { .. }
            | Msg::Connected { .. }
            | Msg::DsReleased { .. }
    )
}

/// The link currently carrying a node's messages: its number and its queue.
type Current = Option<(u64, mpsc::Sender<Msg>)>;

/// The node's way back to the control server linked to it, if any.
#[derive(Debug, Clone, Default)]
pub struct Uplink {
    current: Arc<Mutex<Current>>,
}

impl Uplink {
    /// Queues `msg` for the linked control server; `false` when none is linked or its queue is
    /// full (the message is lost, as on a lossy LAN).
    pub fn send(&self, msg: Msg) -> bool {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().is_some_and(|(_, tx)| tx.try_send(msg).is_ok())
    }

    /// Whether a control server is linked.
    pub fn linked(&self) -> bool {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|(_, tx)| !tx.is_closed())
    }

    fn replace(&self, id: u64, tx: mpsc::Sender<Msg>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, tx));
    }

    fn clear(&self, id: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|(i, _)| *i == id) {
            *current = None;
        }
    }
}

/// The `scistream.DataServer` service of a node. A newer link replaces an older one: a control
/// server that restarted dials again before the node notices the old connection is dead.
pub struct NodeService {
    inbound: Inbound,
    uplink: Uplink,
    traffic: TrafficSource,
    limits: Limits,
    next: AtomicU64,
}

impl NodeService {
    /// A service handing what control servers send to `inbound`, answering through `uplink`,
    /// and telling its sessions' traffic from `traffic`.
    pub fn new(inbound: Inbound, uplink: Uplink, traffic: TrafficSource, limits: Limits) -> Self {
        Self { inbound, uplink, traffic, limits, next: AtomicU64::new(1) }
    }

    /// The tonic service.
    pub fn into_server(self) -> DataServerServer<Self> {
        DataServerServer::new(self)
    }
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<pb::Envelope, Status>> + Send>>;

#[tonic::async_trait]
impl DataServer for NodeService {
    type LinkStream = EnvelopeStream;

    async fn link(&self, request: Request<Streaming<pb::Envelope>>) -> Result<Response<EnvelopeStream>, Status> {
        let peer = request.remote_addr().map_or_else(|| "?".to_owned(), |a| a.to_string());
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        self.uplink.replace(id, tx);
        tracing::info!(%peer, link = id, "control server linked");
        let (inbound, uplink, limits) = (self.inbound.clone(), self.uplink.clone(), self.limits);
        let mut incoming = request.into_inner();
        tokio::spawn(async move {
            loop {
                match incoming.message().await {
                    Ok(Some(envelope)) => match from_pb(envelope, &limits) {
                        Ok(msg) if from_control_server(&msg) => {
                            if !inbound(msg) {
                                break;
                            }
                        }
                        Ok(msg) => tracing::warn!(%peer, "refused {}: not a control server's message", msg.name()),
                        Err(e) => tracing::warn!(%peer, "refused a malformed message: {e}"),
                    },
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%peer, "link broken: {}", status.message());
                        break;
                    }
                }
            }
            uplink.clear(id);
            tracing::info!(%peer, link = id, "control server unlinked");
        });
        let out = ReceiverStream::new(rx).map(|msg| Ok(to_pb(&msg)));
        Ok(Response::new(Box::pin(out)))
    }

    async fn traffic(&self, _: Request<pb::TrafficRequest>) -> Result<Response<pb::TrafficReply>, Status> {
        let sessions = (self.traffic)().iter().map(|(uid, t)| node_traffic_to_wire(*uid, t)).collect();
        Ok(Response::new(pb::TrafficReply { sessions }))
    }
}

/// The counters of a traffic reply; an entry whose uid does not parse is dropped.
fn traffic_of(reply: &pb::TrafficReply) -> BTreeMap<Uid, SessionTraffic> {
    reply.sessions.iter().filter_map(|t| node_traffic_from_wire(t).ok()).collect()
}

/// How a control server authenticates to its nodes and which nodes it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTls {
    /// Its certificate (PEM), which the nodes must trust.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The certificates (a facility CA, or the nodes' own) a node must present one of.
    pub trust: Vec<PathBuf>,
}

/// A control server's link to one node, kept up by a task of its own: it dials, and dials again
/// after any failure, with a backoff from 50 ms to 2 s. Dropping it closes the link.
#[derive(Debug)]
pub struct NodeLink {
    addr: String,
    tx: mpsc::Sender<Msg>,
    task: JoinHandle<()>,
}

impl NodeLink {
    /// Starts linking to the node at `addr` (`host:port`); what the node sends goes to
    /// `inbound`, and every second its sessions' traffic to `seen`.
    pub fn spawn(addr: String, tls: LinkTls, inbound: Inbound, seen: TrafficSeen, limits: Limits) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(keep_linked(addr.clone(), tls, inbound, seen, limits, rx));
        Self { addr, tx, task }
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Queues `msg` for the node; `false` when the queue is full (the message is lost).
    pub fn send(&self, msg: Msg) -> bool {
        self.tx.try_send(msg).is_ok()
    }
}

impl Drop for NodeLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_linked(
    addr: String,
    tls: LinkTls,
    inbound: Inbound,
    seen: TrafficSeen,
    limits: Limits,
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut backoff = BACKOFF.0;
    let mut reported = false;
    loop {
        match link_once(&addr, &tls, &inbound, &seen, &limits, &mut rx).await {
            Ended::Closed => return,
            Ended::Broken { was_up, why } => {
                if was_up {
                    tracing::warn!(node = %addr, "link to the data server lost: {why}; dialing again");
                    backoff = BACKOFF.0;
                    reported = false;
                } else if !reported {
                    // Once per outage: the node may be down for long.
                    tracing::warn!(node = %addr, "cannot link to the data server: {why}; retrying");
                    reported = true;
                } else {
                    tracing::debug!(node = %addr, "cannot link to the data server: {why}");
                }
            }
        }
        // What queued while the link was down is stale: the cores retransmit what matters.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Ended {
    /// The control server is gone: stop.
    Closed,
    /// The link failed; `was_up` once it had carried the stream.
    Broken { was_up: bool, why: String },
}

async fn link_once(
    addr: &str,
    tls: &LinkTls,
    inbound: &Inbound,
    seen: &TrafficSeen,
    limits: &Limits,
    rx: &mut mpsc::Receiver<Msg>,
) -> Ended {
    let broken = |why: String| Ended::Broken { was_up: false, why };
    let channel = match tls::connect_mutual(addr, &tls.cert, &tls.key, &tls.trust, CONNECT_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return broken(e.to_string()),
    };
    let (out_tx, out_rx) = mpsc::channel::<pb::Envelope>(QUEUE);
    let mut client = DataServerClient::new(channel);
    let mut incoming = match client.link(ReceiverStream::new(out_rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return broken(format!("{:?}: {}", status.code(), status.message())),
    };
    tracing::info!(node = %addr, "linked to the data server");
    // The node's traffic counters, asked for on the same connection while it is up.
    let poller = {
        let (mut client, seen, addr) = (client.clone(), seen.clone(), addr.to_owned());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TRAFFIC_EVERY);
            loop {
                every.tick().await;
                match tokio::time::timeout(CONNECT_TIMEOUT, client.traffic(pb::TrafficRequest {})).await {
                    // Merged: a released session's last counters stay until the control
                    // server forgets the session.
                    Ok(Ok(reply)) => seen.lock().unwrap_or_else(|e| e.into_inner()).extend(traffic_of(reply.get_ref())),
                    Ok(Err(status)) => tracing::debug!(node = %addr, "traffic not read: {}", status.message()),
                    Err(_) => tracing::debug!(node = %addr, "traffic not read within {CONNECT_TIMEOUT:?}"),
                }
            }
        })
    };
    let _stop_poller = AbortOnDrop(poller);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => {
                    if out_tx.send(to_pb(&msg)).await.is_err() {
                        return Ended::Broken { was_up: true, why: "the stream closed".into() };
                    }
                }
                None => return Ended::Closed,
            },
            got = incoming.message() => match got {
                Ok(Some(envelope)) => match from_pb(envelope, limits) {
                    Ok(msg) if from_data_server(&msg) => {
                        if !inbound(msg) {
                            return Ended::Closed;
                        }
                    }
                    Ok(msg) => tracing::warn!(node = %addr, "refused {}: not a data server's message", msg.name()),
                    Err(e) => tracing::warn!(node = %addr, "refused a malformed message: {e}"),
                },
                Ok(None) => return Ended::Broken { was_up: true, why: "the node closed the stream".into() },
                Err(status) => return Ended::Broken { was_up: true, why: status.message().to_owned() },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::Path;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use tokio::net::TcpListener;

    use super::*;

    /// A facility CA, and a certificate it signs for 127.0.0.1 in `dir`/`name`.pem (+ key).
    struct Ca {
        issuer: Issuer<'static, KeyPair>,
    }

    impl Ca {
        fn new(dir: &Path, name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            Self { issuer: Issuer::new(params, key) }
        }

        fn sign(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
            let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
            std::fs::write(&c, cert.pem()).unwrap();
            std::fs::write(&k, key.serialize_pem()).unwrap();
            (c, k)
        }
    }

    /// Serves a node whose inbound messages go to the returned receiver.
    async fn node(cert: &Path, key: &Path, trust: &Path) -> (SocketAddr, mpsc::UnboundedReceiver<Msg>, Uplink) {
        let cfg = tls::mutual_server_config(cert, key, &[trust.to_owned()]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let inbound: Inbound = Arc::new(move |m| tx.send(m).is_ok());
        let uplink = Uplink::default();
        let traffic: TrafficSource = Arc::new(Vec::new);
        let svc = NodeService::new(inbound, uplink.clone(), traffic, Limits::DEFAULT).into_server();
        let limits = crate::ports::PortLimits::default();
        let incoming = tls::serve_mutual_tls_incoming(listener, cfg, &limits).await;
        tokio::spawn(limits.server::<tls::TlsInfo>().serve_with_incoming_shutdown(
            svc,
            incoming,
            std::future::pending(),
        ));
        (addr, rx, uplink)
    }

    #[tokio::test]
    async fn certificates_a_facility_ca_signed_link_both_ways_and_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, other) = (Ca::new(dir.path(), "facility"), Ca::new(dir.path(), "stranger"));
        let (node_cert, node_key) = ca.sign(dir.path(), "node");
        let (cs_cert, cs_key) = ca.sign(dir.path(), "cs");
        let (bad_cert, bad_key) = other.sign(dir.path(), "intruder");
        let ca_file = dir.path().join("facility.pem");
        let (addr, mut got, uplink) = node(&node_cert, &node_key, &ca_file).await;

        let (tx, mut heard) = mpsc::unbounded_channel();
        let inbound: Inbound = Arc::new(move |m| tx.send(m).is_ok());
        let tls = LinkTls { cert: cs_cert, key: cs_key, trust: vec![ca_file.clone()] };
        let link = NodeLink::spawn(addr.to_string(), tls, inbound, TrafficSeen::default(), Limits::DEFAULT);
        let attach = Msg::Attach { epoch: 1, attachment: 1, keep: vec![] };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Sent until the link is up (a message queued before is dropped, as on a lossy LAN).
        let first = loop {
            assert!(link.send(attach.clone()));
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), got.recv()).await {
                break m;
            }
            assert!(tokio::time::Instant::now() < deadline, "the CA-signed control server never linked");
        };
        assert_eq!(first, attach);
        // The node's answer comes back; a message of the wrong direction does not.
        assert!(uplink.send(Msg::StartLstn {
            uid: Uid::from_u128(1),
            epoch: 1,
            num_conn: 1,
            role: scistream_fsm::Role::Prod
        }));
        let ack = Msg::AttachAck {
            epoch: 1,
            attachment: 1,
            inc: 3,
            held: vec![],
            pool: scistream_fsm::Pool { ports: 4, capacity: Some(100) },
        };
        assert!(uplink.send(ack.clone()));
        let back = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await.unwrap();
        assert_eq!(back, Some(ack));

        // A control server signed by another CA never gets a message through.
        let (tx2, _heard2) = mpsc::unbounded_channel();
        let inbound: Inbound = Arc::new(move |m| tx2.send(m).is_ok());
        let tls = LinkTls { cert: bad_cert, key: bad_key, trust: vec![ca_file] };
        let intruder = NodeLink::spawn(addr.to_string(), tls, inbound, TrafficSeen::default(), Limits::DEFAULT);
        for _ in 0..20 {
            intruder.send(Msg::Attach { epoch: 9, attachment: 9, keep: vec![] });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leaked = tokio::time::timeout(Duration::from_millis(300), got.recv()).await;
        assert!(!matches!(leaked, Ok(Some(Msg::Attach { epoch: 9, .. }))), "{leaked:?}");
    }
}
