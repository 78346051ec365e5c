//! Retransmission with exponential backoff.

use std::time::Duration;

/// Exponential backoff: `initial`, doubled per attempt, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retransmission.
    pub initial: Duration,
    /// Longest delay between two retransmissions.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `attempt` sends (attempt 1 is the first send).
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << shift).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(200), max: Duration::from_secs(5) }
    }
}
