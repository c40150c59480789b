//! The list calls, one page at a time or every page: each list RPC answers a page
//! (`page_size`, `page_token`) and a `next_page_token` that is empty on the last page.

use std::future::Future;

use crate::error::{ClientError, Result};
use crate::{Client, proto};

/// Follows `next_page_token` from the first page to the last, or until `limit` items.
/// `fetch` gets the token of the page to fetch and returns its items and the next token.
///
/// # Errors
///
/// Whatever `fetch` returns, and [`ClientError::Protocol`] when the node returns the
/// token it was given (a list that would never end).
pub(crate) async fn collect<T, F, Fut>(
    op: &'static str,
    limit: usize,
    mut fetch: F,
) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String)>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token.clone()).await?;
        out.extend(items);
        if next.is_empty() || out.len() >= limit {
            out.truncate(limit);
            return Ok(out);
        }
        if next == token {
            return Err(ClientError::Protocol {
                op,
                message: "the node returned the same page token again".into(),
            });
        }
        token = next;
    }
}

impl Client {
    /// One page of the tasks the caller participates in, as `request` selects (filters,
    /// order, `page_size`, `page_token`).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`] (INVALID_ARGUMENT for a
    /// page token the node did not make).
    pub async fn list_tasks_page(
        &self,
        request: proto::ListTasksRequest,
    ) -> Result<proto::ListTasksResponse> {
        let request = self.authed(request)?;
        Ok(self
            .task_service()
            .list_tasks(request)
            .await
            .map_err(|s| ClientError::status("ListTasks", s))?
            .into_inner())
    }

    /// Up to `limit` tasks that `request` selects, over as many pages as that takes
    /// (`request.page_token` is ignored: the list starts at its beginning).
    ///
    /// # Errors
    ///
    /// As for [`Client::list_tasks_page`].
    pub async fn list_tasks_matching(
        &self,
        request: proto::ListTasksRequest,
        limit: usize,
    ) -> Result<Vec<proto::TaskInfo>> {
        collect("ListTasks", limit, |page_token| {
            let request = proto::ListTasksRequest {
                page_token,
                ..request.clone()
            };
            async move {
                let page = self.list_tasks_page(request).await?;
                Ok((page.tasks, page.next_page_token))
            }
        })
        .await
    }

    /// Every task the caller participates in, oldest first (all pages).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn list_tasks(&self) -> Result<Vec<proto::TaskInfo>> {
        self.list_tasks_matching(proto::ListTasksRequest::default(), usize::MAX)
            .await
    }

    /// One page of the caller's files.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn list_files_page(
        &self,
        request: proto::ListFilesRequest,
    ) -> Result<proto::ListFilesResponse> {
        let request = self.authed(request)?;
        Ok(self
            .file_service()
            .list_files(request)
            .await
            .map_err(|s| ClientError::status("ListFiles", s))?
            .into_inner())
    }

    /// Every file of the caller, oldest first (all pages).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn list_files(&self) -> Result<Vec<proto::FileInfo>> {
        collect("ListFiles", usize::MAX, |page_token| async move {
            let page = self
                .list_files_page(proto::ListFilesRequest {
                    page_token,
                    ..Default::default()
                })
                .await?;
            Ok((page.files, page.next_page_token))
        })
        .await
    }

    /// One page of the functions the caller may use (or, with `mine_only`, owns).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn list_functions_page(
        &self,
        request: proto::ListFunctionsRequest,
    ) -> Result<proto::ListFunctionsResponse> {
        let request = self.authed(request)?;
        Ok(self
            .function_service()
            .list_functions(request)
            .await
            .map_err(|s| ClientError::status("ListFunctions", s))?
            .into_inner())
    }

    /// Every function the caller may use, or only the caller's own, oldest first (all
    /// pages).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn list_functions(&self, mine_only: bool) -> Result<Vec<proto::FunctionInfo>> {
        collect("ListFunctions", usize::MAX, |page_token| async move {
            let page = self
                .list_functions_page(proto::ListFunctionsRequest {
                    mine_only,
                    page_token,
                    ..Default::default()
                })
                .await?;
            Ok((page.functions, page.next_page_token))
        })
        .await
    }

    /// One page of the users (admin only).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn list_users_page(
        &self,
        request: proto::ListUsersRequest,
    ) -> Result<proto::ListUsersResponse> {
        let request = self.authed(request)?;
        Ok(self
            .auth_service()
            .list_users(request)
            .await
            .map_err(|s| ClientError::status("ListUsers", s))?
            .into_inner())
    }

    /// Every user, oldest first (all pages; admin only).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn list_users(&self) -> Result<Vec<proto::UserInfo>> {
        collect("ListUsers", usize::MAX, |page_token| async move {
            let page = self
                .list_users_page(proto::ListUsersRequest {
                    page_token,
                    ..Default::default()
                })
                .await?;
            Ok((page.users, page.next_page_token))
        })
        .await
    }
}
