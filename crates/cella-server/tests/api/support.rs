//! A node on a temporary data dir, logged-in clients, and sealed test data.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cella_client::{Client, ClientError, UploadSource, proto};
use cella_crypto::FileKey;
use cella_executor::{ExecutionError, ExecutionOutcome, Executor, Executors, StagedTask, TaskIo};
use cella_platform::NodeConfig;
use cella_server::{RunningNode, ServerConfig, default_executors};
use cella_types::{Digest, ExecutorKind};

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A stand-in executor registered as `wasm`: its payload says what to do. `block` waits
/// until the run is dropped (unless `release` is set), `panic` panics, anything else
/// returns its arguments' `message`.
pub(crate) struct ScriptedExecutor {
    pub(crate) release: bool,
}

#[async_trait::async_trait]
impl Executor for ScriptedExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Wasm
    }

    async fn execute(
        &self,
        task: &StagedTask,
        io: &mut TaskIo,
    ) -> Result<ExecutionOutcome, ExecutionError> {
        match &*task.payload {
            b"block" if !self.release => std::future::pending().await,
            b"panic" => panic!("scripted panic"),
            _ => {}
        }
        for slot in io.output_slots().map(str::to_owned).collect::<Vec<_>>() {
            io.write_output(&slot, b"done".to_vec())?;
        }
        Ok(ExecutionOutcome {
            return_value: b"ok".to_vec(),
            log: vec![],
            usage: Default::default(),
            receipt: vec![],
        })
    }
}

/// The node's default executors, with [`ScriptedExecutor`] standing in for `wasm`.
pub(crate) fn executors(config: &NodeConfig, release: bool) -> Executors {
    let mut e = default_executors(config).unwrap();
    e.register(Arc::new(ScriptedExecutor { release }));
    e
}

/// Makes a node's executors from its config; the flag is `release` for
/// [`ScriptedExecutor`] (builders that do not use it ignore it).
pub(crate) type BuildExecutors = Arc<dyn Fn(&NodeConfig, bool) -> Executors + Send + Sync>;

#[expect(
    dead_code,
    reason = "the temporary directory lives as long as the node"
)]
pub(crate) struct TestNode {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: ServerConfig,
    pub(crate) node: Option<RunningNode>,
    pub(crate) build: BuildExecutors,
}

impl TestNode {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tweak: impl FnOnce(&mut NodeConfig)) -> Self {
        Self::start_with_executors(tweak, Arc::new(executors)).await
    }

    /// A node whose executors `build` makes, at this start and at every restart.
    pub(crate) async fn start_with_executors(
        tweak: impl FnOnce(&mut NodeConfig),
        build: BuildExecutors,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeConfig::new(dir.path().join("data"));
        node.workers = 2;
        tweak(&mut node);
        let config = ServerConfig::new(node, SocketAddr::from(([127, 0, 0, 1], 0)));
        let running = RunningNode::start(config.clone(), build(&config.node, false))
            .await
            .unwrap();
        Self {
            dir,
            config,
            node: Some(running),
            build,
        }
    }

    pub(crate) fn running(&self) -> &RunningNode {
        self.node.as_ref().unwrap()
    }

    /// Stops the node (its running tasks stay Running, as after a crash) and starts it
    /// again on the same data dir and port.
    pub(crate) async fn restart(&mut self, release: bool) {
        let old = self.node.take().unwrap();
        let addr = old.addr();
        old.shutdown().await;
        let mut config = self.config.clone();
        config.listen = addr;
        self.node = Some(
            RunningNode::start(config.clone(), (self.build)(&config.node, release))
                .await
                .unwrap(),
        );
    }

    pub(crate) async fn client(&self) -> Client {
        let n = self.running();
        Client::connect(&n.addr().to_string(), n.cert_pem().as_bytes())
            .await
            .unwrap()
    }

    pub(crate) async fn admin(&self) -> Client {
        let pw = std::fs::read_to_string(self.config.node.admin_password_path()).unwrap();
        let mut c = self.client().await;
        c.login("admin", pw.trim()).await.unwrap();
        c
    }

    /// Registers `name` with `roles` and returns a client logged in as it.
    /// A user `name` who owns functions and data, registered by the admin: the one
    /// participant most single-party tests need.
    pub(crate) async fn owner(&self, name: &str) -> Client {
        let admin = self.admin().await;
        self.user(&admin, name, &["function_owner", "data_owner"])
            .await
    }

    pub(crate) async fn user(&self, admin: &Client, name: &str, roles: &[&str]) -> Client {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        admin.register_user(name, PASSWORD, &roles).await.unwrap();
        let mut c = self.client().await;
        c.login(name, PASSWORD).await.unwrap();
        c
    }
}

pub(crate) fn crypto(key: &FileKey) -> proto::FileCrypto {
    proto::FileCrypto {
        schema: "cella-sealed-v1".into(),
        key: key.as_bytes().to_vec(),
    }
}

/// Seals `data` under a new key: (ciphertext, key, ciphertext digest hex).
pub(crate) fn seal(data: &[u8]) -> (Vec<u8>, FileKey, String) {
    let key = FileKey::generate();
    let ct = cella_crypto::stream::seal_to_vec(data, &key).unwrap();
    let digest = Digest::of(&ct).to_hex();
    (ct, key, digest)
}

/// Uploads `data` sealed under a new key; returns the file id.
pub(crate) async fn upload(c: &Client, data: &[u8]) -> String {
    let (ct, key, digest) = seal(data);
    c.upload_input(
        UploadSource::reader(std::io::Cursor::new(ct)),
        crypto(&key),
        &digest,
        None,
    )
    .await
    .unwrap()
    .file_id
}

/// Registers an output in the blob store; returns (file id, key).
pub(crate) async fn output(c: &Client) -> (String, FileKey) {
    let key = FileKey::generate();
    let id = c.register_output(crypto(&key), None).await.unwrap().file_id;
    (id, key)
}

/// Downloads and decrypts an output.
pub(crate) async fn fetch(c: &Client, id: &str, key: &FileKey) -> Vec<u8> {
    let mut ct = Vec::new();
    c.download_file(id, &mut ct, None).await.unwrap();
    cella_crypto::stream::unseal_to_vec(&ct, key).unwrap()
}

pub(crate) fn slot(slot: &str, owners: &[&str]) -> proto::SlotOwners {
    proto::SlotOwners {
        slot: slot.into(),
        owners: owners.iter().map(|o| (*o).to_owned()).collect(),
    }
}

pub(crate) fn file(slot: &str, id: &str) -> proto::SlotFile {
    proto::SlotFile {
        slot: slot.into(),
        file_id: id.into(),
    }
}

pub(crate) fn spec(
    name: &str,
    executor: &str,
    inputs: &[&str],
    outputs: &[&str],
) -> proto::FunctionSpec {
    proto::FunctionSpec {
        name: name.into(),
        description: format!("{name} for tests"),
        executor: executor.into(),
        arguments: vec![proto::ArgumentSpec {
            name: "message".into(),
            default_value: Some("hi".into()),
            overridable: true,
        }],
        inputs: inputs
            .iter()
            .map(|s| proto::SlotSpec {
                name: (*s).into(),
                optional: false,
            })
            .collect(),
        outputs: outputs
            .iter()
            .map(|s| proto::SlotSpec {
                name: (*s).into(),
                optional: false,
            })
            .collect(),
        public: true,
        ..Default::default()
    }
}

pub(crate) fn status(t: &proto::TaskInfo) -> proto::TaskStatus {
    proto::TaskStatus::try_from(t.status).unwrap()
}

pub(crate) fn code(e: impl std::borrow::Borrow<ClientError>) -> tonic::Code {
    let e = e.borrow();
    e.code()
        .unwrap_or_else(|| panic!("not a status error: {e}"))
}

/// Waits for a terminal status with a generous bound, so a bug shows as a failure.
pub(crate) async fn wait(c: &Client, task: &str) -> proto::TaskInfo {
    tokio::time::timeout(Duration::from_secs(30), c.wait_terminal(task))
        .await
        .expect("task did not end in 30 s")
        .unwrap()
}

/// Waits until the task has `s`.
pub(crate) async fn wait_for(c: &Client, task: &str, s: proto::TaskStatus) -> proto::TaskInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = c.get_task(task).await.unwrap();
        if status(&t) == s {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never reached {s:?}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A one-input, one-output task of `function` owned by `owner`, assigned and approved.
pub(crate) async fn approved_task(
    function: &str,
    owner: &Client,
    owner_name: &str,
) -> (String, String, FileKey) {
    let t = owner
        .create_task(
            function,
            HashMap::new(),
            vec![slot("in", &[owner_name])],
            vec![slot("out", &[owner_name])],
        )
        .await
        .unwrap();
    let input = upload(owner, b"data").await;
    let (out, key) = output(owner).await;
    let t = owner
        .assign_data(
            &t.task_id,
            vec![file("in", &input)],
            vec![file("out", &out)],
        )
        .await
        .unwrap();
    let t = owner
        .approve_task(&t.task_id, &t.task_digest)
        .await
        .unwrap();
    assert_eq!(status(&t), proto::TaskStatus::Approved);
    (t.task_id, out, key)
}
