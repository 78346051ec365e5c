//! `s2uc status UID --watch`: the session's live throughput at one control server, refreshed
//! every `--interval`. Bounded: it ends when the session ends (released or failed), on Ctrl-C,
//! or after `--count` refreshes; a status call that fails ends it too.
//!
//! Exit status: 0 when the session was released, the count was reached or the user pressed
//! Ctrl-C; 1 when the session failed or the control server could not be asked.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use scistream_bins::EXIT_FAILED;
use scistream_fsm::Uid;
use scistream_transport::client::ControlClient;

use crate::show;

pub(crate) async fn watch(
    c: &ControlClient,
    json: bool,
    uid: Uid,
    interval: Duration,
    count: Option<u64>,
) -> Result<ExitCode> {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Installed before the first line is printed: ctrl_c() installs its handler only when
    // first polled, and a ^C that came before would have killed the process mid-watch.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot catch ^C (SIGINT)")?;
    let mut shown = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = interrupt.recv() => return Ok(ExitCode::SUCCESS),
        }
        let v = c.status(uid).await.with_context(|| format!("watching {uid}"))?;
        show::watch_line(json, &v, started.elapsed().as_secs_f64());
        shown += 1;
        match v.state.as_str() {
            "Released" => {
                if !json {
                    say!("session {uid} released");
                }
                return Ok(ExitCode::SUCCESS);
            }
            "Failed" => {
                if !json {
                    let why = v.failure.map(|c| c.to_string()).unwrap_or_default();
                    let reason =
                        if v.failure_reason.is_empty() { String::new() } else { format!(" ({})", v.failure_reason) };
                    say!("session {uid} failed: {why}{reason}");
                }
                return Ok(ExitCode::from(EXIT_FAILED));
            }
            _ => {}
        }
        if count.is_some_and(|n| shown >= n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
