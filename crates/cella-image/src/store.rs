//! The image store: `<data_dir>/images/<name>/{image.toml, rootfs/}`.
//!
//! A build copies every file into a staging directory beside the images
//! (`images/.build-*`), hashing it on the way, writes `image.toml` last, and renames the
//! staging directory into place: a failed build leaves nothing behind, and a rebuild
//! replaces the old image only once the new one is complete.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cella_libos::image::ImageFile;

use crate::elf::{self, SearchPath};
use crate::{IMAGE_TOML, IMAGES_DIR, ImageError, ImageSummary, ROOTFS_DIR, RuntimeImage, python};

/// Read buffer for hashing and copying: memory use is this, whatever the file size.
const BUF: usize = 64 * 1024;
/// `image.toml` is refused above this size (a python3 image's is about 300 KiB).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// How far a build is, reported after each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildProgress {
    /// Files copied and hashed so far.
    pub files_done: usize,
    /// Files in the image.
    pub files_total: usize,
    /// Bytes copied so far.
    pub bytes_done: u64,
    /// Bytes in the image.
    pub bytes_total: u64,
}

type ProgressFn = Arc<dyn Fn(BuildProgress) + Send + Sync>;

/// The runtime images of a node, under `<data_dir>/images`.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// An image whose every file was re-hashed and found as listed.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Its description: name, command line, files with their digests.
    pub image: RuntimeImage,
    /// The host directory holding its files at their in-instance paths.
    pub rootfs: PathBuf,
    /// The total size of its files.
    pub size_bytes: u64,
}

/// A staging directory removed on drop unless it was renamed into place.
struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = remove_tree(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a staging directory");
        }
    }
}

/// Removes `path` and everything under it, making read-only directories writable first.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    fn writable(dir: &Path) -> std::io::Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                writable(&entry.path())?;
            }
        }
        Ok(())
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if m.is_dir() => writable(path)?,
        Ok(_) => {}
    }
    fs::remove_dir_all(path)
}

/// Checks an image name: a valid runtime name (1–64 of `[A-Za-z0-9_.-]`) not starting
/// with `.` (the store's own staging directories do).
fn check_name(name: &str) -> Result<(), ImageError> {
    let probe = RuntimeImage {
        name: name.to_owned(),
        argv: vec!["x".into()],
        files: Vec::new(),
    };
    if let Err(reason) = probe.validate() {
        return Err(ImageError::InvalidName {
            name: name.to_owned(),
            reason: format!("{reason} (1 to 64 of A-Z a-z 0-9 _ . -)"),
        });
    }
    if name.starts_with('.') {
        return Err(ImageError::InvalidName {
            name: name.to_owned(),
            reason: "it must not start with '.'".into(),
        });
    }
    Ok(())
}

/// Checks an in-instance path: absolute, UTF-8, no `.` or `..` component, no empty
/// component, and returns it relative to the root.
fn relative(path: &str) -> Result<PathBuf, String> {
    if !path.starts_with('/') {
        return Err("not an absolute path".into());
    }
    if path.len() == 1 || path.ends_with('/') || path.contains("//") {
        return Err("not a file path".into());
    }
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => return Err("has a '.' or '..' component".into()),
        }
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err("has a '.' or '..' component".into());
    }
    Ok(out)
}

/// SHA-256 of a file, read in [`BUF`]-sized pieces.
fn hash_file(file: &mut File, path: &Path) -> Result<([u8; 32], u64), ImageError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; BUF];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io("reading", path, e)),
        };
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok((out, len))
}

/// Copies `src` to the new file `dst` and hashes what was written, in one pass; keeps
/// the source's modification time (Python checks `.pyc` files against it).
fn copy_and_hash(src: &Path, dst: &Path) -> Result<([u8; 32], u64, bool), ImageError> {
    let mut input = File::open(src).map_err(|e| ImageError::io("opening", src, e))?;
    let meta = input
        .metadata()
        .map_err(|e| ImageError::io("reading metadata of", src, e))?;
    if !meta.is_file() {
        return Err(ImageError::Build {
            name: String::new(),
            message: format!("{} is not a regular file", src.display()),
        });
    }
    let executable = meta.permissions().mode() & 0o111 != 0;
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| ImageError::io("creating", parent, e))?;
    }
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| ImageError::io("creating", dst, e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; BUF];
    let mut len = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io("reading", src, e)),
        };
        output
            .write_all(&buf[..n])
            .map_err(|e| ImageError::io("writing", dst, e))?;
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    if let Ok(mtime) = meta.modified() {
        output
            .set_modified(mtime)
            .map_err(|e| ImageError::io("setting the modification time of", dst, e))?;
    }
    let mode = if executable { 0o555 } else { 0o444 };
    output
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| ImageError::io("setting permissions of", dst, e))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok((out, len, executable))
}

/// Sets every directory under (and including) `dir` to 0555, deepest first.
fn seal_dirs(dir: &Path) -> Result<(), ImageError> {
    for entry in fs::read_dir(dir).map_err(|e| ImageError::io("reading", dir, e))? {
        let entry = entry.map_err(|e| ImageError::io("reading", dir, e))?;
        let ty = entry
            .file_type()
            .map_err(|e| ImageError::io("reading", &entry.path(), e))?;
        if ty.is_dir() {
            seal_dirs(&entry.path())?;
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555))
        .map_err(|e| ImageError::io("setting permissions of", dir, e))
}

/// Every entry under `dir`: regular files by in-instance path (with their sizes), and
/// the first entry that is neither a file nor a directory, if any.
fn walk(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, u64>,
    odd: &mut Option<(String, String)>,
) -> Result<(), ImageError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| ImageError::io("reading", dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| ImageError::io("reading", dir, e))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            odd.get_or_insert((
                format!("{prefix}/{}", name.to_string_lossy()),
                "its name is not UTF-8".into(),
            ));
            continue;
        };
        let inside = format!("{prefix}/{name}");
        let meta = fs::symlink_metadata(entry.path())
            .map_err(|e| ImageError::io("reading metadata of", &entry.path(), e))?;
        let ty = meta.file_type();
        if ty.is_dir() {
            walk(&entry.path(), &inside, files, odd)?;
        } else if ty.is_file() {
            files.insert(inside, meta.len());
        } else {
            let what = if ty.is_symlink() {
                "a symbolic link"
            } else {
                "a special file"
            };
            odd.get_or_insert((inside, format!("is {what}, not a regular file")));
        }
    }
    Ok(())
}

/// What an image is built from: the host file behind each in-instance path.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    files: BTreeMap<String, PathBuf>,
}

impl Plan {
    /// Adds `host` at the in-instance path `inside`; the same path twice must be the
    /// same host file.
    pub(crate) fn add(&mut self, name: &str, inside: &Path, host: &Path) -> Result<(), ImageError> {
        let bad = |message: String| ImageError::Build {
            name: name.to_owned(),
            message,
        };
        let Some(inside_str) = inside.to_str() else {
            return Err(bad(format!("path {} is not UTF-8", inside.display())));
        };
        relative(inside_str).map_err(|e| bad(format!("path {inside_str:?}: {e}")))?;
        match self.files.get(inside_str) {
            Some(existing) if existing == host => Ok(()),
            Some(existing) => {
                let same = fs::canonicalize(existing).ok() == fs::canonicalize(host).ok();
                if same {
                    Ok(())
                } else {
                    Err(bad(format!(
                        "{inside_str} would be both {} and {}",
                        existing.display(),
                        host.display()
                    )))
                }
            }
            None => {
                self.files.insert(inside_str.to_owned(), host.to_path_buf());
                Ok(())
            }
        }
    }

    /// Whether `inside` is already planned.
    pub(crate) fn contains(&self, inside: &Path) -> bool {
        inside.to_str().is_some_and(|s| self.files.contains_key(s))
    }
}

impl ImageStore {
    /// The store of the node whose data directory is `data_dir`: images live in
    /// `<data_dir>/images`, created by the first build.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join(IMAGES_DIR),
            progress: None,
        }
    }

    /// Reports build progress to `f` after each file copied.
    #[must_use]
    pub fn with_progress(mut self, f: impl Fn(BuildProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// `<data_dir>/images`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Builds (or rebuilds) image `name` from the Python interpreter `python`: the
    /// interpreter at its real path and at `python`, its shared libraries, its standard
    /// library (without tests, IDLE, Tk, `ensurepip` and installed packages), every
    /// extension module of `lib-dynload` and the libraries those load. Its command line
    /// is `[python, "-I", "-B", "program"]`.
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidName`], [`ImageError::NotElf`] for a script (a pyenv shim),
    /// [`ImageError::Python`] if the interpreter cannot say where its files are,
    /// [`ImageError::LibraryNotFound`] for a library of the interpreter, I/O errors.
    pub fn build_python3(&self, python: &Path, name: &str) -> Result<ImageSummary, ImageError> {
        check_name(name)?;
        let (argv, plan) = python::plan(python, name)?;
        self.build(name, argv, &plan)
    }

    /// Builds (or rebuilds) image `name` for the native program `binary`: its ELF
    /// interpreter and the shared libraries it loads (not the program itself: that is
    /// each function's payload). Its command line is `["./program"]`. For a static
    /// program the image has no file; named `native`, it is then exactly
    /// [`RuntimeImage::native`].
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidName`], [`ImageError::NotElf`],
    /// [`ImageError::LibraryNotFound`], I/O errors.
    pub fn build_native(&self, binary: &Path, name: &str) -> Result<ImageSummary, ImageError> {
        check_name(name)?;
        let info = elf::read_elf(binary)?;
        let search = SearchPath::host(&info);
        let mut plan = Plan::default();
        for lib in elf::resolve_closure(&[(binary.to_path_buf(), info)], &search)? {
            for inside in &lib.inside {
                plan.add(name, inside, &lib.host)?;
            }
        }
        self.build(name, RuntimeImage::native().argv, &plan)
    }

    /// Copies the planned files into a staging directory, writes `image.toml`, and
    /// renames it into place.
    fn build(
        &self,
        name: &str,
        argv: Vec<String>,
        plan: &Plan,
    ) -> Result<ImageSummary, ImageError> {
        fs::create_dir_all(&self.root).map_err(|e| ImageError::io("creating", &self.root, e))?;
        let staging_dir = tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(&self.root)
            .map_err(|e| ImageError::io("creating a staging directory in", &self.root, e))?
            .keep();
        let mut staging = Staging {
            path: staging_dir,
            armed: true,
        };
        let rootfs = staging.path.join(ROOTFS_DIR);
        fs::create_dir(&rootfs).map_err(|e| ImageError::io("creating", &rootfs, e))?;

        let mut bytes_total = 0u64;
        for host in plan.files.values() {
            let meta =
                fs::metadata(host).map_err(|e| ImageError::io("reading metadata of", host, e))?;
            bytes_total += meta.len();
        }
        let mut progress = BuildProgress {
            files_done: 0,
            files_total: plan.files.len(),
            bytes_done: 0,
            bytes_total,
        };
        let mut files = Vec::with_capacity(plan.files.len());
        let mut size = 0u64;
        for (inside, host) in &plan.files {
            let rel = relative(inside).map_err(|message| ImageError::Build {
                name: name.to_owned(),
                message,
            })?;
            let dst = rootfs.join(rel);
            let (digest, len, _exec) = copy_and_hash(host, &dst).map_err(|e| match e {
                ImageError::Build { message, .. } => ImageError::Build {
                    name: name.to_owned(),
                    message,
                },
                other => other,
            })?;
            files.push(ImageFile {
                path: inside.clone(),
                sha256: hex::encode(digest),
            });
            size += len;
            progress.files_done += 1;
            progress.bytes_done += len;
            if let Some(f) = &self.progress {
                f(progress);
            }
        }
        let image = RuntimeImage {
            name: name.to_owned(),
            argv,
            files,
        };
        image.validate().map_err(|message| ImageError::Build {
            name: name.to_owned(),
            message,
        })?;
        let text = toml::to_string(&image).map_err(|e| ImageError::Build {
            name: name.to_owned(),
            message: format!("encoding {IMAGE_TOML}: {e}"),
        })?;
        let manifest = staging.path.join(IMAGE_TOML);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&manifest)
            .map_err(|e| ImageError::io("creating", &manifest, e))?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| ImageError::io("writing", &manifest, e))?;
        seal_dirs(&rootfs)?;
        fs::set_permissions(&staging.path, fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io("setting permissions of", &staging.path, e))?;

        // Into place: the old image (if any) moves aside first and goes once the new one
        // is in; if the new one cannot move in, the old one moves back.
        let target = self.root.join(name);
        let mut old = None;
        if fs::symlink_metadata(&target).is_ok() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let aside = self
                .root
                .join(format!(".old-{name}-{}-{nanos}", std::process::id()));
            fs::rename(&target, &aside)
                .map_err(|e| ImageError::io("moving the previous image aside", &target, e))?;
            old = Some(aside);
        }
        if let Err(e) = fs::rename(&staging.path, &target) {
            if let Some(old) = &old {
                let _restored = fs::rename(old, &target);
            }
            return Err(ImageError::io("moving the new image into", &target, e));
        }
        staging.armed = false;
        if let Some(old) = old
            && let Err(e) = remove_tree(&old)
        {
            tracing::warn!(path = %old.display(), error = %e, "could not remove the previous image");
        }
        Ok(ImageSummary::of(&image, size))
    }

    /// Every image, by name, from its `image.toml` (files are not re-hashed: see
    /// [`ImageStore::load`]).
    ///
    /// # Errors
    ///
    /// [`ImageError::Manifest`] naming an image whose `image.toml` is unreadable, I/O
    /// errors.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("reading", &self.root, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("reading", &self.root, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') || check_name(&name).is_err() {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.push(name);
            }
        }
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let image = self.read_manifest(&name)?;
            let rootfs = self.root.join(&name).join(ROOTFS_DIR);
            let mut size = 0u64;
            for f in &image.files {
                if let Ok(rel) = relative(&f.path)
                    && let Ok(m) = fs::symlink_metadata(rootfs.join(rel))
                {
                    size += m.len();
                }
            }
            out.push(ImageSummary::of(&image, size));
        }
        Ok(out)
    }

    /// Reads and checks `<name>/image.toml`.
    fn read_manifest(&self, name: &str) -> Result<RuntimeImage, ImageError> {
        let dir = self.root.join(name);
        if !dir.is_dir() {
            return Err(ImageError::NotFound {
                name: name.to_owned(),
                dir: self.root.clone(),
            });
        }
        let path = dir.join(IMAGE_TOML);
        let bad = |message: String| ImageError::Manifest {
            name: name.to_owned(),
            message,
        };
        let file = File::open(&path).map_err(|e| ImageError::io("opening", &path, e))?;
        let mut text = String::new();
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| ImageError::io("reading", &path, e))?;
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(bad(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        let image: RuntimeImage = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        image.validate().map_err(bad)?;
        if image.name != name {
            return Err(bad(format!(
                "it names the image {:?}, but it is in the directory {name:?}",
                image.name
            )));
        }
        for f in &image.files {
            relative(&f.path).map_err(|e| bad(format!("file {:?}: {e}", f.path)))?;
        }
        Ok(image)
    }

    /// Loads image `name` and checks it: every file listed in `image.toml` is present in
    /// `rootfs/` as a regular file with that SHA-256 (each re-hashed, streaming), and
    /// nothing else is there.
    ///
    /// # Errors
    ///
    /// [`ImageError::NotFound`], [`ImageError::Manifest`], [`ImageError::Tampered`]
    /// naming the first missing, extra, changed or non-regular file, I/O errors.
    pub fn load(&self, name: &str) -> Result<LoadedImage, ImageError> {
        check_name(name)?;
        let image = self.read_manifest(name)?;
        let rootfs = self.root.join(name).join(ROOTFS_DIR);
        let tampered = |path: &str, problem: String| ImageError::Tampered {
            name: name.to_owned(),
            path: path.to_owned(),
            problem,
        };
        let meta =
            fs::symlink_metadata(&rootfs).map_err(|e| ImageError::io("reading", &rootfs, e))?;
        if !meta.is_dir() {
            return Err(tampered("/", format!("{ROOTFS_DIR} is not a directory")));
        }
        let mut present = BTreeMap::new();
        let mut odd = None;
        walk(&rootfs, "", &mut present, &mut odd)?;
        if let Some((path, problem)) = odd {
            return Err(tampered(&path, problem));
        }
        let mut size = 0u64;
        for f in &image.files {
            if present.remove(&f.path).is_none() {
                return Err(tampered(&f.path, "missing".into()));
            }
            let host = rootfs.join(relative(&f.path).map_err(|e| tampered(&f.path, e))?);
            let flags = rustix_nofollow();
            let mut file = OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(&host)
                .map_err(|e| ImageError::io("opening", &host, e))?;
            let (digest, len) = hash_file(&mut file, &host)?;
            let digest = hex::encode(digest);
            if !digest.eq_ignore_ascii_case(&f.sha256) {
                return Err(tampered(
                    &f.path,
                    format!(
                        "changed: its SHA-256 is {digest}, {IMAGE_TOML} lists {}",
                        f.sha256
                    ),
                ));
            }
            size += len;
        }
        if let Some(extra) = present.keys().next() {
            return Err(tampered(extra, format!("not listed in {IMAGE_TOML}")));
        }
        Ok(LoadedImage {
            image,
            rootfs,
            size_bytes: size,
        })
    }
}

/// `O_NOFOLLOW`: a link swapped in after the walk is refused rather than followed.
fn rustix_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits().cast_signed()
}

#[cfg(test)]
mod tests;
