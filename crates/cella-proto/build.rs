//! Compiles `proto/cella/v1/*.proto` with a vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Read at run time: a build script binary may be reused for another checkout.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["auth", "function", "file", "task", "node", "audit"]
        .map(|f| root.join(format!("cella/v1/{f}.proto")));
    tonic_prost_build::configure().compile_with_config(
        config,
        &files,
        std::slice::from_ref(&root),
    )?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
