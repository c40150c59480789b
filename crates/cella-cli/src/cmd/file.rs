//! `cella file …`: local encryption with the sealed stream format, and the file calls.
//!
//! Everything streams: memory stays at one chunk whatever the file size. Outputs are
//! written to a temporary file next to the destination and renamed into place only
//! when complete, so a failed decryption never leaves partial plaintext behind.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cella_client::{Client, DownloadSummary, proto};
use cella_crypto::FileKey;
use cella_crypto::stream::{self, DEFAULT_CHUNK_SIZE, StreamSummary};
use serde_json::json;
use tempfile::NamedTempFile;

use crate::cmd::Ctx;
use crate::output::{FILE_HEADER, Report, file_json, file_line, file_row, table};
use crate::parse;
use crate::progress;
use crate::secrets::{key_file_or_new, read_key_file, write_key_file};

/// `cella file` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FileCmd {
    /// Encrypt a file locally into the sealed stream format.
    Encrypt(EncryptArgs),
    /// Decrypt a sealed file locally.
    Decrypt(DecryptArgs),
    /// Upload a sealed file as an input; its key goes to the node over TLS.
    Upload {
        /// The sealed file.
        #[arg(value_name = "C")]
        path: PathBuf,
        /// Its key file.
        #[arg(long, value_name = "K")]
        key_file: PathBuf,
    },
    /// Register a sealed input the node reads from a URL (file://…).
    RegisterUrl {
        /// Where the node reads the sealed file.
        #[arg(value_name = "URL")]
        url: String,
        /// Its key file.
        #[arg(long, value_name = "K")]
        key_file: PathBuf,
        /// SHA-256 of the sealed file, hex (`cella file encrypt` prints it).
        #[arg(long, value_name = "HEX", value_parser = parse::digest_hex)]
        digest: String,
    },
    /// Register a place for a task output, encrypted under a key you keep.
    RegisterOutput {
        /// Key file to use; created if missing (default: a new <file-id>.key here).
        #[arg(long, value_name = "K")]
        key_file: Option<PathBuf>,
        /// Where the node writes the output (default: its blob store).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Show one of your files.
    Get {
        /// The file's id.
        #[arg(value_name = "ID", value_parser = parse::file_id)]
        id: String,
    },
    /// List your files.
    List,
    /// Delete a file no unfinished task uses.
    Delete {
        /// The file's id.
        #[arg(value_name = "ID", value_parser = parse::file_id)]
        id: String,
    },
    /// Download the ciphertext of one of your files.
    Download {
        /// The file's id.
        #[arg(value_name = "ID", value_parser = parse::file_id)]
        id: String,
        /// Where to write the sealed file.
        #[arg(long, value_name = "F")]
        out: PathBuf,
    },
}

/// Arguments of `cella file encrypt`.
#[derive(Debug, clap::Args)]
pub(crate) struct EncryptArgs {
    /// The plaintext file.
    #[arg(long = "in", value_name = "P")]
    pub(crate) input: PathBuf,
    /// The sealed file to write.
    #[arg(long, value_name = "C")]
    pub(crate) out: PathBuf,
    /// Key file to use; created (mode 0600) if it does not exist. Default: a new
    /// key in <C>.key.
    #[arg(long, value_name = "K")]
    pub(crate) key_file: Option<PathBuf>,
}

/// Arguments of `cella file decrypt`.
#[derive(Debug, clap::Args)]
pub(crate) struct DecryptArgs {
    /// The sealed file.
    #[arg(long = "in", value_name = "C")]
    pub(crate) input: PathBuf,
    /// The plaintext file to write (mode 0600).
    #[arg(long, value_name = "P")]
    pub(crate) out: PathBuf,
    /// The key file.
    #[arg(long, value_name = "K")]
    pub(crate) key_file: PathBuf,
}

/// A temporary file in the directory of `dest`, so it can be renamed onto `dest`. It is
/// created with mode 0600 and deleted if dropped before [`NamedTempFile::persist`].
fn temp_beside(dest: &Path) -> anyhow::Result<NamedTempFile> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".cella-")
        .suffix(".part")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

/// Opens `path` for reading, with its length.
fn open_input(path: &Path) -> anyhow::Result<(File, u64)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    Ok((file, len))
}

/// Reads `reader` through a progress bar labelled `what` when one is due.
fn with_progress<'a>(reader: File, len: u64, what: &str) -> Box<dyn Read + 'a> {
    match progress::bar(len, what) {
        Some(bar) => Box::new(bar.wrap_read(reader)),
        None => Box::new(reader),
    }
}

/// Seals `args.input` into `args.out`.
pub(crate) fn encrypt(args: &EncryptArgs) -> anyhow::Result<Report> {
    let (input, len) = open_input(&args.input)?;
    let key_path = args
        .key_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", args.out.display())));
    if args.key_file.is_none() && key_path.exists() {
        bail!(
            "{} already exists: pass --key-file {} to encrypt with that key, or choose another --out",
            key_path.display(),
            key_path.display()
        );
    }
    let (key, new_key) = key_file_or_new(&key_path)?;
    let sealed = (|| -> anyhow::Result<StreamSummary> {
        let tmp = temp_beside(&args.out)?;
        let mut writer = BufWriter::new(tmp);
        let reader = BufReader::new(with_progress(input, len, "encrypting"));
        let summary = stream::seal(reader, &mut writer, &key, DEFAULT_CHUNK_SIZE)
            .with_context(|| format!("encrypting {} failed", args.input.display()))?;
        let tmp = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .context("cannot flush the sealed file")?;
        tmp.as_file()
            .sync_all()
            .context("cannot sync the sealed file")?;
        tmp.persist(&args.out)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        Ok(summary)
    })();
    let summary = match sealed {
        Ok(s) => s,
        Err(e) => {
            if new_key {
                std::fs::remove_file(&key_path).ok();
            }
            return Err(e);
        }
    };
    let digest = summary.ciphertext_digest.to_hex();
    Ok(Report::new(
        json!({
            "in": args.input,
            "out": args.out,
            "key_file": key_path,
            "key_generated": new_key,
            "plaintext_len": summary.plaintext_len,
            "ciphertext_len": summary.ciphertext_len,
            "ciphertext_digest": digest,
        }),
        format!(
            "encrypted {} ({} bytes) to {} ({} bytes)\nciphertext digest: {digest}\nkey file: {}{}",
            args.input.display(),
            summary.plaintext_len,
            args.out.display(),
            summary.ciphertext_len,
            key_path.display(),
            if new_key {
                " (new; keep it secret, it decrypts the file)"
            } else {
                ""
            }
        ),
    ))
}

/// Unseals the sealed file at `input` into `out` (mode 0600), written only on success;
/// an existing `out` is replaced when `replace`, else refused.
fn unseal_file(
    input: &Path,
    out: &Path,
    key: &FileKey,
    key_path: &Path,
    replace: bool,
) -> anyhow::Result<StreamSummary> {
    let (file, len) = open_input(input)?;
    let tmp = temp_beside(out)?;
    let mut writer = BufWriter::new(tmp);
    let reader = BufReader::new(with_progress(file, len, "decrypting"));
    let summary = stream::unseal(reader, &mut writer, key).with_context(|| {
        format!(
            "cannot decrypt {} with key file {}",
            input.display(),
            key_path.display()
        )
    })?;
    let tmp = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .context("cannot flush the plaintext")?;
    tmp.as_file()
        .sync_all()
        .context("cannot sync the plaintext")?;
    let persisted = if replace {
        tmp.persist(out)
    } else {
        tmp.persist_noclobber(out)
    };
    persisted
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(summary)
}

/// Unseals `args.input` into `args.out`.
pub(crate) fn decrypt(args: &DecryptArgs) -> anyhow::Result<Report> {
    let key = read_key_file(&args.key_file)?;
    let summary = unseal_file(&args.input, &args.out, &key, &args.key_file, true)?;
    Ok(Report::new(
        json!({
            "in": args.input,
            "out": args.out,
            "plaintext_len": summary.plaintext_len,
            "ciphertext_digest": summary.ciphertext_digest.to_hex(),
        }),
        format!(
            "decrypted {} to {} ({} bytes)",
            args.input.display(),
            args.out.display(),
            summary.plaintext_len
        ),
    ))
}

/// Reads the whole sealed file once: proves `key` opens it and computes its digest.
/// (The upload header carries the digest before the chunks, so it is needed first.)
fn check_sealed(path: &Path, key: &FileKey, key_path: &Path) -> anyhow::Result<StreamSummary> {
    let (file, len) = open_input(path)?;
    let reader = BufReader::new(with_progress(file, len, "checking"));
    stream::unseal(reader, io::sink(), key).with_context(|| {
        format!(
            "{} does not open with key file {}",
            path.display(),
            key_path.display()
        )
    })
}

/// The wire crypto of a sealed file under `key`.
fn crypto(key: &FileKey) -> proto::FileCrypto {
    proto::FileCrypto {
        schema: cella_client::SCHEMA_CELLA_SEALED_V1.to_owned(),
        key: key.as_bytes().to_vec(),
    }
}

/// Runs blocking file work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a file worker thread failed")?
}

/// Downloads `file_id` into `out` (replaced only when complete), checking the
/// ciphertext digest against `expected` when given.
pub(crate) async fn download_to(
    client: &Client,
    file_id: &str,
    out: &Path,
    expected: Option<&str>,
    size_hint: u64,
) -> anyhow::Result<DownloadSummary> {
    let tmp = temp_beside(out)?;
    let std_file = tmp
        .as_file()
        .try_clone()
        .context("cannot open the temporary file")?;
    let mut writer = tokio::io::BufWriter::new(tokio::fs::File::from_std(std_file));
    let bar = progress::bar(size_hint, "downloading");
    let summary = client
        .download_file(file_id, &mut writer, progress::callback(bar.as_ref()))
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    drop(writer);
    if let Some(expected) = expected.filter(|e| !e.is_empty())
        && summary.ciphertext_digest != expected
    {
        bail!(
            "the download of {file_id} has digest {} but {expected} was expected; it was not saved",
            summary.ciphertext_digest
        );
    }
    tmp.as_file()
        .sync_all()
        .context("cannot sync the download")?;
    tmp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(summary)
}

/// Runs a `cella file` subcommand.
pub(crate) async fn run(ctx: &Ctx, cmd: FileCmd) -> anyhow::Result<Report> {
    match cmd {
        FileCmd::Encrypt(args) => return blocking(move || encrypt(&args)).await,
        FileCmd::Decrypt(args) => return blocking(move || decrypt(&args)).await,
        _ => {}
    }
    let (_, client) = ctx.client().await?;
    let shown = |f: &proto::FileInfo, verb: &str| {
        Report::new(
            json!({ "file": file_json(f) }),
            format!("{verb}{}", file_line(f)),
        )
    };
    match cmd {
        FileCmd::Encrypt(_) | FileCmd::Decrypt(_) => bail!("handled above"),
        FileCmd::Upload { path, key_file } => {
            let key = read_key_file(&key_file)?;
            let (p, k, kp) = (path.clone(), key.clone(), key_file.clone());
            let summary = blocking(move || check_sealed(&p, &k, &kp)).await?;
            let digest = summary.ciphertext_digest.to_hex();
            let bar = progress::bar(summary.ciphertext_len, "uploading");
            let file = client
                .upload_input(
                    path.as_path(),
                    crypto(&key),
                    &digest,
                    progress::callback(bar.as_ref()),
                )
                .await?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            Ok(shown(&file, "uploaded "))
        }
        FileCmd::RegisterUrl {
            url,
            key_file,
            digest,
        } => {
            let key = read_key_file(&key_file)?;
            let file = client
                .register_input_url(&url, crypto(&key), &digest)
                .await?;
            Ok(shown(&file, "registered "))
        }
        FileCmd::RegisterOutput { key_file, url } => register_output(&client, key_file, url).await,
        FileCmd::Get { id } => Ok(shown(&client.get_file(&id).await?, "")),
        FileCmd::List => {
            let files = client.list_files().await?;
            Ok(Report::new(
                json!({ "files": files.iter().map(file_json).collect::<Vec<_>>() }),
                table(FILE_HEADER, files.iter().map(file_row), "no files"),
            ))
        }
        FileCmd::Delete { id } => {
            client.delete_file(&id).await?;
            Ok(Report::new(
                json!({ "file_id": id, "deleted": true }),
                format!("deleted {id}"),
            ))
        }
        FileCmd::Download { id, out } => {
            let info = client.get_file(&id).await?;
            let summary =
                download_to(&client, &id, &out, Some(&info.ciphertext_digest), info.size).await?;
            Ok(Report::new(
                json!({
                    "file_id": id,
                    "out": out,
                    "bytes": summary.bytes,
                    "ciphertext_digest": summary.ciphertext_digest,
                }),
                format!(
                    "downloaded {id} to {} ({} bytes, sha256 {})",
                    out.display(),
                    summary.bytes,
                    summary.ciphertext_digest
                ),
            ))
        }
    }
}

/// `cella file register-output`: the key is on disk before the node hears of it, so a
/// registered output always has its key somewhere.
async fn register_output(
    client: &Client,
    key_file: Option<PathBuf>,
    url: Option<String>,
) -> anyhow::Result<Report> {
    let named_by_id = key_file.is_none();
    let (key, key_path, new_key) = match key_file {
        Some(path) => {
            let (key, new) = key_file_or_new(&path)?;
            (key, path, new)
        }
        None => {
            // Written under a temporary name first; renamed to <file-id>.key once the
            // node has given the id.
            let key = FileKey::generate();
            let tmp = PathBuf::from(format!(".cella-output-{}.key", std::process::id()));
            write_key_file(&tmp, &key)?;
            (key, tmp, true)
        }
    };
    let file = match client.register_output(crypto(&key), url.as_deref()).await {
        Ok(f) => f,
        Err(e) => {
            if new_key {
                std::fs::remove_file(&key_path).ok();
            }
            return Err(e.into());
        }
    };
    let key_path = if named_by_id {
        let named = PathBuf::from(format!("{}.key", file.file_id));
        std::fs::rename(&key_path, &named).with_context(|| {
            format!(
                "registered {} but cannot rename its key file {} to {}",
                file.file_id,
                key_path.display(),
                named.display()
            )
        })?;
        named
    } else {
        key_path
    };
    Ok(Report::new(
        json!({ "file": file_json(&file), "key_file": key_path, "key_generated": new_key }),
        format!(
            "registered {}\nkey file: {}{}",
            file_line(&file),
            key_path.display(),
            if new_key {
                " (new; keep it to decrypt the output)"
            } else {
                ""
            }
        ),
    ))
}

/// Decrypts a downloaded output: used by `cella task result`, which replaces an existing
/// file only with `--force`.
pub(crate) fn decrypt_output(
    sealed: &Path,
    out: &Path,
    key: &FileKey,
    key_path: &Path,
    replace: bool,
) -> anyhow::Result<StreamSummary> {
    unseal_file(sealed, out, key, key_path, replace)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn encrypt_decrypt_round_trip_with_a_generated_key() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("data.csv");
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        std::fs::write(&plain, &data).unwrap();
        let sealed = dir.path().join("data.sealed");
        let report = encrypt(&EncryptArgs {
            input: plain.clone(),
            out: sealed.clone(),
            key_file: None,
        })
        .unwrap();
        let key_path = dir.path().join("data.sealed.key");
        assert_eq!(report.json["key_generated"], json!(true));
        assert_eq!(report.json["key_file"], json!(key_path));
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let digest = report.json["ciphertext_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            digest,
            cella_types::Digest::of(&std::fs::read(&sealed).unwrap()).to_hex()
        );

        let back = dir.path().join("back.csv");
        let report = decrypt(&DecryptArgs {
            input: sealed.clone(),
            out: back.clone(),
            key_file: key_path.clone(),
        })
        .unwrap();
        assert_eq!(report.json["plaintext_len"], json!(data.len()));
        assert_eq!(std::fs::read(&back).unwrap(), data);
        let mode = std::fs::metadata(&back).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A second encrypt to the same --out refuses to overwrite the generated key
        // file, and with --key-file reuses it.
        assert!(
            encrypt(&EncryptArgs {
                input: plain.clone(),
                out: sealed.clone(),
                key_file: None,
            })
            .unwrap_err()
            .to_string()
            .contains("already exists")
        );
        let report = encrypt(&EncryptArgs {
            input: plain,
            out: sealed,
            key_file: Some(key_path),
        })
        .unwrap();
        assert_eq!(report.json["key_generated"], json!(false));
        // Only the expected files remain: no temporaries.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_given_missing_key_file_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("p");
        std::fs::write(&plain, b"hello").unwrap();
        let key = dir.path().join("mine.key");
        let report = encrypt(&EncryptArgs {
            input: plain,
            out: dir.path().join("c"),
            key_file: Some(key.clone()),
        })
        .unwrap();
        assert_eq!(report.json["key_generated"], json!(true));
        assert!(key.exists());
    }

    #[test]
    fn wrong_key_file_is_named_and_leaves_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("p");
        std::fs::write(&plain, b"secret data").unwrap();
        let sealed = dir.path().join("c");
        encrypt(&EncryptArgs {
            input: plain,
            out: sealed.clone(),
            key_file: None,
        })
        .unwrap();
        let other = dir.path().join("other.key");
        write_key_file(&other, &FileKey::generate()).unwrap();
        let out = dir.path().join("out");
        let err = decrypt(&DecryptArgs {
            input: sealed.clone(),
            out: out.clone(),
            key_file: other.clone(),
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("wrong key"), "{text}");
        assert!(text.contains(&other.display().to_string()), "{text}");
        assert!(!out.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .collect();
        assert!(leftovers.is_empty());

        // A key file that is not a key at all.
        let garbage = dir.path().join("garbage.key");
        std::fs::write(&garbage, "not a key").unwrap();
        let err = decrypt(&DecryptArgs {
            input: sealed.clone(),
            out: out.clone(),
            key_file: garbage,
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("does not hold a file key"),
            "{err:#}"
        );

        // A missing key file.
        let err = decrypt(&DecryptArgs {
            input: sealed,
            out,
            key_file: dir.path().join("missing.key"),
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read key file"),
            "{err:#}"
        );
    }

    #[test]
    fn upload_precheck_rejects_the_wrong_key_and_reports_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("p");
        std::fs::write(&plain, b"abc").unwrap();
        let sealed = dir.path().join("c");
        let report = encrypt(&EncryptArgs {
            input: plain,
            out: sealed.clone(),
            key_file: None,
        })
        .unwrap();
        let key_path = dir.path().join("c.key");
        let key = read_key_file(&key_path).unwrap();
        let summary = check_sealed(&sealed, &key, &key_path).unwrap();
        assert_eq!(
            json!(summary.ciphertext_digest.to_hex()),
            report.json["ciphertext_digest"]
        );
        let err = check_sealed(&sealed, &FileKey::generate(), &key_path).unwrap_err();
        assert!(format!("{err:#}").contains("does not open with key file"));
    }
}
