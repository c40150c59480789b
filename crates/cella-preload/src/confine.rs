//! The program's own Landlock layer: the pre-load module writes the workload's layout,
//! but the program it starts may write only its outputs, its scratch directory and
//! `/tmp` (plus the return-value file and `/dev/null`).
//!
//! The crate forbids `unsafe`, so the layer is applied in a process of its own: the
//! runner starts the pre-load binary again in its wrapper mode,
//!
//! ```text
//! cella-preload exec-program [--write DIR]… [--write-file FILE]… -- PROGRAM [ARG]…
//! ```
//!
//! which restricts itself with Landlock (the `landlock` crate) and then `exec`s the
//! program: the restriction is inherited across `exec` and by every child, and cannot be
//! lifted. Only the `sandbox` backend asks for it (`CELLA_PRELOAD_CONFINE=1`); the mock
//! backend and the unit tests keep the plain runner.
//!
//! The ruleset handles every write access of Landlock ABI 5 (files, directories, links,
//! devices' ioctls, truncation), TCP bind and connect (ABI 4: there is no network in the
//! instance anyway), and scopes signals and abstract Unix sockets to the program's own
//! domain (ABI 6), so the program cannot signal the pre-load module or the jail's
//! supervisor. Features the kernel lacks are dropped (best effort), but a kernel without
//! Landlock at all is refused: the program is not started.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use landlock::{
    ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, path_beneath_rules,
};

/// The first argument that selects the wrapper mode.
pub const EXEC_PROGRAM: &str = "exec-program";

/// Exit status when the program could not be confined or started (as a shell's "cannot
/// execute").
pub const EXIT_CANNOT_EXEC: u8 = 126;

/// Files any program may open for writing: writes to them go nowhere.
const WRITABLE_DEVICES: [&str; 2] = ["/dev/null", "/dev/zero"];

/// The newest Landlock ABI whose write rights this layer was written and tested for.
const FS_ABI: ABI = ABI::V5;

/// What the wrapper was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Directories the program may write beneath.
    pub writable_dirs: Vec<PathBuf>,
    /// Single files the program may write (they must exist).
    pub writable_files: Vec<PathBuf>,
    /// The program and its arguments.
    pub argv: Vec<OsString>,
}

/// The wrapper's command line could not be understood, or confining failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The command line is malformed.
    #[error(
        "usage: cella-preload exec-program [--write DIR]… [--write-file FILE]… -- PROGRAM [ARG]…: {0}"
    )]
    Usage(String),
    /// Landlock could not be set up.
    #[error("cannot confine the program with Landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
    /// The kernel does not enforce Landlock.
    #[error(
        "cannot confine the program: this kernel does not enforce Landlock (Linux 5.13 or later with Landlock enabled is required)"
    )]
    NotEnforced,
}

impl ExecRequest {
    /// The wrapper's arguments (after [`EXEC_PROGRAM`]).
    ///
    /// # Errors
    ///
    /// [`ConfineError::Usage`] naming what is wrong.
    pub fn parse(args: &[OsString]) -> Result<Self, ConfineError> {
        let mut req = Self {
            writable_dirs: Vec::new(),
            writable_files: Vec::new(),
            argv: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| ConfineError::Usage(format!("{flag} needs a path")))
            };
            match arg.to_str() {
                Some("--write") => req.writable_dirs.push(value("--write")?),
                Some("--write-file") => req.writable_files.push(value("--write-file")?),
                Some("--") => {
                    req.argv = it.cloned().collect();
                    break;
                }
                _ => {
                    return Err(ConfineError::Usage(format!(
                        "unexpected argument {:?}",
                        arg.to_string_lossy()
                    )));
                }
            }
        }
        if req.argv.is_empty() {
            return Err(ConfineError::Usage("no program after --".into()));
        }
        Ok(req)
    }

    /// The wrapper's arguments for this request (the inverse of [`ExecRequest::parse`]).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from(EXEC_PROGRAM)];
        for d in &self.writable_dirs {
            args.push("--write".into());
            args.push(d.clone().into_os_string());
        }
        for f in &self.writable_files {
            args.push("--write-file".into());
            args.push(f.clone().into_os_string());
        }
        args.push("--".into());
        args.extend(self.argv.iter().cloned());
        args
    }
}

/// Restricts the calling thread (and what it later starts) to writing only beneath
/// `req`'s writable paths, with no TCP and signals scoped to its own domain.
///
/// # Errors
///
/// [`ConfineError`] if Landlock is unavailable or refuses the ruleset. Writable paths that
/// do not exist are skipped.
pub fn restrict(req: &ExecRequest) -> Result<RulesetStatus, ConfineError> {
    let write = AccessFs::from_write(FS_ABI);
    let file_write = write & AccessFs::from_file(FS_ABI);
    let status = Ruleset::default()
        .handle_access(write)?
        .handle_access(AccessNet::from_all(ABI::V4))?
        .scope(Scope::from_all(ABI::V6))?
        .create()?
        .add_rules(path_beneath_rules(&req.writable_dirs, write))?
        .add_rules(path_beneath_rules(
            req.writable_files
                .iter()
                .map(PathBuf::as_path)
                .chain(WRITABLE_DEVICES.iter().map(std::path::Path::new)),
            file_write,
        ))?
        .restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(ConfineError::NotEnforced);
    }
    Ok(status.ruleset)
}

/// The wrapper's entrypoint: parses `args` (after [`EXEC_PROGRAM`]), confines itself,
/// and `exec`s the program. Returns only on failure, with the reason on stderr (which the
/// runner turns into the task's log) and status [`EXIT_CANNOT_EXEC`].
pub fn exec_program(args: &[OsString]) -> ExitCode {
    let req = match ExecRequest::parse(args) {
        Ok(r) => r,
        Err(e) => return cannot(&e.to_string()),
    };
    if let Err(e) = restrict(&req) {
        return cannot(&e.to_string());
    }
    let (program, rest) = match req.argv.split_first() {
        Some(p) => p,
        None => return cannot("no program"),
    };
    // `exec` returns only if it failed.
    let e = std::process::Command::new(program).args(rest).exec();
    cannot(&format!(
        "cannot start {:?}: {e}",
        OsStr::to_string_lossy(program)
    ))
}

fn cannot(message: &str) -> ExitCode {
    eprintln!("cella-preload: {message}");
    ExitCode::from(EXIT_CANNOT_EXEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_round_trip_and_bad_ones_are_refused() {
        let req = ExecRequest {
            writable_dirs: vec!["/cella/outputs".into(), "/tmp".into()],
            writable_files: vec!["/cella/return".into()],
            argv: os(&["/usr/bin/python3", "program", "--n=1", "--"]),
        };
        let args = req.to_args();
        assert_eq!(args[0], EXEC_PROGRAM);
        assert_eq!(ExecRequest::parse(&args[1..]).unwrap(), req);
        for bad in [
            &["--write"][..],
            &["--write", "/tmp"],
            &["--write", "/tmp", "--"],
            &["--bogus", "--", "x"],
            &["x"],
        ] {
            let e = ExecRequest::parse(&os(bad)).unwrap_err();
            assert!(e.to_string().starts_with("usage:"), "{bad:?}: {e}");
        }
    }

    /// Landlock restricts for good, so the restriction runs in a child: the test binary
    /// itself, re-executed with an environment variable that makes `confined_child`
    /// restrict itself and try the writes.
    #[test]
    fn the_program_can_write_only_where_allowed() {
        if std::env::var_os("CELLA_CONFINE_TEST_CHILD").is_some() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let denied = dir.path().join("denied");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::create_dir(&denied).unwrap();
        let file = dir.path().join("return");
        std::fs::write(&file, b"").unwrap();
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "confine::tests::confined_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CELLA_CONFINE_TEST_CHILD", dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("RESULT allowed=ok denied=refused file=ok sibling=refused"),
            "{text}"
        );
        assert_eq!(std::fs::read(allowed.join("x")).unwrap(), b"x");
        assert!(!denied.join("x").exists());
        assert_eq!(std::fs::read(&file).unwrap(), b"rv");
    }

    /// The child half of the test above: restricts itself, tries four writes, prints.
    #[test]
    fn confined_child() {
        let Some(dir) = std::env::var_os("CELLA_CONFINE_TEST_CHILD").map(PathBuf::from) else {
            return;
        };
        let req = ExecRequest {
            writable_dirs: vec![dir.join("allowed")],
            writable_files: vec![dir.join("return")],
            argv: os(&["/bin/true"]),
        };
        restrict(&req).unwrap();
        let try_write = |p: PathBuf, data: &[u8]| match std::fs::write(p, data) {
            Ok(()) => "ok",
            Err(_) => "refused",
        };
        println!(
            "RESULT allowed={} denied={} file={} sibling={}",
            try_write(dir.join("allowed/x"), b"x"),
            try_write(dir.join("denied/x"), b"x"),
            try_write(dir.join("return"), b"rv"),
            try_write(dir.join("other"), b"x"),
        );
    }
}
