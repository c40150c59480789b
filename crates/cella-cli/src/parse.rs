//! Parsers for the compact argument forms of the CLI, used as clap value parsers:
//!
//! | form | meaning |
//! |---|---|
//! | `--arg name` | required argument, set by each task |
//! | `--arg name=default` | optional argument with a default a task may override |
//! | `--arg name=default:fixed` | argument fixed to `default` |
//! | `--input slot` / `--input slot?` | required / optional input slot |
//! | `--input slot=alice,bob` | (task create) the owners of a slot |
//! | `--input slot=input-<uuid>` | (task assign) the file that fills a slot |
//! | `--arg key=value`, `--key-file slot=path` | pairs |
//!
//! Errors are plain strings: clap prints them after the offending flag.

use std::path::PathBuf;

use cella_client::proto;
use cella_types::function::check_name;
use cella_types::{FileId, InputFileId, OutputFileId, UserName};

/// The suffix that marks an argument as fixed to its default.
const FIXED_SUFFIX: &str = ":fixed";

/// `name[=default][:fixed]`: a function argument declaration.
pub(crate) fn arg_decl(s: &str) -> Result<proto::ArgumentSpec, String> {
    let (body, fixed) = match s.strip_suffix(FIXED_SUFFIX) {
        Some(body) => (body, true),
        None => (s, false),
    };
    let (name, default) = match body.split_once('=') {
        Some((name, default)) => (name, Some(default.to_owned())),
        None => (body, None),
    };
    check_name("argument", name).map_err(|e| e.to_string())?;
    if fixed && default.is_none() {
        return Err(format!(
            "argument {name:?} is fixed but has no default: write {name}=VALUE:fixed"
        ));
    }
    Ok(proto::ArgumentSpec {
        name: name.to_owned(),
        default_value: default,
        overridable: !fixed,
    })
}

/// `slot` or `slot?`: an input slot declaration (`?` = optional).
pub(crate) fn input_slot_decl(s: &str) -> Result<proto::SlotSpec, String> {
    let (name, optional) = match s.strip_suffix('?') {
        Some(name) => (name, true),
        None => (s, false),
    };
    check_name("input slot", name).map_err(|e| e.to_string())?;
    Ok(proto::SlotSpec {
        name: name.to_owned(),
        optional,
    })
}

/// `slot`: an output slot declaration (outputs cannot be optional).
pub(crate) fn output_slot_decl(s: &str) -> Result<proto::SlotSpec, String> {
    if s.ends_with('?') {
        return Err(format!(
            "output slot {s:?} cannot be optional: every output needs a place to go"
        ));
    }
    check_name("output slot", s).map_err(|e| e.to_string())?;
    Ok(proto::SlotSpec {
        name: s.to_owned(),
        optional: false,
    })
}

/// Splits `left=right`, both sides non-empty.
fn pair<'a>(s: &'a str, form: &str) -> Result<(&'a str, &'a str), String> {
    match s.split_once('=') {
        Some((l, r)) if !l.is_empty() && !r.is_empty() => Ok((l, r)),
        _ => Err(format!("expected {form}, got {s:?}")),
    }
}

/// `slot=user1,user2`: the owners of a task slot.
pub(crate) fn slot_owners(s: &str) -> Result<proto::SlotOwners, String> {
    let (slot, users) = pair(s, "slot=user[,user...]")?;
    check_name("slot", slot).map_err(|e| e.to_string())?;
    let mut owners = Vec::new();
    for user in users.split(',') {
        let user: UserName = user.trim().parse().map_err(|e| format!("{e}"))?;
        if owners.contains(&user.to_string()) {
            return Err(format!("user {user} is listed twice for slot {slot}"));
        }
        owners.push(user.to_string());
    }
    Ok(proto::SlotOwners {
        slot: slot.to_owned(),
        owners,
    })
}

/// `slot=input-<uuid>`: an input file for a task slot.
pub(crate) fn slot_input_file(s: &str) -> Result<proto::SlotFile, String> {
    let (slot, file) = pair(s, "slot=input-<uuid>")?;
    check_name("slot", slot).map_err(|e| e.to_string())?;
    let id: InputFileId = file.parse().map_err(|e| format!("{e}"))?;
    Ok(proto::SlotFile {
        slot: slot.to_owned(),
        file_id: id.to_string(),
    })
}

/// `slot=output-<uuid>`: an output file for a task slot.
pub(crate) fn slot_output_file(s: &str) -> Result<proto::SlotFile, String> {
    let (slot, file) = pair(s, "slot=output-<uuid>")?;
    check_name("slot", slot).map_err(|e| e.to_string())?;
    let id: OutputFileId = file.parse().map_err(|e| format!("{e}"))?;
    Ok(proto::SlotFile {
        slot: slot.to_owned(),
        file_id: id.to_string(),
    })
}

/// `key=value`: a task argument (the value may contain `=` and may be empty).
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected name=value, got {s:?}")),
    }
}

/// `slot=path`: the key file for an output slot.
pub(crate) fn slot_path(s: &str) -> Result<(String, PathBuf), String> {
    let (slot, path) = pair(s, "slot=KEY_FILE")?;
    check_name("slot", slot).map_err(|e| e.to_string())?;
    Ok((slot.to_owned(), PathBuf::from(path)))
}

/// A SHA-256 digest in hex (64 characters), normalised to lowercase.
pub(crate) fn digest_hex(s: &str) -> Result<String, String> {
    s.parse::<cella_types::Digest>()
        .map(|d| d.to_hex())
        .map_err(|e| e.to_string())
}

/// A function id, `function-<uuid>`.
pub(crate) fn function_id(s: &str) -> Result<String, String> {
    s.parse::<cella_types::FunctionId>()
        .map(|id| id.to_string())
        .map_err(|e| e.to_string())
}

/// A task id, `task-<uuid>`.
pub(crate) fn task_id(s: &str) -> Result<String, String> {
    s.parse::<cella_types::TaskId>()
        .map(|id| id.to_string())
        .map_err(|e| e.to_string())
}

/// A file id, `input-<uuid>` or `output-<uuid>`.
pub(crate) fn file_id(s: &str) -> Result<String, String> {
    s.parse::<FileId>()
        .map(|id| id.to_string())
        .map_err(|e| e.to_string())
}

/// A user name.
pub(crate) fn user_name(s: &str) -> Result<String, String> {
    s.parse::<UserName>()
        .map(|u| u.to_string())
        .map_err(|e| e.to_string())
}

/// A role name: admin, function_owner or data_owner.
pub(crate) fn role(s: &str) -> Result<String, String> {
    s.parse::<cella_types::Role>()
        .map(|r| r.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// The task statuses `--status` takes, in Teaclave's order.
pub(crate) const TASK_STATUS_NAMES: &str =
    "created, data-assigned, approved, staged, running, finished, failed, canceled";

/// A task status by name, `data-assigned` or `data_assigned`, in any case.
pub(crate) fn task_status(s: &str) -> Result<i32, String> {
    let name = format!(
        "TASK_STATUS_{}",
        s.trim().replace('-', "_").to_ascii_uppercase()
    );
    match proto::TaskStatus::from_str_name(&name) {
        Some(proto::TaskStatus::Unspecified) | None => Err(format!(
            "unknown task status {s:?}: one of {TASK_STATUS_NAMES}"
        )),
        Some(status) => Ok(status as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_declarations() {
        let a = arg_decl("need").unwrap();
        assert_eq!(
            (a.name.as_str(), a.default_value, a.overridable),
            ("need", None, true)
        );
        let a = arg_decl("sep=,").unwrap();
        assert_eq!(
            (a.default_value.as_deref(), a.overridable),
            (Some(","), true)
        );
        let a = arg_decl("mode=exact:fixed").unwrap();
        assert_eq!(
            (a.name.as_str(), a.default_value.as_deref(), a.overridable),
            ("mode", Some("exact"), false)
        );
        // Only a trailing ":fixed" is the marker; other colons belong to the default.
        let a = arg_decl("url=http://x:80").unwrap();
        assert_eq!(
            (a.default_value.as_deref(), a.overridable),
            (Some("http://x:80"), true)
        );
        let a = arg_decl("sep=::fixed").unwrap();
        assert_eq!(
            (a.default_value.as_deref(), a.overridable),
            (Some(":"), false)
        );
        let a = arg_decl("empty=:fixed").unwrap();
        assert_eq!(
            (a.default_value.as_deref(), a.overridable),
            (Some(""), false)
        );
        let a = arg_decl("eq=a=b").unwrap();
        assert_eq!(a.default_value.as_deref(), Some("a=b"));

        assert!(arg_decl("mode:fixed").unwrap_err().contains("no default"));
        assert!(arg_decl("=x").is_err());
        assert!(arg_decl("bad name=1").is_err());
    }

    #[test]
    fn slot_declarations() {
        assert!(!input_slot_decl("in1").unwrap().optional);
        let s = input_slot_decl("extra?").unwrap();
        assert_eq!((s.name.as_str(), s.optional), ("extra", true));
        assert!(input_slot_decl("?").is_err());
        assert!(input_slot_decl("a??").is_err());
        assert!(
            output_slot_decl("out?")
                .unwrap_err()
                .contains("cannot be optional")
        );
        assert_eq!(output_slot_decl("out").unwrap().name, "out");
    }

    #[test]
    fn slot_owner_lists() {
        let s = slot_owners("in1=alice,bob").unwrap();
        assert_eq!(s.slot, "in1");
        assert_eq!(s.owners, ["alice", "bob"]);
        assert_eq!(slot_owners("o=carol").unwrap().owners, ["carol"]);
        assert!(slot_owners("in1").is_err());
        assert!(slot_owners("in1=").is_err());
        assert!(slot_owners("=alice").is_err());
        assert!(slot_owners("in1=alice,,bob").is_err());
        assert!(
            slot_owners("in1=alice,alice")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn slot_files_and_pairs() {
        let id = InputFileId::new().to_string();
        assert_eq!(slot_input_file(&format!("in1={id}")).unwrap().file_id, id);
        let out = OutputFileId::new().to_string();
        assert!(slot_input_file(&format!("in1={out}")).is_err());
        assert_eq!(slot_output_file(&format!("o={out}")).unwrap().file_id, out);
        assert_eq!(key_value("k=a=b").unwrap(), ("k".into(), "a=b".into()));
        assert_eq!(key_value("k=").unwrap(), ("k".into(), String::new()));
        assert!(key_value("=v").is_err());
        assert_eq!(slot_path("o=/tmp/k").unwrap().1, PathBuf::from("/tmp/k"));
        assert!(digest_hex(&"AB".repeat(32)).unwrap() == "ab".repeat(32));
        assert!(digest_hex("abc").is_err());
        assert!(file_id(&out).is_ok());
        assert!(file_id("task-1").is_err());
        assert!(role("data_owner").is_ok());
        assert!(role("root").is_err());
    }
}
