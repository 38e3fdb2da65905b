//! Compiles `proto/netdiag/v1/*.proto` with protox (pure Rust), so a machine without `protoc`
//! builds the crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/netdiag/v1/netdiag.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
