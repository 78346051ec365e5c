//! Where the demo's parties run: all on loopback (the default), or each on a host of its own
//! in the multi-host lab (`--hosts`: network namespaces, see docs/lab.md). The demo's steps
//! are the same; only where a process starts, a socket is made or a port is looked for
//! differs, and that is all here.

use std::process::Output;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use scistream_tests::authsrv::{AuthServer, Facility, browse_for_code};
use scistream_tests::lab::gateway::{Gateway, GatewaySpec};
use scistream_tests::lab::{Host, Lab, NsChild, PROD_IP};
use scistream_tests::{Background, Scratch, Server, ServerOpts, bin, free_range, listening, run};
use tokio::net::{TcpListener, TcpStream};

/// Every party on loopback, or on the lab's hosts.
#[expect(clippy::large_enum_variant, reason = "one value per run")]
pub(crate) enum Site {
    /// Two `s2cs` with embedded data servers, everything on 127.0.0.1.
    Loopback { prod: Server, cons: Server, auth: AuthServer },
    /// The lab's five hosts: the user's tools and the authorization server on `user`, the
    /// producer on `prod`, each gateway's `s2cs` and remote `s2ds` on `gwa`/`gwb`, the
    /// consumer on `cons`. (Fields drop in order: the lab, last, removes its namespaces.)
    Hosts { a: Gateway, b: Gateway, auth: AuthServer, scratch: Scratch, lab: Lab },
}

/// A process of the demo: on this host, or in one of the lab's.
pub(crate) enum Proc {
    Local(Background),
    Lab(NsChild),
}

impl Proc {
    /// Waits (bounded) for it to end; its output.
    pub(crate) fn wait(self, limit: Duration) -> Result<Output> {
        match self {
            Self::Local(p) => p.wait(limit),
            Self::Lab(p) => p.wait(limit),
        }
    }
}

/// How long a session may wait for the producer's Hello, as on loopback (`ServerOpts`).
const HELLO_TIMEOUT: [&str; 2] = ["--hello-timeout", "60"];

fn facility(f: &str) -> Facility {
    Facility { client_id: format!("facility-{f}"), secret: format!("secret-{f}") }
}

/// The `s2cs` flags of facility `f`: tokens checked at `auth` for scope `scistream:f`.
fn auth_flags(auth: &AuthServer, f: &str) -> Vec<String> {
    let mut extra = auth.s2cs_flags(&facility(f), &format!("scistream:{f}"));
    extra.push("--require-auth".into());
    extra
}

impl Site {
    /// Whether the lab can be built here; `Err` says why not.
    pub(crate) fn hosts_available() -> Result<(), String> {
        Lab::available()
    }

    /// The authorization server and both facilities' control servers, on loopback.
    pub(crate) fn loopback(streams: u16, dir: (&Scratch, &Scratch)) -> Result<Self> {
        let auth = AuthServer::start(&[facility("prod"), facility("cons")])?;
        let opts = |f: &str| ServerOpts {
            port_range: free_range(streams + 4),
            hello_timeout: 60.0,
            extra: auth_flags(&auth, f),
            ..ServerOpts::default()
        };
        let prod = Server::start(&dir.0.0, &opts("prod"))?;
        let cons = Server::start(&dir.1.0, &opts("cons"))?;
        Ok(Self::Loopback { prod, cons, auth })
    }

    /// The lab's hosts, the authorization server, and both gateways. Our tools speak plain
    /// http to an authorization server only on a loopback address (https elsewhere), so the
    /// demo's server answers on the same loopback port inside each host that calls it: the
    /// user's (login) and both gateways' (introspection).
    pub(crate) fn hosts() -> Result<Self> {
        let lab = Lab::new().context("building the lab")?;
        let scratch = Scratch::new("demo-hosts");
        let bind = |host, port: u16| lab.within(host, || std::net::TcpListener::bind(("127.0.0.1", port)));
        let first = bind(Host::User, 0)??;
        let port = first.local_addr()?.port();
        let listeners = vec![first, bind(Host::Gwa, port)??, bind(Host::Gwb, port)??];
        let auth = AuthServer::start_on(&[facility("prod"), facility("cons")], listeners)?;
        let mut spec = GatewaySpec::a();
        spec.cs_extra = [auth_flags(&auth, "prod"), HELLO_TIMEOUT.map(String::from).to_vec()].concat();
        let a = Gateway::start(&lab, &scratch.0, &spec).context("gateway A")?;
        let mut spec = GatewaySpec::b();
        spec.cs_extra = [auth_flags(&auth, "cons"), HELLO_TIMEOUT.map(String::from).to_vec()].concat();
        let b = Gateway::start(&lab, &scratch.0, &spec).context("gateway B")?;
        Ok(Self::Hosts { a, b, auth, scratch, lab })
    }

    /// The producer facility's and the consumer facility's control addresses.
    pub(crate) fn control(&self) -> (&str, &str) {
        match self {
            Self::Loopback { prod, cons, .. } => (&prod.addr, &cons.addr),
            Self::Hosts { a, b, .. } => (&a.cs.addr, &b.cs.addr),
        }
    }

    /// The authorization server's base URL.
    pub(crate) fn auth_base(&self) -> &str {
        match self {
            Self::Loopback { auth, .. } | Self::Hosts { auth, .. } => &auth.base,
        }
    }

    /// `--server-cert` flags trusting the producer facility's control server, and both.
    pub(crate) fn trust(&self) -> (Vec<String>, Vec<String>) {
        match self {
            Self::Loopback { prod, cons, .. } => {
                (scistream_tests::trust(&[prod]), scistream_tests::trust(&[prod, cons]))
            }
            Self::Hosts { a, b, .. } => (a.trust(), [a.trust(), b.trust()].concat()),
        }
    }

    /// Runs `s2uc args` (on the user's host) to completion within `limit`.
    pub(crate) fn s2uc(&self, args: &[String], limit: Duration) -> Result<Output> {
        match self {
            Self::Loopback { .. } => run("s2uc", args, limit),
            Self::Hosts { lab, .. } => lab.run(Host::User, &bin("s2uc"), args, limit),
        }
    }

    /// Starts `s2uc args` (on the user's host) in the background; its stdout's lines.
    pub(crate) fn s2uc_background(&self, args: &[String]) -> Result<(Proc, Receiver<String>)> {
        match self {
            Self::Loopback { .. } => {
                let mut p = Background::start("s2uc", args)?;
                let lines = p.stdout_lines()?;
                Ok((Proc::Local(p), lines))
            }
            Self::Hosts { lab, scratch, .. } => {
                let mut p = lab.spawn(Host::User, &bin("s2uc"), args, &scratch.0.join("s2uc.log"))?;
                let lines = p.stdout_lines()?;
                Ok((Proc::Lab(p), lines))
            }
        }
    }

    /// Runs `appctrl args` (on the producer's host) to completion within `limit`.
    pub(crate) fn appctrl(&self, args: &[String], limit: Duration) -> Result<Output> {
        match self {
            Self::Loopback { .. } => run("appctrl", args, limit),
            Self::Hosts { lab, .. } => lab.run(Host::Prod, &bin("appctrl"), args, limit),
        }
    }

    /// What `s2uc request` printed on stderr, where it is not in its output.
    pub(crate) fn s2uc_log(&self) -> String {
        match self {
            Self::Loopback { .. } => String::new(),
            Self::Hosts { scratch, .. } => std::fs::read_to_string(scratch.0.join("s2uc.log")).unwrap_or_default(),
        }
    }

    /// The user's browser (on the user's host) opening the authorization URL: the code.
    pub(crate) fn browse_for_code(&self, url: &str) -> Result<String> {
        match self {
            Self::Loopback { .. } => browse_for_code(url),
            Self::Hosts { lab, .. } => lab.within(Host::User, || browse_for_code(url))?,
        }
    }

    /// A listener of the producer application (on the producer's host) and its address.
    pub(crate) fn producer_listener(&self) -> Result<(TcpListener, String)> {
        let std = match self {
            Self::Loopback { .. } => std::net::TcpListener::bind("127.0.0.1:0")?,
            Self::Hosts { lab, .. } => lab.within(Host::Prod, || std::net::TcpListener::bind((PROD_IP, 0)))??,
        };
        std.set_nonblocking(true)?;
        let addr = std.local_addr()?.to_string();
        Ok((TcpListener::from_std(std)?, addr))
    }

    /// A connection of the consumer application (from the consumer's host) to `addr`.
    pub(crate) async fn consumer_connect(&self, addr: &str) -> Result<TcpStream> {
        let std = match self {
            Self::Loopback { .. } => {
                return TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"));
            }
            Self::Hosts { lab, .. } => {
                let to: std::net::SocketAddr = addr.parse().with_context(|| format!("{addr:?}"))?;
                let connect =
                    || lab.within(Host::Cons, || std::net::TcpStream::connect_timeout(&to, Duration::from_secs(10)));
                tokio::task::block_in_place(connect)?.with_context(|| format!("connecting from cons to {addr}"))?
            }
        };
        std.set_nonblocking(true)?;
        Ok(TcpStream::from_std(std)?)
    }

    /// Which of `addrs` (`ip:port`) something still listens on, where they were bound.
    pub(crate) fn still_listening(&self, addrs: &[String]) -> Result<Vec<String>> {
        match self {
            Self::Loopback { .. } => Ok(addrs
                .iter()
                .filter(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).is_some_and(listening))
                .cloned()
                .collect()),
            Self::Hosts { lab, .. } => {
                let mut bound = Vec::new();
                for gw in [Host::Gwa, Host::Gwb] {
                    bound.extend(lab.listening(gw)?.into_iter().map(|l| l.addr.to_string()));
                }
                Ok(addrs.iter().filter(|a| bound.contains(a)).cloned().collect())
            }
        }
    }

    /// Stops every daemon with SIGTERM; an error unless each exits 0. Says which ones.
    pub(crate) fn shutdown(self) -> Result<&'static str> {
        match self {
            Self::Loopback { prod, cons, .. } => {
                for (name, server) in [("producer", prod), ("consumer", cons)] {
                    match server.terminate()? {
                        Some(0) => {}
                        code => bail!("the {name} facility's s2cs exited with {code:?}"),
                    }
                }
                Ok("both daemons")
            }
            Self::Hosts { a, b, lab, .. } => {
                for (name, gw) in [("gwa", a), ("gwb", b)] {
                    match gw.terminate(Duration::from_secs(10))? {
                        (Some(0), Some(0)) => {}
                        codes => bail!("{name}'s s2cs and s2ds exited with {codes:?}"),
                    }
                }
                for host in Host::ALL {
                    let left = lab.pids(host)?;
                    if !left.is_empty() {
                        bail!("processes left in {}: {left:?}", host.name());
                    }
                }
                Ok("all four daemons (two s2cs, two s2ds)")
            }
        }
    }
}
