//! An `s2ds --config FILE` (TOML): `config::s2ds::RunArgs::from_toml`, then the checks `s2ds`
//! applies to the file's values: the port range and the listener addresses' sides.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use scistream_bins::config::s2ds::RunArgs;
use scistream_bins::gateway::{Sides, parse_range};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = match RunArgs::from_toml(text) {
        Ok(file) => file,
        Err(e) => return drop(e.to_string()),
    };
    if let Some(range) = &file.port_range {
        let _ = parse_range(range);
    }
    let listen = file.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5010)));
    let _ = Sides::resolve(listen.ip(), file.wan_ip, file.lan_ip, file.public_addr.as_deref());
});
