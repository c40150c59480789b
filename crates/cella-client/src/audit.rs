//! The audit calls: one page of entries, every page, and the whole trail for export.

use crate::error::{ClientError, Result};
use crate::pages::collect;
use crate::{Client, proto};

impl Client {
    /// One page of the audit entries the caller may read that `request` selects.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`] (INVALID_ARGUMENT for a
    /// malformed task id or a page token the node did not make).
    pub async fn list_audit_entries_page(
        &self,
        request: proto::ListAuditEntriesRequest,
    ) -> Result<proto::ListAuditEntriesResponse> {
        let request = self.authed(request)?;
        Ok(self
            .audit_service()
            .list_audit_entries(request)
            .await
            .map_err(|s| ClientError::status("ListAuditEntries", s))?
            .into_inner())
    }

    /// Up to `limit` audit entries that `request` selects, over as many pages as that
    /// takes (`request.page_token` is ignored: the list starts at its beginning).
    ///
    /// # Errors
    ///
    /// As for [`Client::list_audit_entries_page`].
    pub async fn list_audit_entries(
        &self,
        request: proto::ListAuditEntriesRequest,
        limit: usize,
    ) -> Result<Vec<proto::AuditEntry>> {
        collect("ListAuditEntries", limit, |page_token| {
            let request = proto::ListAuditEntriesRequest {
                page_token,
                ..request.clone()
            };
            async move {
                let page = self.list_audit_entries_page(request).await?;
                Ok((page.entries, page.next_page_token))
            }
        })
        .await
    }

    /// The whole audit trail in chain order, as the caller may export it (entries it may
    /// not read as their links), each entry with the checkpoints over it.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`], and
    /// [`ClientError::Protocol`] when the node repeats a page token.
    pub async fn export_audit_trail(&self) -> Result<Vec<proto::ExportedAuditEntry>> {
        collect("ExportAuditTrail", usize::MAX, |page_token| async move {
            let request = self.authed(proto::ExportAuditTrailRequest {
                page_size: 0,
                page_token,
            })?;
            let page = self
                .audit_service()
                .export_audit_trail(request)
                .await
                .map_err(|s| ClientError::status("ExportAuditTrail", s))?
                .into_inner();
            Ok((page.entries, page.next_page_token))
        })
        .await
    }
}
