//! The protocol's timing in one place: every core's deadlines, leases, tombstones and
//! retransmission backoffs derive from one [`Profile`]. The daemons, the user's commands and
//! the simulator all start from [`Profile::production`] and change only what their flags or
//! scenarios name, so no binary can pick a data-server lease shorter than its control server's.

use std::time::Duration;

/// Exponential backoff: `initial`, doubled per attempt, capped at `max`, each delay shortened
/// by up to `jitter_pct` percent. The jitter is drawn from a salt the caller passes (the
/// participant's seed mixed with the session), not from a clock or a global generator: a core
/// stays a pure function of its inputs, and two clients restarted together do not retransmit
/// in lockstep because their seeds differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// Delay before the first retransmission.
    pub initial: Duration,
    /// Longest delay between two retransmissions.
    pub max: Duration,
    /// Up to this share of each delay (percent, 0..=100) is taken off at random.
    pub jitter_pct: u8,
}

impl Backoff {
    /// A backoff without jitter.
    pub const fn fixed(initial: Duration, max: Duration) -> Self {
        Self { initial, max, jitter_pct: 0 }
    }

    /// The delay after `attempt` sends (attempt 1 is the first send), jittered by `salt`.
    pub fn delay(&self, attempt: u32, salt: u64) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1 << shift).min(self.max);
        let pct = u64::from(self.jitter_pct.min(100));
        if pct == 0 {
            return base;
        }
        // A fraction in [0, 1) from the salt and the attempt, in 1/1024ths.
        let r = mix(salt ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1024;
        let cut = base.saturating_mul(u32::try_from(pct * r).unwrap_or(u32::MAX)) / (100 * 1024);
        base.saturating_sub(cut)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::fixed(Duration::from_millis(200), Duration::from_secs(5))
    }
}

/// splitmix64's finaliser: a well-spread 64-bit hash.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A session's share of a participant's jitter: mixes the uid into the participant's seed.
pub fn salt(seed: u64, uid: Option<crate::types::Uid>) -> u64 {
    let (hi, lo) = uid.map(|u| u.0.as_u64_pair()).unwrap_or((0, 0));
    mix(seed ^ mix(hi ^ mix(lo)))
}

/// Every timing parameter of the protocol. Derived values (leases, the client's setup
/// deadline) are methods, so their relations hold whatever a flag changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Deadline of one call from a client to a control server (gRPC deadline).
    pub call_deadline: Duration,
    /// How long a session may take at a control server from REQ to established: the
    /// producer's Hello and UpdateTargets included (its lease; SciStream 1.2 waits 180 s).
    pub hello_timeout: Duration,
    /// How much longer a data server holds a reservation than its control server's lease, so
    /// the control server always releases first and never finds its ports gone under it.
    pub ds_lease_margin: Duration,
    /// How long a finished session is remembered to answer retransmissions.
    pub tombstone: Duration,
    /// Retransmission between a control server and its data servers (LAN), and of a data
    /// server's boot announcement.
    pub server_backoff: Backoff,
    /// Retransmission of a user client's requests. Production calls run over TCP and the
    /// client retransmits only what a call could not deliver, so it starts late.
    pub client_backoff: Backoff,
    /// Retransmission of an application controller's Hello while the session is not there yet.
    pub app_backoff: Backoff,
    /// How often a control server that hears nothing else from its data server asks whether
    /// it is still there (an Attach it answers).
    pub link_heartbeat: Duration,
    /// How long a control server goes without a word from its data server before it takes the
    /// data server for lost: it fails every live session and attaches again, asking the data
    /// server to drop whatever it still runs.
    pub link_silence: Duration,
    /// This participant's jitter seed (drawn at random by each process or simulated node).
    pub jitter_seed: u64,
}

impl Profile {
    /// The production timing: 30 s calls, 180 s for the Hello (as 1.2), data-server leases
    /// 30 s longer, 5 min tombstones, backoffs jittered by up to 25 %, and a data server
    /// taken for lost after 30 s of silence (asked every 10 s).
    pub const fn production() -> Self {
        let ms = Duration::from_millis;
        Self {
            call_deadline: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(180),
            ds_lease_margin: Duration::from_secs(30),
            tombstone: Duration::from_secs(300),
            server_backoff: Backoff { initial: ms(50), max: ms(2_000), jitter_pct: 25 },
            client_backoff: Backoff { initial: ms(2_000), max: ms(10_000), jitter_pct: 25 },
            app_backoff: Backoff { initial: ms(20), max: ms(5_000), jitter_pct: 25 },
            link_heartbeat: Duration::from_secs(10),
            link_silence: Duration::from_secs(30),
            jitter_seed: 0,
        }
    }

    /// Retransmission of a user client's admission probe (ReqListeners to the producer's
    /// facility until it has bound the session's listeners): a tenth of `app_backoff` at first,
    /// doubling to its maximum. The first probe goes with the REQ and usually finds the
    /// listeners not yet bound; they are a millisecond away, not a Hello's round.
    pub fn probe_backoff(&self) -> Backoff {
        Backoff { initial: self.app_backoff.initial / 10, ..self.app_backoff }
    }

    /// The control server's lease on a session that is not yet established.
    pub const fn cs_lease(&self) -> Duration {
        self.hello_timeout
    }

    /// The data server's lease on a reservation not yet bridged: longer than the control
    /// server's by the margin.
    pub fn ds_lease(&self) -> Duration {
        self.hello_timeout.saturating_add(self.ds_lease_margin)
    }

    /// How long a user client lets a setup run before it gives up and releases: the control
    /// server's lease plus one call, so the server's own verdict arrives first.
    pub fn setup_deadline(&self) -> Duration {
        self.hello_timeout.saturating_add(self.call_deadline)
    }

    /// How long an application controller keeps saying Hello.
    pub const fn hello_deadline(&self) -> Duration {
        self.hello_timeout
    }

    /// The same profile with another jitter seed.
    pub const fn seeded(self, jitter_seed: u64) -> Self {
        Self { jitter_seed, ..self }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self::production()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_without_jitter() {
        let b = Backoff::fixed(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<_> = (1..=5).map(|a| b.delay(a, 7).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_stays_within_its_share_and_differs_between_salts() {
        let b = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(8), jitter_pct: 25 };
        let mut distinct = std::collections::BTreeSet::new();
        for s in 0..200u64 {
            let d = b.delay(1, salt(s, None));
            assert!(d <= Duration::from_secs(1) && d >= Duration::from_millis(750), "{d:?}");
            distinct.insert(d);
            assert_eq!(d, b.delay(1, salt(s, None)), "the same salt gives the same delay");
        }
        assert!(distinct.len() > 100, "only {} distinct delays in 200 seeds", distinct.len());
    }

    #[test]
    fn the_data_server_lease_always_exceeds_the_control_server_lease() {
        let mut p = Profile::production();
        for secs in [1, 60, 180, 100_000] {
            p.hello_timeout = Duration::from_secs(secs);
            assert!(p.ds_lease() > p.cs_lease());
            assert!(p.setup_deadline() > p.cs_lease());
        }
    }
}
