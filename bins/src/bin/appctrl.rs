//! `appctrl`: the application controller. Says Hello for a session to its facility's control
//! server (retrying with backoff until the session exists), then optionally launches the
//! application with the facility's listeners in its environment and waits for it, passing
//! SIGTERM and SIGINT on to it (bounded by `--grace`, then SIGKILL).
//!
//! Exit status: 0 success; 1 the Hello failed (refused, unreachable, deadline); 2 bad usage;
//! with an application: its own exit status, 128 + N when signal N ended it, 124 when it did
//! not exit within `--grace` of a signal passed on to it (it was killed), 126 when it could
//! not be run, 127 when it was not found.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Parser;
use scistream_bins::client::{ConnectOpts, say_hello};
use scistream_bins::{EXIT_FAILED, EXIT_USAGE, format_addrs, init_logging, parse_addrs};
use scistream_fsm::{AppKey, Role, Uid};

/// SciStream application controller.
#[derive(Parser)]
#[command(name = "appctrl", version, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The session.
    #[arg(required = true)]
    uid: Option<Uid>,
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
    /// How long the launched application has to exit after appctrl passed it a SIGTERM or
    /// SIGINT, seconds; then it is killed (SIGKILL) and appctrl exits 124.
    #[arg(long, default_value = "10", value_parser = scistream_bins::parse_secs)]
    grace: Duration,
    /// The application to launch once the Hello is accepted (after `--`); it finds the
    /// session in SCISTREAM_UID and the facility's listeners in SCISTREAM_LISTENERS.
    #[arg(last = true)]
    command: Vec<String>,
    #[command(subcommand)]
    manuals: Option<scistream_bins::manuals::Manuals>,
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
    if let Some(m) = &cli.manuals {
        return m.print::<Cli>();
    }
    let Some(uid) = cli.uid else { unreachable!("clap requires the uid without a subcommand") };
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
    match rt.block_on(run(&cli, uid, &listeners)) {
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

async fn run(cli: &Cli, uid: Uid, prod: &[scistream_fsm::Addr]) -> Result<ExitCode> {
    let started = tokio::time::Instant::now();
    let client = connect(cli, cli.hello_timeout).await?;
    let left = cli.hello_timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
    let gateway = say_hello(client, uid, cli.role, prod, cli.key, left)
        .await
        .map_err(|e| e.context(format!("at {}", cli.s2cs)))?;
    println!("hello accepted; facility listeners {}", format_addrs(&gateway));
    let Some((program, args)) = cli.command.split_first() else { return Ok(ExitCode::SUCCESS) };
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // Caught from before the launch, so none reaching appctrl meanwhile ends it and orphans the
    // application.
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("SCISTREAM_UID", uid.to_string())
        .env("SCISTREAM_LISTENERS", format_addrs(&gateway))
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("appctrl: error: launching {program}: {e}");
            let code = if e.kind() == std::io::ErrorKind::NotFound { EXIT_NOT_FOUND } else { EXIT_CANNOT_RUN };
            return Ok(ExitCode::from(code));
        }
    };
    supervise(child, program, cli.grace, signals).await
}

/// The application could not be found (as a shell says it).
const EXIT_NOT_FOUND: u8 = 127;
/// The application could not be run (as a shell says it).
const EXIT_CANNOT_RUN: u8 = 126;
/// The application did not exit within `--grace` of the signal passed on to it, and was killed.
const EXIT_KILLED_AFTER_GRACE: u8 = 124;

/// Waits for the launched application, passing SIGTERM and SIGINT that reach `appctrl` on to
/// it. After the first, it has `grace` to exit; then it is killed (SIGKILL) and `appctrl`
/// exits [`EXIT_KILLED_AFTER_GRACE`]. Otherwise `appctrl` exits as the application did: its
/// exit status, or 128 + N when signal N ended it.
async fn supervise(
    mut child: tokio::process::Child,
    program: &str,
    grace: Duration,
    (mut term, mut int): (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
) -> Result<ExitCode> {
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).map(nix::unistd::Pid::from_raw);
    let mut deadline: Option<tokio::time::Instant> = None;
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status.map_err(|e| anyhow!("waiting for {program}: {e}"))?,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
            () = sleep_until(deadline) => {
                eprintln!("appctrl: {program} did not exit within {grace:?} of the signal; killing it (SIGKILL)");
                let _ = child.kill().await;
                return Ok(ExitCode::from(EXIT_KILLED_AFTER_GRACE));
            }
        };
        if let Some(pid) = pid {
            tracing::info!("{forward}: passing it on to {program} (pid {pid}), which has {grace:?} to exit");
            let _ = nix::sys::signal::kill(pid, forward);
        }
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + grace);
    };
    use std::os::unix::process::ExitStatusExt as _;
    Ok(match (status.code(), status.signal()) {
        (Some(0), _) => ExitCode::SUCCESS,
        (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(EXIT_FAILED)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(EXIT_FAILED)),
        (None, None) => ExitCode::from(EXIT_FAILED),
    })
}

/// Sleeps until `at`; forever when there is none.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
