//! The whole confidential flow: two banks intersect their customer lists.

use std::collections::HashMap;

use cella_client::proto::TaskStatus;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_banks_intersect_their_customers() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node.user(&admin, "fo", &["function_owner"]).await;
    let a = node.user(&admin, "bank-a", &["data_owner"]).await;
    let b = node.user(&admin, "bank-b", &["data_owner"]).await;

    let mut psi_spec = spec(
        "psi",
        "builtin",
        &["input_a", "input_b"],
        &["output_a", "output_b"],
    );
    psi_spec.arguments.clear();
    let f = fo
        .register_function(psi_spec, b"ordered_set_intersect".to_vec())
        .await
        .unwrap();

    let in_a = upload(&a, b"alice\nbob\ncarol\n").await;
    let in_b = upload(&b, b"carol\ndave\nalice\n").await;
    let (out_a, key_a) = output(&a).await;
    let (out_b, key_b) = output(&b).await;

    let t = fo
        .create_task(
            &f.function_id,
            HashMap::new(),
            vec![slot("input_a", &["bank-a"]), slot("input_b", &["bank-b"])],
            vec![slot("output_a", &["bank-a"]), slot("output_b", &["bank-b"])],
        )
        .await
        .unwrap();
    assert_eq!(status(&t), TaskStatus::Created);
    a.assign_data(
        &t.task_id,
        vec![file("input_a", &in_a)],
        vec![file("output_a", &out_a)],
    )
    .await
    .unwrap();
    let t = b
        .assign_data(
            &t.task_id,
            vec![file("input_b", &in_b)],
            vec![file("output_b", &out_b)],
        )
        .await
        .unwrap();
    assert_eq!(status(&t), TaskStatus::DataAssigned);
    assert!(!t.task_digest.is_empty());

    // Participants: the creator and both banks (the function is public).
    let mut participants = t.participants.clone();
    participants.sort();
    assert_eq!(participants, ["bank-a", "bank-b", "fo"]);
    for c in [&fo, &a] {
        let t = c.approve_task(&t.task_id, &t.task_digest).await.unwrap();
        assert_eq!(status(&t), TaskStatus::DataAssigned);
    }
    let t = b.approve_task(&t.task_id, &t.task_digest).await.unwrap();
    assert_eq!(status(&t), TaskStatus::Approved);

    // Watch from one bank while the creator invokes: every step arrives in order.
    let mut watch = a.watch_task(&t.task_id).await.unwrap();
    let invoked = fo.invoke_task(&t.task_id).await.unwrap();
    assert!(matches!(
        status(&invoked),
        TaskStatus::Staged | TaskStatus::Running | TaskStatus::Finished
    ));
    let mut seen = Vec::new();
    while let Some(u) = watch.next_update().await.unwrap() {
        seen.push(status(&u));
    }
    assert_eq!(seen.last(), Some(&TaskStatus::Finished), "{seen:?}");
    let done = a.get_task(&t.task_id).await.unwrap();
    let result = done.result.unwrap();
    assert_eq!(result.return_value, b"2");
    assert_eq!(result.outputs.len(), 2);
    let history: Vec<i32> = done.history.iter().map(|h| h.status).collect();
    let expected: Vec<i32> = [
        TaskStatus::Created,
        TaskStatus::DataAssigned,
        TaskStatus::Approved,
        TaskStatus::Staged,
        TaskStatus::Running,
        TaskStatus::Finished,
    ]
    .into_iter()
    .map(i32::from)
    .collect();
    assert_eq!(history, expected);

    // Each bank decrypts its own copy of the intersection, and only its own.
    assert_eq!(fetch(&a, &out_a, &key_a).await, b"alice\ncarol\n");
    assert_eq!(fetch(&b, &out_b, &key_b).await, b"alice\ncarol\n");
    let mut sink = Vec::new();
    let e = a.download_file(&out_b, &mut sink, None).await.unwrap_err();
    assert_eq!(code(e), tonic::Code::PermissionDenied);
    // The output record names the task that wrote it and the digest in the result.
    let info = a.get_file(&out_a).await.unwrap();
    assert_eq!(info.written_by_task, t.task_id);
    let slot_digest = result
        .outputs
        .iter()
        .find(|o| o.slot == "output_a")
        .unwrap();
    assert_eq!(info.ciphertext_digest, slot_digest.ciphertext_digest);
    // The builtin receipt binds the run to the payload.
    let receipt: serde_json::Value = serde_json::from_slice(&result.receipt).unwrap();
    assert_eq!(receipt["payload_digest"], f.payload_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_join_and_compute() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node
        .user(&admin, "fo", &["function_owner", "data_owner"])
        .await;
    let names = ["p1", "p2", "p3"];
    let mut parties = Vec::new();
    for n in names {
        parties.push(node.user(&admin, n, &["data_owner"]).await);
    }
    let mut s = spec(
        "pjc",
        "builtin",
        &["in1", "in2", "in3"],
        &["out1", "out2", "out3"],
    );
    s.arguments.clear();
    let f = fo
        .register_function(s, b"private_join_and_compute".to_vec())
        .await
        .unwrap();
    let t = fo
        .create_task(
            &f.function_id,
            HashMap::new(),
            (1..=3)
                .map(|i| slot(&format!("in{i}"), &[names[i - 1]]))
                .collect(),
            (1..=3)
                .map(|i| slot(&format!("out{i}"), &[names[i - 1]]))
                .collect(),
        )
        .await
        .unwrap();
    let data: [&[u8]; 3] = [
        b"id,balance\na,10\nb,20\nc,5\n",
        b"a,1\nc,2\nz,100\n",
        b"c,3\na,4\n",
    ];
    let mut keys = Vec::new();
    for (i, c) in parties.iter().enumerate() {
        let input = upload(c, data[i]).await;
        let (out, key) = output(c).await;
        c.assign_data(
            &t.task_id,
            vec![file(&format!("in{}", i + 1), &input)],
            vec![file(&format!("out{}", i + 1), &out)],
        )
        .await
        .unwrap();
        keys.push((out, key));
    }
    let t = fo.get_task(&t.task_id).await.unwrap();
    for c in parties.iter().chain([&fo]) {
        c.approve_task(&t.task_id, &t.task_digest).await.unwrap();
    }
    fo.invoke_task(&t.task_id).await.unwrap();
    let done = wait(&fo, &t.task_id).await;
    assert_eq!(status(&done), TaskStatus::Finished, "{}", done.reason);
    assert_eq!(done.result.unwrap().return_value, b"25");
    for (c, (out, key)) in parties.iter().zip(&keys) {
        assert_eq!(fetch(c, out, key).await, b"a,15\nc,10\n");
    }
}
