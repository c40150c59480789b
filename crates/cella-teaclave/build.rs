//! Compiles Teaclave's three public `.proto` files (written for Cella from the wire
//! facts, under `proto/`) with a vendored protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files = [
        "teaclave_common",
        "teaclave_authentication_service",
        "teaclave_frontend_service",
    ]
    .map(|f| root.join(format!("{f}.proto")));
    // google/protobuf/empty.proto comes with the vendored protoc.
    let includes = [root.clone(), protoc_bin_vendored::include_path()?];
    tonic_prost_build::configure()
        .build_client(false)
        .compile_with_config(config, &files, &includes)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
