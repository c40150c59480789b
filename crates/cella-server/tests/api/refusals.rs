//! Every refusal names what was wrong and leaves the state as it was.

use std::collections::HashMap;
use std::time::Duration;

use cella_client::proto::{self, TaskStatus};
use tonic::Code;

use crate::support::*;

/// The parts of a task a refused request must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    status: i32,
    digest: String,
    approved_by: Vec<String>,
    inputs: Vec<(String, String)>,
    outputs: Vec<(String, String)>,
}

fn snapshot(t: &proto::TaskInfo) -> Snapshot {
    let files = |slots: &[proto::TaskSlot]| {
        slots
            .iter()
            .map(|s| (s.slot.clone(), s.file_id.clone()))
            .collect()
    };
    Snapshot {
        status: t.status,
        digest: t.task_digest.clone(),
        approved_by: t.approved_by.clone(),
        inputs: files(&t.inputs),
        outputs: files(&t.outputs),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_change_nothing() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node.user(&admin, "fo", &["function_owner"]).await;
    let a = node.user(&admin, "a", &["data_owner"]).await;
    let b = node.user(&admin, "b", &["data_owner"]).await;
    let mallory = node
        .user(&admin, "mallory", &["data_owner", "function_owner"])
        .await;

    let mut s = spec("psi", "builtin", &["in_a", "in_b"], &["out_a", "out_b"]);
    s.public = false;
    s.allowed_users = vec![];
    let f = fo
        .register_function(s, b"ordered_set_intersect".to_vec())
        .await
        .unwrap();
    let t = fo
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("in_a", &["a"]), slot("in_b", &["b"])],
            vec![slot("out_a", &["a"]), slot("out_b", &["b"])],
        )
        .await
        .unwrap();
    let id = t.task_id.clone();
    let in_a = upload(&a, b"x\ny\n").await;
    let in_b = upload(&b, b"y\nz\n").await;
    let in_m = upload(&mallory, b"y\n").await;
    let (out_a, _) = output(&a).await;
    let (out_b, key_b) = output(&b).await;

    // Assignment by a non-owner of the slot, and of a file the caller does not own.
    let before = snapshot(&fo.get_task(&id).await.unwrap());
    let e = mallory
        .assign_data(&id, vec![file("in_a", &in_m)], vec![])
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::PermissionDenied);
    let e = a
        .assign_data(&id, vec![file("in_a", &in_b)], vec![])
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::PermissionDenied);
    // All-or-nothing: a good slot with a bad one assigns neither.
    let e = a
        .assign_data(&id, vec![file("in_a", &in_a), file("nope", &in_a)], vec![])
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::InvalidArgument);
    assert_eq!(snapshot(&fo.get_task(&id).await.unwrap()), before);

    a.assign_data(&id, vec![file("in_a", &in_a)], vec![file("out_a", &out_a)])
        .await
        .unwrap();
    // Double assignment.
    let before = snapshot(&fo.get_task(&id).await.unwrap());
    let in_a2 = upload(&a, b"other\n").await;
    let e = a
        .assign_data(&id, vec![file("in_a", &in_a2)], vec![])
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);
    assert!(
        e_msg(&a.assign_data(&id, vec![file("in_a", &in_a2)], vec![]).await)
            .contains("already assigned")
    );
    assert_eq!(snapshot(&fo.get_task(&id).await.unwrap()), before);

    // Approval before the data is complete.
    let e = a.approve_task(&id, &before.digest).await.unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);

    let t = b
        .assign_data(&id, vec![file("in_b", &in_b)], vec![file("out_b", &out_b)])
        .await
        .unwrap();
    assert_eq!(status(&t), TaskStatus::DataAssigned);

    // Invoke before all approvals.
    a.approve_task(&id, &t.task_digest).await.unwrap();
    let before = snapshot(&fo.get_task(&id).await.unwrap());
    let e = fo.invoke_task(&id).await.unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_eq!(snapshot(&fo.get_task(&id).await.unwrap()), before);

    // Approval of a stale digest.
    let stale = "00".repeat(32);
    let e = b.approve_task(&id, &stale).await.unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_eq!(snapshot(&fo.get_task(&id).await.unwrap()), before);
    // Approval by a non-participant.
    let e = mallory.approve_task(&id, &t.task_digest).await.unwrap_err();
    assert_eq!(code(e), Code::PermissionDenied);

    // A foreign user reading a task, a file, a function, a payload, an output.
    assert_eq!(
        code(mallory.get_task(&id).await.unwrap_err()),
        Code::PermissionDenied
    );
    assert_eq!(
        code(mallory.get_file(&in_a).await.unwrap_err()),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            mallory
                .get_function(&f.function_id, false)
                .await
                .unwrap_err()
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(a.get_function(&f.function_id, true).await.unwrap_err()),
        Code::PermissionDenied
    );
    let mut sink = Vec::new();
    assert_eq!(
        code(
            mallory
                .download_file(&out_b, &mut sink, None)
                .await
                .unwrap_err()
        ),
        Code::PermissionDenied
    );
    assert!(sink.is_empty());
    assert!(mallory.list_tasks().await.unwrap().is_empty());
    // Only the creator invokes; the owner sees its own payload.
    let got = fo.get_function(&f.function_id, true).await.unwrap();
    assert_eq!(got.payload, b"ordered_set_intersect");

    // The function changes under the approvals: they no longer count.
    b.approve_task(&id, &t.task_digest).await.unwrap();
    fo.approve_task(&id, &t.task_digest).await.unwrap();
    assert_eq!(
        code(a.invoke_task(&id).await.unwrap_err()),
        Code::PermissionDenied
    );
    let mut new_spec = got.spec.clone().unwrap();
    new_spec.description = "v2".into();
    fo.update_function(&f.function_id, new_spec, Some(b"echo".to_vec()))
        .await
        .unwrap();
    let changed = fo.get_task(&id).await.unwrap();
    assert_ne!(changed.task_digest, t.task_digest);
    assert!(changed.approved_by.is_empty());
    let e = fo.invoke_task(&id).await.unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);
    // Re-approving the new digest lets it run.
    for c in [&a, &b, &fo] {
        c.approve_task(&id, &changed.task_digest).await.unwrap();
    }
    fo.invoke_task(&id).await.unwrap();
    let done = wait(&fo, &id).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    // Echo writes nothing: every output is an empty (but sealed and authentic) file.
    assert_eq!(fetch(&b, &out_b, &key_b).await, b"");
}

fn e_msg<T: std::fmt::Debug>(r: &Result<T, cella_client::ClientError>) -> String {
    r.as_ref().unwrap_err().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_revoked_tokens() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    node.user(&admin, "u", &["data_owner"]).await;

    // A forged token.
    let forged = node.client().await.with_token("v1.AAAA.BBBB").unwrap();
    let e = forged.list_files().await.unwrap_err();
    assert_eq!(code(e), Code::Unauthenticated);
    // No token at all.
    let anon = node.client().await;
    assert!(anon.list_files().await.is_err());
    // A wrong password and an unknown user get the same answer.
    let mut c = node.client().await;
    let wrong = c
        .login("u", "not the password")
        .await
        .unwrap_err()
        .to_string();
    let unknown = c
        .login("nobody", "not the password")
        .await
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("wrong user name or password"), "{wrong}");
    assert_eq!(
        wrong.replace("\"u\"", ""),
        unknown.replace("\"nobody\"", "")
    );

    // Revoked: logout ends the session on the node, even for a copy of the token.
    let mut other = node.client().await;
    other.login("u", PASSWORD).await.unwrap();
    let copy = node
        .client()
        .await
        .with_token(other.token().unwrap())
        .unwrap();
    copy.list_files().await.unwrap();
    other.logout().await.unwrap();
    let e = copy.list_files().await.unwrap_err();
    assert_eq!(code(e), Code::Unauthenticated);
    assert!(e_msg(&copy.list_files().await).contains("revoked"));

    // A password change revokes every session of that user.
    let mut again = node.client().await;
    again.login("u", PASSWORD).await.unwrap();
    admin
        .change_password(Some("u"), "", "a brand new password")
        .await
        .unwrap();
    assert_eq!(
        code(again.list_files().await.unwrap_err()),
        Code::Unauthenticated
    );

    // Only admins manage users.
    let mut fresh = node.client().await;
    fresh.login("u", "a brand new password").await.unwrap();
    assert_eq!(
        code(fresh.list_users().await.unwrap_err()),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            fresh
                .register_user("x", PASSWORD, &["admin".to_string()])
                .await
                .unwrap_err()
        ),
        Code::PermissionDenied
    );
}

/// A session ends at its TTL. Nothing else runs on this node's short sessions, so a slow
/// machine (password hashing under load takes seconds) cannot make another check of the
/// test outlive the session it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_ttl() {
    let node = TestNode::start_with(|c| c.token_ttl = Duration::from_millis(1500)).await;
    let admin = node.admin().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let e = admin.list_files().await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated);
    assert!(e.to_string().contains("expired"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_mislabelled_inputs_fail_the_task() {
    let node = TestNode::start_with(|c| {
        let root = c.data_dir.parent().unwrap().join("imports");
        std::fs::create_dir_all(&root).unwrap();
        c.file_url_roots = vec![root];
    })
    .await;
    let root = node.config.node.file_url_roots[0].clone();
    let admin = node.admin().await;
    let fo = node
        .user(&admin, "fo", &["function_owner", "data_owner"])
        .await;
    let mut s = spec("echo", "builtin", &["in"], &["out"]);
    s.public = true;
    let f = fo.register_function(s, b"echo".to_vec()).await.unwrap();

    for case in ["tampered", "wrong digest"] {
        let (ct, key, digest) = seal(b"payload");
        let path = root.join(case.replace(' ', "_"));
        std::fs::write(&path, &ct).unwrap();
        let announced = if case == "wrong digest" {
            "ab".repeat(32)
        } else {
            digest
        };
        let url = format!("file://{}", path.display());
        let input = fo
            .register_input_url(&url, crypto(&key), &announced)
            .await
            .unwrap();
        if case == "tampered" {
            let mut bad = ct.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            std::fs::write(&path, &bad).unwrap();
        }
        let t = fo
            .create_task(
                &f.function_id,
                HashMap::new(),
                vec![slot("in", &["fo"])],
                vec![slot("out", &["fo"])],
            )
            .await
            .unwrap();
        let (out, _) = output(&fo).await;
        let t = fo
            .assign_data(
                &t.task_id,
                vec![file("in", &input.file_id)],
                vec![file("out", &out)],
            )
            .await
            .unwrap();
        fo.approve_task(&t.task_id, &t.task_digest).await.unwrap();
        fo.invoke_task(&t.task_id).await.unwrap();
        let done = wait(&fo, &t.task_id).await;
        assert_eq!(status(&done), TaskStatus::Failed, "{case}");
        assert!(
            done.reason.contains("ciphertext digest mismatch"),
            "{case}: {}",
            done.reason
        );
        // Nothing was written to the output.
        assert!(
            fo.get_file(&out)
                .await
                .unwrap()
                .ciphertext_digest
                .is_empty()
        );
    }

    // URLs outside the allowed roots are refused at registration.
    let (_, key, digest) = seal(b"x");
    let e = fo
        .register_input_url("file:///etc/passwd", crypto(&key), &digest)
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::PermissionDenied);
    // An upload whose bytes do not match the announced digest registers nothing.
    let (ct, key, _) = seal(b"y");
    let e = fo
        .upload_input(
            cella_client::UploadSource::reader(std::io::Cursor::new(ct)),
            crypto(&key),
            &"cd".repeat(32),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::InvalidArgument);
    assert_eq!(
        fo.list_files()
            .await
            .unwrap()
            .iter()
            .filter(|f| f.file_id.starts_with("input-"))
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_disabled_functions() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node
        .user(&admin, "fo", &["function_owner", "data_owner"])
        .await;
    let mut s = spec("echo", "builtin", &["in"], &["out"]);
    s.quota = Some(1);
    let f = fo.register_function(s, b"echo".to_vec()).await.unwrap();
    let (first, _, _) = approved_task(&f.function_id, &fo, "fo").await;
    let (second, _, _) = approved_task(&f.function_id, &fo, "fo").await;
    fo.invoke_task(&first).await.unwrap();
    let before = snapshot(&fo.get_task(&second).await.unwrap());
    let e = fo.invoke_task(&second).await.unwrap_err();
    assert_eq!(code(e), Code::ResourceExhausted);
    assert_eq!(snapshot(&fo.get_task(&second).await.unwrap()), before);
    assert_eq!(
        fo.get_function(&f.function_id, false).await.unwrap().usage,
        1
    );

    // A disabled function takes no new tasks.
    let g = fo
        .register_function(
            spec("echo2", "builtin", &["in"], &["out"]),
            b"echo".to_vec(),
        )
        .await
        .unwrap();
    fo.disable_function(&g.function_id).await.unwrap();
    let e = fo
        .create_task(
            &g.function_id,
            HashMap::new(),
            vec![slot("in", &["fo"])],
            vec![slot("out", &["fo"])],
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), Code::FailedPrecondition);
    // Registration refuses a builtin this node does not have, naming it.
    let e = fo
        .register_function(spec("x", "builtin", &[], &[]), b"rm -rf".to_vec())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument);
    assert!(e.to_string().contains("unknown builtin"), "{e}");
}

/// Deleting what an unfinished task uses is refused; once the task ended it works. An
/// output registered at a `file://` URL is written there, sealed, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_in_use_are_refused_and_url_outputs_are_written_once() {
    let node = TestNode::start_with(|c| {
        let root = c.data_dir.parent().unwrap().join("exports");
        std::fs::create_dir_all(&root).unwrap();
        c.file_url_roots = vec![root];
    })
    .await;
    let root = node.config.node.file_url_roots[0].clone();
    let admin = node.admin().await;
    let fo = node
        .user(&admin, "fo", &["function_owner", "data_owner"])
        .await;
    let f = fo
        .register_function(spec("echo", "builtin", &["in"], &["out"]), b"echo".to_vec())
        .await
        .unwrap();
    let t = fo
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("in", &["fo"])],
            vec![slot("out", &["fo"])],
        )
        .await
        .unwrap();
    let input = upload(&fo, b"data").await;
    let key = cella_crypto::FileKey::generate();
    let target = root.join("result.sealed");
    let url = format!("file://{}", target.display());
    let out = fo
        .register_output(crypto(&key), Some(&url))
        .await
        .unwrap()
        .file_id;
    let t = fo
        .assign_data(
            &t.task_id,
            vec![file("in", &input)],
            vec![file("out", &out)],
        )
        .await
        .unwrap();

    assert_eq!(
        code(fo.delete_function(&f.function_id).await.unwrap_err()),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(fo.delete_file(&input).await.unwrap_err()),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(fo.delete_file(&out).await.unwrap_err()),
        Code::FailedPrecondition
    );
    assert!(fo.get_file(&input).await.is_ok());

    fo.approve_task(&t.task_id, &t.task_digest).await.unwrap();
    fo.invoke_task(&t.task_id).await.unwrap();
    let done = wait(&fo, &t.task_id).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    let sealed = std::fs::read(&target).unwrap();
    assert_eq!(
        cella_crypto::stream::unseal_to_vec(&sealed, &key).unwrap(),
        b""
    );
    // The same place cannot be registered again: outputs are write-once.
    assert_eq!(
        code(
            fo.register_output(crypto(&key), Some(&url))
                .await
                .unwrap_err()
        ),
        Code::AlreadyExists
    );

    fo.delete_file(&input).await.unwrap();
    assert_eq!(code(fo.get_file(&input).await.unwrap_err()), Code::NotFound);
    fo.delete_function(&f.function_id).await.unwrap();
    assert_eq!(
        code(fo.get_function(&f.function_id, false).await.unwrap_err()),
        Code::NotFound
    );
}
