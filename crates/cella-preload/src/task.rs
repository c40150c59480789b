//! What the program is told about its task, derived from `Deploy` alone (nothing the
//! executor did not send, so the receipt's command digest still covers it):
//!
//! - `task.json` in the instance's root (`/cella/task.json` inside an instance,
//!   `$CELLA_TASK_FILE` everywhere):
//!   `{"function": name, "arguments": {name: value}, "inputs": [slots], "outputs": [slots]}`;
//! - the command line: `Deploy.argv`, then one `--<name>=<value>` per task argument,
//!   sorted by name;
//! - the environment keeps `CELLA_ARG_<name>=<value>` per argument.
//!
//! The task's arguments are the `Deploy.env` entries named `CELLA_ARG_<name>`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::layout::{Layout, LayoutError};
use crate::protocol::{Deploy, ErrorCode};

/// Prefix of the environment variable carrying each task argument: `CELLA_ARG_<name>`.
pub const ARG_ENV_PREFIX: &str = "CELLA_ARG_";

/// The file name of the task description in the instance's root.
pub const TASK_FILE: &str = "task.json";

/// The task's arguments, by name, from the `CELLA_ARG_<name>` entries of `Deploy.env`.
pub fn arguments(deploy: &Deploy) -> BTreeMap<String, String> {
    deploy
        .env
        .iter()
        .filter_map(|e| {
            e.name
                .strip_prefix(ARG_ENV_PREFIX)
                .filter(|n| !n.is_empty())
                .map(|n| (n.to_owned(), e.value.clone()))
        })
        .collect()
}

/// The program's command line: `Deploy.argv`, then `--<name>=<value>` per argument,
/// sorted by name.
pub fn program_argv(deploy: &Deploy) -> Vec<String> {
    let mut argv = deploy.argv.clone();
    argv.extend(
        arguments(deploy)
            .into_iter()
            .map(|(name, value)| format!("--{name}={value}")),
    );
    argv
}

#[derive(serde::Serialize)]
struct TaskJson<'a> {
    function: &'a str,
    arguments: BTreeMap<String, String>,
    inputs: Vec<&'a str>,
    outputs: Vec<&'a str>,
}

/// The content of `task.json` for `deploy`: one JSON object, keys in a fixed order,
/// arguments sorted by name, slots in `Deploy` order, ending with a newline.
pub fn task_json(deploy: &Deploy) -> Vec<u8> {
    let task = TaskJson {
        function: &deploy.function_name,
        arguments: arguments(deploy),
        inputs: deploy.inputs.iter().map(|i| i.name.as_str()).collect(),
        outputs: deploy.outputs.iter().map(String::as_str).collect(),
    };
    // Serialising maps of strings and lists of strings cannot fail.
    let mut out = serde_json::to_vec(&task).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// Writes `task.json` into `layout`'s root, read-only (0400), refusing to replace a file
/// already there.
///
/// # Errors
///
/// [`LayoutError`] with [`ErrorCode::Layout`].
pub fn write_task_file(layout: &Layout, deploy: &Deploy) -> Result<(), LayoutError> {
    let path = layout.task_file();
    let io = |what: &str, e: &std::io::Error| LayoutError {
        code: ErrorCode::Layout,
        message: format!("{what} {}: {e}", path.display()),
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&path)
        .map_err(|e| io("creating", &e))?;
    file.write_all(&task_json(deploy))
        .map_err(|e| io("writing", &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{EnvVar, FileMeta};

    fn deploy() -> Deploy {
        let env = |n: &str, v: &str| EnvVar {
            name: n.into(),
            value: v.into(),
        };
        let input = |n: &str| FileMeta {
            name: n.into(),
            ..FileMeta::default()
        };
        Deploy {
            function_name: "psi".into(),
            argv: vec!["/usr/bin/python3".into(), "-I".into(), "program".into()],
            env: vec![
                env("CELLA_ARG_zeta", "last"),
                env("OTHER", "x"),
                env("CELLA_ARG_alpha", "a b=c"),
                env("CELLA_ARG_", "nameless"),
            ],
            inputs: vec![input("left"), input("right")],
            outputs: vec!["result".into()],
            ..Deploy::default()
        }
    }

    #[test]
    fn arguments_come_from_cella_arg_variables_sorted() {
        let d = deploy();
        let args: Vec<(String, String)> = arguments(&d).into_iter().collect();
        assert_eq!(
            args,
            [
                ("alpha".to_owned(), "a b=c".to_owned()),
                ("zeta".to_owned(), "last".to_owned())
            ]
        );
        assert_eq!(
            program_argv(&d),
            [
                "/usr/bin/python3",
                "-I",
                "program",
                "--alpha=a b=c",
                "--zeta=last"
            ]
        );
        let none = Deploy {
            argv: vec!["./program".into()],
            ..Deploy::default()
        };
        assert_eq!(program_argv(&none), ["./program"]);
    }

    #[test]
    fn task_json_is_the_documented_object() {
        let text = String::from_utf8(task_json(&deploy())).unwrap();
        assert_eq!(
            text,
            "{\"function\":\"psi\",\"arguments\":{\"alpha\":\"a b=c\",\"zeta\":\"last\"},\
             \"inputs\":[\"left\",\"right\"],\"outputs\":[\"result\"]}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["arguments"]["zeta"], "last");
    }

    #[test]
    fn the_task_file_is_written_once_read_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        write_task_file(&layout, &deploy()).unwrap();
        let path = dir.path().join(TASK_FILE);
        assert_eq!(std::fs::read(&path).unwrap(), task_json(&deploy()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        let again = write_task_file(&layout, &deploy()).unwrap_err();
        assert_eq!(again.code, ErrorCode::Layout);
        assert!(again.message.contains("task.json"), "{again}");
        // Wiped with the rest of a run.
        layout.wipe().unwrap();
        assert!(!path.exists());
    }
}
