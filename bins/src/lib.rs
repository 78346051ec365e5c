//! # scistream-bins — the gateway daemon and the user's commands
//!
//! Thin binaries over the other crates: `s2cs` (the control server daemon, with its embedded
//! data server or linked to a data server node), `s2ds` (a data server node on a gateway of
//! its own), `s2uc` (the user's client: one command orchestrates both facilities) and
//! `appctrl` (the application controller's Hello). This library holds what they share:
//! logging, address lists, shutdown signals, exit codes, a data server's addresses and
//! `gen-cert` ([`gateway`]), the daemons' flags and config files ([`config`]), the limits of a
//! daemon's port ([`limits`]), the facility's policy ([`policy`]), the completions and man pages each binary prints
//! ([`manuals`]), human units ([`units`]), how to reach a control server ([`client`]) and the user's
//! identity: login, tokens and which scope each control server needs ([`auth`]).

pub mod auth;
pub mod client;
pub mod config;
pub mod gateway;
pub mod limits;
pub mod manuals;
pub mod ops;
pub mod policy;
pub mod units;

use std::time::Duration;

use scistream_fsm::Addr;

/// A command line that cannot work (exit status [`EXIT_USAGE`]).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Exit status of a command that failed because of what it was told (bad flags, bad input).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a command that failed at a remote end (refused, unreachable, deadline).
pub const EXIT_FAILED: u8 = 1;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, message, fields, the spans with the
    /// session's uid).
    Json,
}

/// Starts logging to stderr: `info` by default, `debug` with `-v`, `trace` with `-vv`;
/// `RUST_LOG` overrides.
pub fn init_logging(verbose: u8) {
    let _ = init_logging_as(verbose, LogFormat::Text);
}

/// A daemon's log level, changeable while it runs (SIGHUP).
pub struct LogLevel(tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>);

impl LogLevel {
    /// Logs at the level `verbose` says from now on (unless `RUST_LOG` decides).
    pub fn set(&self, verbose: u8) -> Result<(), String> {
        self.0.reload(filter(verbose)).map_err(|e| e.to_string())
    }
}

fn filter(verbose: u8) -> tracing_subscriber::EnvFilter {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// As [`init_logging`], in `format`; the handle changes the level later. `None` when logging
/// was set up already.
pub fn init_logging_as(verbose: u8, format: LogFormat) -> Option<LogLevel> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (level, handle) = tracing_subscriber::reload::Layer::new(filter(verbose));
    let registry = tracing_subscriber::registry().with(level);
    let done = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_target(false),
            )
            .try_init(),
    };
    done.ok().map(|()| LogLevel(handle))
}

/// Parses a listener list: `host:port,host:port`, whitespace-separated, or SciStream 1.2's
/// printed Python list (`['host:port', 'host:port']`); IPv6 hosts in brackets (`[::1]:5000`),
/// as [`format_addrs`] prints them.
pub fn parse_addrs(text: &str) -> Result<Vec<Addr>, String> {
    // Only a Python list's own brackets go: an address ends in its port, never in `]`, so a
    // text in brackets is a list, and the brackets of an IPv6 host stay with it.
    let trimmed = text.trim();
    let items = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(trimmed);
    let addrs: Result<Vec<Addr>, String> = items
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim_matches(['\'', '"']))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Addr>().map_err(|e| e.to_string()))
        .collect();
    let addrs = addrs?;
    if addrs.is_empty() {
        return Err(format!("no host:port address in {text:?}"));
    }
    Ok(addrs)
}

/// Formats a listener list the way `parse_addrs` reads it back.
pub fn format_addrs(addrs: &[Addr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// Parses a secret of `N` bytes written as `2·N` hex digits. The error names `what` but never
/// echoes the text, not even in part.
pub fn parse_hex<const N: usize>(text: &str, what: &str) -> Result<[u8; N], String> {
    let bad = || format!("{what}: expected {} hex digits", 2 * N);
    if text.len() != 2 * N || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Longest duration a flag takes: about 31 years (anything longer is a typo, and sums of such
/// durations must not overflow).
pub const MAX_SECS: f64 = 1e9;

/// An optional number of seconds in a configuration file, with the flags' checks
/// ([`parse_secs`]: positive, at most its maximum). For `#[serde(deserialize_with = ...)]`.
///
/// # Errors
/// A value that is not a number of seconds the flags would accept.
pub fn de_opt_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    use serde::Deserialize as _;
    let v = Option::<f64>::deserialize(d)?;
    v.map(|s| parse_secs(&s.to_string()).map_err(serde::de::Error::custom)).transpose()
}

/// Parses a duration in seconds (fractions allowed), at most [`MAX_SECS`].
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{text:?} must be a positive number of seconds"));
    }
    if secs > MAX_SECS {
        return Err(format!("{text:?} seconds is more than {MAX_SECS:e}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_lists_parse_in_every_spelling() {
        let want = vec![Addr::new("10.0.0.1", 5100), Addr::new("gw", 5101)];
        for text in [
            "10.0.0.1:5100,gw:5101",
            "10.0.0.1:5100 gw:5101",
            "['10.0.0.1:5100', 'gw:5101']",
            "[\"10.0.0.1:5100\",\"gw:5101\"]",
        ] {
            assert_eq!(parse_addrs(text), Ok(want.clone()), "{text}");
        }
        assert_eq!(format_addrs(&want), "10.0.0.1:5100,gw:5101");
    }

    /// Found by the `listener_list` fuzz target: every bracket used to be dropped, so
    /// `[::1]:5000` read as host `:` port 1 and an error, and what `format_addrs` printed for an
    /// IPv6 listener could not be read back.
    #[test]
    fn ipv6_listeners_read_back_as_printed() {
        let want = vec![Addr::new("::1", 5000), Addr::new("fe80::1", 7001), Addr::new("gw", 5101)];
        assert_eq!(format_addrs(&want), "[::1]:5000,[fe80::1]:7001,gw:5101");
        for text in [
            "[::1]:5000,[fe80::1]:7001,gw:5101",
            "[::1]:5000 [fe80::1]:7001 gw:5101",
            "['[::1]:5000', '[fe80::1]:7001', 'gw:5101']",
            " [\"[::1]:5000\",\"[fe80::1]:7001\",\"gw:5101\"] ",
        ] {
            assert_eq!(parse_addrs(text), Ok(want.clone()), "{text}");
        }
        // The fuzzer's input: no longer a list of two made-up hosts.
        assert!(parse_addrs("[[::1]:5:5000").is_err());
    }

    #[test]
    fn bad_listener_lists_say_what_is_wrong() {
        assert!(parse_addrs("").unwrap_err().contains("no host:port"));
        assert!(parse_addrs("[]").unwrap_err().contains("no host:port"));
        assert!(parse_addrs("gw").unwrap_err().contains("no port"));
        assert!(parse_addrs("gw:0").unwrap_err().contains("invalid port"));
    }

    #[test]
    fn hex_secrets_parse_and_errors_never_echo_them() {
        assert_eq!(parse_hex::<2>("0aFf", "key"), Ok([0x0a, 0xff]));
        for bad in ["0aF", "0aFfz0", "zzzz", "éé"] {
            let e = parse_hex::<2>(bad, "key").unwrap_err();
            assert_eq!(e, "key: expected 4 hex digits");
        }
    }

    #[test]
    fn durations_are_positive_seconds() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("1e20").is_err(), "beyond what a Duration holds: an error, not a panic");
        assert!(parse_secs("inf").is_err());
        assert_eq!(parse_secs("1e9"), Ok(Duration::from_secs(1_000_000_000)));
    }
}
