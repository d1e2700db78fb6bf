//! Compiles `proto/*.proto` (written by us from ../shared/protocol/03-proto-messages.md) with
//! protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/wa.proto",
        "proto/cert.proto",
        "proto/adv.proto",
        "proto/companion_reg.proto",
        "proto/signal.proto",
        "proto/e2e.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
