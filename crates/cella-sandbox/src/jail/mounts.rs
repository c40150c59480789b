//! The instance's file system: a read-only root made of the image's files, the spec's
//! binds and tmpfs mounts, `/dev` with four devices, a fresh `/proc`, the denials
//! directory. Runs in PID 1 of the instance, inside the new user and mount namespaces.
//!
//! How the root is built (after bubblewrap's approach):
//!
//! 1. the image directory and every bind source are opened (`O_PATH`) while PID 1 is
//!    still the jailer's host user, then every mount becomes private, so nothing
//!    propagates back to the host;
//! 2. a small tmpfs is mounted on the image directory itself, PID 1 becomes the
//!    instance's root (uid and gid 0 inside: the spec's unprivileged host ids when the
//!    jailer runs as root), and `pivot_root` makes the tmpfs the root, with the host's
//!    root at [`OLD_ROOT`]. From here on every source is reached through its descriptor
//!    (`OLD_ROOT/proc/self/fd/N`), never by its host path, which the instance's root may
//!    not be allowed to walk (a data dir only host root may enter);
//! 3. each top-level entry of the image is bound read-only from its descriptor. A directory
//!    of the image that must hold a mount point it does not have (say the pre-load
//!    module's library in `/lib`) is not bound whole: it is recreated in the tmpfs and its
//!    entries are bound one by one, recursively, so the image is never written;
//! 4. the spec's tmpfs and bind mounts, `/dev`, `/proc` and the denials tmpfs are mounted
//!    in order of depth (a mount inside another comes after it);
//! 5. the old root is detached and the root tmpfs remounted read-only.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{Gid, Uid, pivot_root};

use super::JailError;
use super::spec::JailSpec;

/// Where the host's root stays reachable while the instance's root is built.
const OLD_ROOT: &str = "/.cella-jail-old-root";

/// Devices bound from the host (read and write: writes to them go nowhere).
pub(crate) const DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];

/// Files of `/proc` that describe the host, not the instance: its kernel's memory layout
/// and physical addresses (`slabinfo`, `vmallocinfo`, `kallsyms`, `iomem`…), its timers,
/// keys, command line, load, CPU and memory use, devices and modules. The instance's
/// fresh `/proc` would show them, since procfs is per pid namespace only for processes.
/// Each that exists is covered by a read-only bind of `/dev/null`: it reads as empty.
pub(crate) const PROC_MASKED: [&str; 22] = [
    "/proc/slabinfo",
    "/proc/vmallocinfo",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/kallsyms",
    "/proc/kcore",
    "/proc/iomem",
    "/proc/ioports",
    "/proc/modules",
    "/proc/keys",
    "/proc/key-users",
    "/proc/cmdline",
    "/proc/loadavg",
    "/proc/stat",
    "/proc/meminfo",
    "/proc/vmstat",
    "/proc/zoneinfo",
    "/proc/buddyinfo",
    "/proc/pagetypeinfo",
    "/proc/partitions",
    "/proc/diskstats",
    "/proc/swaps",
];

/// Size of the denials directory's tmpfs.
pub(crate) const DENIALS_TMPFS_BYTES: u64 = 64 * 1024;

/// One mount of step 4.
#[derive(Debug)]
enum Mount {
    /// A size-capped tmpfs.
    Tmpfs { inside: PathBuf, size_bytes: u64 },
    /// A host path bound in (host path as seen from the pivoted root).
    Bind {
        host: PathBuf,
        inside: PathBuf,
        writable: bool,
    },
    /// A fresh procfs of the instance's pid namespace, read-only.
    Proc,
    /// `/dev`: a tmpfs with the four device binds and the usual links.
    Dev,
}

impl Mount {
    fn inside(&self) -> &Path {
        match self {
            Mount::Tmpfs { inside, .. } | Mount::Bind { inside, .. } => inside,
            Mount::Proc => Path::new("/proc"),
            Mount::Dev => Path::new("/dev"),
        }
    }
}

fn err(what: impl Into<String>, e: impl std::fmt::Display) -> JailError {
    JailError::Setup(format!("{}: {e}", what.into()))
}

/// Builds the instance's file system and makes it the root (see the module's docs).
///
/// `oom_control` (a host path) is bound read-only next to the denials file as
/// [`super::OOM_CONTROL_FILE`].
pub(crate) fn build_root(spec: &JailSpec, oom_control: Option<&Path>) -> Result<(), JailError> {
    let none: Option<&str> = None;
    let mut sources = Sources::default();
    let image = sources.open(&spec.rootfs)?;
    let oom_control = oom_control.map(|f| sources.open(f)).transpose()?;
    let binds = spec
        .binds
        .iter()
        .map(|b| sources.open(&b.host))
        .collect::<Result<Vec<_>, _>>()?;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| err("making the mounts private", e))?;
    let base = &spec.rootfs;
    // Owned by the instance's root (ids as the instance's user namespace maps them).
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m,mode=0755,uid=0,gid=0"),
    )
    .map_err(|e| err("mounting the root tmpfs", e))?;
    std::env::set_current_dir(base).map_err(|e| err("entering the root tmpfs", e))?;
    become_root()?;
    fs::create_dir(OLD_ROOT.trim_start_matches('/'))
        .map_err(|e| err(format!("creating {OLD_ROOT}"), e))?;
    pivot_root(".", OLD_ROOT.trim_start_matches('/'))
        .map_err(|e| err("pivot_root into the new root", e))?;
    std::env::set_current_dir("/").map_err(|e| err("chdir /", e))?;

    let denials_dir = spec
        .denials_file
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();

    let mut mounts: Vec<Mount> = vec![Mount::Dev, Mount::Proc];
    if let Some(file) = oom_control {
        mounts.push(Mount::Bind {
            host: file,
            inside: denials_dir.join(super::OOM_CONTROL_FILE),
            writable: false,
        });
    }
    mounts.push(Mount::Tmpfs {
        inside: denials_dir,
        size_bytes: DENIALS_TMPFS_BYTES,
    });
    mounts.extend(spec.tmpfs.iter().map(|t| Mount::Tmpfs {
        inside: t.inside.clone(),
        size_bytes: t.size_bytes,
    }));
    mounts.extend(spec.binds.iter().zip(binds).map(|(b, host)| Mount::Bind {
        host,
        inside: b.inside.clone(),
        writable: b.writable,
    }));
    mounts.sort_by_key(|m| m.inside().components().count());

    let targets: Vec<PathBuf> = mounts.iter().map(|m| m.inside().to_path_buf()).collect();
    populate(Path::new("/"), &image, &targets)?;

    for (i, m) in mounts.iter().enumerate() {
        // The closest earlier mount that holds this one decides how its mount point is
        // made: created in a tmpfs, required to exist in a bind.
        let holder = mounts[..i]
            .iter()
            .filter(|o| m.inside().starts_with(o.inside()))
            .max_by_key(|o| o.inside().components().count());
        let is_dir = match m {
            Mount::Bind { host, .. } => fs::metadata(host)
                .map_err(|e| err(format!("bind source {}", host.display()), e))?
                .is_dir(),
            _ => true,
        };
        match holder {
            Some(Mount::Bind { inside, .. }) => {
                if fs::symlink_metadata(m.inside()).is_err() {
                    return Err(JailError::Setup(format!(
                        "mount point {} does not exist in the bind {}",
                        m.inside().display(),
                        inside.display()
                    )));
                }
            }
            _ => make_mount_point(m.inside(), is_dir)?,
        }
        do_mount(m)?;
    }

    drop(sources);
    umount2(OLD_ROOT, MntFlags::MNT_DETACH).map_err(|e| err("detaching the host's root", e))?;
    fs::remove_dir(OLD_ROOT).map_err(|e| err("removing the old root's mount point", e))?;
    remount_read_only(Path::new("/"))
}

/// Host paths opened before PID 1 becomes the instance's root, each reached afterwards
/// through its descriptor in the host's `/proc` (below [`OLD_ROOT`] once pivoted): the
/// path walk to a source is the jailer's host user's, the access to the source itself
/// the instance's. Closed once the mounts are made.
#[derive(Default)]
struct Sources(Vec<OwnedFd>);

impl Sources {
    /// Opens `host` and returns the path that reaches it after `pivot_root`.
    fn open(&mut self, host: &Path) -> Result<PathBuf, JailError> {
        let fd = nix::fcntl::open(host, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| err(format!("opening {}", host.display()), e))?;
        let path = Path::new(OLD_ROOT).join(format!("proc/self/fd/{}", fd.as_raw_fd()));
        self.0.push(fd);
        Ok(path)
    }
}

/// Makes PID 1 uid and gid 0 of its user namespace, which the outer jailer mapped to the
/// instance's host ids: from here on it is the instance's root, with capabilities in its
/// own namespaces only. (Until now it was the jailer's host user, unmapped inside when
/// that is root, so it could not create files.) Supplementary groups were dropped by the
/// outer jailer (`setgroups` is denied in here).
fn become_root() -> Result<(), JailError> {
    let (uid, gid) = (Uid::from_raw(0), Gid::from_raw(0));
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| err("becoming gid 0 inside", e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| err("becoming uid 0 inside", e))
}

/// Recreates the image directory `image` at `inside` in the root tmpfs: entries that no
/// mount target needs to enter are bound whole (read-only); directories that must gain a
/// mount point are recreated and populated recursively.
fn populate(inside: &Path, image: &Path, targets: &[PathBuf]) -> Result<(), JailError> {
    let entries = fs::read_dir(image)
        .map_err(|e| err(format!("reading image dir {}", image.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| err(format!("reading {}", image.display()), e))?;
        let name = entry.file_name();
        let src = image.join(&name);
        let dst = inside.join(&name);
        if dst == Path::new(OLD_ROOT) {
            return Err(JailError::Setup(format!(
                "the image has an entry {OLD_ROOT}, which the jailer uses"
            )));
        }
        // A mount target hides whatever the image has at that path.
        if targets.contains(&dst) {
            continue;
        }
        let meta = fs::symlink_metadata(&src)
            .map_err(|e| err(format!("image entry {}", src.display()), e))?;
        if meta.file_type().is_symlink() {
            let to = fs::read_link(&src).map_err(|e| err(format!("link {}", src.display()), e))?;
            symlink(&to, &dst).map_err(|e| err(format!("link {}", dst.display()), e))?;
        } else if meta.is_dir() {
            fs::create_dir(&dst).map_err(|e| err(format!("mkdir {}", dst.display()), e))?;
            if targets.iter().any(|t| needs_split(&dst, &src, t)) {
                populate(&dst, &src, targets)?;
            } else {
                bind_read_only(&src, &dst)?;
            }
        } else {
            fs::File::create(&dst).map_err(|e| err(format!("creating {}", dst.display()), e))?;
            bind_read_only(&src, &dst)?;
        }
    }
    Ok(())
}

/// Whether mount target `target`, below the image directory `src` shown at `dst`, needs a
/// mount point that the image does not have (so `dst` must be recreated, not bound).
fn needs_split(dst: &Path, src: &Path, target: &Path) -> bool {
    let Ok(rest) = target.strip_prefix(dst) else {
        return false;
    };
    if rest.as_os_str().is_empty() {
        return false;
    }
    let mut p = src.to_path_buf();
    for c in rest.components() {
        p.push(c);
        if fs::symlink_metadata(&p).is_err() {
            return true;
        }
    }
    false
}

fn make_mount_point(p: &Path, is_dir: bool) -> Result<(), JailError> {
    if fs::symlink_metadata(p).is_ok() {
        return Ok(());
    }
    let what = || format!("creating mount point {}", p.display());
    if is_dir {
        fs::create_dir_all(p).map_err(|e| err(what(), e))
    } else {
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(|e| err(what(), e))?;
        }
        fs::File::create(p).map(drop).map_err(|e| err(what(), e))
    }
}

fn do_mount(m: &Mount) -> Result<(), JailError> {
    let none: Option<&str> = None;
    match m {
        Mount::Tmpfs { inside, size_bytes } => {
            let inodes = (size_bytes / 1024).max(4096);
            let data = format!("size={size_bytes},nr_inodes={inodes},mode=0755");
            mount(
                Some("tmpfs"),
                inside,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(data.as_str()),
            )
            .map_err(|e| err(format!("mounting tmpfs on {}", inside.display()), e))
        }
        Mount::Bind {
            host,
            inside,
            writable,
        } => {
            if *writable {
                mount(
                    Some(host),
                    inside,
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                )
                .map_err(|e| {
                    err(
                        format!("binding {} on {}", host.display(), inside.display()),
                        e,
                    )
                })
            } else {
                bind_read_only(host, inside)
            }
        }
        Mount::Proc => {
            mount(
                Some("proc"),
                "/proc",
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                none,
            )
            .map_err(|e| err("mounting /proc", e))?;
            // The first mask is a read-only bind of /dev/null; every other one is a bind
            // of that first mask, which copies its read-only, nosuid and nodev flags and
            // saves a remount (and a statvfs) per file on the launch path.
            let mut masked: Option<&Path> = None;
            for file in PROC_MASKED.iter().map(Path::new) {
                if fs::symlink_metadata(file).is_err() {
                    continue;
                }
                match masked {
                    None => {
                        bind_read_only(&Path::new(OLD_ROOT).join("dev/null"), file)?;
                        masked = Some(file);
                    }
                    Some(first) => mount(Some(first), file, none, MsFlags::MS_BIND, none)
                        .map_err(|e| err(format!("masking {}", file.display()), e))?,
                }
            }
            Ok(())
        }
        Mount::Dev => {
            mount(
                Some("tmpfs"),
                "/dev",
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                Some("size=64k,mode=0755"),
            )
            .map_err(|e| err("mounting /dev", e))?;
            for dev in DEVICES {
                fs::File::create(dev).map_err(|e| err(format!("creating {dev}"), e))?;
                let src = Path::new(OLD_ROOT).join(dev.trim_start_matches('/'));
                mount(Some(&src), dev, none, MsFlags::MS_BIND, none)
                    .map_err(|e| err(format!("binding {dev}"), e))?;
            }
            for (link, to) in [
                ("/dev/fd", "/proc/self/fd"),
                ("/dev/stdin", "/proc/self/fd/0"),
                ("/dev/stdout", "/proc/self/fd/1"),
                ("/dev/stderr", "/proc/self/fd/2"),
            ] {
                symlink(to, link).map_err(|e| err(format!("link {link}"), e))?;
            }
            remount_read_only(Path::new("/dev"))
        }
    }
}

/// Binds `src` on `dst` and makes that mount read-only, nosuid and nodev.
fn bind_read_only(src: &Path, dst: &Path) -> Result<(), JailError> {
    let none: Option<&str> = None;
    mount(
        Some(src),
        dst,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(|e| err(format!("binding {} on {}", src.display(), dst.display()), e))?;
    remount_read_only(dst)
}

/// Remounts the mount at `p` read-only (nosuid, nodev), keeping the flags a user
/// namespace may not clear (noexec, the atime mode), as the kernel requires.
fn remount_read_only(p: &Path) -> Result<(), JailError> {
    let none: Option<&str> = None;
    let have = statvfs(p)
        .map_err(|e| err(format!("statvfs {}", p.display()), e))?
        .flags();
    let mut flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    if have.contains(FsFlags::ST_NOEXEC) {
        flags |= MsFlags::MS_NOEXEC;
    }
    if have.contains(FsFlags::ST_NOATIME) {
        flags |= MsFlags::MS_NOATIME;
    } else if have.contains(FsFlags::ST_RELATIME) {
        flags |= MsFlags::MS_RELATIME;
    } else {
        flags |= MsFlags::MS_STRICTATIME;
    }
    if have.contains(FsFlags::ST_NODIRATIME) {
        flags |= MsFlags::MS_NODIRATIME;
    }
    mount(none, p, none, flags, none)
        .map_err(|e| err(format!("remounting {} read-only", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_split_only_for_a_missing_mount_point() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        fs::create_dir_all(lib.join("x86_64")).unwrap();
        fs::write(lib.join("x86_64/libc.so.6"), b"").unwrap();
        let dst = Path::new("/lib");
        // Present in the image: mount over it, no need to recreate /lib.
        assert!(!needs_split(dst, &lib, Path::new("/lib/x86_64/libc.so.6")));
        // Missing: /lib must be recreated to hold the mount point.
        assert!(needs_split(
            dst,
            &lib,
            Path::new("/lib/x86_64/libgcc_s.so.1")
        ));
        assert!(needs_split(dst, &lib, Path::new("/lib/extra/dir")));
        // Not below /lib, or /lib itself.
        assert!(!needs_split(dst, &lib, Path::new("/usr/lib/x")));
        assert!(!needs_split(dst, &lib, Path::new("/lib")));
    }
}
