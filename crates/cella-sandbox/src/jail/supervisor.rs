//! PID 1 of the instance: reaps every process, answers the seccomp filter's notifications
//! with `EPERM` and counts them by system call in the denials file, and ends with the
//! program's status (which ends every other process of the namespace).

use std::collections::BTreeMap;
use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::Serialize;

use super::{JailError, sys, syscalls};

/// The clone flags that create namespaces (`clone3`'s flags are checked against them).
pub(crate) const NAMESPACE_FLAGS: u64 = 0x7e02_0080;

/// Most distinct system call names the denials file counts one by one.
const MAX_DISTINCT: usize = 256;
/// The name the calls past [`MAX_DISTINCT`] distinct ones are counted under.
pub(crate) const OTHER: &str = "other";

/// What the denials file holds.
#[derive(Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Denials {
    /// All denied system calls.
    pub total: u64,
    /// Denied system calls by name (`nr_<n>` for a number the table does not know).
    pub by_syscall: BTreeMap<String, u64>,
}

/// The denials file, rewritten whole (by rename) after every denial.
#[derive(Debug)]
pub(crate) struct DenialsFile {
    path: PathBuf,
    tmp: PathBuf,
    denials: Denials,
}

impl DenialsFile {
    /// Creates the file with no denials.
    pub(crate) fn create(path: &Path) -> Result<Self, JailError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let f = DenialsFile {
            path: path.to_path_buf(),
            tmp: tmp.into(),
            denials: Denials::default(),
        };
        f.write()
            .map_err(|e| JailError::Setup(format!("writing {}: {e}", path.display())))?;
        Ok(f)
    }

    fn count(&mut self, name: String) {
        self.denials.total += 1;
        // A program can make any number of distinct unknown calls: past a bound they are
        // counted together, so the file stays small (its tmpfs holds 64 KiB).
        let name = if self.denials.by_syscall.len() >= MAX_DISTINCT
            && !self.denials.by_syscall.contains_key(&name)
        {
            OTHER.to_owned()
        } else {
            name
        };
        *self.denials.by_syscall.entry(name).or_default() += 1;
        if let Err(e) = self.write() {
            eprintln!("cella-jail: warning: denials file not updated: {e}");
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec(&self.denials).map_err(std::io::Error::other)?;
        fs::write(&self.tmp, json)?;
        let mut perms = fs::metadata(&self.tmp)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
        fs::set_permissions(&self.tmp, perms)?;
        fs::rename(&self.tmp, &self.path)
    }
}

/// Runs the supervisor until `program` ends; returns the exit status to end with
/// (the program's code, or 128 + the signal that killed it).
///
/// `channel` is where the program sends its seccomp listener once it installed the
/// filter; SIGCHLD must already be blocked (so none is lost before the signalfd exists).
pub(crate) fn supervise(program: Pid, channel: OwnedFd, mut denials: DenialsFile) -> u8 {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cella-jail: signalfd: {e}");
            return 125;
        }
    };
    let notif_len = sys::notif_sizes()
        .map(|s| usize::from(s.seccomp_notif))
        .unwrap_or(0);
    let mut channel = Some(channel);
    let mut listener: Option<OwnedFd> = None;
    loop {
        // Reap first: the program may have ended before the signalfd was read.
        if let Some(code) = reap(program) {
            return code;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(c) = &channel {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        if let Some(l) = &listener {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("cella-jail: poll: {e}");
                return 125;
            }
        }
        let ready: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let mut next = ready[1..].iter().copied();
        let channel_ready = channel
            .as_ref()
            .map(|_| next.next().unwrap_or(PollFlags::empty()));
        let listener_ready = listener
            .as_ref()
            .map(|_| next.next().unwrap_or(PollFlags::empty()));
        if let Some(l) = &listener
            && let Some(r) = listener_ready
        {
            if r.contains(PollFlags::POLLIN) {
                handle(l, notif_len, &mut denials);
            } else if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                // Every filtered process is gone.
                listener = None;
            }
        }
        if channel_ready.is_some_and(|r| !r.is_empty())
            && let Some(c) = channel.take()
        {
            listener = receive_fd(&c);
        }
        if !ready[0].is_empty() {
            while let Ok(Some(_)) = sfd.read_signal() {}
        }
    }
}

/// Reaps every exited child; the program's status if it was among them.
fn reap(program: Pid) -> Option<u8> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == program => {
                return Some(u8::try_from(code).unwrap_or(1));
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == program => {
                return Some(128u8.saturating_add(u8::try_from(sig as i32).unwrap_or(0)));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Receives the listener the program sends with SCM_RIGHTS (`None` if it closed the
/// channel without one: it failed before installing the filter).
fn receive_fd(channel: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = recvmsg::<()>(
        channel.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for cmsg in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let mut owned: Vec<OwnedFd> = fds
                .into_iter()
                .map(|fd| {
                    #[allow(unsafe_code, reason = "taking ownership of a received descriptor")]
                    // SAFETY: SCM_RIGHTS installed this descriptor in our table just now;
                    // nothing else refers to it.
                    unsafe {
                        OwnedFd::from_raw_fd(fd)
                    }
                })
                .collect();
            return owned.pop();
        }
    }
    None
}

/// Answers one notification: `EPERM` and counted, except `clone3` (see below).
fn handle(listener: &OwnedFd, notif_len: usize, denials: &mut DenialsFile) {
    let n = match sys::notif_recv(listener.as_fd(), notif_len) {
        Ok(n) => n,
        // The caller died or was interrupted meanwhile: nothing to answer.
        Err(_) => return,
    };
    let nr = i64::from(n.nr);
    let (errno, counted, name) = if n.arch != AUDIT_ARCH_X86_64 {
        // Another architecture's interface (the filter's arch check notifies instead of
        // killing): never run, named by its number in that interface.
        let abi = if n.arch == AUDIT_ARCH_I386 {
            "i386".to_owned()
        } else {
            format!("arch_{:x}", n.arch)
        };
        (Errno::EPERM, true, format!("{abi}:nr_{nr}"))
    } else {
        let name = syscalls::name(nr).map_or_else(|| format!("nr_{nr}"), str::to_owned);
        let (errno, counted) = native(&n, nr);
        (errno, counted, name)
    };
    // The memory read above must have been of the process that is still waiting.
    if !sys::notif_id_valid(listener.as_fd(), n.id) {
        return;
    }
    if counted {
        denials.count(name);
    }
    let _ = sys::notif_fail(listener.as_fd(), n.id, errno);
}

/// `AUDIT_ARCH_X86_64`: the interface the allowlist is written for.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: 32-bit calls (`int 0x80`).
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// The answer to a denied x86-64 call: the errno, and whether it is counted.
fn native(n: &sys::Notification, nr: i64) -> (Errno, bool) {
    if nr == libc::SYS_clone3 {
        // clone3 passes its flags in memory, which the BPF filter cannot read. It always
        // fails: ENOSYS makes libc fall back to clone (whose flags the filter checks);
        // a request for new namespaces is a denial like any other.
        match clone3_flags(n.pid, n.args[0]) {
            Some(flags) if flags & NAMESPACE_FLAGS != 0 => (Errno::EPERM, true),
            _ => (Errno::ENOSYS, false),
        }
    } else {
        (Errno::EPERM, true)
    }
}

/// The `flags` field of a `clone_args` at `addr` in process `pid`.
fn clone3_flags(pid: u32, addr: u64) -> Option<u64> {
    let mem = fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = [0u8; 8];
    mem.read_exact_at(&mut buf, addr).ok()?;
    Some(u64::from_ne_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_calls_past_the_bound_are_counted_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denials.json");
        let mut file = DenialsFile::create(&path).unwrap();
        for n in 0..4000 {
            file.count(format!("nr_{}", 100_000 + n));
        }
        file.count("nr_100000".into());
        let written: Denials = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(written.total, 4001);
        assert_eq!(written.by_syscall.len(), MAX_DISTINCT + 1);
        assert_eq!(written.by_syscall["nr_100000"], 2);
        assert_eq!(written.by_syscall[OTHER], 4000 - MAX_DISTINCT as u64);
        // Well within the denials tmpfs.
        assert!(fs::metadata(&path).unwrap().len() < super::super::mounts::DENIALS_TMPFS_BYTES / 2);
    }
}
