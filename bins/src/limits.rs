//! The limits of a daemon's gRPC port (`s2cs`'s control port, `s2ds`'s link port): flags, the
//! `[limits]` table of the config file, and their merge over the defaults of
//! [`PortLimits`](scistream_transport::ports::PortLimits).

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use scistream_transport::ports::PortLimits;
use serde::Deserialize;

/// The port's limits; in the config file, the `[limits]` table with the same names.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortArgs {
    /// Connections open at once, TLS handshakes included; more are closed at accept
    /// [default: 1024].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// HTTP/2 streams open at once per connection (SETTINGS_MAX_CONCURRENT_STREAMS; more are
    /// refused) [default: 128].
    #[arg(long)]
    pub max_streams: Option<u32>,
    /// Calls in flight at once on the port, counted from their headers, before authentication;
    /// more are answered RESOURCE_EXHAUSTED [default: 16384].
    #[arg(long)]
    pub max_calls: Option<usize>,
    /// Largest HTTP/2 header list a peer may send, bytes [default: 16384].
    #[arg(long)]
    pub max_header_list: Option<u32>,
    /// Seconds a connection may stay without a call in flight (one that never sends a call,
    /// one whose calls ended) before it is closed [default: 60].
    #[arg(long, value_parser = crate::parse_secs)]
    #[serde(default, with = "secs")]
    pub idle_timeout: Option<Duration>,
    /// Seconds between the server's HTTP/2 PINGs on each connection [default: 60].
    #[arg(long, value_parser = crate::parse_secs)]
    #[serde(default, with = "secs")]
    pub keepalive_interval: Option<Duration>,
    /// Seconds a PING may go unanswered before its connection is closed [default: 20].
    #[arg(long, value_parser = crate::parse_secs)]
    #[serde(default, with = "secs")]
    pub keepalive_timeout: Option<Duration>,
    /// Seconds a TLS handshake may take [default: 10].
    #[arg(long, value_parser = crate::parse_secs)]
    #[serde(default, with = "secs")]
    pub handshake_timeout: Option<Duration>,
}

impl PortArgs {
    /// The flags over the file's over the defaults; a count of zero is refused.
    pub fn merge(&self, file: &Self) -> Result<PortLimits> {
        let d = PortLimits::DEFAULT;
        let limits = PortLimits {
            max_connections: self.max_connections.or(file.max_connections).unwrap_or(d.max_connections),
            max_streams: self.max_streams.or(file.max_streams).unwrap_or(d.max_streams),
            max_calls: self.max_calls.or(file.max_calls).unwrap_or(d.max_calls),
            max_header_list: self.max_header_list.or(file.max_header_list).unwrap_or(d.max_header_list),
            idle_timeout: self.idle_timeout.or(file.idle_timeout).unwrap_or(d.idle_timeout),
            keepalive_interval: self.keepalive_interval.or(file.keepalive_interval).unwrap_or(d.keepalive_interval),
            keepalive_timeout: self.keepalive_timeout.or(file.keepalive_timeout).unwrap_or(d.keepalive_timeout),
            handshake_timeout: self.handshake_timeout.or(file.handshake_timeout).unwrap_or(d.handshake_timeout),
        };
        for (flag, value) in [
            ("--max-connections", limits.max_connections),
            ("--max-streams", limits.max_streams as usize),
            ("--max-calls", limits.max_calls),
            ("--max-header-list", limits.max_header_list as usize),
        ] {
            if value == 0 {
                bail!("{flag} 0: the port would serve nobody");
            }
        }
        // tokio's semaphores hold at most usize::MAX >> 3 permits.
        if limits.max_connections.max(limits.max_calls) > tokio::sync::Semaphore::MAX_PERMITS {
            bail!("--max-connections and --max-calls: at most {}", tokio::sync::Semaphore::MAX_PERMITS);
        }
        Ok(limits)
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        // The flags' parser, so the file gets the same checks (positive, at most MAX_SECS).
        let v = Option::<f64>::deserialize(d)?;
        v.map(|s| crate::parse_secs(&s.to_string()).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        limits: PortArgs,
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let file: File =
            toml::from_str("[limits]\nmax-connections = 10\nidle-timeout = 2.5\nmax-streams = 7\n").unwrap();
        let flags = PortArgs { max_streams: Some(9), ..PortArgs::default() };
        let l = flags.merge(&file.limits).unwrap();
        assert_eq!(l.max_connections, 10);
        assert_eq!(l.idle_timeout, Duration::from_millis(2_500));
        assert_eq!(l.max_streams, 9);
        assert_eq!(l.max_calls, PortLimits::DEFAULT.max_calls);
        assert_eq!(PortArgs::default().merge(&PortArgs::default()).unwrap(), PortLimits::DEFAULT);
    }

    #[test]
    fn zero_counts_unknown_keys_and_bad_durations_are_refused() {
        let zero = PortArgs { max_streams: Some(0), ..PortArgs::default() };
        assert!(zero.merge(&PortArgs::default()).unwrap_err().to_string().contains("--max-streams 0"));
        assert!(toml::from_str::<File>("[limits]\nmax-conections = 10\n").is_err());
        assert!(toml::from_str::<File>("[limits]\nidle-timeout = -1\n").is_err());
    }
}
