//! The simulated network: frames with a checksum around the real protobuf encoding, named
//! semantics (ordered, unordered, duplicating), and the scenario's fault rules and partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use scistream_fsm::{Instant, Msg, Peer};

use crate::nodes::{node_kind, node_name};
use crate::scenario::{FaultRule, Partition, Scenario, Semantics};

/// Why a received frame was discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its checksum.
    #[error("frame too short")]
    Short,
    /// The checksum does not match: the frame was corrupted in flight.
    #[error("checksum mismatch")]
    Checksum,
    /// The checksum matched but the real decoder refused the bytes.
    #[error("decode: {0}")]
    Decode(String),
}

/// Encodes `msg` with the production encoding and prefixes its CRC-32.
pub fn frame(msg: &Msg) -> Vec<u8> {
    let body = scistream_proto::envelope::encode(msg);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Checks and decodes a frame with the production decoder.
pub fn unframe(bytes: &[u8]) -> Result<Msg, FrameError> {
    let (sum, body) = bytes.split_at_checked(4).ok_or(FrameError::Short)?;
    if crc32fast::hash(body).to_le_bytes() != sum {
        return Err(FrameError::Checksum);
    }
    scistream_proto::envelope::decode(body).map_err(|e| FrameError::Decode(e.to_string()))
}

/// A client's or controller's call as a SciStream 1.2 client encodes it on the wire (the
/// `scistream.Control` rpc message), if `msg` is one.
pub fn rpc_12(msg: &Msg) -> Option<Vec<u8>> {
    use prost::Message;
    use scistream_proto::convert as c;
    Some(match msg {
        Msg::Req { uid, params, key, .. } => {
            c::request_to_wire(&c::ReqArgs { uid: *uid, params: *params, key: Some(*key) }).encode_to_vec()
        }
        Msg::Update { uid, remote, creds, .. } => {
            let args = c::UpdateArgs { uid: *uid, role: None, remote: remote.clone(), creds: Some(*creds) };
            c::update_to_wire(&args).encode_to_vec()
        }
        Msg::Rel { uid, .. } => c::release_to_wire(*uid).encode_to_vec(),
        Msg::Hello { uid, key, prod_listeners, .. } => {
            let args = c::HelloArgs { uid: *uid, role: None, prod_listeners: prod_listeners.clone(), key: Some(*key) };
            c::hello_to_wire(&args).encode_to_vec()
        }
        Msg::ReqListeners { uid, .. } => c::req_listeners_to_wire(*uid).encode_to_vec(),
        _ => return None,
    })
}

/// Feeds `bytes` to the production decoder and validation of `msg`'s 1.2 rpc: a damaged call
/// is refused or decodes to some valid call, never a panic. Returns whether it was refused.
pub fn decode_rpc_12(msg: &Msg, bytes: &[u8]) -> bool {
    use prost::Message;
    use scistream_proto::{convert as c, pb};
    let limits = scistream_proto::Limits { max_num_conn: 64 };
    match msg {
        Msg::Req { .. } => {
            pb::Request::decode(bytes).ok().and_then(|r| c::request_from_wire(&r, &limits).ok()).is_none()
        }
        Msg::Update { .. } => {
            pb::UpdateTargets::decode(bytes).ok().and_then(|u| c::update_from_wire(&u).ok()).is_none()
        }
        Msg::Rel { .. } => pb::Release::decode(bytes).ok().and_then(|r| c::release_from_wire(&r).ok()).is_none(),
        Msg::Hello { .. } => pb::Hello::decode(bytes).ok().and_then(|h| c::hello_from_wire(&h).ok()).is_none(),
        Msg::ReqListeners { .. } => {
            pb::ReqListeners::decode(bytes).ok().and_then(|r| c::req_listeners_from_wire(&r).ok()).is_none()
        }
        _ => true,
    }
}

fn in_group(p: Peer, group: &[String]) -> bool {
    group.iter().any(|g| g == node_kind(p) || *g == node_name(p))
}

/// What happens to one sent message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Dropped (loss or partition).
    Lost(&'static str),
    /// Delivered once, or twice on a duplicating network.
    Delivered(Copies),
}

/// The copies of a delivered message: when each arrives, and whether it arrives damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copies {
    /// The first copy.
    pub first: (Instant, bool),
    /// The duplicate, if the network made one.
    pub again: Option<(Instant, bool)>,
}

/// The network of one run.
#[derive(Debug, Clone)]
pub struct Network {
    semantics: Semantics,
    lan: [u64; 2],
    wan: [u64; 2],
    heal_at: Instant,
    rules: Vec<FaultRule>,
    partitions: Vec<Partition>,
    last: BTreeMap<(Peer, Peer), Instant>,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn between(rng: &mut ChaCha8Rng, [lo, hi]: [u64; 2]) -> u64 {
    if hi <= lo { lo } else { rng.random_range(lo..=hi) }
}

impl Network {
    /// The network a scenario describes.
    pub fn new(sc: &Scenario) -> Self {
        Self {
            semantics: sc.network,
            lan: sc.lan_ms,
            wan: sc.wan_ms,
            heal_at: Instant::ZERO + ms(sc.heal_at_ms),
            rules: sc.faults.clone(),
            partitions: sc.partitions.clone(),
            last: BTreeMap::new(),
        }
    }

    /// Adds a partition (a script's, at run time).
    pub fn cut(&mut self, p: Partition) {
        self.partitions.push(p);
    }

    /// Whether faults are still active.
    pub fn healed(&self, now: Instant) -> bool {
        now >= self.heal_at
    }

    /// Decides the fate of a message sent now from `from` to `to`.
    pub fn send(&mut self, rng: &mut ChaCha8Rng, now: Instant, from: Peer, to: Peer, msg: &Msg) -> Fate {
        let t = now.as_micros() / 1000;
        let cut = self.partitions.iter().any(|p| {
            t >= p.from_ms
                && t < p.until_ms
                && ((in_group(from, &p.a) && in_group(to, &p.b)) || (in_group(from, &p.b) && in_group(to, &p.a)))
        });
        if cut {
            return Fate::Lost("partition");
        }
        let wan = matches!((from, to), (Peer::Client(_), _) | (_, Peer::Client(_)));
        let latency = ms(between(rng, if wan { self.wan } else { self.lan }));
        let heal_ms = self.heal_at.as_micros() / 1000;
        let mut extra = Duration::ZERO;
        let (mut corrupt, mut copies, mut reordered) = (false, 1, false);
        // Every matching rule applies, in file order: each rolls its own dice.
        for r in &self.rules {
            let applies = t >= r.from_ms
                && t < r.until_ms.unwrap_or(heal_ms)
                && (r.from == "any" || r.from == node_kind(from))
                && (r.to == "any" || r.to == node_kind(to))
                && r.msg.as_deref().is_none_or(|m| m == msg.name());
            if !applies {
                continue;
            }
            if rng.random_bool(r.loss) {
                return Fate::Lost("loss");
            }
            corrupt |= rng.random_bool(r.corrupt);
            if rng.random_bool(r.duplicate) {
                copies = 2;
            }
            if rng.random_bool(r.reorder) {
                reordered = true;
                extra += ms(rng.random_range(0..=r.reorder_ms));
            }
            extra += ms(between(rng, r.delay_ms));
        }
        if self.semantics == Semantics::Duplicating && !self.healed(now) && rng.random_bool(0.05) {
            copies = 2;
        }
        let mut at = now + latency + extra;
        if self.semantics == Semantics::Ordered && !reordered {
            let last = self.last.entry((from, to)).or_insert(Instant::ZERO);
            at = at.max(*last);
            *last = at;
        }
        let again = (copies == 2).then(|| {
            let again = at + ms(between(rng, if wan { self.wan } else { self.lan }));
            (again, corrupt && rng.random_bool(0.5))
        });
        Fate::Delivered(Copies { first: (at, corrupt), again })
    }
}

/// Flips one to three bytes of `frame` (never a no-op).
pub fn corrupt(rng: &mut ChaCha8Rng, frame: &mut [u8]) {
    if frame.is_empty() {
        return;
    }
    for _ in 0..rng.random_range(1..=3) {
        let i = rng.random_range(0..frame.len());
        frame[i] ^= rng.random_range(1..=255u8);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use scistream_fsm::{Msg, Uid};

    use super::*;

    #[test]
    fn an_intact_frame_decodes_to_the_message_sent() {
        let msg = Msg::Released { uid: Uid::from_u128(7), seq: 3 };
        assert_eq!(unframe(&frame(&msg)), Ok(msg));
    }

    #[test]
    fn every_corruption_of_a_frame_is_detected_or_decodes_to_a_valid_message() {
        let msg = Msg::Connected { uid: Uid::from_u128(9), inc: 4 };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut detected = 0;
        for _ in 0..2_000 {
            let mut f = frame(&msg);
            corrupt(&mut rng, &mut f);
            match unframe(&f) {
                Err(FrameError::Checksum) => detected += 1,
                Err(_) => {}
                Ok(m) => assert_eq!(m, msg, "a corrupted frame passed as another message"),
            }
        }
        assert!(detected > 1_900, "checksum caught only {detected} of 2000");
    }

    #[test]
    fn a_short_frame_is_refused() {
        assert_eq!(unframe(&[1, 2]), Err(FrameError::Short));
    }
}
