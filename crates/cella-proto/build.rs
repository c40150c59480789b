//! Compiles `proto/cella/v1/*.proto` with a vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["auth", "function", "file", "task", "node"]
        .map(|f| root.join(format!("cella/v1/{f}.proto")));
    tonic_prost_build::configure().compile_with_config(config, &files, &[root])?;
    Ok(())
}
