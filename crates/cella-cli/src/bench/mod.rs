//! `cella bench`: measures a node started in this process, over loopback gRPC and TLS,
//! and runs its baselines in the same command so figures compare like with like on a
//! noisy machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cella_client::{Client, proto};
use cella_platform::NodeConfig;
use cella_server::{RunningNode, ServerConfig, default_executors};
use serde_json::json;
use tokio::sync::Mutex;

mod crypto;
mod libos;
mod sandbox;
mod wasm;

/// Arguments of `cella bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Sequential invocations timed for the latency figures.
    #[arg(long, default_value_t = 300)]
    pub(crate) latency_tasks: usize,
    /// Tasks run for the throughput figure.
    #[arg(long, default_value_t = 2000)]
    pub(crate) throughput_tasks: usize,
    /// Concurrent clients for the throughput figure, each on its own connection.
    #[arg(long, default_value_t = 32)]
    pub(crate) clients: usize,
    /// Execution workers of the node.
    #[arg(long, default_value_t = 4)]
    pub(crate) workers: usize,
    /// MiB sealed and unsealed for the throughput of the sealed file format.
    #[arg(long, default_value_t = 256)]
    pub(crate) seal_mib: usize,
    /// Samples of each sandbox figure (cold start, hello-world task); 0 skips them.
    #[arg(long, default_value_t = 20)]
    pub(crate) sandbox_samples: usize,
    /// Idle pooled sandbox instances for the memory figure.
    #[arg(long, default_value_t = 4)]
    pub(crate) sandbox_idle: usize,
    /// The Python interpreter the sandbox figures build their image from.
    #[arg(long, default_value = "/usr/bin/python3")]
    pub(crate) python: std::path::PathBuf,
    /// An empty PostgreSQL database (`postgres://user@host:port/db`): also measure the
    /// builtin e2e latency and the throughput on a node whose store is there
    /// (`pg_e2e_p50_ms`, `pg_tasks_per_s`; null without it).
    #[arg(long, value_name = "URL")]
    pub(crate) postgres: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The sandbox backend's figures, each beside its baseline (see [`sandbox`]).
async fn sandbox_figures(args: &BenchArgs) -> anyhow::Result<serde_json::Value> {
    use sandbox::median;
    let cfg = sandbox::BenchConfig {
        exe: std::env::current_exe().context("locating this binary")?,
        python: args.python.clone(),
        samples: args.sandbox_samples,
        idle_instances: args.sandbox_idle,
    };
    let r = sandbox::run(&cfg).await?;
    let cold = ms(median(&r.cold_start));
    let bwrap = r.bwrap.as_deref().map(|b| ms(median(b)));
    let mock_cold = ms(median(&r.mock_cold_start));
    eprintln!(
        "  of which attestation (the same launch on the in-process mock backend): {mock_cold:.1} ms"
    );
    match bwrap {
        Some(b) => eprintln!(
            "sandbox cold start (launch → attested → ready): median {cold:.1} ms; bwrap --unshare-all /bin/true {b:.1} ms; ratio {:.2}",
            cold / b
        ),
        None => eprintln!(
            "sandbox cold start (launch → attested → ready): median {cold:.1} ms; bwrap baseline skipped (bwrap is not installed; scripts/bench.sh installs it)"
        ),
    }
    let (task_cold, task_warm, direct) = (
        ms(median(&r.task_cold)),
        ms(median(&r.task_warm)),
        ms(median(&r.python_direct)),
    );
    eprintln!(
        "python hello-world task: cold {task_cold:.1} ms ({:.2}× direct), warm pool {task_warm:.1} ms ({:.2}× direct); python3 hello.py directly {direct:.1} ms",
        task_cold / direct,
        task_warm / direct
    );
    let pss_mib = r.idle_pss_bytes.map(|b| b as f64 / f64::from(1u32 << 20));
    eprintln!(
        "host memory per idle pooled instance (PSS over {} instances): {}",
        r.idle_instances,
        pss_mib.map_or("unavailable".into(), |m| format!("{m:.2} MiB"))
    );
    let by_process: serde_json::Map<String, serde_json::Value> = r
        .idle_pss_by_process
        .iter()
        .map(|(name, b)| (name.clone(), json!(*b as f64 / f64::from(1u32 << 20))))
        .collect();
    eprintln!("  by process (MiB per instance): {by_process:?}");
    Ok(json!({
        "idle_pss_mib_by_process": by_process,
        "cold_start_ms": cold,
        "mock_cold_start_ms": mock_cold,
        "bwrap_ms": bwrap,
        "cold_start_vs_bwrap": bwrap.map(|b| cold / b),
        "hello_cold_ms": task_cold,
        "hello_warm_ms": task_warm,
        "python_direct_ms": direct,
        "hello_cold_vs_direct": task_cold / direct,
        "hello_warm_vs_direct": task_warm / direct,
        "idle_instance_pss_mib": pss_mib,
        "idle_instances": r.idle_instances,
        "samples": args.sandbox_samples,
    }))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * (sorted.len() - 1) as f64).round();
    // rank is within 0..len by construction.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "0 <= rank < len"
    )]
    let i = rank as usize;
    sorted[i].as_secs_f64() * 1e3
}

struct Bench {
    node: RunningNode,
    owner: Client,
    /// The builtin `echo` function.
    echo: String,
    /// `examples/wasm/echo.wat` as a wasm function.
    wasm_echo: String,
    _dir: tempfile::TempDir,
}

async fn connect(node: &RunningNode, user: &str, password: &str) -> anyhow::Result<Client> {
    let mut c = Client::connect(&node.addr().to_string(), node.cert_pem().as_bytes()).await?;
    c.login(user, password).await?;
    Ok(c)
}

impl Bench {
    async fn start(workers: usize, store_url: Option<String>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cella-bench-").tempdir()?;
        let mut config = NodeConfig::new(dir.path().join("node"));
        config.workers = workers;
        config.store_url = store_url;
        // Every figure here comes from one user, and by default one user runs one task
        // fewer than the workers (`docs/scheduling.md`): that keeps a worker free for
        // other tenants, it is not the node's speed. Let the bench's one tenant use them all.
        config.max_running_per_user = Some(workers);
        let node = RunningNode::start(
            ServerConfig::new(config.clone(), SocketAddr::from(([127, 0, 0, 1], 0))),
            default_executors(&config)?,
        )
        .await?;
        let admin_pw = std::fs::read_to_string(config.admin_password_path())?;
        let admin = connect(&node, "admin", admin_pw.trim()).await?;
        admin
            .register_user(
                "bench",
                "bench password 1",
                &["function_owner".into(), "data_owner".into()],
            )
            .await?;
        let owner = connect(&node, "bench", "bench password 1").await?;
        let spec = proto::FunctionSpec {
            name: "echo".into(),
            executor: "builtin".into(),
            arguments: vec![proto::ArgumentSpec {
                name: "message".into(),
                default_value: Some("hello".into()),
                overridable: true,
            }],
            public: true,
            ..Default::default()
        };
        let echo = owner
            .register_function(spec.clone(), b"echo".to_vec())
            .await?
            .function_id;
        let wasm_spec = proto::FunctionSpec {
            name: "wasm-echo".into(),
            executor: "wasm".into(),
            ..spec
        };
        let wasm_echo = owner
            .register_function(wasm_spec, wasm::ECHO_WASM.to_vec())
            .await?
            .function_id;
        Ok(Self {
            node,
            owner,
            echo,
            wasm_echo,
            _dir: dir,
        })
    }

    /// Creates and approves `n` tasks of `function` (not timed).
    async fn approved_tasks(&self, function: &str, n: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let t = self
                .owner
                .create_task(function, HashMap::new(), vec![], vec![])
                .await?;
            self.owner.approve_task(&t.task_id, &t.task_digest).await?;
            ids.push(t.task_id);
        }
        Ok(ids)
    }
}

/// Invokes an approved task and waits for Finished on a watch opened before the invoke.
async fn invoke_and_wait(c: &Client, task: &str) -> anyhow::Result<()> {
    let mut watch = c.watch_task(task).await?;
    c.invoke_task(task).await?;
    while let Some(t) = watch.next_update().await? {
        match proto::TaskStatus::try_from(t.status) {
            Ok(proto::TaskStatus::Finished) => return Ok(()),
            Ok(proto::TaskStatus::Failed | proto::TaskStatus::Canceled) => {
                bail!("task {task} ended: {}", t.reason)
            }
            _ => {}
        }
    }
    bail!("the watch of {task} ended before the task finished")
}

/// Times `n` sequential invocations of approved tasks of `function` after 20 warm-up
/// ones: (p50 ms, p99 ms, samples).
async fn latency(bench: &Bench, function: &str, n: usize) -> anyhow::Result<(f64, f64, usize)> {
    let ids = bench.approved_tasks(function, n + 20).await?;
    for id in &ids[..20] {
        invoke_and_wait(&bench.owner, id).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for id in &ids[20..] {
        let t0 = Instant::now();
        invoke_and_wait(&bench.owner, id).await?;
        samples.push(t0.elapsed());
    }
    samples.sort();
    Ok((
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len(),
    ))
}

/// Tasks per second of `tasks` builtin echo tasks invoked by `clients` concurrent
/// clients, each on its own connection, each waiting for its task to finish.
async fn throughput(bench: &Bench, tasks: usize, clients: usize) -> anyhow::Result<f64> {
    let ids = bench.approved_tasks(&bench.echo, tasks).await?;
    let queue = Arc::new(Mutex::new(ids));
    let mut conns = Vec::new();
    for _ in 0..clients.max(1) {
        conns.push(connect(&bench.node, "bench", "bench password 1").await?);
    }
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for c in conns {
        let queue = Arc::clone(&queue);
        handles.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().await.pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                invoke_and_wait(&c, &id).await?;
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(tasks as f64 / t0.elapsed().as_secs_f64())
}

/// `openssl speed -evp aes-256-gcm -bytes 16384` in GB/s, when openssl is installed.
fn openssl_gbps() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-gcm",
            "-bytes",
            "16384",
            "-seconds",
            "3",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line is "AES-256-GCM <N>k": N thousand bytes per second.
    let last = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_uppercase().contains("AES-256-GCM"))?;
    let kbytes: f64 = last
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kbytes * 1e3 / 1e9)
}

/// Runs the benchmark.
pub(crate) async fn run(args: BenchArgs, json_out: bool) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; run `cargo run --release -- bench` for real figures"
        );
    }
    let bench = Bench::start(args.workers, None)
        .await
        .context("starting the bench node")?;

    // Latency: invoke of an approved task → Finished observed by the client.
    let (p50, p99, n) = latency(&bench, &bench.echo, args.latency_tasks).await?;
    eprintln!("e2e latency (builtin echo): p50 {p50:.2} ms, p99 {p99:.2} ms over {n} tasks");
    let (wasm_p50, wasm_p99, _) = latency(&bench, &bench.wasm_echo, args.latency_tasks).await?;
    eprintln!("e2e latency (wasm echo): p50 {wasm_p50:.2} ms, p99 {wasm_p99:.2} ms");
    let mut instantiate = tokio::task::spawn_blocking(|| wasm::instantiate_latency(2000))
        .await?
        .map_err(|e| anyhow::anyhow!("wasm instantiate benchmark: {e}"))?;
    instantiate.sort();
    let instantiate_p50_us = percentile(&instantiate, 0.5) * 1e3;
    eprintln!("wasm instantiate of a cached module: p50 {instantiate_p50_us:.1} µs");

    // LibOS dispatch overhead on a warm pooled mock instance.
    let mut dispatch = libos::dispatch_overhead(300)
        .await
        .map_err(|e| anyhow::anyhow!("libos dispatch benchmark: {e}"))?;
    dispatch.sort();
    let (libos_p50, libos_p99) = (percentile(&dispatch, 0.5), percentile(&dispatch, 0.99));
    eprintln!(
        "libos dispatch overhead (warm mock instance): p50 {libos_p50:.2} ms, p99 {libos_p99:.2} ms"
    );

    let tasks_per_s = throughput(&bench, args.throughput_tasks, args.clients).await?;
    eprintln!(
        "throughput: {tasks_per_s:.0} tasks/s with {} clients",
        args.clients
    );
    bench.node.shutdown().await;

    // The same two figures on a node whose metadata store is PostgreSQL.
    let (pg_p50, pg_tasks_per_s) = match &args.postgres {
        Some(url) => {
            let pg = Bench::start(args.workers, Some(url.clone()))
                .await
                .context("starting the bench node on PostgreSQL")?;
            let (pg_p50, _, _) = latency(&pg, &pg.echo, args.latency_tasks).await?;
            let pg_tasks = throughput(&pg, args.throughput_tasks, args.clients).await?;
            eprintln!("on PostgreSQL: e2e p50 {pg_p50:.2} ms, throughput {pg_tasks:.0} tasks/s");
            pg.node.shutdown().await;
            (Some(pg_p50), Some(pg_tasks))
        }
        None => (None, None),
    };

    // The sealed file format against openssl's AES-256-GCM on this machine.
    let (seal_gbps, unseal_gbps) =
        tokio::task::spawn_blocking(move || crypto::seal_throughput(args.seal_mib << 20)).await?;
    let openssl = tokio::task::spawn_blocking(openssl_gbps).await?;
    eprintln!(
        "sealed files: seal {seal_gbps:.2} GB/s, unseal {unseal_gbps:.2} GB/s; openssl aes-256-gcm {}",
        openssl.map_or("not installed".into(), |g| format!("{g:.2} GB/s"))
    );

    let sandbox = if args.sandbox_samples == 0 {
        serde_json::Value::Null
    } else {
        sandbox_figures(&args)
            .await
            .context("the sandbox figures (skip them with --sandbox-samples 0)")?
    };

    let report = json!({
        "sandbox": sandbox,
        "e2e_p50_ms": p50,
        "e2e_p99_ms": p99,
        "e2e_samples": n,
        "wasm_e2e_p50_ms": wasm_p50,
        "wasm_e2e_p99_ms": wasm_p99,
        "wasm_instantiate_p50_us": instantiate_p50_us,
        "libos_dispatch_p50_ms": libos_p50,
        "libos_dispatch_p99_ms": libos_p99,
        "tasks_per_s": tasks_per_s,
        "pg_e2e_p50_ms": pg_p50,
        "pg_tasks_per_s": pg_tasks_per_s,
        "pg_vs_redb_tasks_per_s": pg_tasks_per_s.map(|t| t / tasks_per_s),
        "clients": args.clients,
        "workers": args.workers,
        "seal_gbps": seal_gbps,
        "unseal_gbps": unseal_gbps,
        "openssl_gbps": openssl,
        "seal_vs_openssl": openssl.map(|o| seal_gbps / o),
        "release_build": !cfg!(debug_assertions),
    });
    if json_out {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
