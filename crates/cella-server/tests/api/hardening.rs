//! Issue 10 and 11 refusals at the API: an output held by two tasks, specs the node
//! would register but never run, early approvals and a non-owner's update.

use std::collections::HashMap;
use std::sync::Arc;

use cella_client::proto::{self, TaskStatus};
use cella_executor::{ExecutionError, ExecutionOutcome, Executor, StagedTask, TaskIo};
use cella_types::ExecutorKind;
use tonic::Code;

use crate::support::*;

/// An echo task of `owner` with its input assigned and no output yet.
async fn echo_task(c: &cella_client::Client, function: &str) -> (String, String) {
    let t = c
        .create_task(
            function,
            HashMap::new(),
            vec![slot("in", &["fo"])],
            vec![slot("out", &["fo"])],
        )
        .await
        .unwrap();
    let input = upload(c, b"first result").await;
    (t.task_id, input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_goes_to_one_unfinished_task_and_a_finished_result_survives() {
    let node = TestNode::start().await;
    let fo = node.owner("fo").await;
    let echo = fo
        .register_function(spec("echo", "builtin", &["in"], &["out"]), b"echo".to_vec())
        .await
        .unwrap();
    let (out, key) = output(&fo).await;
    let (t1, in1) = echo_task(&fo, &echo.function_id).await;
    let (t2, in2) = echo_task(&fo, &echo.function_id).await;
    fo.assign_data(&t1, vec![file("in", &in1)], vec![file("out", &out)])
        .await
        .unwrap();
    // The same output for a second unfinished task is refused, naming the holder.
    let e = fo
        .assign_data(&t2, vec![file("in", &in2)], vec![file("out", &out)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::FailedPrecondition, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("assigned to unfinished {t1}")),
        "{e}"
    );
    // Refused as a whole: T2's input slot is still empty.
    let t2_now = fo.get_task(&t2).await.unwrap();
    assert!(
        t2_now.inputs.iter().all(|s| s.file_id.is_empty()),
        "{t2_now:?}"
    );

    // T1 runs and finishes; its output downloads (what echo wrote into it).
    let t = fo.get_task(&t1).await.unwrap();
    fo.approve_task(&t1, &t.task_digest).await.unwrap();
    fo.invoke_task(&t1).await.unwrap();
    assert_eq!(status(&wait(&fo, &t1).await), TaskStatus::Finished);
    let first = fetch(&fo, &out, &key).await;
    // Now written: still refused for T2, and T1's result is intact.
    let e = fo
        .assign_data(&t2, vec![], vec![file("out", &out)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already written"), "{e}");
    assert_eq!(fetch(&fo, &out, &key).await, first);

    // A reservation ends with its task: a canceled task's output can be reused.
    let (out2, _) = output(&fo).await;
    let (t3, in3) = echo_task(&fo, &echo.function_id).await;
    fo.assign_data(&t3, vec![file("in", &in3)], vec![file("out", &out2)])
        .await
        .unwrap();
    fo.cancel_task(&t3).await.unwrap();
    let t2_done = fo
        .assign_data(&t2, vec![file("in", &in2)], vec![file("out", &out2)])
        .await
        .unwrap();
    assert_eq!(status(&t2_done), TaskStatus::DataAssigned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_output_file_for_two_slots_of_a_task_is_refused() {
    let node = TestNode::start().await;
    let fo = node.owner("fo").await;
    let f = fo
        .register_function(spec("two", "wasm", &[], &["a", "b"]), b"ok".to_vec())
        .await
        .unwrap();
    let t = fo
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![],
            vec![slot("a", &["fo"]), slot("b", &["fo"])],
        )
        .await
        .unwrap();
    let (out, _) = output(&fo).await;
    let e = fo
        .assign_data(&t.task_id, vec![], vec![file("a", &out), file("b", &out)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::FailedPrecondition, "{e}");
    assert!(
        e.to_string().contains("already assigned to slot \"a\""),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_approval_says_who_must_still_assign_which_slot() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node.user(&admin, "fo", &["function_owner"]).await;
    let a = node.user(&admin, "bank-a", &["data_owner"]).await;
    node.user(&admin, "bank-b", &["data_owner"]).await;
    let f = fo
        .register_function(
            spec("psi", "builtin", &["in_a", "in_b"], &["out"]),
            b"ordered_set_intersect".to_vec(),
        )
        .await
        .unwrap();
    let t = fo
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("in_a", &["bank-a"]), slot("in_b", &["bank-b"])],
            vec![slot("out", &["bank-a", "bank-b"])],
        )
        .await
        .unwrap();
    let input = upload(&a, b"x").await;
    let t = a
        .assign_data(&t.task_id, vec![file("in_a", &input)], vec![])
        .await
        .unwrap();
    let e = a
        .approve_task(&t.task_id, &t.task_digest)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::FailedPrecondition, "{e}");
    assert!(
        e.to_string().contains(
            "still to assign: input slot \"in_b\" (by bank-b), output slot \"out\" (by bank-a or bank-b)"
        ),
        "{e}"
    );
}

/// A stand-in `libos` executor offering one runtime image.
struct OneRuntime;

#[async_trait::async_trait]
impl Executor for OneRuntime {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Libos
    }

    fn offered_runtimes(&self) -> Vec<String> {
        vec!["python3".into()]
    }

    async fn execute(
        &self,
        _task: &StagedTask,
        _io: &mut TaskIo,
    ) -> Result<ExecutionOutcome, ExecutionError> {
        Err(ExecutionError::function("not run in this test"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_what_the_node_does_not_offer() {
    let node = TestNode::start().await;
    let fo = node.owner("fo").await;
    let libos = |runtime: &str| proto::FunctionSpec {
        runtime: runtime.into(),
        ..spec("py", "libos", &["in"], &["out"])
    };
    // This node has no libos executor at all.
    let e = fo
        .register_function(libos("python3"), b"print(1)".to_vec())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    assert!(
        e.to_string()
            .contains("no libos executor on this node; it offers: builtin, wasm"),
        "{e}"
    );

    let node = TestNode::start_with_executors(
        |_| {},
        Arc::new(|config: &cella_platform::NodeConfig, release| {
            let mut e = executors(config, release);
            e.register(Arc::new(OneRuntime));
            e
        }),
    )
    .await;
    let fo = node.owner("fo").await;
    let e = fo
        .register_function(libos("python4"), b"print(1)".to_vec())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    assert!(
        e.to_string().contains(
            "runtime image \"python4\" is not offered by this node; it offers: [python3]"
        ),
        "{e}"
    );
    assert!(fo.list_functions(true).await.unwrap().is_empty());
    fo.register_function(libos("python3"), b"print(1)".to_vec())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_quota_shared_slot_names_and_foreign_updates_are_refused() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node.user(&admin, "fo", &["function_owner"]).await;
    let other = node.user(&admin, "other", &["function_owner"]).await;
    let zero = proto::FunctionSpec {
        quota: Some(0),
        ..spec("echo", "builtin", &["in"], &["out"])
    };
    let e = fo
        .register_function(zero, b"echo".to_vec())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("quota = 0"), "{e}");
    let e = fo
        .register_function(
            spec("echo", "builtin", &["data"], &["data"]),
            b"echo".to_vec(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    assert!(
        e.to_string().contains("both as an input and as an output"),
        "{e}"
    );
    assert!(fo.list_functions(true).await.unwrap().is_empty());

    let f = fo
        .register_function(spec("echo", "builtin", &["in"], &["out"]), b"echo".to_vec())
        .await
        .unwrap();
    let e = other
        .update_function(
            &f.function_id,
            spec("echo", "builtin", &["in"], &["out"]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::PermissionDenied, "{e}");
    assert!(e.to_string().contains("may update it"), "{e}");
    assert!(!e.to_string().contains("read"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_functions_output_cap_stays_within_the_nodes_and_is_named_when_hit() {
    let node = TestNode::start_with(|c| c.max_task_output_bytes = 64).await;
    let fo = node.owner("fo").await;
    // The scripted executor writes "done" (4 bytes) to every output.
    let capped = |cap| proto::FunctionSpec {
        max_output_bytes: Some(cap),
        ..spec("done", "wasm", &["in"], &["out"])
    };
    // More than the node's cap: refused at registration, nothing registered.
    let e = fo
        .register_function(capped(65), b"ok".to_vec())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    assert!(
        e.to_string()
            .contains("over this node's output cap of 64 bytes"),
        "{e}"
    );
    assert!(fo.list_functions(true).await.unwrap().is_empty());

    // Within it: registered; an update asking more is refused and changes nothing.
    let f = fo
        .register_function(capped(3), b"ok".to_vec())
        .await
        .unwrap();
    let e = fo
        .update_function(&f.function_id, capped(65), None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e}");
    let kept = fo.get_function(&f.function_id, false).await.unwrap();
    assert_eq!(kept.spec.unwrap().max_output_bytes, Some(3));

    // A task writing more than the function's own cap (4 bytes, cap 3) fails
    // naming the function's cap, not the node's.
    let (t, _, _) = approved_task(&f.function_id, &fo, "fo").await;
    fo.invoke_task(&t).await.unwrap();
    let done = wait(&fo, &t).await;
    assert_eq!(status(&done), TaskStatus::Failed, "{}", done.reason);
    assert!(
        done.reason
            .contains("the function's output cap (its max_output_bytes) of 3 bytes"),
        "{}",
        done.reason
    );
}
