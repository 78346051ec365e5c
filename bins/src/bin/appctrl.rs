//! `appctrl`: the application controller. Says Hello for a session to its facility's control
//! server (retrying with backoff until the session exists), then optionally launches the
//! application with the facility's listeners in its environment.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Parser;
use scistream_bins::client::{ConnectOpts, say_hello};
use scistream_bins::{EXIT_FAILED, EXIT_USAGE, format_addrs, init_logging, parse_addrs};
use scistream_fsm::{AppKey, Role, Uid};

/// SciStream application controller.
#[derive(Parser)]
#[command(name = "appctrl", version, about)]
struct Cli {
    /// The session.
    uid: Uid,
    /// The facility's control server.
    #[arg(long, default_value = "localhost:5000")]
    s2cs: String,
    /// The application's role: PROD (the producer says where it listens) or CONS.
    #[arg(long, default_value = "PROD", value_parser = parse_role)]
    role: Role,
    /// The session's app key (hex, from `s2uc request`); omit for a SciStream 1.2 session.
    #[arg(long, value_parser = parse_key)]
    key: Option<AppKey>,
    /// Where the producer listens: host:port,host:port.
    #[arg(long, alias = "prod_listeners")]
    listeners: Option<String>,
    /// How long to keep saying Hello, seconds.
    #[arg(long = "hello-timeout", default_value = "180", value_parser = scistream_bins::parse_secs)]
    hello_timeout: Duration,
    #[command(flatten)]
    conn: ConnectOpts,
    /// More logging.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The application to launch once the Hello is accepted (after `--`); it finds the
    /// session in SCISTREAM_UID and the facility's listeners in SCISTREAM_LISTENERS.
    #[arg(last = true)]
    command: Vec<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s.to_ascii_uppercase().as_str() {
        "PROD" => Ok(Role::Prod),
        "CONS" => Ok(Role::Cons),
        _ => Err(format!("role {s:?}: expected PROD or CONS")),
    }
}

fn parse_key(s: &str) -> Result<AppKey, String> {
    scistream_bins::parse_hex(s, "app key").map(AppKey)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let listeners = match (&cli.listeners, cli.role) {
        (Some(text), _) => match parse_addrs(text) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("appctrl: --listeners: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        (None, Role::Prod) => {
            eprintln!("appctrl: a producer's controller needs --listeners (where the producer listens)");
            return ExitCode::from(EXIT_USAGE);
        }
        (None, Role::Cons) => Vec::new(),
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run(&cli, &listeners)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("appctrl: error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Connects to the control server, again while it cannot be reached (a LAN cut, a restart)
/// until `within` passes: the Hello's own deadline, so a controller started while its gateway
/// is out of reach still says its Hello once it is back. Files that cannot be read and bad
/// addresses are not retried.
async fn connect(cli: &Cli, within: Duration) -> Result<scistream_transport::client::ControlClient> {
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match cli.conn.client(&cli.s2cs).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                let transient = matches!(e.downcast_ref(), Some(scistream_transport::tls::TlsError::Connect { .. }));
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !transient || left.is_zero() {
                    return Err(e);
                }
                if !warned {
                    tracing::warn!("{e:#}; trying again for up to {within:?}");
                    warned = true;
                }
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn run(cli: &Cli, prod: &[scistream_fsm::Addr]) -> Result<ExitCode> {
    let started = tokio::time::Instant::now();
    let client = connect(cli, cli.hello_timeout).await?;
    let left = cli.hello_timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    let gateway = say_hello(client, cli.uid, cli.role, prod, cli.key, left)
        .await
        .map_err(|e| e.context(format!("at {}", cli.s2cs)))?;
    println!("hello accepted; facility listeners {}", format_addrs(&gateway));
    let Some((program, args)) = cli.command.split_first() else { return Ok(ExitCode::SUCCESS) };
    let status = tokio::process::Command::new(program)
        .args(args)
        .env("SCISTREAM_UID", cli.uid.to_string())
        .env("SCISTREAM_LISTENERS", format_addrs(&gateway))
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| anyhow!("launching {program}: {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(EXIT_FAILED)),
        None => ExitCode::from(EXIT_FAILED),
    })
}
