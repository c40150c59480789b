//! The containment suite of the `sandbox` LibOS backend (issue 5): every attack, written
//! as an ordinary malicious Python function, runs through a `LibosExecutor` on the sandbox
//! backend (the `cella` binary as jailer and pre-load module, a python3 image of the host's
//! Python, `/usr/bin/python3` by default, built into a temporary data dir). Each is contained: the task fails with a clear reason, or the
//! attempt is refused inside the instance and the function reports what happened in its
//! output; a normal task running beside it and one run afterwards succeed; and no process
//! outlives the task.
//!
//! `containment_as_the_current_user` runs as whoever runs the tests (root in CI);
//! `containment_as_an_unprivileged_user` re-runs it, when started as root, as uid/gid
//! 65534 from copies of the test binary and of `cella` in a directory that user can read.
//! See `docs/sandbox.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cella_attest::Measurement;
use cella_attest::sim::SimSigner;
use cella_executor::{ExecutionError, ExecutionOutcome, Executor, IoLimits, StagedTask, TaskIo};
use cella_libos::config::SandboxSection;
use cella_libos::{ExecutorAttestation, ExecutorConfig, LibosExecutor, PoolConfig};
use cella_sandbox::backend::{ImageRoot, SandboxBackend, SandboxConfig};
use cella_types::ExecutorKind;

/// The two tests never run at once: each counts the processes below the test process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Overrides the `cella` binary (the unprivileged run uses a copy).
const CELLA_ENV: &str = "CELLA_CONTAINMENT_CELLA";
/// Set in the unprivileged child run.
const CHILD_ENV: &str = "CELLA_CONTAINMENT_CHILD";

/// Per-slot output limit of the executor in this suite.
const MAX_OUTPUT: u64 = 1 << 20;
/// The sandbox's scratch tmpfs in this suite.
const SCRATCH: u64 = 16 << 20;
/// The sandbox's /tmp tmpfs in this suite.
const TMP: u64 = 8 << 20;
/// Processes per instance in this suite.
const PROCESSES: u64 = 64;

fn limits() -> SandboxSection {
    SandboxSection {
        memory_bytes: 512 << 20,
        processes: PROCESSES,
        open_files: 256,
        file_size_bytes: 256 << 20,
        cpu_seconds: 60,
        work_bytes: 64 << 20,
        outputs_bytes: 4 * MAX_OUTPUT,
        scratch_bytes: SCRATCH,
        tmp_bytes: TMP,
        // Root gets cgroups (required: the node would not start without them); an
        // ordinary user cannot write any, and accepts the per-process limits.
        accept_per_process_limits: euid() != 0,
        ..SandboxSection::default()
    }
}

fn cella() -> PathBuf {
    std::env::var_os(CELLA_ENV)
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cella")), PathBuf::from)
}

fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .unwrap()
}

/// The executor under test.
struct Harness {
    data_dir: tempfile::TempDir,
    backend: Arc<SandboxBackend>,
    executor: LibosExecutor,
}

async fn harness() -> Harness {
    let data_dir = tempfile::tempdir().unwrap();
    let store = cella_image::ImageStore::new(data_dir.path());
    let started = Instant::now();
    let python = cella_image::default_python().expect("a python3 interpreter");
    store
        .build_python3(&python, "python3")
        .expect("building the python3 image");
    eprintln!("python3 image built in {:?}", started.elapsed());
    let image = store.load("python3").unwrap();
    let attestation = ExecutorAttestation::simulated(
        Arc::new(SimSigner::generate().unwrap()),
        Measurement::sha256(b"containment executor"),
    );
    let config = SandboxConfig {
        data_dir: data_dir.path().to_path_buf(),
        jailer: cella(),
        preload: cella(),
        limits: limits(),
    };
    let backend =
        Arc::new(SandboxBackend::new(config, &attestation, vec![ImageRoot::from(image)]).unwrap());
    backend
        .probe()
        .await
        .expect("this machine can run sandboxes");
    let executor = LibosExecutor::new(
        Arc::clone(&backend) as Arc<dyn cella_libos::LibosBackend>,
        backend.images(),
        attestation,
        ExecutorConfig {
            // No warm instances: every leftover process is a leak.
            pool: PoolConfig { warm: 0, max: 4 },
            ..ExecutorConfig::default()
        },
    )
    .unwrap();
    Harness {
        data_dir,
        backend,
        executor,
    }
}

fn task(script: &str, deadline: Duration) -> StagedTask {
    StagedTask::new("attack", ExecutorKind::Libos, script.as_bytes(), deadline)
        .with_runtime("python3")
}

/// Python shared by every case: `report(text)` writes output `out`, `attempt(f)` says
/// what `f` did.
const PRELUDE: &str = r#"
import os, sys, socket
OUT = os.path.join(os.environ["CELLA_OUTPUT_DIR"], "out")
def report(text):
    with open(OUT, "w") as f:
        f.write(text)
def attempt(fn):
    try:
        return "ALLOWED " + repr(fn())[:200]
    except BaseException as e:
        return "refused " + type(e).__name__ + ": " + str(e)[:200]
"#;

/// What a case must end with.
enum Expect {
    /// Finished; the output satisfies the check.
    Output(fn(&str) -> Result<(), String>),
    /// Finished; the output is exactly this.
    Exactly(&'static str),
    /// Failed; the error message contains this.
    Fails(&'static str),
}

impl Expect {
    /// Whether a finished task's output is the one expected.
    fn output(&self, out: &str) -> Result<(), String> {
        match self {
            Expect::Output(check) => check(out),
            Expect::Exactly(want) if out == *want => Ok(()),
            Expect::Exactly(want) => Err(format!("output {out:?}, not {want:?}")),
            Expect::Fails(want) => Err(format!("finished, but should have failed with {want:?}")),
        }
    }
}

struct Case {
    name: &'static str,
    script: String,
    deadline: Duration,
    max_output: u64,
    expect: Expect,
    /// A log line must contain this.
    log: Option<&'static str>,
    /// The task must end within this (well before its deadline).
    within: Option<Duration>,
}

fn case(name: &'static str, body: &str, expect: Expect) -> Case {
    Case {
        name,
        script: format!("{PRELUDE}\n{body}\n"),
        deadline: Duration::from_secs(30),
        max_output: MAX_OUTPUT,
        expect,
        log: None,
        within: None,
    }
}

fn every_line_refused(out: &str) -> Result<(), String> {
    if out.is_empty() || out.lines().any(|l| !l.starts_with("refused")) {
        return Err(format!("something was allowed: {out}"));
    }
    Ok(())
}

/// Issue 10.7: memory the per-process limit does not see (a memfd, several children).
/// With a cgroup (root) the instance's total is bounded and the kernel's kill is named;
/// without one (an ordinary user, per-process limits accepted) memfd is refused.
fn memory_case() -> Case {
    let script = r#"
try:
    fd = os.memfd_create("hog")
    os.ftruncate(fd, 1 << 20)
    memfd = "ALLOWED memfd"
except OSError as e:
    memfd = "refused memfd: " + str(e)
pids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        import time
        hog = b"x" * (200 << 20)
        time.sleep(2)
        os._exit(0)
    pids.append(pid)
killed = [os.waitpid(p, 0)[1] for p in pids]
if any(os.WIFSIGNALED(s) for s in killed):
    print("a child was killed", file=sys.stderr)
    sys.exit(1)
report(memfd)"#;
    if euid() == 0 {
        case(
            "memfd and four children past the memory limit",
            script,
            Expect::Fails("memory limit of 512 MiB"),
        )
    } else {
        case(
            "memfd and four children past the memory limit",
            script,
            Expect::Output(every_line_refused),
        )
    }
}

fn cases(data_dir: &Path) -> Vec<Case> {
    let data = data_dir.display();
    let mut cases = vec![
        case(
            "tcp connect",
            r#"report(attempt(lambda: socket.create_connection(("1.1.1.1", 80), timeout=3)))"#,
            Expect::Output(every_line_refused),
        ),
        case(
            "dns lookup",
            r#"report(attempt(lambda: socket.getaddrinfo("example.com", 80)))"#,
            Expect::Output(every_line_refused),
        ),
        case(
            "read /etc/shadow",
            r#"report(attempt(lambda: open("/etc/shadow").read()))"#,
            Expect::Output(every_line_refused),
        ),
        case(
            "read the node's data dir",
            &format!(
                r#"report("\n".join([attempt(lambda: os.listdir("{data}")),
    attempt(lambda: open("{data}/libos/preload", "rb").read(1))]))"#
            ),
            Expect::Output(every_line_refused),
        ),
        case(
            "read /proc/1/environ",
            r#"
def environ():
    data = open("/proc/1/environ", "rb").read()
    if b"CARGO" in data or b"RUST" in data:
        return "HOST ENVIRONMENT " + repr(data[:200])
    raise PermissionError("no host environment in /proc/1/environ (" + str(len(data)) + " bytes)")
report(attempt(environ))"#,
            Expect::Output(every_line_refused),
        ),
        case(
            "write outside outputs and scratch",
            r#"
def write(path):
    return lambda: open(path, "w").write("x")
bad = ["/x", "/etc/x", "/usr/x", "/cella/x", "/cella/workload/x", "/cella/workload/program",
       "/cella/inputs/x", "/cella/task.json", "/run/cella/x", "/run/cella-sandbox/denials.json"]
lines = [p + " " + attempt(write(p)) for p in bad]
good = ["/cella/scratch/x", "/tmp/x"]
lines += [p + " " + attempt(write(p)) for p in good]
report("\n".join(lines))"#,
            Expect::Output(|out| {
                for l in out.lines() {
                    let allowed = l.contains(" ALLOWED ");
                    let ok_path = l.starts_with("/cella/scratch/") || l.starts_with("/tmp/");
                    if allowed != ok_path {
                        return Err(format!("wrong outcome: {l}"));
                    }
                }
                Ok(())
            }),
        ),
        case(
            "ptrace, mount, unshare, setuid, kill(-1)",
            r#"
import ctypes, signal
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    def go():
        r = getattr(libc, name)(*args)
        if r == -1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return r
    return go
lines = [
    "ptrace " + attempt(call("ptrace", 16, 1, None, None)),
    "mount " + attempt(call("mount", b"none", b"/tmp", b"tmpfs", 0, None)),
    "unshare " + attempt(call("unshare", 0x10000000)),
    "setuid " + attempt(lambda: os.setuid(1000)),
    "setgid " + attempt(lambda: os.setgid(1000)),
]
try:
    os.kill(-1, signal.SIGKILL)
except OSError as e:
    pass
lines.append("refused kill(-1): the program and its pre-load module survived")
report("\n".join(lines))"#,
            Expect::Output(|out| {
                for l in out.lines() {
                    if l.contains("ALLOWED") {
                        return Err(format!("allowed: {l}"));
                    }
                }
                if out.lines().count() != 6 {
                    return Err(format!("incomplete: {out}"));
                }
                Ok(())
            }),
        ),
        Case {
            deadline: Duration::from_secs(3),
            ..case(
                "fork bomb",
                r#"
while True:
    try:
        os.fork()
    except OSError:
        pass"#,
                Expect::Fails("deadline"),
            )
        },
        case(
            "memory bomb",
            r#"
hog = []
while True:
    hog.append(bytearray(16 << 20))"#,
            Expect::Fails("MemoryError"),
        ),
        Case {
            deadline: Duration::from_secs(2),
            ..case(
                "infinite loop",
                "while True:\n    pass",
                Expect::Fails("deadline"),
            )
        },
        case(
            "fill the disk",
            r#"
def fill(path):
    n = 0
    chunk = b"x" * (1 << 20)
    try:
        with open(path, "wb") as f:
            while True:
                f.write(chunk)
                f.flush()
                n += len(chunk)
    except OSError as e:
        return "full " + str(n) + " " + str(e.errno)
    return "never full"
report(fill("/cella/scratch/fill") + "\n" + fill("/tmp/fill"))"#,
            Expect::Output(|out| {
                let sizes: Vec<u64> = out
                    .lines()
                    .filter_map(|l| l.strip_prefix("full "))
                    .filter_map(|l| l.split(' ').next()?.parse().ok())
                    .collect();
                match sizes[..] {
                    [scratch, tmp] if scratch <= SCRATCH && tmp <= TMP => Ok(()),
                    _ => Err(format!("not capped: {out}")),
                }
            }),
        ),
        case(
            "megabytes of stdout",
            r#"
line = "y" * 1000 + "\n"
for _ in range(10000):
    sys.stdout.write(line)
sys.stdout.flush()
report("done")"#,
            Expect::Exactly("done"),
        ),
        case(
            "an output over its cap",
            r#"report("z" * (2 << 20))"#,
            Expect::Fails("limit"),
        ),
        // Issue 10.11: the function's doings are the function's fault, not the node's.
        case(
            "umask 0777 before writing the output",
            r#"
os.umask(0o777)
report("written unreadable")
os.chmod(os.environ["CELLA_OUTPUT_DIR"], 0)"#,
            Expect::Exactly("written unreadable"),
        ),
        Case {
            // The supervisor counts 256 names one by one, the rest together.
            log: Some("sandbox: 400 system calls denied: other ×144, nr_1000 ×1"),
            ..case(
                "400 distinct unknown system calls",
                r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
refused = sum(1 for n in range(1000, 1400) if libc.syscall(n) == -1 and ctypes.get_errno() == 1)
report("refused " + str(refused))"#,
                Expect::Exactly("refused 400"),
            )
        },
        // Issue 10.12: a 32-bit call is denied and named, not a bare "signal 31".
        Case {
            log: Some("i386:nr_20"),
            ..case(
                "a 32-bit system call (int 0x80)",
                r#"
import ctypes, mmap
# mov eax, 20 (getpid in the i386 table); int 0x80; ret
code = bytes([0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3])
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(code)
call = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
r = call()
report("refused int 0x80: " + str(r) if r == -1 else "ALLOWED int 0x80: " + str(r))"#,
                Expect::Output(every_line_refused),
            )
        },
        // Issue 10.12: the run ends when the program does, whatever it left running.
        Case {
            within: Some(Duration::from_secs(10)),
            ..case(
                "a setsid child holding stdout",
                r#"
import time
if os.fork() == 0:
    os.setsid()
    time.sleep(60)
    os._exit(0)
print("parent done")
sys.stdout.flush()
report("left a child")"#,
                Expect::Exactly("left a child"),
            )
        },
        // Issue 10.13: the host's /proc files read as empty.
        case(
            "the host's /proc files",
            r#"
lines = []
for f in ["slabinfo", "vmallocinfo", "timer_list", "loadavg", "stat", "meminfo", "keys",
          "cmdline", "kallsyms", "iomem"]:
    try:
        data = open("/proc/" + f, "rb").read()
        lines.append(("refused /proc/%s: empty" % f) if not data else ("ALLOWED /proc/%s: %d bytes" % (f, len(data))))
    except OSError as e:
        lines.append("refused /proc/%s: %s" % (f, e))
report("\n".join(lines))"#,
            Expect::Output(every_line_refused),
        ),
        // Issue 10.13: the instance's root is never host root, so what only host root
        // may read stays unreadable where no mask covers it.
        case(
            "files only host root may read",
            r#"
lines = []
for f in ["/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup"]:
    try:
        with open(f, "rb") as fh:
            lines.append("ALLOWED %s: %d bytes" % (f, len(fh.read(8))))
    except OSError as e:
        lines.append("refused %s: %s" % (f, e))
host = open("/proc/self/uid_map").read().split()[1]
lines.append(("ALLOWED root is host root" if host == "0" else "refused root is host uid " + host))
report("\n".join(lines))"#,
            Expect::Output(every_line_refused),
        ),
        memory_case(),
    ];
    // The system calls case must leave its denials in the log.
    if let Some(c) = cases.iter_mut().find(|c| c.name.starts_with("ptrace")) {
        c.log = Some("system calls denied");
    }
    cases
}

async fn run(
    h: &Harness,
    script: &str,
    deadline: Duration,
    max_output: u64,
) -> (Result<ExecutionOutcome, ExecutionError>, TaskIo) {
    let t = task(script, deadline);
    let mut io = TaskIo::new(
        BTreeMap::from([("in".to_owned(), b"world".to_vec())]),
        ["out".to_owned()],
        IoLimits::per_slot(max_output),
    );
    let r = h.executor.execute(&t, &mut io).await;
    (r, io)
}

/// The live processes below this one, by pid (a zombie waiting for its parent, tokio's
/// reaper, holds nothing).
fn descendants() -> Vec<(u32, String)> {
    cella_libos::process::descendants()
        .unwrap()
        .into_iter()
        .filter(|d| !d.zombie)
        .map(|d| (d.pid, d.name))
        .collect()
}

/// Waits (up to 5 s) until no instance is live and no process is left below this one.
async fn no_leftovers(h: &Harness) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let live = h.backend.live_instances();
        let left = descendants();
        if live == 0 && left.is_empty() {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("{live} live instances, processes left: {left:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const HELLO: &str = r#"
import os
name = open(os.path.join(os.environ["CELLA_INPUT_DIR"], "in")).read()
print("hello", name)
with open(os.path.join(os.environ["CELLA_OUTPUT_DIR"], "out"), "w") as f:
    f.write("hello " + name)
"#;

async fn suite() -> Vec<String> {
    let h = harness().await;
    let mut failures = Vec::new();
    let (first, io) = run(&h, HELLO, Duration::from_secs(30), MAX_OUTPUT).await;
    if let Err(e) = first {
        return vec![format!("a normal task fails before any attack: {e}")];
    }
    assert_eq!(io.output("out"), Some(&b"hello world"[..]));
    for c in cases(h.data_dir.path()) {
        let started = Instant::now();
        // A normal task runs beside every attack, in an instance of its own: other tasks
        // are unaffected.
        let ((result, io), (beside, beside_io)) =
            tokio::join!(run(&h, &c.script, c.deadline, c.max_output), async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                run(&h, HELLO, Duration::from_secs(30), MAX_OUTPUT).await
            });
        let took = started.elapsed();
        if let Some(within) = c.within
            && took > within
        {
            failures.push(format!("{}: took {took:?}, more than {within:?}", c.name));
        }
        match beside {
            Ok(_) if beside_io.output("out") == Some(&b"hello world"[..]) => {}
            Ok(_) => failures.push(format!(
                "{}: the task beside it wrote a wrong output",
                c.name
            )),
            Err(e) => failures.push(format!("{}: the task beside it failed: {e}", c.name)),
        }
        let verdict = match (&c.expect, &result) {
            (Expect::Output(_) | Expect::Exactly(_), Ok(outcome)) => {
                let out =
                    String::from_utf8_lossy(io.output("out").unwrap_or_default()).into_owned();
                let logged = c
                    .log
                    .is_none_or(|want| outcome.log.iter().any(|l| l.contains(want)));
                match c.expect.output(&out) {
                    Ok(()) if logged => Ok(format!(
                        "refused inside: {}",
                        out.lines().next().unwrap_or("")
                    )),
                    Ok(()) => Err(format!("no log line with {:?}: {:?}", c.log, outcome.log)),
                    Err(e) => Err(e),
                }
                .map(|s| {
                    let log_bytes: usize = outcome.log.iter().map(String::len).sum();
                    format!("{s} (log {log_bytes} bytes)")
                })
            }
            (Expect::Output(_) | Expect::Exactly(_), Err(e)) => {
                Err(format!("the task failed: {e}"))
            }
            (Expect::Fails(want), Err(e)) if e.to_string().contains(want) => {
                Ok(format!("task failed: {e}"))
            }
            (Expect::Fails(want), Err(e)) => Err(format!("failed without {want:?}: {e}")),
            (Expect::Fails(_), Ok(o)) => Err(format!("the task succeeded: log {:?}", o.log.last())),
        };
        // Megabytes of stdout must not become megabytes of log.
        if c.name.starts_with("megabytes")
            && let Ok(o) = &result
        {
            let bytes: usize = o.log.iter().map(String::len).sum();
            if bytes > 128 * 1024 {
                failures.push(format!("{}: a log of {bytes} bytes", c.name));
            }
        }
        match verdict {
            Ok(how) => eprintln!("contained: {} in {took:?}: {how}", c.name),
            Err(e) => failures.push(format!("{}: {e}", c.name)),
        }
        if let Err(e) = no_leftovers(&h).await {
            failures.push(format!("{}: {e}", c.name));
        }
        let (after, io) = run(&h, HELLO, Duration::from_secs(30), MAX_OUTPUT).await;
        match after {
            Ok(_) if io.output("out") == Some(&b"hello world"[..]) => {}
            Ok(_) => failures.push(format!("{}: the next task's output is wrong", c.name)),
            Err(e) => failures.push(format!("{}: the next task failed: {e}", c.name)),
        }
        if let Err(e) = no_leftovers(&h).await {
            failures.push(format!("{} (next task): {e}", c.name));
        }
    }
    // Last, since it leaves an instance parked for reuse.
    if let Err(e) = tmp_is_wiped_between_tenants(&h).await {
        failures.push(format!("/tmp across Reset: {e}"));
    }
    failures
}

/// Issue 10.10: under `reuse = same-function`, the next task on the reused instance (of
/// another tenant: at the executor, another task of the same function) finds nothing of
/// the last one's in `/tmp`.
async fn tmp_is_wiped_between_tenants(h: &Harness) -> Result<(), String> {
    let script = format!(
        r#"{PRELUDE}
p = "/tmp/left-by-the-last-task"
if os.path.exists(p):
    report("LEAKED " + open(p).read())
else:
    os.makedirs("/tmp/d/e")
    open(p, "w").write("tenant a's secret")
    os.chmod("/tmp/d", 0)
    report("clean")
"#
    );
    let mut first = task(&script, Duration::from_secs(30));
    first.reuse = cella_types::InstanceReuse::SameFunction;
    let mut second = first.clone();
    second.task_id = cella_types::TaskId::new();
    let run_one = |t: StagedTask| async move {
        let mut io = TaskIo::new(BTreeMap::new(), ["out".to_owned()], IoLimits::default());
        let r = h.executor.execute(&t, &mut io).await;
        r.map(|_| String::from_utf8_lossy(io.output("out").unwrap_or_default()).into_owned())
            .map_err(|e| e.to_string())
    };
    let out = run_one(first).await?;
    if out != "clean" {
        return Err(format!("the first task: {out}"));
    }
    // The instance is reset off the task's path, then parked for the function.
    let until = Instant::now() + Duration::from_secs(10);
    while h.executor.pool_stats("python3").is_none_or(|s| s.idle == 0) {
        if Instant::now() > until {
            return Err("the instance was not parked for reuse".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let launched = h.backend.launched();
    let out = run_one(second).await?;
    if h.backend.launched() != launched {
        return Err("the second task did not reuse the instance".into());
    }
    if out == "clean" {
        eprintln!("contained: /tmp across Reset: the next task found it empty");
        Ok(())
    } else {
        Err(format!("the second task: {out}"))
    }
}

#[test]
fn containment_as_the_current_user() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let failures = runtime.block_on(suite());
    assert!(
        failures.is_empty(),
        "not contained (uid {}):\n{}",
        euid(),
        failures.join("\n")
    );
    eprintln!("containment: every case contained as uid {}", euid());
}

#[test]
fn containment_as_an_unprivileged_user() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    if euid() != 0 {
        eprintln!("not root: containment_as_the_current_user already runs unprivileged");
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Copies the user can read and run, whatever the permissions of the build tree.
    let dir = tempfile::Builder::new()
        .prefix("cella-containment-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let test_bin = dir.path().join("containment");
    let cella_bin = dir.path().join("cella");
    std::fs::copy(std::env::current_exe().unwrap(), &test_bin).unwrap();
    std::fs::copy(cella(), &cella_bin).unwrap();
    for f in [&test_bin, &cella_bin] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(&test_bin)
        .args([
            "--exact",
            "containment_as_the_current_user",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/tmp")
        .env(CELLA_ENV, &cella_bin)
        .env(CHILD_ENV, "1")
        .current_dir("/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "as uid 65534:\n{text}");
    for line in text.lines().filter(|l| l.starts_with("contained")) {
        eprintln!("uid 65534: {line}");
    }
    assert!(
        text.contains("every case contained as uid 65534"),
        "as uid 65534:\n{text}"
    );
}

/// The native runtime on the sandbox: `examples/libos/hello.c` built with `gcc -static`
/// runs on an empty root (an inline image without files), with its argument on the
/// command line, its input and its output.
#[test]
fn a_static_c_program_runs_on_an_empty_root() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("hello");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/libos/hello.c");
    match std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(source)
        .output()
    {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("gcc -static unavailable ({other:?}): skipped");
            return;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let root = dir.path().join("empty-root");
        std::fs::create_dir(&root).unwrap();
        let attestation = ExecutorAttestation::simulated(
            Arc::new(SimSigner::generate().unwrap()),
            Measurement::sha256(b"containment executor"),
        );
        let config = SandboxConfig {
            data_dir: dir.path().join("data"),
            jailer: cella(),
            preload: cella(),
            limits: limits(),
        };
        let image = cella_libos::RuntimeImage::native();
        let backend = Arc::new(
            SandboxBackend::new(
                config,
                &attestation,
                vec![ImageRoot {
                    image: image.clone(),
                    rootfs: root,
                }],
            )
            .unwrap(),
        );
        let executor = LibosExecutor::new(
            Arc::clone(&backend) as Arc<dyn cella_libos::LibosBackend>,
            vec![image],
            attestation,
            ExecutorConfig {
                pool: PoolConfig { warm: 0, max: 2 },
                ..ExecutorConfig::default()
            },
        )
        .unwrap();
        let payload = std::fs::read(&binary).unwrap();
        let task = StagedTask::new(
            "hello",
            ExecutorKind::Libos,
            payload,
            Duration::from_secs(30),
        )
        .with_runtime("native")
        .with_arguments([("word", "hi")]);
        let mut io = TaskIo::new(
            BTreeMap::from([("name".to_owned(), b"alice\n".to_vec())]),
            ["greeting".to_owned()],
            IoLimits::default(),
        );
        let outcome = executor.execute(&task, &mut io).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(
            io.output("greeting")
                .map(String::from_utf8_lossy)
                .as_deref(),
            Some("hi, alice!\n")
        );
        drop(executor);
        let until = Instant::now() + Duration::from_secs(5);
        while backend.live_instances() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(backend.live_instances(), 0);
    });
}
