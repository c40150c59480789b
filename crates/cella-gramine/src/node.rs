//! Building the `libos` executor of a node on the Gramine backend (`backend = "gramine"`),
//! as `cella-server` does at start-up.

use std::path::Path;
use std::sync::Arc;

use cella_libos::{ExecutorAttestation, ExecutorConfig, LibosExecutor, RuntimeImage};

use crate::backend::{GramineBackend, ImageOnDisk, Setup};
use crate::config::GramineConfig;

/// Where, under the node's data dir, the backend keeps manifests, signatures and launch
/// directories.
pub const WORK_DIR: &str = "libos/gramine";

impl From<cella_image::LoadedImage> for ImageOnDisk {
    fn from(l: cella_image::LoadedImage) -> Self {
        Self {
            image: l.image,
            rootfs: l.rootfs,
        }
    }
}

/// The executor of a node whose LibOS configuration says `backend = "gramine"`: `section`
/// is its `[gramine]` table, `images` the images loaded from the data dir, `inline` the
/// `[[runtime]]`s without files (run on an empty root).
///
/// # Errors
///
/// A sentence naming what is missing or wrong (configuration, installation, image,
/// signing), for the node to report at start-up.
pub fn build_executor(
    data_dir: &Path,
    section: &toml::Table,
    images: Vec<ImageOnDisk>,
    inline: &[RuntimeImage],
    attestation: ExecutorAttestation,
    executor: ExecutorConfig,
) -> Result<LibosExecutor, String> {
    let config = GramineConfig::from_table(section.clone()).map_err(|e| e.to_string())?;
    let work_dir = data_dir.join(WORK_DIR);
    let empty_root = work_dir.join("empty-root");
    let mut images = images;
    for image in inline {
        if !image.files.is_empty() {
            return Err(format!(
                "runtime {:?}: the gramine backend runs images built into the data dir \
                 (images = [\"{}\"] after `cella image build`); an inline [[runtime]] may not \
                 list files",
                image.name, image.name
            ));
        }
        std::fs::create_dir_all(&empty_root)
            .map_err(|e| format!("creating {}: {e}", empty_root.display()))?;
        images.push(ImageOnDisk {
            image: image.clone(),
            rootfs: empty_root.clone(),
        });
    }
    let preload = crate::backend::preload_path(&config).map_err(|e| e.to_string())?;
    let preload_libraries = cella_image::shared_libraries(&preload)
        .map_err(|e| format!("the pre-load module {}: {e}", preload.display()))?;
    let preload_config = attestation.preload_config();
    if preload_config.executor_role != cella_attest::policy::roles::CLIENT {
        return Err(format!(
            "the manifest fixes the executor's role to {:?}, not {:?}",
            cella_attest::policy::roles::CLIENT,
            preload_config.executor_role
        ));
    }
    let setup = Setup {
        work_dir,
        images,
        executor_policy: preload_config.executor_policy,
        preload_libraries,
        hardware: Arc::clone(attestation.hardware()),
    };
    let backend = GramineBackend::new(config, setup).map_err(|e| e.to_string())?;
    let runtimes = backend.images();
    LibosExecutor::new(Arc::new(backend), runtimes, attestation, executor)
        .map_err(|e| e.to_string())
}

/// The manifest of a runtime image from the data dir, as the node would generate it,
/// for `cella image gramine-manifest`: the pre-load module from `config` (or next to
/// this binary), its shared libraries, `executor_policy` (the node writes its own to
/// `<data_dir>/libos/gramine/executor-policy.toml` at start). The result passes
/// [`crate::schema::check`].
///
/// # Errors
///
/// A sentence naming what is missing or wrong.
pub fn manifest_for_image(
    loaded: &cella_image::LoadedImage,
    config: &GramineConfig,
    executor_policy: &Path,
) -> Result<String, String> {
    use crate::manifest::{HostFile, Library, ManifestInput};
    config
        .validate_manifest_options()
        .map_err(|e| e.to_string())?;
    let preload = crate::backend::preload_path(config).map_err(|e| e.to_string())?;
    let preload = std::fs::canonicalize(&preload)
        .map_err(|e| format!("the pre-load module {}: {e}", preload.display()))?;
    let preload = HostFile::measure(&preload).map_err(|e| e.to_string())?;
    let mut libraries = Vec::new();
    for inside in cella_image::shared_libraries(&preload.path)
        .map_err(|e| format!("the pre-load module {}: {e}", preload.path.display()))?
    {
        let host = std::fs::canonicalize(&inside)
            .map_err(|e| format!("library {}: {e}", inside.display()))?;
        libraries.push(Library {
            inside,
            file: HostFile::measure(&host).map_err(|e| e.to_string())?,
        });
    }
    let policy = std::fs::canonicalize(executor_policy)
        .map_err(|e| format!("the executor policy {}: {e}", executor_policy.display()))?;
    let policy = HostFile::measure(&policy).map_err(|e| e.to_string())?;
    let libos_sha256 = HostFile::measure(config.libos()).ok().map(|f| f.sha256);
    let text = crate::manifest::generate(
        &ManifestInput {
            image: &loaded.image,
            rootfs: &loaded.rootfs,
            preload: &preload,
            libraries: &libraries,
            executor_policy: &policy,
            libos: config.libos(),
            libos_sha256: libos_sha256.as_deref(),
        },
        config,
    )
    .map_err(|e| e.to_string())?;
    crate::schema::check(&text, config.mode)
        .map_err(|problems| format!("the generated manifest fails its checks: {problems:?}"))?;
    Ok(text)
}
