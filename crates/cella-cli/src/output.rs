//! What commands print: a [`Report`] holds both forms, one JSON object for `--json` and
//! text for people, and `main` prints the one asked for. The JSON field names follow
//! the API's (`proto/cella/v1`), with statuses and times made readable.

use std::fmt::Write as _;

use base64::Engine as _;
use cella_client::proto;
use serde_json::{Value, json};

/// The result of one command.
#[derive(Debug)]
pub(crate) struct Report {
    /// The `--json` form: one object.
    pub(crate) json: Value,
    /// The human form; printed with a trailing newline unless empty.
    pub(crate) human: String,
    /// Whether the command succeeded (a watched task can end Failed: the report is
    /// still printed, and the exit code is non-zero).
    pub(crate) success: bool,
}

impl Report {
    /// A successful report.
    pub(crate) fn new(json: Value, human: impl Into<String>) -> Self {
        Self {
            json,
            human: human.into(),
            success: true,
        }
    }
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
        "{}  {name:<20} {executor:<8} owner {}{disabled}",
        f.function_id, f.owner
    )
}

pub(crate) fn function_text(f: &proto::FunctionInfo) -> String {
    let mut out = function_line(f);
    let Some(s) = &f.spec else {
        return out;
    };
    // Writing to a String cannot fail.
    let _ = write!(out, "\n  description:    {}", s.description);
    if !s.runtime.is_empty() {
        let _ = write!(out, "\n  runtime:        {}", s.runtime);
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
        f.file_id, f.size, f.location
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
    let _ = write!(out, "\n  digest      {}", t.task_digest);
    if !t.reason.is_empty() {
        let _ = write!(out, "\n  reason      {}", t.reason);
    }
    if let Some(r) = &t.result {
        let value = String::from_utf8_lossy(&r.return_value);
        let _ = write!(out, "\n  returned    {value:?}");
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
            let _ = write!(out, "\n  log | {line}");
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

    #[test]
    fn bytes_are_text_or_base64() {
        assert_eq!(bytes_json(b"hi"), json!("hi"));
        assert_eq!(bytes_json(&[0xff]), json!({ "base64": "/w==" }));
    }
}
