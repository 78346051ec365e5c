//! What unknown tokens may cost per caller address: a token bucket per peer, charged before a
//! token the cache does not know is sent to the authorization server, and refunded when that
//! token turns out valid (so the bucket counts bad tokens: a legitimate client does not drain
//! its own).
//!
//! Pure data with the time passed in; [`IntrospectAuth`](super::IntrospectAuth) holds it under
//! one mutex and never awaits while holding it. Memory is bounded: at most
//! [`PeerLimit::peers`] addresses are tracked, the one seen least recently forgotten first (a
//! forgotten peer starts again with a full bucket, as a new one does).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// How many unknown tokens one address may have checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerLimit {
    /// Sustained rate, tokens per second; 0 turns the limit off.
    pub rate: f64,
    /// Tokens an address may have checked at once before the rate applies.
    pub burst: u32,
    /// Most addresses tracked at once.
    pub peers: usize,
}

impl PeerLimit {
    /// `s2cs`'s defaults: 5 unknown tokens a second, bursts of 20, 10,000 addresses.
    pub const DEFAULT: Self = Self { rate: 5.0, burst: 20, peers: 10_000 };
    /// No limit.
    pub const OFF: Self = Self { rate: 0.0, burst: 0, peers: 0 };

    fn is_off(&self) -> bool {
        self.rate <= 0.0 || self.peers == 0
    }
}

/// Least time between two warnings about refused peers.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Who a bucket belongs to: an IPv4 address, or an IPv6 /64 (one subscriber's prefix: a host
/// that owns a /64 must not get a bucket per address in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
    /// A connection without an address (not a TCP one): all share one bucket.
    Unknown,
}

impl PeerKey {
    pub(crate) fn of(peer: Option<IpAddr>) -> Self {
        match peer {
            None => Self::Unknown,
            Some(IpAddr::V4(ip)) => Self::V4(ip),
            Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => {
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&ip.octets()[..8]);
                    Self::V6(net)
                }
            },
        }
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6(net) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(net);
                write!(f, "{}/64", std::net::Ipv6Addr::from(octets))
            }
            Self::Unknown => f.write_str("(no address)"),
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Its place in [`Peers::order`].
    seen: u64,
}

/// The verdict on one unknown token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Check it.
    Admit,
    /// Refuse it unchecked; `warn` holds how many were refused since the last warning when one
    /// is due now (at most one per [`WARN_EVERY`]).
    Refuse {
        /// Refusals to report in a warning now, if one is due.
        warn: Option<u64>,
    },
}

/// The buckets (see the module's documentation).
pub(crate) struct Peers {
    limit: PeerLimit,
    buckets: HashMap<PeerKey, Bucket>,
    /// Peers by when they were last seen (a counter), oldest first.
    order: BTreeMap<u64, PeerKey>,
    clock: u64,
    last_warning: Option<Instant>,
    unreported: u64,
}

impl Peers {
    pub(crate) fn new(limit: PeerLimit) -> Self {
        Self { limit, buckets: HashMap::new(), order: BTreeMap::new(), clock: 0, last_warning: None, unreported: 0 }
    }

    /// Charges `peer` one unknown token at `now`.
    pub(crate) fn admit(&mut self, peer: PeerKey, now: Instant) -> Verdict {
        if self.limit.is_off() {
            return Verdict::Admit;
        }
        self.clock += 1;
        let seen = self.clock;
        let (rate, burst) = (self.limit.rate, f64::from(self.limit.burst));
        let admitted = match self.buckets.get_mut(&peer) {
            Some(b) => {
                self.order.remove(&b.seen);
                b.tokens = (b.tokens + rate * now.saturating_duration_since(b.at).as_secs_f64()).min(burst);
                b.at = now;
                b.seen = seen;
                let ok = b.tokens >= 1.0;
                if ok {
                    b.tokens -= 1.0;
                }
                ok
            }
            None => {
                while self.buckets.len() >= self.limit.peers {
                    let Some((_, oldest)) = self.order.pop_first() else { break };
                    self.buckets.remove(&oldest);
                }
                let ok = burst >= 1.0;
                self.buckets.insert(peer, Bucket { tokens: if ok { burst - 1.0 } else { 0.0 }, at: now, seen });
                ok
            }
        };
        self.order.insert(seen, peer);
        if admitted {
            return Verdict::Admit;
        }
        self.unreported += 1;
        let due = self.last_warning.is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY);
        if !due {
            return Verdict::Refuse { warn: None };
        }
        self.last_warning = Some(now);
        Verdict::Refuse { warn: Some(std::mem::take(&mut self.unreported)) }
    }

    /// Gives `peer` back the token its last admitted request cost: the token it asked about
    /// was valid. The bucket counts unknown tokens that turned out bad, so a legitimate client
    /// (even under `--auth-cache-ttl 0`, where every call is introspected) never empties its own.
    pub(crate) fn refund(&mut self, peer: PeerKey) {
        let burst = f64::from(self.limit.burst);
        if let Some(b) = self.buckets.get_mut(&peer) {
            b.tokens = (b.tokens + 1.0).min(burst);
        }
    }

    /// How many addresses are tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> PeerKey {
        PeerKey::of(Some(IpAddr::from([192, 0, 2, last])))
    }

    fn limit(rate: f64, burst: u32, peers: usize) -> PeerLimit {
        PeerLimit { rate, burst, peers }
    }

    fn admitted(p: &mut Peers, peer: PeerKey, now: Instant, n: usize) -> usize {
        (0..n).filter(|_| p.admit(peer, now) == Verdict::Admit).count()
    }

    #[test]
    fn a_peer_gets_its_burst_then_the_rate() {
        let mut p = Peers::new(limit(2.0, 5, 10));
        let t0 = Instant::now();
        assert_eq!(admitted(&mut p, v4(1), t0, 20), 5, "the burst");
        assert_eq!(admitted(&mut p, v4(1), t0 + Duration::from_millis(499), 5), 0, "under one token refilled");
        assert_eq!(admitted(&mut p, v4(1), t0 + Duration::from_secs(3), 20), 5, "3 s at 2/s, capped at the burst");
    }

    #[test]
    fn peers_have_buckets_of_their_own() {
        let mut p = Peers::new(limit(1.0, 3, 10));
        let t0 = Instant::now();
        assert_eq!(admitted(&mut p, v4(1), t0, 10), 3);
        assert_eq!(admitted(&mut p, v4(2), t0, 10), 3, "another address is not charged for the first");
    }

    #[test]
    fn an_ipv6_prefix_is_one_peer_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(PeerKey::of(Some(a)), PeerKey::of(Some(b)));
        assert_ne!(PeerKey::of(Some(a)), PeerKey::of(Some(other)));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(PeerKey::of(Some(mapped)), v4(7));
        assert_eq!(PeerKey::of(Some(a)).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_peer_seen_least_recently() {
        let mut p = Peers::new(limit(0.001, 1, 3));
        let t0 = Instant::now();
        for last in 1..=3 {
            assert_eq!(p.admit(v4(last), t0), Verdict::Admit);
        }
        // Peer 1 seen again (refused: its one token is spent), so peer 2 is now the oldest.
        assert!(matches!(p.admit(v4(1), t0), Verdict::Refuse { .. }));
        assert_eq!(p.admit(v4(4), t0), Verdict::Admit);
        assert_eq!(p.tracked(), 3);
        assert!(matches!(p.admit(v4(1), t0), Verdict::Refuse { .. }), "peer 1 was kept");
        assert_eq!(p.admit(v4(2), t0), Verdict::Admit, "peer 2 was forgotten: a full bucket again");
        assert_eq!(p.tracked(), 3);
        assert_eq!(p.order.len(), 3, "the order index holds exactly the tracked peers");
    }

    #[test]
    fn refusals_warn_at_most_once_per_interval_with_the_count_since_the_last() {
        let mut p = Peers::new(limit(0.001, 1, 10));
        let t0 = Instant::now();
        assert_eq!(p.admit(v4(1), t0), Verdict::Admit);
        assert_eq!(p.admit(v4(1), t0), Verdict::Refuse { warn: Some(1) });
        for _ in 0..9 {
            assert_eq!(p.admit(v4(1), t0 + Duration::from_secs(1)), Verdict::Refuse { warn: None });
        }
        assert_eq!(p.admit(v4(1), t0 + WARN_EVERY), Verdict::Refuse { warn: Some(10) });
    }

    #[test]
    fn a_valid_token_gives_its_charge_back() {
        let mut p = Peers::new(limit(0.001, 2, 10));
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(p.admit(v4(1), t0), Verdict::Admit);
            p.refund(v4(1));
        }
        assert_eq!(admitted(&mut p, v4(1), t0, 10), 2, "still the whole burst, no more");
    }

    #[test]
    fn off_admits_everything_and_tracks_nothing() {
        let mut p = Peers::new(PeerLimit::OFF);
        assert_eq!(admitted(&mut p, v4(1), Instant::now(), 1000), 1000);
        assert_eq!(p.tracked(), 0);
    }
}
