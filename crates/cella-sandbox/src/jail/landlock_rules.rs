//! The jail's Landlock layer: the program reads and executes anything it can see, writes
//! only below [`JailSpec::landlock_writable`](super::JailSpec::landlock_writable) and to
//! the four devices, makes no TCP connection or binding, and cannot signal or reach an
//! abstract Unix socket outside its own domain (the supervisor is outside it).
//!
//! Landlock is a hard requirement: the outer jailer refuses to start on a kernel without
//! it ([`check_available`]), and the program is not started if the ruleset is not
//! enforced. Newer rights than the kernel offers are dropped (best effort); which ABI
//! ran is in the error or, with `CELLA_JAIL_DEBUG=1`, on stderr.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::JailError;
use super::mounts::DEVICES;
use super::sys;

/// The newest Landlock ABI whose rights this layer asks for (6: signal and abstract
/// socket scoping; 5: device ioctls; 4: TCP; 3: truncation).
const ABI_WANTED: ABI = ABI::V6;

/// Refuses to go on when the kernel has no Landlock, naming why.
pub(crate) fn check_available() -> Result<i32, JailError> {
    sys::landlock_abi().map_err(|e| {
        let why = match e {
            nix::errno::Errno::ENOSYS => "the kernel was built without it",
            nix::errno::Errno::EOPNOTSUPP => "it is not enabled (boot with lsm=...,landlock)",
            _ => "the kernel refused the version query",
        };
        JailError::NoLandlock(format!("{why} ({e})"))
    })
}

/// Restricts the calling process (and what it executes) as described in the module docs.
pub(crate) fn restrict(writable: &[PathBuf]) -> Result<(), JailError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| JailError::Landlock(format!("{what}: {e}"));
    let all = AccessFs::from_all(ABI_WANTED);
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .map_err(|e| fail("handling file system access", &e))?
        .handle_access(AccessNet::from_all(ABI_WANTED))
        .map_err(|e| fail("handling TCP access", &e))?
        .scope(Scope::from_all(ABI_WANTED))
        .map_err(|e| fail("scoping signals and abstract sockets", &e))?
        .create()
        .map_err(|e| fail("creating the ruleset", &e))?;
    let mut add = |path: &Path, access| -> Result<(), JailError> {
        let fd = PathFd::new(path).map_err(|e| fail(&format!("opening {}", path.display()), &e))?;
        ruleset
            .as_mut()
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| fail(&format!("rule for {}", path.display()), &e))?;
        Ok(())
    };
    add(Path::new("/"), AccessFs::from_read(ABI_WANTED))?;
    for dev in DEVICES {
        add(
            Path::new(dev),
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev,
        )?;
    }
    for w in writable {
        add(w, all)?;
    }
    let status = ruleset
        .restrict_self()
        .map_err(|e| fail("restricting the program", &e))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(JailError::Landlock(
            "the kernel did not enforce the ruleset".into(),
        ));
    }
    Ok(())
}
