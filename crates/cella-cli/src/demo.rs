//! `cella demo`: starts a node on a temporary data dir, then two banks compute the
//! intersection of their private customer lists over real gRPC and TLS, without either
//! seeing the other's list, and with the function owner never seeing either: first with
//! the builtin `ordered_set_intersect`, then with the unmodified Python program
//! `examples/libos/psi.py` run by the `libos` executor in the Linux sandbox (on a python3
//! runtime image built into the demo's data dir; `--no-libos` skips that step).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use cella_client::{Client, ServerTrust, UploadSource, proto};
use cella_crypto::FileKey;
use cella_platform::NodeConfig;
use cella_server::{RunningNode, ServerConfig, default_executors};
use cella_types::Digest;

/// Arguments of `cella demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Keep the node's data dir instead of deleting it (for a look around).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Skip the LibOS step (the Python PSI in the sandbox), e.g. on a machine without user
    /// namespaces or Landlock.
    #[arg(long)]
    pub(crate) no_libos: bool,
}

/// The Python PSI run by the LibOS step.
const PSI_PY: &str = include_str!("../../../examples/libos/psi.py");

/// Builds the python3 image into the node's data dir and writes the node's LibOS
/// configuration (sandbox backend, one warm instance); returns the configuration's path.
fn prepare_libos(config: &NodeConfig, log: &Log) -> anyhow::Result<std::path::PathBuf> {
    let python = cella_image::default_python().context("the demo's LibOS step needs Python")?;
    std::fs::create_dir_all(&config.data_dir)?;
    let image = cella_image::ImageStore::new(&config.data_dir)
        .build_python3(&python, "python3")
        .context("building the python3 runtime image")?;
    log.step(
        "node",
        format!(
            "built runtime image python3 from {}: {} files, {:.1} MiB, measurement {}…",
            python.display(),
            image.files,
            image.size_bytes as f64 / f64::from(1u32 << 20),
            &image.measurement[..16]
        ),
    );
    let path = config.data_dir.join("libos.toml");
    std::fs::write(
        &path,
        "backend = \"sandbox\"\nimages = [\"python3\"]\n\n[pool]\nwarm = 1\nmax = 2\n",
    )?;
    Ok(path)
}

/// The LibOS step: the banks run `examples/libos/psi.py` on their lists, in the sandbox.
async fn libos_psi(
    log: &Log,
    fo: &Party,
    bank_a: &Party,
    bank_b: &Party,
) -> anyhow::Result<serde_json::Value> {
    let slot_spec = |name: &str| proto::SlotSpec {
        name: name.into(),
        optional: false,
    };
    let spec = proto::FunctionSpec {
        name: "customer-overlap-python".into(),
        description: "Private set intersection in Python (examples/libos/psi.py)".into(),
        executor: "libos".into(),
        runtime: "python3".into(),
        inputs: vec![slot_spec("left"), slot_spec("right")],
        outputs: vec![slot_spec("result_a"), slot_spec("result_b")],
        public: false,
        allowed_users: vec!["bank-a".into(), "bank-b".into()],
        ..Default::default()
    };
    let function = fo
        .client
        .register_function(spec, PSI_PY.as_bytes().to_vec())
        .await?;
    log.step(
        "fo",
        format!(
            "registered {} (libos, runtime python3: examples/libos/psi.py)",
            function.function_id
        ),
    );
    let in_a = upload(bank_a, BANK_A).await?;
    let in_b = upload(bank_b, BANK_B).await?;
    let key_a = FileKey::generate();
    let key_b = FileKey::generate();
    let out_a = bank_a
        .client
        .register_output(crypto(&key_a), None)
        .await?
        .file_id;
    let out_b = bank_b
        .client
        .register_output(crypto(&key_b), None)
        .await?
        .file_id;
    let owners = |slot: &str, who: &str| proto::SlotOwners {
        slot: slot.into(),
        owners: vec![who.into()],
    };
    let task = bank_a
        .client
        .create_task(
            &function.function_id,
            HashMap::new(),
            vec![owners("left", "bank-a"), owners("right", "bank-b")],
            vec![owners("result_a", "bank-a"), owners("result_b", "bank-b")],
        )
        .await?;
    let task_id = task.task_id.clone();
    let slot_file = |slot: &str, id: &str| proto::SlotFile {
        slot: slot.into(),
        file_id: id.into(),
    };
    bank_a
        .client
        .assign_data(
            &task_id,
            vec![slot_file("left", &in_a)],
            vec![slot_file("result_a", &out_a)],
        )
        .await?;
    bank_b
        .client
        .assign_data(
            &task_id,
            vec![slot_file("right", &in_b)],
            vec![slot_file("result_b", &out_b)],
        )
        .await?;
    for p in [bank_a, bank_b, fo] {
        let seen = p.client.get_task(&task_id).await?;
        p.client.approve_task(&task_id, &seen.task_digest).await?;
    }
    log.step(
        "all",
        format!("uploaded, assigned and approved {task_id} (the Python PSI)"),
    );
    let mut watch = bank_b.client.watch_task(&task_id).await?;
    bank_a.client.invoke_task(&task_id).await?;
    let mut last = None;
    while let Some(update) = watch.next_update().await? {
        last = Some(update);
    }
    let done = last.context("the watch ended without an update")?;
    let status = proto::TaskStatus::try_from(done.status).unwrap_or_default();
    if status != proto::TaskStatus::Finished {
        bail!("the Python PSI ended {status:?}: {}", done.reason);
    }
    log.step(
        "libos",
        "the sandbox ran psi.py (attested instance, read-only image root, no network, seccomp, Landlock) and signed a receipt",
    );
    let mut outputs = serde_json::Map::new();
    for (p, out, key) in [(bank_a, &out_a, &key_a), (bank_b, &out_b, &key_b)] {
        let mut sealed = Vec::new();
        p.client.download_file(out, &mut sealed, None).await?;
        let plain = cella_crypto::stream::unseal_to_vec(&sealed, key)?;
        let text = String::from_utf8(plain).context("the output is not UTF-8")?;
        let ids: Vec<&str> = text.lines().filter_map(|l| l.split(',').next()).collect();
        log.step(
            p.name,
            format!("decrypted the Python PSI's output: {}", ids.join(", ")),
        );
        outputs.insert(p.name.into(), ids.into());
    }
    Ok(serde_json::json!({ "task_id": task_id, "outputs": outputs }))
}

/// Bank A's customers: "national id,name" per line.
const BANK_A: &str = "id-1001,Alice Martin\nid-1002,Bob Okafor\nid-1003,Chloe Durand\nid-1004,Dmitri Ivanov\nid-1005,Emma Rossi\n";
/// Bank B's customers.
const BANK_B: &str = "id-1003,Chloe Durand\nid-1006,Farah Haddad\nid-1001,Alice Martin\nid-1007,Gustav Berg\nid-1005,Emma Rossi\n";

struct Log {
    started: Instant,
    quiet: bool,
}

impl Log {
    fn step(&self, who: &str, what: impl AsRef<str>) {
        if !self.quiet {
            eprintln!(
                "[{:>6.1} ms] {who:<8} {}",
                self.started.elapsed().as_secs_f64() * 1e3,
                what.as_ref()
            );
        }
    }
}

fn random_password() -> String {
    // 32 hex characters of a fresh random key: 128 bits.
    FileKey::generate().to_hex()[..32].to_owned()
}

fn crypto(key: &FileKey) -> proto::FileCrypto {
    proto::FileCrypto {
        schema: "cella-sealed-v1".into(),
        key: key.as_bytes().to_vec(),
    }
}

struct Party {
    name: &'static str,
    client: Client,
}

/// How the demo's clients reach its node: attested, under the policy the node wrote for
/// itself, which allows simulation explicitly (the demo runs without an enclave).
struct NodeAccess {
    addr: String,
    trust: ServerTrust,
}

impl NodeAccess {
    fn new(node: &RunningNode, config: &NodeConfig) -> anyhow::Result<Self> {
        let path = config
            .data_dir
            .join("tls")
            .join("attestation-policy.sim.toml");
        let policy = cella_attest::Policy::load(&path)
            .with_context(|| format!("attestation policy {}", path.display()))?;
        ensure!(
            policy
                .role(cella_attest::policy::roles::NODE)
                .is_some_and(|r| r.allow_simulation),
            "the demo's attestation policy must allow simulation explicitly"
        );
        Ok(Self {
            addr: node.addr().to_string(),
            trust: ServerTrust::attested(policy),
        })
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect_with_trust(&self.addr, self.trust.clone()).await?)
    }
}

async fn user(
    node: &NodeAccess,
    admin: &Client,
    name: &'static str,
    role: &str,
) -> anyhow::Result<Party> {
    let password = random_password();
    admin
        .register_user(name, &password, &[role.to_owned()])
        .await
        .with_context(|| format!("registering {name}"))?;
    let mut client = node.connect().await?;
    client.login(name, &password).await?;
    Ok(Party { name, client })
}

/// Encrypts `plaintext` locally and uploads the ciphertext: the key travels only over the
/// node's TLS channel and is stored sealed.
async fn upload(p: &Party, plaintext: &str) -> anyhow::Result<String> {
    let key = FileKey::generate();
    let sealed = cella_crypto::stream::seal_to_vec(plaintext.as_bytes(), &key)?;
    let digest = Digest::of(&sealed).to_hex();
    let info = p
        .client
        .upload_input(
            UploadSource::reader(std::io::Cursor::new(sealed)),
            crypto(&key),
            &digest,
            None,
        )
        .await?;
    Ok(info.file_id)
}

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs, json: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = Log {
        started,
        quiet: false,
    };
    let dir = tempfile::Builder::new().prefix("cella-demo-").tempdir()?;
    let mut node_config = NodeConfig::new(dir.path().join("node"));
    node_config.workers = 2;
    if !args.no_libos {
        node_config.libos_config = Some(
            prepare_libos(&node_config, &log)
                .context("preparing the LibOS step (skip it with --no-libos)")?,
        );
    }
    let node = RunningNode::start(
        ServerConfig::new(node_config.clone(), SocketAddr::from(([127, 0, 0, 1], 0))),
        default_executors(&node_config)?,
    )
    .await
    .context("starting the demo node (if the sandbox is what failed, --no-libos skips it)")?;
    log.step(
        "node",
        format!(
            "listening on {} (TLS, data in {})",
            node.addr(),
            dir.path().display()
        ),
    );

    let admin_password = std::fs::read_to_string(node_config.admin_password_path())?;
    let access = NodeAccess::new(&node, &node_config)?;
    log.step(
        "attest",
        "clients attest the node under its policy (simulation allowed explicitly: no enclave)",
    );
    let mut admin = access.connect().await?;
    admin.login("admin", admin_password.trim()).await?;
    let fo = user(&access, &admin, "fo", "function_owner").await?;
    let bank_a = user(&access, &admin, "bank-a", "data_owner").await?;
    let bank_b = user(&access, &admin, "bank-b", "data_owner").await?;
    log.step(
        "admin",
        "registered users fo (function owner), bank-a and bank-b (data owners)",
    );

    let slot_spec = |name: &str| proto::SlotSpec {
        name: name.into(),
        optional: false,
    };
    let spec = proto::FunctionSpec {
        name: "customer-overlap".into(),
        description: "Private set intersection of two customer lists".into(),
        executor: "builtin".into(),
        inputs: vec![slot_spec("customers_a"), slot_spec("customers_b")],
        outputs: vec![slot_spec("overlap_a"), slot_spec("overlap_b")],
        public: false,
        allowed_users: vec!["bank-a".into(), "bank-b".into()],
        ..Default::default()
    };
    let function = fo
        .client
        .register_function(spec, b"ordered_set_intersect".to_vec())
        .await?;
    log.step(
        "fo",
        format!(
            "registered {} (builtin ordered_set_intersect)",
            function.function_id
        ),
    );

    let in_a = upload(&bank_a, BANK_A).await?;
    let in_b = upload(&bank_b, BANK_B).await?;
    log.step(
        "banks",
        "encrypted their customer lists locally and uploaded the ciphertexts",
    );
    let key_a = FileKey::generate();
    let key_b = FileKey::generate();
    let out_a = bank_a
        .client
        .register_output(crypto(&key_a), None)
        .await?
        .file_id;
    let out_b = bank_b
        .client
        .register_output(crypto(&key_b), None)
        .await?
        .file_id;
    log.step(
        "banks",
        "registered output places, each under a key only it holds",
    );

    let owners = |slot: &str, who: &str| proto::SlotOwners {
        slot: slot.into(),
        owners: vec![who.into()],
    };
    let task = bank_a
        .client
        .create_task(
            &function.function_id,
            HashMap::new(),
            vec![
                owners("customers_a", "bank-a"),
                owners("customers_b", "bank-b"),
            ],
            vec![owners("overlap_a", "bank-a"), owners("overlap_b", "bank-b")],
        )
        .await?;
    let task_id = task.task_id.clone();
    log.step("bank-a", format!("created {task_id}"));
    let slot_file = |slot: &str, id: &str| proto::SlotFile {
        slot: slot.into(),
        file_id: id.into(),
    };
    bank_a
        .client
        .assign_data(
            &task_id,
            vec![slot_file("customers_a", &in_a)],
            vec![slot_file("overlap_a", &out_a)],
        )
        .await?;
    let task = bank_b
        .client
        .assign_data(
            &task_id,
            vec![slot_file("customers_b", &in_b)],
            vec![slot_file("overlap_b", &out_b)],
        )
        .await?;
    log.step("banks", "assigned their files to their slots");

    for p in [&bank_a, &bank_b, &fo] {
        // Each participant approves the digest of exactly what will run.
        let seen = p.client.get_task(&task_id).await?;
        ensure!(
            seen.task_digest == task.task_digest,
            "{} saw a different task digest",
            p.name
        );
        p.client.approve_task(&task_id, &seen.task_digest).await?;
    }
    log.step(
        "all",
        format!("approved task digest {}", &task.task_digest[..16]),
    );

    let mut watch = bank_b.client.watch_task(&task_id).await?;
    bank_a.client.invoke_task(&task_id).await?;
    log.step("bank-a", "invoked the task");
    let mut last = None;
    while let Some(update) = watch.next_update().await? {
        let status = proto::TaskStatus::try_from(update.status).unwrap_or_default();
        log.step(
            "bank-b",
            format!(
                "watch: {}",
                status.as_str_name().trim_start_matches("TASK_STATUS_")
            ),
        );
        last = Some(update);
    }
    let done = last.context("the watch ended without an update")?;
    let status = proto::TaskStatus::try_from(done.status).unwrap_or_default();
    if status != proto::TaskStatus::Finished {
        bail!("the task ended {status:?}: {}", done.reason);
    }

    let mut outputs = serde_json::Map::new();
    for (p, out, key) in [(&bank_a, &out_a, &key_a), (&bank_b, &out_b, &key_b)] {
        let mut sealed = Vec::new();
        p.client.download_file(out, &mut sealed, None).await?;
        let plain = cella_crypto::stream::unseal_to_vec(&sealed, key)?;
        let text = String::from_utf8(plain).context("the output is not UTF-8")?;
        let ids: Vec<&str> = text.lines().filter_map(|l| l.split(',').next()).collect();
        log.step(
            p.name,
            format!("downloaded and decrypted its output: {}", ids.join(", ")),
        );
        outputs.insert(p.name.into(), ids.into());
    }
    let libos = if args.no_libos {
        serde_json::Value::Null
    } else {
        libos_psi(&log, &fo, &bank_a, &bank_b)
            .await
            .context("the LibOS step (skip it with --no-libos)")?
    };
    if let Some(libos_out) = libos.get("outputs") {
        ensure!(
            libos_out.get("bank-a") == outputs.get("bank-a"),
            "the Python PSI and the builtin disagree"
        );
    }
    let elapsed_ms = started.elapsed().as_millis();
    node.shutdown().await;
    if args.keep {
        let kept = dir.keep();
        eprintln!("data dir kept at {}", kept.display());
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "task_id": task_id,
                "status": "Finished",
                "outputs": outputs,
                "libos": libos,
                "elapsed_ms": elapsed_ms,
            })
        );
    } else {
        eprintln!("done in {elapsed_ms} ms: each bank learned only the customers they share.");
    }
    Ok(())
}
