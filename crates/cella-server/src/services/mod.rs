//! The gRPC services of `cella.v1`, one module each. Every call is authenticated here
//! (except Login, Health and Version), then handed to the platform on a blocking thread,
//! since the platform's store commits and password hashing block.

mod audit;
mod auth;
mod file;
mod function;
mod node;
mod task;

use std::sync::Arc;

use cella_platform::page::{Listed, Page, PageRequest};
use cella_platform::{Caller, Platform};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use crate::status::to_status;

pub(crate) use self::audit::AuditApi;
pub(crate) use self::auth::AuthApi;
pub(crate) use self::file::FileApi;
pub(crate) use self::function::FunctionApi;
pub(crate) use self::node::NodeApi;
pub(crate) use self::task::TaskApi;

/// Largest encoded list of a list call's reply: well under the 4 MiB that gRPC clients
/// accept by default, whatever the page size asked for (one task can carry a 64 KiB log
/// and up to 64 arguments of 64 KiB each).
const LIST_REPLY_BUDGET: usize = 3 << 20;

/// The request's page, or INVALID_ARGUMENT for a token this node did not make.
fn page_request(
    page_size: u32,
    page_token: &str,
    newest_first: bool,
) -> Result<PageRequest, Status> {
    PageRequest::new(page_size, page_token, newest_first).map_err(to_status)
}

/// A page's items as messages, and the next page token (empty on the last page). The
/// page is cut short, with a token after its last item, where the messages would pass
/// [`LIST_REPLY_BUDGET`]; it always holds at least one item, so a list always advances.
fn page_reply<T: Listed, M: prost::Message>(
    page: &Page<T>,
    mut message: impl FnMut(&T) -> M,
) -> (Vec<M>, String) {
    let mut out = Vec::with_capacity(page.items.len());
    let mut bytes = 0usize;
    for (i, item) in page.items.iter().enumerate() {
        let m = message(item);
        // The field's tag and length prefix: at most 1 + 10 bytes.
        bytes = bytes.saturating_add(m.encoded_len() + 11);
        if bytes > LIST_REPLY_BUDGET && i > 0 {
            return (out, page.items[i - 1].position().token());
        }
        out.push(m);
    }
    (out, page.next_token().unwrap_or_default())
}

/// What every service holds: the platform.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    platform: Arc<Platform>,
    /// Cancelled when the node shuts down: long-lived streams end.
    closing: CancellationToken,
}

impl Api {
    pub(crate) fn new(platform: Arc<Platform>, closing: CancellationToken) -> Self {
        Self { platform, closing }
    }

    /// The caller behind the request's `authorization: Bearer <token>` metadata.
    fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let header = req.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing authorization metadata: log in first")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("authorization metadata is not \"Bearer <token>\"")
            })?;
        self.platform.authenticate(token).map_err(to_status)
    }

    /// Runs a platform operation on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Platform) -> cella_platform::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let platform = Arc::clone(&self.platform);
        tokio::task::spawn_blocking(move || op(&platform))
            .await
            .map_err(|e| Status::internal(format!("request worker failed: {e}")))?
            .map_err(to_status)
    }

    /// Authenticates, then runs `op` as that caller on a blocking thread.
    async fn as_caller<R, T: Send + 'static>(
        &self,
        req: &Request<R>,
        op: impl FnOnce(&Platform, &Caller) -> cella_platform::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let caller = self.caller(req)?;
        self.run(move |p| op(p, &caller)).await
    }
}
