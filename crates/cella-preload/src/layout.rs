//! The instance's working directory: the workload's files and the inputs written as
//! their chunks arrive, verified against their announced size and SHA-256, then made
//! read-only; the outputs and scratch directories writable; outputs collected after the
//! program ends, size-capped, regular files only.
//!
//! ```text
//! <root>/workload/<file>   read-only (0500 / 0400), the program's working directory
//! <root>/inputs/<slot>     read-only (0400), directory 0500
//! <root>/outputs/<slot>    writable, collected after the run
//! <root>/scratch/          writable, HOME
//! <root>/return            the return value, if the program writes it
//! <root>/task.json         the task's description (crate::task), read-only (0400)
//! ```
//!
//! Mode bits are defence in depth only: the backend's isolation (read-only mounts,
//! Gramine trusted files) is what keeps the workload from writing its inputs.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::protocol::{ErrorCode, FileMeta};

/// A failure to lay out or collect files, with the code the protocol reports it with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LayoutError {
    /// The protocol's code for it.
    pub code: ErrorCode,
    /// What happened, naming the file.
    pub message: String,
}

impl LayoutError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn io(what: &str, path: &Path, e: &std::io::Error) -> Self {
        Self::new(ErrorCode::Layout, format!("{what} {}: {e}", path.display()))
    }
}

/// The directories of one run.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates the directories under `root` (which must exist and be empty of them).
    ///
    /// # Errors
    ///
    /// [`LayoutError`] with [`ErrorCode::Layout`].
    pub fn create(root: &Path) -> Result<Self, LayoutError> {
        let layout = Self {
            root: root.to_path_buf(),
        };
        for (dir, may_exist) in [
            (layout.workload_dir(), false),
            (layout.input_dir(), false),
            (layout.output_dir(), true),
            (layout.scratch_dir(), true),
        ] {
            // A backend may mount size-capped file systems at outputs/ and scratch/; they
            // are accepted if empty. Anything else already there is refused.
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e)
                    if may_exist
                        && e.kind() == std::io::ErrorKind::AlreadyExists
                        && fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) => {}
                Err(e) => return Err(LayoutError::io("creating", &dir, &e)),
            }
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| LayoutError::io("setting permissions of", &dir, &e))?;
        }
        Ok(layout)
    }

    /// The workload's files; the program's working directory.
    pub fn workload_dir(&self) -> PathBuf {
        self.root.join("workload")
    }
    /// The inputs, one file per slot.
    pub fn input_dir(&self) -> PathBuf {
        self.root.join("inputs")
    }
    /// The outputs, one file per slot.
    pub fn output_dir(&self) -> PathBuf {
        self.root.join("outputs")
    }
    /// Scratch space.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("scratch")
    }
    /// Where the program may write its return value.
    pub fn return_file(&self) -> PathBuf {
        self.root.join("return")
    }
    /// The task's description, `task.json` ([`crate::task`]).
    pub fn task_file(&self) -> PathBuf {
        self.root.join(crate::task::TASK_FILE)
    }

    /// The environment every program gets: where everything is.
    pub fn env(&self) -> Vec<(String, String)> {
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            ("CELLA_WORKLOAD_DIR".into(), s(self.workload_dir())),
            ("CELLA_INPUT_DIR".into(), s(self.input_dir())),
            ("CELLA_OUTPUT_DIR".into(), s(self.output_dir())),
            ("CELLA_SCRATCH_DIR".into(), s(self.scratch_dir())),
            ("CELLA_RETURN_FILE".into(), s(self.return_file())),
            ("CELLA_TASK_FILE".into(), s(self.task_file())),
            ("HOME".into(), s(self.scratch_dir())),
        ]
    }

    /// Makes the workload and input directories read-only, once every file is in.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] with [`ErrorCode::Layout`].
    pub fn seal_read_only(&self) -> Result<(), LayoutError> {
        for dir in [self.workload_dir(), self.input_dir()] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o500))
                .map_err(|e| LayoutError::io("setting permissions of", &dir, &e))?;
        }
        Ok(())
    }

    /// Reads output `slot`: a regular file (not a link) of at most `limit` bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::OutputMissing`], [`ErrorCode::OutputTooLarge`] or
    /// [`ErrorCode::Layout`], naming the slot.
    pub fn read_output(&self, slot: &str, limit: u64) -> Result<Vec<u8>, LayoutError> {
        // The program may have left the directory or the file without read permission
        // (`umask 0777`, `chmod 0`): the pre-load module, which has no capability to
        // override modes, gives itself access back. Its output is read whatever its mode.
        let dir = self.output_dir();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| LayoutError::io("setting permissions of", &dir, &e))?;
        let path = dir.join(slot);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LayoutError::new(
                    ErrorCode::OutputMissing,
                    format!("the program did not write output {slot:?} ($CELLA_OUTPUT_DIR/{slot})"),
                ));
            }
            Err(e) => return Err(LayoutError::io("reading", &path, &e)),
        };
        if !meta.file_type().is_file() {
            return Err(LayoutError::new(
                ErrorCode::OutputMissing,
                format!("output {slot:?} is not a regular file"),
            ));
        }
        make_readable(&path, &meta)?;
        read_capped(&path, limit).map_err(|e| match e {
            Capped::Over(size) => LayoutError::new(
                ErrorCode::OutputTooLarge,
                format!(
                    "output {slot:?} holds {size} bytes or more, over the limit of {limit} bytes per slot"
                ),
            ),
            Capped::Io(e) => LayoutError::io("reading", &path, &e),
        })
    }

    /// Removes every file of the last run, so that [`Layout::create`] can run again
    /// (`Reset`, for functions with `reuse = same-function`): the workload, the inputs,
    /// the return value and everything else directly under the root are removed;
    /// `outputs/` and `scratch/` are emptied in place, since a backend may have mounted
    /// them. Directories the program made unwritable are made writable first.
    ///
    /// # Errors
    ///
    /// [`LayoutError`] with [`ErrorCode::Layout`], naming what could not be removed.
    pub fn wipe(&self) -> Result<(), LayoutError> {
        let keep = [self.output_dir(), self.scratch_dir()];
        for dir in &keep {
            empty_dir(dir)?;
        }
        for entry in
            fs::read_dir(&self.root).map_err(|e| LayoutError::io("listing", &self.root, &e))?
        {
            let path = entry
                .map_err(|e| LayoutError::io("listing", &self.root, &e))?
                .path();
            if !keep.contains(&path) {
                remove_tree(&path)?;
            }
        }
        Ok(())
    }

    /// The return value, empty if the program wrote none.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::OutputTooLarge`] over `limit` bytes, [`ErrorCode::Layout`] if it
    /// cannot be read.
    pub fn read_return_value(&self, limit: u64) -> Result<Vec<u8>, LayoutError> {
        let path = self.return_file();
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LayoutError::io("reading", &path, &e)),
            Ok(m) if !m.file_type().is_file() => {
                return Err(LayoutError::new(
                    ErrorCode::Layout,
                    "the return value ($CELLA_RETURN_FILE) is not a regular file",
                ));
            }
            Ok(_) => {}
        }
        make_readable(
            &path,
            &fs::symlink_metadata(&path).map_err(|e| LayoutError::io("reading", &path, &e))?,
        )?;
        read_capped(&path, limit).map_err(|e| match e {
            Capped::Over(size) => LayoutError::new(
                ErrorCode::OutputTooLarge,
                format!("the return value holds {size} bytes or more, over the limit of {limit}"),
            ),
            Capped::Io(e) => LayoutError::io("reading", &path, &e),
        })
    }
}

/// Removes everything in directory `dir`, keeping `dir` itself (it may be a mount point),
/// whatever modes the program left on what it made.
///
/// # Errors
///
/// [`LayoutError`] with [`ErrorCode::Layout`], naming what could not be removed.
pub fn empty_dir(dir: &Path) -> Result<(), LayoutError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| LayoutError::io("setting permissions of", dir, &e))?;
    for entry in fs::read_dir(dir).map_err(|e| LayoutError::io("listing", dir, &e))? {
        let entry = entry.map_err(|e| LayoutError::io("listing", dir, &e))?;
        remove_tree(&entry.path())?;
    }
    Ok(())
}

/// Removes `path` and, if it is a directory (not a link to one), everything under it,
/// first making every directory under it writable (the program may have made one 0500).
fn remove_tree(path: &Path) -> Result<(), LayoutError> {
    let meta = fs::symlink_metadata(path).map_err(|e| LayoutError::io("reading", path, &e))?;
    if meta.is_dir() {
        // Iterative, so a deep tree made by the program cannot exhaust the stack.
        let mut dirs = vec![path.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| LayoutError::io("setting permissions of", &dir, &e))?;
            for entry in fs::read_dir(&dir).map_err(|e| LayoutError::io("listing", &dir, &e))? {
                let entry = entry.map_err(|e| LayoutError::io("listing", &dir, &e))?;
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(entry.path());
                }
            }
        }
        fs::remove_dir_all(path).map_err(|e| LayoutError::io("removing", path, &e))
    } else {
        fs::remove_file(path).map_err(|e| LayoutError::io("removing", path, &e))
    }
}

/// Gives the owner read permission on the regular file `path` (just checked to be one,
/// `meta`) if the program took it away. `chmod` follows links, but the program has ended
/// and what it left was killed before outputs are collected, so nothing swaps the file.
fn make_readable(path: &Path, meta: &fs::Metadata) -> Result<(), LayoutError> {
    let mode = meta.permissions().mode();
    if meta.file_type().is_file() && mode & 0o400 == 0 {
        fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o777) | 0o400))
            .map_err(|e| LayoutError::io("setting permissions of", path, &e))?;
    }
    Ok(())
}

enum Capped {
    Over(u64),
    Io(std::io::Error),
}

/// Reads at most `limit` bytes, failing if there are more (whatever the file's size said:
/// a program may still be writing through a descriptor it leaked to a child).
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, Capped> {
    // No following a link swapped in after the caller's check, and no blocking on a FIFO
    // swapped in either: open without waiting, then insist on a regular file.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits().cast_signed())
        .open(path)
        .map_err(Capped::Io)?;
    if !file.metadata().map_err(Capped::Io)?.is_file() {
        return Err(Capped::Io(std::io::Error::other("not a regular file")));
    }
    let mut out = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(Capped::Io)?;
    let len = u64::try_from(out.len()).unwrap_or(u64::MAX);
    if len > limit {
        return Err(Capped::Over(len));
    }
    Ok(out)
}

/// A file being received: written as chunks arrive, hashed on the way.
pub struct Incoming {
    meta: FileMeta,
    path: PathBuf,
    file: Option<File>,
    hasher: ring::digest::Context,
    received: u64,
    read_only_mode: u32,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("name", &self.meta.name)
            .field("size", &self.meta.size)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// Starts receiving `meta` into `dir`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::Layout`] if the file cannot be created.
    pub fn create(dir: &Path, meta: &FileMeta) -> Result<Self, LayoutError> {
        let path = dir.join(&meta.name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LayoutError::io("creating", &path, &e))?;
        Ok(Self {
            meta: meta.clone(),
            path,
            file: Some(file),
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            received: 0,
            read_only_mode: if meta.executable { 0o500 } else { 0o400 },
        })
    }

    /// Whether every announced byte has arrived.
    pub fn complete(&self) -> bool {
        self.received == self.meta.size
    }

    /// Appends `data`.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::DigestMismatch`] beyond the announced size, [`ErrorCode::Layout`] if
    /// writing fails.
    pub fn append(&mut self, data: &[u8]) -> Result<(), LayoutError> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if self.received.saturating_add(len) > self.meta.size {
            return Err(LayoutError::new(
                ErrorCode::DigestMismatch,
                format!(
                    "{:?} receives more than its announced {} bytes",
                    self.meta.name, self.meta.size
                ),
            ));
        }
        let Some(file) = self.file.as_mut() else {
            return Err(LayoutError::new(ErrorCode::Layout, "file already closed"));
        };
        file.write_all(data)
            .map_err(|e| LayoutError::io("writing", &self.path, &e))?;
        self.hasher.update(data);
        self.received += len;
        Ok(())
    }

    /// Checks the digest and makes the file read-only; returns its digest.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::DigestMismatch`] if the content is not what was announced.
    pub fn finish(mut self) -> Result<[u8; 32], LayoutError> {
        if !self.complete() {
            return Err(LayoutError::new(
                ErrorCode::DigestMismatch,
                format!(
                    "{:?} has {} of its announced {} bytes",
                    self.meta.name, self.received, self.meta.size
                ),
            ));
        }
        drop(self.file.take());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(self.hasher.finish().as_ref());
        if digest[..] != self.meta.sha256[..] {
            return Err(LayoutError::new(
                ErrorCode::DigestMismatch,
                format!(
                    "{:?}: SHA-256 is {}, {} was announced",
                    self.meta.name,
                    hex::encode(digest),
                    hex::encode(&self.meta.sha256)
                ),
            ));
        }
        fs::set_permissions(&self.path, fs::Permissions::from_mode(self.read_only_mode))
            .map_err(|e| LayoutError::io("setting permissions of", &self.path, &e))?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::sha256;

    fn meta(name: &str, data: &[u8]) -> FileMeta {
        FileMeta {
            name: name.into(),
            size: data.len() as u64,
            sha256: sha256(data).to_vec(),
            executable: false,
        }
    }

    #[test]
    fn receives_verifies_and_refuses_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let mut f = Incoming::create(&layout.input_dir(), &meta("a", b"hello")).unwrap();
        f.append(b"he").unwrap();
        assert!(!f.complete());
        f.append(b"llo").unwrap();
        assert!(f.complete());
        assert_eq!(f.finish().unwrap(), sha256(b"hello"));
        let mode = fs::metadata(layout.input_dir().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);

        let mut f = Incoming::create(&layout.input_dir(), &meta("b", b"hello")).unwrap();
        assert_eq!(
            f.append(b"hello!").unwrap_err().code,
            ErrorCode::DigestMismatch
        );
        f.append(b"hellO").unwrap();
        let err = f.finish().unwrap_err();
        assert_eq!(err.code, ErrorCode::DigestMismatch);
        assert!(err.message.contains("\"b\""), "{err}");

        let f = Incoming::create(&layout.input_dir(), &meta("c", b"xy")).unwrap();
        assert_eq!(f.finish().unwrap_err().code, ErrorCode::DigestMismatch);
        // The same name twice is refused by the file system, not overwritten.
        assert!(Incoming::create(&layout.input_dir(), &meta("a", b"")).is_err());
        layout.seal_read_only().unwrap();
    }

    #[test]
    fn outputs_are_capped_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        fs::write(layout.output_dir().join("o"), b"12345").unwrap();
        assert_eq!(layout.read_output("o", 5).unwrap(), b"12345");
        assert_eq!(
            layout.read_output("o", 4).unwrap_err().code,
            ErrorCode::OutputTooLarge
        );
        let missing = layout.read_output("p", 4).unwrap_err();
        assert_eq!(missing.code, ErrorCode::OutputMissing);
        assert!(missing.message.contains("\"p\""));
        std::os::unix::fs::symlink("/etc/hostname", layout.output_dir().join("l")).unwrap();
        assert_eq!(
            layout.read_output("l", 1 << 20).unwrap_err().code,
            ErrorCode::OutputMissing
        );
        // A FIFO is refused without blocking.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            layout.output_dir().join("f"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(
            layout.read_output("f", 10).unwrap_err().code,
            ErrorCode::OutputMissing
        );
        assert!(read_capped(&layout.output_dir().join("f"), 10).is_err());
        assert_eq!(layout.read_return_value(10).unwrap(), b"");
        fs::write(layout.return_file(), b"rv").unwrap();
        assert_eq!(layout.read_return_value(10).unwrap(), b"rv");
        assert_eq!(
            layout.read_return_value(1).unwrap_err().code,
            ErrorCode::OutputTooLarge
        );
    }

    #[test]
    fn an_output_is_read_whatever_mode_the_program_left() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let out = layout.output_dir().join("o");
        fs::write(&out, b"result").unwrap();
        fs::write(layout.return_file(), b"rv").unwrap();
        // As `umask 0777` then writing would leave them; and the directory too.
        for p in [&out, &layout.return_file()] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o000)).unwrap();
        }
        fs::set_permissions(layout.output_dir(), fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(layout.read_output("o", 10).unwrap(), b"result");
        assert_eq!(layout.read_return_value(10).unwrap(), b"rv");
        // Readable by their owner again: a process without CAP_DAC_OVERRIDE (the
        // pre-load module in a sandbox) reads them too.
        for p in [&out, &layout.return_file()] {
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o400, 0o400);
        }
        let dir_mode = fs::metadata(layout.output_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o700, 0o700);
    }

    #[test]
    fn wipe_leaves_an_empty_root_but_the_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        fs::write(layout.workload_dir().join("program"), b"p").unwrap();
        fs::write(layout.input_dir().join("in"), b"secret").unwrap();
        layout.seal_read_only().unwrap();
        fs::write(layout.output_dir().join("o"), b"o").unwrap();
        fs::write(layout.return_file(), b"rv").unwrap();
        // A tree the program made hard to remove: deep, and a directory without write.
        let deep = layout.scratch_dir().join("a/b/c");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path(), layout.scratch_dir().join("up")).unwrap();
        fs::set_permissions(
            layout.scratch_dir().join("a/b"),
            fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        layout.wipe().unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["outputs", "scratch"]);
        assert_eq!(fs::read_dir(layout.output_dir()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(layout.scratch_dir()).unwrap().count(), 0);
        // The link was removed, not followed.
        assert!(dir.path().exists());
    }
}
