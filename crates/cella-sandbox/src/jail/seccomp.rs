//! The seccomp allowlist: parsed from `seccomp/allowlist.toml` (compiled into the binary),
//! compiled to BPF with `seccompiler`, default action "notify the supervisor".
//!
//! `seccompiler` has no user-notification action, so the filter is compiled with a marked
//! `SECCOMP_RET_TRACE` as its default and every return of that exact value is rewritten
//! to `SECCOMP_RET_USER_NOTIF` afterwards (see [`Allowlist::compile`]).

use std::collections::{BTreeMap, BTreeSet};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;

use super::{JailError, syscalls};

/// The allowlist shipped with the jailer.
pub const ALLOWLIST_TOML: &str = include_str!("../../seccomp/allowlist.toml");

/// Data of the placeholder `SECCOMP_RET_TRACE` action replaced by the notification.
const NOTIFY_MARK: u32 = 0x0ce1;

/// The parsed allowlist file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    /// Groups of allowed system calls.
    #[serde(default)]
    pub allow: Vec<Group>,
    /// Groups of system calls denied on purpose (documentation and a check: the default
    /// denies them anyway, but naming them makes sure they are never also allowed).
    #[serde(default)]
    pub deny: Vec<Group>,
}

/// A group of system calls, with why it is allowed or denied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Short name of the group.
    pub group: String,
    /// Why the group is allowed or denied; required, never empty.
    pub why: String,
    /// System calls allowed (or denied) whatever their arguments.
    #[serde(default)]
    pub syscalls: Vec<String>,
    /// System calls allowed only when their arguments match (allow groups only).
    #[serde(default)]
    pub rules: Vec<ArgRule>,
}

/// A system call allowed when all its conditions hold; several rules for one system call
/// allow it when any holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRule {
    /// The system call's name.
    pub syscall: String,
    /// Conditions on its arguments, all of which must hold.
    pub args: Vec<ArgCondition>,
}

/// One condition on one argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    /// Argument index, 0 to 5.
    pub index: u8,
    /// Compared width in bits: 32 (the low half; C `int` arguments) or 64 (default).
    #[serde(default = "default_width")]
    pub width: u8,
    /// `eq`, `ne`, `lt`, `le`, `gt`, `ge`, or `masked_eq` (with `mask`).
    pub op: String,
    /// The value compared with.
    pub value: u64,
    /// For `masked_eq`: `(arg & mask) == value`.
    #[serde(default)]
    pub mask: Option<u64>,
}

fn default_width() -> u8 {
    64
}

impl Allowlist {
    /// The allowlist compiled into the jailer.
    pub fn builtin() -> Result<Self, JailError> {
        Self::parse(ALLOWLIST_TOML)
    }

    /// Parses and checks an allowlist: every group says why, every name is a system call
    /// of this architecture, nothing is both allowed and denied or listed twice.
    pub fn parse(text: &str) -> Result<Self, JailError> {
        let list: Allowlist =
            toml::from_str(text).map_err(|e| JailError::Allowlist(e.to_string()))?;
        let bad = |m: String| Err(JailError::Allowlist(m));
        let mut allowed = BTreeSet::new();
        let mut conditional = BTreeSet::new();
        for g in &list.allow {
            if g.why.trim().is_empty() {
                return bad(format!("group {:?} does not say why", g.group));
            }
            for s in &g.syscalls {
                known(s)?;
                if !allowed.insert(s.as_str()) {
                    return bad(format!("{s} is allowed twice"));
                }
            }
            for r in &g.rules {
                known(&r.syscall)?;
                if r.args.is_empty() {
                    return bad(format!("a rule for {} has no condition", r.syscall));
                }
                conditional.insert(r.syscall.as_str());
            }
        }
        if let Some(s) = allowed.intersection(&conditional).next() {
            return bad(format!(
                "{s} is allowed both unconditionally and under conditions"
            ));
        }
        for g in &list.deny {
            if g.why.trim().is_empty() {
                return bad(format!("group {:?} does not say why", g.group));
            }
            if !g.rules.is_empty() {
                return bad(format!("deny group {:?} has argument rules", g.group));
            }
            for s in &g.syscalls {
                known(s)?;
                if allowed.contains(s.as_str()) {
                    return bad(format!("{s} is both allowed and denied"));
                }
            }
        }
        Ok(list)
    }

    /// Names of the system calls allowed whatever their arguments.
    pub fn unconditional(&self) -> BTreeSet<&str> {
        self.allow
            .iter()
            .flat_map(|g| g.syscalls.iter().map(String::as_str))
            .collect()
    }

    /// Names of the system calls listed in deny groups.
    pub fn denied(&self) -> BTreeSet<&str> {
        self.deny
            .iter()
            .flat_map(|g| g.syscalls.iter().map(String::as_str))
            .collect()
    }

    /// Compiles the allowlist to a BPF program for x86-64 whose default action is
    /// `SECCOMP_RET_USER_NOTIF`.
    pub fn compile(&self) -> Result<BpfProgram, JailError> {
        self.compile_without(&[])
    }

    /// As [`Allowlist::compile`], with the system calls named in `withheld` denied (and
    /// counted) although the list allows them: [`MEMORY_UNBOUNDED`] where no cgroup bounds
    /// the instance's memory.
    ///
    /// A call made through another architecture's interface (32-bit `int 0x80`) is not
    /// killed, as `seccompiler` lays the filter out, but notified as well: the supervisor
    /// denies it with `EPERM` and counts it by number, so that the program is told and the
    /// task's log names the call, instead of a bare "signal 31".
    pub fn compile_without(&self, withheld: &[&str]) -> Result<BpfProgram, JailError> {
        if !cfg!(target_arch = "x86_64") {
            return Err(JailError::Allowlist(
                "the allowlist and its system call table are for x86-64 only".into(),
            ));
        }
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for w in withheld {
            known(w)?;
        }
        for g in &self.allow {
            for s in g
                .syscalls
                .iter()
                .filter(|s| !withheld.contains(&s.as_str()))
            {
                rules.insert(known(s)?, Vec::new());
            }
            for r in g
                .rules
                .iter()
                .filter(|r| !withheld.contains(&r.syscall.as_str()))
            {
                let conditions = r
                    .args
                    .iter()
                    .map(|c| condition(&r.syscall, c))
                    .collect::<Result<Vec<_>, _>>()?;
                let rule = SeccompRule::new(conditions)
                    .map_err(|e| JailError::Allowlist(format!("{}: {e}", r.syscall)))?;
                rules.entry(known(&r.syscall)?).or_default().push(rule);
            }
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Trace(NOTIFY_MARK),
            SeccompAction::Allow,
            TargetArch::x86_64,
        )
        .map_err(|e| JailError::Allowlist(e.to_string()))?;
        let mut program: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| JailError::Allowlist(e.to_string()))?;
        let marked = libc::SECCOMP_RET_TRACE | NOTIFY_MARK;
        let mut replaced = 0;
        for insn in &mut program {
            if insn.code == RET_K && insn.k == marked {
                insn.k = libc::SECCOMP_RET_USER_NOTIF;
                replaced += 1;
            }
        }
        if replaced == 0 {
            return Err(JailError::Allowlist(
                "the compiled filter has no default action to turn into a notification".into(),
            ));
        }
        // The architecture check comes first: load the arch, jump over the next
        // instruction if it is x86-64, else return KILL_PROCESS. That return notifies too.
        match program.get_mut(2) {
            Some(insn) if insn.code == RET_K && insn.k == libc::SECCOMP_RET_KILL_PROCESS => {
                insn.k = libc::SECCOMP_RET_USER_NOTIF;
            }
            _ => {
                return Err(JailError::Allowlist(
                    "the compiled filter does not start with the architecture check".into(),
                ));
            }
        }
        Ok(program)
    }
}

/// What cannot be allowed where no cgroup bounds the instance's memory: `memfd_create`
/// makes memory that counts against no process's `RLIMIT_AS` (only `RLIMIT_FSIZE` caps
/// each one), so a program could hold any number of them.
pub const MEMORY_UNBOUNDED: &[&str] = &["memfd_create"];

/// `BPF_RET | BPF_K`.
const RET_K: u16 = 0x06;

fn known(name: &str) -> Result<i64, JailError> {
    syscalls::number(name)
        .ok_or_else(|| JailError::Allowlist(format!("unknown system call {name:?}")))
}

fn condition(syscall: &str, c: &ArgCondition) -> Result<SeccompCondition, JailError> {
    let bad = |m: &str| JailError::Allowlist(format!("{syscall}: argument {}: {m}", c.index));
    let width = match c.width {
        32 => SeccompCmpArgLen::Dword,
        64 => SeccompCmpArgLen::Qword,
        _ => return Err(bad("width must be 32 or 64")),
    };
    if c.mask.is_some() != (c.op == "masked_eq") {
        return Err(bad("mask goes with op = \"masked_eq\" and only with it"));
    }
    let op = match c.op.as_str() {
        "eq" => SeccompCmpOp::Eq,
        "ne" => SeccompCmpOp::Ne,
        "lt" => SeccompCmpOp::Lt,
        "le" => SeccompCmpOp::Le,
        "gt" => SeccompCmpOp::Gt,
        "ge" => SeccompCmpOp::Ge,
        "masked_eq" => SeccompCmpOp::MaskedEq(c.mask.unwrap_or_default()),
        other => return Err(bad(&format!("unknown op {other:?}"))),
    };
    SeccompCondition::new(c.index, width, op, c.value).map_err(|e| bad(&e.to_string()))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn withheld_calls_and_foreign_architectures_are_notified_not_allowed_or_killed() {
        let list = Allowlist::builtin().unwrap();
        let all = list.compile().unwrap();
        let without = list.compile_without(MEMORY_UNBOUNDED).unwrap();
        let memfd = u32::try_from(known("memfd_create").unwrap()).unwrap();
        // The call's number is compared with in the full filter only.
        let compares = |p: &BpfProgram| p.iter().any(|i| i.code == 0x15 && i.k == memfd);
        assert!(compares(&all));
        assert!(!compares(&without));
        for p in [&all, &without] {
            assert!(
                p.iter()
                    .all(|i| !(i.code == RET_K && i.k == libc::SECCOMP_RET_KILL_PROCESS)),
                "a kill is left in the filter"
            );
        }
        assert!(list.compile_without(&["no_such_call"]).is_err());
    }

    #[test]
    fn the_builtin_allowlist_parses_and_compiles() {
        let list = Allowlist::builtin().unwrap();
        let program = list.compile().unwrap();
        assert!(program.len() > 50);
        assert!(
            program
                .iter()
                .any(|i| i.code == RET_K && i.k == libc::SECCOMP_RET_USER_NOTIF)
        );
        let allowed = list.unconditional();
        for must in [
            "read",
            "write",
            "execve",
            "mmap",
            "futex",
            "wait4",
            "exit_group",
        ] {
            assert!(allowed.contains(must), "{must} must be allowed");
        }
        let denied = list.denied();
        for never in [
            "ptrace",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "chroot",
            "setuid",
            "setgid",
            "setresuid",
            "setgroups",
            "kexec_load",
            "init_module",
            "finit_module",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "userfaultfd",
        ] {
            assert!(denied.contains(never), "{never} must be denied on purpose");
            assert!(!allowed.contains(never));
        }
        // These are allowed only under conditions on their arguments.
        for conditional in ["socket", "clone", "kill", "tgkill"] {
            assert!(
                !allowed.contains(conditional),
                "{conditional} is conditional"
            );
        }
    }

    #[test]
    fn mistakes_in_the_allowlist_are_refused() {
        let cases = [
            (
                "[[allow]]\ngroup = \"a\"\nwhy = \"\"\nsyscalls = [\"read\"]",
                "does not say why",
            ),
            (
                "[[allow]]\ngroup = \"a\"\nwhy = \"x\"\nsyscalls = [\"reed\"]",
                "unknown system call",
            ),
            (
                "[[allow]]\ngroup = \"a\"\nwhy = \"x\"\nsyscalls = [\"read\", \"read\"]",
                "allowed twice",
            ),
            (
                "[[allow]]\ngroup = \"a\"\nwhy = \"x\"\nsyscalls = [\"read\"]\n[[deny]]\ngroup = \"b\"\nwhy = \"y\"\nsyscalls = [\"read\"]",
                "both allowed and denied",
            ),
            (
                "[[allow]]\ngroup = \"a\"\nwhy = \"x\"\nrules = [{ syscall = \"kill\", args = [{ index = 0, op = \"masked_eq\", value = 1 }] }]",
                "mask",
            ),
            (
                "[[allow]]\ngroup = \"a\"\nwhy = \"x\"\nrules = [{ syscall = \"kill\", args = [{ index = 7, op = \"eq\", value = 1 }] }]",
                "argument 7",
            ),
            (
                "[[allow]]\ngroup = \"a\"\nwhy = \"x\"\ncolour = 1",
                "unknown field",
            ),
        ];
        for (text, expected) in cases {
            let err = Allowlist::parse(text)
                .and_then(|l| l.compile().map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }
}
