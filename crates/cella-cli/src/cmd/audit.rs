//! `cella audit list|export|verify`: the node's hash-chained audit trail
//! (`docs/formats/audit.md`). `list` reads the entries the caller may see; `export`
//! writes the whole chain as the caller may see it (entries it may not read as their
//! links) with every checkpoint; `verify` checks such a file offline against the
//! attestation policy and names the first entry where it breaks.

use std::path::PathBuf;

use anyhow::Context as _;
use cella_attest::Policy;
use cella_client::proto;
use cella_platform::audit::{
    AuditAction, AuditCheckpoint, AuditEntry, AuditExport, ChainError, EXPORT_FORMAT,
    ExportedEntry, Outcome, RedactedEntry, verify_chain,
};
use cella_types::Digest;
use serde_json::json;

use crate::cmd::Ctx;
use crate::exit::Exit;
use crate::output::{Report, escape_line, format_ms, table};
use crate::parse;

/// Largest export file `verify` reads: a chain of millions of entries.
const MAX_EXPORT_BYTES: u64 = 1 << 30;

/// `cella audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCmd {
    /// The audit entries you may read (the admin: all), in chain order.
    List {
        /// Only entries about this task.
        #[arg(long, value_name = "TASK_ID", value_parser = parse::task_id)]
        task: Option<String>,
        /// Only entries about this object (a file, function or task id, a user name).
        #[arg(long, value_name = "ID")]
        object: Option<String>,
        /// Only entries by this actor (a user name, or `node`).
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
        /// Only entries at or after this time: `YYYY-MM-DDTHH:MM:SSZ` or ms since the epoch.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<u64>,
        /// Only entries before this time: `YYYY-MM-DDTHH:MM:SSZ` or ms since the epoch.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<u64>,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Print the whole chain as you may see it, with every checkpoint, as JSON for
    /// `cella audit verify` (`cella audit export > trail.json`).
    Export,
    /// Check an exported trail offline: every link of the chain and every checkpoint's
    /// signature under the attestation policy. Exits 6 at the first break.
    Verify {
        /// The file `cella audit export` wrote.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Attestation policy the checkpoints' signing key must satisfy as role `node`
        /// (default: the saved session's policy).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

/// Runs a `cella audit` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: AuditCmd) -> anyhow::Result<Report> {
    match cmd {
        AuditCmd::List {
            task,
            object,
            actor,
            since,
            until,
            limit,
        } => {
            let (_, client) = ctx.client().await?;
            let request = proto::ListAuditEntriesRequest {
                task_id: task.unwrap_or_default(),
                object_id: object.unwrap_or_default(),
                actor: actor.unwrap_or_default(),
                since_ms: since,
                until_ms: until,
                ..Default::default()
            };
            let entries = client.list_audit_entries(request, limit).await?;
            let parsed = entries
                .into_iter()
                .map(entry_from)
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Report::new(
                json!({ "entries": parsed }),
                table(
                    ENTRY_HEADER,
                    parsed.iter().map(entry_row),
                    "no audit entries",
                ),
            ))
        }
        AuditCmd::Export => {
            let (_, client) = ctx.client().await?;
            let export = export_from(client.export_audit_trail().await?)?;
            let value = serde_json::to_value(&export)?;
            let text = serde_json::to_string_pretty(&export)?;
            Ok(Report::new(value, text))
        }
        AuditCmd::Verify { file, policy } => {
            let policy = match policy {
                Some(path) => Policy::load(&path)
                    .with_context(|| format!("attestation policy {}", path.display()))?,
                None => session_policy(ctx)?,
            };
            let export = read_export(&file)?;
            Ok(verify_report(&export, &policy))
        }
    }
}

/// The saved session's attestation policy, for `verify` without `--policy`.
fn session_policy(ctx: &Ctx) -> anyhow::Result<Policy> {
    let session = ctx.session().context("no --policy given")?;
    let toml = session.policy_toml.ok_or_else(|| {
        anyhow::anyhow!(
            "no --policy given and the saved session pins a certificate instead of an \
             attestation policy: pass --policy FILE"
        )
    })?;
    Policy::from_toml_str(&toml).context("the saved session's attestation policy")
}

fn read_export(file: &std::path::Path) -> anyhow::Result<AuditExport> {
    let context = || format!("audit export {}", file.display());
    let len = std::fs::metadata(file).with_context(context)?.len();
    if len > MAX_EXPORT_BYTES {
        anyhow::bail!(
            "audit export {} is {len} bytes, over the {MAX_EXPORT_BYTES} this command reads",
            file.display()
        );
    }
    let text = std::fs::read(file).with_context(context)?;
    let export: AuditExport = serde_json::from_slice(&text).with_context(context)?;
    if export.format != EXPORT_FORMAT {
        anyhow::bail!(
            "audit export {}: format {:?}, expected {EXPORT_FORMAT:?}",
            file.display(),
            escape_line(&export.format)
        );
    }
    Ok(export)
}

/// The verdict on `export`: success, or the first break with exit code 6.
fn verify_report(export: &AuditExport, policy: &Policy) -> Report {
    match verify_chain(&export.entries, &export.checkpoints, policy) {
        Ok(v) if v.sealed_through == 0 => broken(
            json!({ "verified": false, "entries": v.entries, "reason": "no_checkpoint" }),
            "the audit trail is linked but carries no signed checkpoint: nothing vouches \
             for it"
                .to_owned(),
        ),
        Ok(v) => {
            let unsigned = v.entries.saturating_sub(v.sealed_through);
            let mut human = format!(
                "audit trail verified: {} entries, {} checkpoints, signed through entry {}",
                v.entries, v.checkpoints, v.sealed_through
            );
            if unsigned > 0 {
                human.push_str(&format!(
                    "\n{unsigned} entries after it are linked but not yet signed by a checkpoint"
                ));
            }
            Report::new(
                json!({
                    "verified": true,
                    "entries": v.entries,
                    "checkpoints": v.checkpoints,
                    "sealed_through": v.sealed_through,
                }),
                human,
            )
        }
        Err(e) => {
            let mut value = json!({ "verified": false, "reason": escape_line(&e.to_string()) });
            if let Some(seq) = first_broken_entry(&e) {
                value["entry"] = json!(seq);
            }
            if let ChainError::CheckpointSignature { number, .. }
            | ChainError::CheckpointMismatch { number, .. }
            | ChainError::CheckpointMalformed { number, .. } = &e
            {
                value["checkpoint"] = json!(number);
            }
            let mut human = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                human.push_str(&format!(": {s}"));
                source = s.source();
            }
            broken(value, escape_line(&human).into_owned())
        }
    }
}

/// The entry a chain error points at, when it points at one.
fn first_broken_entry(e: &ChainError) -> Option<u64> {
    match e {
        ChainError::Entry { seq, .. } => Some(*seq),
        ChainError::CheckpointMismatch { entry_seq, .. }
        | ChainError::CheckpointSignature { entry_seq, .. } => Some(*entry_seq),
        ChainError::Empty | ChainError::CheckpointMalformed { .. } => None,
    }
}

fn broken(json: serde_json::Value, human: String) -> Report {
    Report {
        json,
        human,
        exit: Exit::AuditBroken,
    }
}

const ENTRY_HEADER: &str =
    "SEQ     TIME                  ACTOR            ACTION             OUTCOME    OBJECTS";

fn entry_row(e: &AuditEntry) -> String {
    let row = format!(
        "{:<7} {:<21} {:<16} {:<18} {:<10} {}",
        e.seq,
        format_ms(i64::try_from(e.at_ms).unwrap_or(i64::MAX)),
        e.actor,
        e.action.name(),
        e.outcome.name(),
        e.objects.join(" ")
    );
    escape_line(&row).into_owned()
}

fn digest(field: &str, hex: &str) -> anyhow::Result<Digest> {
    hex.parse()
        .with_context(|| format!("the node sent a malformed {field}"))
}

/// An entry as the node sent it, parsed back into the form its hash is computed over.
fn entry_from(e: proto::AuditEntry) -> anyhow::Result<AuditEntry> {
    let action: AuditAction = e.action.parse().context("the node sent an audit entry")?;
    let outcome = Outcome::from_name(&e.outcome).ok_or_else(|| {
        anyhow::anyhow!(
            "the node sent an audit entry with outcome {:?}",
            escape_line(&e.outcome)
        )
    })?;
    Ok(AuditEntry {
        seq: e.seq,
        at_ms: e.at_ms,
        actor: e.actor,
        action,
        objects: e.objects,
        parties: e.parties,
        task_digest: if e.task_digest.is_empty() {
            None
        } else {
            Some(digest("task_digest", &e.task_digest)?)
        },
        outcome,
        salt: digest("salt", &e.salt)?,
        prev_hash: digest("prev_hash", &e.prev_hash)?,
        hash: digest("hash", &e.hash)?,
    })
}

/// The pages of an export as the file `verify` reads.
fn export_from(items: Vec<proto::ExportedAuditEntry>) -> anyhow::Result<AuditExport> {
    let mut entries = Vec::with_capacity(items.len());
    let mut checkpoints = Vec::new();
    for item in items {
        entries.push(match item.entry {
            Some(proto::exported_audit_entry::Entry::Full(e)) => {
                ExportedEntry::Full(entry_from(e)?)
            }
            Some(proto::exported_audit_entry::Entry::Redacted(r)) => {
                ExportedEntry::Redacted(RedactedEntry {
                    seq: r.seq,
                    body_hash: digest("body_hash", &r.body_hash)?,
                    prev_hash: digest("prev_hash", &r.prev_hash)?,
                    hash: digest("hash", &r.hash)?,
                })
            }
            None => anyhow::bail!("the node sent an exported audit entry without an entry"),
        });
        for c in item.checkpoints {
            checkpoints.push(AuditCheckpoint {
                number: c.number,
                entry_seq: c.entry_seq,
                head_hash: digest("head_hash", &c.head_hash)?,
                at_ms: c.at_ms,
                cert: hex::encode(&c.cert),
                scheme: u16::try_from(c.scheme).with_context(|| {
                    format!(
                        "the node sent checkpoint {} with scheme {}",
                        c.number, c.scheme
                    )
                })?,
                signature: hex::encode(&c.signature),
            });
        }
    }
    Ok(AuditExport {
        format: EXPORT_FORMAT.to_owned(),
        entries,
        checkpoints,
    })
}

/// A time for `--since`/`--until`: ms since the epoch, or `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || format!("{s:?} is neither ms since the epoch nor YYYY-MM-DDTHH:MM:SSZ");
    let (date, time) = s
        .strip_suffix('Z')
        .and_then(|t| t.split_once('T'))
        .ok_or_else(bad)?;
    let num = |p: Option<&str>, range: std::ops::RangeInclusive<i64>| {
        p.and_then(|v| v.parse::<i64>().ok())
            .filter(|v| range.contains(v))
            .ok_or_else(bad)
    };
    let mut d = date.split('-');
    let (year, month, day) = (
        num(d.next(), 1970..=9999)?,
        num(d.next(), 1..=12)?,
        num(d.next(), 1..=31)?,
    );
    let mut t = time.split(':');
    let (h, m, sec) = (
        num(t.next(), 0..=23)?,
        num(t.next(), 0..=59)?,
        num(t.next(), 0..=60)?,
    );
    if d.next().is_some() || t.next().is_some() {
        return Err(bad());
    }
    // Howard Hinnant's days_from_civil, the inverse of output::format_ms.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    u64::try_from(secs * 1000).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_the_list_prints_them() {
        for ms in [0i64, 1_700_000_000_000, 951_782_400_000, 4_102_444_799_000] {
            let text = format_ms(ms.max(1000));
            assert_eq!(
                parse_time(&text).unwrap(),
                u64::try_from(ms.max(1000) / 1000 * 1000).unwrap()
            );
        }
        assert_eq!(parse_time("1234").unwrap(), 1234);
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-01-01 00:00:00",
            "yesterday",
            "2026-01-01T00:00Z",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
