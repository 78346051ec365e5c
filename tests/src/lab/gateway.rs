//! A facility's gateway in the lab: its data server node (`s2ds`) and its control server
//! (`s2cs --s2ds`), both in the gateway's host, each on addresses of its own — the node's link
//! and LAN-facing listeners on the gateway's LAN address, its WAN-facing listeners on the WAN
//! address, the control server on the address it is told (the lab's tests, demo and bench use
//! the WAN address). Certificates are made on the fly, pinned to those addresses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Daemon, GWA_LAN_IP, GWA_WAN_IP, GWB_LAN_IP, GWB_WAN_IP, Host, Lab};
use crate::args;

/// The port every gateway's control server serves on (each lab host has its own ports).
pub const CONTROL_PORT: u16 = 5000;
/// The port every data server node's link is served on.
pub const LINK_PORT: u16 = 5010;
/// The ports the data server nodes hand out.
pub const RANGE: (u16, u16) = (5100, 5119);

/// How to start a gateway.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// Its host (`Gwa` or `Gwb`).
    pub host: Host,
    /// Its LAN address: the node's link and LAN-facing listeners.
    pub lan: &'static str,
    /// Its WAN address: the node's WAN-facing listeners.
    pub wan: &'static str,
    /// Where the control server serves.
    pub control: &'static str,
    /// Whether the control server keeps its sessions in a state folder (`--state-dir`).
    pub state: bool,
    /// More flags for `s2cs` (`--hello-timeout`, authentication, `--allow-plain-wan`).
    pub cs_extra: Vec<String>,
    /// More flags for `s2ds` (`--allow-plain-wan`).
    pub ds_extra: Vec<String>,
}

impl GatewaySpec {
    /// Gateway A (facility A's, the producer's), on its usual addresses.
    pub fn a() -> Self {
        Self::on(Host::Gwa, GWA_LAN_IP, GWA_WAN_IP)
    }

    /// Gateway B (facility B's, the consumer's), on its usual addresses.
    pub fn b() -> Self {
        Self::on(Host::Gwb, GWB_LAN_IP, GWB_WAN_IP)
    }

    fn on(host: Host, lan: &'static str, wan: &'static str) -> Self {
        Self { host, lan, wan, control: wan, state: false, cs_extra: Vec::new(), ds_extra: Vec::new() }
    }
}

/// A running gateway; both daemons killed on drop.
#[derive(Debug)]
pub struct Gateway {
    /// Its data server node.
    pub ds: Daemon,
    /// Its control server.
    pub cs: Daemon,
    /// The control server's certificate, which the user's and the producer's tools pin.
    pub cs_cert: PathBuf,
}

impl Gateway {
    /// Makes the certificates in a folder of `dir` named for the host, starts `s2ds` then
    /// `s2cs`, and waits (15 s at most) until the control server is linked to its node.
    pub fn start(lab: &Lab, dir: &Path, spec: &GatewaySpec) -> Result<Self> {
        let dir = dir.join(spec.host.name());
        let (ds_dir, cs_dir) = (dir.join("ds"), dir.join("cs"));
        for (tool, d, ip) in [("s2ds", &ds_dir, spec.lan), ("s2cs", &cs_dir, spec.control)] {
            std::fs::create_dir_all(d)?;
            let mut a = args(&["gen-cert", "--listener-ip", ip, "--force", "--out-dir"]);
            a.push(d.display().to_string());
            let out = crate::run(tool, &a, Duration::from_secs(20))?;
            if !out.status.success() {
                bail!("{tool} gen-cert: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let p = |d: &Path, f: &str| d.join(f).display().to_string();
        let range = format!("{}-{}", RANGE.0, RANGE.1);
        let link = format!("{}:{LINK_PORT}", spec.lan);
        let mut ds_args = args(&["--listen", &link, "--cert", &p(&ds_dir, "cert.pem"), "--key"]);
        ds_args.extend(args(&[&p(&ds_dir, "key.pem"), "--trust", &p(&cs_dir, "cert.pem"), "--port-range", &range]));
        ds_args.extend(args(&["--wan-ip", spec.wan, "--lan-ip", spec.lan]));
        ds_args.extend(spec.ds_extra.iter().cloned());
        let ds = Daemon::start(lab, spec.host, "s2ds", ds_args, &dir.join("s2ds.log"))?;
        if ds.addr != link {
            bail!("s2ds serves its link on {}, not on {link}", ds.addr);
        }
        let mut cs_args = args(&["--listener-ip", spec.control, "--port", &CONTROL_PORT.to_string()]);
        // The lab's control servers run without authentication on WAN addresses: by name.
        cs_args.push("--allow-anonymous".into());
        cs_args.extend(args(&["--s2ds", &link, "--s2ds-trust", &p(&ds_dir, "cert.pem")]));
        cs_args.extend(args(&["--server-crt", &p(&cs_dir, "cert.pem"), "--server-key", &p(&cs_dir, "key.pem")]));
        if spec.state {
            cs_args.extend(args(&["--state-dir", &p(&dir, "state")]));
        }
        cs_args.extend(spec.cs_extra.iter().cloned());
        let cs = Daemon::start(lab, spec.host, "s2cs", cs_args, &dir.join("s2cs.log"))?;
        if cs.addr != format!("{}:{CONTROL_PORT}", spec.control) {
            bail!("s2cs serves on {}, not on {}:{CONTROL_PORT}", cs.addr, spec.control);
        }
        let started = Instant::now();
        while !ds.log().contains("control server linked") {
            if started.elapsed() > Duration::from_secs(15) {
                bail!("{:?}: the control server did not link to its node within 15 s: {}", spec.host, ds.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { ds, cs, cs_cert: cs_dir.join("cert.pem") })
    }

    /// The flags that make `s2uc` and `appctrl` trust its control server.
    pub fn trust(&self) -> Vec<String> {
        vec!["--server-cert".into(), self.cs_cert.display().to_string()]
    }

    /// Stops both daemons with SIGTERM (the control server first), each within `limit`;
    /// their exit codes (control server, node).
    pub fn terminate(mut self, limit: Duration) -> Result<(Option<i32>, Option<i32>)> {
        let cs = self.cs.terminate(limit)?;
        let ds = self.ds.terminate(limit)?;
        Ok((cs, ds))
    }
}
