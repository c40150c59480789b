use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn read_blob(store: &BlobStore, name: &BlobName) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open_read(name)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Names in `dir` that start with the temporary prefix.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn write_commit_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = BlobStore::open(&root).unwrap();
    for sub in SUBDIRS {
        assert_eq!(mode(&root.join(sub)), DIR_MODE, "{sub}");
    }
    assert_eq!(mode(&root), DIR_MODE);

    let id = InputFileId::new();
    let name = BlobName::input(id);
    assert_eq!(name.to_string(), format!("inputs/{id}"));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = store.create(&name).unwrap();
    for chunk in data.chunks(7_000) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.written(), data.len() as u64);
    // Nothing visible under the name before commit.
    assert!(matches!(store.len(&name), Err(BlobError::NotFound { .. })));
    assert_eq!(temp_files(&root.join(INPUTS_DIR)).len(), 1);

    let (digest, size) = w.commit().unwrap();
    assert_eq!(digest, Digest::of(&data));
    assert_eq!(size, data.len() as u64);
    assert_eq!(store.len(&name).unwrap(), size);
    assert_eq!(read_blob(&store, &name), data);
    assert_eq!(store.path(&name), root.join("inputs").join(id.to_string()));
    assert_eq!(mode(&store.path(&name)), FILE_MODE);
    assert!(temp_files(&root.join(INPUTS_DIR)).is_empty());

    // Committing again under the same name replaces the blob atomically.
    let mut w = store.create(&name).unwrap();
    w.write_all(b"second").unwrap();
    assert_eq!(w.commit().unwrap().1, 6);
    assert_eq!(read_blob(&store, &name), b"second");
}

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
fn commit_if_checks_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let expected = Digest::of(b"expected");
    let name = BlobName::payload(&expected);

    let mut w = store.create(&name).unwrap();
    w.write_all(b"something else").unwrap();
    match w.commit_if(&expected) {
        Err(BlobError::DigestMismatch {
            name: n,
            expected: e,
            actual,
        }) => {
            assert_eq!(n, name);
            assert_eq!(e, expected);
            assert_eq!(actual, Digest::of(b"something else"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(!store.path(&name).exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join(PAYLOADS_DIR))
            .unwrap()
            .count(),
        0
    );

    let mut w = store.create(&name).unwrap();
    w.write_all(b"expected").unwrap();
    assert_eq!(w.commit_if(&expected).unwrap(), 8);
    assert_eq!(read_blob(&store, &name), b"expected");
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let name = BlobName::output(OutputFileId::new());
    let mut w = store.create(&name).unwrap();
    w.write_all(&[7u8; 100_000]).unwrap();
    assert_eq!(temp_files(&dir.path().join(OUTPUTS_DIR)).len(), 1);
    drop(w);
    assert!(temp_files(&dir.path().join(OUTPUTS_DIR)).is_empty());
    assert!(matches!(
        store.open_read(&name),
        Err(BlobError::NotFound { .. })
    ));
}

#[test]
fn open_removes_leftover_temp_files_and_keeps_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let kept = BlobName::input(InputFileId::new());
    {
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.create(&kept).unwrap();
        w.write_all(b"kept").unwrap();
        w.commit().unwrap();
        // A crash mid-upload: the writer never runs its destructor.
        let mut w = store.create(&BlobName::input(InputFileId::new())).unwrap();
        w.write_all(b"half an upload").unwrap();
        w.flush().unwrap();
        std::mem::forget(w);
        assert_eq!(temp_files(&dir.path().join(INPUTS_DIR)).len(), 1);
    }
    let store = BlobStore::open(dir.path()).unwrap();
    assert!(temp_files(&dir.path().join(INPUTS_DIR)).is_empty());
    assert_eq!(read_blob(&store, &kept), b"kept");
}

#[test]
fn missing_blobs_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let name = BlobName::input(InputFileId::new());
    match store.open_read(&name) {
        Err(BlobError::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let err = store.len(&name).unwrap_err();
    assert!(err.to_string().contains(&name.to_string()), "{err}");
    assert!(!store.remove(&name).unwrap());

    let mut w = store.create(&name).unwrap();
    w.write_all(b"x").unwrap();
    w.commit().unwrap();
    assert!(store.remove(&name).unwrap());
    assert!(matches!(store.len(&name), Err(BlobError::NotFound { .. })));
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

#[test]
fn store_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BlobStore>();
    assert_send_sync::<BlobWriter>();
}
