//! The launcher for real, through `standin-gramine-direct` (a stand-in of
//! `gramine-direct` that runs the real pre-load module on the host; see the script):
//! the loader started in a launch directory of its own, the pre-load module connecting
//! back over loopback TCP and attesting with the node's simulation evidence served over
//! TCP, a task run end to end, SIGTERM sent once when the instance is retired, and
//! nothing left behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cella_executor::{Executor, IoLimits, StagedTask, TaskIo};
use cella_gramine::backend::{GramineBackend, ImageOnDisk, Setup};
use cella_gramine::{GramineConfig, Mode};
use cella_libos::{ExecutorConfig, LibosExecutor, PoolConfig, Timeouts};
use cella_types::ExecutorKind;

use crate::common::{Fixture, jailer_binary, preload_binary, standin};
use crate::signing::attestation;

fn direct_config(f: &Fixture) -> GramineConfig {
    let mut c = GramineConfig::defaults(Mode::Direct);
    c.gramine_direct = Some(standin("standin-gramine-direct"));
    c.preload = Some(preload_binary());
    c.libos = Some(f.libos.path.clone());
    c
}

/// How the stand-in runs the pre-load module.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standin {
    /// Directly on the host (`standin-gramine-direct`).
    Direct,
    /// Under the sandbox backend's jailer (`standin-gramine-direct-jailed`).
    Jailed,
}

fn executor(f: &Fixture, warm: usize) -> (LibosExecutor, std::path::PathBuf) {
    executor_with(f, warm, Standin::Direct)
}

fn executor_with(
    f: &Fixture,
    warm: usize,
    standin_kind: Standin,
) -> (LibosExecutor, std::path::PathBuf) {
    let attestation = attestation();
    let work = f.root.join("work");
    let mut config = direct_config(f);
    let (image, rootfs) = match standin_kind {
        Standin::Direct => (f.native.clone(), f.rootfs("native")),
        Standin::Jailed => sh_image(f),
    };
    let mut preload_libraries = Vec::new();
    if standin_kind == Standin::Jailed {
        // The stand-in finds the jailer through its environment, which the backend
        // clears: a wrapper script names it.
        let wrapper = f.root.join("gramine-direct");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nCELLA_STANDIN_JAILER='{}' exec '{}' \"$@\"\n",
                jailer_binary().display(),
                standin("standin-gramine-direct-jailed").display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&wrapper).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&wrapper, perms).unwrap();
        config.gramine_direct = Some(wrapper);
        // In the jail the pre-load module finds its libraries where the manifest mounts them.
        preload_libraries =
            cella_image::shared_libraries(config.preload.as_ref().unwrap()).unwrap();
    }
    let mut backend = GramineBackend::new(
        config,
        Setup {
            work_dir: work.clone(),
            images: vec![ImageOnDisk {
                image: image.clone(),
                rootfs: rootfs.clone(),
            }],
            executor_policy: attestation.preload_config().executor_policy,
            preload_libraries,
            hardware: Arc::clone(attestation.hardware()),
        },
    )
    .unwrap();
    if standin_kind == Standin::Jailed {
        // The jail has no network: the stand-in needs Unix sockets.
        backend = backend.with_unix_connect_back();
    }
    let executor = LibosExecutor::new(
        Arc::new(backend),
        vec![image],
        attestation,
        ExecutorConfig {
            pool: PoolConfig { warm, max: 2 },
            timeouts: Timeouts {
                attest: Duration::from_secs(20),
                ..Timeouts::default()
            },
            ..ExecutorConfig::default()
        },
    )
    .unwrap();
    (executor, work)
}

/// A runtime image `native` whose program is `/bin/sh` itself (the payload) with a
/// script on its command line, and whose files are the shell's libraries: in the jail
/// there is nothing but the image.
fn sh_image(f: &Fixture) -> (cella_libos::RuntimeImage, std::path::PathBuf) {
    let rootfs = f.root.join("images/sh/rootfs");
    let mut files = Vec::new();
    for lib in cella_image::shared_libraries(std::path::Path::new("/bin/sh")).unwrap() {
        let dest = rootfs.join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&lib, &dest).unwrap();
        let sha256 = cella_gramine::manifest::HostFile::measure(&dest)
            .unwrap()
            .sha256;
        files.push(cella_libos::image::ImageFile {
            path: lib.display().to_string(),
            sha256,
        });
    }
    let image = cella_libos::RuntimeImage {
        name: "native".into(),
        argv: vec!["./program".into(), "-c".into(), SH_SCRIPT.into()],
        files,
    };
    (image, rootfs)
}

/// What the shell runs in the jail (builtins only: the jail has no `tr`).
const SH_SCRIPT: &str = "read -r line < \"$CELLA_INPUT_DIR/in\" || true; \
     printf '%s' \"$line\" > \"$CELLA_OUTPUT_DIR/out\"; echo copied";

fn task(program: &[u8]) -> StagedTask {
    StagedTask::new(
        "copy",
        ExecutorKind::Libos,
        program,
        Duration::from_secs(20),
    )
    .with_runtime("native")
}

fn launch_dirs(work: &std::path::Path) -> usize {
    std::fs::read_dir(work.join("launch")).map_or(0, |d| d.count())
}

/// Waits up to five seconds for `cond`.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_through_the_gramine_direct_standin() {
    a_task_runs(Standin::Direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_through_the_standin_under_the_sandbox_jailer() {
    a_task_runs(Standin::Jailed).await;
}

async fn a_task_runs(standin_kind: Standin) {
    let f = Fixture::new();
    let (executor, work) = executor_with(&f, 0, standin_kind);
    let (program, expected): (Vec<u8>, &[u8]) = match standin_kind {
        Standin::Direct => (
            b"#!/bin/sh\nset -e\ntr a-z A-Z < \"$CELLA_INPUT_DIR/in\" > \"$CELLA_OUTPUT_DIR/out\"\necho copied\n"
                .to_vec(),
            b"SOME DATA",
        ),
        Standin::Jailed => (std::fs::read("/bin/sh").unwrap(), b"some data"),
    };
    let mut io = TaskIo::new(
        BTreeMap::from([("in".to_owned(), b"some data".to_vec())]),
        ["out".to_owned()],
        IoLimits::per_slot(1 << 20),
    );
    let outcome = executor.execute(&task(&program), &mut io).await.unwrap();
    assert_eq!(io.output("out"), Some(expected));
    assert!(
        outcome.log.iter().any(|l| l == "copied"),
        "{:?}",
        outcome.log
    );
    // The receipt verifies under the policy the executor writes for its instances.
    let policy = cella_attest::Policy::from_toml_str(&executor.instance_policy()).unwrap();
    cella_libos::receipt::verify_bundle(&outcome.receipt, Some(&policy)).unwrap();

    // Single-use: the instance is retired with one SIGTERM (the stand-in records it, as
    // Gramine honours one), then its launch directory is gone.
    let signals = work.join("standin-signals");
    eventually("the retired instance got SIGTERM", || signals.is_file()).await;
    eventually("the launch directory was removed", || {
        launch_dirs(&work) == 0
    })
    .await;
    assert_eq!(std::fs::read_to_string(&signals).unwrap(), "TERM\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_attests_over_tcp_and_is_killed_with_its_group() {
    let f = Fixture::new();
    let (executor, work) = executor(&f, 1);
    let stats = || executor.pool_stats("native").unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while stats().idle < 1 {
        assert!(
            Instant::now() < until,
            "no attested instance: {:?}",
            stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats().launched, 1);
    assert_eq!(launch_dirs(&work), 1);
    // Dropping the executor kills the idle instance's process group at once.
    drop(executor);
    eventually("the killed instance's launch directory was removed", || {
        launch_dirs(&work) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_gets_sigterm_once_then_its_group_is_killed_and_reaped() {
    use cella_libos::LibosBackend;
    use cella_libos::backend::{InstanceExit, InstanceLimits, LaunchSpec};
    let f = Fixture::new();
    let attestation = attestation();
    let work = f.root.join("work");
    let backend = GramineBackend::new(
        direct_config(&f),
        Setup {
            work_dir: work.clone(),
            images: vec![ImageOnDisk {
                image: f.native.clone(),
                rootfs: f.rootfs("native"),
            }],
            executor_policy: attestation.preload_config().executor_policy,
            preload_libraries: Vec::new(),
            hardware: Arc::clone(attestation.hardware()),
        },
    )
    .unwrap();
    // An executor that accepts the connection and never answers: the pre-load module
    // waits in its TLS handshake, alive.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = cella_preload::Endpoint::Tcp(listener.local_addr().unwrap());
    let accepted = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let mut instance = backend
        .launch(LaunchSpec {
            nonce: [5; 32],
            socket: endpoint,
            image: &f.native,
            limits: InstanceLimits::default(),
        })
        .await
        .unwrap();
    let _held = accepted.await.unwrap().unwrap();
    assert_eq!(launch_dirs(&work), 1);
    let signals = work.join("standin-signals");
    instance.terminate();
    instance.terminate();
    eventually("the stand-in got SIGTERM", || signals.is_file()).await;
    // Whether the pre-load module stopped on it or not, the group is killed now.
    instance.kill_group();
    instance.kill_group();
    let exit = tokio::time::timeout(Duration::from_secs(5), instance.wait())
        .await
        .expect("wait returns promptly after kill_group");
    assert!(
        matches!(exit, InstanceExit::Signaled(_) | InstanceExit::Exited(_)),
        "{exit:?}"
    );
    // Waiting again returns the same; nothing is left behind.
    assert_eq!(instance.wait().await, exit);
    assert_eq!(launch_dirs(&work), 0);
    assert_eq!(
        std::fs::read_to_string(&signals).unwrap(),
        "TERM\n",
        "one SIGTERM however often terminate is called"
    );
}
