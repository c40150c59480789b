//! The per-run directory: the only host files a module can reach.
//!
//! ```text
//! <scratch>/cella-wasm-XXXXXX/      0700, removed when the run ends
//!   .owner.lock                     locked while the run lives (never seen by the guest)
//!   inputs/<slot>                   one file per input slot, 0400   → /cella/inputs (read-only)
//!   outputs/                        empty at start                  → /cella/outputs (read-write)
//!   meta/task.json                  the task's arguments, 0400      → /cella (read-only)
//! ```
//!
//! Plaintext inputs and outputs sit in this directory for the length of the run: the
//! node already holds them in memory, and the directory is private to the node's user,
//! on tmpfs (`/dev/shm`) when it has room so nothing reaches a disk, and removed when
//! the run ends, however it ends ([`RunDir`] removes it on drop). A directory left by a
//! node that crashed, or by a run abandoned while its thread was stuck, is removed by
//! [`sweep_abandoned`] when the next executor starts, and an abandoned run's directory
//! by the executor when it gives up on the run ([`cella_executor::scratch`] says how a
//! directory is known to have no live owner).
//!
//! Outputs are read back only from regular files named after a declared slot, opened
//! without following symlinks; anything else in `outputs/` fails the run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cella_executor::IoLimits;

use crate::error::LimitExceeded;

/// The preferred place for run directories: tmpfs, so plaintext stays in memory.
const TMPFS_DIR: &str = "/dev/shm";
/// Room left on tmpfs beyond the inputs before it is chosen (64 MiB): outputs are
/// written there too, and tmpfs is shared with the rest of the host.
const TMPFS_HEADROOM_BYTES: u64 = 64 << 20;
/// Guest path of the inputs preopen.
pub(crate) const GUEST_INPUTS: &str = "/cella/inputs";
/// Guest path of the outputs preopen.
pub(crate) const GUEST_OUTPUTS: &str = "/cella/outputs";
/// Guest path of the preopen that holds `task.json`.
pub(crate) const GUEST_META: &str = "/cella";
/// Name of the task description file in [`GUEST_META`].
pub(crate) const TASK_FILE: &str = "task.json";
/// Mode of files the node writes for the guest: read-only to the node's user.
const INPUT_FILE_MODE: u32 = 0o400;

/// Name prefix of run directories, for [`sweep_abandoned`].
const RUN_DIR_PREFIX: &str = "cella-wasm-";

/// A run directory, removed on drop.
pub(crate) struct RunDir {
    root: tempfile::TempDir,
    _owner: cella_executor::scratch::OwnerLock,
}

impl RunDir {
    /// Creates a run directory in `scratch` (or the preferred place for
    /// `input_bytes`) holding `inputs` and `task_json`.
    ///
    /// # Errors
    ///
    /// Any I/O error; the partial directory is removed.
    pub(crate) fn create<'a>(
        scratch: Option<&Path>,
        inputs: impl Iterator<Item = (&'a str, &'a [u8])>,
        input_bytes: u64,
        task_json: &[u8],
    ) -> io::Result<Self> {
        let base = match scratch {
            Some(dir) => dir.to_owned(),
            None => default_scratch(input_bytes),
        };
        // tempfile creates the directory 0700 with a random name.
        let root = tempfile::Builder::new()
            .prefix(RUN_DIR_PREFIX)
            .tempdir_in(&base)?;
        let owner = cella_executor::scratch::claim(root.path())?;
        let dir = Self {
            root,
            _owner: owner,
        };
        let mut builder = DirBuilder::new();
        builder.mode(0o700);
        for sub in ["inputs", "outputs", "meta"] {
            builder.create(dir.root.path().join(sub))?;
        }
        for (slot, data) in inputs {
            write_private(&dir.inputs().join(slot), data)?;
        }
        write_private(&dir.meta().join(TASK_FILE), task_json)?;
        Ok(dir)
    }

    /// The directory itself.
    pub(crate) fn path(&self) -> &Path {
        self.root.path()
    }

    /// The host directory behind [`GUEST_INPUTS`].
    pub(crate) fn inputs(&self) -> PathBuf {
        self.root.path().join("inputs")
    }

    /// The host directory behind [`GUEST_OUTPUTS`].
    pub(crate) fn outputs(&self) -> PathBuf {
        self.root.path().join("outputs")
    }

    /// The host directory behind [`GUEST_META`].
    pub(crate) fn meta(&self) -> PathBuf {
        self.root.path().join("meta")
    }

    /// Removes the directory now, reporting failure (drop only logs it).
    pub(crate) fn remove(self) -> io::Result<()> {
        self.root.close()
    }
}

/// Removes the run directories in the places runs may use (`scratch`, or both
/// `/dev/shm` and the system temp dir) that no live run owns, logging what it did.
pub(crate) fn sweep_abandoned(scratch: Option<&Path>) {
    let bases = match scratch {
        Some(dir) => vec![dir.to_owned()],
        None => vec![PathBuf::from(TMPFS_DIR), std::env::temp_dir()],
    };
    for base in bases {
        let sweep = cella_executor::scratch::sweep_abandoned(&base, RUN_DIR_PREFIX);
        if !sweep.removed.is_empty() {
            tracing::warn!(
                dir = %base.display(),
                count = sweep.removed.len(),
                "removed wasm run directories left by runs that ended without cleaning up"
            );
        }
        for (dir, error) in sweep.failed {
            tracing::error!(dir = %dir.display(), %error, "cannot remove an abandoned wasm run directory");
        }
    }
}

/// `/dev/shm` when it is a directory we can write with room for `input_bytes` and
/// [`TMPFS_HEADROOM_BYTES`]; otherwise the system temp dir.
fn default_scratch(input_bytes: u64) -> PathBuf {
    let tmpfs = Path::new(TMPFS_DIR);
    let roomy = rustix::fs::statvfs(tmpfs)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .is_ok_and(|free| free >= input_bytes.saturating_add(TMPFS_HEADROOM_BYTES));
    let writable = rustix::fs::access(tmpfs, rustix::fs::Access::WRITE_OK).is_ok();
    if roomy && writable && tmpfs.is_dir() {
        tmpfs.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(INPUT_FILE_MODE)
        .open(path)?;
    f.write_all(data)
}

/// Checks `outputs`' entries while the module runs: each must be a regular file named
/// after a declared slot and within the per-slot cap, and all together within the
/// total cap of `limits`.
///
/// # Errors
///
/// The first [`LimitExceeded::UndeclaredOutput`] or [`LimitExceeded::Output`] found,
/// else [`LimitExceeded::TotalOutput`]; an
/// I/O error reading the directory is not the module's fault and is ignored here (the
/// read-back after the run reports it).
pub(crate) fn check_outputs(
    outputs: &Path,
    declared: &BTreeSet<String>,
    limits: IoLimits,
) -> Result<(), LimitExceeded> {
    let limit = limits.max_output_bytes;
    let Ok(entries) = fs::read_dir(outputs) else {
        return Ok(());
    };
    let mut total = 0u64;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // `DirEntry::metadata` does not follow symlinks.
        let meta = entry.metadata();
        let is_file = meta.as_ref().is_ok_and(fs::Metadata::is_file);
        if !declared.contains(&name) || !is_file {
            return Err(LimitExceeded::UndeclaredOutput {
                file: name,
                declared: declared.iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let size = meta.map_or(0, |m| m.len());
        if size > limit {
            return Err(LimitExceeded::Output {
                file: name,
                size,
                limit,
            });
        }
        total = total.saturating_add(size);
    }
    total_within(total, limits)
}

fn total_within(total: u64, limits: IoLimits) -> Result<(), LimitExceeded> {
    if total > limits.max_total_output_bytes {
        return Err(LimitExceeded::TotalOutput {
            cap: limits.total_cap,
            total,
            limit: limits.max_total_output_bytes,
        });
    }
    Ok(())
}

/// Why the outputs could not be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadOutputsError {
    /// The module left something it may not.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The node could not read the directory or a file.
    #[error("reading the run's outputs: {0}")]
    Io(#[from] io::Error),
}

/// Reads the declared output files the module wrote, after checking every entry as
/// [`check_outputs`] does. Slots the module did not write are absent from the result.
///
/// # Errors
///
/// [`ReadOutputsError`].
pub(crate) fn read_outputs(
    outputs: &Path,
    declared: &BTreeSet<String>,
    limits: IoLimits,
) -> Result<BTreeMap<String, Vec<u8>>, ReadOutputsError> {
    check_outputs(outputs, declared, limits)?;
    let limit = limits.max_output_bytes;
    let mut read = BTreeMap::new();
    let mut total = 0u64;
    for entry in fs::read_dir(outputs)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // O_NOFOLLOW: the entry was a regular file when checked; never follow a link
        // swapped in since (the guest has stopped, but be exact).
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
            .open(outputs.join(&name))?;
        let size = file.metadata()?.len();
        if size > limit {
            return Err(LimitExceeded::Output {
                file: name,
                size,
                limit,
            }
            .into());
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // Read at most one byte past the limit, in case the file grew since.
        Read::by_ref(&mut file)
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)?;
        let got = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if got > limit {
            return Err(LimitExceeded::Output {
                file: name,
                size: got,
                limit,
            }
            .into());
        }
        total = total.saturating_add(got);
        // Checked before the next file is read, so memory stays within the cap.
        total_within(total, limits)?;
        read.insert(name, data);
    }
    Ok(read)
}
