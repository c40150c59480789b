//! Fixtures: a fake image rootfs, a fake pre-load module and library, a fake LibOS.

use std::path::{Path, PathBuf};

use cella_gramine::GramineConfig;
use cella_gramine::manifest::{HostFile, Library, ManifestInput};
use cella_libos::RuntimeImage;
use cella_libos::image::ImageFile;

/// Where the fixture's host files live; golden files show it as `@ROOT@`.
pub(crate) const ROOT_PLACEHOLDER: &str = "@ROOT@";

pub(crate) fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn standin(name: &str) -> PathBuf {
    manifest_dir().join("tests/standins").join(name)
}

/// A fixture's files on disk.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) python3: RuntimeImage,
    pub(crate) native: RuntimeImage,
    pub(crate) preload: HostFile,
    pub(crate) libraries: Vec<Library>,
    pub(crate) policy: HostFile,
    pub(crate) libos: HostFile,
}

fn write(path: &Path, bytes: &[u8]) -> HostFile {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    HostFile::measure(path).unwrap()
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let rootfs = root.join("images/python3/rootfs");
        let mut files = Vec::new();
        for (path, content) in [
            ("/usr/bin/python3", &b"python interpreter"[..]),
            ("/usr/lib/python3.12/os.py", b"import abc"),
            ("/lib/x86_64-linux-gnu/libc.so.6", b"the image's libc"),
            ("/lib64/ld-linux-x86-64.so.2", b"the image's loader"),
        ] {
            let f = write(&rootfs.join(&path[1..]), content);
            files.push(ImageFile {
                path: path.into(),
                sha256: f.sha256,
            });
        }
        std::fs::create_dir_all(root.join("images/native/rootfs")).unwrap();
        let python3 = RuntimeImage {
            name: "python3".into(),
            argv: vec!["/usr/bin/python3".into(), "program".into()],
            files,
        };
        let preload = write(&root.join("bin/cella-preload"), b"#!/bin/sh\nexit 1\n");
        let ld = write(
            &root.join("host/ld-linux-x86-64.so.2"),
            b"the image's loader",
        );
        let libc = write(&root.join("host/libc.so.6"), b"the host's libc");
        let libgcc = write(&root.join("host/libgcc_s.so.1"), b"the host's libgcc");
        let libraries = vec![
            // The same bytes as the image's: not mounted twice.
            Library {
                inside: "/lib64/ld-linux-x86-64.so.2".into(),
                file: ld,
            },
            Library {
                inside: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                file: libc,
            },
            Library {
                inside: "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1".into(),
                file: libgcc,
            },
        ];
        let policy = write(&root.join("executor-policy.toml"), b"version = 1\n");
        let libos = write(&root.join("gramine/libsysdb.so"), b"gramine libos");
        Self {
            dir,
            root,
            python3,
            native: RuntimeImage::native(),
            preload,
            libraries,
            policy,
            libos,
        }
    }

    pub(crate) fn rootfs(&self, image: &str) -> PathBuf {
        self.root.join("images").join(image).join("rootfs")
    }

    pub(crate) fn input<'a>(
        &'a self,
        image: &'a RuntimeImage,
        rootfs: &'a Path,
    ) -> ManifestInput<'a> {
        ManifestInput {
            image,
            rootfs,
            preload: &self.preload,
            libraries: &self.libraries,
            executor_policy: &self.policy,
            libos: &self.libos.path,
            libos_sha256: Some(&self.libos.sha256),
        }
    }

    /// The manifest of `image` with its host paths replaced by [`ROOT_PLACEHOLDER`].
    pub(crate) fn generate(&self, image: &RuntimeImage, config: &GramineConfig) -> String {
        let rootfs = self.rootfs(&image.name);
        cella_gramine::manifest::generate(&self.input(image, &rootfs), config).unwrap()
    }

    pub(crate) fn placeholder(&self, text: &str) -> String {
        text.replace(self.root.to_str().unwrap(), ROOT_PLACEHOLDER)
    }

    #[allow(dead_code, reason = "keeps the temporary directory alive")]
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A configuration for signing with the stand-ins.
pub(crate) fn sgx_config() -> GramineConfig {
    let mut c = GramineConfig::defaults(cella_gramine::Mode::Sgx);
    c.signing_key = Some("/nonexistent/key.pem".into());
    c.collateral = Some("/nonexistent/collateral.json".into());
    c
}

/// A binary of this build's workspace (built if it is not there yet).
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/<bin>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = profile_dir.join(bin);
    // `cargo test --workspace` (CI, the README's command) builds every package's binaries
    // before any test runs, so the binary beside the tests is current. Only a test run of
    // this package alone may lack it: build it then. (Building it every time would
    // resolve features for that package alone and rebuild shared dependencies under the
    // running workspace's feet.) After changing cella-preload or cella-sandbox, run the
    // workspace's tests, or `cargo build -p` them, before this package's alone.
    if !path.is_file() {
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", package, "--bin", bin]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building {bin}");
    }
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The `cella-preload` binary of this build.
pub(crate) fn preload_binary() -> PathBuf {
    workspace_binary("cella-preload", "cella-preload")
}

/// The sandbox backend's jailer, `cella-jail`, of this build.
pub(crate) fn jailer_binary() -> PathBuf {
    workspace_binary("cella-sandbox", "cella-jail")
}

/// The sample DCAP quote and collateral of `cella-attest`'s test data (from dcap-qvl).
pub(crate) fn attest_testdata(name: &str) -> PathBuf {
    manifest_dir().join("../cella-attest/testdata").join(name)
}
