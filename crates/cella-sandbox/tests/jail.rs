//! The jailer, run for real: each test starts `cella-jail` on a tiny image (the host's
//! `/bin/sh` and a few tools with their libraries, plus `torture`, a static C program of
//! attempts the jail must contain) and checks what the program could and could not do.
//!
//! Every test runs twice when the suite runs as root (as CI does): once as root, once as
//! uid/gid 65534 (the jailer started with `Command::uid/gid`, so it takes the
//! unprivileged path: its own user namespace, no cgroups). The fixture lives in a
//! temporary directory with modes 0755/0555 and holds its own link or copy of the
//! jailer, so uid 65534 can reach everything it runs. Run as a non-root user, each test
//! runs once, as that user.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cella_sandbox::jail::{self, Bind, CgroupLimits, HostIds, JailSpec, Limits, Tmpfs};
use tokio::io::{AsyncBufReadExt, BufReader};

const NOBODY: u32 = 65534;
const DENIALS: &str = "/run/cella/denials.json";

/// Who runs the jailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum User {
    /// The test's own user (root in CI).
    Caller,
    /// uid/gid 65534, when the test runs as root.
    Nobody,
}

fn users() -> Vec<User> {
    if nix::unistd::geteuid().is_root() {
        vec![User::Caller, User::Nobody]
    } else {
        vec![User::Caller]
    }
}

fn is_root(user: User) -> bool {
    user == User::Caller && nix::unistd::geteuid().is_root()
}

/// Tools copied into the test image, with their libraries.
const TOOLS: &[&str] = &[
    "/bin/sh",
    "/bin/cat",
    "/bin/ls",
    "/bin/sleep",
    "/bin/dd",
    "/bin/echo",
    "/bin/touch",
    "/bin/mkdir",
    "/bin/rm",
];

/// `torture`, compiled once per source text with `gcc -static` into the target dir.
fn torture() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torture.c");
        let text = fs::read(&src).unwrap();
        let hash = text.iter().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        });
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("torture-{hash:016x}"));
        if !out.exists() {
            let tmp = out.with_extension("tmp");
            let status = Command::new("gcc")
                .args(["-static", "-O1", "-o"])
                .arg(&tmp)
                .arg(&src)
                .arg("-lpthread")
                .status()
                .expect("gcc is needed to build the test program");
            assert!(status.success(), "gcc -static failed");
            fs::rename(&tmp, &out).unwrap();
        }
        out
    })
}

/// The shared libraries `bin` loads, as its dynamic loader lists them.
fn libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new(bin)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_in(root: &Path, host: &Path, mode: u32) {
    let dst = root.join(host.strip_prefix("/").unwrap());
    fs::create_dir_all(dst.parent().unwrap()).unwrap();
    fs::copy(fs::canonicalize(host).unwrap(), &dst).unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).unwrap();
}

/// A temporary directory with the image, a host directory for binds, a secret next to
/// them, and the jailer.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        for tool in TOOLS {
            copy_in(&root, Path::new(tool), 0o555);
            for lib in libraries(Path::new(tool)) {
                copy_in(&root, &lib, 0o555);
            }
        }
        let t = root.join("bin/torture");
        fs::copy(torture(), &t).unwrap();
        fs::set_permissions(&t, fs::Permissions::from_mode(0o555)).unwrap();
        fs::create_dir(dir.path().join("host-rw")).unwrap();
        fs::write(dir.path().join("host-rw/data"), "original").unwrap();
        fs::write(dir.path().join("secret"), "host secret").unwrap();
        let jailer = dir.path().join("cella-jail");
        let src = Path::new(env!("CARGO_BIN_EXE_cella-jail"));
        if fs::hard_link(src, &jailer).is_err() {
            fs::copy(src, &jailer).unwrap();
        }
        // Readable (and the binds writable) by uid 65534.
        for entry in walk(dir.path()) {
            let meta = fs::symlink_metadata(&entry).unwrap();
            if meta.is_dir() {
                fs::set_permissions(&entry, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        fs::set_permissions(
            dir.path().join("host-rw"),
            fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        fs::set_permissions(
            dir.path().join("host-rw/data"),
            fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        Fixture { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A spec running `argv` with the usual instance layout.
    fn spec(&self, argv: &[&str]) -> JailSpec {
        JailSpec {
            rootfs: self.path("rootfs"),
            binds: vec![Bind {
                host: self.path("host-rw"),
                inside: "/cella/host-rw".into(),
                writable: true,
            }],
            tmpfs: vec![
                Tmpfs {
                    inside: "/cella".into(),
                    size_bytes: 4 << 20,
                },
                Tmpfs {
                    inside: "/cella/scratch".into(),
                    size_bytes: 1 << 20,
                },
                Tmpfs {
                    inside: "/tmp".into(),
                    size_bytes: 1 << 20,
                },
            ],
            limits: Limits {
                memory_bytes: 512 << 20,
                processes: 32,
                open_files: 128,
                file_size_bytes: 16 << 20,
                cpu_seconds: 30,
            },
            cgroup: Some(CgroupLimits {
                memory_bytes: 256 << 20,
                pids: 32,
                required: false,
            }),
            landlock_writable: vec!["/cella/scratch".into(), "/tmp".into()],
            denials_file: DENIALS.into(),
            hostname: "instance".into(),
            cwd: "/cella/scratch".into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::from([("PATH".to_owned(), "/bin".to_owned())]),
            host_ids: HostIds::default(),
        }
    }

    fn command(&self, user: User, spec: &JailSpec) -> tokio::process::Command {
        let mut cmd = jail::command(&self.path("cella-jail"), spec).unwrap();
        if user == User::Nobody {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, user: User, spec: &JailSpec) -> Run {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(user, spec).output())
            .await
            .expect("the jailer did not finish within a minute")
            .unwrap();
        Run::new(user, out)
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    if fs::symlink_metadata(dir)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        for e in fs::read_dir(dir).unwrap() {
            all.extend(walk(&e.unwrap().path()));
        }
    }
    all
}

/// A finished run.
struct Run {
    user: User,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(user: User, out: Output) -> Self {
        Run {
            user,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn line(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in {self}"))
    }

    fn denials(&self) -> serde_json::Value {
        let line = self.line("{\"total\"");
        serde_json::from_str(line).unwrap()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run as {:?}: exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.user, self.code, self.stdout, self.stderr
        )
    }
}

#[tokio::test]
async fn the_root_is_read_only_and_holds_only_the_image() {
    let f = Fixture::new();
    let secret = f.path("secret");
    let script = format!(
        "echo root: $(ls -A /); echo bin: $(ls /bin); \
         echo x > /bin/new 2>/dev/null || echo write-bin: refused; \
         touch /new 2>/dev/null || echo write-root: refused; \
         mkdir /usr/x 2>/dev/null || echo mkdir-usr: refused; \
         cat /etc/shadow 2>/dev/null || echo shadow: absent; \
         cat {} 2>/dev/null || echo secret: absent; \
         cat /proc/1/environ 2>/dev/null || echo environ-1: refused; \
         echo host: $(cat /proc/sys/kernel/hostname); echo id: $(cat /proc/self/status | while read k v; do [ \"$k\" = Uid: ] && echo $v; done)",
        secret.display()
    );
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", &script])).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert_eq!(
            run.line("root:"),
            "root: bin cella dev lib lib64 proc run tmp",
            "{run}"
        );
        assert!(run.line("bin:").contains("torture"), "{run}");
        for l in [
            "write-bin: refused",
            "write-root: refused",
            "mkdir-usr: refused",
            "shadow: absent",
            "secret: absent",
            "environ-1: refused",
            "host: instance",
        ] {
            assert!(run.stdout.lines().any(|x| x == l), "missing {l:?}: {run}");
        }
        // uid 0 inside, whoever runs the jailer outside.
        assert!(run.line("id:").starts_with("id: 0 0 0 0"), "{run}");
    }
}

#[tokio::test]
async fn the_hosts_proc_files_read_as_empty() {
    let f = Fixture::new();
    let files = [
        "slabinfo",
        "vmallocinfo",
        "timer_list",
        "loadavg",
        "stat",
        "meminfo",
        "keys",
        "cmdline",
        "kallsyms",
        "iomem",
    ];
    let script = format!(
        "for f in {} self/status; do c=$(cat /proc/$f 2>/dev/null); echo \"$f: ${{#c}}\"; done; \
         echo x > /proc/meminfo 2>/dev/null || echo write-meminfo: refused",
        files.join(" ")
    );
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", &script])).await;
        assert_eq!(run.code, Some(0), "{run}");
        for file in files {
            assert_eq!(run.line(&format!("{file}:")), format!("{file}: 0"), "{run}");
        }
        // The instance's own processes are still described.
        assert_ne!(run.line("self/status:"), "self/status: 0", "{run}");
        assert!(run.stdout.contains("write-meminfo: refused"), "{run}");
    }
}

/// Issue 10.13: run as host root, the instance's root is an unprivileged host user (the
/// spec's `host_ids`), so a `/proc` file only host root may read and that no mask covers
/// (`kpagecount`: physical page use) is refused; a bind source below a directory only
/// host root may enter is still bound (the jailer opens the sources before it changes
/// user). An unprivileged jailer maps its own ids, whatever the spec says.
#[tokio::test]
async fn as_root_the_instances_root_is_an_unprivileged_host_user() {
    let f = Fixture::new();
    let private = f.path("private");
    fs::create_dir(&private).unwrap();
    fs::write(private.join("data"), "private data").unwrap();
    fs::set_permissions(private.join("data"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let script = "echo map: $(cat /proc/self/uid_map); echo gmap: $(cat /proc/self/gid_map); \
                  dd if=/proc/kpagecount of=/dev/null bs=8 count=1 2>/dev/null \
                  && echo kpagecount: read || echo kpagecount: refused; \
                  echo private: $(cat /cella/private-data)";
    for user in users() {
        let mut spec = f.spec(&["/bin/sh", "-c", script]);
        spec.host_ids = HostIds {
            uid: 4242,
            gid: 4243,
        };
        if is_root(user) {
            spec.binds.push(Bind {
                host: private.join("data"),
                inside: "/cella/private-data".into(),
                writable: false,
            });
        }
        let run = f.run(user, &spec).await;
        assert_eq!(run.code, Some(0), "{run}");
        let (uid, gid) = match user {
            _ if is_root(user) => (4242, 4243),
            User::Nobody => (NOBODY, NOBODY),
            User::Caller => (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
        };
        assert_eq!(run.line("map:"), format!("map: 0 {uid} 1"), "{run}");
        assert_eq!(run.line("gmap:"), format!("gmap: 0 {gid} 1"), "{run}");
        assert_eq!(run.line("kpagecount:"), "kpagecount: refused", "{run}");
        if is_root(user) {
            assert_eq!(run.line("private:"), "private: private data", "{run}");
        }
    }
}

/// A spec asking for the instance's root to be host root is refused.
#[test]
fn host_root_as_the_instances_root_is_refused() {
    let f = Fixture::new();
    for ids in [HostIds { uid: 0, gid: 4243 }, HostIds { uid: 4242, gid: 0 }] {
        let mut spec = f.spec(&["/bin/true"]);
        spec.host_ids = ids;
        let e = spec.validate().unwrap_err().to_string();
        assert!(e.contains("host root"), "{e}");
    }
}

#[tokio::test]
async fn there_is_no_network() {
    let f = Fixture::new();
    let script = "{ read h; read h; while read l; do echo if: ${l%%:*}; done; } < /proc/net/dev; \
                  echo inet6: $(cat /proc/net/if_inet6); \
                  torture socket-inet tcp-connect socket-unix; cat /run/cella/denials.json";
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", script])).await;
        assert_eq!(run.code, Some(0), "{run}");
        let interfaces: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with("if:"))
            .collect();
        assert_eq!(interfaces, ["if: lo"], "{run}");
        // The loopback interface is down: no address at all.
        assert_eq!(run.line("inet6:"), "inet6:", "{run}");
        assert_eq!(
            run.line("socket-inet:"),
            "socket-inet: denied Operation not permitted"
        );
        assert_eq!(
            run.line("tcp-connect:"),
            "tcp-connect: denied Operation not permitted"
        );
        assert!(
            run.line("socket-unix:").starts_with("socket-unix: allowed"),
            "{run}"
        );
        assert_eq!(run.denials()["by_syscall"]["socket"], 2, "{run}");
    }
}

#[tokio::test]
async fn writes_outside_the_writable_paths_fail() {
    let f = Fixture::new();
    let script = "echo ok > /cella/scratch/f && cat /cella/scratch/f; \
                  echo ok > /tmp/f && echo tmp: $(cat /tmp/f); \
                  echo bad > /cella/host-rw/data 2>/dev/null || echo host-rw: refused; \
                  echo bad > /cella/x 2>/dev/null || echo cella: refused; \
                  echo bad > /run/cella/denials.json 2>/dev/null || echo denials: refused; \
                  rm /run/cella/denials.json 2>/dev/null || echo rm-denials: refused; \
                  echo x > /dev/null && echo dev-null: ok";
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", script])).await;
        assert_eq!(run.code, Some(0), "{run}");
        for l in [
            "ok",
            "tmp: ok",
            "host-rw: refused",
            "cella: refused",
            "denials: refused",
            "rm-denials: refused",
            "dev-null: ok",
        ] {
            assert!(run.stdout.lines().any(|x| x == l), "missing {l:?}: {run}");
        }
        assert_eq!(
            fs::read_to_string(f.path("host-rw/data")).unwrap(),
            "original"
        );
    }
}

#[tokio::test]
async fn denied_system_calls_fail_and_are_counted() {
    let f = Fixture::new();
    let script = "torture ptrace mount unshare setuid kill-1 clone-ns clone3-ns thread; \
                  cat /run/cella/denials.json";
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", script])).await;
        assert_eq!(run.code, Some(0), "{run}");
        for attempt in [
            "ptrace",
            "mount",
            "unshare",
            "setuid",
            "kill-1",
            "clone-ns",
            "clone3-ns",
        ] {
            assert_eq!(
                run.line(&format!("{attempt}:")),
                format!("{attempt}: denied Operation not permitted"),
                "{run}"
            );
        }
        // Threads work: clone3 without namespace flags falls back to clone.
        assert_eq!(run.line("thread:"), "thread: allowed 0", "{run}");
        let d = run.denials();
        let expected = serde_json::json!({
            "total": 7,
            "by_syscall": {"ptrace": 1, "mount": 1, "unshare": 1, "setuid": 1, "kill": 1,
                           "clone": 1, "clone3": 1}
        });
        assert_eq!(d, expected, "{run}");
    }
}

#[tokio::test]
async fn kernel_attack_surface_is_denied_and_counted() {
    let f = Fixture::new();
    let calls = [
        "tgkill-1",
        "chroot",
        "bpf",
        "keyctl",
        "add_key",
        "userfaultfd",
        "perf_event_open",
        "init_module",
        "kexec_load",
        "setns",
        "pivot_root",
        "io_uring_setup",
    ];
    let script = format!("torture {}; cat /run/cella/denials.json", calls.join(" "));
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", &script])).await;
        assert_eq!(run.code, Some(0), "{run}");
        let d = run.denials();
        for call in calls {
            assert_eq!(
                run.line(&format!("{call}:")),
                format!("{call}: denied Operation not permitted"),
                "{run}"
            );
            let name = call.trim_end_matches("-1");
            assert_eq!(d["by_syscall"][name], 1, "{name}: {run}");
        }
        assert_eq!(d["total"], calls.len(), "{run}");
    }
}

#[tokio::test]
async fn a_32_bit_call_is_denied_and_named_not_killed() {
    let f = Fixture::new();
    let script = "torture int80; cat /run/cella/denials.json";
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", script])).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert_eq!(
            run.line("int80:"),
            "int80: denied Operation not permitted",
            "{run}"
        );
        assert_eq!(run.denials()["by_syscall"]["i386:nr_20"], 1, "{run}");
    }
}

/// Without a cgroup, memory no RLIMIT_AS sees (memfd) is refused; a spec that requires
/// the cgroup is refused where none can be made, and runs with one where it can.
#[tokio::test]
async fn memory_beyond_the_rlimits_needs_a_cgroup() {
    let f = Fixture::new();
    let cgroups = Path::new("/sys/fs/cgroup/memory").is_dir();
    for user in users() {
        let script = "torture memfd; cat /run/cella/memory.oom_control 2>/dev/null || echo oom_control: absent";
        let optional = f.spec(&["/bin/sh", "-c", script]);
        let run = f.run(user, &optional).await;
        assert_eq!(run.code, Some(0), "{run}");
        let mut required = optional.clone();
        if let Some(c) = required.cgroup.as_mut() {
            c.required = true;
        }
        let strict = f.run(user, &required).await;
        if is_root(user) && cgroups {
            assert_eq!(run.line("memfd:"), "memfd: allowed 3", "{run}");
            assert!(run.stdout.contains("oom_kill 0"), "{run}");
            assert_eq!(strict.code, Some(0), "{strict}");
        } else {
            assert_eq!(
                run.line("memfd:"),
                "memfd: denied Operation not permitted",
                "{run}"
            );
            assert!(run.stdout.contains("oom_control: absent"), "{run}");
            assert!(run.stderr.contains(jail::CGROUP_SKIPPED), "{run}");
            assert_eq!(strict.code, Some(125), "{strict}");
            assert!(strict.stderr.contains(jail::CGROUP_REQUIRED), "{strict}");
            assert!(!strict.stdout.contains("memfd:"), "nothing ran: {strict}");
        }
    }
}

#[tokio::test]
async fn a_busy_loop_is_stopped_by_the_cpu_limit() {
    let f = Fixture::new();
    for user in users() {
        let mut spec = f.spec(&["/bin/torture", "spin"]);
        spec.limits.cpu_seconds = 1;
        let started = Instant::now();
        let run = f.run(user, &spec).await;
        // SIGXCPU at one CPU second (SIGKILL a second later if it were caught).
        assert_eq!(run.code, Some(128 + libc::SIGXCPU), "{run}");
        assert!(started.elapsed() < Duration::from_secs(30), "{run}");
    }
}

#[tokio::test]
async fn a_fork_bomb_is_stopped() {
    let f = Fixture::new();
    for user in users() {
        if is_root(user) && !Path::new("/sys/fs/cgroup/pids").is_dir() {
            // RLIMIT_NPROC does not bind host root: only the pids cgroup does.
            eprintln!("skipped as root: no cgroup v1 pids controller");
            continue;
        }
        let run = f.run(user, &f.spec(&["/bin/torture", "forkbomb"])).await;
        let line = run.line("forkbomb:");
        let n: u64 = line
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.trim_end_matches(':').parse().ok())
            .unwrap_or_else(|| panic!("{run}"));
        assert!(n < 32, "{n} processes started: {run}");
        assert!(line.ends_with("Resource temporarily unavailable"), "{run}");
        // The bomb killed its own process group last; the jailer reports the signal.
        assert_eq!(run.code, Some(128 + 9), "{run}");
    }
}

#[tokio::test]
async fn a_memory_bomb_is_stopped() {
    let f = Fixture::new();
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/torture", "membomb"])).await;
        if is_root(user) && run.code == Some(128 + 9) {
            // As root the cgroup's 256 MiB come first: the kernel's OOM killer ends it.
            assert!(!run.stdout.contains("membomb:"), "{run}");
            continue;
        }
        // Otherwise RLIMIT_AS (512 MiB) refuses the next mapping.
        assert_eq!(run.code, Some(0), "{run}");
        let line = run.line("membomb:");
        let mib: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(mib < 512, "{mib} MiB allocated: {run}");
        assert!(line.ends_with("Cannot allocate memory"), "{run}");
    }
}

#[tokio::test]
async fn a_full_tmpfs_says_no_space() {
    let f = Fixture::new();
    let script = "dd if=/dev/zero of=/cella/scratch/fill bs=64k count=64 2>&1; \
                  echo size: $(ls -l /cella/scratch/fill | while read a b c d s r; do echo $s; done)";
    for user in users() {
        let run = f.run(user, &f.spec(&["/bin/sh", "-c", script])).await;
        assert!(run.stdout.contains("No space left on device"), "{run}");
        assert_eq!(run.line("size:"), "size: 1048576", "{run}");
    }
}

#[tokio::test]
async fn argv_env_cwd_and_exit_status_reach_the_caller() {
    let f = Fixture::new();
    for user in users() {
        let mut spec = f.spec(&["sh", "-c", "echo $0 $1 $FOO $(pwd); exit 7", "zero", "one"]);
        spec.env.insert("FOO".into(), "bar".into());
        let run = f.run(user, &spec).await;
        assert_eq!(run.code, Some(7), "{run}");
        assert_eq!(run.line("zero"), "zero one bar /cella/scratch", "{run}");
        // Unprivileged, the cgroups are skipped with a warning, never a failure.
        assert_eq!(
            run.stderr.contains("warning: cgroup limits not applied"),
            !is_root(user),
            "{run}"
        );

        let run = f.run(user, &f.spec(&["/bin/sh", "-c", "kill -9 $$"])).await;
        assert_eq!(run.code, Some(128 + 9), "{run}");

        // Host paths behind absolute symlinks are resolved before the root changes.
        let link = f.path("image-link");
        if !link.exists() {
            std::os::unix::fs::symlink(f.path("rootfs"), &link).unwrap();
        }
        let mut spec = f.spec(&["/bin/cat", "/cella/secret"]);
        spec.rootfs = link;
        spec.binds.push(Bind {
            host: f.path("image-link/bin/../../secret"),
            inside: "/cella/secret".into(),
            writable: false,
        });
        let run = f.run(user, &spec).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert_eq!(run.stdout, "host secret", "{run}");

        let run = f.run(user, &f.spec(&["/bin/missing"])).await;
        assert_eq!(run.code, Some(i32::from(jail::EXIT_NOT_FOUND)), "{run}");
        assert!(run.stderr.contains("/bin/missing"), "{run}");
    }
}

#[tokio::test]
async fn a_bad_spec_fails_before_anything_runs() {
    let f = Fixture::new();
    // command() checks the spec before anything starts.
    let mut spec = f.spec(&["/bin/sh"]);
    spec.cwd = "relative".into();
    let err = jail::command(&f.path("cella-jail"), &spec).unwrap_err();
    assert!(err.to_string().contains("cwd relative"), "{err}");

    // The jailer itself refuses what is not a spec.
    let out = Command::new(f.path("cella-jail"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"{\"rootfs\": 1}")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(jail::EXIT_SETUP_FAILED)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("cella-jail: invalid jail spec"),
        "{stderr}"
    );

    let mut spec = f.spec(&["/bin/sh", "-c", "echo ran"]);
    spec.rootfs = f.path("no-such-image");
    let run = f.run(User::Caller, &spec).await;
    assert_eq!(run.code, Some(i32::from(jail::EXIT_SETUP_FAILED)), "{run}");
    assert!(run.stderr.contains("no-such-image"), "{run}");
    assert!(!run.stdout.contains("ran"), "{run}");

    // A mount point that cannot exist in a bind is named.
    let mut spec = f.spec(&["/bin/sh", "-c", "echo ran"]);
    spec.binds.push(Bind {
        host: f.path("secret"),
        inside: "/cella/host-rw/sub/file".into(),
        writable: false,
    });
    let run = f.run(User::Caller, &spec).await;
    assert_eq!(run.code, Some(i32::from(jail::EXIT_SETUP_FAILED)), "{run}");
    assert!(run.stderr.contains("/cella/host-rw/sub/file"), "{run}");
}

/// The pid namespace (as `/proc/<pid>/ns/pid` reads) of the jailer's child, PID 1 of the
/// instance.
fn instance_pid_ns(jailer: u32) -> String {
    let children = fs::read_to_string(format!("/proc/{jailer}/task/{jailer}/children")).unwrap();
    let pid1 = children
        .split_whitespace()
        .next()
        .expect("the jailer has a child");
    fs::read_link(format!("/proc/{pid1}/ns/pid"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Host pids of the processes in pid namespace `ns`.
fn processes_in(ns: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/ns/pid"))
                .map(|l| l.to_string_lossy() == ns)
                .unwrap_or(false)
        })
        .collect()
}

/// Starts the jailer on `spec`, whose program prints `ready` once it has started what the
/// test looks at; returns the jailer and its pid once that line came (within 30 s).
async fn spawn_until_ready(
    f: &Fixture,
    user: User,
    spec: &JailSpec,
) -> (tokio::process::Child, u32) {
    let mut child = f.command(user, spec).spawn().unwrap();
    let jailer = child.id().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    // The pipe stays open: the program must not get SIGPIPE for a later line.
    child.stdout = Some(lines.into_inner().into_inner());
    (child, jailer)
}

#[tokio::test]
async fn killing_the_process_group_leaves_no_process() {
    let f = Fixture::new();
    for user in users() {
        let spec = f.spec(&[
            "/bin/sh",
            "-c",
            "sleep 1000 & sleep 1000 & (sleep 1000 &) ; echo ready; wait",
        ]);
        let (mut child, jailer) = spawn_until_ready(&f, user, &spec).await;
        let ns = instance_pid_ns(jailer);
        let before = processes_in(&ns);
        // PID 1, sh, three sleeps (one orphaned to PID 1).
        assert!(before.len() >= 5, "{before:?}");
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(jailer).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = processes_in(&ns);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind as {user:?}: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn cgroup_dirs(jailer: u32) -> Vec<PathBuf> {
    ["memory", "pids"]
        .iter()
        .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/cella/jail-{jailer}")))
        .collect()
}

#[tokio::test]
async fn as_root_the_cgroups_are_created_and_removed() {
    if !nix::unistd::geteuid().is_root() || !Path::new("/sys/fs/cgroup/pids").is_dir() {
        eprintln!("skipped: needs root and cgroup v1 pids and memory controllers");
        return;
    }
    let f = Fixture::new();
    let user = User::Caller;
    assert!(is_root(user));

    // Stopped by a signal to the jailer: the instance goes, the cgroups too.
    let spec = f.spec(&["/bin/sh", "-c", "sleep 1000 & echo ready; wait"]);
    let (mut child, jailer) = spawn_until_ready(&f, user, &spec).await;
    let dirs = cgroup_dirs(jailer);
    assert_eq!(
        fs::read_to_string(dirs[1].join("pids.max")).unwrap().trim(),
        "32"
    );
    assert_eq!(
        fs::read_to_string(dirs[0].join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (256u64 << 20).to_string()
    );
    let procs = fs::read_to_string(dirs[1].join("cgroup.procs")).unwrap();
    assert!(procs.lines().count() >= 3, "PID 1, sh and sleep: {procs:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(jailer).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(128 + 9));
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }

    // A normal exit removes them too.
    let mut child = f
        .command(user, &f.spec(&["/bin/sh", "-c", "cat /proc/self/cgroup"]))
        .spawn()
        .unwrap();
    let jailer = child.id().unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success());
    for d in cgroup_dirs(jailer) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[tokio::test]
async fn python_runs_with_no_denial() {
    // The host's Python with its standard library bound in, as a python3 image would
    // hold them.
    let python = Path::new("/usr/bin/python3");
    let stdlib = Path::new("/usr/lib/python3.11");
    if !python.exists() || !stdlib.is_dir() {
        eprintln!("skipped: needs /usr/bin/python3 (3.11)");
        return;
    }
    let f = Fixture::new();
    let root = f.path("rootfs");
    copy_in(&root, python, 0o555);
    for lib in libraries(python) {
        copy_in(&root, &lib, 0o555);
    }
    fs::write(
        f.path("host-rw/job.py"),
        "import csv, io, json, hashlib, statistics, threading, subprocess\n\
         rows = list(csv.DictReader(io.StringIO('x\\n1\\n2\\n6\\n')))\n\
         xs = [float(r['x']) for r in rows]\n\
         t = threading.Thread(target=lambda: None); t.start(); t.join()\n\
         out = subprocess.run(['/bin/echo', 'child'], capture_output=True, text=True).stdout.strip()\n\
         print(json.dumps({'mean': statistics.mean(xs), 'var': statistics.variance(xs),\n\
                           'sha': hashlib.sha256(b'x').hexdigest()[:8], 'child': out}))\n\
         print(open('/run/cella/denials.json').read())\n",
    )
    .unwrap();
    for user in users() {
        let mut spec = f.spec(&["/usr/bin/python3", "-I", "-B", "/cella/host-rw/job.py"]);
        spec.binds.push(Bind {
            host: stdlib.to_path_buf(),
            inside: stdlib.to_path_buf(),
            writable: false,
        });
        let run = f.run(user, &spec).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert_eq!(
            run.line("{\"mean\""),
            r#"{"mean": 3.0, "var": 7.0, "sha": "2d711642", "child": "child"}"#,
            "{run}"
        );
        assert_eq!(run.denials()["total"], 0, "{run}");
    }
}
