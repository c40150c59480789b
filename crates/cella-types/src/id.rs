//! Object ids of the form `<kind>-<uuid v4>`, one type per kind so they cannot be mixed up.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A string that is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {input:?}: expected \"{kind}-<uuid>\"")]
pub struct ParseIdError {
    /// The kind of id that was expected (`task`, `function`, …).
    pub kind: &'static str,
    /// The rejected input, cut to 80 characters.
    pub input: String,
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// The kind prefix of this id type.
            pub const KIND: &'static str = $prefix;

            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}-{}", $prefix, self.0.hyphenated())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_prefixed(s, $prefix).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fn parse_prefixed(s: &str, kind: &'static str) -> Result<Uuid, ParseIdError> {
    let err = || ParseIdError {
        kind,
        input: s.chars().take(80).collect(),
    };
    let rest = s
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('-'))
        .ok_or_else(err)?;
    Uuid::parse_str(rest).map_err(|_| err())
}

define_id!(
    /// Identifies a registered function: `function-<uuid>`.
    FunctionId,
    "function"
);
define_id!(
    /// Identifies a task: `task-<uuid>`.
    TaskId,
    "task"
);
define_id!(
    /// Identifies a registered input file: `input-<uuid>`.
    InputFileId,
    "input"
);
define_id!(
    /// Identifies a registered output file: `output-<uuid>`.
    OutputFileId,
    "output"
);

/// Identifies a registered file of either kind: the id's prefix says which. The one
/// place that tells an input's id from an output's, so that code past the API edge
/// matches on the kind instead of looking at strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileId {
    /// An input file: `input-<uuid>`.
    Input(InputFileId),
    /// An output file: `output-<uuid>`.
    Output(OutputFileId),
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input(id) => fmt::Display::fmt(id, f),
            Self::Output(id) => fmt::Display::fmt(id, f),
        }
    }
}

/// A string that is neither an input's nor an output's id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid file id {input:?}: expected {}-<uuid> or {}-<uuid>",
    InputFileId::KIND,
    OutputFileId::KIND
)]
pub struct ParseFileIdError {
    /// The rejected input, cut to 80 characters.
    pub input: String,
}

impl FromStr for FileId {
    type Err = ParseFileIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .map(Self::Input)
            .or_else(|_| s.parse().map(Self::Output))
            .map_err(|_| ParseFileIdError {
                input: s.chars().take(80).collect(),
            })
    }
}

impl From<InputFileId> for FileId {
    fn from(id: InputFileId) -> Self {
        Self::Input(id)
    }
}

impl From<OutputFileId> for FileId {
    fn from(id: OutputFileId) -> Self {
        Self::Output(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_kind_checked() {
        let id = TaskId::new();
        let s = id.to_string();
        assert!(s.starts_with("task-"));
        assert_eq!(s.parse::<TaskId>(), Ok(id));
        let err = s.parse::<FunctionId>().unwrap_err();
        assert_eq!(err.kind, "function");
        assert!("task-notauuid".parse::<TaskId>().is_err());
        assert!("task".parse::<TaskId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
    }

    #[test]
    fn file_ids_parse_by_kind_and_refuse_others() {
        let input = InputFileId::new();
        let output = OutputFileId::new();
        assert_eq!(input.to_string().parse(), Ok(FileId::Input(input)));
        assert_eq!(output.to_string().parse(), Ok(FileId::Output(output)));
        assert_eq!(FileId::from(output).to_string(), output.to_string());
        for bad in ["", "input-", "output-notauuid", &TaskId::new().to_string()] {
            let e = bad.parse::<FileId>().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("invalid file id {bad:?}: expected input-<uuid> or output-<uuid>")
            );
        }
    }
}
