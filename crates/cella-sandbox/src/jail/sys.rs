//! The few system calls that need `unsafe`, each behind a small safe function.
//!
//! Everything else goes through `nix`'s safe wrappers.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::ForkResult;

/// `fork()`.
///
/// The jailer is single-threaded and holds no locks when it forks (no tokio runtime
/// exists in the jailer process), so the child may allocate and run ordinary code.
pub(crate) fn fork() -> Result<ForkResult, Errno> {
    #[allow(unsafe_code, reason = "fork in a single-threaded process")]
    // SAFETY: the jailer process is single-threaded (see the module's callers: `main` runs
    // before any runtime or thread exists), so no other thread can hold a lock the child
    // would inherit.
    unsafe {
        nix::unistd::fork()
    }
}

/// `fork()` into new namespaces (`clone` with `flags` and no new stack): the child is the
/// first process of its new pid namespace, and the parent stays in the host's, where it
/// can write the child's uid and gid maps.
pub(crate) fn fork_into(flags: nix::sched::CloneFlags) -> Result<ForkResult, Errno> {
    let flags = libc::c_ulong::try_from(flags.bits() | libc::SIGCHLD).map_err(|_| Errno::EINVAL)?;
    #[allow(unsafe_code, reason = "clone with fork's semantics")]
    // SAFETY: with a null stack the child runs on a copy-on-write copy of the parent's
    // memory, as after `fork`; the jailer is single-threaded (see `fork`), so the child
    // inherits no lock held by another thread, and nothing in it registered at-fork
    // handlers that `clone` would skip.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match r {
        r if r < 0 => Err(Errno::last()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(i32::try_from(pid).map_err(|_| Errno::EINVAL)?),
        }),
    }
}

/// The highest Landlock ABI the kernel offers, or why it offers none.
pub(crate) fn landlock_abi() -> Result<i32, Errno> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    #[allow(unsafe_code, reason = "raw landlock_create_ruleset to query the ABI")]
    // SAFETY: with a NULL attribute, size 0 and the VERSION flag the kernel reads no memory
    // and only returns a number.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        i32::try_from(r).map_err(|_| Errno::EINVAL)
    }
}

/// Installs a seccomp filter on the calling thread and returns its user-notification
/// listener (`SECCOMP_FILTER_FLAG_NEW_LISTENER`). `no_new_privs` must be set.
pub(crate) fn install_seccomp_listener(
    program: &[seccompiler::sock_filter],
) -> Result<OwnedFd, Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::E2BIG)?;
    let fprog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter has the kernel's layout (u16, u8, u8, u32), as does
        // libc's; the kernel only reads through the pointer.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    #[allow(unsafe_code, reason = "seccomp(2) with a pointer to our own program")]
    // SAFETY: `fprog` points at `program`, which outlives the call; the kernel copies the
    // program and does not keep the pointer. The return value is a new file descriptor
    // that nothing else owns.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        );
        if fd < 0 {
            return Err(Errno::last());
        }
        let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The sizes of the user-notification structures in the running kernel.
pub(crate) fn notif_sizes() -> Result<libc::seccomp_notif_sizes, Errno> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    #[allow(unsafe_code, reason = "seccomp(2) filling a struct we own")]
    // SAFETY: the kernel writes exactly one `seccomp_notif_sizes` into `sizes`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes as *mut libc::seccomp_notif_sizes,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(sizes) }
}

/// One system call a filtered process is blocked in, waiting for our answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Notification {
    /// The notification's cookie, for the answer.
    pub(crate) id: u64,
    /// The calling thread, in the supervisor's pid namespace.
    pub(crate) pid: u32,
    /// The system call's number.
    pub(crate) nr: i32,
    /// The architecture of the call's interface (`AUDIT_ARCH_*`).
    pub(crate) arch: u32,
    /// Its arguments.
    pub(crate) args: [u64; 6],
}

/// Receives one notification. `buf_len` is the kernel's `seccomp_notif` size
/// ([`notif_sizes`]), which may exceed the struct this crate knows.
pub(crate) fn notif_recv(listener: BorrowedFd<'_>, buf_len: usize) -> Result<Notification, Errno> {
    let words = buf_len
        .max(std::mem::size_of::<libc::seccomp_notif>())
        .div_ceil(8);
    // u64 words: aligned for the struct's 8-byte fields; zeroed as the kernel requires.
    let mut buf = vec![0u64; words];
    #[allow(unsafe_code, reason = "ioctl filling a buffer we own")]
    // SAFETY: the buffer is zeroed, 8-byte aligned and at least as large as the kernel's
    // `seccomp_notif` (and as libc's), which is all the ioctl writes.
    let n = unsafe {
        let r = libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            buf.as_mut_ptr(),
        );
        if r < 0 {
            return Err(Errno::last());
        }
        std::ptr::read(buf.as_ptr().cast::<libc::seccomp_notif>())
    };
    Ok(Notification {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
        arch: n.data.arch,
        args: n.data.args,
    })
}

/// Answers notification `id`: the system call fails with `errno`.
pub(crate) fn notif_fail(listener: BorrowedFd<'_>, id: u64, errno: Errno) -> Result<(), Errno> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: -(errno as i32),
        flags: 0,
    };
    #[allow(unsafe_code, reason = "ioctl reading a struct we own")]
    // SAFETY: the kernel reads one `seccomp_notif_resp` from `resp`, which lives across
    // the call.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Whether notification `id` is still pending (its caller has not died meanwhile).
pub(crate) fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    #[allow(unsafe_code, reason = "ioctl reading a u64 we own")]
    // SAFETY: the kernel reads one u64 from `&id`.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        )
    };
    r == 0
}

const PR_CAPBSET_DROP: libc::c_int = 24;
const PR_SET_SECUREBITS: libc::c_int = 28;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;
/// `SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
/// SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
/// SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED`.
const SECURE_BITS: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80;

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> Result<(), Errno> {
    #[allow(unsafe_code, reason = "prctl with integer arguments")]
    // SAFETY: the options used here (capability bounding set, ambient set, securebits)
    // take integers only; no memory is passed.
    let r = unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Drops every capability for good: locks the securebits so that uid 0 gains nothing at
/// `execve`, empties the bounding and ambient sets, then the effective, permitted and
/// inheritable sets.
pub(crate) fn drop_all_capabilities() -> Result<(), Errno> {
    prctl(PR_SET_SECUREBITS, SECURE_BITS)?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    for cap in 0..=last_cap {
        match prctl(PR_CAPBSET_DROP, cap) {
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    #[allow(unsafe_code, reason = "capset with structs we own")]
    // SAFETY: version 3 capset reads one header and two data structs, which we pass.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Resets every signal's disposition to the default and unblocks all signals, so the
/// program does not inherit what the jailer (or the Rust runtime: `SIGPIPE` ignored) set.
pub(crate) fn reset_signals() -> Result<(), Errno> {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        #[allow(unsafe_code, reason = "setting a default disposition")]
        // SAFETY: SIG_DFL installs no handler, so no handler can run unsafely.
        unsafe {
            nix::sys::signal::signal(sig, SigHandler::SigDfl)?;
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Marks every descriptor from `first` up close-on-exec, so the program inherits only
/// stdin, stdout and stderr whatever its caller leaked.
pub(crate) fn cloexec_from(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    #[allow(unsafe_code, reason = "close_range with integer arguments")]
    // SAFETY: close_range takes integers only; with CLOEXEC it closes nothing now.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Empties the process's environment (the instance's PID 1 need not carry the caller's).
pub(crate) fn clear_env() {
    let names: Vec<std::ffi::OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    for k in names {
        #[allow(unsafe_code, reason = "changing the environment")]
        // SAFETY: the jailer is single-threaded (see `fork`): no other thread reads the
        // environment concurrently.
        unsafe {
            std::env::remove_var(k);
        }
    }
}
