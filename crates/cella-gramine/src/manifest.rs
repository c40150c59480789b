//! Gramine manifests for runtime images, in Gramine's TOML syntax (v1.8 and later),
//! emitted with the `toml` crate from typed structures (never from string templates).
//!
//! What an instance sees (see `docs/gramine.md` for why each line is there):
//!
//! | inside | what | manifest |
//! |---|---|---|
//! | `/` | the image's files, read-only | `fs.root`, a `chroot` mount of the image's rootfs; every file in `sgx.trusted_files` with its SHA-256 |
//! | `/opt/cella/cella-preload` | the pre-load module, `libos.entrypoint` | a `chroot` file mount, trusted |
//! | its libraries | at the paths its ELF interpreter asks for | `chroot` file mounts, trusted |
//! | `/opt/cella/executor-policy.toml` | the policy the instance checks its executor with | a `chroot` file mount, trusted |
//! | `/cella` | the workload, inputs, outputs, scratch | an `encrypted` mount of the launch directory's `cella/`, key `cella_instance`, provisioned at start by the pre-load module with fresh random bytes |
//! | `/tmp` | small private scratch | `tmpfs` |
//!
//! `/cella` is an encrypted mount rather than `tmpfs` because Gramine's `tmpfs` is private
//! to each process: the program is a child process (a new enclave), and it would see
//! neither the inputs the pre-load module laid out nor leave it its outputs. Encrypted
//! files under a key the pre-load module draws at random are shared with the child
//! (Gramine hands its keys to child processes) and with nobody else: the host sees
//! ciphertext, and cannot swap files between instances, which have different keys.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use cella_libos::RuntimeImage;
use serde::Serialize;

use crate::config::{GramineConfig, Mode};

/// The pre-load module's path inside an instance (`libos.entrypoint`). Its file name is
/// `cella-preload`, so a multi-call `cella` binary mounted there runs the pre-load module.
pub const PRELOAD_PATH: &str = "/opt/cella/cella-preload";
/// The executor policy's path inside an instance (`CELLA_PRELOAD_POLICY`).
pub const POLICY_PATH: &str = "/opt/cella/executor-policy.toml";
/// The pre-load module's work directory inside an instance (`CELLA_PRELOAD_WORK_DIR`).
pub const WORK_DIR: &str = "/cella";
/// The host directory backing [`WORK_DIR`], relative to the loader's working directory
/// (a fresh directory per launch), so that the manifest, and the measurement, do not
/// change from one launch to the next.
pub const WORK_DIR_HOST: &str = "cella";
/// The name of the encryption key of [`WORK_DIR`], which the pre-load module provisions
/// through `/dev/attestation/keys/` (`CELLA_PRELOAD_INSTANCE_KEY`).
pub const INSTANCE_KEY_NAME: &str = "cella_instance";
/// Environment variables the host passes to the pre-load module: the launch parameters.
/// Not secret, and they carry nothing secret (see `docs/gramine.md`).
pub const PASSTHROUGH_ENV: [&str; 2] = ["CELLA_PRELOAD_NONCE", "CELLA_PRELOAD_SOCKET"];
/// A fixed variable naming the runtime image and its manifest digest
/// (`<name>@<hex>`), so that `MRENCLAVE` covers the image's name and command line too.
pub const IMAGE_ENV: &str = "CELLA_RUNTIME_IMAGE";
/// With `mode = "direct"` only: where the node serves simulation evidence
/// (`gramine-direct` has no quotes). Never in an SGX manifest.
pub const DIRECT_PASSTHROUGH_ENV: &str = "CELLA_PRELOAD_EVIDENCE";

/// The variables the host may pass to an instance in `mode`.
pub fn passthrough_env(mode: Mode) -> Vec<&'static str> {
    let mut names = PASSTHROUGH_ENV.to_vec();
    if mode == Mode::Direct {
        names.push(DIRECT_PASSTHROUGH_ENV);
    }
    names
}

/// A host file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    /// The host path.
    pub path: PathBuf,
    /// SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

impl HostFile {
    /// Hashes the file at `path` (streaming: images hold large files).
    ///
    /// # Errors
    ///
    /// [`ManifestError::Read`] if it cannot be read.
    pub fn measure(path: &Path) -> Result<Self, ManifestError> {
        let read = |source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(read)?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(Self {
            path: path.to_path_buf(),
            sha256: hex::encode(ctx.finish()),
        })
    }
}

/// A shared library of the pre-load module: where the dynamic loader looks for it inside
/// the instance, and the host file mounted there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The path inside the instance (what the ELF interpreter and `DT_NEEDED` resolve to).
    pub inside: PathBuf,
    /// The host file (symbolic links resolved) and its SHA-256.
    pub file: HostFile,
}

/// What a manifest is generated from.
#[derive(Debug, Clone)]
pub struct ManifestInput<'a> {
    /// The runtime image.
    pub image: &'a RuntimeImage,
    /// The image's rootfs on the host: each file at `<rootfs>/<path>`.
    pub rootfs: &'a Path,
    /// The pre-load module.
    pub preload: &'a HostFile,
    /// Its shared libraries (empty for a static binary).
    pub libraries: &'a [Library],
    /// The executor policy the instance checks its executor with.
    pub executor_policy: &'a HostFile,
    /// Gramine's LibOS (`loader.entrypoint`); its SHA-256 if it could be read (otherwise
    /// `gramine-sgx-sign` adds it).
    pub libos: &'a Path,
    /// The LibOS's SHA-256, when known.
    pub libos_sha256: Option<&'a str>,
}

/// A manifest could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A path is unusable in a manifest.
    #[error("{what} {path:?}: {reason}")]
    Path {
        /// Which path.
        what: &'static str,
        /// The path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A library of the pre-load module would replace a different file of the image.
    #[error(
        "the pre-load module needs {path} with SHA-256 {preload}, but image {image:?} has \
         another file there (SHA-256 {image_sha256})"
    )]
    Conflict {
        /// The image.
        image: String,
        /// The path inside the instance.
        path: String,
        /// The pre-load module's file's digest.
        preload: String,
        /// The image's file's digest.
        image_sha256: String,
    },
    /// The image's description is invalid.
    #[error("runtime image: {0}")]
    Image(String),
    /// Serialising failed (a bug).
    #[error("serialising the manifest: {0}")]
    Toml(String),
}

/// `loader.env.<NAME>`: a fixed value or a passthrough.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum EnvValue {
    Value(String),
    Passthrough { passthrough: bool },
}

#[derive(Debug, Serialize)]
struct Manifest {
    loader: Loader,
    libos: Libos,
    sys: Sys,
    fs: Fs,
    sgx: Sgx,
}

#[derive(Debug, Serialize)]
struct Loader {
    entrypoint: UriEntry,
    log_level: &'static str,
    argv: Vec<String>,
    env: BTreeMap<String, EnvValue>,
}

#[derive(Debug, Serialize)]
struct UriEntry {
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

#[derive(Debug, Serialize)]
struct Libos {
    entrypoint: String,
}

#[derive(Debug, Serialize)]
struct Sys {
    enable_sigterm_injection: bool,
    stack: Stack,
}

#[derive(Debug, Serialize)]
struct Stack {
    size: String,
}

#[derive(Debug, Serialize)]
struct Fs {
    root: Mount,
    mounts: Vec<Mount>,
}

#[derive(Debug, Serialize)]
struct Mount {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_name: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct Sgx {
    debug: bool,
    edmm_enable: bool,
    enclave_size: String,
    max_threads: u32,
    isvprodid: u16,
    isvsvn: u16,
    remote_attestation: &'static str,
    file_check_policy: &'static str,
    trusted_files: Vec<UriEntry>,
}

/// `file:<absolute host path>`, refusing paths a manifest cannot carry.
fn file_uri(what: &'static str, path: &Path) -> Result<String, ManifestError> {
    let fail = |reason| ManifestError::Path {
        what,
        path: path.display().to_string(),
        reason,
    };
    let s = path.to_str().ok_or_else(|| fail("is not UTF-8"))?;
    if !path.is_absolute() {
        return Err(fail("is not absolute"));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(fail("has . or .. components"));
    }
    Ok(format!("file:{s}"))
}

/// Checks an in-instance path of the image: absolute, normal components, not under the
/// directories the manifest mounts itself.
fn check_inside(path: &str) -> Result<(), ManifestError> {
    let fail = |reason| ManifestError::Path {
        what: "image file",
        path: path.to_owned(),
        reason,
    };
    let p = Path::new(path);
    if !p.is_absolute()
        || p.components()
            .skip(1)
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(fail("must be absolute with no . or .. components"));
    }
    if p.components().count() < 2 {
        return Err(fail("is the root"));
    }
    for reserved in [WORK_DIR, "/tmp", "/opt/cella", "/dev", "/proc", "/sys"] {
        if p.starts_with(reserved) {
            return Err(fail("is under a directory the instance mounts itself"));
        }
    }
    Ok(())
}

/// Generates the manifest of `input.image` under `config`: the text `gramine-sgx-sign`
/// takes (`<name>.manifest`).
///
/// # Errors
///
/// [`ManifestError`] for an invalid image, an unusable path, or a library of the pre-load
/// module that would replace a different file of the image.
pub fn generate(
    input: &ManifestInput<'_>,
    config: &GramineConfig,
) -> Result<String, ManifestError> {
    let image = input.image;
    image.validate().map_err(ManifestError::Image)?;

    let mut trusted = Vec::new();
    let mut image_files = BTreeMap::new();
    for f in &image.files {
        check_inside(&f.path)?;
        let host = input.rootfs.join(f.path.trim_start_matches('/'));
        let sha256 = f.sha256.to_ascii_lowercase();
        image_files.insert(f.path.clone(), sha256.clone());
        trusted.push(UriEntry {
            uri: file_uri("image file", &host)?,
            sha256: Some(sha256),
        });
    }

    let file_mount = |inside: &str, host: &Path, what| -> Result<Mount, ManifestError> {
        Ok(Mount {
            kind: "chroot",
            path: Some(inside.to_owned()),
            uri: Some(file_uri(what, host)?),
            key_name: None,
        })
    };
    let mut mounts = vec![
        file_mount(PRELOAD_PATH, &input.preload.path, "pre-load module")?,
        file_mount(POLICY_PATH, &input.executor_policy.path, "executor policy")?,
    ];
    trusted.push(UriEntry {
        uri: file_uri("pre-load module", &input.preload.path)?,
        sha256: Some(input.preload.sha256.clone()),
    });
    trusted.push(UriEntry {
        uri: file_uri("executor policy", &input.executor_policy.path)?,
        sha256: Some(input.executor_policy.sha256.clone()),
    });
    let mut libraries: Vec<&Library> = input.libraries.iter().collect();
    libraries.sort_by(|a, b| a.inside.cmp(&b.inside));
    libraries.dedup_by(|a, b| a.inside == b.inside);
    for lib in libraries {
        let inside = lib.inside.to_str().ok_or_else(|| ManifestError::Path {
            what: "library",
            path: lib.inside.display().to_string(),
            reason: "is not UTF-8",
        })?;
        match image_files.get(inside) {
            // The image has the very same file: it is already there and trusted.
            Some(d) if *d == lib.file.sha256 => continue,
            Some(d) => {
                return Err(ManifestError::Conflict {
                    image: image.name.clone(),
                    path: inside.to_owned(),
                    preload: lib.file.sha256.clone(),
                    image_sha256: d.clone(),
                });
            }
            None => {}
        }
        check_inside(inside)?;
        mounts.push(file_mount(inside, &lib.file.path, "library")?);
        trusted.push(UriEntry {
            uri: file_uri("library", &lib.file.path)?,
            sha256: Some(lib.file.sha256.clone()),
        });
    }
    mounts.push(Mount {
        kind: "encrypted",
        path: Some(WORK_DIR.into()),
        uri: Some(format!("file:{WORK_DIR_HOST}")),
        key_name: Some(INSTANCE_KEY_NAME),
    });
    mounts.push(Mount {
        kind: "tmpfs",
        path: Some("/tmp".into()),
        uri: None,
        key_name: None,
    });
    trusted.sort_by(|a, b| a.uri.cmp(&b.uri));
    trusted.dedup_by(|a, b| a.uri == b.uri);

    let mut env = BTreeMap::new();
    for name in passthrough_env(config.mode) {
        env.insert(name.to_owned(), EnvValue::Passthrough { passthrough: true });
    }
    let fixed = [
        ("CELLA_PRELOAD_WORK_DIR", WORK_DIR),
        ("CELLA_PRELOAD_POLICY", POLICY_PATH),
        ("CELLA_PRELOAD_ROLE", cella_attest::policy::roles::CLIENT),
        ("CELLA_PRELOAD_INSTANCE_KEY", INSTANCE_KEY_NAME),
    ];
    for (name, value) in fixed {
        env.insert(name.to_owned(), EnvValue::Value(value.to_owned()));
    }
    // The image's whole description (name, argv, files) in the measurement: two images
    // with the same files but another command line are two enclaves.
    env.insert(
        IMAGE_ENV.to_owned(),
        EnvValue::Value(format!(
            "{}@{}",
            image.name,
            hex::encode(image.manifest_digest())
        )),
    );

    let manifest = Manifest {
        loader: Loader {
            entrypoint: UriEntry {
                uri: file_uri("libos", input.libos)?,
                sha256: input.libos_sha256.map(str::to_owned),
            },
            log_level: "error",
            argv: vec![PRELOAD_PATH.to_owned()],
            env,
        },
        libos: Libos {
            entrypoint: PRELOAD_PATH.to_owned(),
        },
        sys: Sys {
            enable_sigterm_injection: true,
            stack: Stack {
                size: config.stack_size.clone(),
            },
        },
        fs: Fs {
            root: Mount {
                kind: "chroot",
                path: None,
                uri: Some(file_uri("image rootfs", input.rootfs)?),
                key_name: None,
            },
            mounts,
        },
        sgx: Sgx {
            debug: config.debug,
            edmm_enable: config.edmm_enable,
            enclave_size: config.enclave_size.clone(),
            max_threads: config.max_threads,
            isvprodid: config.isv_prod_id,
            isvsvn: config.isv_svn,
            remote_attestation: "dcap",
            file_check_policy: "strict",
            trusted_files: trusted,
        },
    };
    let body = toml::to_string(&manifest).map_err(|e| ManifestError::Toml(e.to_string()))?;
    Ok(format!(
        "# Gramine manifest of the cella runtime image {:?}, generated by cella.\n\
         # Do not edit: the enclave's measurement (MRENCLAVE) covers every byte of it.\n\n{body}",
        image.name,
    ))
}
