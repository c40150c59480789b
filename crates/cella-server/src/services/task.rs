//! `cella.v1.TaskService`, with WatchTask streaming every status change.

use std::collections::BTreeMap;
use std::pin::Pin;

use cella_platform::tasks::{SlotFiles, SlotOwners, TaskFilter};
use cella_proto::v1 as pb;
use cella_proto::v1::task_service_server::TaskService;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{Api, page_reply, page_request};
use crate::convert::{parse, parse_opt, task_info, task_status};

/// Watch updates buffered ahead of a slow client.
const WATCH_QUEUE: usize = 16;

/// The task service.
#[derive(Debug, Clone)]
pub(crate) struct TaskApi(pub(crate) Api);

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::TaskInfo, Status>> + Send>>;

/// Each slot's owners, parsed; `field` names the list in errors.
fn slots(field: &str, v: &[pb::SlotOwners]) -> Result<Vec<SlotOwners>, Status> {
    v.iter()
        .map(|s| {
            let owners = s
                .owners
                .iter()
                .map(|o| parse(&format!("{field}[{:?}].owners", s.slot), o))
                .collect::<Result<_, _>>()?;
            Ok((s.slot.clone(), owners))
        })
        .collect()
}

/// Each slot's file id, parsed as the kind of file the list takes.
fn files<T>(field: &str, v: &[pb::SlotFile]) -> Result<Vec<(String, T)>, Status>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    v.iter()
        .map(|s| {
            let id = parse(&format!("{field}[{:?}].file_id", s.slot), &s.file_id)?;
            Ok((s.slot.clone(), id))
        })
        .collect()
}

/// The filter of a ListTasks request, its ids and statuses parsed.
fn task_filter(r: &pb::ListTasksRequest) -> Result<TaskFilter, Status> {
    let statuses = r
        .statuses
        .iter()
        .map(|&s| task_status(s))
        .collect::<Result<_, _>>()?;
    let function_id = parse_opt("function_id", &r.function_id)?;
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
        let caller = self.0.caller(&req)?;
        let r = req.get_ref().clone();
        let function_id = parse("function_id", &r.function_id)?;
        let inputs = slots("inputs", &r.inputs)?;
        let outputs = slots("outputs", &r.outputs)?;
        let args: BTreeMap<String, String> = r.arguments.into_iter().collect();
        let v = self
            .0
            .run(move |p| p.create_task(&caller, function_id, &args, &inputs, &outputs))
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn get_task(
        &self,
        req: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("task_id", &req.get_ref().task_id)?;
        let v = self.0.run(move |p| p.get_task(&caller, id)).await?;
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
        let caller = self.0.caller(&req)?;
        let r = req.get_ref();
        let id = parse("task_id", &r.task_id)?;
        let files = SlotFiles {
            inputs: files("inputs", &r.inputs)?,
            outputs: files("outputs", &r.outputs)?,
        };
        let v = self
            .0
            .run(move |p| p.assign_data(&caller, id, &files))
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn approve_task(
        &self,
        req: Request<pb::ApproveTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("task_id", &req.get_ref().task_id)?;
        let digest = parse("task_digest", &req.get_ref().task_digest)?;
        let v = self
            .0
            .run(move |p| p.approve_task(&caller, id, digest))
            .await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn invoke_task(
        &self,
        req: Request<pb::InvokeTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("task_id", &req.get_ref().task_id)?;
        let v = self.0.run(move |p| p.invoke_task(&caller, id)).await?;
        Ok(Response::new(task_info(&v)))
    }

    async fn cancel_task(
        &self,
        req: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<pb::TaskInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("task_id", &req.get_ref().task_id)?;
        let v = self.0.run(move |p| p.cancel_task(&caller, id)).await?;
        Ok(Response::new(task_info(&v)))
    }

    type WatchTaskStream = WatchStream;

    async fn watch_task(
        &self,
        req: Request<pb::WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        let caller = self.0.caller(&req)?;
        let task_id = parse("task_id", &req.get_ref().task_id)?;
        let c = caller.clone();
        let (first, mut events) = self.0.run(move |p| p.watch_task(&c, task_id)).await?;
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
                let c = caller.clone();
                let item = api.run(move |p| p.get_task(&c, task_id)).await;
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
