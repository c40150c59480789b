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
    // The demo must run for any user on any machine, and an unprivileged user has no
    // writable cgroup: it accepts per-process limits there, explicitly and said aloud,
    // as an operator would have to (docs/sandbox.md). Where a cgroup is writable (root)
    // the instance gets it all the same.
    log.step(
        "node",
        "LibOS configuration: sandbox backend; accept_per_process_limits = true, so where no \
         cgroup is writable (an unprivileged user) instance memory is bounded per process only",
    );
    let path = config.data_dir.join("libos.toml");
    std::fs::write(
        &path,
        "backend = \"sandbox\"\nimages = [\"python3\"]\n\n[pool]\nwarm = 1\nmax = 2\n\n\
         [sandbox]\naccept_per_process_limits = true\n",
    )?;
    Ok(path)
}

/// The LibOS step: the banks run `examples/libos/psi.py` on their lists, in the sandbox.
async fn libos_psi(log: &Log, parties: &Parties) -> anyhow::Result<Outcome> {
    let slots = Slots {
        inputs: ["left", "right"],
        outputs: ["result_a", "result_b"],
    };
    let spec = proto::FunctionSpec {
        name: "customer-overlap-python".into(),
        description: "Private set intersection in Python (examples/libos/psi.py)".into(),
        executor: "libos".into(),
        runtime: "python3".into(),
        ..slots.spec(parties)
    };
    let function = parties
        .fo
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
    let detail = Detail::Brief {
        name: "the Python PSI",
        ran: (
            "libos",
            "the sandbox ran psi.py (attested instance, read-only image root, no network, seccomp, Landlock) and signed a receipt",
        ),
    };
    run_task(log, parties, &function.function_id, &slots, &detail).await
}

/// Bank A's customers: "national id,name" per line.
const BANK_A: &str = "id-1001,Alice Martin\nid-1002,Bob Okafor\nid-1003,Chloe Durand\nid-1004,Dmitri Ivanov\nid-1005,Emma Rossi\n";
/// Bank B's customers.
const BANK_B: &str = "id-1003,Chloe Durand\nid-1006,Farah Haddad\nid-1001,Alice Martin\nid-1007,Gustav Berg\nid-1005,Emma Rossi\n";

/// The demo's participants: the function owner and the two banks (bank A, with `BANK_A`'s
/// list, creates and invokes the tasks; bank B, with `BANK_B`'s, watches them).
struct Parties {
    fo: Party,
    banks: [Party; 2],
}

/// The slots of a function the two banks run: one input and one output each, bank A's
/// first.
struct Slots {
    inputs: [&'static str; 2],
    outputs: [&'static str; 2],
}

impl Slots {
    /// A private function with these slots that only the two banks may use; the caller
    /// fills in its name, description, executor and runtime.
    fn spec(&self, parties: &Parties) -> proto::FunctionSpec {
        let slot_specs = |names: [&str; 2]| {
            names
                .map(|name| proto::SlotSpec {
                    name: name.into(),
                    optional: false,
                })
                .to_vec()
        };
        proto::FunctionSpec {
            inputs: slot_specs(self.inputs),
            outputs: slot_specs(self.outputs),
            public: false,
            allowed_users: parties.banks.iter().map(|b| b.name.into()).collect(),
            ..Default::default()
        }
    }
}

/// How much of a task run the demo logs.
enum Detail {
    /// Every step, with each status bank B's watch reports.
    Steps,
    /// One line once the task is approved, one once it finished, one per decrypted output.
    Brief {
        /// What the run is called in the log and in errors.
        name: &'static str,
        /// Who ran the task and how, logged once it finished.
        ran: (&'static str, &'static str),
    },
}

impl Detail {
    /// What the run is called in errors.
    fn name(&self) -> &'static str {
        match self {
            Self::Steps => "the task",
            Self::Brief { name, .. } => name,
        }
    }
}

/// What a task run produced.
struct Outcome {
    task_id: String,
    /// Each bank's decrypted output: the ids of the customers the two banks share.
    outputs: serde_json::Map<String, serde_json::Value>,
}

/// Runs `function_id` for the two banks: each uploads its encrypted list and registers an
/// output place under a key only it holds, bank A creates the task (each slot owned by its
/// bank), each bank assigns its files, every participant approves the digest it sees (all
/// must see the same one), bank A invokes while bank B watches, and once the task finished
/// each bank downloads and decrypts its output.
async fn run_task(
    log: &Log,
    parties: &Parties,
    function_id: &str,
    slots: &Slots,
    detail: &Detail,
) -> anyhow::Result<Outcome> {
    let step = |who: &str, what: String| {
        if matches!(detail, Detail::Steps) {
            log.step(who, what);
        }
    };
    let [bank_a, bank_b] = &parties.banks;
    let mut inputs = Vec::new();
    for (bank, list) in parties.banks.iter().zip([BANK_A, BANK_B]) {
        inputs.push(upload(bank, list).await?);
    }
    step(
        "banks",
        "encrypted their customer lists locally and uploaded the ciphertexts".into(),
    );
    let mut outputs = Vec::new();
    for bank in &parties.banks {
        let key = FileKey::generate();
        let file_id = bank
            .client
            .register_output(crypto(&key), None)
            .await?
            .file_id;
        outputs.push((file_id, key));
    }
    step(
        "banks",
        "registered output places, each under a key only it holds".into(),
    );

    let owners = |names: [&str; 2]| {
        names
            .iter()
            .zip(&parties.banks)
            .map(|(slot, bank)| proto::SlotOwners {
                slot: (*slot).into(),
                owners: vec![bank.name.into()],
            })
            .collect()
    };
    let mut task = bank_a
        .client
        .create_task(
            function_id,
            HashMap::new(),
            owners(slots.inputs),
            owners(slots.outputs),
        )
        .await?;
    let task_id = task.task_id.clone();
    step(bank_a.name, format!("created {task_id}"));
    let slot_file = |slot: &str, id: &str| {
        vec![proto::SlotFile {
            slot: slot.into(),
            file_id: id.into(),
        }]
    };
    for (i, bank) in parties.banks.iter().enumerate() {
        task = bank
            .client
            .assign_data(
                &task_id,
                slot_file(slots.inputs[i], &inputs[i]),
                slot_file(slots.outputs[i], &outputs[i].0),
            )
            .await?;
    }
    step("banks", "assigned their files to their slots".into());

    for p in [bank_a, bank_b, &parties.fo] {
        // Each participant approves the digest of exactly what will run.
        let seen = p.client.get_task(&task_id).await?;
        ensure!(
            seen.task_digest == task.task_digest,
            "{} saw a different task digest",
            p.name
        );
        p.client.approve_task(&task_id, &seen.task_digest).await?;
    }
    match detail {
        Detail::Steps => log.step(
            "all",
            format!("approved task digest {}", &task.task_digest[..16]),
        ),
        Detail::Brief { name, .. } => log.step(
            "all",
            format!("uploaded, assigned and approved {task_id} ({name})"),
        ),
    }

    let mut watch = bank_b.client.watch_task(&task_id).await?;
    bank_a.client.invoke_task(&task_id).await?;
    step(bank_a.name, "invoked the task".into());
    let mut last = None;
    while let Some(update) = watch.next_update().await? {
        let status = proto::TaskStatus::try_from(update.status).unwrap_or_default();
        step(
            bank_b.name,
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
        bail!("{} ended {status:?}: {}", detail.name(), done.reason);
    }
    if let Detail::Brief {
        ran: (who, how), ..
    } = detail
    {
        log.step(who, how);
    }

    let mut decrypted = serde_json::Map::new();
    for (p, (out, key)) in parties.banks.iter().zip(&outputs) {
        let mut sealed = Vec::new();
        p.client.download_file(out, &mut sealed, None).await?;
        let plain = cella_crypto::stream::unseal_to_vec(&sealed, key)?;
        let text = String::from_utf8(plain).context("the output is not UTF-8")?;
        let ids: Vec<&str> = text.lines().filter_map(|l| l.split(',').next()).collect();
        let what = match detail {
            Detail::Steps => "downloaded and decrypted its output".to_owned(),
            Detail::Brief { name, .. } => format!("decrypted {name}'s output"),
        };
        log.step(p.name, format!("{what}: {}", ids.join(", ")));
        decrypted.insert(p.name.into(), ids.into());
    }
    Ok(Outcome {
        task_id,
        outputs: decrypted,
    })
}
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
    let parties = Parties {
        fo: user(&access, &admin, "fo", "function_owner").await?,
        banks: [
            user(&access, &admin, "bank-a", "data_owner").await?,
            user(&access, &admin, "bank-b", "data_owner").await?,
        ],
    };
    log.step(
        "admin",
        "registered users fo (function owner), bank-a and bank-b (data owners)",
    );

    let slots = Slots {
        inputs: ["customers_a", "customers_b"],
        outputs: ["overlap_a", "overlap_b"],
    };
    let spec = proto::FunctionSpec {
        name: "customer-overlap".into(),
        description: "Private set intersection of two customer lists".into(),
        executor: "builtin".into(),
        ..slots.spec(&parties)
    };
    let function = parties
        .fo
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
    let builtin = run_task(
        &log,
        &parties,
        &function.function_id,
        &slots,
        &Detail::Steps,
    )
    .await?;

    let libos = if args.no_libos {
        None
    } else {
        Some(
            libos_psi(&log, &parties)
                .await
                .context("the LibOS step (skip it with --no-libos)")?,
        )
    };
    if let Some(libos) = &libos {
        ensure!(
            libos.outputs.get("bank-a") == builtin.outputs.get("bank-a"),
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
                "task_id": builtin.task_id,
                "status": "Finished",
                "outputs": builtin.outputs,
                "libos": libos.map(|l| serde_json::json!({ "task_id": l.task_id, "outputs": l.outputs })),
                "elapsed_ms": elapsed_ms,
            })
        );
    } else {
        eprintln!("done in {elapsed_ms} ms: each bank learned only the customers they share.");
    }
    Ok(())
}
