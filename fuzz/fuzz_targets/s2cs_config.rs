//! An `s2cs --config FILE` (TOML): `config::s2cs::RunArgs::from_toml`, then the checks
//! `s2cs` applies to the file's values that need no file system: the port range, the listener
//! addresses' sides, the data server nodes' addresses, the authorization server's URLs and the
//! scope.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use scistream_bins::config::s2cs::RunArgs;
use scistream_bins::gateway::{Sides, parse_range};
use scistream_identity as oauth;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = match RunArgs::from_toml(text) {
        Ok(file) => file,
        Err(e) => return drop(e.to_string()),
    };
    if let Some(range) = &file.port_range {
        let _ = parse_range(range);
    }
    let ip = file.listener_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let _ = Sides::resolve(ip, file.wan_ip, file.lan_ip, file.public_addr.as_deref());
    for addr in &file.s2ds {
        let _ = addr.parse::<scistream_fsm::Addr>().map_err(|e| e.to_string());
    }
    if let Some(url) = &file.introspect_url {
        let _ = oauth::checked_url(url).map_err(|e| e.to_string());
    }
    if let Some(base) = &file.auth_url {
        let _ = oauth::Endpoints::under(base).map_err(|e| e.to_string());
    }
    if let Some(scope) = &file.scope {
        let _ = oauth::full_scope(scope);
    }
});
