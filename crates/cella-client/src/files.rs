//! File calls. Uploads and downloads stream: memory stays at one chunk whatever the
//! file size, because HTTP/2 flow control holds back the producer while the peer is
//! slower.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use cella_types::Hasher;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::Client;
use crate::error::{ClientError, Result};
use crate::proto;
use crate::proto::upload_input_request::Part;

/// Bytes per upload message: big enough that per-message overhead is negligible, small
/// enough to stay far below gRPC's 4 MiB message limit and to keep memory flat.
pub const UPLOAD_CHUNK_SIZE: usize = 64 * 1024;

/// A progress callback: called with the total bytes transferred so far.
pub type Progress = Box<dyn FnMut(u64) + Send + 'static>;

/// Where [`Client::upload_input`] reads the ciphertext from.
pub enum UploadSource {
    /// A sealed file on disk.
    Path(PathBuf),
    /// Any async reader yielding the sealed file.
    Reader(Box<dyn AsyncRead + Send + Unpin + 'static>),
}

impl UploadSource {
    /// Uploads what `reader` yields.
    pub fn reader(reader: impl AsyncRead + Send + Unpin + 'static) -> Self {
        UploadSource::Reader(Box::new(reader))
    }
}

impl fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadSource::Path(p) => f.debug_tuple("Path").field(p).finish(),
            UploadSource::Reader(_) => f.write_str("Reader(..)"),
        }
    }
}

impl From<PathBuf> for UploadSource {
    fn from(path: PathBuf) -> Self {
        UploadSource::Path(path)
    }
}

impl From<&Path> for UploadSource {
    fn from(path: &Path) -> Self {
        UploadSource::Path(path.to_owned())
    }
}

/// What [`Client::download_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSummary {
    /// Ciphertext bytes written.
    pub bytes: u64,
    /// SHA-256 of those bytes, lowercase hex: compare it with the file's
    /// `ciphertext_digest` (or a task's output digest) before trusting the download.
    pub ciphertext_digest: String,
}

/// The upload stream's state: the header first, then the file in chunks.
struct Upload {
    header: Option<proto::UploadHeader>,
    reader: Box<dyn AsyncRead + Send + Unpin + 'static>,
    sent: u64,
    progress: Option<Progress>,
    /// Takes the read error, if one ends the stream early.
    failure: Option<oneshot::Sender<io::Error>>,
    eof: bool,
}

impl Upload {
    /// The next request message, or `None` at the end (or after a read error, which is
    /// handed to `failure`).
    async fn next_message(&mut self) -> Option<proto::UploadInputRequest> {
        if let Some(header) = self.header.take() {
            return Some(proto::UploadInputRequest {
                part: Some(Part::Header(header)),
            });
        }
        if self.eof {
            return None;
        }
        let mut buf = vec![0u8; UPLOAD_CHUNK_SIZE];
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]).await {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(tx) = self.failure.take() {
                        // The receiver lives until the call returns; if it is gone
                        // nobody is left to tell.
                        tx.send(e).ok();
                    }
                    self.eof = true;
                    return None;
                }
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        self.sent += filled as u64;
        if let Some(progress) = self.progress.as_mut() {
            progress(self.sent);
        }
        Some(proto::UploadInputRequest {
            part: Some(Part::Chunk(buf)),
        })
    }
}

impl Client {
    /// Uploads an encrypted input into the node's blob store: the header with `crypto`
    /// and the SHA-256 `ciphertext_digest` (hex) first, then the ciphertext from
    /// `source` in [`UPLOAD_CHUNK_SIZE`] chunks. The node checks the digest before it
    /// registers the file. `progress` is called with the bytes sent so far.
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] when the source cannot be opened or read (this wins over the
    /// node's answer), [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn upload_input(
        &self,
        source: impl Into<UploadSource>,
        crypto: proto::FileCrypto,
        ciphertext_digest: &str,
        progress: Option<Progress>,
    ) -> Result<proto::FileInfo> {
        let (reader, name): (Box<dyn AsyncRead + Send + Unpin>, String) = match source.into() {
            UploadSource::Path(path) => {
                let file =
                    tokio::fs::File::open(&path)
                        .await
                        .map_err(|source| ClientError::Io {
                            what: format!("cannot open {}", path.display()),
                            source,
                        })?;
                (Box::new(file), path.display().to_string())
            }
            UploadSource::Reader(reader) => (reader, "the upload source".to_owned()),
        };
        let (failure_tx, mut failure_rx) = oneshot::channel();
        let upload = Upload {
            header: Some(proto::UploadHeader {
                crypto: Some(crypto),
                ciphertext_digest: ciphertext_digest.to_owned(),
            }),
            reader,
            sent: 0,
            progress,
            failure: Some(failure_tx),
            eof: false,
        };
        let stream = futures::stream::unfold(upload, |mut upload| async move {
            upload.next_message().await.map(|m| (m, upload))
        });
        let request = self.authed(stream)?;
        let result = self.file_service().upload_input(request).await;
        if let Ok(source) = failure_rx.try_recv() {
            return Err(ClientError::Io {
                what: format!("reading {name} failed during the upload"),
                source,
            });
        }
        Ok(result
            .map_err(|s| ClientError::status("UploadInput", s))?
            .into_inner())
    }

    /// Registers an input the node reads from `url` (`file://` under a root the node
    /// allows).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn register_input_url(
        &self,
        url: &str,
        crypto: proto::FileCrypto,
        ciphertext_digest: &str,
    ) -> Result<proto::FileInfo> {
        let request = self.authed(proto::RegisterInputRequest {
            url: url.to_owned(),
            crypto: Some(crypto),
            ciphertext_digest: ciphertext_digest.to_owned(),
        })?;
        Ok(self
            .file_service()
            .register_input(request)
            .await
            .map_err(|s| ClientError::status("RegisterInput", s))?
            .into_inner())
    }

    /// Registers a place for a task output, encrypted under `crypto`; `url = None` puts
    /// it in the node's blob store.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn register_output(
        &self,
        crypto: proto::FileCrypto,
        url: Option<&str>,
    ) -> Result<proto::FileInfo> {
        let request = self.authed(proto::RegisterOutputRequest {
            crypto: Some(crypto),
            url: url.unwrap_or_default().to_owned(),
        })?;
        Ok(self
            .file_service()
            .register_output(request)
            .await
            .map_err(|s| ClientError::status("RegisterOutput", s))?
            .into_inner())
    }

    /// Gets a file the caller owns.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn get_file(&self, file_id: &str) -> Result<proto::FileInfo> {
        let request = self.authed(proto::GetFileRequest {
            file_id: file_id.to_owned(),
        })?;
        Ok(self
            .file_service()
            .get_file(request)
            .await
            .map_err(|s| ClientError::status("GetFile", s))?
            .into_inner())
    }

    /// Deletes a file that no unfinished task uses.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn delete_file(&self, file_id: &str) -> Result<()> {
        let request = self.authed(proto::DeleteFileRequest {
            file_id: file_id.to_owned(),
        })?;
        self.file_service()
            .delete_file(request)
            .await
            .map_err(|s| ClientError::status("DeleteFile", s))?;
        Ok(())
    }

    /// Streams the ciphertext of a file the caller owns into `writer`, chunk by chunk,
    /// and flushes it. `progress` is called with the bytes written so far. The result
    /// carries the SHA-256 of what was written; on error, discard what was written.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`] (also for a stream that
    /// breaks part way), [`ClientError::Io`] when writing fails.
    pub async fn download_file<W>(
        &self,
        file_id: &str,
        writer: &mut W,
        mut progress: Option<Progress>,
    ) -> Result<DownloadSummary>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let request = self.authed(proto::DownloadFileRequest {
            file_id: file_id.to_owned(),
        })?;
        let mut stream = self
            .file_service()
            .download_file(request)
            .await
            .map_err(|s| ClientError::status("DownloadFile", s))?
            .into_inner();
        let mut hasher = Hasher::new();
        let mut bytes = 0u64;
        let write_err = |source| ClientError::Io {
            what: format!("writing the download of {file_id} failed"),
            source,
        };
        while let Some(message) = stream.next().await {
            let chunk = message
                .map_err(|s| ClientError::status("DownloadFile", s))?
                .chunk;
            hasher.update(&chunk);
            writer.write_all(&chunk).await.map_err(write_err)?;
            bytes += chunk.len() as u64;
            if let Some(progress) = progress.as_mut() {
                progress(bytes);
            }
        }
        writer.flush().await.map_err(write_err)?;
        Ok(DownloadSummary {
            bytes,
            ciphertext_digest: hasher.finish().to_hex(),
        })
    }
}
