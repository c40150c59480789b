//! `teaclave_frontend_service_proto.TeaclaveFrontend`: Teaclave's functions and tasks on
//! Cella's. Each method authenticates the `id`/`token` metadata, checks Teaclave's
//! access-control table ([`crate::acl`]), parses Teaclave's ids into Cella's typed ids,
//! and calls the platform through [`Node`]; the platform's policy still decides
//! every object-level question.

use std::collections::{BTreeMap, BTreeSet};

use cella_platform::Caller;
use cella_platform::files::FileView;
use cella_platform::tasks::{SlotOwners, TaskView};
use cella_types::{
    ArgumentSpec, ExecutorKind, Function, FunctionId, FunctionSpec, InstanceReuse, Role, SlotSpec,
    TaskId, TaskStatus, UserName, Visibility,
};
use tonic::{Request, Response, Status};

use crate::acl;
use crate::auth::credential;
use crate::errors::{self, INCORRECT_CREDENTIAL, Op, PERMISSION_DENIED, not_served};
use crate::node::{FileId, Node};
use crate::pb::common as cpb;
use crate::pb::frontend as pb;
use crate::pb::frontend::teaclave_frontend_server::TeaclaveFrontend;

/// What is missing for the methods of Teaclave's file model (issue 16, item 2).
const FILE_MODEL: &str = "Teaclave's file model (input and output files registered by URL \
     with crypto_info teaclave-file-128 / aes-gcm-128 / aes-gcm-256 and a cmac, fetched and \
     written back by the node) is not implemented yet";

/// The frontend service.
#[derive(Debug, Clone)]
pub(crate) struct FrontendApi(pub(crate) Node);

impl FrontendApi {
    /// A method of Teaclave's file model: checked like any call, then not served.
    async fn file_model<T, R>(
        &self,
        req: &Request<T>,
        api: &str,
        method: &str,
    ) -> Result<R, Status> {
        self.caller(req, api).await?;
        Err(not_served(method, FILE_MODEL))
    }

    /// A Cella file's owners (one) for Get{Input,Output}File; `output` says which kind
    /// the id must be. Cella's files have no cmac until Teaclave's file model is served.
    async fn file_owners<T>(
        &self,
        req: &Request<T>,
        api: &str,
        data_id: &str,
        output: bool,
    ) -> Result<Vec<String>, Status> {
        let caller = self.caller(req, api).await?;
        let id: FileId = parse(data_id, "invalid data id")?;
        if matches!(id, FileId::Output(_)) != output {
            let kind = if output { "output" } else { "input" };
            return Err(Status::invalid_argument(format!(
                "invalid data id: not an {kind}-<uuid> id"
            )));
        }
        let view = self
            .0
            .file(caller, id)
            .await
            .map_err(|e| errors::frontend(Op::FILE, e))?;
        let owner = match &view {
            FileView::Input(f) => &f.owner,
            FileView::Output(f) => &f.owner,
        };
        Ok(vec![owner.to_string()])
    }

    /// The caller, once its credential holds and Teaclave's ACL lets it call `api`.
    async fn caller<T>(&self, req: &Request<T>, api: &str) -> Result<Caller, Status> {
        let caller = credential(&self.0, req, INCORRECT_CREDENTIAL).await?;
        if !acl::allows(&caller.roles, api) {
            return Err(Status::permission_denied(PERMISSION_DENIED));
        }
        Ok(caller)
    }
}

/// Parses a Teaclave id at the edge, or Teaclave's code-3 message for it.
fn parse<T: std::str::FromStr>(s: &str, invalid: &str) -> Result<T, Status>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| Status::invalid_argument(format!("{invalid}: {e}")))
}

/// Teaclave's internal-error answer (code 13) with what was wrong.
fn internal(what: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}"))
}

/// The Cella builtin a Teaclave builtin name runs: Teaclave names builtins
/// `builtin-ordered-set-intersect` (or `builtin_online_decrypt`), Cella
/// `ordered_set_intersect`. The platform refuses a name it has no builtin for.
fn builtin_payload(name: &str) -> Vec<u8> {
    let bare = name
        .strip_prefix("builtin-")
        .or_else(|| name.strip_prefix("builtin_"))
        .unwrap_or(name);
    bare.replace('-', "_").into_bytes()
}

/// The [`Registration`] of a RegisterFunction or UpdateFunction request: the two share
/// their field names (not their numbers).
macro_rules! registration {
    ($r:expr) => {
        Registration {
            name: &$r.name,
            description: &$r.description,
            executor_type: &$r.executor_type,
            public: $r.public,
            arguments: &$r.arguments,
            inputs: &$r.inputs,
            outputs: &$r.outputs,
            user_allowlist: &$r.user_allowlist,
            usage_quota: $r.usage_quota,
        }
    };
}

/// The function spec and payload of a Teaclave registration or update.
struct Registration<'a> {
    name: &'a str,
    description: &'a str,
    executor_type: &'a str,
    public: bool,
    arguments: &'a [pb::FunctionArgument],
    inputs: &'a [pb::FunctionInput],
    outputs: &'a [pb::FunctionOutput],
    user_allowlist: &'a [String],
    usage_quota: i32,
}

impl Registration<'_> {
    fn spec(&self) -> Result<(FunctionSpec, Vec<u8>), Status> {
        let (executor, payload) = match self.executor_type {
            "builtin" => (ExecutorKind::Builtin, builtin_payload(self.name)),
            "python" | "wamr" => {
                return Err(not_served(
                    &format!("executor type {}", self.executor_type),
                    "Teaclave's mesapy and wamr functions (issue 16 items 4 and 5) are not \
                     implemented yet; builtin functions are",
                ));
            }
            other => return Err(internal(format!("Invalid executor type: {other:?}"))),
        };
        let visibility = if self.public {
            Visibility::Public
        } else {
            Visibility::Allowlist(
                self.user_allowlist
                    .iter()
                    .map(|u| parse::<UserName>(u, "invalid user id"))
                    .collect::<Result<_, _>>()?,
            )
        };
        let spec = FunctionSpec {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
            executor,
            runtime: None,
            reuse: InstanceReuse::Never,
            // Teaclave fills a missing or fixed argument with its default, always a string.
            arguments: self
                .arguments
                .iter()
                .map(|a| ArgumentSpec {
                    name: a.key.clone(),
                    default: Some(a.default_value.clone()),
                    overridable: a.allow_overwrite,
                })
                .collect(),
            inputs: self
                .inputs
                .iter()
                .map(|i| SlotSpec {
                    name: i.name.clone(),
                    optional: i.optional,
                })
                .collect(),
            outputs: self
                .outputs
                .iter()
                .map(|o| SlotSpec {
                    name: o.name.clone(),
                    optional: o.optional,
                })
                .collect(),
            visibility,
            // Below zero: no limit, as Teaclave's.
            quota: u64::try_from(self.usage_quota).ok(),
            max_output_bytes: None,
        };
        Ok((spec, payload))
    }
}

/// Teaclave's executor_type for a Cella function.
fn executor_type(kind: ExecutorKind) -> &'static str {
    match kind {
        ExecutorKind::Builtin => "builtin",
        // Cella's own kinds keep their names: they are not Teaclave's wamr or mesapy.
        other => other.as_str(),
    }
}

fn arguments(f: &Function) -> Vec<pb::FunctionArgument> {
    f.spec
        .arguments
        .iter()
        .map(|a| pb::FunctionArgument {
            key: a.name.clone(),
            default_value: a.default.clone().unwrap_or_default(),
            allow_overwrite: a.overridable,
        })
        .collect()
}

/// A task's arguments from Teaclave's JSON object: the keys must be exactly the
/// function's overwritable arguments; a string value is kept as it is, any other JSON
/// value as its JSON text.
fn task_arguments(f: &Function, json: &str) -> Result<BTreeMap<String, String>, Status> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| internal(format!("function_arguments is not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(internal("function_arguments is not a JSON object"));
    };
    let given: BTreeSet<&str> = map.keys().map(String::as_str).collect();
    let declared: BTreeSet<&str> = f
        .spec
        .arguments
        .iter()
        .filter(|a| a.overridable)
        .map(|a| a.name.as_str())
        .collect();
    if given != declared {
        return Err(Status::invalid_argument(format!(
            "invalid task: function_arguments mismatch: given {given:?}, the function's \
             overwritable arguments are {declared:?}"
        )));
    }
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

fn owner_lists(v: &[pb::OwnerList]) -> Result<Vec<SlotOwners>, Status> {
    v.iter()
        .map(|o| {
            let owners = o
                .uids
                .iter()
                .map(|u| parse(u, "invalid task"))
                .collect::<Result<_, _>>()?;
            Ok((o.data_name.clone(), owners))
        })
        .collect()
}

fn data_maps(v: &[pb::DataMap]) -> Result<Vec<(String, FileId)>, Status> {
    v.iter()
        .map(|d| Ok((d.data_name.clone(), parse(&d.data_id, "invalid data id")?)))
        .collect()
}

fn names<'a>(it: impl IntoIterator<Item = &'a UserName>) -> Vec<String> {
    it.into_iter().map(ToString::to_string).collect()
}

/// Teaclave's status and result for a Cella task. A Cella task that Failed ends, on
/// this API, as Teaclave's function errors do: Finished with `result.Err`.
fn status_and_result(v: &TaskView) -> (cpb::TaskStatus, cpb::TaskResult) {
    use cpb::task_result::Result as R;
    let t = &v.task;
    let err = |reason: &str| {
        Some(R::Err(cpb::TaskFailure {
            reason: reason.to_owned(),
        }))
    };
    let (status, result) = match t.status() {
        TaskStatus::Created => (cpb::TaskStatus::Created, None),
        // Teaclave moves a task to DataAssigned when data is assigned; a task without
        // data slots stays Created until approved (Cella's is ready for approval at once).
        TaskStatus::DataAssigned if t.inputs().is_empty() && t.outputs().is_empty() => {
            (cpb::TaskStatus::Created, None)
        }
        TaskStatus::DataAssigned => (cpb::TaskStatus::DataAssigned, None),
        TaskStatus::Approved => (cpb::TaskStatus::Approved, None),
        TaskStatus::Staged => (cpb::TaskStatus::Staged, None),
        TaskStatus::Running => (cpb::TaskStatus::Running, None),
        TaskStatus::Finished => (
            cpb::TaskStatus::Finished,
            t.result().map(|r| {
                R::Ok(cpb::TaskOutputs {
                    return_value: r.return_value.clone(),
                    tags_map: std::collections::HashMap::new(),
                    log: r.log.clone(),
                })
            }),
        ),
        TaskStatus::Failed => (
            cpb::TaskStatus::Finished,
            err(t.reason().unwrap_or("the task failed")),
        ),
        TaskStatus::Canceled => (
            cpb::TaskStatus::Canceled,
            err(t.reason().unwrap_or("Task canceled")),
        ),
    };
    (status, cpb::TaskResult { result })
}

fn task_response(v: &TaskView) -> pb::GetTaskResponse {
    let t = &v.task;
    let (status, result) = status_and_result(v);
    // Compact, keys sorted: the form Teaclave echoes.
    let arguments: serde_json::Map<String, serde_json::Value> = t
        .arguments()
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    pb::GetTaskResponse {
        task_id: t.id().to_string(),
        creator: t.creator().to_string(),
        function_id: t.function_id().to_string(),
        function_owner: t.function_owner().to_string(),
        function_arguments: serde_json::Value::Object(arguments).to_string(),
        inputs_ownership: t
            .inputs()
            .iter()
            .map(|(name, s)| pb::OwnerList {
                data_name: name.clone(),
                uids: names(&s.owners),
            })
            .collect(),
        outputs_ownership: t
            .outputs()
            .iter()
            .map(|(name, s)| pb::OwnerList {
                data_name: name.clone(),
                uids: names(&s.owners),
            })
            .collect(),
        participants: names(t.participants()),
        approved_users: names(&v.approved_by),
        assigned_inputs: t
            .inputs()
            .iter()
            .filter_map(|(name, s)| {
                s.file.as_ref().map(|(f, _)| pb::DataMap {
                    data_name: name.clone(),
                    data_id: f.to_string(),
                })
            })
            .collect(),
        assigned_outputs: t
            .outputs()
            .iter()
            .filter_map(|(name, s)| {
                s.file.map(|f| pb::DataMap {
                    data_name: name.clone(),
                    data_id: f.to_string(),
                })
            })
            .collect(),
        status: status.into(),
        result: Some(result),
    }
}

#[tonic::async_trait]
impl TeaclaveFrontend for FrontendApi {
    async fn register_input_file(
        &self,
        req: Request<pb::RegisterInputFileRequest>,
    ) -> Result<Response<pb::RegisterInputFileResponse>, Status> {
        self.file_model(&req, "register_input_file", "RegisterInputFile")
            .await
    }

    async fn register_output_file(
        &self,
        req: Request<pb::RegisterOutputFileRequest>,
    ) -> Result<Response<pb::RegisterOutputFileResponse>, Status> {
        self.file_model(&req, "register_output_file", "RegisterOutputFile")
            .await
    }

    async fn update_input_file(
        &self,
        req: Request<pb::UpdateInputFileRequest>,
    ) -> Result<Response<pb::UpdateInputFileResponse>, Status> {
        self.file_model(&req, "update_input_file", "UpdateInputFile")
            .await
    }

    async fn update_output_file(
        &self,
        req: Request<pb::UpdateOutputFileRequest>,
    ) -> Result<Response<pb::UpdateOutputFileResponse>, Status> {
        self.file_model(&req, "update_output_file", "UpdateOutputFile")
            .await
    }

    async fn register_fusion_output(
        &self,
        req: Request<pb::RegisterFusionOutputRequest>,
    ) -> Result<Response<pb::RegisterFusionOutputResponse>, Status> {
        self.file_model(&req, "register_fusion_output", "RegisterFusionOutput")
            .await
    }

    async fn register_input_from_output(
        &self,
        req: Request<pb::RegisterInputFromOutputRequest>,
    ) -> Result<Response<pb::RegisterInputFromOutputResponse>, Status> {
        self.file_model(
            &req,
            "register_input_from_output",
            "RegisterInputFromOutput",
        )
        .await
    }

    async fn get_output_file(
        &self,
        req: Request<pb::GetOutputFileRequest>,
    ) -> Result<Response<pb::GetOutputFileResponse>, Status> {
        let owner = self
            .file_owners(&req, "get_output_file", &req.get_ref().data_id, true)
            .await?;
        Ok(Response::new(pb::GetOutputFileResponse {
            owner,
            cmac: Vec::new(),
        }))
    }

    async fn get_input_file(
        &self,
        req: Request<pb::GetInputFileRequest>,
    ) -> Result<Response<pb::GetInputFileResponse>, Status> {
        let owner = self
            .file_owners(&req, "get_input_file", &req.get_ref().data_id, false)
            .await?;
        Ok(Response::new(pb::GetInputFileResponse {
            owner,
            cmac: Vec::new(),
        }))
    }

    async fn register_function(
        &self,
        req: Request<pb::RegisterFunctionRequest>,
    ) -> Result<Response<pb::RegisterFunctionResponse>, Status> {
        let caller = self.caller(&req, "register_function").await?;
        let r = req.get_ref();
        let (spec, payload) = registration!(r).spec()?;
        let f = self
            .0
            .register_function(caller, spec, payload)
            .await
            .map_err(|e| errors::frontend(Op::FUNCTION, e))?;
        Ok(Response::new(pb::RegisterFunctionResponse {
            function_id: f.id.to_string(),
        }))
    }

    async fn get_function(
        &self,
        req: Request<pb::GetFunctionRequest>,
    ) -> Result<Response<pb::GetFunctionResponse>, Status> {
        let caller = self.caller(&req, "get_function").await?;
        let id: FunctionId = parse(&req.get_ref().function_id, "invalid function id")?;
        let (f, _) = self
            .0
            .function(caller.clone(), id, false)
            .await
            .map_err(|e| errors::frontend(Op::FUNCTION, e))?;
        let owner = f.owner == caller.user;
        // The payload only for its owner, and builtins have none to show.
        let payload = if owner && f.spec.executor != ExecutorKind::Builtin {
            self.0
                .function(caller, id, true)
                .await
                .map_err(|e| errors::frontend(Op::FUNCTION, e))?
                .1
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let (public, user_allowlist) = match &f.spec.visibility {
            Visibility::Public => (true, Vec::new()),
            // Only the owner sees who else may use the function, as Teaclave blanks it.
            Visibility::Allowlist(users) if owner => (false, names(users)),
            Visibility::Allowlist(_) => (false, Vec::new()),
        };
        Ok(Response::new(pb::GetFunctionResponse {
            name: f.spec.name.clone(),
            description: f.spec.description.clone(),
            executor_type: executor_type(f.spec.executor).to_owned(),
            owner: f.owner.to_string(),
            payload,
            public,
            arguments: arguments(&f),
            inputs: f
                .spec
                .inputs
                .iter()
                .map(|s| pb::FunctionInput {
                    name: s.name.clone(),
                    description: String::new(),
                    optional: s.optional,
                })
                .collect(),
            outputs: f
                .spec
                .outputs
                .iter()
                .map(|s| pb::FunctionOutput {
                    name: s.name.clone(),
                    description: String::new(),
                    optional: s.optional,
                })
                .collect(),
            user_allowlist,
        }))
    }

    async fn get_function_usage_stats(
        &self,
        req: Request<pb::GetFunctionUsageStatsRequest>,
    ) -> Result<Response<pb::GetFunctionUsageStatsResponse>, Status> {
        let caller = self.caller(&req, "get_function_usage_stats").await?;
        let id: FunctionId = parse(&req.get_ref().function_id, "invalid function id")?;
        let (f, _) = self
            .0
            .function(caller, id, false)
            .await
            .map_err(|e| errors::frontend(Op::FUNCTION, e))?;
        let clamp = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(Response::new(pb::GetFunctionUsageStatsResponse {
            function_quota: f.spec.quota.map_or(-1, clamp),
            current_usage: clamp(f.usage),
        }))
    }

    async fn update_function(
        &self,
        req: Request<pb::UpdateFunctionRequest>,
    ) -> Result<Response<pb::UpdateFunctionResponse>, Status> {
        let caller = self.caller(&req, "update_function").await?;
        let r = req.get_ref();
        let id: FunctionId = parse(&r.function_id, "invalid function id")?;
        let (spec, payload) = registration!(r).spec()?;
        let f = self
            .0
            .update_function(caller, id, spec, payload)
            .await
            .map_err(|e| errors::frontend(Op::FUNCTION, e))?;
        Ok(Response::new(pb::UpdateFunctionResponse {
            function_id: f.id.to_string(),
        }))
    }

    async fn list_functions(
        &self,
        req: Request<pb::ListFunctionsRequest>,
    ) -> Result<Response<pb::ListFunctionsResponse>, Status> {
        let caller = self.caller(&req, "list_functions").await?;
        let user = &req.get_ref().user_id;
        // Cella lists a caller's own functions, for admins too.
        if !user.is_empty() && user != caller.user.as_str() {
            return Err(Status::permission_denied(PERMISSION_DENIED));
        }
        let (own, usable) = self
            .0
            .functions(caller)
            .await
            .map_err(|e| errors::frontend(Op::FUNCTION, e))?;
        // Teaclave's DisableFunction takes a function off every list.
        let ids = |v: Vec<Function>| -> Vec<String> {
            v.into_iter()
                .filter(|f| !f.disabled)
                .map(|f| f.id.to_string())
                .collect()
        };
        Ok(Response::new(pb::ListFunctionsResponse {
            registered_functions: ids(own),
            allowed_functions: ids(usable),
        }))
    }

    async fn delete_function(
        &self,
        req: Request<pb::DeleteFunctionRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req, "delete_function").await?;
        let id: FunctionId = parse(&req.get_ref().function_id, "invalid function id")?;
        self.0
            .delete_function(caller, id)
            .await
            .map_err(|e| errors::frontend(Op::FUNCTION, e))?;
        Ok(Response::new(()))
    }

    async fn disable_function(
        &self,
        req: Request<pb::DisableFunctionRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req, "disable_function").await?;
        let id: FunctionId = parse(&req.get_ref().function_id, "invalid function id")?;
        self.0
            .disable_function(caller, id)
            .await
            .map_err(|e| errors::frontend(Op::FUNCTION, e))?;
        Ok(Response::new(()))
    }

    async fn create_task(
        &self,
        req: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::CreateTaskResponse>, Status> {
        let caller = self.caller(&req, "create_task").await?;
        let r = req.get_ref();
        let wants = match r.executor.as_str() {
            "builtin" => ExecutorKind::Builtin,
            "mesapy" | "wamr" => {
                return Err(not_served(
                    &format!("executor {}", r.executor),
                    "Teaclave's mesapy and wamr executors are not implemented yet",
                ));
            }
            other => return Err(internal(format!("Unsupported executor: {other:?}"))),
        };
        let id: FunctionId = parse(&r.function_id, "invalid function id")?;
        let (f, _) = self
            .0
            .function(caller.clone(), id, false)
            .await
            .map_err(|e| errors::frontend(Op::CREATE_TASK, e))?;
        if f.spec.executor != wants {
            return Err(Status::invalid_argument(format!(
                "invalid task: executor {:?} does not run {} functions",
                r.executor, f.spec.executor
            )));
        }
        let args = task_arguments(&f, &r.function_arguments)?;
        let v = self
            .0
            .create_task(
                caller,
                id,
                args,
                owner_lists(&r.inputs_ownership)?,
                owner_lists(&r.outputs_ownership)?,
            )
            .await
            .map_err(|e| errors::frontend(Op::CREATE_TASK, e))?;
        Ok(Response::new(pb::CreateTaskResponse {
            task_id: v.task.id().to_string(),
        }))
    }

    async fn get_task(
        &self,
        req: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let caller = self.caller(&req, "get_task").await?;
        let id: TaskId = parse(&req.get_ref().task_id, "invalid task id")?;
        let v = self
            .0
            .task(caller, id)
            .await
            .map_err(|e| errors::frontend(Op::GET_TASK, e))?;
        Ok(Response::new(task_response(&v)))
    }

    async fn assign_data(
        &self,
        req: Request<pb::AssignDataRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req, "assign_data").await?;
        let r = req.get_ref();
        let id: TaskId = parse(&r.task_id, "invalid task id")?;
        let (inputs, outputs) = (data_maps(&r.inputs)?, data_maps(&r.outputs)?);
        self.0
            .assign_data(caller, id, inputs, outputs)
            .await
            .map_err(|e| errors::frontend(Op::ASSIGN, e))?;
        Ok(Response::new(()))
    }

    async fn approve_task(
        &self,
        req: Request<pb::ApproveTaskRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req, "approve_task").await?;
        let id: TaskId = parse(&req.get_ref().task_id, "invalid task id")?;
        self.0
            .approve_current(caller, id)
            .await
            .map_err(|e| errors::frontend(Op::APPROVE, e))?;
        Ok(Response::new(()))
    }

    async fn invoke_task(
        &self,
        req: Request<pb::InvokeTaskRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req, "invoke_task").await?;
        let id: TaskId = parse(&req.get_ref().task_id, "invalid task id")?;
        let v = self
            .0
            .task(caller.clone(), id)
            .await
            .map_err(|e| errors::frontend(Op::INVOKE, e))?;
        // Teaclave counts a task whose only participant is its creator as approved by it.
        let sole = v.task.participants().len() == 1 && v.task.creator() == &caller.user;
        if sole && v.task.status() == TaskStatus::DataAssigned && v.approved_by.is_empty() {
            self.0
                .approve_current(caller.clone(), id)
                .await
                .map_err(|e| errors::frontend(Op::INVOKE, e))?;
        }
        self.0
            .invoke_task(caller, id)
            .await
            .map_err(|e| errors::frontend(Op::INVOKE, e))?;
        Ok(Response::new(()))
    }

    async fn cancel_task(
        &self,
        req: Request<pb::CancelTaskRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req, "cancel_task").await?;
        let id: TaskId = parse(&req.get_ref().task_id, "invalid task id")?;
        let v = self
            .0
            .task(caller.clone(), id)
            .await
            .map_err(|e| errors::frontend(Op::CANCEL, e))?;
        // Teaclave: only the creator (or an admin) cancels.
        if v.task.creator() != &caller.user && !caller.has_role(Role::Admin) {
            return Err(Status::permission_denied(PERMISSION_DENIED));
        }
        self.0
            .cancel_task(caller, id)
            .await
            .map_err(|e| errors::frontend(Op::CANCEL, e))?;
        Ok(Response::new(()))
    }

    async fn query_audit_logs(
        &self,
        req: Request<pb::QueryAuditLogsRequest>,
    ) -> Result<Response<pb::QueryAuditLogsResponse>, Status> {
        self.caller(&req, "query_audit_logs").await?;
        Err(not_served(
            "QueryAuditLogs",
            "Cella's audit trail has no query of Teaclave's form yet; read it with `cella audit`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_like(arguments: &[(&str, bool)]) -> Function {
        Function {
            id: FunctionId::new(),
            owner: "admin".parse().unwrap(),
            spec: FunctionSpec {
                name: "builtin-echo".into(),
                description: String::new(),
                executor: ExecutorKind::Builtin,
                runtime: None,
                reuse: InstanceReuse::Never,
                arguments: arguments
                    .iter()
                    .map(|&(name, overridable)| ArgumentSpec {
                        name: name.into(),
                        default: Some(String::new()),
                        overridable,
                    })
                    .collect(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                visibility: Visibility::Public,
                quota: None,
                max_output_bytes: None,
            },
            payload_digest: cella_types::Digest::of(b"echo"),
            payload_len: 4,
            usage: 0,
            disabled: false,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn task_arguments_follow_teaclaves_rules() {
        let f = echo_like(&[("message", true), ("num_user", true), ("fixed", false)]);
        // The SDK's json.dumps form; a non-string value is kept as its JSON text.
        let args = task_arguments(&f, r#"{"message": "Hello, Teaclave!", "num_user": 3}"#).unwrap();
        assert_eq!(args["message"], "Hello, Teaclave!");
        assert_eq!(args["num_user"], "3");
        assert!(!args.contains_key("fixed"));
        // The keys must be exactly the overwritable ones: none missing, none extra, and
        // a fixed argument may not be given.
        for bad in [
            r#"{"message": "x"}"#,
            r#"{"message": "x", "num_user": 3, "fixed": "y"}"#,
            r#"{"message": "x", "num_user": 3, "other": 1}"#,
        ] {
            let e = task_arguments(&f, bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(
                e.message()
                    .starts_with("invalid task: function_arguments mismatch")
            );
        }
        for bad in ["[1, 2]", "not json", ""] {
            let e = task_arguments(&f, bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Internal, "{bad}: {e:?}");
        }
    }

    #[test]
    fn teaclave_builtin_names_become_cellas() {
        assert_eq!(builtin_payload("builtin-echo"), b"echo");
        assert_eq!(
            builtin_payload("builtin-ordered-set-intersect"),
            b"ordered_set_intersect"
        );
        assert_eq!(builtin_payload("builtin_online_decrypt"), b"online_decrypt");
        assert_eq!(builtin_payload("echo"), b"echo");
    }
}
