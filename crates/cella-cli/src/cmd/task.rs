//! `cella task …`: create, assign, approve, invoke, watch and collect results.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cella_client::{Client, proto};
use cella_types::TaskStatus;
use serde_json::json;

use crate::cmd::Ctx;
use crate::cmd::file::{blocking, decrypt_output, download_to};
use crate::exit::{Exit, Failure};
use crate::output::{
    Report, TASK_HEADER, bytes_json, escape_line, format_ms, return_value_text, status_name, table,
    task_json, task_row, task_text, waiting_for, waiting_summary,
};
use crate::parse;
use crate::secrets::read_key_file;
use crate::session::now_ms;

/// `cella task` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TaskCmd {
    /// Create a task: a function, its arguments and the owners of each slot.
    Create {
        /// The function to run.
        #[arg(long, value_name = "ID", value_parser = parse::function_id)]
        function: String,
        /// An argument value.
        #[arg(long = "arg", value_name = "k=v", value_parser = parse::key_value)]
        args: Vec<(String, String)>,
        /// The owners of an input slot.
        #[arg(long = "input", value_name = "slot=user1,user2", value_parser = parse::slot_owners)]
        inputs: Vec<proto::SlotOwners>,
        /// The owners of an output slot.
        #[arg(long = "output", value_name = "slot=user", value_parser = parse::slot_owners)]
        outputs: Vec<proto::SlotOwners>,
    },
    /// Show a task you participate in.
    Get {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
    },
    /// List the tasks you participate in, oldest first, one line each after a header.
    List {
        /// Only tasks in this status (repeatable): created, data-assigned, approved,
        /// staged, running, finished, failed or canceled.
        #[arg(long = "status", value_name = "STATUS", value_parser = parse::task_status)]
        statuses: Vec<i32>,
        /// Only tasks of this function.
        #[arg(long, value_name = "FUNCTION_ID", value_parser = parse::function_id)]
        function: Option<String>,
        /// Only tasks you created.
        #[arg(long)]
        mine: bool,
        /// Show at most this many tasks (default: all, fetched page by page).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        /// Newest first.
        #[arg(long)]
        newest: bool,
    },
    /// Fill slots you own with files you own.
    Assign {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
        /// An input slot and its file.
        #[arg(long = "input", value_name = "slot=FILE_ID", value_parser = parse::slot_input_file)]
        inputs: Vec<proto::SlotFile>,
        /// An output slot and its file.
        #[arg(long = "output", value_name = "slot=FILE_ID", value_parser = parse::slot_output_file)]
        outputs: Vec<proto::SlotFile>,
    },
    /// Approve a task's digest. Without --digest, shows what is approved and approves
    /// the current digest, after asking on a terminal.
    Approve {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
        /// The task digest you checked (hex).
        #[arg(long, value_name = "HEX", value_parser = parse::digest_hex)]
        digest: Option<String>,
        /// Do not ask for confirmation on a terminal (it is never asked otherwise).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Queue an approved task (creator only).
    Invoke {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
    },
    /// Cancel a task that has not ended.
    Cancel {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
    },
    /// Print the task's state now and at every change until it ends, with what it waits
    /// for; exits 3 if it Failed, 4 if it was Canceled.
    Watch {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
    },
    /// Show a finished task's receipt; with --verify, check it offline: evidence →
    /// attested key → signed receipt → digests (LibOS tasks).
    #[command(group(clap::ArgGroup::new("appraisal").args(["policy", "node_policy"])))]
    Receipt {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
        /// Verify the receipt instead of printing it.
        #[arg(long)]
        verify: bool,
        /// Appraise the instance's evidence against this attestation policy (role
        /// "libos-instance": the node's instance policy, `cella node policy --instance`).
        #[arg(long, value_name = "FILE", requires = "verify")]
        policy: Option<PathBuf>,
        /// Appraise the instance's evidence against the instance policy the node
        /// publishes over the attested channel (GetPolicies; docs/api.md).
        #[arg(long, requires = "verify", conflicts_with = "policy")]
        node_policy: bool,
        /// Compare output digests with the files `task result` decrypted into D.
        #[arg(long, value_name = "D", requires = "verify")]
        out_dir: Option<PathBuf>,
        /// DCAP collateral JSON for appraising an SGX instance's quote (repeatable, one
        /// per platform FMSPC).
        #[arg(long, value_name = "FILE", requires = "appraisal")]
        collateral: Vec<PathBuf>,
    },
    /// Download and decrypt your outputs of a finished task, and show what the function
    /// returned and logged; exits 3 if the task Failed, 4 if it was Canceled.
    Result {
        /// The task's id.
        #[arg(value_name = "ID", value_parser = parse::task_id)]
        id: String,
        /// Directory for the decrypted outputs (created if missing).
        #[arg(long, value_name = "D")]
        out_dir: PathBuf,
        /// The key file of an output slot you own; one per slot.
        #[arg(long = "key-file", value_name = "slot=K", value_parser = parse::slot_path)]
        keys: Vec<(String, PathBuf)>,
        /// Replace files that already exist in the output directory.
        #[arg(long)]
        force: bool,
    },
}

/// Fails on a slot named twice.
fn unique_slots<'a>(what: &str, slots: impl Iterator<Item = &'a str>) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    for slot in slots {
        if !seen.insert(slot) {
            bail!("{what} slot {slot:?} is given twice");
        }
    }
    Ok(())
}

/// The arguments of `task create` as a map, refusing a name given twice.
pub(crate) fn argument_map(args: Vec<(String, String)>) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    for (k, v) in args {
        if map.insert(k.clone(), v).is_some() {
            bail!("argument {k:?} is given twice");
        }
    }
    Ok(map)
}

fn shown(t: &proto::TaskInfo, verb: &str) -> Report {
    Report::new(
        json!({ "task": task_json(t) }),
        format!("{verb}{}", task_text(t)),
    )
}

/// Runs a `cella task` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: TaskCmd) -> anyhow::Result<Report> {
    let (session, client) = ctx.client().await?;
    match cmd {
        TaskCmd::Create {
            function,
            args,
            inputs,
            outputs,
        } => {
            unique_slots("input", inputs.iter().map(|s| s.slot.as_str()))?;
            unique_slots("output", outputs.iter().map(|s| s.slot.as_str()))?;
            let t = client
                .create_task(&function, argument_map(args)?, inputs, outputs)
                .await?;
            Ok(shown(&t, "created "))
        }
        TaskCmd::Get { id } => Ok(shown(&client.get_task(&id).await?, "")),
        TaskCmd::List {
            statuses,
            function,
            mine,
            limit,
            newest,
        } => {
            let request = proto::ListTasksRequest {
                statuses,
                function_id: function.unwrap_or_default(),
                created_by_me: mine,
                newest_first: newest,
                page_size: limit.unwrap_or(0),
                page_token: String::new(),
            };
            let limit = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
            let tasks = client.list_tasks_matching(request, limit).await?;
            Ok(Report::new(
                json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>() }),
                table(TASK_HEADER, tasks.iter().map(task_row), "no tasks"),
            ))
        }
        TaskCmd::Assign {
            id,
            inputs,
            outputs,
        } => {
            if inputs.is_empty() && outputs.is_empty() {
                bail!("nothing to assign: give --input slot=FILE_ID or --output slot=FILE_ID");
            }
            unique_slots("input", inputs.iter().map(|s| s.slot.as_str()))?;
            unique_slots("output", outputs.iter().map(|s| s.slot.as_str()))?;
            let t = client.assign_data(&id, inputs, outputs).await?;
            Ok(shown(&t, "assigned "))
        }
        TaskCmd::Approve { id, digest, yes } => approve(&client, &id, digest, yes).await,
        TaskCmd::Invoke { id } => Ok(shown(&client.invoke_task(&id).await?, "invoked ")),
        TaskCmd::Cancel { id } => Ok(shown(&client.cancel_task(&id).await?, "canceled ")),
        TaskCmd::Watch { id } => watch(ctx, &client, &id).await,
        TaskCmd::Receipt {
            id,
            verify,
            policy,
            node_policy,
            out_dir,
            collateral,
        } => {
            let policy = match (policy, node_policy) {
                (Some(file), _) => crate::cmd::receipt::PolicySource::File(file),
                (None, true) => crate::cmd::receipt::PolicySource::Node,
                (None, false) => crate::cmd::receipt::PolicySource::None,
            };
            crate::cmd::receipt::receipt(&client, &id, verify, policy, out_dir, &collateral).await
        }
        TaskCmd::Result {
            id,
            out_dir,
            keys,
            force,
        } => result(&client, &session.user, &id, &out_dir, keys, force).await,
    }
}

/// `task approve`: with a digest, approves it; without, shows the task and approves
/// its current digest — after asking, when stdin and stderr are a terminal and `yes` is
/// not set (a script is never asked).
async fn approve(
    client: &Client,
    id: &str,
    digest: Option<String>,
    yes: bool,
) -> anyhow::Result<Report> {
    if let Some(digest) = digest {
        let t = client.approve_task(id, &digest).await?;
        return Ok(shown(&t, &format!("approved digest {digest} of ")));
    }
    let task = client.get_task(id).await?;
    if task.task_digest.is_empty() {
        bail!("{id} has no digest to approve yet");
    }
    // Approve only what this client can recompute from the fields it shows.
    let local = cella_client::compute_task_digest(&task).with_context(|| {
        format!("cannot check the digest of {id} locally; check it yourself and pass --digest")
    })?;
    if local != task.task_digest {
        bail!(
            "refusing to approve {id}: the node reports digest {} but the task it shows hashes to {local} (docs/formats/task-digest.md)",
            task.task_digest
        );
    }
    // The function's name is shown when the function is visible to this user.
    let function = client.get_function(&task.function_id, false).await.ok();
    let covers = approval_text(&task, function.as_ref());
    let asked = !yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if asked
        && !confirm(
            &covers,
            &mut std::io::stdin().lock(),
            &mut std::io::stderr(),
        )?
    {
        bail!("not approved: you declined at the prompt; nothing was sent");
    }
    let approved = client.approve_task(id, &task.task_digest).await?;
    let done = format!(
        "approved: {} of {} participants have approved this digest ({})",
        approved.approved_by.len(),
        approved.participants.len(),
        approved.approved_by.join(", ")
    );
    Ok(Report::new(
        json!({
            "approved_digest": task.task_digest,
            "verified_locally": true,
            "function": function.as_ref().map(crate::output::function_json),
            "task": task_json(&approved),
        }),
        // What it covers was shown before the question; otherwise it comes first here.
        if asked {
            done
        } else {
            format!("{covers}\n{done}")
        },
    ))
}

/// What an approval covers: the digest and every field it is computed over.
fn approval_text(task: &proto::TaskInfo, function: Option<&proto::FunctionInfo>) -> String {
    let mut text = format!(
        "approving {} at digest {} (recomputed locally: it matches)",
        task.task_id, task.task_digest
    );
    let name = function.and_then(|f| f.spec.as_ref()).map_or_else(
        || "(not visible to you)".to_owned(),
        |s| format!("{:?}", s.name),
    );
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "\n  function    {} {name} (owner {}), payload sha256 {}",
        task.function_id, task.function_owner, task.function_payload_digest
    );
    if task.function_reuse == "same-function" {
        text.push_str(
            "\n  reuse       same-function: instances serve several tasks of this function",
        );
    }
    for (k, v) in task.arguments.iter().collect::<BTreeMap<_, _>>() {
        let _ = write!(text, "\n  argument    {k}={v:?}");
    }
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let file = |s: &proto::TaskSlot| {
        if s.file_id.is_empty() {
            "(empty)".to_owned()
        } else {
            s.file_id.clone()
        }
    };
    for s in &task.inputs {
        let _ = write!(
            text,
            "\n  input       {:<16} {} sha256 {}",
            s.slot,
            file(s),
            or_dash(&s.ciphertext_digest)
        );
    }
    for s in &task.outputs {
        let _ = write!(
            text,
            "\n  output      {:<16} {} owners {}",
            s.slot,
            file(s),
            s.owners.join(",")
        );
    }
    text
}

/// Shows `covers` on `out` and asks whether to approve; `true` only for `y` or `yes`
/// (any case). End of input is a no.
fn confirm(covers: &str, input: &mut impl BufRead, out: &mut impl Write) -> anyhow::Result<bool> {
    write!(out, "{covers}\napprove this digest? [y/N] ")
        .and_then(|()| out.flush())
        .context("cannot ask for confirmation")?;
    let mut answer = String::new();
    input
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// One status line of `task watch`: the time of the last change, the status, and why it
/// ended or what it waits for.
fn watch_line(t: &proto::TaskInfo, waiting: Option<&str>) -> String {
    let at = t.history.last().map_or_else(now_ms, |h| h.at_ms);
    let mut line = format!(
        "{}  {}  {}",
        format_ms(at),
        t.task_id,
        status_name(t.status)
    );
    if !t.reason.is_empty() {
        let _ = write!(line, ": {}", escape_line(&t.reason));
    } else if let Some(waiting) = waiting {
        let _ = write!(line, ": {waiting}");
    }
    line
}

/// The exit code of a command that saw `t` end.
fn ended_exit(t: &proto::TaskInfo) -> Exit {
    match cella_client::task_status(t.status) {
        Some(TaskStatus::Finished) => Exit::Ok,
        Some(TaskStatus::Failed) => Exit::TaskFailed,
        Some(TaskStatus::Canceled) => Exit::TaskCanceled,
        _ => Exit::Error,
    }
}

/// `task watch`: prints the task's state at once (text mode), then a line whenever its
/// status or what it waits for changes, and ends with the task.
async fn watch(ctx: &Ctx, client: &Client, id: &str) -> anyhow::Result<Report> {
    let mut watch = client.watch_task(id).await?;
    let mut last_line = None;
    let mut seen = Vec::new();
    let mut last = None;
    while let Some(t) = watch.next_update().await? {
        let waiting = waiting_summary(&waiting_for(&t));
        let now = (t.status, waiting);
        if last_line.as_ref() != Some(&now) {
            if last_line.as_ref().map(|(s, _)| *s) != Some(t.status) {
                seen.push(status_name(t.status));
            }
            if !ctx.json {
                println!("{}", watch_line(&t, now.1.as_deref()));
            }
            last_line = Some(now);
        }
        let done = cella_client::is_terminal(&t);
        last = Some(t);
        if done {
            break;
        }
    }
    let task = match last {
        Some(t) if cella_client::is_terminal(&t) => t,
        _ => {
            let t = client.get_task(id).await?;
            if !cella_client::is_terminal(&t) {
                bail!(
                    "the watch of {id} ended while the task is {}; run cella task watch again",
                    status_name(t.status)
                );
            }
            if last_line.as_ref().map(|(s, _)| *s) != Some(t.status) {
                seen.push(status_name(t.status));
                if !ctx.json {
                    println!("{}", watch_line(&t, None));
                }
            }
            t
        }
    };
    Ok(Report {
        json: json!({ "task": task_json(&task), "statuses": seen }),
        human: String::new(),
        exit: ended_exit(&task),
    })
}

/// One output `task result` wrote.
struct Written {
    slot: String,
    file_id: String,
    ciphertext_digest: String,
    path: PathBuf,
    plaintext_len: u64,
}

/// `task result`: downloads each output slot the user owns, checks its digest against
/// the task's result, and decrypts it into `out_dir/<slot>` — never over an existing
/// file unless `force`, checked for every slot before anything is downloaded.
async fn result(
    client: &Client,
    me: &str,
    id: &str,
    out_dir: &Path,
    keys: Vec<(String, PathBuf)>,
    force: bool,
) -> anyhow::Result<Report> {
    let task = client.get_task(id).await?;
    let reason = || task.reason.clone();
    match cella_client::task_status(task.status) {
        Some(TaskStatus::Finished) => {}
        Some(TaskStatus::Failed) => Err(Failure::TaskFailed {
            task_id: id.to_owned(),
            reason: reason(),
        })?,
        Some(TaskStatus::Canceled) => Err(Failure::TaskCanceled {
            task_id: id.to_owned(),
            reason: reason(),
        })?,
        _ => bail!(
            "{id} is {}: results exist only once it is Finished",
            status_name(task.status)
        ),
    }
    let mine: Vec<&proto::TaskSlot> = task
        .outputs
        .iter()
        .filter(|s| s.owners.iter().any(|o| o == me))
        .collect();
    let mut key_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (slot, path) in keys {
        if !mine.iter().any(|s| s.slot == slot) {
            bail!("--key-file {slot}=…: {slot:?} is not an output slot of {id} that {me} owns");
        }
        if key_files.insert(slot.clone(), path).is_some() {
            bail!("--key-file for slot {slot:?} is given twice");
        }
    }
    let digests: BTreeMap<&str, &str> = task
        .result
        .iter()
        .flat_map(|r| &r.outputs)
        .map(|o| (o.slot.as_str(), o.ciphertext_digest.as_str()))
        .collect();
    for slot in &mine {
        if !key_files.contains_key(&slot.slot) {
            bail!(
                "no key file for output slot {:?}: add --key-file {}=KEY_FILE",
                slot.slot,
                slot.slot
            );
        }
        // The slot name becomes a file name: refuse anything but a plain name.
        cella_types::function::check_name("output slot", &slot.slot)?;
        let out = out_dir.join(&slot.slot);
        if !force && out.symlink_metadata().is_ok() {
            bail!(
                "{} already exists: refusing to overwrite it (give --force to replace it)",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;

    let mut written = Vec::new();
    for slot in mine {
        let key_path = key_files.get(&slot.slot).cloned().unwrap_or_default();
        let key = read_key_file(&key_path)?;
        let expected = digests
            .get(slot.slot.as_str())
            .copied()
            .unwrap_or(slot.ciphertext_digest.as_str());
        let sealed = out_dir.join(format!(".{}.sealed", slot.slot));
        let out = out_dir.join(&slot.slot);
        let summary = download_to(client, &slot.file_id, &sealed, Some(expected), 0).await?;
        let (s, o, k) = (sealed.clone(), out.clone(), key_path.clone());
        let decrypted = blocking(move || decrypt_output(&s, &o, &key, &k, force)).await;
        std::fs::remove_file(&sealed).ok();
        written.push(Written {
            slot: slot.slot.clone(),
            file_id: slot.file_id.clone(),
            ciphertext_digest: summary.ciphertext_digest,
            path: out,
            plaintext_len: decrypted?.plaintext_len,
        });
    }

    let result = task.result.clone().unwrap_or_default();
    Ok(Report::new(
        json!({
            "task_id": id,
            "return_value": bytes_json(&result.return_value),
            "log": result.log,
            "outputs": written.iter().map(|w| json!({
                "slot": w.slot,
                "file_id": w.file_id,
                "ciphertext_digest": w.ciphertext_digest,
                "path": w.path,
                "plaintext_len": w.plaintext_len,
            })).collect::<Vec<_>>(),
        }),
        result_text(id, &result, &written),
    ))
}

/// The text form of `task result`: each line labelled, the function's return value and
/// log escaped (they are the function's, untrusted).
fn result_text(id: &str, result: &proto::TaskResult, written: &[Written]) -> String {
    let mut text = format!(
        "{id} finished\nthe function returned: {}",
        return_value_text(&result.return_value)
    );
    for w in written {
        let _ = write!(
            text,
            "\noutput {} ({}, sha256 {}) decrypted to {} ({} bytes)",
            w.slot,
            w.file_id,
            w.ciphertext_digest,
            w.path.display(),
            w.plaintext_len
        );
    }
    if result.log.is_empty() {
        text.push_str("\nthe function's log: (empty)");
    } else {
        text.push_str("\nthe function's log:");
        for line in &result.log {
            let _ = write!(text, "\n  log | {}", escape_line(line));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_asks_after_showing_what_it_covers() {
        for (answer, yes) in [
            ("y\n", true),
            ("YES\n", true),
            ("n\n", false),
            ("\n", false),
            ("", false),
        ] {
            let mut shown = Vec::new();
            let ok = confirm(
                "approving task-1 at digest ab",
                &mut answer.as_bytes(),
                &mut shown,
            )
            .unwrap();
            assert_eq!(ok, yes, "{answer:?}");
            assert_eq!(
                String::from_utf8(shown).unwrap(),
                "approving task-1 at digest ab\napprove this digest? [y/N] "
            );
        }
    }

    #[test]
    fn result_text_labels_the_return_value_and_shows_the_log() {
        let result = proto::TaskResult {
            return_value: b"2".to_vec(),
            log: vec!["read 3 lines".into(), "\x1b[31mred".into()],
            ..Default::default()
        };
        let written = [Written {
            slot: "a_out".into(),
            file_id: "output-1".into(),
            ciphertext_digest: "cd".into(),
            path: "result/a_out".into(),
            plaintext_len: 12,
        }];
        assert_eq!(
            result_text("task-1", &result, &written),
            "task-1 finished\nthe function returned: 2\n\
             output a_out (output-1, sha256 cd) decrypted to result/a_out (12 bytes)\n\
             the function's log:\n  log | read 3 lines\n  log | \\u{1b}[31mred"
        );
        let empty = result_text("task-1", &proto::TaskResult::default(), &[]);
        assert_eq!(
            empty,
            "task-1 finished\nthe function returned: (nothing)\nthe function's log: (empty)"
        );
    }
}
