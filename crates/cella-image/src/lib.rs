//! Runtime images: named, measured sets of files that LibOS instances run on, built from
//! the host into the node's data directory, listed, and verified file by file on load.
//!
//! ```text
//! <data_dir>/images/<name>/image.toml    cella_libos::RuntimeImage as TOML
//! <data_dir>/images/<name>/rootfs/<path> every file at its absolute in-instance path
//! ```
//!
//! - [`ImageStore::build_python3`]: the host's Python interpreter, its shared libraries,
//!   its standard library and extension modules;
//! - [`ImageStore::build_native`]: the shared libraries a native program loads;
//! - [`ImageStore::load`]: re-hashes every file and refuses any difference;
//! - [`shared_libraries`]: the ELF interpreter and `DT_NEEDED` closure of a program,
//!   resolved like `ld.so`, without running anything.
//!
//! The on-disk format and the build rules are specified in `docs/images.md`.

mod elf;
mod python;
mod store;

use std::path::PathBuf;

pub use cella_libos::RuntimeImage;
pub use elf::shared_libraries;
pub use python::default_python;
pub use store::{BuildProgress, ImageStore, LoadedImage};

/// The directory under the data directory that holds the images.
pub const IMAGES_DIR: &str = "images";
/// The file of an image that describes it.
pub const IMAGE_TOML: &str = "image.toml";
/// The directory of an image that holds its files.
pub const ROOTFS_DIR: &str = "rootfs";

/// What `list` and a build report about an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    /// The image's name, as functions name it in their `runtime`.
    pub name: String,
    /// How many files it holds.
    pub files: usize,
    /// The total size of its files, in bytes.
    pub size_bytes: u64,
    /// Its manifest digest ([`RuntimeImage::manifest_digest`]), 64 hex digits.
    pub measurement: String,
}

impl ImageSummary {
    /// The summary of `image` whose files add up to `size_bytes`.
    pub fn of(image: &RuntimeImage, size_bytes: u64) -> Self {
        Self {
            name: image.name.clone(),
            files: image.files.len(),
            size_bytes,
            measurement: hex::encode(image.manifest_digest()),
        }
    }
}

/// Why an image could not be built, listed or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image name is not usable.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// There is no image of that name.
    #[error("no runtime image named {name:?} in {}", dir.display())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The images directory searched.
        dir: PathBuf,
    },
    /// A file system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file that must be an ELF program or library is not one.
    #[error("{} is not an ELF executable or library (a script, e.g. a pyenv shim?)", path.display())]
    NotElf {
        /// The file.
        path: PathBuf,
    },
    /// A malformed ELF file.
    #[error("{}: malformed ELF file: {message}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A shared library could not be found where the loader would look.
    #[error("library {library:?} needed by {} not found (searched {})", needed_by.display(), display_paths(searched))]
    LibraryNotFound {
        /// The `DT_NEEDED` name (or interpreter path).
        library: String,
        /// The object that needs it.
        needed_by: PathBuf,
        /// The directories searched.
        searched: Vec<PathBuf>,
    },
    /// The Python interpreter could not be found or asked where its files are.
    #[error("python interpreter {}: {message}", python.display())]
    Python {
        /// The interpreter.
        python: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Two different host files would land at the same path, or a path is unusable.
    #[error("image {name:?}: {message}")]
    Build {
        /// The image being built.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An image's `image.toml` is unreadable or invalid.
    #[error("image {name:?}: invalid {IMAGE_TOML}: {message}")]
    Manifest {
        /// The image.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An image's files are not what its `image.toml` lists.
    #[error("image {name:?} is not intact: {path}: {problem}")]
    Tampered {
        /// The image.
        name: String,
        /// The in-instance path of the file.
        path: String,
        /// What differs.
        problem: String,
    },
}

impl ImageError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
