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
