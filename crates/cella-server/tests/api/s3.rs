//! A node whose blobs are in a real S3-compatible server (s3s-fs, see
//! `cella_store::blob::test_s3`): a task runs end to end, and a store that goes away
//! answers UNAVAILABLE.

use std::collections::HashMap;

use cella_client::UploadSource;
use cella_client::proto::TaskStatus;
use cella_store::BlobLocation;
use cella_store::blob::test_s3::{BUCKET, S3TestServer};

use crate::support::*;

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_with_its_blobs_in_s3() {
    let Some(mut server) = S3TestServer::start() else {
        return;
    };
    let config = server.config("node/blobs");
    let node = TestNode::start_with(|n| n.blobs = BlobLocation::S3(config)).await;
    let owner = node.owner("bank").await;

    let mut s = spec("psi", "builtin", &["input_a", "input_b"], &["out"]);
    s.arguments.clear();
    let f = owner
        .register_function(s, b"ordered_set_intersect".to_vec())
        .await
        .unwrap();
    let in_a = upload(&owner, b"alice\nbob\ncarol\n").await;
    let in_b = upload(&owner, b"carol\ndave\nalice\n").await;
    let (out, key) = output(&owner).await;
    let t = owner
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("input_a", &["bank"]), slot("input_b", &["bank"])],
            vec![slot("out", &["bank"])],
        )
        .await
        .unwrap();
    let t = owner
        .assign_data(
            &t.task_id,
            vec![file("input_a", &in_a), file("input_b", &in_b)],
            vec![file("out", &out)],
        )
        .await
        .unwrap();
    owner
        .approve_task(&t.task_id, &t.task_digest)
        .await
        .unwrap();
    owner.invoke_task(&t.task_id).await.unwrap();
    let done = wait(&owner, &t.task_id).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    assert_eq!(fetch(&owner, &out, &key).await, b"alice\ncarol\n");

    // The ciphertexts are objects in the bucket, and none is on the node's disk.
    let bucket = server.root().join(BUCKET).join("node/blobs");
    let objects = files_under(&bucket);
    for (dir, id) in [("inputs", &in_a), ("inputs", &in_b)] {
        assert!(
            objects.contains(&bucket.join(dir).join(id)),
            "{dir}/{id} not in {objects:?}"
        );
    }
    assert!(
        objects
            .iter()
            .any(|p| p.starts_with(bucket.join("outputs"))),
        "{objects:?}"
    );
    assert_eq!(
        objects
            .iter()
            .filter(|p| p.starts_with(bucket.join("payloads")))
            .count(),
        1
    );
    let local = files_under(&node.config.node.blob_dir());
    assert!(local.is_empty(), "blobs on the node's disk: {local:?}");

    // The object store goes away: uploads and downloads are UNAVAILABLE (try again
    // later), not INTERNAL, and the failed upload registers nothing.
    server.stop();
    let before = owner.list_files().await.unwrap().len();
    let (ct, k, digest) = seal(b"late");
    let e = owner
        .upload_input(
            UploadSource::reader(std::io::Cursor::new(ct)),
            crypto(&k),
            &digest,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::Unavailable, "{e}");
    assert!(e.to_string().contains("blob store"), "{e}");
    let mut sink = Vec::new();
    let e = owner
        .download_file(&out, &mut sink, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), tonic::Code::Unavailable, "{e}");
    assert_eq!(owner.list_files().await.unwrap().len(), before);
}
