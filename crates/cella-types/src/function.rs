//! Functions: what a function owner registers, and the rules its spec must follow.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Digest, FunctionId, UserName};

/// Longest accepted function, argument or slot name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest accepted function description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Most arguments, input slots or output slots a function may declare: plenty for
/// multi-party functions, and it bounds the size of every task record.
pub const MAX_SPEC_ENTRIES: usize = 64;
/// Longest accepted argument value, in bytes.
pub const MAX_ARGUMENT_VALUE_LEN: usize = 64 * 1024;

/// The family of executor that runs a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// A Rust function compiled into the node; the payload is its name.
    Builtin,
    /// A WebAssembly (WASI preview 1) module.
    Wasm,
    /// An unmodified Linux program run inside a LibOS instance.
    Libos,
}

impl ExecutorKind {
    /// The kind's name as used on the wire and in the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Builtin => "builtin",
            ExecutorKind::Wasm => "wasm",
            ExecutorKind::Libos => "libos",
        }
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutorKind {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "builtin" => Ok(Self::Builtin),
            "wasm" => Ok(Self::Wasm),
            "libos" => Ok(Self::Libos),
            other => Err(SpecError::UnknownExecutor(other.chars().take(40).collect())),
        }
    }
}

/// Whether a LibOS instance may serve more than one task.
///
/// Single-use is the default: every task gets a fresh instance, so nothing of one task
/// can reach another. `SameFunction` lets an instance that finished a task of this
/// function (same id, same payload) serve the next task of the same function after its
/// scratch state is wiped: faster, but a function that wants to could carry state from
/// one task to the next inside the instance. It is part of the task digest, so every
/// participant approves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceReuse {
    /// A fresh instance per task.
    #[default]
    Never,
    /// Instances are reused across tasks of this function only, wiped in between.
    SameFunction,
}

impl InstanceReuse {
    /// The name used on the wire and in the CLI: `never`, `same-function`.
    pub const fn as_str(self) -> &'static str {
        match self {
            InstanceReuse::Never => "never",
            InstanceReuse::SameFunction => "same-function",
        }
    }
}

impl fmt::Display for InstanceReuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceReuse {
    type Err = SpecError;

    /// Parses `never` (or the empty string) and `same-function`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "never" => Ok(Self::Never),
            "same-function" => Ok(Self::SameFunction),
            _ => Err(SpecError::Reuse(
                "instance reuse is \"never\" or \"same-function\"",
            )),
        }
    }
}

/// One declared argument of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgumentSpec {
    /// The argument's name.
    pub name: String,
    /// The value used when a task gives none; an argument without default is required.
    pub default: Option<String>,
    /// Whether a task may set a value other than the default.
    pub overridable: bool,
}

/// One declared input or output slot of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSpec {
    /// The slot's name, also its file name inside the executor.
    pub name: String,
    /// Whether a task may leave the slot empty (inputs only).
    pub optional: bool,
}

/// Who may create tasks with a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Every user.
    Public,
    /// The owner and the listed users.
    Allowlist(BTreeSet<UserName>),
}

/// What a function owner submits to register or update a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// A human-readable name.
    pub name: String,
    /// What the function does.
    pub description: String,
    /// Which executor runs it.
    pub executor: ExecutorKind,
    /// The runtime image name, for `libos` functions only.
    pub runtime: Option<String>,
    /// Whether LibOS instances may serve several tasks of this function (`libos` only).
    #[serde(default)]
    pub reuse: InstanceReuse,
    /// Declared arguments.
    pub arguments: Vec<ArgumentSpec>,
    /// Declared input slots.
    pub inputs: Vec<SlotSpec>,
    /// Declared output slots.
    pub outputs: Vec<SlotSpec>,
    /// Who may use the function.
    pub visibility: Visibility,
    /// How many tasks may be invoked with the function; `None` for no limit.
    pub quota: Option<u64>,
    /// Most bytes all outputs of one of its tasks may hold together; `None` for the
    /// node's cap. A node refuses a function asking more than its own cap, and a task
    /// over the cap fails naming whose cap it hit.
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
}

/// A registered function. Its payload lives in the blob store under its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    /// The function's id.
    pub id: FunctionId,
    /// The user who registered it.
    pub owner: UserName,
    /// Its current spec.
    pub spec: FunctionSpec,
    /// SHA-256 of the payload (for builtins, of the builtin's name).
    pub payload_digest: Digest,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// How many tasks have been invoked with it.
    pub usage: u64,
    /// A disabled function accepts no new tasks and no invocations.
    pub disabled: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Last update time, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

impl Function {
    /// Whether `user` may create tasks with this function.
    pub fn usable_by(&self, user: &UserName) -> bool {
        match &self.spec.visibility {
            Visibility::Public => true,
            Visibility::Allowlist(users) => &self.owner == user || users.contains(user),
        }
    }

    /// Whether the quota leaves room for one more invocation.
    pub fn has_quota_left(&self) -> bool {
        self.spec.quota.is_none_or(|q| self.usage < q)
    }

    /// The task's full argument set: defaults merged with `given`.
    ///
    /// # Errors
    ///
    /// [`SpecError::UnknownArgument`] for a name the function does not declare,
    /// [`SpecError::ArgumentNotOverridable`] for a value given for a fixed argument,
    /// [`SpecError::MissingArgument`] for a required argument left out,
    /// [`SpecError::TooLong`] for an oversized value.
    pub fn resolve_arguments(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, SpecError> {
        for (name, value) in given {
            let spec = self
                .spec
                .arguments
                .iter()
                .find(|a| &a.name == name)
                .ok_or_else(|| SpecError::UnknownArgument(name.clone()))?;
            if !spec.overridable && spec.default.as_ref() != Some(value) {
                return Err(SpecError::ArgumentNotOverridable(name.clone()));
            }
            check_len("argument value", value, MAX_ARGUMENT_VALUE_LEN)?;
        }
        self.spec
            .arguments
            .iter()
            .map(|a| {
                let value = given
                    .get(&a.name)
                    .or(a.default.as_ref())
                    .ok_or_else(|| SpecError::MissingArgument(a.name.clone()))?;
                Ok((a.name.clone(), value.clone()))
            })
            .collect()
    }
}

/// A function spec or task argument set that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// An executor name that is not builtin, wasm or libos.
    #[error("unknown executor {0:?}: expected builtin, wasm or libos")]
    UnknownExecutor(String),
    /// A name with characters outside `[A-Za-z0-9_.-]`, or empty.
    #[error("invalid {what} {name:?}: use 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 _ . -")]
    InvalidName {
        /// What kind of name (function, argument, slot).
        what: &'static str,
        /// The rejected name, cut to 80 characters.
        name: String,
    },
    /// A value longer than its limit.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many arguments or slots.
    #[error("{what}: {count} entries, more than the limit of {MAX_SPEC_ENTRIES}")]
    TooMany {
        /// What had too many entries.
        what: &'static str,
        /// How many there were.
        count: usize,
    },
    /// The same name declared twice.
    #[error("{what} {name:?} is declared twice")]
    Duplicate {
        /// What kind of name.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// The same name declared as an input slot and as an output slot.
    #[error("slot {0:?} is declared both as an input and as an output: give them different names")]
    SlotInBoth(String),
    /// A quota of zero invocations.
    #[error(
        "quota = 0 would allow no invocation at all: give at least 1, or no quota for unlimited"
    )]
    ZeroQuota,
    /// An output cap of zero bytes.
    #[error(
        "max_output_bytes = 0 would let no task write any output: give at least 1, or none for the node's cap"
    )]
    ZeroOutputCap,
    /// An output slot marked optional: every output must have a place to go.
    #[error("output slot {0:?} cannot be optional")]
    OptionalOutput(String),
    /// A libos function without runtime, or a runtime on another executor.
    #[error("{0}")]
    Runtime(&'static str),
    /// An unknown instance reuse mode, or reuse on an executor without instances.
    #[error("{0}")]
    Reuse(&'static str),
    /// An argument without default that may not be overridden could never be set.
    #[error("argument {0:?} has no default and is not overridable, so it could never be set")]
    UnsettableArgument(String),
    /// A task named an argument the function does not declare.
    #[error("unknown argument {0:?}")]
    UnknownArgument(String),
    /// A task set a value for an argument that is fixed.
    #[error("argument {0:?} is not overridable")]
    ArgumentNotOverridable(String),
    /// A task left out a required argument.
    #[error("missing required argument {0:?}")]
    MissingArgument(String),
}

fn check_len(what: &'static str, s: &str, max: usize) -> Result<(), SpecError> {
    if s.len() > max {
        return Err(SpecError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

/// Checks a function, argument or slot name.
///
/// # Errors
///
/// [`SpecError::InvalidName`] when empty, too long or with other characters.
pub fn check_name(what: &'static str, name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(SpecError::InvalidName {
            what,
            name: name.chars().take(80).collect(),
        })
    }
}

fn check_unique<'a>(
    what: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), SpecError> {
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for name in names {
        check_name(what, name)?;
        if !seen.insert(name) {
            return Err(SpecError::Duplicate {
                what,
                name: name.to_owned(),
            });
        }
        count += 1;
    }
    if count > MAX_SPEC_ENTRIES {
        return Err(SpecError::TooMany { what, count });
    }
    Ok(())
}

impl FunctionSpec {
    /// Checks every rule a spec must follow.
    ///
    /// # Errors
    ///
    /// The first [`SpecError`] found.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_name("function name", &self.name)?;
        check_len("description", &self.description, MAX_DESCRIPTION_LEN)?;
        check_unique("argument", self.arguments.iter().map(|a| a.name.as_str()))?;
        check_unique("input slot", self.inputs.iter().map(|s| s.name.as_str()))?;
        check_unique("output slot", self.outputs.iter().map(|s| s.name.as_str()))?;
        // One name for an input and an output would make every place that names a slot
        // (assignment, the executor's I/O, the task record) ambiguous.
        if let Some(both) = self
            .outputs
            .iter()
            .find(|o| self.inputs.iter().any(|i| i.name == o.name))
        {
            return Err(SpecError::SlotInBoth(both.name.clone()));
        }
        // A quota of zero would register a function no task could ever run.
        if self.quota == Some(0) {
            return Err(SpecError::ZeroQuota);
        }
        if self.max_output_bytes == Some(0) {
            return Err(SpecError::ZeroOutputCap);
        }
        if let Some(out) = self.outputs.iter().find(|s| s.optional) {
            return Err(SpecError::OptionalOutput(out.name.clone()));
        }
        for a in &self.arguments {
            if let Some(d) = &a.default {
                check_len("argument default", d, MAX_ARGUMENT_VALUE_LEN)?;
            } else if !a.overridable {
                return Err(SpecError::UnsettableArgument(a.name.clone()));
            }
        }
        if self.reuse != InstanceReuse::Never && self.executor != ExecutorKind::Libos {
            return Err(SpecError::Reuse("only libos functions can reuse instances"));
        }
        match (self.executor, &self.runtime) {
            (ExecutorKind::Libos, None) => Err(SpecError::Runtime(
                "a libos function needs a runtime image name",
            )),
            (ExecutorKind::Libos, Some(r)) => check_name("runtime", r),
            (_, Some(_)) => Err(SpecError::Runtime(
                "only libos functions take a runtime image name",
            )),
            (_, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> FunctionSpec {
        FunctionSpec {
            name: "psi".into(),
            description: "intersect".into(),
            executor: ExecutorKind::Builtin,
            runtime: None,
            reuse: InstanceReuse::Never,
            arguments: vec![
                ArgumentSpec {
                    name: "sep".into(),
                    default: Some(",".into()),
                    overridable: true,
                },
                ArgumentSpec {
                    name: "mode".into(),
                    default: Some("exact".into()),
                    overridable: false,
                },
                ArgumentSpec {
                    name: "need".into(),
                    default: None,
                    overridable: true,
                },
            ],
            inputs: vec![SlotSpec {
                name: "in1".into(),
                optional: false,
            }],
            outputs: vec![SlotSpec {
                name: "out1".into(),
                optional: false,
            }],
            visibility: Visibility::Public,
            quota: Some(1),
            max_output_bytes: None,
        }
    }

    fn function() -> Function {
        Function {
            id: FunctionId::new(),
            owner: "fo".parse().unwrap(),
            spec: spec(),
            payload_digest: Digest::of(b"x"),
            payload_len: 1,
            usage: 0,
            disabled: false,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn valid_spec_passes() {
        assert_eq!(spec().validate(), Ok(()));
    }

    #[test]
    fn spec_rules() {
        let mut s = spec();
        s.inputs.push(s.inputs[0].clone());
        assert!(matches!(s.validate(), Err(SpecError::Duplicate { .. })));
        let mut s = spec();
        s.outputs[0].optional = true;
        assert!(matches!(s.validate(), Err(SpecError::OptionalOutput(_))));
        let mut s = spec();
        s.executor = ExecutorKind::Libos;
        assert!(matches!(s.validate(), Err(SpecError::Runtime(_))));
        s.runtime = Some("python3".into());
        assert_eq!(s.validate(), Ok(()));
        s.reuse = InstanceReuse::SameFunction;
        assert_eq!(s.validate(), Ok(()));
        let mut s = spec();
        s.reuse = InstanceReuse::SameFunction;
        assert!(matches!(s.validate(), Err(SpecError::Reuse(_))));
        let mut s = spec();
        s.name = "../etc".into();
        assert!(matches!(s.validate(), Err(SpecError::InvalidName { .. })));
        let mut s = spec();
        s.arguments[2].overridable = false;
        assert!(matches!(
            s.validate(),
            Err(SpecError::UnsettableArgument(_))
        ));
        let mut s = spec();
        s.inputs = (0..=MAX_SPEC_ENTRIES)
            .map(|i| SlotSpec {
                name: format!("i{i}"),
                optional: false,
            })
            .collect();
        assert!(matches!(s.validate(), Err(SpecError::TooMany { .. })));
    }

    #[test]
    fn zero_quota_and_a_slot_in_both_directions_are_refused() {
        let mut s = spec();
        s.quota = Some(0);
        let e = s.validate().unwrap_err();
        assert_eq!(e, SpecError::ZeroQuota);
        assert!(e.to_string().contains("quota = 0"), "{e}");
        s.quota = None;
        s.max_output_bytes = Some(0);
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("max_output_bytes = 0"), "{e}");
        s.max_output_bytes = None;
        assert_eq!(s.validate(), Ok(()));
        let mut s = spec();
        s.outputs[0].name = s.inputs[0].name.clone();
        let e = s.validate().unwrap_err();
        assert_eq!(e, SpecError::SlotInBoth("in1".into()));
        assert!(
            e.to_string().contains("both as an input and as an output"),
            "{e}"
        );
    }

    #[test]
    fn reuse_names_round_trip_and_default_to_never() {
        for r in [InstanceReuse::Never, InstanceReuse::SameFunction] {
            assert_eq!(r.as_str().parse::<InstanceReuse>(), Ok(r));
        }
        assert_eq!("".parse::<InstanceReuse>(), Ok(InstanceReuse::Never));
        assert!("always".parse::<InstanceReuse>().is_err());
        // Specs stored before the field existed read as single-use.
        let mut json = serde_json::to_value(spec()).unwrap();
        json.as_object_mut().unwrap().remove("reuse");
        let old: FunctionSpec = serde_json::from_value(json).unwrap();
        assert_eq!(old.reuse, InstanceReuse::Never);
    }

    #[test]
    fn argument_resolution() {
        let f = function();
        let given = BTreeMap::from([("need".to_string(), "1".to_string())]);
        let args = f.resolve_arguments(&given).unwrap();
        assert_eq!(args["sep"], ",");
        assert_eq!(args["mode"], "exact");
        assert_eq!(args["need"], "1");
        assert_eq!(
            f.resolve_arguments(&BTreeMap::new()),
            Err(SpecError::MissingArgument("need".into()))
        );
        let mut bad = given.clone();
        bad.insert("mode".into(), "fuzzy".into());
        assert_eq!(
            f.resolve_arguments(&bad),
            Err(SpecError::ArgumentNotOverridable("mode".into()))
        );
        let mut bad = given;
        bad.insert("nope".into(), "1".into());
        assert_eq!(
            f.resolve_arguments(&bad),
            Err(SpecError::UnknownArgument("nope".into()))
        );
    }

    #[test]
    fn visibility_and_quota() {
        let mut f = function();
        let bob: UserName = "bob".parse().unwrap();
        assert!(f.usable_by(&bob));
        f.spec.visibility = Visibility::Allowlist(BTreeSet::new());
        assert!(!f.usable_by(&bob));
        assert!(f.usable_by(&f.owner.clone()));
        assert!(f.has_quota_left());
        f.usage = 1;
        assert!(!f.has_quota_left());
    }
}
