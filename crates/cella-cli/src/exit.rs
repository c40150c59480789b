//! Exit codes and how a failed command is reported: one table (`docs/cli.md#exit-codes`),
//! and one place that turns an error into its code and its stderr form — `error: …` text,
//! or with `--json` one object `{"error": {"code", "message", "exit_code"[, "hint"]}}`.

use std::process::ExitCode;

use cella_client::{ClientError, Code};
use serde_json::json;

use crate::output::escape_line;

/// What a command's exit code says. The values are a public contract: scripts test them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The command did what was asked.
    Ok = 0,
    /// It failed: the node refused, a file could not be read, the node is unreachable…
    Error = 1,
    /// The command line was wrong (unknown flag, missing argument): nothing was sent.
    Usage = 2,
    /// `task watch` or `task result`: the task ended Failed.
    TaskFailed = 3,
    /// `task watch` or `task result`: the task ended Canceled.
    TaskCanceled = 4,
    /// `cella attest`: the node's evidence was refused under the policy.
    AttestationRefused = 5,
    /// `cella audit verify`: the audit trail does not verify.
    AuditBroken = 6,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        // The discriminants are 0..=6: they fit.
        ExitCode::from(exit as u8)
    }
}

/// A failure the CLI classifies itself, so that it gets its own exit code and JSON
/// `code`; every other error exits [`Exit::Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The command line is incomplete or inconsistent in a way clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// There is no session, or it expired.
    #[error("{0}")]
    NotLoggedIn(String),
    /// The task asked about ended Failed.
    #[error("{task_id} failed: {reason}")]
    TaskFailed {
        /// The task.
        task_id: String,
        /// Why, as the node reports it.
        reason: String,
    },
    /// The task asked about ended Canceled.
    #[error("{task_id} was canceled: {reason}")]
    TaskCanceled {
        /// The task.
        task_id: String,
        /// Who canceled it, as the node reports it.
        reason: String,
    },
}

/// The exit code of a failed command.
pub(crate) fn exit_of(err: &anyhow::Error) -> Exit {
    match err.chain().find_map(|e| e.downcast_ref::<Failure>()) {
        Some(Failure::Usage(_)) => Exit::Usage,
        Some(Failure::TaskFailed { .. }) => Exit::TaskFailed,
        Some(Failure::TaskCanceled { .. }) => Exit::TaskCanceled,
        Some(Failure::NotLoggedIn(_)) | None => Exit::Error,
    }
}

/// The gRPC status code's name in snake case, as the JSON `code` of a refusal.
fn status_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The JSON `code` of a failed command: what kind of failure, stable for scripts.
pub(crate) fn code_of(err: &anyhow::Error) -> &'static str {
    for e in err.chain() {
        if let Some(f) = e.downcast_ref::<Failure>() {
            return match f {
                Failure::Usage(_) => "usage",
                Failure::NotLoggedIn(_) => "not_logged_in",
                Failure::TaskFailed { .. } => "task_failed",
                Failure::TaskCanceled { .. } => "task_canceled",
            };
        }
        if let Some(c) = e.downcast_ref::<ClientError>() {
            return match c {
                ClientError::Status { code, .. } => status_code_name(*code),
                ClientError::AttestationRefused { .. } => "attestation_refused",
                ClientError::CertificateMismatch { .. } => "certificate_mismatch",
                ClientError::InvalidCertificate { .. } => "invalid_certificate",
                ClientError::Connect { .. } => "unreachable",
                ClientError::Tls { .. } | ClientError::TlsConfig(_) => "tls",
                ClientError::InvalidAddress { .. } | ClientError::InvalidInput(_) => {
                    "invalid_input"
                }
                ClientError::NotLoggedIn => "not_logged_in",
                ClientError::Protocol { .. } => "protocol",
                ClientError::Io { .. } => "io",
            };
        }
    }
    "error"
}

/// A hint for a failure the user can fix in one step.
fn hint(err: &anyhow::Error) -> Option<&'static str> {
    let refused_session = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<ClientError>(),
            Some(ClientError::Status { op, code: Code::Unauthenticated, .. }) if *op != "Login"
        )
    });
    refused_session.then_some("the session may have been revoked; run cella login")
}

/// `error: …` text for a failed command, with a hint where one helps. Control
/// characters are escaped: the message may quote what a function or another user wrote.
pub(crate) fn error_text(err: &anyhow::Error) -> String {
    let mut text = format!("error: {}", escape_line(&format!("{err:#}")));
    if let Some(hint) = hint(err) {
        text.push_str("\nhint: ");
        text.push_str(hint);
    }
    text
}

/// The `--json` form of a failed command: one object, printed on stderr.
pub(crate) fn error_json(err: &anyhow::Error) -> serde_json::Value {
    let mut error = json!({
        "code": code_of(err),
        "message": format!("{err:#}"),
        "exit_code": exit_of(err) as u8,
    });
    if let Some(hint) = hint(err) {
        error["hint"] = json!(hint);
    }
    json!({ "error": error })
}

/// Reports a command line clap refused. `--help` and `--version` print as usual and exit
/// 0; any other error (a bare `cella task` too) exits [`Exit::Usage`], as one JSON object
/// when `json` is set.
pub(crate) fn usage_error(err: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        // Asked for: printed on stdout, exit 0.
        err.exit();
    }
    if json {
        let rendered = err.render().to_string();
        let message = rendered.trim().trim_start_matches("error: ");
        eprintln!(
            "{}",
            json!({ "error": {
                "code": "usage",
                "message": message,
                "exit_code": Exit::Usage as u8,
            }})
        );
        return Exit::Usage.into();
    }
    // The message with the usage line, on stderr (coloured only on a terminal); if stderr
    // is gone there is nowhere left to report to.
    let _ = err.print();
    Exit::Usage.into()
}
