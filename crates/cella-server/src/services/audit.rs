//! `cella.v1.AuditService`: reading the audit trail and exporting it for offline
//! verification, each entry as the policy lets the caller see it.

use cella_platform::audit::{AuditCheckpoint, AuditEntry, AuditFilter, ExportItem, ExportedEntry};
use cella_proto::v1 as pb;
use cella_proto::v1::audit_service_server::AuditService;
use tonic::{Request, Response, Status};

use super::{Api, page_reply, page_request};
use crate::convert::parse_opt;

/// The audit service.
#[derive(Debug, Clone)]
pub(crate) struct AuditApi(pub(crate) Api);

/// The filter of a ListAuditEntries request, its task id parsed.
fn audit_filter(r: &pb::ListAuditEntriesRequest) -> Result<AuditFilter, Status> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(AuditFilter {
        object: nonempty(&r.object_id),
        task: parse_opt("task_id", &r.task_id)?,
        actor: nonempty(&r.actor),
        since_ms: r.since_ms,
        until_ms: r.until_ms,
    })
}

fn entry(e: &AuditEntry) -> pb::AuditEntry {
    pb::AuditEntry {
        seq: e.seq,
        at_ms: e.at_ms,
        actor: e.actor.clone(),
        action: e.action.name().to_owned(),
        objects: e.objects.clone(),
        parties: e.parties.clone(),
        task_digest: e.task_digest.map(|d| d.to_hex()).unwrap_or_default(),
        outcome: e.outcome.name().to_owned(),
        salt: e.salt.to_hex(),
        prev_hash: e.prev_hash.to_hex(),
        hash: e.hash.to_hex(),
    }
}

fn checkpoint(c: &AuditCheckpoint) -> Result<pb::AuditCheckpoint, Status> {
    let signed = c
        .signature()
        .map_err(|e| Status::internal(format!("stored audit checkpoint {}: {e}", c.number)))?;
    Ok(pb::AuditCheckpoint {
        number: c.number,
        entry_seq: c.entry_seq,
        head_hash: c.head_hash.to_hex(),
        at_ms: c.at_ms,
        cert: signed.cert_der,
        scheme: u32::from(signed.scheme),
        signature: signed.signature,
    })
}

fn export_item(item: &ExportItem) -> Result<pb::ExportedAuditEntry, Status> {
    let entry = match &item.entry {
        ExportedEntry::Full(e) => pb::exported_audit_entry::Entry::Full(entry(e)),
        ExportedEntry::Redacted(r) => {
            pb::exported_audit_entry::Entry::Redacted(pb::RedactedAuditEntry {
                seq: r.seq,
                body_hash: r.body_hash.to_hex(),
                prev_hash: r.prev_hash.to_hex(),
                hash: r.hash.to_hex(),
            })
        }
    };
    Ok(pb::ExportedAuditEntry {
        entry: Some(entry),
        checkpoints: item
            .checkpoints
            .iter()
            .map(checkpoint)
            .collect::<Result<_, _>>()?,
    })
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_entries(
        &self,
        req: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        let r = req.get_ref();
        let page = page_request(r.page_size, &r.page_token, r.newest_first)?;
        let filter = audit_filter(r)?;
        let found = self
            .0
            .as_caller(&req, move |p, c| p.list_audit_entries(c, &filter, &page))
            .await?;
        let (entries, next_page_token) = page_reply(&found, entry);
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries,
            next_page_token,
        }))
    }

    async fn export_audit_trail(
        &self,
        req: Request<pb::ExportAuditTrailRequest>,
    ) -> Result<Response<pb::ExportAuditTrailResponse>, Status> {
        let r = req.get_ref();
        let page = page_request(r.page_size, &r.page_token, false)?;
        let found = self
            .0
            .as_caller(&req, move |p, c| p.export_audit_trail(c, &page))
            .await?;
        // A stored checkpoint that does not decode is the node's fault, reported as
        // such rather than skipped.
        let mut failed = None;
        let (entries, next_page_token) = page_reply(&found, |item| {
            export_item(item).unwrap_or_else(|e| {
                failed.get_or_insert(e);
                pb::ExportedAuditEntry::default()
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Response::new(pb::ExportAuditTrailResponse {
            entries,
            next_page_token,
        }))
    }
}
