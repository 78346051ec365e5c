//! The line `s2uc request` keeps up to date on a terminal while it waits for the producer's
//! Hello: that it is waiting, and how long is left before the session's deadline. Only when
//! stderr is a terminal and the output is not `--json`: a pipe or a log file gets nothing.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Redraws the waiting line once a second between [`Indicator::start`] and
/// [`Indicator::clear`].
pub(crate) struct Indicator {
    /// Whether to show anything at all (a terminal, and not `--json`).
    enabled: bool,
    /// Between `start` and `clear`.
    active: bool,
    /// When the wait for the Hello ends.
    deadline: Instant,
    ticker: tokio::time::Interval,
    /// Whether a line is on the screen (to erase).
    shown: bool,
}

impl Indicator {
    /// An indicator for a wait that ends at `deadline`; silent with `json` or when stderr is
    /// not a terminal.
    pub(crate) fn new(json: bool, deadline: Instant) -> Self {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Self { enabled: !json && std::io::stderr().is_terminal(), active: false, deadline, ticker, shown: false }
    }

    /// The wait began (the session was announced).
    pub(crate) fn start(&mut self) {
        self.active = self.enabled;
    }

    /// Resolves at the next redraw, having redrawn; never while inactive.
    pub(crate) async fn tick(&mut self) {
        if !self.active {
            return std::future::pending().await;
        }
        self.ticker.tick().await;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let mut err = std::io::stderr().lock();
        // \r and "erase line": the line is rewritten in place.
        let _ = write!(
            err,
            "\r\x1b[2Kwaiting for the producer's Hello: {} left (Ctrl-C releases the session)",
            left_text(left)
        );
        let _ = err.flush();
        self.shown = true;
    }

    /// The wait is over: erase the line and stop redrawing.
    pub(crate) fn clear(&mut self) {
        self.active = false;
        if std::mem::take(&mut self.shown) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// `2m 53s`, `53s`.
fn left_text(left: Duration) -> String {
    let s = left.as_secs();
    if s >= 60 { format!("{}m {:02}s", s / 60, s % 60) } else { format!("{s}s") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_left_reads_in_minutes_and_seconds() {
        use std::time::Duration;
        assert_eq!(super::left_text(Duration::from_secs(173)), "2m 53s");
        assert_eq!(super::left_text(Duration::from_millis(53_900)), "53s");
        assert_eq!(super::left_text(Duration::ZERO), "0s");
    }
}
