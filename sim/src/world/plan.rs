//! The workload of one run, drawn from the seed: who starts which session when, when the
//! producer says Hello, when the session is released.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use scistream_fsm::{Addr, AppKey, Credentials, Uid};

use crate::scenario::Scenario;

/// One session of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Its uid (shared with `dup_of`'s for a duplicate).
    pub uid: Uid,
    /// The client that starts it.
    pub client: u32,
    /// Connections per side.
    pub num_conn: u16,
    /// Requested rate.
    pub rate: u32,
    /// The app key the client mints.
    pub key: AppKey,
    /// The credentials the client mints.
    pub creds: Credentials,
    /// Where its producer listens.
    pub prod_listeners: Vec<Addr>,
    /// Start time (ms).
    pub start_ms: u64,
    /// Delay from creation to Hello (ms); `None`: the producer never says Hello.
    pub hello_after_ms: Option<u64>,
    /// Release at this time during setup (ms), if drawn.
    pub release_early_ms: Option<u64>,
    /// How long it streams once established (ms).
    pub hold_ms: u64,
    /// The session whose uid it reuses.
    pub dup_of: Option<usize>,
    /// An operator releases it at this time (ms), if drawn.
    pub operator_release_ms: Option<u64>,
}

fn between(rng: &mut ChaCha8Rng, [lo, hi]: [u64; 2]) -> u64 {
    if hi <= lo { lo } else { rng.random_range(lo..=hi) }
}

/// Draws the workload.
pub fn draw(sc: &Scenario, rng: &mut ChaCha8Rng) -> Vec<Plan> {
    let w = &sc.workload;
    let originals = sc.sessions - w.duplicate_uids;
    let mut plans: Vec<Plan> = Vec::with_capacity(sc.sessions as usize);
    for i in 0..sc.sessions {
        let dup_of = (i >= originals).then(|| rng.random_range(0..originals) as usize);
        let uid = match dup_of {
            Some(j) => plans[j].uid,
            None => Uid::from_u128(rng.random::<u128>()),
        };
        let client = match dup_of {
            Some(j) => (plans[j].client + 1) % sc.clients,
            None => rng.random_range(0..sc.clients),
        };
        let mut num_conn = rng.random_range(sc.num_conn[0]..=sc.num_conn[1]);
        if let Some(j) = dup_of
            && num_conn == plans[j].num_conn
        {
            num_conn = if num_conn > 1 { num_conn - 1 } else { num_conn + 1 };
        }
        let start_ms = between(rng, [0, w.start_window_ms]);
        let hello_after_ms = (!rng.random_bool(w.hello_never)).then(|| between(rng, w.hello_delay_ms));
        let release_early_ms = rng.random_bool(w.release_during_setup).then(|| start_ms + between(rng, [0, 3_000]));
        // A 1.2 client's session: no app key, no credentials.
        let legacy = rng.random_bool(w.legacy);
        let operator_release_ms = rng.random_bool(w.operator_release).then(|| start_ms + between(rng, [0, 20_000]));
        let mut prod_listeners: Vec<Addr> =
            (0..num_conn).map(|k| Addr::new("producer", 7000 + (i as u16 % 512) * 16 + k % 16)).collect();
        // Drawn only where asked, so the other scenarios' seeds keep their runs.
        if w.rogue_targets > 0.0 && rng.random_bool(w.rogue_targets) {
            let own = super::own_addr(scistream_fsm::Role::Prod);
            prod_listeners[0] = Addr::new(own.ip().to_string(), own.port());
        }
        plans.push(Plan {
            uid,
            client,
            num_conn,
            rate: rng.random_range(0..=20_000),
            key: if legacy { AppKey::default() } else { AppKey(rng.random()) },
            creds: if legacy { Credentials::default() } else { Credentials(rng.random()) },
            prod_listeners,
            start_ms,
            hello_after_ms,
            release_early_ms,
            hold_ms: between(rng, w.hold_ms),
            dup_of,
            operator_release_ms,
        });
    }
    plans
}
