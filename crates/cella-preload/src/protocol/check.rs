//! What the encoding cannot say about a `Deploy`: names that are safe as file names, sizes
//! and counts within limits, digests of the right length, no duplicates.

use std::collections::BTreeSet;

use super::messages::{Deploy, FileMeta};
use super::{MAX_ARG_LEN, MAX_ARGS, MAX_FILES, PROTOCOL_VERSION};

/// Longest file or slot name, as `cella_types::MAX_NAME_LEN`.
const MAX_NAME_LEN: usize = 64;

/// A `Deploy` breaks a rule of the specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// Another protocol version.
    #[error("Deploy speaks protocol version {got}, this instance speaks {PROTOCOL_VERSION}")]
    Version {
        /// The version received.
        got: u32,
    },
    /// A name that is not a safe file name.
    #[error("invalid {what} name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 _ . -")]
    Name {
        /// Which list.
        what: &'static str,
        /// The name (cut to 80 characters).
        name: String,
    },
    /// A name given twice in one list.
    #[error("{what} {name:?} is given twice")]
    Duplicate {
        /// Which list.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A digest that is not 32 bytes.
    #[error("{what} {name:?} has a digest of {len} bytes, not 32")]
    Digest {
        /// Which list.
        what: &'static str,
        /// The name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// A list over its limit.
    #[error("too many {what}: {count}, the limit is {limit}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An argv or env string over [`MAX_ARG_LEN`].
    #[error("{what} entry of {len} bytes is over the limit of {MAX_ARG_LEN}")]
    TooLong {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// No program to run.
    #[error("Deploy has an empty argv")]
    NoArgv,
    /// No limits.
    #[error("Deploy carries no limits")]
    NoLimits,
}

/// Whether `name` is a safe file name: 1 to 64 characters from `[A-Za-z0-9_.-]`, and
/// neither `.` nor `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_name(
    what: &'static str,
    name: &str,
    seen: &mut BTreeSet<String>,
) -> Result<(), CheckError> {
    if !valid_name(name) {
        return Err(CheckError::Name {
            what,
            name: name.chars().take(80).collect(),
        });
    }
    if !seen.insert(name.to_owned()) {
        return Err(CheckError::Duplicate {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), CheckError> {
    if count > limit {
        return Err(CheckError::TooMany { what, count, limit });
    }
    Ok(())
}

fn check_files(what: &'static str, files: &[FileMeta]) -> Result<(), CheckError> {
    check_count(what, files.len(), MAX_FILES)?;
    let mut seen = BTreeSet::new();
    for f in files {
        check_name(what, &f.name, &mut seen)?;
        if f.sha256.len() != 32 {
            return Err(CheckError::Digest {
                what,
                name: f.name.clone(),
                len: f.sha256.len(),
            });
        }
    }
    Ok(())
}

fn check_strings<'a>(
    what: &'static str,
    items: impl Iterator<Item = &'a str>,
) -> Result<(), CheckError> {
    for s in items {
        if s.len() > MAX_ARG_LEN {
            return Err(CheckError::TooLong { what, len: s.len() });
        }
    }
    Ok(())
}

/// Checks a `Deploy` against the specification's rules.
///
/// # Errors
///
/// The first [`CheckError`] found.
pub fn check_deploy(deploy: &Deploy) -> Result<(), CheckError> {
    if deploy.protocol_version != PROTOCOL_VERSION {
        return Err(CheckError::Version {
            got: deploy.protocol_version,
        });
    }
    check_files("workload file", &deploy.files)?;
    check_files("input", &deploy.inputs)?;
    check_count("output", deploy.outputs.len(), MAX_FILES)?;
    let mut seen = BTreeSet::new();
    for o in &deploy.outputs {
        check_name("output", o, &mut seen)?;
    }
    if deploy.argv.is_empty() {
        return Err(CheckError::NoArgv);
    }
    check_count("argv", deploy.argv.len(), MAX_ARGS)?;
    check_strings("argv", deploy.argv.iter().map(String::as_str))?;
    check_count("env", deploy.env.len(), MAX_ARGS)?;
    check_strings(
        "env",
        deploy
            .env
            .iter()
            .flat_map(|e| [e.name.as_str(), e.value.as_str()]),
    )?;
    check_strings(
        "function name",
        std::iter::once(deploy.function_name.as_str()),
    )?;
    if deploy.limits.is_none() {
        return Err(CheckError::NoLimits);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{EnvVar, Limits};

    fn deploy() -> Deploy {
        Deploy {
            protocol_version: PROTOCOL_VERSION,
            task_id: "task-1".into(),
            function_id: "function-1".into(),
            function_name: "f".into(),
            files: vec![FileMeta {
                name: "program".into(),
                size: 1,
                sha256: vec![0; 32],
                executable: true,
            }],
            inputs: vec![],
            outputs: vec!["out".into()],
            argv: vec!["program".into()],
            env: vec![EnvVar {
                name: "A".into(),
                value: "b".into(),
            }],
            limits: Some(Limits {
                max_output_bytes: 1,
                deadline_ms: 1,
            }),
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "in_1", "x.csv", "A-b", &"n".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "é",
            &"n".repeat(65),
            "a\0",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn accepts_a_good_deploy_and_names_each_fault() {
        check_deploy(&deploy()).unwrap();
        let mut d = deploy();
        d.protocol_version = 2;
        assert_eq!(check_deploy(&d), Err(CheckError::Version { got: 2 }));
        let mut d = deploy();
        d.files[0].name = "../etc".into();
        assert!(matches!(check_deploy(&d), Err(CheckError::Name { .. })));
        let mut d = deploy();
        d.outputs.push("out".into());
        assert!(matches!(
            check_deploy(&d),
            Err(CheckError::Duplicate { .. })
        ));
        let mut d = deploy();
        d.files[0].sha256.pop();
        assert!(matches!(
            check_deploy(&d),
            Err(CheckError::Digest { len: 31, .. })
        ));
        let mut d = deploy();
        d.argv.clear();
        assert_eq!(check_deploy(&d), Err(CheckError::NoArgv));
        let mut d = deploy();
        d.limits = None;
        assert_eq!(check_deploy(&d), Err(CheckError::NoLimits));
        let mut d = deploy();
        d.argv.push("x".repeat(MAX_ARG_LEN + 1));
        assert!(matches!(check_deploy(&d), Err(CheckError::TooLong { .. })));
        let mut d = deploy();
        d.inputs = (0..=MAX_FILES)
            .map(|i| FileMeta {
                name: format!("i{i}"),
                size: 0,
                sha256: vec![0; 32],
                executable: false,
            })
            .collect();
        assert!(matches!(check_deploy(&d), Err(CheckError::TooMany { .. })));
    }
}
