//! The module cache: hits in memory, across a restart on the same directory, and no
//! trust in a file that does not authenticate.

use std::sync::Arc;

use cella_crypto::SealingKey;
use cella_executor::Executor;
use cella_types::Digest;

use super::*;
use crate::tests::{example, io, task};
use crate::{WasmConfig, WasmExecutor};

fn on_disk(dir: &std::path::Path, key: &Arc<SealingKey>) -> WasmExecutor {
    WasmExecutor::new(WasmConfig {
        max_concurrent_runs: 2,
        ..WasmConfig::with_disk_cache(dir, Arc::clone(key))
    })
    .unwrap()
}

async fn run_echo(exec: &WasmExecutor, payload: &[u8]) -> Vec<String> {
    let mut io = io(&[], &[], 1);
    exec.execute(&task(payload, &[("k", "v")]), &mut io)
        .await
        .unwrap()
        .log
}

#[tokio::test]
async fn the_second_task_and_a_restart_use_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SealingKey::generate());
    let echo = example("echo");

    let first = on_disk(dir.path(), &key);
    first.validate_payload(&echo).unwrap();
    assert_eq!(first.compile_count(), 1);
    assert_eq!(run_echo(&first, &echo).await, ["--k=v"]);
    assert_eq!(run_echo(&first, &echo).await, ["--k=v"]);
    // Registering the same payload again is a hit too.
    first.validate_payload(&echo).unwrap();
    let stats = first.cache_stats();
    assert_eq!(stats.compiles, 1, "{stats:?}");
    assert_eq!(stats.memory_hits, 3, "{stats:?}");
    drop(first);

    // A restart: a new executor (new engine) on the same directory and key.
    let second = on_disk(dir.path(), &key);
    assert_eq!(run_echo(&second, &echo).await, ["--k=v"]);
    assert_eq!(run_echo(&second, &echo).await, ["--k=v"]);
    let stats = second.cache_stats();
    assert_eq!(
        stats,
        CacheStats {
            compiles: 0,
            memory_hits: 1,
            disk_hits: 1,
            disk_rejected: 0
        }
    );
}

#[tokio::test]
async fn a_tampered_cache_file_is_not_deserialised() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SealingKey::generate());
    let echo = example("echo");
    let digest = Digest::of(&echo);

    let writer = on_disk(dir.path(), &key);
    writer.validate_payload(&echo).unwrap();
    let file = writer.cache().disk().unwrap().file_of(&digest);
    drop(writer);

    // One flipped bit in the middle of the sealed machine code.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let reader = on_disk(dir.path(), &key);
    assert_eq!(run_echo(&reader, &echo).await, ["--k=v"]);
    let stats = reader.cache_stats();
    assert_eq!(stats.disk_rejected, 1, "{stats:?}");
    assert_eq!(stats.disk_hits, 0, "{stats:?}");
    assert_eq!(stats.compiles, 1, "recompiled instead: {stats:?}");
    drop(reader);

    // The recompiled module replaced the tampered file.
    let again = on_disk(dir.path(), &key);
    again.validate_payload(&echo).unwrap();
    assert_eq!(again.cache_stats().disk_hits, 1);
    assert_eq!(again.compile_count(), 0);
}

#[test]
fn a_file_sealed_for_another_digest_or_under_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SealingKey::generate());
    let echo = example("echo");
    let copy = example("copy");

    let writer = on_disk(dir.path(), &key);
    writer.validate_payload(&echo).unwrap();
    let disk = writer.cache().disk().unwrap();
    let echo_file = disk.file_of(&Digest::of(&echo));
    let copy_file = disk.file_of(&Digest::of(&copy));
    drop(writer);

    // echo's authentic file under copy's name: the associated data names the digest.
    std::fs::copy(&echo_file, &copy_file).unwrap();
    let reader = on_disk(dir.path(), &key);
    reader.validate_payload(&copy).unwrap();
    let stats = reader.cache_stats();
    assert_eq!((stats.disk_rejected, stats.compiles), (1, 1), "{stats:?}");
    drop(reader);

    // Another node's key.
    let stranger = on_disk(dir.path(), &Arc::new(SealingKey::generate()));
    stranger.validate_payload(&echo).unwrap();
    let stats = stranger.cache_stats();
    assert_eq!((stats.disk_rejected, stats.compiles), (1, 1), "{stats:?}");

    // Garbage that is not even a sealed value.
    std::fs::write(&echo_file, b"not sealed").unwrap();
    let third = on_disk(dir.path(), &Arc::new(SealingKey::generate()));
    third.validate_payload(&echo).unwrap();
    assert_eq!(third.cache_stats().disk_rejected, 1);
}

#[test]
fn memory_cache_is_bounded_by_entries_and_bytes() {
    let exec = WasmExecutor::new(WasmConfig {
        memory_cache_entries: 2,
        max_concurrent_runs: 1,
        ..WasmConfig::default()
    })
    .unwrap();
    let modules = [example("echo"), example("copy"), example("psi")];
    for m in &modules {
        exec.validate_payload(m).unwrap();
    }
    assert_eq!(exec.cache().lock().len(), 2);
    // echo was evicted first; psi and copy are still there.
    exec.validate_payload(&modules[2]).unwrap();
    exec.validate_payload(&modules[1]).unwrap();
    assert_eq!(exec.compile_count(), 3);
    exec.validate_payload(&modules[0]).unwrap();
    assert_eq!(exec.compile_count(), 4);

    let mut lru = Lru::new(10, 100);
    let entry = |len| {
        let p = exec
            .prepare(&Digest::of(&modules[0]), &modules[0], true)
            .unwrap();
        Arc::new(Prepared {
            pre: p.pre.clone(),
            payload_len: len,
        })
    };
    lru.insert(Digest::of(b"a"), entry(60));
    lru.insert(Digest::of(b"b"), entry(60));
    assert_eq!(lru.len(), 1, "over the byte bound, the older entry goes");
    assert!(lru.get(&Digest::of(b"b")).is_some());
    lru.insert(Digest::of(b"c"), entry(500));
    assert_eq!(lru.len(), 1, "a lone entry over the bound is still kept");
}
