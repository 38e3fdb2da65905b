//! Compiles `proto/netdiag/v1/*.proto` with protox (pure Rust), so a machine without `protoc`
//! builds the crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/netdiag/v1/netdiag.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Boxed so a tabled batch's results (which refer to their target by index) are small
        // structs to decode and move: 336 bytes each with the target inline, under 200 boxed.
        .boxed(".netdiag.v1.ProbeResult.target")
        .codec_path("crate::codec::SliceCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
