use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use cella_types::{
    Digest, FileSchema, InputFile, InputFileId, KeyMaterial, Location, NewTask, Role, Task, User,
    UserName,
};

use super::*;

const DB_FILE: &str = "meta.redb";
const KEY_FILE: &str = "sealing.key";

fn key_in(dir: &Path) -> SealingKey {
    SealingKey::load_or_create(&dir.join(KEY_FILE)).unwrap()
}

fn open(dir: &Path) -> MetaStore {
    MetaStore::open(&dir.join(DB_FILE), key_in(dir)).unwrap()
}

fn name(s: &str) -> UserName {
    s.parse().unwrap()
}

fn user(n: &str) -> User {
    User {
        name: name(n),
        roles: [Role::DataOwner].into(),
        password_hash: format!("$argon2id$hash-of-{n}"),
        created_ms: 1,
    }
}

fn input_file(owner: &str, key_byte: u8) -> InputFile {
    InputFile {
        id: InputFileId::new(),
        owner: name(owner),
        location: Location::Blob,
        ciphertext_digest: Digest::of(owner.as_bytes()),
        size: 10,
        schema: FileSchema::CellaSealedV1,
        key: KeyMaterial::new(vec![key_byte; 32]),
        created_ms: 2,
    }
}

/// An error type of a service that rejects a request.
#[derive(Debug)]
enum TestError {
    #[expect(dead_code, reason = "only shown through Debug when a test fails")]
    Store(StoreError),
    Rejected,
}

impl From<StoreError> for TestError {
    fn from(e: StoreError) -> Self {
        TestError::Store(e)
    }
}

/// A queue entry keyed by [`seq_key`].
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct QueueItem {
    seq: u64,
    what: String,
}

impl Record for QueueItem {
    const TABLE: &'static str = "test_queue";

    fn key(&self) -> String {
        seq_key(self.seq)
    }
}

fn names(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.name.as_str()).collect()
}

#[test]
fn put_get_list_first_count_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    // Tables never written read as empty.
    store
        .read(|tx| {
            assert_eq!(tx.count::<User>()?, 0);
            assert!(tx.first::<User>()?.is_none());
            assert!(tx.list::<User>()?.is_empty());
            assert!(tx.get::<User>("alice")?.is_none());
            Ok::<_, StoreError>(())
        })
        .unwrap();

    store
        .write(|tx| {
            for n in ["carol", "alice", "bob"] {
                tx.put(&user(n))?;
            }
            // A write transaction sees its own writes.
            assert_eq!(tx.get::<User>("bob")?, Some(user("bob")));
            assert_eq!(tx.count::<User>()?, 3);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    store
        .read(|tx| {
            assert_eq!(tx.get::<User>("alice")?, Some(user("alice")));
            assert_eq!(names(&tx.list::<User>()?), ["alice", "bob", "carol"]);
            assert_eq!(tx.first::<User>()?, Some(user("alice")));
            assert_eq!(tx.count::<User>()?, 3);
            Ok::<_, StoreError>(())
        })
        .unwrap();

    let mut changed = user("alice");
    changed.roles.insert(Role::Admin);
    store
        .write(|tx| {
            tx.put(&changed)?;
            assert!(tx.delete::<User>("bob")?);
            assert!(!tx.delete::<User>("bob")?);
            assert!(!tx.delete::<User>("nobody")?);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    store
        .read(|tx| {
            assert_eq!(tx.get::<User>("alice")?, Some(changed.clone()));
            assert!(tx.get::<User>("bob")?.is_none());
            assert_eq!(names(&tx.list::<User>()?), ["alice", "carol"]);
            assert_eq!(tx.count::<User>()?, 2);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn domain_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let file = input_file("alice", 9);
    let task = Task::new(
        NewTask {
            creator: name("alice"),
            function_id: cella_types::FunctionId::new(),
            function_owner: name("bob"),
            function_public: true,
            arguments: BTreeMap::from([("n".to_owned(), "1".to_owned())]),
            inputs: BTreeMap::from([("in".to_owned(), (BTreeSet::from([name("alice")]), false))]),
            outputs: BTreeMap::new(),
        },
        5,
    );
    store
        .write(|tx| {
            tx.put(&file)?;
            tx.put(&task)
        })
        .unwrap();
    store
        .read(|tx| {
            assert_eq!(
                tx.get::<InputFile>(&file.id.to_string())?,
                Some(file.clone())
            );
            assert_eq!(tx.get::<Task>(&task.id().to_string())?, Some(task.clone()));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

#[test]
fn reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.write(|tx| tx.put(&user("alice"))).unwrap();
    }
    let store = open(dir.path());
    let got = store.read(|tx| tx.get::<User>("alice")).unwrap();
    assert_eq!(got, Some(user("alice")));
}

#[test]
fn rejected_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.write(|tx| tx.put(&user("alice"))).unwrap();

    let result: Result<(), TestError> = store.write(|tx| {
        tx.put(&user("bob"))?;
        assert!(tx.delete::<User>("alice")?);
        assert_eq!(tx.next_seq("audit")?, 1);
        Err(TestError::Rejected)
    });
    assert!(matches!(result, Err(TestError::Rejected)));

    store
        .read(|tx| {
            assert_eq!(tx.get::<User>("alice")?, Some(user("alice")));
            assert!(tx.get::<User>("bob")?.is_none());
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // The aborted transaction did not consume a sequence number.
    assert_eq!(store.write(|tx| tx.next_seq("audit")).unwrap(), 1);
}

#[test]
fn volatile_writes_persist_with_the_next_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.write_volatile(|tx| tx.put(&user("lease"))).unwrap();
        // Visible to readers at once.
        assert!(store.read(|tx| tx.get::<User>("lease")).unwrap().is_some());
        store.write(|tx| tx.put(&user("durable"))).unwrap();
    }
    let store = open(dir.path());
    store
        .read(|tx| {
            assert_eq!(names(&tx.list::<User>()?), ["durable", "lease"]);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

/// Environment variable that turns [`crash_child`] into a child that crashes.
const CRASH_DIR_ENV: &str = "CELLA_STORE_TEST_CRASH_DIR";
const CRASH_MODE_ENV: &str = "CELLA_STORE_TEST_CRASH_MODE";

/// Not a test on its own: [`crash_loses_only_unflushed_volatile_writes`] runs the test
/// binary again on this test with the environment set; it writes and then aborts the
/// process without running any destructor, like a power cut after the last commit.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = open(&dir);
    store.write(|tx| tx.put(&user("durable1"))).unwrap();
    store
        .write_volatile(|tx| tx.put(&user("volatile")))
        .unwrap();
    if std::env::var(CRASH_MODE_ENV).as_deref() == Ok("then-durable") {
        store.write(|tx| tx.put(&user("durable2"))).unwrap();
    }
    std::process::abort();
}

fn run_crash_child(dir: &Path, mode: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "meta::tests::crash_child", "--test-threads=1"])
        .env(CRASH_DIR_ENV, dir)
        .env(CRASH_MODE_ENV, mode)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
}

#[test]
fn crash_loses_only_unflushed_volatile_writes() {
    let dir = tempfile::tempdir().unwrap();
    run_crash_child(dir.path(), "volatile-last");
    let store = open(dir.path());
    let users = store.read(|tx| tx.list::<User>()).unwrap();
    assert_eq!(names(&users), ["durable1"]);
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    run_crash_child(dir.path(), "then-durable");
    let store = open(dir.path());
    let users = store.read(|tx| tx.list::<User>()).unwrap();
    assert_eq!(names(&users), ["durable1", "durable2", "volatile"]);
}

#[test]
fn values_are_sealed_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let file = input_file("zelda-unique-owner", 0xc3);
    let key_hex = "c3".repeat(32);
    let mut u = user("alice");
    u.password_hash = "$argon2id$v=19$unique-hash-marker".to_owned();
    {
        let store = open(dir.path());
        store
            .write(|tx| {
                tx.put(&file)?;
                tx.put(&u)
            })
            .unwrap();
    }
    let raw = std::fs::read(dir.path().join(DB_FILE)).unwrap();
    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    // Keys are in clear: this shows the scan can find what is there.
    assert!(contains(&file.id.to_string()));
    for secret in [
        "zelda-unique-owner",
        key_hex.as_str(),
        "unique-hash-marker",
        "argon2id",
        "cella-sealed-v1",
    ] {
        assert!(!contains(secret), "{secret:?} is in the database file");
    }
}

/// Copies the raw value of `from` (in table `from_table`) to `to_key` in `to_table`.
fn copy_raw(path: &Path, from_table: &'static str, from: &str, to_table: &'static str, to: &str) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let value = txn
            .open_table(table_def(from_table))
            .unwrap()
            .get(from)
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        txn.open_table(table_def(to_table))
            .unwrap()
            .insert(to, value.as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn moved_values_do_not_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let store = open(dir.path());
        store.write(|tx| tx.put(&user("alice"))).unwrap();
    }
    copy_raw(&path, User::TABLE, "alice", User::TABLE, "mallory");
    copy_raw(&path, User::TABLE, "alice", "other_users", "alice");

    let store = open(dir.path());
    match store.read(|tx| tx.get::<User>("mallory")) {
        Err(StoreError::Corrupt { table, key, .. }) => {
            assert_eq!(table, "users");
            assert_eq!(key, "mallory");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A scan fails on the moved value too, naming it.
    let err = store.read(|tx| tx.list::<User>()).unwrap_err();
    assert!(err.to_string().contains("\"mallory\""), "{err}");

    #[derive(Debug, Serialize, Deserialize)]
    struct OtherUser {
        name: String,
    }
    impl Record for OtherUser {
        const TABLE: &'static str = "other_users";
        fn key(&self) -> String {
            self.name.clone()
        }
    }
    match store.read(|tx| tx.get::<OtherUser>("alice")) {
        Err(StoreError::Corrupt { table, key, .. }) => {
            assert_eq!(table, "other_users");
            assert_eq!(key, "alice");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The original still reads.
    assert_eq!(
        store.read(|tx| tx.get::<User>("alice")).unwrap(),
        Some(user("alice"))
    );
}

#[test]
fn wrong_sealing_key_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    drop(open(dir.path()));
    let other = SealingKey::load_or_create(&dir.path().join("other.key")).unwrap();
    match MetaStore::open(&path, other) {
        Err(e @ StoreError::WrongSealingKey { .. }) => {
            assert!(e.to_string().contains("sealing key"), "{e}");
            assert!(e.to_string().contains(DB_FILE), "{e}");
        }
        other => panic!("expected WrongSealingKey, got {other:?}"),
    }
    // The right key still opens it.
    drop(open(dir.path()));
}

#[test]
fn database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let mode = std::fs::metadata(dir.path().join(DB_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, DB_FILE_MODE);
}

#[test]
fn next_seq_is_monotonic_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let seqs = store
            .write(|tx| Ok::<_, StoreError>([tx.next_seq("queue")?, tx.next_seq("queue")?]))
            .unwrap();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(store.write(|tx| tx.next_seq("queue")).unwrap(), 3);
        assert_eq!(store.write(|tx| tx.next_seq("audit")).unwrap(), 1);
    }
    let store = open(dir.path());
    assert_eq!(store.write(|tx| tx.next_seq("queue")).unwrap(), 4);
    assert_eq!(store.write(|tx| tx.next_seq("audit")).unwrap(), 2);
}

#[test]
fn seq_keys_make_a_fifo_queue() {
    assert_eq!(seq_key(7), "00000000000000000007");
    assert_eq!(seq_key(u64::MAX).len(), SEQ_KEY_WIDTH);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Enough items that unpadded keys would sort "10" before "9".
    for i in 0..12 {
        store
            .write(|tx| {
                let seq = tx.next_seq("queue")?;
                tx.put(&QueueItem {
                    seq,
                    what: format!("item {i}"),
                })
            })
            .unwrap();
    }
    let mut popped = Vec::new();
    while let Some(item) = store
        .write(|tx| {
            let head = tx.first::<QueueItem>()?;
            if let Some(item) = &head {
                tx.delete::<QueueItem>(&item.key())?;
            }
            Ok::<_, StoreError>(head)
        })
        .unwrap()
    {
        popped.push(item.seq);
    }
    assert_eq!(popped, (1..=12).collect::<Vec<_>>());
}

#[test]
fn shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MetaStore>();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..10 {
                    store
                        .write_volatile(|tx| {
                            let seq = tx.next_seq("queue")?;
                            tx.put(&QueueItem {
                                seq,
                                what: format!("{t}/{i}"),
                            })
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let items = store.read(|tx| tx.list::<QueueItem>()).unwrap();
    assert_eq!(
        items.iter().map(|i| i.seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
}

/// Concurrent durable writers share commits, and a refused write in a shared batch
/// leaves no trace while its neighbours' writes land.
#[test]
fn group_commit_batches_writers_and_isolates_failures() {
    const THREADS: u64 = 8;
    const WRITES: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let before = store.commit_count();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    let n = t * WRITES + i;
                    let refused = n.is_multiple_of(5);
                    let r = store.write(|tx| {
                        tx.put(&QueueItem {
                            seq: n,
                            what: format!("{t}/{i}"),
                        })?;
                        // A read inside the closure sees its own pending write.
                        assert!(tx.get::<QueueItem>(&seq_key(n))?.is_some());
                        if refused {
                            return Err(TestError::Rejected);
                        }
                        Ok(())
                    });
                    assert_eq!(r.is_err(), refused);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let items = store.read(|tx| tx.list::<QueueItem>()).unwrap();
    let expected: Vec<u64> = (0..THREADS * WRITES)
        .filter(|n| !n.is_multiple_of(5))
        .collect();
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), expected);
    let commits = store.commit_count() - before;
    assert!(
        commits < THREADS * WRITES,
        "{commits} commits for {} writes: no batching happened",
        THREADS * WRITES
    );
    // Durable: everything is there after a reopen.
    drop(items);
    let store = Arc::try_unwrap(store).ok().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.read(|tx| tx.count::<QueueItem>()).unwrap(),
        expected.len() as u64
    );
}

/// A panic inside a write closure neither commits its writes nor blocks later writers.
#[test]
fn panicking_writer_leaves_nothing_and_blocks_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.write(|tx| -> Result<(), StoreError> {
            tx.put(&user("ghost"))?;
            panic!("boom");
        });
    }));
    assert!(panicked.is_err());
    store.write(|tx| tx.put(&user("after"))).unwrap();
    let users = store.read(|tx| tx.list::<User>()).unwrap();
    assert_eq!(names(&users), ["after"]);
}

/// Reads inside a write see pending puts and deletes in first, list and count.
#[test]
fn pending_writes_are_visible_to_scans() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .write(|tx| {
            for seq in 1..=3 {
                tx.put(&QueueItem {
                    seq,
                    what: String::new(),
                })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    store
        .write(|tx| {
            assert!(tx.delete::<QueueItem>(&seq_key(1))?);
            assert!(!tx.delete::<QueueItem>(&seq_key(9))?);
            assert_eq!(tx.first::<QueueItem>()?.map(|q| q.seq), Some(2));
            tx.put(&QueueItem {
                seq: 0,
                what: String::new(),
            })?;
            assert_eq!(tx.first::<QueueItem>()?.map(|q| q.seq), Some(0));
            assert_eq!(tx.count::<QueueItem>()?, 3);
            assert_eq!(
                tx.list::<QueueItem>()?
                    .iter()
                    .map(|q| q.seq)
                    .collect::<Vec<_>>(),
                [0, 2, 3]
            );
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(store.read(|tx| tx.count::<QueueItem>()).unwrap(), 3);
}

/// Commits per second of small writes, durable and volatile. Run with
/// `cargo test -p cella-store --release -- --ignored --nocapture commit_throughput`.
#[test]
#[ignore = "a measurement, not a check; run in release mode"]
fn commit_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let measure = |label: &str, n: u32, volatile: bool| {
        let start = Instant::now();
        for i in 0..n {
            let f = |tx: &mut WriteTx<'_>| {
                let mut u = user("bench");
                u.created_ms = u64::from(i);
                tx.put(&u)
            };
            if volatile {
                store.write_volatile(f).unwrap();
            } else {
                store.write(f).unwrap();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {n} commits in {secs:.3} s = {:.0} commits/s",
            f64::from(n) / secs
        );
    };
    let file_len = || std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
    measure("durable", 500, false);
    println!("file: {} bytes", file_len());
    measure("volatile", 20_000, true);
    println!("file after volatile commits: {} bytes", file_len());
    measure("durable after volatile", 500, false);
    println!("file after durable commits: {} bytes", file_len());
}

/// A redb backend over a real file whose writes and syncs fail with `ENOSPC` while
/// `full` is set, as on a full disk.
#[derive(Debug)]
struct FullDisk {
    file: redb::backends::FileBackend,
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl FullDisk {
    fn check(&self) -> Result<(), std::io::Error> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(28))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FullDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.check()?;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.check()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.check()?;
        self.file.write(offset, data)
    }
}

fn open_on_full_disk(dir: &Path, full: &Arc<std::sync::atomic::AtomicBool>) -> MetaStore {
    let path = dir.join(DB_FILE);
    let (opener_path, full) = (path.clone(), Arc::clone(full));
    let opener: Opener = Box::new(move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&opener_path)?;
        let backend = FullDisk {
            file: redb::backends::FileBackend::new(file)?,
            full: Arc::clone(&full),
        };
        redb::Database::builder().create_with_backend(backend)
    });
    MetaStore::open_with(&path, key_in(dir), opener).unwrap()
}

#[test]
fn a_full_disk_fails_writes_until_space_is_freed_then_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = open_on_full_disk(dir.path(), &full);
    store.write(|tx| tx.put(&user("alice"))).unwrap();
    assert_eq!(store.write_failure(), None);

    full.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = store.write(|tx| tx.put(&user("bob"))).unwrap_err();
    assert!(err.is_out_of_space(), "not seen as a full disk: {err:?}");
    let failure = store
        .write_failure()
        .expect("the failed commit is recorded");
    assert!(failure.contains("No space left on device"), "{failure}");
    // Still full: the next write fails the same way, and says why.
    let err = store.write(|tx| tx.put(&user("carol"))).unwrap_err();
    assert!(err.is_out_of_space(), "not seen as a full disk: {err:?}");

    full.store(false, std::sync::atomic::Ordering::SeqCst);
    store.write(|tx| tx.put(&user("dave"))).unwrap();
    assert_eq!(store.write_failure(), None);
    let names: BTreeSet<String> = store
        .read(|tx| tx.list::<User>())
        .unwrap()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    assert!(
        names.contains("alice") && names.contains("dave"),
        "{names:?}"
    );
    assert!(!names.contains("carol"), "{names:?}");
}

#[test]
fn out_of_space_is_told_from_other_errors() {
    let full = StoreError::Open {
        path: "x".into(),
        source: std::io::Error::from_raw_os_error(28),
    };
    assert!(full.is_out_of_space());
    let denied = StoreError::Open {
        path: "x".into(),
        source: std::io::Error::from_raw_os_error(13),
    };
    assert!(!denied.is_out_of_space());
    let batch = StoreError::BatchCommit {
        message: "cannot commit: No space left on device (os error 28)".into(),
        out_of_space: true,
    };
    assert!(batch.is_out_of_space());
    // The committing writer's verdict decides, not the wording of its message.
    let other = StoreError::BatchCommit {
        message: "cannot commit: No space left on device (os error 28)".into(),
        out_of_space: false,
    };
    assert!(!other.is_out_of_space());
}
