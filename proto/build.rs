//! Generates the gRPC messages, servers and clients from `weir.proto`.
//!
//! protoc comes from the `protoc-bin-vendored` crate so a fresh machine needs
//! no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        // Batch bytes are sliced out of the receive buffer without a copy.
        .bytes(".weir.v1")
        .compile_protos(&["weir.proto"], &["."])?;
    Ok(())
}
