//! One suite, run against both backends: every `backend_test!` below is a test of the
//! local directory and a test of a real S3 server (`test_s3`); the local layout's own
//! rules (modes, temporary files, the lock) follow.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use super::local::{DIR_MODE, FILE_MODE, TEMP_PREFIX};
use super::test_s3::S3TestServer;
use super::*;

/// A store and what keeps it alive.
struct Fixture {
    store: BlobStore,
    /// The local root, or the S3 server.
    backing: Backing,
}

enum Backing {
    Local(tempfile::TempDir),
    S3(S3TestServer),
}

impl Fixture {
    fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            store: BlobStore::open(dir.path()).unwrap(),
            backing: Backing::Local(dir),
        }
    }

    /// `None` only when the S3 tests are explicitly skipped.
    fn s3() -> Option<Self> {
        let server = S3TestServer::start()?;
        let mut config = server.config("node-a/blobs");
        // The smallest part S3 allows, so that a few MiB exercise multipart uploads.
        config.part_bytes = s3::MIN_PART_BYTES;
        Some(Self {
            store: BlobStore::open_s3(&config).unwrap(),
            backing: Backing::S3(server),
        })
    }

    fn server(&self) -> Option<&S3TestServer> {
        match &self.backing {
            Backing::S3(s) => Some(s),
            Backing::Local(_) => None,
        }
    }

    /// Files that hold unfinished writes: local temporary files, or the server's parts
    /// of multipart uploads in progress.
    fn pending_writes(&self) -> Vec<String> {
        let dirs: Vec<PathBuf> = match &self.backing {
            Backing::Local(d) => SUBDIRS.iter().map(|s| d.path().join(s)).collect(),
            Backing::S3(s) => vec![s.root().to_owned()],
        };
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX) || n.starts_with(".upload"))
            .collect()
    }
}

/// Defines `mod $name { fn local(); fn s3(); }` running `$body(&Fixture)` on each.
macro_rules! backend_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn local() {
                ($body)(&Fixture::local());
            }

            #[test]
            fn s3() {
                if let Some(f) = Fixture::s3() {
                    ($body)(&f);
                }
            }
        }
    };
}

fn read_blob(store: &BlobStore, name: &BlobName) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = store.open_read(name).unwrap();
    let len = r.len();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(len, out.len() as u64, "the reader's length is the blob's");
    out
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

fn write_blob(store: &BlobStore, name: &BlobName, data: &[u8], chunk: usize) -> (Digest, u64) {
    let mut w = store.create(name).unwrap();
    for c in data.chunks(chunk) {
        w.write_all(c).unwrap();
    }
    assert_eq!(w.written(), data.len() as u64);
    w.commit().unwrap()
}

backend_test!(write_commit_and_read_back, |f: &Fixture| {
    let store = &f.store;
    let name = BlobName::input(InputFileId::new());
    let data = pattern(200_000);
    let mut w = store.create(&name).unwrap();
    for chunk in data.chunks(7_000) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.written(), data.len() as u64);
    // Nothing visible under the name before commit.
    assert!(matches!(store.len(&name), Err(BlobError::NotFound { .. })));
    assert!(matches!(
        store.open_read(&name),
        Err(BlobError::NotFound { .. })
    ));

    let (digest, size) = w.commit().unwrap();
    assert_eq!(digest, Digest::of(&data));
    assert_eq!(size, data.len() as u64);
    assert_eq!(store.len(&name).unwrap(), size);
    assert_eq!(read_blob(store, &name), data);
    assert!(f.pending_writes().is_empty(), "{:?}", f.pending_writes());

    // Committing again under the same name replaces the blob.
    let mut w = store.create(&name).unwrap();
    w.write_all(b"second").unwrap();
    assert_eq!(w.commit().unwrap().1, 6);
    assert_eq!(read_blob(store, &name), b"second");

    // An empty blob is a blob.
    let empty = BlobName::output(OutputFileId::new());
    assert_eq!(write_blob(store, &empty, b"", 1), (Digest::of(b""), 0));
    assert!(store.open_read(&empty).unwrap().is_empty());
    assert_eq!(read_blob(store, &empty), b"");
});

backend_test!(large_blobs_stream_in_parts, |f: &Fixture| {
    // Over two minimum parts plus a short last one: a multipart upload on S3.
    let store = &f.store;
    let name = BlobName::output_version(OutputFileId::new(), 3);
    let data = pattern(2 * s3::MIN_PART_BYTES + 123_457);
    let mut w = store.create(&name).unwrap();
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    // Parts already sent are not the blob.
    assert!(matches!(store.len(&name), Err(BlobError::NotFound { .. })));
    assert_eq!(w.commit().unwrap(), (Digest::of(&data), data.len() as u64));
    assert_eq!(store.len(&name).unwrap(), data.len() as u64);
    // Read back in small pieces, as a download does.
    let mut r = store.open_read(&name).unwrap();
    let mut back = Vec::new();
    let mut buf = [0u8; 10_000];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert!(back == data, "read back {} bytes, differing", back.len());
    assert!(f.pending_writes().is_empty(), "{:?}", f.pending_writes());
});

backend_test!(commit_if_checks_the_digest, |f: &Fixture| {
    let store = &f.store;
    let expected = Digest::of(b"expected");
    let name = BlobName::payload(&expected);
    for body in [b"something else".to_vec(), pattern(s3::MIN_PART_BYTES + 10)] {
        let mut w = store.create(&name).unwrap();
        w.write_all(&body).unwrap();
        match w.commit_if(&expected) {
            Err(BlobError::DigestMismatch {
                name: n,
                expected: e,
                actual,
            }) => {
                assert_eq!(n, name);
                assert_eq!(e, expected);
                assert_eq!(actual, Digest::of(&body));
            }
            other => panic!("expected DigestMismatch, got {other:?}"),
        }
        assert!(matches!(store.len(&name), Err(BlobError::NotFound { .. })));
        eventually_no_pending_writes(f);
    }

    let mut w = store.create(&name).unwrap();
    w.write_all(b"expected").unwrap();
    assert_eq!(w.commit_if(&expected).unwrap(), 8);
    assert_eq!(read_blob(store, &name), b"expected");
});

/// A multipart upload is aborted in the background: wait (boundedly) for it.
fn eventually_no_pending_writes(f: &Fixture) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f.pending_writes().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "writes left behind: {:?}",
            f.pending_writes()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

backend_test!(dropped_writer_leaves_nothing, |f: &Fixture| {
    let store = &f.store;
    for len in [100_000, s3::MIN_PART_BYTES * 2] {
        let name = BlobName::output(OutputFileId::new());
        let mut w = store.create(&name).unwrap();
        w.write_all(&pattern(len)).unwrap();
        w.flush().unwrap();
        drop(w);
        eventually_no_pending_writes(f);
        assert!(matches!(
            store.open_read(&name),
            Err(BlobError::NotFound { .. })
        ));
    }
});

backend_test!(missing_blobs_and_removal, |f: &Fixture| {
    let store = &f.store;
    let name = BlobName::input(InputFileId::new());
    match store.open_read(&name) {
        Err(BlobError::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let err = store.len(&name).unwrap_err();
    assert!(err.to_string().contains(&name.to_string()), "{err}");
    assert!(!err.is_unavailable());
    assert!(!store.remove(&name).unwrap());

    write_blob(store, &name, b"x", 1);
    let other = BlobName::input(InputFileId::new());
    write_blob(store, &other, b"kept", 2);
    assert!(store.remove(&name).unwrap());
    assert!(matches!(store.len(&name), Err(BlobError::NotFound { .. })));
    assert!(!store.remove(&name).unwrap());
    assert_eq!(read_blob(store, &other), b"kept");
});

#[test]
fn payload_and_output_names() {
    let digest = Digest::of(b"payload");
    assert_eq!(
        BlobName::payload(&digest).to_string(),
        format!("payloads/{}", digest.to_hex())
    );
    let out = OutputFileId::new();
    assert_eq!(BlobName::output(out).to_string(), format!("outputs/{out}"));
    assert_eq!(
        BlobName::output_version(out, 0xab).to_string(),
        format!("outputs/{out}.00000000000000ab")
    );
}

#[test]
fn store_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<BlobStore>();
    assert_send_sync::<BlobWriter>();
    assert_send::<BlobReader>();
}

// The local directory's own layout.

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn local_layout_modes_and_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = BlobStore::open(&root).unwrap();
    for sub in SUBDIRS {
        assert_eq!(mode(&root.join(sub)), DIR_MODE, "{sub}");
    }
    assert_eq!(mode(&root), DIR_MODE);
    let id = InputFileId::new();
    let name = BlobName::input(id);
    let mut w = store.create(&name).unwrap();
    w.write_all(b"abc").unwrap();
    let temps = || -> Vec<_> {
        std::fs::read_dir(root.join(INPUTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(TEMP_PREFIX))
            .collect()
    };
    assert_eq!(temps().len(), 1);
    w.commit().unwrap();
    assert!(temps().is_empty());
    let path = store.path(&name).unwrap();
    assert_eq!(path, root.join("inputs").join(id.to_string()));
    assert_eq!(mode(&path), FILE_MODE);
    let reader = store.open_read(&name).unwrap();
    assert!(reader.as_file().is_some(), "a local blob is a file");
}

#[test]
fn open_removes_leftover_temp_files_and_keeps_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let kept = BlobName::input(InputFileId::new());
    {
        let store = BlobStore::open(dir.path()).unwrap();
        write_blob(&store, &kept, b"kept", 4);
        // A crash mid-upload: the writer never runs its destructor.
        let mut w = store.create(&BlobName::input(InputFileId::new())).unwrap();
        w.write_all(b"half an upload").unwrap();
        w.flush().unwrap();
        std::mem::forget(w);
    }
    let store = BlobStore::open(dir.path()).unwrap();
    let f = Fixture {
        store,
        backing: Backing::Local(dir),
    };
    assert!(f.pending_writes().is_empty());
    assert_eq!(read_blob(&f.store, &kept), b"kept");
}

#[test]
fn one_open_store_per_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    assert!(matches!(
        BlobStore::open(dir.path()),
        Err(BlobError::Locked { .. })
    ));
    drop(store);
    BlobStore::open(dir.path()).unwrap();
}

// Object storage's own rules.

#[test]
fn s3_blobs_are_keys_under_the_prefix_and_have_no_path() {
    let Some(f) = Fixture::s3() else { return };
    let name = BlobName::payload(&Digest::of(b"p"));
    write_blob(&f.store, &name, b"p", 1);
    assert_eq!(f.store.path(&name), None);
    let server = f.server().unwrap();
    let object = server
        .root()
        .join(test_s3::BUCKET)
        .join("node-a/blobs")
        .join(name.to_string());
    assert_eq!(std::fs::read(&object).unwrap(), b"p");
    assert!(f.store.open_read(&name).unwrap().as_file().is_none());
}

#[test]
fn s3_open_refuses_a_missing_bucket_and_bad_credentials() {
    let Some(server) = S3TestServer::start() else {
        return;
    };
    let mut missing = server.config("x");
    missing.bucket = "no-such-bucket".into();
    let err = BlobStore::open_s3(&missing).unwrap_err();
    assert!(
        matches!(&err, BlobError::S3Reach { bucket, .. } if bucket == "no-such-bucket"),
        "{err:?}"
    );
    assert!(!err.is_unavailable(), "a missing bucket is not an outage");

    let mut wrong = server.config("x");
    wrong.secret_access_key = Some("wrong".into());
    let err = BlobStore::open_s3(&wrong).unwrap_err();
    assert!(matches!(err, BlobError::S3Reach { .. }), "{err:?}");
    assert!(!err.is_unavailable());
    // The secret is in no message.
    let chain = crate::error_chain(&err);
    assert!(
        !chain.contains("wrong") && !chain.contains(&server.config("x").secret_access_key.unwrap()),
        "{chain}"
    );

    let mut small = server.config("x");
    small.part_bytes = 1 << 20;
    assert!(matches!(
        BlobStore::open_s3(&small),
        Err(BlobError::S3Settings { .. })
    ));
}

#[test]
fn s3_unreachable_store_is_unavailable() {
    let Some(mut f) = Fixture::s3() else { return };
    let name = BlobName::input(InputFileId::new());
    write_blob(&f.store, &name, b"before", 3);
    let mut reader = f.store.open_read(&name).unwrap();
    let Backing::S3(server) = &mut f.backing else {
        unreachable!()
    };
    server.stop();

    for err in [
        f.store.len(&name).unwrap_err(),
        f.store.open_read(&name).unwrap_err(),
        f.store.remove(&name).unwrap_err(),
        {
            let mut w = f
                .store
                .create(&BlobName::input(InputFileId::new()))
                .unwrap();
            w.write_all(b"after").unwrap();
            w.commit().unwrap_err()
        },
    ] {
        assert!(err.is_unavailable(), "{}", crate::error_chain(&err));
        assert!(matches!(err, BlobError::S3 { .. }), "{err:?}");
    }
    // The body had arrived, or the read fails as unavailable; never wrong bytes.
    let mut body = Vec::new();
    match reader.read_to_end(&mut body) {
        Ok(_) => assert_eq!(body, b"before"),
        Err(e) => assert!(BlobError::from_io(&e).is_some_and(BlobError::is_unavailable)),
    }
    // Opening against a store that is down says so.
    let down = f.server().unwrap().config("node-a/blobs");
    let err = BlobStore::open_s3(&down).unwrap_err();
    assert!(err.is_unavailable(), "{}", crate::error_chain(&err));
}

#[test]
fn s3_settings_from_url() {
    let c = S3Config::from_url("s3://bucket/some/prefix/").unwrap();
    assert_eq!(
        (c.bucket.as_str(), c.prefix.as_str()),
        ("bucket", "some/prefix")
    );
    assert_eq!(c.url(), "s3://bucket/some/prefix");
    assert_eq!(S3Config::from_url("s3://b").unwrap().prefix, "");
    for bad in [
        "http://bucket/x",
        "s3://",
        "s3:///x",
        "s3://key:secret@bucket/x",
        "s3://bucket/a//b",
        "s3://bucket/../x",
        "s3://bucket/x?region=y",
    ] {
        let err = S3Config::from_url(bad).unwrap_err();
        assert!(matches!(err, BlobError::S3Settings { .. }), "{bad}: {err}");
        assert!(!err.to_string().contains("key:secret"), "{err}");
    }
    let mut c = S3Config::from_url("s3://b/p").unwrap();
    c.access_key_id = Some("AKIDEXAMPLE".into());
    c.secret_access_key = Some("hunter2".into());
    c.session_token = Some("tok".into());
    let shown = format!("{c:?}");
    for secret in ["AKIDEXAMPLE", "hunter2", "\"tok\""] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("<redacted>"), "{shown}");
}
