//! `cella.v1.TaskService`, with WatchTask streaming every status change.

use std::collections::BTreeMap;
use std::pin::Pin;

use cella_platform::tasks::TaskFilter;
use cella_proto::v1 as pb;
use cella_proto::v1::task_service_server::TaskService;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{Api, page_reply, page_request};
use crate::convert::{task_info, task_status};
use crate::status::invalid;

/// Watch updates buffered ahead of a slow client.
const WATCH_QUEUE: usize = 16;

/// The task service.
#[derive(Debug, Clone)]
pub(crate) struct TaskApi(pub(crate) Api);

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::TaskInfo, Status>> + Send>>;

fn slots(v: &[pb::SlotOwners]) -> Vec<(String, Vec<String>)> {
    v.iter()
        .map(|s| (s.slot.clone(), s.owners.clone()))
        .collect()
}

fn files(v: &[pb::SlotFile]) -> Vec<(String, String)> {
    v.iter()
        .map(|s| (s.slot.clone(), s.file_id.clone()))
        .collect()
}

/// The filter of a ListTasks request, its ids and statuses parsed.
fn task_filter(r: &pb::ListTasksRequest) -> Result<TaskFilter, Status> {
    let statuses = r
        .statuses
        .iter()
        .map(|&s| task_status(s))
        .collect::<Result<_, _>>()?;
    let function_id = if r.function_id.is_empty() {
        None
    } else {
        Some(
            r.function_id
                .parse()
                .map_err(|e| invalid(format!("function_id: {e}")))?,
        )
    };
    Ok(TaskFilter {
        statuses,
        function_id,
        created_by_me: r.created_by_me,
    })
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn create_task(
        &self,
        req: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let r = req.get_ref().clone();
        let v = self
            .0
            .as_caller(&req, move |p, c| {
                let args: BTreeMap<String, String> = r.arguments.into_iter().collect();
                p.create_task(
                    c,
                    &r.function_id,
                    &args,
                    &slots(&r.inputs),
                    &slots(&r.outputs),
                )
            })
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn get_task(
        &self,
        req: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let id = req.get_ref().task_id.clone();
        let v = self
            .0
            .as_caller(&req, move |p, c| p.get_task(c, &id))
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn list_tasks(
        &self,
        req: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let r = req.get_ref();
        let page = page_request(r.page_size, &r.page_token, r.newest_first)?;
        let filter = task_filter(r)?;
        let vs = self
            .0
            .as_caller(&req, move |p, c| p.list_tasks(c, &filter, &page))
            .await?;
        let (tasks, next_page_token) = page_reply(&vs, task_info);
        Ok(Response::new(pb::ListTasksResponse {
            tasks,
            next_page_token,
        }))
    }

    async fn assign_data(
        &self,
        req: Request<pb::AssignDataRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let r = req.get_ref().clone();
        let v = self
            .0
            .as_caller(&req, move |p, c| {
                p.assign_data(c, &r.task_id, &files(&r.inputs), &files(&r.outputs))
            })
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn approve_task(
        &self,
        req: Request<pb::ApproveTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let r = req.get_ref().clone();
        let v = self
            .0
            .as_caller(&req, move |p, c| {
                p.approve_task(c, &r.task_id, &r.task_digest)
            })
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn invoke_task(
        &self,
        req: Request<pb::InvokeTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let id = req.get_ref().task_id.clone();
        let v = self
            .0
            .as_caller(&req, move |p, c| p.invoke_task(c, &id))
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn cancel_task(
        &self,
        req: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let id = req.get_ref().task_id.clone();
        let v = self
            .0
            .as_caller(&req, move |p, c| p.cancel_task(c, &id))
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    type WatchTaskStream = WatchStream;

    async fn watch_task(
        &self,
        req: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        let caller = self.0.caller(&req)?;
        let id = req.get_ref().task_id.clone();
        let c = caller.clone();
        let watched = id.clone();
        let (first, mut events) = self.0.run(move |p| p.watch_task(&c, &watched)).await?;
        let task_id = first.task.id();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_QUEUE);
        let api = self.0.clone();
        tokio::spawn(async move {
            let mut last = (
                first.task.status(),
                first.task.history().len(),
                first.approved_by.len(),
            );
            let mut done = first.task.status().is_terminal();
            if tx.send(Ok(task_info(&first))).await.is_err() {
                return;
            }
            while !done {
                let event = tokio::select! {
                    e = events.recv() => e,
                    () = api.closing.cancelled() => return,
                };
                match event {
                    Ok(changed) if changed != task_id => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
                let (c, i) = (caller.clone(), id.clone());
                let item = api.run(move |p| p.get_task(&c, &i)).await;
                if let Ok(v) = &item {
                    let now = (v.task.status(), v.task.history().len(), v.approved_by.len());
                    if now == last {
                        continue;
                    }
                    last = now;
                    done = v.task.status().is_terminal();
                }
                let failed = item.is_err();
                if tx.send(item.map(|v| task_info(&v))).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
