//! The jailer: runs one program in new user, mount, pid, net, ipc and uts namespaces on a
//! read-only root made of a runtime image, under rlimits, cgroup v1 limits (when
//! writable), Landlock and a seccomp allowlist whose denials are counted. See
//! `docs/sandbox.md` for the layers and what each one stops.
//!
//! ```text
//! outer jailer (host namespaces; reads the spec on stdin, cgroups, clones PID 1 into
//!  │            new namespaces, writes its uid/gid map: 0 inside is never host root)
//!  └─ PID 1: supervisor (hostname, mounts, becomes root inside, pivot_root; reaps; answers seccomp
//!     │        notifications with EPERM and counts them; exits with the program's status)
//!     └─ program (no_new_privs, no capabilities, rlimits, Landlock, seccomp) ─ exec argv
//! ```
//!
//! Use [`command`] to start the jailer, and [`main`] as its entrypoint.

mod cgroup;
mod landlock_rules;
mod limits;
mod mounts;
pub mod seccomp;
mod spec;
mod supervisor;
mod sys;
mod syscalls;

use std::ffi::CString;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

pub use seccomp::Allowlist;
pub use spec::{Bind, CgroupLimits, HostIds, JailSpec, Limits, Tmpfs};
pub use supervisor::Denials;

/// Exit status of the jailer when it could not set the instance up (the reason is on
/// stderr, prefixed `cella-jail:`).
pub const EXIT_SETUP_FAILED: u8 = 125;
/// Exit status when the program exists but could not be executed.
pub const EXIT_CANNOT_EXEC: u8 = 126;
/// Exit status when the program was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// The file next to the denials file (in the directory the jailer mounts for it) where
/// the instance's cgroup `memory.oom_control` is bound read-only when the cgroup limits
/// apply: its `oom_kill` count tells that the kernel killed a process at the instance's
/// memory limit. Absent without a cgroup.
pub const OOM_CONTROL_FILE: &str = "memory.oom_control";

/// How the jailer's warning starts when the cgroup limits could not be applied and the
/// spec did not require them (the instance runs under its rlimits only).
pub const CGROUP_SKIPPED: &str = "cella-jail: warning: cgroup limits not applied";

/// How the jailer's refusal starts when the spec requires cgroup limits it cannot apply.
pub const CGROUP_REQUIRED: &str = "the instance's cgroup limits are required";

fn cgroup_required(why: &str) -> JailError {
    JailError::Setup(format!(
        "{CGROUP_REQUIRED} and cannot be applied ({why}); without them its memory and \
         process limits are per process only, which the node's operator must accept \
         explicitly"
    ))
}

/// The largest spec the jailer reads.
const MAX_SPEC_BYTES: u64 = 4 << 20;

/// Why the jailer could not start an instance.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The spec is malformed or asks for something the jailer refuses.
    #[error("invalid jail spec: {0}")]
    Spec(String),
    /// The seccomp allowlist is malformed.
    #[error("seccomp allowlist: {0}")]
    Allowlist(String),
    /// The kernel offers no Landlock: the jailer refuses to run without it.
    #[error("Landlock is not available, and cella-jail never runs a program without it: {0}")]
    NoLandlock(String),
    /// Landlock could not be applied.
    #[error("Landlock: {0}")]
    Landlock(String),
    /// A step of setting the instance up failed.
    #[error("{0}")]
    Setup(String),
    /// Starting the jailer process failed.
    #[error("starting the jailer: {0}")]
    Spawn(#[from] std::io::Error),
}

/// A command that runs `spec` in the jailer at `jailer` (the `cella-jail` binary, or a
/// multi-call binary that dispatches on the file name `cella-jail`).
///
/// The spec travels as JSON through a pipe on the jailer's stdin (the program's stdin is
/// `/dev/null`); stdout and stderr are the program's (and the jailer's messages). The
/// jailer leads a process group of its own: killing that group ends the instance.
pub fn command(jailer: &Path, spec: &JailSpec) -> Result<tokio::process::Command, JailError> {
    spec.validate()?;
    let json = serde_json::to_vec(spec).map_err(|e| JailError::Spec(e.to_string()))?;
    let (reader, mut writer) = std::io::pipe()?;
    if json.len() > 60 * 1024 {
        // More than a default pipe holds: ask for a bigger pipe (up to 1 MiB).
        let _ = nix::fcntl::fcntl(writer.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        let size = nix::fcntl::fcntl(writer.as_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ)
            .map_err(std::io::Error::from)?;
        if usize::try_from(size).unwrap_or(0) < json.len() {
            return Err(JailError::Spec(format!(
                "the spec is {} bytes, more than a pipe holds",
                json.len()
            )));
        }
    }
    writer.write_all(&json)?;
    drop(writer);
    let mut cmd = tokio::process::Command::new(jailer);
    cmd.arg0("cella-jail")
        .stdin(Stdio::from(OwnedFd::from(reader)))
        .process_group(0);
    Ok(cmd)
}

/// The jailer's entrypoint: reads a [`JailSpec`] on stdin and runs it; exits with the
/// program's status, 128 + N if a signal N killed it, or [`EXIT_SETUP_FAILED`] with a
/// message on stderr. Must be called before any thread exists.
pub fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cella-jail: {e}");
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> JailError {
    JailError::Setup(format!("{what}: {e}"))
}

/// The outer jailer.
fn run() -> Result<u8, JailError> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_SPEC_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| setup("reading the spec on stdin", e))?;
    let mut spec: JailSpec =
        serde_json::from_str(&text).map_err(|e| JailError::Spec(e.to_string()))?;
    spec.validate()?;
    // Host paths are reached through the old root while the instance's root is built,
    // where an absolute symlink would point into the new root: resolve them now.
    spec.rootfs = std::fs::canonicalize(&spec.rootfs)
        .map_err(|e| JailError::Spec(format!("rootfs {}: {e}", spec.rootfs.display())))?;
    for b in &mut spec.binds {
        b.host = std::fs::canonicalize(&b.host)
            .map_err(|e| JailError::Spec(format!("bind source {}: {e}", b.host.display())))?;
    }
    if !spec.rootfs.is_dir() {
        return Err(JailError::Spec(format!(
            "rootfs {} is not a directory",
            spec.rootfs.display()
        )));
    }
    landlock_rules::check_available()?;
    // The program's environment is the spec's; the instance keeps nothing of ours.
    sys::clear_env();
    let allowlist = Allowlist::builtin()?;

    // The program's stdin: /dev/null, not the spec's pipe.
    let null = std::fs::File::open("/dev/null").map_err(|e| setup("opening /dev/null", e))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| setup("stdin", e))?;
    drop(null);

    let mut cgroup = match &spec.cgroup {
        Some(limits) => match cgroup::Cgroup::create(limits) {
            Ok(c) => Some(c),
            Err(why) if limits.required => return Err(cgroup_required(&why)),
            Err(warning) => {
                eprintln!("{CGROUP_SKIPPED}: {warning}");
                None
            }
        },
        None => None,
    };
    // Without a cgroup, memory that no process's RLIMIT_AS counts is not allowed either.
    let filter = match cgroup.as_ref().and_then(cgroup::Cgroup::oom_control) {
        Some(_) => allowlist.compile()?,
        None => allowlist.compile_without(seccomp::MEMORY_UNBOUNDED)?,
    };
    let oom_control = cgroup.as_ref().and_then(cgroup::Cgroup::oom_control);
    let result = run_namespaced(&spec, &filter, cgroup.as_mut(), oom_control.as_deref());
    if let Some(c) = cgroup.as_mut() {
        c.remove();
    }
    result
}

/// Enters the namespaces, starts PID 1 and waits for it.
fn run_namespaced(
    spec: &JailSpec,
    filter: &[seccompiler::sock_filter],
    cgroup: Option<&mut cgroup::Cgroup>,
    oom_control: Option<&Path>,
) -> Result<u8, JailError> {
    // Who the instance's root is on the host: never host root. Root maps the spec's
    // unprivileged ids; any other user can map only its own.
    let (uid, gid) = if nix::unistd::geteuid().is_root() {
        // The instance keeps the groups it starts with (`setgroups` is denied inside):
        // none of root's.
        nix::unistd::setgroups(&[]).map_err(|e| setup("dropping supplementary groups", e))?;
        (spec.host_ids.uid, spec.host_ids.gid)
    } else {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };
    // A process that changed its uid (a root caller dropping to an unprivileged one) is
    // not dumpable, and then its child's maps are not its own to write.
    nix::sys::prctl::set_dumpable(true).map_err(|e| setup("PR_SET_DUMPABLE", e))?;

    // Signals are read from a signalfd: block them before forking so none is lost.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|e| setup("sigprocmask", e))?;
    let (go_read, go_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| setup("pipe", e))?;

    // PID 1 starts in new namespaces while the outer jailer stays in the host's: from
    // there, root may map the instance's root to any host uid, which a process inside
    // its own new user namespace may not.
    let namespaces = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    let forked = sys::fork_into(namespaces).map_err(|e| {
        setup(
            "creating the namespaces (are user namespaces allowed? see /proc/sys/user/max_user_namespaces)",
            e,
        )
    })?;
    match forked {
        ForkResult::Child => {
            drop(go_write);
            let code = instance(spec, filter, go_read, oom_control);
            std::process::exit(i32::from(code));
        }
        ForkResult::Parent { child } => {
            drop(go_read);
            let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
                .map_err(|e| setup("signalfd", e))?;
            if let Err(e) = write_maps(child, uid, gid) {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(e);
            }
            if let Some(cg) = cgroup
                && let Err(e) = cg.attach(child.as_raw())
            {
                let why = format!("moving the instance in: {e}");
                if spec.cgroup.is_some_and(|c| c.required) {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(cgroup_required(&why));
                }
                // Like an unwritable hierarchy: a warning; the rlimits still hold.
                eprintln!("{CGROUP_SKIPPED}: {why}");
            }
            let mut go = std::fs::File::from(go_write);
            if go.write_all(b"g").is_err() {
                // PID 1 died already; its status says why.
                let _ = kill(child, Signal::SIGKILL);
            }
            drop(go);
            wait_instance(child, &sfd)
        }
    }
}

/// Maps uid and gid 0 of `child`'s new user namespace to host `uid` and `gid`, one id
/// each, with `setgroups` denied inside.
fn write_maps(child: Pid, uid: u32, gid: u32) -> Result<(), JailError> {
    let proc = PathBuf::from(format!("/proc/{child}"));
    for (file, text) in [
        ("setgroups", "deny".to_owned()),
        ("uid_map", format!("0 {uid} 1")),
        ("gid_map", format!("0 {gid} 1")),
    ] {
        let path = proc.join(file);
        std::fs::write(&path, text)
            .map_err(|e| setup(&format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// Waits for PID 1, killing it if the jailer is asked to stop; its status.
fn wait_instance(child: Pid, sfd: &SignalFd) -> Result<u8, JailError> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(u8::try_from(code).unwrap_or(1)),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(128u8.saturating_add(u8::try_from(sig as i32).unwrap_or(0)));
            }
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(setup("waiting for the instance", e)),
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                if signo != Signal::SIGCHLD as i32 {
                    // Asked to stop: the instance goes, then we clean up.
                    let _ = kill(child, Signal::SIGKILL);
                }
            }
            Ok(None) | Err(Errno::EINTR) => {}
            Err(e) => return Err(setup("reading signals", e)),
        }
    }
}

/// PID 1 of the instance. Returns the exit status; never returns to the caller's flow.
fn instance(
    spec: &JailSpec,
    filter: &[seccompiler::sock_filter],
    go: OwnedFd,
    oom_control: Option<&Path>,
) -> u8 {
    match instance_setup(spec, go, oom_control) {
        Ok(None) => EXIT_SETUP_FAILED,
        Ok(Some(denials)) => start_program(spec, filter, denials),
        Err(e) => {
            eprintln!("cella-jail: {e}");
            EXIT_SETUP_FAILED
        }
    }
}

/// Waits for the outer jailer's go, then builds the instance's world. `None`: the outer
/// jailer went away (nothing to report).
fn instance_setup(
    spec: &JailSpec,
    go: OwnedFd,
    oom_control: Option<&Path>,
) -> Result<Option<supervisor::DenialsFile>, JailError> {
    // If the outer jailer dies, so does the instance (and with PID 1, the namespace).
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| setup("PR_SET_PDEATHSIG", e))?;
    let mut byte = [0u8; 1];
    let mut go = std::fs::File::from(go);
    match go.read(&mut byte) {
        Ok(1) => {}
        _ => return Ok(None),
    }
    drop(go);
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| setup("creating the cgroup namespace", e))?;
    nix::unistd::sethostname(&spec.hostname).map_err(|e| setup("sethostname", e))?;
    mounts::build_root(spec, oom_control)?;
    let denials = supervisor::DenialsFile::create(&spec.denials_file)?;
    Ok(Some(denials))
}

/// Forks the program and supervises it.
fn start_program(
    spec: &JailSpec,
    filter: &[seccompiler::sock_filter],
    denials: supervisor::DenialsFile,
) -> u8 {
    let pair = nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    );
    let (ours, theirs) = match pair {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cella-jail: socketpair: {e}");
            return EXIT_SETUP_FAILED;
        }
    };
    match sys::fork() {
        Err(e) => {
            eprintln!("cella-jail: fork: {e}");
            EXIT_SETUP_FAILED
        }
        Ok(ForkResult::Child) => {
            drop(ours);
            let (code, e) = program(spec, filter, theirs);
            eprintln!("cella-jail: {e}");
            std::process::exit(i32::from(code));
        }
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            supervisor::supervise(child, ours, denials)
        }
    }
}

/// The program's process: confines itself, then `exec`s. Returns only on failure, with
/// the exit status and why.
fn program(
    spec: &JailSpec,
    filter: &[seccompiler::sock_filter],
    channel: OwnedFd,
) -> (u8, JailError) {
    match confine_and_resolve(spec) {
        Ok((path, argv, env)) => {
            let listener = match sys::install_seccomp_listener(filter) {
                Ok(l) => l,
                Err(e) => return (EXIT_SETUP_FAILED, setup("installing the seccomp filter", e)),
            };
            let fds = [listener.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            if let Err(e) = nix::sys::socket::sendmsg::<()>(
                channel.as_raw_fd(),
                &[IoSlice::new(b"l")],
                &cmsg,
                MsgFlags::empty(),
                None,
            ) {
                return (
                    EXIT_SETUP_FAILED,
                    setup("handing the seccomp listener over", e),
                );
            }
            drop(listener);
            drop(channel);
            let e = nix::unistd::execve(&path, &argv, &env).unwrap_err();
            let code = if e == Errno::ENOENT {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXEC
            };
            (
                code,
                setup(&format!("executing {}", path.to_string_lossy()), e),
            )
        }
        Err((code, e)) => (code, e),
    }
}

type Exec = (CString, Vec<CString>, Vec<CString>);

/// Everything before the seccomp filter: signals, cwd, limits, privileges, Landlock,
/// and the program's path, argv and environment as C strings.
fn confine_and_resolve(spec: &JailSpec) -> Result<Exec, (u8, JailError)> {
    let fail = |e: JailError| (EXIT_SETUP_FAILED, e);
    sys::reset_signals().map_err(|e| fail(setup("resetting signals", e)))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| fail(setup("PR_SET_PDEATHSIG", e)))?;
    sys::cloexec_from(3).map_err(|e| fail(setup("close_range", e)))?;
    std::env::set_current_dir(&spec.cwd).map_err(|e| {
        fail(setup(
            &format!("working directory {}", spec.cwd.display()),
            e,
        ))
    })?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail(setup("PR_SET_NO_NEW_PRIVS", e)))?;
    sys::drop_all_capabilities().map_err(|e| fail(setup("dropping capabilities", e)))?;
    limits::apply(&spec.limits).map_err(fail)?;
    landlock_rules::restrict(&spec.landlock_writable).map_err(fail)?;

    let cstr = |s: &str| CString::new(s).map_err(|e| fail(JailError::Spec(e.to_string())));
    let argv = spec
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    let path = resolve(spec).ok_or_else(|| {
        (
            EXIT_NOT_FOUND,
            JailError::Setup(format!(
                "program {} not found in the instance",
                spec.argv[0]
            )),
        )
    })?;
    let path = cstr(&path.to_string_lossy())?;
    Ok((path, argv, env))
}

/// `argv[0]` as a path: as given if it has a `/`, else the first match in `PATH`.
fn resolve(spec: &JailSpec) -> Option<PathBuf> {
    let name = &spec.argv[0];
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = spec.env.get("PATH").map_or("/usr/bin:/bin", String::as_str);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
