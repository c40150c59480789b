//! Files: encrypted inputs (uploaded into the blob store or read from a `file://` URL
//! under an allowed root) and output places with their keys. Keys arrive over the
//! node's TLS channel and live only inside sealed store records.

use std::path::{Path, PathBuf};

use cella_crypto::stream::FramingCheck;
use cella_store::{BlobName, BlobReader, BlobWriter, Record};
use cella_types::{
    Digest, FileId, FileSchema, InputFile, InputFileId, KeyMaterial, Location, OutputFile,
    OutputFileId, Task,
};

use crate::audit::{AuditAction, Subject, audit};
use crate::error::{Object, Refusal};
use crate::page::{Listed, Page, PageRequest, Position};
use crate::policy::{self, Action};
use crate::{Caller, Platform, PlatformError, Result, now_ms};

/// Length of a `cella-sealed-v1` key.
const SEALED_V1_KEY_LEN: usize = cella_crypto::FILE_KEY_LEN;

/// A file's schema and key, checked against each other.
#[derive(Debug, Clone)]
pub struct FileCrypto {
    schema: FileSchema,
    key: KeyMaterial,
}

impl FileCrypto {
    /// Parses a schema name and a key.
    ///
    /// # Errors
    ///
    /// [`PlatformError::BadValue`] for an unknown schema or a key of the wrong
    /// length (the key itself never appears in the message).
    pub fn new(schema: &str, key: Vec<u8>) -> Result<Self> {
        let schema = FileSchema::parse(schema).ok_or_else(|| {
            PlatformError::BadValue(format!(
                "unknown file schema {:?}: supported: cella-sealed-v1",
                schema.chars().take(40).collect::<String>()
            ))
        })?;
        let expected = match schema {
            FileSchema::CellaSealedV1 => SEALED_V1_KEY_LEN,
        };
        if key.len() != expected {
            return Err(PlatformError::BadValue(format!(
                "a {} key is {expected} bytes, got {}",
                schema.as_str(),
                key.len()
            )));
        }
        Ok(Self {
            schema,
            key: KeyMaterial::new(key),
        })
    }
}

/// A file as its owner sees it (keys never leave the node).
#[derive(Debug, Clone)]
pub enum FileView {
    /// An input file.
    Input(InputFile),
    /// An output file.
    Output(OutputFile),
}

/// An upload in progress: ciphertext goes straight to a temporary blob while its digest
/// is computed; nothing is registered until [`Upload::finish`] checks the digest.
pub struct Upload {
    id: InputFileId,
    owner: cella_types::UserName,
    crypto: FileCrypto,
    digest: Digest,
    writer: BlobWriter,
    /// The keyless checks of the sealed format, so that bytes no task could read are
    /// refused now rather than at execution.
    framing: FramingCheck,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Appends a chunk of ciphertext.
    ///
    /// # Errors
    ///
    /// [`PlatformError::BadValue`] when the bytes so far are not the start of a
    /// sealed file (the reason names the header field), [`PlatformError::Blob`] when
    /// the blob store cannot be reached or cannot write.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.framing.update(chunk).map_err(not_sealed)?;
        Ok(self.writer.append(chunk)?)
    }
}

/// The refusal of an upload that the sealed format's keyless checks reject.
fn not_sealed(e: cella_crypto::stream::UnsealError) -> PlatformError {
    PlatformError::BadValue(format!(
        "the upload is not a valid {} file: {e} (see docs/formats/sealed-file.md)",
        FileSchema::CellaSealedV1.as_str()
    ))
}

/// The path of a `file://` URL, which must be absolute and lie under one of `roots`
/// once symbolic links and `..` are resolved.
fn url_path(url: &str, roots: &[PathBuf], must_exist: bool) -> Result<PathBuf> {
    let raw = url.strip_prefix("file://").ok_or_else(|| {
        PlatformError::BadValue(format!(
            "unsupported URL {:?}: only file:// URLs are supported",
            url.chars().take(200).collect::<String>()
        ))
    })?;
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(PlatformError::BadValue(format!(
            "file URL path {raw:?} must be absolute"
        )));
    }
    if roots.is_empty() {
        return Err(Refusal::FileUrlsDisabled.into());
    }
    let resolved = if must_exist {
        path.canonicalize()
    } else {
        let parent = path.parent().unwrap_or(path);
        let name = path
            .file_name()
            .ok_or_else(|| PlatformError::BadValue(format!("file URL {raw:?} names no file")))?;
        parent.canonicalize().map(|p| p.join(name))
    }
    .map_err(|e| PlatformError::BadValue(format!("file URL {raw:?}: {e}")))?;
    let allowed = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| resolved.starts_with(r));
    if !allowed {
        return Err(Refusal::OutsideFileRoots {
            url: raw.to_owned(),
        }
        .into());
    }
    Ok(resolved)
}

impl Platform {
    /// Starts an upload of an input's ciphertext (data_owner role).
    ///
    /// # Errors
    ///
    /// Permission, or a blob store failure.
    pub fn begin_upload(
        &self,
        caller: &Caller,
        crypto: FileCrypto,
        digest: Digest,
    ) -> Result<Upload> {
        policy::check(caller, &Action::RegisterFile)?;
        let id = InputFileId::new();
        let writer = self.blobs.create(&BlobName::input(id))?;
        Ok(Upload {
            id,
            owner: caller.user.clone(),
            crypto,
            digest,
            writer,
            framing: FramingCheck::new(),
        })
    }

    /// Completes an upload: the ciphertext must match the announced digest, then the
    /// file is registered.
    ///
    /// # Errors
    ///
    /// [`PlatformError::BadValue`] when the bytes are not a whole sealed file
    /// (empty, cut, or extended) or the digest differs; nothing is kept.
    pub fn finish_upload(&self, upload: Upload) -> Result<InputFile> {
        let Upload {
            id,
            owner,
            crypto,
            digest,
            writer,
            framing,
        } = upload;
        framing.finish().map_err(not_sealed)?;
        let size = writer.commit_if(&digest).map_err(|e| match e {
            cella_store::BlobError::DigestMismatch { .. } => PlatformError::BadValue(format!(
                "uploaded ciphertext does not match the announced digest: {e}"
            )),
            other => other.into(),
        })?;
        let file = InputFile {
            id,
            owner,
            location: Location::Blob,
            ciphertext_digest: digest,
            size,
            schema: crypto.schema,
            key: crypto.key,
            created_ms: now_ms(),
        };
        let stored = self.store.write(|tx| {
            tx.put(&file)?;
            audit(
                tx,
                &file.owner,
                AuditAction::UploadInput,
                Subject::owned(file.key(), &file.owner),
            )
        });
        if stored.is_err() {
            let _removed = self.blobs.remove(&BlobName::input(id));
        }
        stored.map(|()| file)
    }

    /// Registers an input the node reads from a `file://` URL under an allowed root.
    /// The digest is checked when a task reads the file.
    ///
    /// # Errors
    ///
    /// Permission, bad URL, URL outside the allowed roots, missing file.
    pub fn register_input_url(
        &self,
        caller: &Caller,
        url: &str,
        crypto: FileCrypto,
        digest: Digest,
    ) -> Result<InputFile> {
        policy::check(caller, &Action::RegisterFile)?;
        let path = url_path(url, &self.config.file_url_roots, true)?;
        let meta = std::fs::metadata(&path)
            .map_err(|e| PlatformError::BadValue(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(PlatformError::BadValue(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let file = InputFile {
            id: InputFileId::new(),
            owner: caller.user.clone(),
            location: Location::Url(format!("file://{}", path.display())),
            ciphertext_digest: digest,
            size: meta.len(),
            schema: crypto.schema,
            key: crypto.key,
            created_ms: now_ms(),
        };
        self.store.write(|tx| {
            tx.put(&file)?;
            audit(
                tx,
                &caller.user,
                AuditAction::RegisterInput,
                Subject::owned(file.key(), &caller.user),
            )
        })?;
        Ok(file)
    }

    /// Registers a place and a key for an output; an empty URL means the blob store.
    ///
    /// # Errors
    ///
    /// Permission, bad URL, URL outside the allowed roots, existing file at the URL.
    pub fn register_output(
        &self,
        caller: &Caller,
        crypto: FileCrypto,
        url: &str,
    ) -> Result<OutputFile> {
        policy::check(caller, &Action::RegisterFile)?;
        let location = if url.is_empty() {
            Location::Blob
        } else {
            let path = url_path(url, &self.config.file_url_roots, false)?;
            if path.exists() {
                return Err(PlatformError::Taken(format!(
                    "{}: outputs are write-once",
                    path.display()
                )));
            }
            Location::Url(format!("file://{}", path.display()))
        };
        let file = OutputFile {
            id: OutputFileId::new(),
            owner: caller.user.clone(),
            location,
            schema: crypto.schema,
            key: crypto.key,
            content: None,
            reserved_by: None,
            created_ms: now_ms(),
        };
        self.store.write(|tx| {
            tx.put(&file)?;
            audit(
                tx,
                &caller.user,
                AuditAction::RegisterOutput,
                Subject::owned(file.key(), &caller.user),
            )
        })?;
        Ok(file)
    }

    fn load_file(&self, id: FileId) -> Result<FileView> {
        let key = id.to_string();
        let found = self.store.read(|tx| match id {
            FileId::Input(_) => {
                Ok::<_, PlatformError>(tx.get::<InputFile>(&key)?.map(FileView::Input))
            }
            FileId::Output(_) => Ok(tx.get::<OutputFile>(&key)?.map(FileView::Output)),
        })?;
        found.ok_or(PlatformError::Missing(Object::File(id)))
    }

    /// A file the caller owns.
    ///
    /// # Errors
    ///
    /// Not found, or permission.
    pub fn get_file(&self, caller: &Caller, id: FileId) -> Result<FileView> {
        let file = self.load_file(id)?;
        policy::check(
            caller,
            &Action::AccessFile {
                owner: file.owner(),
            },
        )?;
        Ok(file)
    }

    /// One page of the caller's files (inputs and outputs), in creation order.
    ///
    /// # Errors
    ///
    /// Store failures only.
    pub fn list_files(&self, caller: &Caller, page: &PageRequest) -> Result<Page<FileView>> {
        let mine: Vec<FileView> = self.store.read(|tx| {
            let inputs = tx.list::<InputFile>()?.into_iter().map(FileView::Input);
            let outputs = tx.list::<OutputFile>()?.into_iter().map(FileView::Output);
            Ok::<_, PlatformError>(
                inputs
                    .chain(outputs)
                    .filter(|f| f.owner() == &caller.user)
                    .collect(),
            )
        })?;
        Ok(page.select(mine))
    }

    /// Deletes a file that no unfinished task uses, with its blob.
    ///
    /// # Errors
    ///
    /// Not found, permission, or a task that still uses it.
    pub fn delete_file(&self, caller: &Caller, id: FileId) -> Result<()> {
        let file = self.load_file(id)?;
        policy::check(
            caller,
            &Action::AccessFile {
                owner: file.owner(),
            },
        )?;
        self.store.write(|tx| {
            let in_use = tx.list::<Task>()?.into_iter().find(|t| {
                !t.status().is_terminal()
                    && (t.inputs().values().any(|s| {
                        s.file
                            .as_ref()
                            .is_some_and(|(f, _)| FileId::Input(*f) == id)
                    }) || t
                        .outputs()
                        .values()
                        .any(|s| s.file.is_some_and(|f| FileId::Output(f) == id)))
            });
            if let Some(t) = in_use {
                return Err(PlatformError::WrongState(format!(
                    "file {id} is used by unfinished {}",
                    t.id()
                )));
            }
            match &file {
                FileView::Input(f) => tx.delete::<InputFile>(&f.key())?,
                FileView::Output(f) => tx.delete::<OutputFile>(&f.key())?,
            };
            audit(
                tx,
                &caller.user,
                AuditAction::DeleteFile,
                Subject::owned(id.to_string(), &caller.user),
            )
        })?;
        let blob = match &file {
            FileView::Input(f) if f.location == Location::Blob => Some(BlobName::input(f.id)),
            FileView::Output(f) if f.location == Location::Blob => {
                f.content.as_ref().map(|c| output_blob(f.id, c.version))
            }
            _ => None,
        };
        if let Some(b) = blob {
            self.blobs.remove(&b)?;
        }
        Ok(())
    }

    /// Opens the ciphertext of a file the caller owns for download.
    ///
    /// # Errors
    ///
    /// Not found, permission, or an output no task has written yet.
    pub fn open_download(&self, caller: &Caller, id: FileId) -> Result<BlobReader> {
        let file = self.get_file(caller, id)?;
        match file {
            FileView::Input(f) => self.open_input(&f),
            FileView::Output(f) => {
                let Some(content) = &f.content else {
                    return Err(PlatformError::WrongState(format!(
                        "output {} has not been written by a task yet",
                        f.id
                    )));
                };
                match &f.location {
                    Location::Blob => {
                        Ok(self.blobs.open_read(&output_blob(f.id, content.version))?)
                    }
                    Location::Url(u) => open_url(u, &self.config.file_url_roots),
                }
            }
        }
    }

    /// Opens an input's ciphertext wherever it lives.
    pub(crate) fn open_input(&self, f: &InputFile) -> Result<BlobReader> {
        match &f.location {
            Location::Blob => Ok(self.blobs.open_read(&BlobName::input(f.id))?),
            Location::Url(u) => open_url(u, &self.config.file_url_roots),
        }
    }

    /// Writes one run's ciphertext of an output: in the blob store as a new version
    /// `version` (never over content a task recorded; the record's commit makes it the
    /// output's), at a URL only where nothing is yet.
    pub(crate) fn write_output(
        &self,
        f: &OutputFile,
        version: u64,
        ciphertext: &[u8],
    ) -> Result<Digest> {
        use std::io::Write;
        match &f.location {
            Location::Blob => {
                let mut w = self
                    .blobs
                    .create(&BlobName::output_version(f.id, version))?;
                w.append(ciphertext)?;
                Ok(w.commit()?.0)
            }
            Location::Url(u) => {
                let path = url_path(u, &self.config.file_url_roots, false)?;
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .and_then(|mut out| {
                        out.write_all(ciphertext)?;
                        out.sync_all()?;
                        Ok(out)
                    })
                    .map_err(|e| {
                        PlatformError::WrongState(format!(
                            "cannot write output to {}: {e}",
                            path.display()
                        ))
                    })?;
                out.flush()
                    .map_err(|e| PlatformError::node_because("flushing output", e))?;
                Ok(Digest::of(ciphertext))
            }
        }
    }

    /// Removes the version `version` of an output that a run wrote and whose result was
    /// discarded: only that run's own blob, never the recorded content.
    pub(crate) fn discard_output(&self, f: &OutputFile, version: u64) {
        let removed = match &f.location {
            Location::Blob => self
                .blobs
                .remove(&BlobName::output_version(f.id, version))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Location::Url(u) => url_path(u, &self.config.file_url_roots, false)
                .map_err(|e| e.to_string())
                .and_then(|p| std::fs::remove_file(p).map_err(|e| e.to_string())),
        };
        if let Err(e) = removed {
            tracing::warn!(output = %f.id, error = %e, "could not remove a discarded output");
        }
    }
}

/// The blob holding an output's recorded content of `version`.
fn output_blob(id: cella_types::OutputFileId, version: Option<u64>) -> BlobName {
    match version {
        Some(v) => BlobName::output_version(id, v),
        None => BlobName::output(id),
    }
}

fn open_url(url: &str, roots: &[PathBuf]) -> Result<BlobReader> {
    let path = url_path(url, roots, true)?;
    std::fs::File::open(&path)
        .and_then(BlobReader::from_file)
        .map_err(|e| PlatformError::WrongState(format!("{}: {e}", path.display())))
}

impl Listed for FileView {
    fn position(&self) -> Position {
        let created_ms = match self {
            FileView::Input(f) => f.created_ms,
            FileView::Output(f) => f.created_ms,
        };
        Position {
            created_ms,
            id: self.id().to_string(),
        }
    }
}

impl FileView {
    /// The file's owner.
    pub fn owner(&self) -> &cella_types::UserName {
        match self {
            FileView::Input(f) => &f.owner,
            FileView::Output(f) => &f.owner,
        }
    }

    /// The file's id.
    pub fn id(&self) -> FileId {
        match self {
            FileView::Input(f) => f.id.into(),
            FileView::Output(f) => f.id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_checks_schema_and_key_length() {
        assert!(FileCrypto::new("cella-sealed-v1", vec![0; 32]).is_ok());
        let e = FileCrypto::new("cella-sealed-v1", vec![0; 16]).unwrap_err();
        assert!(e.to_string().contains("32 bytes, got 16"), "{e}");
        assert!(FileCrypto::new("rot13", vec![0; 32]).is_err());
    }

    #[test]
    fn url_paths_stay_under_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        let roots = vec![root.clone()];
        let ok = url_path(&format!("file://{}/a", root.display()), &roots, true).unwrap();
        assert!(ok.ends_with("a"));
        let escape = format!("file://{}/../secret", root.display());
        assert!(matches!(
            url_path(&escape, &roots, true),
            Err(PlatformError::Refused(_))
        ));
        assert!(matches!(
            url_path(&format!("file://{}/a", root.display()), &[], true),
            Err(PlatformError::Refused(_))
        ));
        assert!(url_path("http://x/y", &roots, true).is_err());
        assert!(url_path("file://relative/path", &roots, true).is_err());
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        assert!(url_path(&format!("file://{}/link", root.display()), &roots, true).is_err());
    }
}
