//! `s2uc`: the SciStream user client. `s2uc request` sets up a whole stream across two
//! facilities; the SciStream 1.2 subcommands drive one facility at a time.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use ractor::Actor;
use scistream_actors::{S2ucActor, S2ucArgs, S2ucMsg};
use scistream_bins::auth::{AuthOpts, LoginHow, UserAuth};
use scistream_bins::client::ConnectOpts;
use scistream_bins::{EXIT_FAILED, EXIT_USAGE, Usage, format_addrs, init_logging, parse_addrs};
use scistream_fsm::timing::Profile;
use scistream_fsm::{Addr, AppKey, Credentials, ErrorCode, Notice, Token, Uid, s2uc};
use scistream_transport::client::{CallError, ControlClient};
use serde_json::json;

/// `println!` that ends the process quietly when stdout is a closed pipe (`s2uc list | head`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod show;
mod wait;
mod watch;

use show::hex;

/// SciStream user client.
#[derive(Parser)]
#[command(name = "s2uc", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    #[command(flatten)]
    conn: ConnectOpts,
    #[command(flatten)]
    auth: AuthOpts,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// More logging.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Args, Clone)]
struct Size {
    /// Parallel connections.
    #[arg(long, alias = "num_conn", default_value_t = 5)]
    num_conn: u16,
    /// Rate in kB/s, SciStream 1.2's unit (20000 is 20 MB/s); 0: none asked, so the facility's
    /// default rate (`s2cs --default-rate`), unlimited unless it sets one.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// How long to wait for the producer's Hello, seconds.
    #[arg(long, alias = "hello_timeout", default_value = "180", value_parser = scistream_bins::parse_secs)]
    hello_timeout: Duration,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set up a stream across both facilities: REQ to both, wait for the producer's Hello,
    /// mint the session's credentials, UpdateTargets to both.
    #[command(alias = "stream")]
    Request {
        /// The producer facility's control server.
        #[arg(long, alias = "producer-s2cs", alias = "producer_s2cs", default_value = "localhost:5000")]
        prod_s2cs: String,
        /// The consumer facility's control server.
        #[arg(long, alias = "consumer-s2cs", alias = "consumer_s2cs", default_value = "localhost:6000")]
        cons_s2cs: String,
        #[command(flatten)]
        size: Size,
    },
    /// SciStream 1.2: producer side of a stream; waits for the producer's Hello (appctrl).
    #[command(alias = "prod_req")]
    ProdReq {
        /// The producer facility's control server.
        #[arg(long, default_value = "localhost:5000")]
        s2cs: String,
        #[command(flatten)]
        size: Size,
    },
    /// SciStream 1.2: consumer side of a stream set up by prod-req.
    #[command(alias = "cons_req")]
    ConsReq {
        /// The consumer facility's control server.
        #[arg(long, default_value = "localhost:6000")]
        s2cs: String,
        #[command(flatten)]
        size: Size,
        /// The session (from prod-req).
        uid: Uid,
        /// The producer facility's listeners (from prod-req), comma-separated.
        prod_lstn: String,
        /// The session's WAN credentials (hex, printed by prod-req). Without them the WAN leg
        /// can only be plain text, which the consumer's server must allow (--allow-plain-wan).
        #[arg(long, value_parser = parse_creds)]
        credentials: Option<Credentials>,
    },
    /// SciStream 1.2: expose a service listening at REMOTE_IP:RECEIVER_PORTS through this
    /// facility's gateway (the receiving end).
    #[command(alias = "inbound_request")]
    InboundRequest {
        /// This facility's control server.
        #[arg(long, default_value = "localhost:5000")]
        s2cs: String,
        /// Where the service listens.
        #[arg(long, alias = "remote_ip")]
        remote_ip: String,
        /// The service's ports, comma-separated.
        #[arg(long, alias = "receiver_ports", value_delimiter = ',', required = true)]
        receiver_ports: Vec<u16>,
        #[command(flatten)]
        size: Size,
    },
    /// SciStream 1.2: connect this facility's gateway to another facility's inbound listeners
    /// (the sending end); local applications connect to the listeners printed.
    #[command(alias = "outbound_request")]
    OutboundRequest {
        /// This facility's control server.
        #[arg(long, default_value = "localhost:6000")]
        s2cs: String,
        #[command(flatten)]
        size: Size,
        /// The session (from inbound-request).
        uid: Uid,
        /// The other facility's listeners (from inbound-request), comma-separated.
        remote_listeners: String,
        /// The session's WAN credentials (hex, printed by inbound-request). Without them the
        /// WAN leg can only be plain text, which the server must allow (--allow-plain-wan).
        #[arg(long, value_parser = parse_creds)]
        credentials: Option<Credentials>,
    },
    /// Release a session at one or more control servers.
    Release {
        /// The session.
        uid: Uid,
        /// Control servers (repeatable).
        #[arg(long, alias = "producer-s2cs", alias = "consumer-s2cs", required = true)]
        s2cs: Vec<String>,
    },
    /// A session as one control server holds it; with --watch, its live throughput.
    Status {
        /// The session.
        uid: Uid,
        /// The control server.
        #[arg(long, default_value = "localhost:5000")]
        s2cs: String,
        /// Refresh until the session ends (released or failed), Ctrl-C, or --count refreshes.
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes of --watch.
        #[arg(long, default_value = "1", value_parser = scistream_bins::parse_secs, requires = "watch")]
        interval: Duration,
        /// Stop --watch after this many refreshes.
        #[arg(long, requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
    },
    /// Your sessions at one control server.
    List {
        /// The control server.
        #[arg(long, default_value = "localhost:5000")]
        s2cs: String,
    },
    /// Log in for a scope (OAuth2 authorization code with PKCE): prints the URL to open, then
    /// takes the code at a prompt (or stdin), from a loopback redirect, or from a later --code.
    Login {
        /// Finish a login begun with --url-only with the code the server showed.
        #[arg(long, conflicts_with_all = ["url_only", "loopback"])]
        code: Option<String>,
        /// Print the URL and stop; finish with `s2uc login --code CODE` within 15 minutes.
        #[arg(long, conflicts_with = "loopback")]
        url_only: bool,
        /// Catch the code on a http://127.0.0.1:PORT/callback redirect instead of a prompt.
        #[arg(long)]
        loopback: bool,
        /// How long to wait for the loopback redirect, seconds.
        #[arg(long, default_value = "300", value_parser = scistream_bins::parse_secs)]
        within: Duration,
    },
    /// Revoke (RFC 7009) and forget the tokens of --scope, or of every scope.
    Logout {
        /// Forget a token even when the server cannot revoke it.
        #[arg(long)]
        force: bool,
    },
    /// Show who you are logged in as for --scope (or for --s2cs's scope), until when; with
    /// --s2cs, also whether that control server accepts the token.
    #[command(alias = "check_auth")]
    CheckAuth {
        /// Ask this control server whether it accepts the token.
        #[arg(long)]
        s2cs: Option<String>,
        /// Print the access token itself.
        #[arg(long)]
        show_token: bool,
    },
    #[command(flatten)]
    Manuals(scistream_bins::manuals::Manuals),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A bad command line is an `error` event too when --json was asked for.
            if e.use_stderr() && std::env::args().any(|a| a == "--json") {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
                say!("{}", show::error_event(first, None, EXIT_USAGE));
            }
            e.exit();
        }
    };
    if let Cmd::Manuals(m) = &cli.cmd {
        return m.print::<Cli>();
    }
    init_logging(cli.verbose);
    let json = cli.json;
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<scistream_bins::auth::Pending>().is_some() {
                return ExitCode::SUCCESS;
            }
            eprintln!("s2uc: error: {e:#}");
            let code = e.chain().find_map(|c| match c.downcast_ref::<CallError>() {
                Some(CallError::Status { code, .. }) => Some(*code),
                _ => None,
            });
            if code == Some(ErrorCode::Unauthenticated) {
                eprintln!(
                    "s2uc: hint: log in for the control server's scope (`s2uc login --scope SCOPE`), or set its scope in s2uc.toml"
                );
            }
            let usage = e.downcast_ref::<Usage>().is_some()
                || e.downcast_ref::<CallError>()
                    .is_some_and(|c| matches!(c, CallError::Status { code: ErrorCode::InvalidArgument, .. }));
            let exit = if usage { EXIT_USAGE } else { EXIT_FAILED };
            if json {
                say!("{}", show::error_event(&format!("{e:#}"), code, exit));
            }
            ExitCode::from(exit)
        }
    }
}

fn fresh_session() -> (Uid, AppKey, Credentials) {
    (Uid(uuid::Uuid::new_v4()), AppKey(rand::random()), Credentials(rand::random()))
}

/// A producer's REQ answers once the Hello is in: its client gets the Hello's deadline.
fn prod_client(c: &ControlClient, size: &Size) -> ControlClient {
    c.clone().with_timeout(size.hello_timeout)
}

/// How to reach a control server as the user: the connection flags and the user's tokens.
#[derive(Clone, Copy)]
struct Reach<'a> {
    conn: &'a ConnectOpts,
    auth: &'a UserAuth,
}

impl Reach<'_> {
    async fn client(&self, addr: &str) -> Result<ControlClient> {
        self.auth.client(self.conn, addr).await
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    // A setup uses its tokens until the Hello is in and both UpdateTargets are answered.
    let lasting = match &cli.cmd {
        Cmd::Request { size, .. }
        | Cmd::ProdReq { size, .. }
        | Cmd::ConsReq { size, .. }
        | Cmd::InboundRequest { size, .. }
        | Cmd::OutboundRequest { size, .. } => size.hello_timeout.saturating_add(cli.conn.timeout.saturating_mul(2)),
        _ => Duration::ZERO,
    };
    let auth = UserAuth::load(&cli.auth)?.lasting(lasting);
    let conn = &Reach { conn: &cli.conn, auth: &auth };
    let json = cli.json;
    match cli.cmd {
        Cmd::Request { prod_s2cs, cons_s2cs, size } => request(conn, json, &prod_s2cs, &cons_s2cs, &size).await,
        Cmd::Login { code, url_only, loopback, within } => {
            let how = LoginHow { code, url_only, loopback, within };
            let t = auth
                .login(&how, &mut |url| {
                    if json {
                        say!("{}", json!({"event": "login-url", "url": url}));
                    } else {
                        say!("{url}");
                    }
                })
                .await?;
            let who = t.identity.as_deref().unwrap_or("(the server did not say who)");
            if cli.json {
                say!(
                    "{}",
                    json!({"event": "logged-in", "scope": t.scope, "identity": t.identity, "expires_at": t.expires_at})
                );
            } else {
                say!("logged in for {} as {who}; tokens in {}", t.scope, auth.store()?.path().display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Logout { force } => {
            let done = auth.logout(force).await?;
            if done.is_empty() {
                eprintln!(
                    "no tokens stored{}",
                    cli.auth.scope.as_ref().map(|s| format!(" for {s}")).unwrap_or_default()
                );
            }
            let mut failed = Vec::new();
            for (scope, outcome) in &done {
                match outcome {
                    Ok(()) if !json => say!("logged out of {scope} (revoked and forgotten)"),
                    Ok(()) => {}
                    Err(e) => {
                        failed.push(json!({"scope": scope, "error": e}));
                        eprintln!("s2uc: {scope}: {e}");
                    }
                }
            }
            if json {
                let out: Vec<&String> = done.iter().filter(|(_, o)| o.is_ok()).map(|(s, _)| s).collect();
                say!("{}", json!({"event": "logged-out", "scopes": out, "failed": failed, "forced": force}));
            }
            if !failed.is_empty() && !force {
                bail!("{} token(s) could not be revoked", failed.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckAuth { s2cs, show_token } => {
            let r = auth.check(&cli.conn, s2cs.as_deref()).await?;
            let left = r.token.remaining(scistream_identity::unix_now());
            if cli.json {
                let mut v = json!({
                    "event": "auth", "scope": r.token.scope, "identity": r.token.identity, "expires_at": r.token.expires_at,
                    "expires_in": left, "refreshable": r.token.refresh_token.is_some(),
                });
                if let Some((addr, caller, n)) = &r.accepted {
                    v["s2cs"] = json!({"address": addr, "identity": caller, "sessions": n});
                }
                if show_token {
                    v["access_token"] = json!(r.token.access_token);
                }
                say!("{v}");
            } else {
                say!("scope      {}", r.token.scope);
                say!(
                    "identity   {}",
                    r.token.identity.as_deref().unwrap_or(
                        "(not in the token response; `check-auth --s2cs ADDR` shows the identity a facility sees)"
                    )
                );
                match left {
                    Some(s) => {
                        say!("expires in {s} s{}", if r.token.refresh_token.is_some() { " (refreshable)" } else { "" })
                    }
                    None => say!("expires    (the server did not say)"),
                }
                if let Some((addr, caller, n)) = &r.accepted {
                    say!("accepted by {addr} as {caller} ({n} session(s) of yours there)");
                }
                if show_token {
                    say!("token      {}", r.token.access_token);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ProdReq { s2cs, size } => {
            let (uid, key, creds) = fresh_session();
            let c = conn.client(&s2cs).await?;
            let spec = Setup { uid, key, creds, plan: s2uc::Plan::producer(None), size: &size, announce: Some(&s2cs) };
            let done = setup(conn, json, prod_client(&c, &size), c, spec).await?;
            let fields: [(&str, &[Addr]); 2] =
                [("listeners", &done.prod_listeners), ("prod_listeners", &done.prod_app)];
            show::requested(json, uid, &fields, &[("credentials", hex(&creds.0), CREDS_FOR)]);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ConsReq { s2cs, size, uid, prod_lstn, credentials } => {
            let remote = parse_addrs(&prod_lstn).map_err(|e| anyhow!("PROD_LSTN: {e}"))?;
            consumer_side(conn, json, &s2cs, &size, uid, remote, credentials).await
        }
        Cmd::InboundRequest { s2cs, remote_ip, receiver_ports, size } => {
            let prod: Vec<Addr> = receiver_ports
                .iter()
                .map(|p| format!("{remote_ip}:{p}").parse::<Addr>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow!("--remote_ip/--receiver_ports: {e}"))?;
            let (uid, key, creds) = fresh_session();
            let c = conn.client(&s2cs).await?;
            // The client says the producer's Hello itself, naming where the service listens.
            let plan = s2uc::Plan::producer(Some(prod.clone()));
            let spec = Setup { uid, key, creds, plan, size: &size, announce: None };
            let done = setup(conn, json, prod_client(&c, &size), c, spec).await?;
            let fields: [(&str, &[Addr]); 2] = [("listeners", &done.prod_listeners), ("prod_listeners", &prod)];
            show::requested(json, uid, &fields, &[("credentials", hex(&creds.0), CREDS_FOR)]);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::OutboundRequest { s2cs, size, uid, remote_listeners, credentials } => {
            let remote = parse_addrs(&remote_listeners).map_err(|e| anyhow!("REMOTE_LISTENERS: {e}"))?;
            consumer_side(conn, json, &s2cs, &size, uid, remote, credentials).await
        }
        Cmd::Release { uid, s2cs } => {
            let (mut released, mut absent) = (Vec::new(), Vec::new());
            for addr in &s2cs {
                let c = conn.client(addr).await?;
                match c.release(uid).await {
                    Ok(()) => {
                        released.push(addr.clone());
                        eprintln!("released {uid} at {addr}");
                    }
                    Err(CallError::Status { code: ErrorCode::NotFound, .. }) => {
                        absent.push(addr.clone());
                        eprintln!("{addr} holds no session {uid}");
                    }
                    Err(e) => return Err(anyhow!(e).context(format!("releasing {uid} at {addr}"))),
                }
            }
            if released.is_empty() {
                bail!("no control server held session {uid}");
            }
            if json {
                let v = json!({"event": "released", "uid": uid.to_string(), "released_at": released, "not_held_at": absent});
                say!("{v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { uid, s2cs, watch: true, interval, count } => {
            let c = conn.client(&s2cs).await?;
            watch::watch(&c, json, uid, interval, count).await
        }
        Cmd::Status { uid, s2cs, .. } => {
            let c = conn.client(&s2cs).await?;
            let v = c.status(uid).await?;
            show::status(json, &v);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List { s2cs } => {
            let c = conn.client(&s2cs).await?;
            let all = c.list().await?;
            show::list(json, &all);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Manuals(_) => unreachable!("printed before the runtime starts"),
    }
}

/// Who the WAN credentials a 1.2-style producer-side command prints are for.
const CREDS_FOR: &str = "pass it to the other side's cons-req/outbound-request --credentials";

async fn request(conn: &Reach<'_>, json: bool, prod_s2cs: &str, cons_s2cs: &str, size: &Size) -> Result<ExitCode> {
    if prod_s2cs == cons_s2cs {
        return Err(anyhow!(Usage(format!(
            "--prod-s2cs and --cons-s2cs are both {prod_s2cs}: the two facilities need their own control servers"
        ))));
    }
    let started = Instant::now();
    let (uid, key, creds) = fresh_session();
    let (p, c) = tokio::try_join!(conn.client(prod_s2cs), conn.client(cons_s2cs))?;
    // A producer's REQ answers once the Hello is in, so its calls get the Hello's deadline.
    let spec = Setup { uid, key, creds, plan: s2uc::Plan::both(), size, announce: Some(prod_s2cs) };
    let done = setup(conn, json, prod_client(&p, size), c, spec).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if json {
        let out = json!({
            "event": "established",
            "uid": uid.to_string(),
            "app_key": hex(&key.0),
            "producer_listeners": format_addrs(&done.prod_listeners),
            "consumer_listeners": format_addrs(&done.cons_listeners),
            "prod_app_listeners": format_addrs(&done.prod_app),
            "setup_ms": ms,
        });
        say!("{out}");
    } else {
        say!("established {uid} in {ms:.1} ms");
        say!("producer-side listeners: {}", format_addrs(&done.prod_listeners));
        say!("consumer-side listeners: {}", format_addrs(&done.cons_listeners));
        say!("producer application:    {}", format_addrs(&done.prod_app));
    }
    Ok(ExitCode::SUCCESS)
}

/// One session for the user client's core to set up.
struct Setup<'a> {
    uid: Uid,
    key: AppKey,
    creds: Credentials,
    /// Which facilities, and how.
    plan: s2uc::Plan,
    size: &'a Size,
    /// Print the uid and app key once the producer's facility admitted the session, with the
    /// `appctrl` command for the producer's controller at this control server (commands that
    /// wait for it).
    announce: Option<&'a str>,
}

/// What an established session's setup learnt.
struct Established {
    prod_listeners: Vec<Addr>,
    cons_listeners: Vec<Addr>,
    prod_app: Vec<Addr>,
}

/// Sets a session up with the user client's core (hosted in an actor, its messages carried
/// as gRPC calls to `prod` and `cons`): every phase, retransmission, Hello, deadline and the
/// release of whatever a failed setup held are the core's. Ctrl-C releases what it holds.
async fn setup(
    conn: &Reach<'_>,
    json: bool,
    prod: ControlClient,
    cons: ControlClient,
    spec: Setup<'_>,
) -> Result<Established> {
    let Setup { uid, key, creds, plan, size, announce: at } = spec;
    let timing =
        Profile { hello_timeout: size.hello_timeout, call_deadline: conn.conn.timeout, ..Profile::production() }
            .seeded(rand::random());
    let cfg = s2uc::Config { token: Token(conn.conn.token.clone().unwrap_or_default()), timing };
    // Caught from before the first REQ leaves, for the whole setup: ctrl_c() installs its
    // handler only when first polled, and a new one each turn of the loop misses a ^C that
    // came while the loop's body ran.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot catch ^C (SIGINT)")?;
    let (notices, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let args = S2ucArgs { cfg, prod, cons, notices };
    let (actor, handle) = Actor::spawn(None, S2ucActor, args).await.map_err(|e| anyhow!("starting the client: {e}"))?;
    let start = s2uc::Input::Start { uid, num_conn: size.num_conn, rate: size.rate, key, creds, plan };
    actor.send_message(S2ucMsg::Command(start)).map_err(|_| anyhow!("the client stopped"))?;
    let mut interrupted = false;
    // Shows on a terminal that the command waits for the producer's Hello, and how long.
    let mut waiting = wait::Indicator::new(json, Instant::now() + size.hello_timeout);
    let outcome = loop {
        let notice = tokio::select! {
            n = rx.recv() => n,
            _ = interrupt.recv(), if !interrupted => {
                // Release what the session holds before giving up.
                interrupted = true;
                let _ = actor.send_message(S2ucMsg::Command(s2uc::Input::Release(uid)));
                continue;
            }
            () = waiting.tick() => continue,
        };
        match notice.map(|(n, why)| (n, why.unwrap_or_default())) {
            Some((Notice::Created { .. }, _)) => {
                if let Some(at) = at {
                    show::announce(json, uid, key, at);
                    waiting.start();
                }
            }
            Some((Notice::Established { prod_listeners, cons_listeners, prod_app_listeners, .. }, _)) => {
                break Ok(Established { prod_listeners, cons_listeners, prod_app: prod_app_listeners });
            }
            Some((Notice::Failed { code, .. }, why)) => {
                let message = if why.is_empty() { format!("session {uid} failed") } else { why };
                break Err(anyhow!(CallError::Status { code, message })
                    .context(format!("session {uid} failed; everything it held is released")));
            }
            Some((Notice::Released { .. }, _)) => {
                break Err(anyhow!("interrupted: session {uid} released"));
            }
            Some(_) => {}
            None => break Err(anyhow!("the client stopped")),
        }
    };
    waiting.clear();
    actor.stop(None);
    let _ = handle.await;
    outcome
}

/// The consumer facility's side of a session the producer's side set up (1.2's `cons-req` and
/// `outbound-request`): REQ with a consumer's Hello alongside (a 1.2 server holds a consumer's
/// REQ until a Hello for its uid arrives), then UpdateTargets towards `remote`.
async fn consumer_side(
    conn: &Reach<'_>,
    json: bool,
    s2cs: &str,
    size: &Size,
    uid: Uid,
    remote: Vec<Addr>,
    creds: Option<Credentials>,
) -> Result<ExitCode> {
    // Every session gets its own app key, the consumer's side too: a keyless session would
    // accept anybody's Hello for its uid.
    let key = AppKey(rand::random());
    let c = conn.client(s2cs).await?;
    let plan = s2uc::Plan::consumer(remote, true);
    let spec = Setup { uid, key, creds: creds.unwrap_or_default(), plan, size, announce: None };
    let done = setup(conn, json, c.clone(), c, spec).await?;
    let key_for = "for the consumer's appctrl --role CONS --key";
    show::requested(json, uid, &[("listeners", &done.cons_listeners)], &[("app_key", hex(&key.0), key_for)]);
    Ok(ExitCode::SUCCESS)
}

fn parse_creds(s: &str) -> Result<Credentials, String> {
    scistream_bins::parse_hex(s, "credentials").map(Credentials)
}
