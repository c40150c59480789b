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

/// Where one test's store lives: the store suite runs every test of [`suite!`] once on
/// each backend.
enum Site {
    Redb(tempfile::TempDir),
    /// A fresh database of the test PostgreSQL server; the sealing key is in `dir`.
    Postgres {
        url: String,
        dir: tempfile::TempDir,
    },
}

impl Site {
    fn redb() -> Self {
        Site::Redb(tempfile::tempdir().unwrap())
    }

    /// `None` only when the caller asked to skip the PostgreSQL tests.
    fn postgres(test: &str) -> Option<Self> {
        Some(Site::Postgres {
            url: crate::pg_cluster::database(test)?,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn dir(&self) -> &Path {
        match self {
            Site::Redb(dir) | Site::Postgres { dir, .. } => dir.path(),
        }
    }

    fn is_redb(&self) -> bool {
        matches!(self, Site::Redb(_))
    }

    /// Opens (or reopens) the store with the site's key.
    fn open(&self) -> MetaStore {
        self.open_with_key(key_in(self.dir())).unwrap()
    }

    fn open_with_key(&self, key: SealingKey) -> Result<MetaStore, StoreError> {
        match self {
            Site::Redb(dir) => MetaStore::open(&dir.path().join(DB_FILE), key),
            Site::Postgres { url, .. } => MetaStore::connect_postgres(url, None, key),
        }
    }

    /// What the backend keeps at rest, as searchable text: the redb file, or every row.
    fn raw_contents(&self) -> Vec<u8> {
        match self {
            Site::Redb(dir) => std::fs::read(dir.path().join(DB_FILE)).unwrap(),
            Site::Postgres { url, .. } => crate::pg_cluster::query_text(
                url,
                "SELECT string_agg(tbl || ' ' || key || ' ' || encode(value, 'escape'), ' ') \
                 FROM cella_records",
            )
            .unwrap()
            .into_bytes(),
        }
    }

    /// Copies the raw value of `from` in `from_table` to `to` in `to_table`, behind the
    /// store's back (the store must be closed for redb).
    fn copy_raw(&self, from_table: &'static str, from: &str, to_table: &'static str, to: &str) {
        match self {
            Site::Redb(dir) => copy_raw(&dir.path().join(DB_FILE), from_table, from, to_table, to),
            Site::Postgres { url, .. } => crate::pg_cluster::execute(
                url,
                &format!(
                    "INSERT INTO cella_records (tbl, key, value) SELECT '{to_table}', '{to}', value \
                     FROM cella_records WHERE tbl = '{from_table}' AND key = '{from}'"
                ),
            )
            .unwrap(),
        }
    }
}

/// Runs each named test (a `fn(&Site)`) once on redb and once on PostgreSQL.
macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod on_redb {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::Site::redb());
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $test() {
                    if let Some(site) = super::Site::postgres(stringify!($test)) {
                        super::$test(&site);
                    }
                }
            )*
        }
    };
}

suite!(
    put_get_list_first_count_delete,
    domain_records_round_trip,
    reopen_keeps_data,
    rejected_write_changes_nothing,
    volatile_writes_persist_with_the_next_durable_commit,
    values_are_sealed_at_rest,
    moved_values_do_not_unseal,
    wrong_sealing_key_is_refused_on_open,
    next_seq_is_monotonic_across_reopen,
    seq_keys_make_a_fifo_queue,
    shared_across_threads,
    group_commit_batches_writers_and_isolates_failures,
    panicking_writer_leaves_nothing_and_blocks_nobody,
    pending_writes_are_visible_to_scans,
);

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

fn put_get_list_first_count_delete(site: &Site) {
    let store = site.open();

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

fn domain_records_round_trip(site: &Site) {
    let store = site.open();
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

fn reopen_keeps_data(site: &Site) {
    {
        let store = site.open();
        store.write(|tx| tx.put(&user("alice"))).unwrap();
    }
    let store = site.open();
    let got = store.read(|tx| tx.get::<User>("alice")).unwrap();
    assert_eq!(got, Some(user("alice")));
}

fn rejected_write_changes_nothing(site: &Site) {
    let store = site.open();
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

fn volatile_writes_persist_with_the_next_durable_commit(site: &Site) {
    {
        let store = site.open();
        store.write_volatile(|tx| tx.put(&user("lease"))).unwrap();
        // Visible to readers at once.
        assert!(store.read(|tx| tx.get::<User>("lease")).unwrap().is_some());
        store.write(|tx| tx.put(&user("durable"))).unwrap();
    }
    let store = site.open();
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

fn values_are_sealed_at_rest(site: &Site) {
    let file = input_file("zelda-unique-owner", 0xc3);
    let key_hex = "c3".repeat(32);
    let mut u = user("alice");
    u.password_hash = "$argon2id$v=19$unique-hash-marker".to_owned();
    {
        let store = site.open();
        store
            .write(|tx| {
                tx.put(&file)?;
                tx.put(&u)
            })
            .unwrap();
    }
    let raw = site.raw_contents();
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
        assert!(!contains(secret), "{secret:?} is in the database");
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

fn moved_values_do_not_unseal(site: &Site) {
    {
        let store = site.open();
        store.write(|tx| tx.put(&user("alice"))).unwrap();
    }
    site.copy_raw(User::TABLE, "alice", User::TABLE, "mallory");
    site.copy_raw(User::TABLE, "alice", "other_users", "alice");

    let store = site.open();
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

fn wrong_sealing_key_is_refused_on_open(site: &Site) {
    drop(site.open());
    let other = SealingKey::load_or_create(&site.dir().join("other.key")).unwrap();
    match site.open_with_key(other) {
        Err(e @ StoreError::WrongSealingKey { .. }) => {
            assert!(e.to_string().contains("sealing key"), "{e}");
            let place = if site.is_redb() {
                DB_FILE
            } else {
                "postgres://"
            };
            assert!(e.to_string().contains(place), "{e}");
        }
        other => panic!("expected WrongSealingKey, got {other:?}"),
    }
    // The right key still opens it.
    drop(site.open());
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

fn next_seq_is_monotonic_across_reopen(site: &Site) {
    {
        let store = site.open();
        let seqs = store
            .write(|tx| Ok::<_, StoreError>([tx.next_seq("queue")?, tx.next_seq("queue")?]))
            .unwrap();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(store.write(|tx| tx.next_seq("queue")).unwrap(), 3);
        assert_eq!(store.write(|tx| tx.next_seq("audit")).unwrap(), 1);
    }
    let store = site.open();
    assert_eq!(store.write(|tx| tx.next_seq("queue")).unwrap(), 4);
    assert_eq!(store.write(|tx| tx.next_seq("audit")).unwrap(), 2);
}

fn seq_keys_make_a_fifo_queue(site: &Site) {
    assert_eq!(seq_key(7), "00000000000000000007");
    assert_eq!(seq_key(u64::MAX).len(), SEQ_KEY_WIDTH);
    let store = site.open();
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

fn shared_across_threads(site: &Site) {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MetaStore>();

    let store = Arc::new(site.open());
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
fn group_commit_batches_writers_and_isolates_failures(site: &Site) {
    const THREADS: u64 = 8;
    const WRITES: u64 = 25;
    let store = Arc::new(site.open());
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
    if site.is_redb() {
        assert!(
            commits < THREADS * WRITES,
            "{commits} commits for {} writes: no batching happened",
            THREADS * WRITES
        );
    } else {
        // PostgreSQL commits each accepted write on its own, and nothing for a refused one.
        assert_eq!(commits, expected.len() as u64);
    }
    // Durable: everything is there after a reopen.
    drop(items);
    let store = Arc::try_unwrap(store).ok().unwrap();
    drop(store);
    let store = site.open();
    assert_eq!(
        store.read(|tx| tx.count::<QueueItem>()).unwrap(),
        expected.len() as u64
    );
}

/// A panic inside a write closure neither commits its writes nor blocks later writers.
fn panicking_writer_leaves_nothing_and_blocks_nobody(site: &Site) {
    let store = site.open();
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
fn pending_writes_are_visible_to_scans(site: &Site) {
    let store = site.open();
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

/// Tests of what only the PostgreSQL backend has: several processes on one database,
/// schema migrations, a server that goes away.
mod postgres_only {
    use super::*;
    use crate::pg::SCHEMA_VERSION;
    use crate::pg_cluster::{database, execute, query_text};

    fn key(dir: &Path) -> SealingKey {
        key_in(dir)
    }

    /// A counter every writer increments by reading and rewriting it: lost updates show.
    #[derive(Serialize, Deserialize)]
    struct Counter {
        n: u64,
    }

    impl Record for Counter {
        const TABLE: &'static str = "test_counter";
        fn key(&self) -> String {
            "c".into()
        }
    }

    /// Two stores on one database (two replicas) writing at once: sequence numbers stay
    /// unique and gapless, and no read-modify-write is lost.
    #[test]
    fn two_stores_on_one_database_write_one_at_a_time() {
        let Some(url) = database("two_stores_on_one_database_write_one_at_a_time") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let stores = [
            Arc::new(MetaStore::connect_postgres(&url, None, key(dir.path())).unwrap()),
            Arc::new(MetaStore::connect_postgres(&url, None, key(dir.path())).unwrap()),
        ];
        const THREADS: usize = 6;
        const WRITES: u64 = 20;
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = Arc::clone(&stores[t % 2]);
                std::thread::spawn(move || {
                    for i in 0..WRITES {
                        store
                            .write(|tx| {
                                let seq = tx.next_seq("queue")?;
                                tx.put(&QueueItem {
                                    seq,
                                    what: format!("{t}/{i}"),
                                })?;
                                let n = tx.get::<Counter>("c")?.map_or(0, |c| c.n);
                                tx.put(&Counter { n: n + 1 })
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let total = THREADS as u64 * WRITES;
        let (items, counter) = stores[1]
            .read(|tx| Ok::<_, StoreError>((tx.list::<QueueItem>()?, tx.get::<Counter>("c")?)))
            .unwrap();
        assert_eq!(
            items.iter().map(|i| i.seq).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>()
        );
        assert_eq!(counter.map(|c| c.n), Some(total));
    }

    /// The platform calls the store from its tokio runtime's threads and may drop it
    /// there: neither may panic (a nested runtime would).
    #[test]
    fn usable_and_droppable_inside_a_tokio_runtime() {
        let Some(url) = database("usable_and_droppable_inside_a_tokio_runtime") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = runtime.block_on(async {
            let store = MetaStore::connect_postgres(&url, None, key(dir.path())).unwrap();
            store.write(|tx| tx.put(&user("alice"))).unwrap();
            let got = store.read(|tx| tx.get::<User>("alice")).unwrap();
            drop(store);
            got
        });
        assert_eq!(got, Some(user("alice")));
    }

    /// Replicas starting together on an empty database migrate it once, and all open.
    #[test]
    fn concurrent_first_starts_migrate_once() {
        let Some(url) = database("concurrent_first_starts_migrate_once") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let (url, key) = (url.clone(), key(dir.path()));
                std::thread::spawn(move || MetaStore::connect_postgres(&url, None, key).map(drop))
            })
            .collect();
        for s in starts {
            s.join().unwrap().unwrap();
        }
        let versions = query_text(
            &url,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM cella_schema_version",
        )
        .unwrap();
        let expected: Vec<String> = (1..=SCHEMA_VERSION).map(|v| v.to_string()).collect();
        assert_eq!(versions, expected.join(","));
    }

    /// A database migrated by a newer Cella is refused, named, and left untouched.
    #[test]
    fn a_newer_schema_is_refused() {
        let Some(url) = database("a_newer_schema_is_refused") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::connect_postgres(&url, None, key(dir.path())).unwrap();
        store.write(|tx| tx.put(&user("alice"))).unwrap();
        drop(store);
        let newer = SCHEMA_VERSION + 1;
        execute(
            &url,
            &format!("INSERT INTO cella_schema_version (version) VALUES ({newer})"),
        )
        .unwrap();
        match MetaStore::connect_postgres(&url, None, key(dir.path())) {
            Err(e @ StoreError::SchemaTooNew { found, known, .. }) => {
                assert_eq!((found, known), (newer, SCHEMA_VERSION));
                let text = e.to_string();
                assert!(text.contains(&format!("schema version {newer}")), "{text}");
                assert!(text.contains("newer Cella"), "{text}");
                assert!(text.contains("postgres://postgres@127.0.0.1"), "{text}");
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        let rows = query_text(
            &url,
            "SELECT count(*) FROM cella_records WHERE tbl = 'users'",
        );
        assert_eq!(rows.unwrap(), "1");
    }

    #[test]
    fn an_unreachable_server_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("postgres://cella@127.0.0.1:{port}/cella");
        match MetaStore::connect_postgres(&url, Some(b"secret-pw"), key(dir.path())) {
            Err(e) => {
                assert!(e.is_unavailable(), "{e:?}");
                let text = error_chain(&e);
                assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
                assert!(!text.contains("secret-pw"), "the password leaked: {text}");
            }
            Ok(_) => panic!("connected to a closed port"),
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = "postgres://u:secret-pw@127.0.0.1:5432/db";
        match MetaStore::connect_postgres(url, None, key(dir.path())) {
            Err(e @ StoreError::PasswordInUrl { .. }) => {
                let text = e.to_string();
                assert!(text.contains("postgres://u@127.0.0.1:5432/db"), "{text}");
                assert!(!text.contains("secret-pw"), "{text}");
            }
            other => panic!("expected PasswordInUrl, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = "postgres://u:secret-pw@127.0.0.1:notaport/db";
        match MetaStore::connect_postgres(url, None, key(dir.path())) {
            Err(e @ StoreError::InvalidUrl { .. }) => {
                assert!(!e.is_unavailable());
                assert!(!error_chain(&e).contains("secret-pw"), "{e}");
            }
            other => panic!("expected InvalidUrl, got {other:?}"),
        }
    }

    /// Connections killed by the server: the next calls fail as unavailable (never as
    /// another error) or reconnect; nothing committed is lost.
    #[test]
    fn lost_connections_are_unavailable_then_reconnected() {
        let Some(url) = database("lost_connections_are_unavailable_then_reconnected") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::connect_postgres(&url, None, key(dir.path())).unwrap();
        store.write(|tx| tx.put(&user("alice"))).unwrap();
        execute(
            &url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .unwrap();
        let mut unavailable = 0;
        let mut wrote = false;
        for _ in 0..3 {
            match store.write(|tx| tx.put(&user("bob"))) {
                Ok(()) => {
                    wrote = true;
                    break;
                }
                Err(e) => {
                    assert!(e.is_unavailable(), "{e:?}");
                    assert!(store.write_failure().is_some());
                    unavailable += 1;
                }
            }
        }
        assert!(wrote, "no reconnect after {unavailable} failures");
        assert_eq!(store.write_failure(), None);
        let users = store.read(|tx| tx.list::<User>()).unwrap();
        assert_eq!(names(&users), ["alice", "bob"]);
    }
}
