//! Every call this crate makes into [`Platform`], in one place: the rest of the crate
//! speaks typed ids and Teaclave's messages, and only this module knows the platform's
//! signatures. Each call runs on a blocking thread, since the platform's store commits
//! and password hashing block.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cella_platform::files::FileView;
use cella_platform::page::PageRequest;
use cella_platform::tasks::SlotFiles;
use cella_platform::tasks::{SlotOwners, TaskView};
use cella_platform::{Caller, Login, Platform, PlatformError, Result};
use cella_types::{Function, FunctionId, FunctionSpec, Role, TaskId, User, UserName};

/// A platform call failed before or while running.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The platform refused or failed.
    Platform(PlatformError),
    /// The blocking worker died.
    Worker(String),
}

impl From<PlatformError> for CallError {
    fn from(e: PlatformError) -> Self {
        Self::Platform(e)
    }
}

/// The platform behind both Teaclave services.
#[derive(Debug, Clone)]
pub(crate) struct Node(Arc<Platform>);

/// A file id parsed at the edge: Teaclave's input and output ids share Cella's form.
pub(crate) type FileId = cella_types::FileId;

impl Node {
    pub(crate) fn new(platform: Arc<Platform>) -> Self {
        Self(platform)
    }

    /// Runs `op` on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Platform) -> Result<T> + Send + 'static,
    ) -> Result<T, CallError> {
        let p = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || op(&p))
            .await
            .map_err(|e| CallError::Worker(e.to_string()))?
            .map_err(CallError::Platform)
    }

    pub(crate) async fn login(&self, user: String, password: String) -> Result<Login, CallError> {
        // A name that is not a user name is refused like an unknown one.
        let user = user.parse::<UserName>().ok();
        self.run(move |p| p.login(user.as_ref(), &password)).await
    }

    pub(crate) async fn authenticate(&self, token: String) -> Result<Caller, CallError> {
        self.run(move |p| p.authenticate(&token)).await
    }

    pub(crate) async fn register_user(
        &self,
        caller: Caller,
        user: UserName,
        password: String,
        roles: BTreeSet<Role>,
    ) -> Result<User, CallError> {
        self.run(move |p| p.register_user(&caller, user, &password, roles))
            .await
    }

    /// Sets `user`'s password to a fresh random one (an admin's reset) and returns it.
    pub(crate) async fn reset_password(
        &self,
        caller: Caller,
        user: UserName,
    ) -> Result<String, CallError> {
        self.run(move |p| {
            let password = cella_platform::auth::random_password()?;
            p.change_password(&caller, Some(user), "", &password)?;
            Ok(password)
        })
        .await
    }

    /// Every user's name, page after page.
    pub(crate) async fn all_users(&self, caller: Caller) -> Result<Vec<String>, CallError> {
        self.run(move |p| {
            let mut names = Vec::new();
            let mut token = String::new();
            loop {
                let page = p.list_users(&caller, &PageRequest::new(0, &token, false)?)?;
                names.extend(page.items.iter().map(|u| u.name.to_string()));
                match page.next_token() {
                    Some(t) => token = t,
                    None => return Ok(names),
                }
            }
        })
        .await
    }

    pub(crate) async fn register_function(
        &self,
        caller: Caller,
        spec: FunctionSpec,
        payload: Vec<u8>,
    ) -> Result<Function, CallError> {
        self.run(move |p| p.register_function(&caller, spec, &payload))
            .await
    }

    /// A function and, when `with_payload`, its payload.
    pub(crate) async fn function(
        &self,
        caller: Caller,
        id: FunctionId,
        with_payload: bool,
    ) -> Result<(Function, Option<Vec<u8>>), CallError> {
        self.run(move |p| {
            p.get_function(&caller, id, with_payload)
                .map(|v| (v.function, v.payload))
        })
        .await
    }

    /// The caller's own functions, and the others it may use.
    pub(crate) async fn functions(
        &self,
        caller: Caller,
    ) -> Result<(Vec<Function>, Vec<Function>), CallError> {
        self.run(move |p| {
            let mut own = Vec::new();
            let mut usable = Vec::new();
            let mut token = String::new();
            loop {
                let page =
                    p.list_functions(&caller, false, &PageRequest::new(0, &token, false)?)?;
                for f in &page.items {
                    if f.owner == caller.user {
                        own.push(f.clone());
                    } else {
                        usable.push(f.clone());
                    }
                }
                match page.next_token() {
                    Some(t) => token = t,
                    None => return Ok((own, usable)),
                }
            }
        })
        .await
    }

    pub(crate) async fn update_function(
        &self,
        caller: Caller,
        id: FunctionId,
        spec: FunctionSpec,
        payload: Vec<u8>,
    ) -> Result<Function, CallError> {
        self.run(move |p| p.update_function(&caller, id, spec, Some(&payload)))
            .await
    }

    pub(crate) async fn disable_function(
        &self,
        caller: Caller,
        id: FunctionId,
    ) -> Result<(), CallError> {
        self.run(move |p| p.disable_function(&caller, id).map(drop))
            .await
    }

    pub(crate) async fn delete_function(
        &self,
        caller: Caller,
        id: FunctionId,
    ) -> Result<(), CallError> {
        self.run(move |p| p.delete_function(&caller, id)).await
    }

    pub(crate) async fn create_task(
        &self,
        caller: Caller,
        function: FunctionId,
        arguments: BTreeMap<String, String>,
        inputs: Vec<SlotOwners>,
        outputs: Vec<SlotOwners>,
    ) -> Result<TaskView, CallError> {
        self.run(move |p| p.create_task(&caller, function, &arguments, &inputs, &outputs))
            .await
    }

    pub(crate) async fn task(&self, caller: Caller, id: TaskId) -> Result<TaskView, CallError> {
        self.run(move |p| p.get_task(&caller, id)).await
    }

    /// Fills slots with files; ids were parsed at the edge.
    pub(crate) async fn assign_data(
        &self,
        caller: Caller,
        id: TaskId,
        inputs: Vec<(String, FileId)>,
        outputs: Vec<(String, FileId)>,
    ) -> Result<(), CallError> {
        let wrong = |slot: &str, kind: &str, file: FileId| {
            PlatformError::BadValue(format!(
                "{kind} slot {slot:?}: {file} is not an {kind} file"
            ))
        };
        let files = SlotFiles {
            inputs: inputs
                .into_iter()
                .map(|(slot, file)| match file {
                    FileId::Input(i) => Ok((slot, i)),
                    other => Err(wrong(&slot, "input", other)),
                })
                .collect::<Result<_>>()
                .map_err(CallError::Platform)?,
            outputs: outputs
                .into_iter()
                .map(|(slot, file)| match file {
                    FileId::Output(o) => Ok((slot, o)),
                    other => Err(wrong(&slot, "output", other)),
                })
                .collect::<Result<_>>()
                .map_err(CallError::Platform)?,
        };
        self.run(move |p| p.assign_data(&caller, id, &files).map(drop))
            .await
    }

    /// Approves the task's current digest: Teaclave's approval names no digest.
    pub(crate) async fn approve_current(
        &self,
        caller: Caller,
        id: TaskId,
    ) -> Result<TaskView, CallError> {
        self.run(move |p| {
            let view = p.get_task(&caller, id)?;
            let digest = view.digest.ok_or_else(|| {
                PlatformError::WrongState("the task's function was deleted".into())
            })?;
            p.approve_task(&caller, id, digest)
        })
        .await
    }

    pub(crate) async fn invoke_task(&self, caller: Caller, id: TaskId) -> Result<(), CallError> {
        self.run(move |p| p.invoke_task(&caller, id).map(drop))
            .await
    }

    pub(crate) async fn cancel_task(&self, caller: Caller, id: TaskId) -> Result<(), CallError> {
        self.run(move |p| p.cancel_task(&caller, id).map(drop))
            .await
    }

    pub(crate) async fn file(&self, caller: Caller, id: FileId) -> Result<FileView, CallError> {
        self.run(move |p| p.get_file(&caller, id)).await
    }
}
