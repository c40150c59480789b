//! What commands print: a [`Report`] holds both forms, one JSON object for `--json` and
//! text for people, and `main` prints the one asked for. The JSON field names follow
//! the API's (`proto/cella/v1`), with statuses and times made readable.

use std::fmt::Write as _;

use base64::Engine as _;
use cella_client::proto;
use cella_types::TaskStatus;
use serde_json::{Value, json};

use crate::exit::Exit;

/// The result of one command.
#[derive(Debug)]
pub(crate) struct Report {
    /// The `--json` form: one object.
    pub(crate) json: Value,
    /// The human form; printed with a trailing newline unless empty.
    pub(crate) human: String,
    /// The exit code (a watched task can end Failed: the report is still printed, and
    /// the exit code says so).
    pub(crate) exit: Exit,
}

impl Report {
    /// A successful report.
    pub(crate) fn new(json: Value, human: impl Into<String>) -> Self {
        Self {
            json,
            human: human.into(),
            exit: Exit::Ok,
        }
    }
}

/// Whether `c` must not reach a terminal as itself: C0 and C1 controls and DEL (cursor
/// moves, colours, erasing, `\r` overwriting a line, `\n` forging one) and the bidi
/// overrides and isolates, which reorder what is shown. A tab is harmless and kept.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Untrusted text (a function's log, return value or failure reason, a name or
/// description another user chose, a node's message) made safe to print as one line:
/// every character of [`needs_escape`] is shown as its `\u{…}` escape. Applied to every
/// human-readable output of such text; JSON output needs none (JSON escapes controls).
pub(crate) fn escape_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Untrusted text of several lines (a failure reason quoting a program's last lines),
/// each escaped with [`escape_line`], the lines after the first starting with `indent`.
fn escape_lines(text: &str, indent: &str) -> String {
    text.lines()
        .map(escape_line)
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

/// `ms` since the Unix epoch as UTC `YYYY-MM-DDTHH:MM:SSZ` (`-` for 0 or less).
pub(crate) fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A task status's name (`Created`, …, `Canceled`; `Unspecified` for anything else).
pub(crate) fn status_name(status: i32) -> &'static str {
    cella_client::task_status(status).map_or("Unspecified", |s| s.as_str())
}

/// Bytes as a JSON value: a string when they are UTF-8, else `{"base64": …}`.
pub(crate) fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

pub(crate) fn user_json(u: &proto::UserInfo) -> Value {
    json!({
        "name": u.name,
        "roles": u.roles,
        "created_at": format_ms(u.created_at_ms),
        "created_at_ms": u.created_at_ms,
    })
}

/// The header of `user list`, aligned with [`user_line`].
pub(crate) const USER_HEADER: &str = "USER                     ROLES";

pub(crate) fn user_line(u: &proto::UserInfo) -> String {
    format!("{:<24} {}", u.name, u.roles.join(","))
}

fn argument_json(a: &proto::ArgumentSpec) -> Value {
    json!({ "name": a.name, "default_value": a.default_value, "overridable": a.overridable })
}

fn slot_json(s: &proto::SlotSpec) -> Value {
    json!({ "name": s.name, "optional": s.optional })
}

pub(crate) fn spec_json(s: &proto::FunctionSpec) -> Value {
    json!({
        "name": s.name,
        "description": s.description,
        "executor": s.executor,
        "runtime": s.runtime,
        "reuse": s.reuse,
        "arguments": s.arguments.iter().map(argument_json).collect::<Vec<_>>(),
        "inputs": s.inputs.iter().map(slot_json).collect::<Vec<_>>(),
        "outputs": s.outputs.iter().map(slot_json).collect::<Vec<_>>(),
        "public": s.public,
        "allowed_users": s.allowed_users,
        "quota": s.quota,
    })
}

pub(crate) fn function_json(f: &proto::FunctionInfo) -> Value {
    json!({
        "function_id": f.function_id,
        "owner": f.owner,
        "spec": f.spec.as_ref().map(spec_json),
        "payload_digest": f.payload_digest,
        "payload_len": f.payload_len,
        "usage": f.usage,
        "disabled": f.disabled,
        "created_at": format_ms(f.created_at_ms),
        "updated_at": format_ms(f.updated_at_ms),
    })
}

/// One argument as `name=default (overridable)`, `name=default (fixed)` or
/// `name (required)`.
fn argument_text(a: &proto::ArgumentSpec) -> String {
    match (&a.default_value, a.overridable) {
        (Some(d), true) => format!("{}={d:?}", a.name),
        (Some(d), false) => format!("{}={d:?} (fixed)", a.name),
        (None, _) => format!("{} (required)", a.name),
    }
}

fn slots_text(slots: &[proto::SlotSpec]) -> String {
    if slots.is_empty() {
        return "-".to_owned();
    }
    slots
        .iter()
        .map(|s| format!("{}{}", s.name, if s.optional { "?" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The header of `function list`, aligned with [`function_row`].
pub(crate) const FUNCTION_HEADER: &str = concat!(
    "FUNCTION                                       NAME                 ",
    "EXECUTOR OWNER            STATE"
);

/// A function's name and executor, `?` where the node sent no spec.
fn name_and_executor(f: &proto::FunctionInfo) -> (&str, &str) {
    f.spec
        .as_ref()
        .map_or(("?", "?"), |s| (s.name.as_str(), s.executor.as_str()))
}

/// One line of `function list`.
pub(crate) fn function_row(f: &proto::FunctionInfo) -> String {
    let (name, executor) = name_and_executor(f);
    let state = if f.disabled { "disabled" } else { "enabled" };
    format!(
        "{:<45}  {name:<20} {executor:<8} {:<16} {state}",
        f.function_id, f.owner
    )
}

pub(crate) fn function_line(f: &proto::FunctionInfo) -> String {
    let (name, executor) = name_and_executor(f);
    let disabled = if f.disabled { " (disabled)" } else { "" };
    format!(
        "{}  {:<20} {:<8} owner {}{disabled}",
        f.function_id,
        escape_line(name),
        escape_line(executor),
        escape_line(&f.owner)
    )
}

pub(crate) fn function_text(f: &proto::FunctionInfo) -> String {
    let mut out = function_line(f);
    let Some(s) = &f.spec else {
        return out;
    };
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "\n  description:    {}",
        escape_lines(&s.description, "                  ")
    );
    if !s.runtime.is_empty() {
        let _ = write!(out, "\n  runtime:        {}", escape_line(&s.runtime));
        if s.reuse == "same-function" {
            let _ = write!(
                out,
                "\n  reuse:          same-function (instances serve several tasks, wiped in between)"
            );
        }
    }
    let _ = write!(
        out,
        "\n  payload digest: {} ({} bytes)",
        f.payload_digest, f.payload_len
    );
    let args: Vec<_> = s.arguments.iter().map(argument_text).collect();
    let args = if args.is_empty() {
        "-".to_owned()
    } else {
        args.join(", ")
    };
    let _ = write!(out, "\n  arguments:      {args}");
    let _ = write!(out, "\n  inputs:         {}", slots_text(&s.inputs));
    let _ = write!(out, "\n  outputs:        {}", slots_text(&s.outputs));
    let who = if s.public {
        "public".to_owned()
    } else if s.allowed_users.is_empty() {
        "owner only".to_owned()
    } else {
        format!("owner and {}", s.allowed_users.join(", "))
    };
    let _ = write!(out, "\n  usable by:      {who}");
    let quota = s
        .quota
        .map_or_else(|| "no limit".to_owned(), |q| q.to_string());
    let _ = write!(out, "\n  usage:          {} of {quota}", f.usage);
    out
}

pub(crate) fn file_json(f: &proto::FileInfo) -> Value {
    json!({
        "file_id": f.file_id,
        "owner": f.owner,
        "location": f.location,
        "schema": f.schema,
        "ciphertext_digest": f.ciphertext_digest,
        "size": f.size,
        "created_at": format_ms(f.created_at_ms),
        "written_by_task": f.written_by_task,
    })
}

/// The header of `file list`, aligned with [`file_row`].
pub(crate) const FILE_HEADER: &str = concat!(
    "FILE                                                SIZE  ",
    "CIPHERTEXT SHA-256                                                LOCATION"
);

/// One line of `file list`.
pub(crate) fn file_row(f: &proto::FileInfo) -> String {
    let digest = if f.ciphertext_digest.is_empty() {
        "(not written yet)"
    } else {
        f.ciphertext_digest.as_str()
    };
    format!(
        "{:<43} {:>12}  {digest:<64}  {}",
        f.file_id, f.size, f.location
    )
}

pub(crate) fn file_line(f: &proto::FileInfo) -> String {
    let digest = if f.ciphertext_digest.is_empty() {
        "(not written yet)"
    } else {
        f.ciphertext_digest.as_str()
    };
    format!(
        "{}  {:>12} bytes  {}  {digest}",
        f.file_id,
        f.size,
        escape_line(&f.location)
    )
}

fn task_slot_json(s: &proto::TaskSlot) -> Value {
    json!({
        "slot": s.slot,
        "owners": s.owners,
        "optional": s.optional,
        "file_id": s.file_id,
        "ciphertext_digest": s.ciphertext_digest,
    })
}

fn sorted_arguments(t: &proto::TaskInfo) -> Vec<(&String, &String)> {
    let mut args: Vec<_> = t.arguments.iter().collect();
    args.sort();
    args
}

pub(crate) fn task_json(t: &proto::TaskInfo) -> Value {
    let arguments: serde_json::Map<String, Value> = sorted_arguments(t)
        .into_iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let result = t.result.as_ref().map(|r| {
        json!({
            "return_value": bytes_json(&r.return_value),
            "log": r.log,
            "outputs": r.outputs.iter().map(|o| json!({
                "slot": o.slot, "ciphertext_digest": o.ciphertext_digest,
            })).collect::<Vec<_>>(),
            "usage": r.usage.as_ref().map(|u| json!({
                "wall_us": u.wall_us, "input_bytes": u.input_bytes, "output_bytes": u.output_bytes,
            })),
            "receipt": base64::engine::general_purpose::STANDARD.encode(&r.receipt),
        })
    });
    json!({
        "task_id": t.task_id,
        "status": status_name(t.status),
        "creator": t.creator,
        "function_id": t.function_id,
        "function_owner": t.function_owner,
        "function_payload_digest": t.function_payload_digest,
        "function_reuse": t.function_reuse,
        "arguments": arguments,
        "inputs": t.inputs.iter().map(task_slot_json).collect::<Vec<_>>(),
        "outputs": t.outputs.iter().map(task_slot_json).collect::<Vec<_>>(),
        "participants": t.participants,
        "approved_by": t.approved_by,
        "task_digest": t.task_digest,
        "reason": t.reason,
        "result": result,
        "history": t.history.iter().map(|h| json!({
            "status": status_name(h.status), "at": format_ms(h.at_ms),
        })).collect::<Vec<_>>(),
        "waiting_for": waiting_json(&waiting_for(t)),
        "attempts": t.attempts,
    })
}

/// The header of `task list`, aligned with [`task_row`].
pub(crate) const TASK_HEADER: &str = concat!(
    "TASK                                       STATUS        ",
    "FUNCTION                                       CREATOR"
);

/// One line of `task list`.
pub(crate) fn task_row(t: &proto::TaskInfo) -> String {
    format!(
        "{:<41}  {:<13} {:<45}  {}",
        t.task_id,
        status_name(t.status),
        t.function_id,
        t.creator
    )
}

/// What a task waits for before it can be queued: who must still assign which slot, who
/// must still approve its current digest, and who must invoke it. All empty once the
/// task is queued or has ended: then it waits for no one.
#[derive(Debug, Default)]
pub(crate) struct Waiting<'a> {
    /// Required slots with no file yet: `("input" | "output", slot)`.
    pub(crate) assign: Vec<(&'static str, &'a proto::TaskSlot)>,
    /// Participants whose approval of the current digest is missing.
    pub(crate) approve: Vec<&'a str>,
    /// Who must invoke it (the creator).
    pub(crate) invoke: Option<&'a str>,
}

/// What `t` waits for (see [`Waiting`]).
pub(crate) fn waiting_for(t: &proto::TaskInfo) -> Waiting<'_> {
    let before_queue = matches!(
        cella_client::task_status(t.status),
        Some(TaskStatus::Created | TaskStatus::DataAssigned | TaskStatus::Approved)
    );
    if !before_queue {
        return Waiting::default();
    }
    let empty = |s: &&proto::TaskSlot| s.file_id.is_empty() && !s.optional;
    let assign = (t.inputs.iter().filter(empty).map(|s| ("input", s)))
        .chain(t.outputs.iter().filter(empty).map(|s| ("output", s)))
        .collect();
    let approve = t
        .participants
        .iter()
        .filter(|p| !t.approved_by.contains(p))
        .map(String::as_str)
        .collect();
    Waiting {
        assign,
        approve,
        invoke: Some(t.creator.as_str()),
    }
}

/// `input b by bank-b, output b_out by bank-b or bank-c`.
fn assign_text(w: &Waiting<'_>) -> String {
    w.assign
        .iter()
        .map(|(kind, s)| format!("{kind} {} by {}", s.slot, s.owners.join(" or ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first thing a task waits for, as `waiting for …` (`None` when it waits for no
/// one): what `task watch` prints beside a status.
pub(crate) fn waiting_summary(w: &Waiting<'_>) -> Option<String> {
    if !w.assign.is_empty() {
        Some(format!("waiting for assignments: {}", assign_text(w)))
    } else if !w.approve.is_empty() {
        Some(format!(
            "waiting for approvals from {}",
            w.approve.join(", ")
        ))
    } else {
        w.invoke
            .map(|c| format!("waiting for {c} (the creator) to invoke it"))
    }
}

/// The lines of `task get` that say who still has to act.
fn waiting_text(w: &Waiting<'_>) -> String {
    let mut out = String::new();
    if !w.assign.is_empty() {
        let _ = write!(out, "\n  to assign   {}", assign_text(w));
    }
    if !w.approve.is_empty() {
        let after = if w.assign.is_empty() {
            ""
        } else {
            " (once every slot is assigned)"
        };
        let _ = write!(out, "\n  to approve  {}{after}", w.approve.join(", "));
    }
    if let Some(creator) = w.invoke {
        let after = if w.assign.is_empty() && w.approve.is_empty() {
            ""
        } else {
            ", once everyone approved"
        };
        let _ = write!(out, "\n  to invoke   {creator} (the creator{after})");
    }
    out
}

/// The `waiting_for` object of a task's JSON.
fn waiting_json(w: &Waiting<'_>) -> Value {
    json!({
        "assign": w.assign.iter().map(|(kind, s)| json!({
            "kind": kind, "slot": s.slot, "owners": s.owners,
        })).collect::<Vec<_>>(),
        "approve": w.approve,
        "invoke": w.invoke,
    })
}

/// A function's return value for people: the text, escaped, or its size when it is
/// empty or not UTF-8 (JSON output carries the bytes).
pub(crate) fn return_value_text(value: &[u8]) -> String {
    if value.is_empty() {
        return "(nothing)".to_owned();
    }
    match std::str::from_utf8(value) {
        Ok(text) => escape_line(text).into_owned(),
        Err(_) => format!("({} bytes, not UTF-8: see --json)", value.len()),
    }
}

/// A list command's text: its header and one row per item, or `empty` when there are
/// none (a header over nothing reads as an error).
pub(crate) fn table(header: &str, rows: impl Iterator<Item = String>, empty: &str) -> String {
    let mut out = String::from(header);
    let mut any = false;
    for row in rows {
        out.push('\n');
        out.push_str(row.trim_end());
        any = true;
    }
    if any { out } else { empty.to_owned() }
}

fn slot_text(kind: &str, s: &proto::TaskSlot) -> String {
    let file = if s.file_id.is_empty() {
        if s.optional {
            "(optional, empty)".to_owned()
        } else {
            "(not assigned)".to_owned()
        }
    } else if s.ciphertext_digest.is_empty() {
        s.file_id.clone()
    } else {
        format!("{} sha256 {}", s.file_id, s.ciphertext_digest)
    };
    format!(
        "\n  {kind:<7} {:<16} owners {:<20} {file}",
        s.slot,
        s.owners.join(",")
    )
}

pub(crate) fn task_text(t: &proto::TaskInfo) -> String {
    let mut out = format!("{}  {}", t.task_id, status_name(t.status));
    let _ = write!(
        out,
        "\n  function    {} (owner {}, payload sha256 {})\n  creator     {}",
        t.function_id, t.function_owner, t.function_payload_digest, t.creator
    );
    if t.function_reuse == "same-function" {
        out.push_str("\n  reuse       same-function: its LibOS instance may have served earlier tasks of this function");
    }
    for (k, v) in sorted_arguments(t) {
        let _ = write!(out, "\n  argument    {k}={v:?}");
    }
    for s in &t.inputs {
        out.push_str(&slot_text("input", s));
    }
    for s in &t.outputs {
        out.push_str(&slot_text("output", s));
    }
    let _ = write!(
        out,
        "\n  approved by {} of {}: {}",
        t.approved_by.len(),
        t.participants.len(),
        if t.approved_by.is_empty() {
            "-".to_owned()
        } else {
            t.approved_by.join(", ")
        }
    );
    out.push_str(&waiting_text(&waiting_for(t)));
    let _ = write!(out, "\n  digest      {}", t.task_digest);
    if !t.reason.is_empty() {
        let _ = write!(
            out,
            "\n  reason      {}",
            escape_lines(&t.reason, "              ")
        );
    }
    if let Some(r) = &t.result {
        let _ = write!(
            out,
            "\n  returned    {}",
            return_value_text(&r.return_value)
        );
        for o in &r.outputs {
            let _ = write!(
                out,
                "\n  wrote       {} sha256 {}",
                o.slot, o.ciphertext_digest
            );
        }
        if let Some(u) = &r.usage {
            let _ = write!(
                out,
                "\n  usage       {} us, {} bytes in, {} bytes out",
                u.wall_us, u.input_bytes, u.output_bytes
            );
        }
        for line in &r.log {
            let _ = write!(out, "\n  log | {}", escape_line(line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_ms(0), "-");
        assert_eq!(format_ms(1), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }

    fn slot(name: &str, owners: &[&str], file_id: &str) -> proto::TaskSlot {
        proto::TaskSlot {
            slot: name.into(),
            owners: owners.iter().map(|&o| o.into()).collect(),
            file_id: file_id.into(),
            ..Default::default()
        }
    }

    fn task(status: TaskStatus) -> proto::TaskInfo {
        let status = match status {
            TaskStatus::Created => proto::TaskStatus::Created,
            TaskStatus::DataAssigned => proto::TaskStatus::DataAssigned,
            TaskStatus::Approved => proto::TaskStatus::Approved,
            TaskStatus::Running => proto::TaskStatus::Running,
            TaskStatus::Failed => proto::TaskStatus::Failed,
            _ => proto::TaskStatus::Finished,
        };
        proto::TaskInfo {
            task_id: "task-1".into(),
            creator: "bank-a".into(),
            status: status.into(),
            participants: vec!["bank-a".into(), "bank-b".into(), "fo".into()],
            ..Default::default()
        }
    }

    #[test]
    fn control_characters_in_untrusted_text_are_escaped() {
        assert_eq!(escape_line("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            escape_line("\x1b[31mred\x1b[0m\r\nforged\u{7f}\u{9b}\u{202e}"),
            "\\u{1b}[31mred\\u{1b}[0m\\u{d}\\u{a}forged\\u{7f}\\u{9b}\\u{202e}"
        );
        assert_eq!(
            escape_lines("one\r\ntwo\x1b", "    "),
            "one\n    two\\u{1b}"
        );
    }

    #[test]
    fn task_get_text_carries_no_escape_sequence_from_the_function() {
        let mut t = task(TaskStatus::Failed);
        t.reason = "the program failed:\n\x1b]0;owned\x07last line".into();
        t.arguments.insert("sep".into(), "\x1b[2J\u{202e}".into());
        t.result = Some(proto::TaskResult {
            return_value: b"\x1b[1A\rok".to_vec(),
            log: vec!["\x1b[31mred".into(), "x\n  log | forged line".into()],
            ..Default::default()
        });
        let text = task_text(&t);
        assert!(
            !text.contains(['\x1b', '\r', '\x07', '\u{202e}']),
            "{text:?}"
        );
        // Every line is one of ours: the forged one stays inside its log line.
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("log | forged")),
            "{text}"
        );
        assert!(text.contains("log | \\u{1b}[31mred"), "{text}");
        // A reason of several lines keeps them, indented under it.
        assert!(
            text.contains("reason      the program failed:\n              \\u{1b}]0;owned"),
            "{text}"
        );
    }

    #[test]
    fn a_function_description_and_location_are_escaped() {
        let f = proto::FunctionInfo {
            function_id: "function-1".into(),
            owner: "fo".into(),
            spec: Some(proto::FunctionSpec {
                name: "psi\x1b[8m".into(),
                description: "\x1b[2Jhidden".into(),
                executor: "builtin".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!function_text(&f).contains('\x1b'));
        let file = proto::FileInfo {
            location: "file:///x\x1b[2K".into(),
            ..Default::default()
        };
        assert!(!file_line(&file).contains('\x1b'));
    }

    #[test]
    fn task_get_says_who_still_has_to_assign_approve_and_invoke() {
        let mut t = task(TaskStatus::Created);
        t.inputs = vec![
            slot("a", &["bank-a"], "input-1"),
            slot("b", &["bank-b"], ""),
        ];
        t.outputs = vec![
            slot("a_out", &["bank-a"], "output-1"),
            slot("b_out", &["bank-b", "bank-c"], ""),
        ];
        let mut optional = slot("extra", &["bank-a"], "");
        optional.optional = true;
        t.inputs.push(optional);
        let text = task_text(&t);
        assert!(
            text.contains("\n  to assign   input b by bank-b, output b_out by bank-b or bank-c\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  to approve  bank-a, bank-b, fo (once every slot is assigned)"),
            "{text}"
        );
        assert!(text.contains("\n  to invoke   bank-a (the creator, once everyone approved)"));
        let w = waiting_for(&t);
        assert_eq!(
            waiting_summary(&w).unwrap(),
            "waiting for assignments: input b by bank-b, output b_out by bank-b or bank-c"
        );
        let j = task_json(&t);
        assert_eq!(
            j["waiting_for"]["assign"][0],
            json!({"kind": "input", "slot": "b", "owners": ["bank-b"]})
        );
        assert_eq!(j["waiting_for"]["invoke"], "bank-a");

        // Every slot assigned, one approval in: the others are named.
        let mut t = task(TaskStatus::DataAssigned);
        t.inputs = vec![slot("a", &["bank-a"], "input-1")];
        t.approved_by = vec!["bank-b".into()];
        let w = waiting_for(&t);
        assert_eq!(w.approve, ["bank-a", "fo"]);
        assert_eq!(
            waiting_summary(&w).unwrap(),
            "waiting for approvals from bank-a, fo"
        );
        assert!(!task_text(&t).contains("to assign"));

        let mut t = task(TaskStatus::Approved);
        t.approved_by = t.participants.clone();
        assert_eq!(
            waiting_summary(&waiting_for(&t)).unwrap(),
            "waiting for bank-a (the creator) to invoke it"
        );
        // Running or ended: it waits for no one.
        for status in [TaskStatus::Running, TaskStatus::Finished] {
            let t = task(status);
            assert!(waiting_summary(&waiting_for(&t)).is_none());
            assert!(!task_text(&t).contains("\n  to "), "{}", task_text(&t));
            assert_eq!(task_json(&t)["waiting_for"]["invoke"], Value::Null);
        }
    }

    #[test]
    fn return_values_are_labelled_text() {
        assert_eq!(return_value_text(b"2"), "2");
        assert_eq!(return_value_text(b""), "(nothing)");
        assert_eq!(
            return_value_text(&[0xff, 0]),
            "(2 bytes, not UTF-8: see --json)"
        );
        assert_eq!(return_value_text(b"a\x1bb"), "a\\u{1b}b");
    }

    #[test]
    fn bytes_are_text_or_base64() {
        assert_eq!(bytes_json(b"hi"), json!("hi"));
        assert_eq!(bytes_json(&[0xff]), json!({ "base64": "/w==" }));
    }
}
