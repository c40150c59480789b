//! `cella image build|list|inspect`: the node's runtime images, in its data directory
//! (no login: these work on the local files, see docs/images.md).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cella_image::{BuildProgress, ImageStore, ImageSummary};
use serde_json::json;

use crate::output::Report;

/// `cella image` subcommands. New subcommands are new variants here and arms in [`run`].
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ImageCmd {
    /// Build (or rebuild) a runtime image from this host's files.
    #[command(subcommand)]
    Build(BuildCmd),
    /// The images of the data directory: name, files, size, measurement.
    List(StoreArgs),
    /// One image, verified file by file, with its command line and its files.
    Inspect(InspectArgs),
    /// The Gramine manifest of an image, as a node with `backend = "gramine"` generates
    /// it (to review it, or sign it by hand with gramine-sgx-sign; docs/gramine.md).
    GramineManifest(GramineManifestArgs),
}

/// `cella image gramine-manifest`.
#[derive(Debug, clap::Args)]
pub(crate) struct GramineManifestArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The image's name.
    pub(crate) name: String,
    /// Write the manifest here (default: print it).
    #[arg(long, value_name = "PATH")]
    pub(crate) out: Option<PathBuf>,
    /// The policy instances check their executor with (default: the one the node wrote
    /// at its last start, DIR/libos/gramine/executor-policy.toml).
    #[arg(long, value_name = "PATH")]
    pub(crate) executor_policy: Option<PathBuf>,
    /// sgx.enclave_size.
    #[arg(long, value_name = "SIZE", default_value = "2G")]
    pub(crate) enclave_size: String,
    /// sgx.max_threads.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub(crate) max_threads: u32,
    /// sgx.edmm_enable = true.
    #[arg(long)]
    pub(crate) edmm: bool,
    /// sgx.debug = true (a debug enclave: never in production).
    #[arg(long)]
    pub(crate) debug: bool,
    /// The pre-load module (default: cella-preload next to this binary, else this binary).
    #[arg(long, value_name = "PATH")]
    pub(crate) preload: Option<PathBuf>,
    /// Gramine's libsysdb.so (default: the Debian/Ubuntu package's path).
    #[arg(long, value_name = "PATH")]
    pub(crate) libos: Option<PathBuf>,
}

/// What to build an image from.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum BuildCmd {
    /// A Python interpreter: itself, its shared libraries, its standard library and
    /// extension modules. Run functions with `--runtime NAME`.
    Python3(Python3Args),
    /// The shared libraries a native program loads (a static program needs none: its
    /// image is the built-in `native`).
    Native(NativeArgs),
}

/// Where the images are: the node's data directory, as for `cella serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The node's data directory; images go to DIR/images.
    #[arg(long, value_name = "DIR", env = "CELLA_DATA_DIR")]
    pub(crate) data_dir: PathBuf,
}

/// `cella image build python3`.
#[derive(Debug, clap::Args)]
pub(crate) struct Python3Args {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The interpreter (default: /usr/bin/python3 if it exists, else python3 on PATH,
    /// resolved to the real file; a pyenv shim is refused, name the real interpreter).
    #[arg(long, value_name = "PATH")]
    pub(crate) python: Option<PathBuf>,
    /// The image's name.
    #[arg(long, value_name = "NAME", default_value = "python3")]
    pub(crate) name: String,
}

/// `cella image build native`.
#[derive(Debug, clap::Args)]
pub(crate) struct NativeArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The program whose libraries the image holds.
    #[arg(long, value_name = "PATH")]
    pub(crate) binary: PathBuf,
    /// The image's name (default: `native` for a static program, else
    /// `native-<program's file name>`).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
}

/// `cella image inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The image's name.
    pub(crate) name: String,
}

/// A size for people: `12.3 MiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024 * 10 && unit + 1 < UNITS.len() {
        value /= 1024;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value} {}", UNITS[unit])
    }
}

fn summary_json(s: &ImageSummary) -> serde_json::Value {
    json!({
        "name": s.name,
        "files": s.files,
        "size_bytes": s.size_bytes,
        "measurement": s.measurement,
    })
}

/// The default name of a native image built from `binary`.
fn native_name(binary: &Path) -> anyhow::Result<String> {
    if cella_image::shared_libraries(binary)?.is_empty() {
        return Ok("native".into());
    }
    let stem: String = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(56)
        .collect();
    Ok(format!("native-{}", stem.trim_start_matches('.')))
}

/// A store that draws a progress bar on stderr (when it is a terminal and the image
/// large enough), and the bar to finish.
fn store_with_progress(
    data_dir: &Path,
) -> (ImageStore, Arc<Mutex<Option<indicatif::ProgressBar>>>) {
    let bar: Arc<Mutex<Option<indicatif::ProgressBar>>> = Arc::new(Mutex::new(None));
    let started = Arc::new(Mutex::new(false));
    let bar2 = Arc::clone(&bar);
    let store = ImageStore::new(data_dir).with_progress(move |p: BuildProgress| {
        let Ok(mut slot) = bar2.lock() else { return };
        if let Ok(mut s) = started.lock()
            && !*s
        {
            *s = true;
            *slot = crate::progress::bar(p.bytes_total, "image");
        }
        if let Some(b) = slot.as_ref() {
            b.set_position(p.bytes_done);
        }
    });
    (store, bar)
}

async fn build(data_dir: PathBuf, what: BuildWhat) -> anyhow::Result<ImageSummary> {
    tokio::task::spawn_blocking(move || {
        let (store, bar) = store_with_progress(&data_dir);
        let result = match what {
            BuildWhat::Python3 { python, name } => {
                let python = match python {
                    Some(p) => p,
                    None => cella_image::default_python()?,
                };
                store
                    .build_python3(&python, &name)
                    .with_context(|| format!("building image {name:?} from {}", python.display()))
            }
            BuildWhat::Native { binary, name } => {
                let name = match name {
                    Some(n) => n,
                    None => native_name(&binary)?,
                };
                store
                    .build_native(&binary, &name)
                    .with_context(|| format!("building image {name:?} for {}", binary.display()))
            }
        };
        if let Ok(mut b) = bar.lock()
            && let Some(b) = b.take()
        {
            b.finish_and_clear();
        }
        result
    })
    .await
    .context("the build stopped")?
}

enum BuildWhat {
    Python3 {
        python: Option<PathBuf>,
        name: String,
    },
    Native {
        binary: PathBuf,
        name: Option<String>,
    },
}

/// `cella image gramine-manifest`: the manifest, written or returned.
fn gramine_manifest(a: GramineManifestArgs) -> anyhow::Result<Report> {
    let loaded = ImageStore::new(&a.store.data_dir)
        .load(&a.name)
        .with_context(|| format!("image {:?}", a.name))?;
    let mut config = cella_gramine::GramineConfig::defaults(cella_gramine::Mode::Sgx);
    config.enclave_size = a.enclave_size;
    config.max_threads = a.max_threads;
    config.edmm_enable = a.edmm;
    config.debug = a.debug;
    config.preload = a.preload;
    config.libos = a.libos;
    let policy = a.executor_policy.unwrap_or_else(|| {
        a.store
            .data_dir
            .join(cella_gramine::node::WORK_DIR)
            .join("executor-policy.toml")
    });
    let text = cella_gramine::node::manifest_for_image(&loaded, &config, &policy)
        .map_err(anyhow::Error::msg)
        .with_context(|| {
            format!(
                "the Gramine manifest of {:?} (the executor policy is written by a node started                  with backend = \"gramine\", or give --executor-policy)",
                a.name
            )
        })?;
    match a.out {
        Some(out) => {
            std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
            Ok(Report::new(
                json!({ "image": a.name, "manifest": out }),
                format!(
                    "wrote the Gramine manifest of {} to {}
sign it: gramine-sgx-sign --manifest {} --output <name>.manifest.sgx --key <key.pem>",
                    a.name,
                    out.display(),
                    out.display()
                ),
            ))
        }
        None => Ok(Report::new(
            json!({ "image": a.name, "manifest_toml": text }),
            text.trim_end().to_owned(),
        )),
    }
}

/// Runs a `cella image` subcommand.
pub(crate) async fn run(cmd: ImageCmd) -> anyhow::Result<Report> {
    match cmd {
        ImageCmd::GramineManifest(a) => tokio::task::spawn_blocking(move || gramine_manifest(a))
            .await
            .context("generating the manifest stopped")?,
        ImageCmd::Build(build_cmd) => {
            let (data_dir, what) = match build_cmd {
                BuildCmd::Python3(a) => (
                    a.store.data_dir,
                    BuildWhat::Python3 {
                        python: a.python,
                        name: a.name,
                    },
                ),
                BuildCmd::Native(a) => (
                    a.store.data_dir,
                    BuildWhat::Native {
                        binary: a.binary,
                        name: a.name,
                    },
                ),
            };
            let s = build(data_dir.clone(), what).await?;
            let dir = ImageStore::new(&data_dir).root().join(&s.name);
            Ok(Report::new(
                json!({ "image": summary_json(&s), "dir": dir }),
                format!(
                    "built image {}: {} files, {}\nmeasurement {}\nin {}",
                    s.name,
                    s.files,
                    human_size(s.size_bytes),
                    s.measurement,
                    dir.display()
                ),
            ))
        }
        ImageCmd::List(a) => {
            let images = tokio::task::spawn_blocking(move || ImageStore::new(&a.data_dir).list())
                .await
                .context("listing stopped")??;
            let mut human = String::new();
            if images.is_empty() {
                human.push_str("no images (cella image build python3 builds one)");
            } else {
                human.push_str(&format!(
                    "{:<24} {:>7} {:>10}  {}",
                    "NAME", "FILES", "SIZE", "MEASUREMENT"
                ));
                for s in &images {
                    human.push_str(&format!(
                        "\n{:<24} {:>7} {:>10}  {}",
                        s.name,
                        s.files,
                        human_size(s.size_bytes),
                        s.measurement
                    ));
                }
            }
            let list: Vec<_> = images.iter().map(summary_json).collect();
            Ok(Report::new(json!({ "images": list }), human))
        }
        ImageCmd::Inspect(a) => {
            let name = a.name.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                ImageStore::new(&a.store.data_dir).load(&a.name)
            })
            .await
            .context("inspecting stopped")?
            .with_context(|| format!("image {name:?}"))?;
            let s = ImageSummary::of(&loaded.image, loaded.size_bytes);
            let mut human = format!(
                "image       {}\nfiles       {}\nsize        {}\nmeasurement {}\nargv        {}\nrootfs      {}\nverified    every file re-hashed\n",
                s.name,
                s.files,
                human_size(s.size_bytes),
                s.measurement,
                loaded.image.argv.join(" "),
                loaded.rootfs.display()
            );
            for f in &loaded.image.files {
                human.push_str(&format!("\n{}  {}", f.sha256, f.path));
            }
            let files: Vec<_> = loaded
                .image
                .files
                .iter()
                .map(|f| json!({ "path": f.path, "sha256": f.sha256 }))
                .collect();
            Ok(Report::new(
                json!({
                    "image": summary_json(&s),
                    "argv": loaded.image.argv,
                    "rootfs": loaded.rootfs,
                    "verified": true,
                    "files": files,
                }),
                human.trim_end().to_owned(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(10_239), "10239 B");
        assert_eq!(human_size(55_119_370), "52 MiB");
    }

    #[tokio::test]
    async fn build_list_inspect() {
        let dir = tempfile::tempdir().unwrap();
        let store = || StoreArgs {
            data_dir: dir.path().to_path_buf(),
        };
        let built = run(ImageCmd::Build(BuildCmd::Native(NativeArgs {
            store: store(),
            binary: "/bin/true".into(),
            name: None,
        })))
        .await
        .unwrap();
        assert_eq!(built.json["image"]["name"], "native-true");
        let measurement = built.json["image"]["measurement"].clone();
        let list = run(ImageCmd::List(store())).await.unwrap();
        assert_eq!(list.json["images"][0]["measurement"], measurement);
        assert!(list.human.contains("native-true"), "{}", list.human);
        let inspect = run(ImageCmd::Inspect(InspectArgs {
            store: store(),
            name: "native-true".into(),
        }))
        .await
        .unwrap();
        assert_eq!(inspect.json["image"]["measurement"], measurement);
        assert_eq!(inspect.json["argv"], json!(["./program"]));
        let files = inspect.json["files"].as_array().unwrap();
        assert_eq!(
            files.len(),
            usize::try_from(built.json["image"]["files"].as_u64().unwrap()).unwrap()
        );
        assert!(inspect.human.contains("libc.so"), "{}", inspect.human);
        let missing = run(ImageCmd::Inspect(InspectArgs {
            store: store(),
            name: "nope".into(),
        }))
        .await
        .unwrap_err();
        assert!(
            format!("{missing:#}").contains("no runtime image named \"nope\""),
            "{missing:#}"
        );
        let bad = run(ImageCmd::Build(BuildCmd::Python3(Python3Args {
            store: store(),
            python: Some("/bin/true".into()),
            name: "../x".into(),
        })))
        .await
        .unwrap_err();
        assert!(format!("{bad:#}").contains("invalid image name"), "{bad:#}");
    }

    #[tokio::test]
    async fn gramine_manifest_of_a_built_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = || StoreArgs {
            data_dir: dir.path().to_path_buf(),
        };
        run(ImageCmd::Build(BuildCmd::Native(NativeArgs {
            store: store(),
            binary: "/bin/true".into(),
            name: Some("true".into()),
        })))
        .await
        .unwrap();
        let args = |policy: Option<PathBuf>, out: Option<PathBuf>| GramineManifestArgs {
            store: store(),
            name: "true".into(),
            out,
            executor_policy: policy,
            enclave_size: "1G".into(),
            max_threads: 8,
            edmm: true,
            debug: false,
            preload: None,
            libos: None,
        };
        // No node has written its executor policy yet.
        let err = run(ImageCmd::GramineManifest(args(None, None)))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("--executor-policy"), "{err:#}");
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, "version = 1\n").unwrap();
        let out = dir.path().join("true.manifest");
        let r = run(ImageCmd::GramineManifest(args(
            Some(policy),
            Some(out.clone()),
        )))
        .await
        .unwrap();
        assert_eq!(r.json["manifest"], json!(out));
        let text = std::fs::read_to_string(&out).unwrap();
        let checked = cella_gramine::schema::check(&text, cella_gramine::Mode::Sgx).unwrap();
        assert!(text.contains("enclave_size = \"1G\"") && text.contains("edmm_enable = true"));
        // Every file of the image is trusted with its digest, and all are on disk.
        cella_gramine::schema::verify_files(&checked).unwrap();
        assert!(checked.trusted_files.len() > 2);
    }

    #[test]
    fn native_names() {
        assert_eq!(native_name(Path::new("/bin/true")).unwrap(), "native-true");
        assert!(native_name(Path::new("/nonexistent/x")).is_err());
    }
}
