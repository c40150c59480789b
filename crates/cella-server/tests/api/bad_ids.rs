//! Ids, digests and user names are parsed at the API edge: a malformed one is refused
//! with INVALID_ARGUMENT naming the field and what is wrong with the value, by every
//! method of every service, and the refused request changes nothing.

use std::collections::HashMap;

use cella_client::{Client, ClientError, UploadSource};
use tonic::Code;

use crate::support::*;

/// A well-formed id of the wrong kind for every id field below.
const WRONG_KIND: &str = "function-0b5bd5fe-2a0d-4a8e-9d59-3b1b7d1c1a6e";

/// Asserts an INVALID_ARGUMENT whose message names `field` and says `problem`.
#[track_caller]
fn refused<T>(r: Result<T, ClientError>, field: &str, problem: &str) {
    let Err(e) = r else {
        panic!("a malformed {field} was accepted");
    };
    let ClientError::Status { code, message, .. } = &e else {
        panic!("not a status error: {e}");
    };
    assert_eq!(*code, Code::InvalidArgument, "{message}");
    assert!(message.starts_with(&format!("{field}: ")), "{message}");
    assert!(message.contains(problem), "{message}");
}

/// What a refused request must leave as it was: the caller's task, files, functions,
/// and the node's users.
async fn state(owner: &Client, admin: &Client, task: &str) -> String {
    let t = owner.get_task(task).await.unwrap();
    let tasks = owner.list_tasks().await.unwrap().len();
    let mut files: Vec<_> = owner
        .list_files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.file_id, f.written_by_task))
        .collect();
    files.sort();
    let functions: Vec<_> = owner
        .list_functions(true)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.function_id, f.disabled, f.usage, f.updated_at_ms))
        .collect();
    let users: Vec<_> = admin
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    format!(
        "{:?} {:?} {:?} {:?} {tasks} {files:?} {functions:?} {users:?}",
        t.status, t.inputs, t.outputs, t.approved_by
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_are_refused_at_the_edge_naming_the_field() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let o = node
        .user(&admin, "o", &["function_owner", "data_owner"])
        .await;
    let f = o
        .register_function(spec("echo", "builtin", &["in"], &["out"]), b"echo".to_vec())
        .await
        .unwrap();
    let t = o
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("in", &["o"])],
            vec![slot("out", &["o"])],
        )
        .await
        .unwrap();
    let task = t.task_id.clone();
    let input = upload(&o, b"data").await;
    let (out, _) = output(&o).await;
    let before = state(&o, &admin, &task).await;

    // Auth: user names.
    refused(
        admin
            .register_user("not a name", PASSWORD, &["data_owner".to_string()])
            .await,
        "user",
        "invalid user name \"not a name\"",
    );
    refused(
        admin
            .change_password(Some("not a name"), "", "a brand new password")
            .await,
        "user",
        "invalid user name",
    );
    // A login name that is no user name is refused like an unknown user, saying nothing
    // about names.
    let mut anon = node.client().await;
    let e = anon.login("not a name", PASSWORD).await.unwrap_err();
    assert_eq!(code(&e), Code::Unauthenticated);
    assert!(e.to_string().contains("wrong user name or password"), "{e}");

    // Functions.
    let bad_function = "invalid function id \"task-1\"";
    refused(
        o.get_function("task-1", false).await,
        "function_id",
        bad_function,
    );
    refused(
        o.update_function("task-1", f.spec.clone().unwrap(), None)
            .await,
        "function_id",
        bad_function,
    );
    refused(
        o.disable_function("task-1").await,
        "function_id",
        bad_function,
    );
    refused(
        o.delete_function("task-1").await,
        "function_id",
        bad_function,
    );

    // Files: ids and ciphertext digests.
    let bad_file = "invalid file id \"task-1\": expected input-<uuid> or output-<uuid>";
    refused(o.get_file("task-1").await, "file_id", bad_file);
    refused(o.delete_file("task-1").await, "file_id", bad_file);
    let mut sink = Vec::new();
    refused(
        o.download_file("task-1", &mut sink, None).await,
        "file_id",
        bad_file,
    );
    assert!(sink.is_empty());
    let (ct, key, _) = seal(b"more");
    refused(
        o.upload_input(
            UploadSource::reader(std::io::Cursor::new(ct)),
            crypto(&key),
            "not hex",
            None,
        )
        .await,
        "ciphertext_digest",
        "invalid SHA-256 digest \"not hex\"",
    );
    refused(
        o.register_input_url("file:///nowhere", crypto(&key), "00")
            .await,
        "ciphertext_digest",
        "invalid SHA-256 digest \"00\"",
    );

    // Tasks: ids, file ids of the slot's kind, owners, digests.
    let bad_task = format!("invalid task id \"{WRONG_KIND}\"");
    refused(o.get_task(WRONG_KIND).await, "task_id", &bad_task);
    refused(o.invoke_task(WRONG_KIND).await, "task_id", &bad_task);
    refused(o.cancel_task(WRONG_KIND).await, "task_id", &bad_task);
    refused(o.watch_task(WRONG_KIND).await, "task_id", &bad_task);
    let audit = cella_client::proto::ListAuditEntriesRequest {
        task_id: WRONG_KIND.into(),
        ..Default::default()
    };
    refused(o.list_audit_entries_page(audit).await, "task_id", &bad_task);
    refused(
        o.approve_task(WRONG_KIND, &t.task_digest).await,
        "task_id",
        &bad_task,
    );
    refused(
        o.approve_task(&task, "not a digest").await,
        "task_digest",
        "invalid SHA-256 digest",
    );
    refused(
        o.assign_data(WRONG_KIND, vec![file("in", &input)], vec![])
            .await,
        "task_id",
        &bad_task,
    );
    // An output's id where an input's belongs, and the other way round: all or nothing.
    refused(
        o.assign_data(&task, vec![file("in", &out)], vec![file("out", &out)])
            .await,
        "inputs[\"in\"].file_id",
        "invalid input id",
    );
    refused(
        o.assign_data(&task, vec![file("in", &input)], vec![file("out", &input)])
            .await,
        "outputs[\"out\"].file_id",
        "invalid output id",
    );
    refused(
        o.create_task(
            WRONG_KIND.replace("function", "task").as_str(),
            HashMap::new(),
            vec![slot("in", &["o"])],
            vec![slot("out", &["o"])],
        )
        .await,
        "function_id",
        "invalid function id",
    );
    refused(
        o.create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("in", &["o"])],
            vec![slot("out", &["not a name"])],
        )
        .await,
        "outputs[\"out\"].owners",
        "invalid user name",
    );

    assert_eq!(state(&o, &admin, &task).await, before);
    // The same requests with good values go through.
    o.assign_data(&task, vec![file("in", &input)], vec![file("out", &out)])
        .await
        .unwrap();
}
