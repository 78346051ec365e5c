//! Nginx: one process per session (`master_process off`: a single process, so the
//! parent-death signal reaches everything that holds the session's sockets), binding the
//! session's ports itself, the rate held with `proxy_download_rate`. (Nginx can inherit
//! listening sockets through its `NGINX` variable, but 1.22 in a single process crashes on
//! them: it binds them again instead, as stunnel does.)

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::wan::SESSION_NAME;

use super::{Installed, Plan, Probe, Ready, Rendered, Side, bracketed, output};
use crate::backend::{Kind, SetupError};

/// Finds Nginx, checks its version (1.21.4: `proxy_half_close`, a stream's end passed on one
/// way while the other flows on, as every backend does) and finds its stream module.
pub(super) fn check(program: Option<&Path>) -> Result<Installed, SetupError> {
    let kind = Kind::Nginx;
    let found = Probe {
        kind,
        name: "Nginx",
        programs: &["nginx"],
        package: "nginx-light libnginx-mod-stream",
        flag: "-V",
        marker: "nginx/",
        min: (1, 21, 4),
    }
    .run(program)?;
    let text = &found.said;
    let flags: Vec<&str> = text.split_whitespace().collect();
    let stream_module = if flags.contains(&"--with-stream") {
        None
    } else if flags.contains(&"--with-stream=dynamic") {
        let dir = flags
            .iter()
            .find_map(|f| f.strip_prefix("--modules-path="))
            .map(PathBuf::from)
            .or_else(|| {
                flags.iter().find_map(|f| f.strip_prefix("--prefix=")).map(|p| PathBuf::from(p).join("modules"))
            })
            .unwrap_or_else(|| PathBuf::from("/usr/lib/nginx/modules"));
        let module = dir.join("ngx_stream_module.so");
        if !module.is_file() {
            return Err(SetupError::Unfit {
                kind,
                what: format!(
                    "Nginx's stream module is not installed ({} is missing): install the Debian package libnginx-mod-stream",
                    module.display()
                ),
            });
        }
        Some(module)
    } else {
        return Err(SetupError::Unfit {
            kind,
            what: "this Nginx was built without its stream module: install Debian's nginx with libnginx-mod-stream"
                .into(),
        });
    };
    if !flags.contains(&"--with-stream_ssl_module") {
        return Err(SetupError::Unfit {
            kind,
            what: "this Nginx was built without stream_ssl_module: TLS WAN legs need it".into(),
        });
    }
    Ok(Installed { version: found.version_string(), program: found.program, stream_module, openssl3: false })
}

fn config(inst: &Installed, plan: &Plan) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "# SciStream data server: one session's relays (generated; private to the session)");
    if let Some(m) = &inst.stream_module {
        let _ = writeln!(c, "load_module {};", m.display());
    }
    let _ = writeln!(c, "daemon off;");
    let _ = writeln!(c, "master_process off;");
    let _ = writeln!(c, "worker_processes 1;");
    let _ = writeln!(c, "pid {};", plan.dir.join("nginx.pid").display());
    let _ = writeln!(c, "error_log stderr notice;");
    let _ = writeln!(c, "events {{ worker_connections 20000; }}");
    let _ = writeln!(c, "stream {{");
    let _ = writeln!(c, "    proxy_connect_timeout 10s;");
    // A stream may be quiet for long: no idle limit to speak of.
    let _ = writeln!(c, "    proxy_timeout 24d;");
    let _ = writeln!(c, "    proxy_half_close on;");
    if let Some(rate) = plan.rate_per_conn {
        let _ = writeln!(c, "    proxy_download_rate {rate};");
    }
    if let Some(t) = &plan.tls {
        match t.side {
            Side::Accept => {
                let _ = writeln!(c, "    ssl_certificate {};", t.crt.display());
                let _ = writeln!(c, "    ssl_certificate_key {};", t.key.display());
                let _ = writeln!(c, "    ssl_protocols TLSv1.3;");
                let _ = writeln!(c, "    ssl_verify_client on;");
                let _ = writeln!(c, "    ssl_client_certificate {};", t.crt.display());
                let _ = writeln!(c, "    ssl_session_tickets off;");
            }
            Side::Dial => {
                let _ = writeln!(c, "    proxy_ssl on;");
                let _ = writeln!(c, "    proxy_ssl_certificate {};", t.crt.display());
                let _ = writeln!(c, "    proxy_ssl_certificate_key {};", t.key.display());
                let _ = writeln!(c, "    proxy_ssl_protocols TLSv1.3;");
                let _ = writeln!(c, "    proxy_ssl_verify on;");
                let _ = writeln!(c, "    proxy_ssl_trusted_certificate {};", t.crt.display());
                let _ = writeln!(c, "    proxy_ssl_name {SESSION_NAME};");
                let _ = writeln!(c, "    proxy_ssl_server_name on;");
            }
        }
    }
    let ssl = if plan.tls.as_ref().is_some_and(|t| t.side == Side::Accept) { " ssl" } else { "" };
    for l in &plan.listeners {
        let _ = writeln!(c, "    server {{ listen {}{ssl}; proxy_pass {}; }}", l.addr, bracketed(&l.target));
    }
    let _ = writeln!(c, "}}");
    c
}

/// One session's configuration and command.
pub(super) fn render(inst: &Installed, plan: &Plan) -> Rendered {
    let cfg = plan.dir.join("nginx.conf");
    Rendered {
        config: ("nginx.conf", config(inst, plan)),
        args: vec![
            "-e".into(),
            "stderr".into(),
            "-p".into(),
            OsString::from(&plan.dir),
            "-c".into(),
            OsString::from(cfg),
        ],
        inherits: false,
        ready: Ready::PidFile(plan.dir.join("nginx.pid")),
    }
}

/// Nginx checks both sides' configurations (`nginx -t`).
pub(super) fn test(inst: &Installed, accept: &Plan, dial: &Plan) -> Result<(), String> {
    for (name, plan) in [("accept", accept), ("dial", dial)] {
        let path = plan.dir.join(format!("test-{name}.conf"));
        super::child::write_private(&path, config(inst, plan).as_bytes()).map_err(|e| e.to_string())?;
        let (ok, said) = output(
            &inst.program,
            &["-t", "-q", "-e", "stderr", "-p", &plan.dir.to_string_lossy(), "-c", &path.to_string_lossy()],
        )?;
        if !ok {
            return Err(format!(
                "Nginx {} refuses the configuration sessions need (stream module, TLS 1.3 with the session's Ed25519 certificate): {}",
                inst.version,
                said.trim()
            ));
        }
    }
    Ok(())
}
