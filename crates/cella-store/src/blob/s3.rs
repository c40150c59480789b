//! Blobs as objects of an S3-compatible bucket, through the `object_store` crate:
//! `<prefix>/inputs/<input id>`, `<prefix>/outputs/<output id>[.<version>]`,
//! `<prefix>/payloads/<sha-256 hex>`.
//!
//! The platform's blob calls are synchronous (they run on blocking threads, as file I/O
//! does), while the client is asynchronous: the store owns a small runtime of its own and
//! each call hands its request to it and waits for the answer on a channel. This works
//! from any thread, a runtime's worker included, without nesting runtimes.
//!
//! A writer keeps at most one part (`part_bytes`, 8 MiB by default) in memory. A blob
//! smaller than that goes up with one `PUT` at commit; a larger one starts a multipart
//! upload at its first full part, sends each part as it fills, and the commit sends the
//! last part and completes the upload. Objects appear atomically (a `PUT` or a completed
//! upload is all or nothing), so a blob is invisible until committed; a writer dropped
//! uncommitted aborts its multipart upload. Uploads a crash leaves incomplete are
//! invisible too; a lifecycle rule on the bucket (`AbortIncompleteMultipartUpload`)
//! reclaims their parts (see `docs/store.md`).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as KeyPath;
use object_store::{
    ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use super::{BlobError, BlobName, BlobReader, Source};

/// Default part size of multipart uploads: above S3's 5 MiB minimum, and small enough
/// that a few concurrent uploads hold little memory.
pub const DEFAULT_PART_BYTES: usize = 8 << 20;
/// S3's smallest part (every part but the last must be at least this).
pub const MIN_PART_BYTES: usize = 5 << 20;
/// Region sent when none is configured (S3-compatible servers mostly ignore it).
const DEFAULT_REGION: &str = "us-east-1";
/// How long to wait for a connection: an unreachable store is reported within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request (one part at most) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries of a failed request, and the time they may take together: short, so a store
/// that is down answers "unavailable" quickly rather than holding the caller minutes.
const MAX_RETRIES: usize = 3;
/// See [`MAX_RETRIES`].
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Threads driving the client's requests.
const IO_THREADS: usize = 2;

/// Where and how to reach an S3-compatible bucket. Its `Debug` shows no credential.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Key prefix of every blob ("" for the bucket's root), without leading or trailing
    /// `/`.
    pub prefix: String,
    /// The endpoint URL, for S3-compatible servers (`None`: AWS's for the region).
    pub endpoint: Option<String>,
    /// The region (`None`: us-east-1).
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint (loopback test servers); off, only HTTPS.
    pub allow_http: bool,
    /// Access key id; with the secret below, the request signing credentials. `None`:
    /// the client's own discovery (instance metadata, web identity).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Part size of multipart uploads, at least [`MIN_PART_BYTES`].
    pub part_bytes: usize,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("part_bytes", &self.part_bytes)
            .finish()
    }
}

impl S3Config {
    /// The bucket and prefix of an `s3://bucket[/prefix]` URL, with no endpoint, region
    /// or credentials yet.
    ///
    /// # Errors
    ///
    /// [`BlobError::S3Settings`] naming what is wrong: another scheme, no bucket,
    /// credentials in the URL (they belong in the environment, never in a printed
    /// setting), a query, or an empty or `..` prefix segment.
    pub fn from_url(url: &str) -> Result<Self, BlobError> {
        // A URL with credentials in it is never repeated in an error.
        let shown = if url.contains('@') {
            "(with credentials)"
        } else {
            url
        };
        let bad = |why: &str| BlobError::S3Settings {
            reason: format!("blob store URL {shown:?}: {why}"),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("expected s3://bucket[/prefix]"))?;
        if rest.contains(['?', '#']) {
            return Err(bad("a query or fragment is not allowed"));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(bad(
                "credentials do not go in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        }
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|s| s.is_empty() || s == "..") {
            return Err(bad("a prefix segment is empty or `..`"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            part_bytes: DEFAULT_PART_BYTES,
        })
    }

    /// The `s3://bucket[/prefix]` URL of this bucket and prefix.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Whether an object store error means the store could not be reached: the connection
/// was refused, cut or timed out (after the client's retries).
pub(super) fn is_unreachable(e: &object_store::Error) -> bool {
    use object_store::client::HttpErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(http) = c.downcast_ref::<object_store::client::HttpError>() {
            return matches!(
                http.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            );
        }
        cause = c.source();
    }
    false
}

/// The store's own runtime, shut down without waiting when the last user goes (so that
/// dropping it is allowed on any thread, a runtime's included).
struct Io(Option<tokio::runtime::Runtime>);

impl Io {
    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }

    /// Runs `fut` on the store's runtime and waits for its output; `None` when the
    /// request's task ended without one (it panicked).
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let handle = self.handle()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            // The caller waits on `rx`; it cannot have gone.
            let _sent = tx.send(fut.await);
        });
        rx.recv().ok()
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What writers and readers share with the store.
struct Shared {
    io: Io,
    client: AmazonS3,
    prefix: KeyPath,
    part_bytes: usize,
}

impl Shared {
    fn key(&self, name: &BlobName) -> KeyPath {
        self.prefix.clone().join(name.dir).join(name.file.as_str())
    }

    /// Runs one request about `name`; `op` names it in the error.
    fn request<T: Send + 'static>(
        &self,
        name: &BlobName,
        op: &'static str,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T, BlobError> {
        match self.io.run(fut) {
            Some(Ok(v)) => Ok(v),
            Some(Err(object_store::Error::NotFound { .. })) => {
                Err(BlobError::NotFound { name: name.clone() })
            }
            Some(Err(source)) => Err(BlobError::S3 {
                op,
                name: name.clone(),
                source: Box::new(source),
            }),
            None => Err(BlobError::S3Interrupted { name: name.clone() }),
        }
    }
}

/// Blobs in an S3-compatible bucket.
pub struct S3Blobs {
    shared: Arc<Shared>,
    bucket: String,
}

impl fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Blobs")
            .field("bucket", &self.bucket)
            .field("prefix", &self.shared.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

impl S3Blobs {
    /// Builds the client and lists the prefix once, so that a missing bucket, refused
    /// credentials or an unreachable endpoint stop the node at start rather than at the
    /// first upload.
    ///
    /// # Errors
    ///
    /// [`BlobError::S3Settings`] (part size under [`MIN_PART_BYTES`], a bad prefix),
    /// [`BlobError::S3Client`], [`BlobError::S3Runtime`], [`BlobError::S3Reach`].
    pub fn open(config: &S3Config) -> Result<Self, BlobError> {
        if config.part_bytes < MIN_PART_BYTES {
            return Err(BlobError::S3Settings {
                reason: format!(
                    "part size {} is under S3's minimum of {MIN_PART_BYTES} bytes",
                    config.part_bytes
                ),
            });
        }
        let prefix = KeyPath::parse(&config.prefix).map_err(|e| BlobError::S3Settings {
            reason: format!("prefix {:?}: {e}", config.prefix),
        })?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(config.region.as_deref().unwrap_or(DEFAULT_REGION))
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.allow_http)
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            .with_retry(RetryConfig {
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let client = builder.build().map_err(|source| BlobError::S3Client {
            bucket: config.bucket.clone(),
            source: Box::new(source),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .thread_name("cella-s3-io")
            .enable_all()
            .build()
            .map_err(|source| BlobError::S3Runtime { source })?;
        let shared = Arc::new(Shared {
            io: Io(Some(runtime)),
            client,
            prefix,
            part_bytes: config.part_bytes,
        });
        let probe = {
            let shared = Arc::clone(&shared);
            async move {
                let prefix = shared.prefix.clone();
                shared
                    .client
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map(drop)
            }
        };
        let reach_err = |source| BlobError::S3Reach {
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            source: Box::new(source),
        };
        match shared.io.run(probe) {
            Some(Ok(())) => {}
            Some(Err(source)) => return Err(reach_err(source)),
            None => {
                return Err(reach_err(object_store::Error::Generic {
                    store: "S3",
                    source: "the probe request was interrupted".into(),
                }));
            }
        }
        tracing::debug!(url = %config.url(), "opened blob store");
        Ok(Self {
            shared,
            bucket: config.bucket.clone(),
        })
    }

    pub(super) fn create(&self, name: &BlobName) -> S3Writer {
        S3Writer {
            shared: Arc::clone(&self.shared),
            key: self.shared.key(name),
            buf: Vec::new(),
            upload: None,
        }
    }

    pub(super) fn open_read(&self, name: &BlobName) -> Result<BlobReader, BlobError> {
        let key = self.shared.key(name);
        let shared = Arc::clone(&self.shared);
        let got =
            self.shared
                .request(name, "read", async move { shared.client.get(&key).await })?;
        Ok(BlobReader {
            len: got.meta.size,
            source: Source::S3(S3Reader {
                shared: Arc::clone(&self.shared),
                name: name.clone(),
                stream: Some(got.into_stream()),
                chunk: Bytes::new(),
            }),
        })
    }

    pub(super) fn len(&self, name: &BlobName) -> Result<u64, BlobError> {
        let key = self.shared.key(name);
        let shared = Arc::clone(&self.shared);
        let meta =
            self.shared
                .request(name, "stat", async move { shared.client.head(&key).await })?;
        Ok(meta.size)
    }

    /// S3's delete succeeds whether or not the object exists, so a `HEAD` first tells
    /// which.
    pub(super) fn remove(&self, name: &BlobName) -> Result<bool, BlobError> {
        match self.len(name) {
            Ok(_) => {}
            Err(BlobError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        let key = self.shared.key(name);
        let shared = Arc::clone(&self.shared);
        self.shared.request(
            name,
            "remove",
            async move { shared.client.delete(&key).await },
        )?;
        Ok(true)
    }
}

/// A blob being uploaded: the part being filled, and the multipart upload once one part
/// was full. Dropped uncommitted, it aborts the upload.
pub(super) struct S3Writer {
    shared: Arc<Shared>,
    key: KeyPath,
    buf: Vec<u8>,
    /// Behind a mutex only to make the writer `Sync` (the client's upload is `Send`
    /// only); every access has `&mut self`, so it is never contended.
    upload: Option<Mutex<Box<dyn MultipartUpload>>>,
}

/// The upload out of its mutex (a poisoned one holds a usable upload all the same).
fn unlock(upload: Mutex<Box<dyn MultipartUpload>>) -> Box<dyn MultipartUpload> {
    upload.into_inner().unwrap_or_else(PoisonError::into_inner)
}

impl S3Writer {
    pub(super) fn append(&mut self, name: &BlobName, mut data: &[u8]) -> Result<(), BlobError> {
        let part = self.shared.part_bytes;
        while !data.is_empty() {
            let room = part - self.buf.len();
            let (now, later) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = later;
            if self.buf.len() == part {
                self.send_part(name)?;
            }
        }
        Ok(())
    }

    /// Uploads the buffered bytes as the next part, starting the multipart upload first
    /// if this is the first one. Waits for the part, so at most one is in memory.
    fn send_part(&mut self, name: &BlobName) -> Result<(), BlobError> {
        if self.upload.is_none() {
            let key = self.key.clone();
            let shared = Arc::clone(&self.shared);
            let upload = self.shared.request(name, "upload", async move {
                shared.client.put_multipart(&key).await
            })?;
            self.upload = Some(Mutex::new(upload));
        }
        let payload = PutPayload::from(Bytes::from(std::mem::take(&mut self.buf)));
        let Some(upload) = self.upload.as_mut() else {
            return Err(BlobError::S3Interrupted { name: name.clone() });
        };
        let sent = upload
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .put_part(payload);
        self.shared.request(name, "upload", sent)
    }

    pub(super) fn install(&mut self, name: &BlobName) -> Result<(), BlobError> {
        if self.upload.is_none() {
            let key = self.key.clone();
            let shared = Arc::clone(&self.shared);
            let payload = PutPayload::from(Bytes::from(std::mem::take(&mut self.buf)));
            self.shared.request(name, "upload", async move {
                shared.client.put(&key, payload).await.map(drop)
            })?;
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.send_part(name)?;
        }
        let Some(mut upload) = self.upload.take().map(unlock) else {
            return Err(BlobError::S3Interrupted { name: name.clone() });
        };
        let completed = self.shared.io.run(async move {
            let done = upload.complete().await.map(drop);
            (upload, done)
        });
        match completed {
            Some((_, Ok(()))) => Ok(()),
            Some((upload, Err(source))) => {
                // Dropping the writer aborts it.
                self.upload = Some(Mutex::new(upload));
                Err(BlobError::S3 {
                    op: "complete the upload of",
                    name: name.clone(),
                    source: Box::new(source),
                })
            }
            None => Err(BlobError::S3Interrupted { name: name.clone() }),
        }
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take().map(unlock)
            && let Some(handle) = self.shared.io.handle()
        {
            let key = self.key.clone();
            // Not waited for: the upload is invisible either way, and an abort that
            // fails leaves parts the bucket's lifecycle rule reclaims.
            handle.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(key = %key, error = %e, "cannot abort an abandoned blob upload");
                }
            });
        }
    }
}

/// An object's body as it arrives, one chunk held at a time.
pub(super) struct S3Reader {
    shared: Arc<Shared>,
    name: BlobName,
    /// `None` once the body ended.
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
}

impl fmt::Debug for S3Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Reader")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl S3Reader {
    pub(super) fn read(&mut self, out: &mut [u8]) -> Result<usize, BlobError> {
        while self.chunk.is_empty() {
            let Some(mut stream) = self.stream.take() else {
                return Ok(0);
            };
            let next = self.shared.io.run(async move {
                let next = stream.next().await;
                (stream, next)
            });
            match next {
                Some((_, None)) => return Ok(0),
                Some((stream, Some(Ok(chunk)))) => {
                    self.chunk = chunk;
                    self.stream = Some(stream);
                }
                Some((_, Some(Err(source)))) => {
                    return Err(BlobError::S3 {
                        op: "read",
                        name: self.name.clone(),
                        source: Box::new(source),
                    });
                }
                None => {
                    return Err(BlobError::S3Interrupted {
                        name: self.name.clone(),
                    });
                }
            }
        }
        let n = out.len().min(self.chunk.len());
        let taken = self.chunk.split_to(n);
        // `n` is at most `out.len()`.
        out[..n].copy_from_slice(&taken);
        Ok(n)
    }
}
