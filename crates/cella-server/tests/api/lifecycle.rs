//! Cancellation in every state, restarts, lost workers.

use std::collections::HashMap;
use std::time::Duration;

use cella_client::proto::TaskStatus;
use tonic::Code;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_every_non_terminal_state() {
    let node = TestNode::start_with(|c| c.workers = 1).await;
    let admin = node.admin().await;
    let fo = node
        .user(&admin, "fo", &["function_owner", "data_owner"])
        .await;
    let other = node.user(&admin, "other", &["data_owner"]).await;
    let block = fo
        .register_function(spec("block", "wasm", &["in"], &["out"]), b"block".to_vec())
        .await
        .unwrap();
    let echo = fo
        .register_function(spec("echo", "builtin", &["in"], &["out"]), b"echo".to_vec())
        .await
        .unwrap();

    // Created.
    let t = fo
        .create_task(
            &echo.function_id,
            HashMap::new(),
            vec![slot("in", &["fo"])],
            vec![slot("out", &["fo"])],
        )
        .await
        .unwrap();
    assert_eq!(
        code(other.cancel_task(&t.task_id).await.unwrap_err()),
        Code::PermissionDenied
    );
    let c = fo.cancel_task(&t.task_id).await.unwrap();
    assert_eq!(status(&c), TaskStatus::Canceled);
    assert_eq!(c.reason, "canceled by fo");
    // Terminal: a second cancel is refused, not repeated.
    assert_eq!(
        code(fo.cancel_task(&t.task_id).await.unwrap_err()),
        Code::FailedPrecondition
    );

    // DataAssigned.
    let t = fo
        .create_task(
            &echo.function_id,
            HashMap::new(),
            vec![slot("in", &["fo"])],
            vec![slot("out", &["fo"])],
        )
        .await
        .unwrap();
    let input = upload(&fo, b"x").await;
    let (out, _) = output(&fo).await;
    let t = fo
        .assign_data(
            &t.task_id,
            vec![file("in", &input)],
            vec![file("out", &out)],
        )
        .await
        .unwrap();
    assert_eq!(status(&t), TaskStatus::DataAssigned);
    assert_eq!(
        status(&fo.cancel_task(&t.task_id).await.unwrap()),
        TaskStatus::Canceled
    );

    // Approved.
    let (approved, _, _) = approved_task(&echo.function_id, &fo, "fo").await;
    assert_eq!(
        status(&fo.cancel_task(&approved).await.unwrap()),
        TaskStatus::Canceled
    );
    assert_eq!(
        code(fo.invoke_task(&approved).await.unwrap_err()),
        Code::FailedPrecondition
    );

    // Running: the only worker is held by a blocking function...
    let (running, _, _) = approved_task(&block.function_id, &fo, "fo").await;
    fo.invoke_task(&running).await.unwrap();
    wait_for(&fo, &running, TaskStatus::Running).await;
    // ...so the next task stays Staged, and is canceled there.
    let (staged, staged_out, _) = approved_task(&echo.function_id, &fo, "fo").await;
    fo.invoke_task(&staged).await.unwrap();
    let s = fo.get_task(&staged).await.unwrap();
    assert_eq!(status(&s), TaskStatus::Staged);
    assert_eq!(
        status(&fo.cancel_task(&staged).await.unwrap()),
        TaskStatus::Canceled
    );

    let started = std::time::Instant::now();
    assert_eq!(
        status(&fo.cancel_task(&running).await.unwrap()),
        TaskStatus::Canceled
    );
    // The worker is free again within a second: a new task runs to the end.
    let (next, _, _) = approved_task(&echo.function_id, &fo, "fo").await;
    fo.invoke_task(&next).await.unwrap();
    let done = wait(&fo, &next).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "worker was not freed by the cancel"
    );
    // The canceled tasks stay canceled and wrote nothing.
    assert_eq!(
        status(&fo.get_task(&staged).await.unwrap()),
        TaskStatus::Canceled
    );
    assert!(
        fo.get_file(&staged_out)
            .await
            .unwrap()
            .ciphertext_digest
            .is_empty()
    );
    assert_eq!(node.running().platform().health().unwrap().running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_flow_keeps_everything() {
    let mut node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node
        .user(&admin, "fo", &["function_owner", "data_owner"])
        .await;
    let token = fo.token().unwrap().to_owned();
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
    let input = upload(&fo, b"kept across restarts").await;
    let (out, key) = output(&fo).await;
    let cert = node.running().cert_pem().to_owned();

    node.restart(false).await;
    // A new TLS key and RA-TLS certificate (issued at every start); same session, same
    // state.
    assert_ne!(node.running().cert_pem(), cert);
    let fo = node.client().await.with_token(&token).unwrap();
    assert_eq!(
        fo.get_function(&f.function_id, false)
            .await
            .unwrap()
            .name_or_default(),
        "echo"
    );
    let t = fo
        .assign_data(
            &t.task_id,
            vec![file("in", &input)],
            vec![file("out", &out)],
        )
        .await
        .unwrap();
    fo.approve_task(&t.task_id, &t.task_digest).await.unwrap();

    node.restart(false).await;
    let fo = node.client().await.with_token(&token).unwrap();
    fo.invoke_task(&t.task_id).await.unwrap();
    let done = wait(&fo, &t.task_id).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    node.restart(false).await;
    let fo = node.client().await.with_token(&token).unwrap();
    let done = fo.get_task(&t.task_id).await.unwrap();
    assert_eq!(status(&done), TaskStatus::Finished);
    assert_eq!(done.result.unwrap().return_value, b"hi");
    assert_eq!(fetch(&fo, &out, &key).await, b"");
    // The admin password file was written once and is private.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node.config.node.admin_password_path())
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

trait NameOrDefault {
    fn name_or_default(&self) -> String;
}

impl NameOrDefault for cella_client::proto::FunctionInfo {
    fn name_or_default(&self) -> String {
        self.spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_running_when_the_node_dies_is_retried_once() {
    let mut node = TestNode::start().await;
    let fo = node.owner("fo").await;
    let token = fo.token().unwrap().to_owned();
    let block = fo
        .register_function(spec("block", "wasm", &["in"], &["out"]), b"block".to_vec())
        .await
        .unwrap();

    // Dies once while running, then finishes on the retry.
    let (t, out, key) = approved_task(&block.function_id, &fo, "fo").await;
    fo.invoke_task(&t).await.unwrap();
    wait_for(&fo, &t, TaskStatus::Running).await;
    node.restart(true).await;
    let fo = node.client().await.with_token(&token).unwrap();
    let done = wait(&fo, &t).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    assert_eq!(done.attempts, 2);
    assert_eq!(fetch(&fo, &out, &key).await, b"done");

    // Dies twice: fails with a reason, and is not run a third time.
    node.restart(false).await;
    let fo = node.client().await.with_token(&token).unwrap();
    let (t, _, _) = approved_task(&block.function_id, &fo, "fo").await;
    fo.invoke_task(&t).await.unwrap();
    wait_for(&fo, &t, TaskStatus::Running).await;
    node.restart(false).await;
    let fo = node.client().await.with_token(&token).unwrap();
    let again = wait_for(&fo, &t, TaskStatus::Running).await;
    assert_eq!(again.attempts, 2);
    node.restart(true).await;
    let fo = node.client().await.with_token(&token).unwrap();
    let done = wait(&fo, &t).await;
    assert_eq!(status(&done), TaskStatus::Failed);
    assert!(
        done.reason
            .contains("node stopped while the task was running"),
        "{}",
        done.reason
    );
    assert!(
        done.reason.contains("gave up after 2 attempts"),
        "{}",
        done.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_worker_is_retried_once_then_fails() {
    let node = TestNode::start().await;
    let fo = node.owner("fo").await;
    let f = fo
        .register_function(spec("panic", "wasm", &["in"], &["out"]), b"panic".to_vec())
        .await
        .unwrap();
    let (t, _, _) = approved_task(&f.function_id, &fo, "fo").await;
    fo.invoke_task(&t).await.unwrap();
    let done = wait(&fo, &t).await;
    assert_eq!(status(&done), TaskStatus::Failed);
    assert_eq!(done.attempts, 2);
    assert!(done.reason.contains("worker crashed"), "{}", done.reason);
    // The node is still healthy and runs other tasks.
    let echo = fo
        .register_function(spec("echo", "builtin", &["in"], &["out"]), b"echo".to_vec())
        .await
        .unwrap();
    let (ok, _, _) = approved_task(&echo.function_id, &fo, "fo").await;
    fo.invoke_task(&ok).await.unwrap();
    assert_eq!(status(&wait(&fo, &ok).await), TaskStatus::Finished);
}
