//! Generates the prost messages and the tonic client and server of `proto/scistream.proto`.
//!
//! The `.proto` is parsed by protox (pure Rust), so building needs no system `protoc`.

use std::error::Error;

const PROTO: &str = "proto/scistream.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        // `connect` constructors need tonic's transport feature; the transport crate builds
        // channels itself.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
