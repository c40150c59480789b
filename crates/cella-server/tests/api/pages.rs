//! List calls come a page at a time, whatever the number or size of the items; uploads
//! that are not sealed files are refused at upload; a node without workers does not
//! start.

use std::collections::{BTreeSet, HashMap};

use cella_client::{UploadSource, proto};
use tonic::Code;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_lists_page_filter_and_stay_under_the_message_limit() {
    let node = TestNode::start().await;
    let admin = node.admin().await;
    let fo = node
        .user(&admin, "fo", &["function_owner", "data_owner"])
        .await;
    let other = node.user(&admin, "other", &["function_owner"]).await;
    // Eight arguments of 60 KiB each: a task's TaskInfo is ~480 KiB, so ten tasks in one
    // reply would pass gRPC's 4 MiB limit (the bug: one reply with every task).
    let mut s = spec("big", "builtin", &[], &[]);
    s.arguments = (0..8)
        .map(|i| proto::ArgumentSpec {
            name: format!("a{i}"),
            default_value: Some("x".repeat(60 << 10)),
            overridable: true,
        })
        .collect();
    s.arguments.push(proto::ArgumentSpec {
        name: "message".into(),
        default_value: Some("hi".into()),
        overridable: true,
    });
    let big = fo.register_function(s, b"echo".to_vec()).await.unwrap();
    let small = fo
        .register_function(spec("small", "builtin", &[], &[]), b"echo".to_vec())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let t = fo
            .create_task(&big.function_id, HashMap::new(), vec![], vec![])
            .await
            .unwrap();
        ids.push(t.task_id);
    }
    let mine_small = fo
        .create_task(&small.function_id, HashMap::new(), vec![], vec![])
        .await
        .unwrap();
    let theirs = other
        .create_task(&small.function_id, HashMap::new(), vec![], vec![])
        .await
        .unwrap();

    // One page of everything still fits in a reply: it is cut short with a token.
    let first = fo
        .list_tasks_page(proto::ListTasksRequest::default())
        .await
        .unwrap();
    assert!(first.tasks.len() < 10, "{}", first.tasks.len());
    assert!(!first.next_page_token.is_empty());
    // Walking the pages gives every task once, oldest first (tasks created in the same
    // millisecond are ordered by id).
    let all = fo.list_tasks().await.unwrap();
    let created = |t: &proto::TaskInfo| t.history.first().map_or(0, |h| h.at_ms);
    assert!(
        all.windows(2)
            .all(|w| (created(&w[0]), &w[0].task_id) < (created(&w[1]), &w[1].task_id))
    );
    let all: Vec<String> = all.into_iter().map(|t| t.task_id).collect();
    let mut expected = ids.clone();
    expected.push(mine_small.task_id.clone());
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>(),
        expected.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(all.len(), expected.len());
    // Page size, newest first, and the filters.
    let page = fo
        .list_tasks_page(proto::ListTasksRequest {
            page_size: 2,
            newest_first: true,
            function_id: big.function_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = page.tasks.iter().map(|t| t.task_id.clone()).collect();
    let big_newest: Vec<_> = all
        .iter()
        .rev()
        .filter(|id| ids.contains(id))
        .take(2)
        .cloned()
        .collect();
    assert_eq!(got, big_newest);
    let small_tasks = other
        .list_tasks_matching(
            proto::ListTasksRequest {
                function_id: small.function_id.clone(),
                ..Default::default()
            },
            usize::MAX,
        )
        .await
        .unwrap();
    // `other` participates only in its own task (it owns no slot of fo's).
    assert_eq!(small_tasks.len(), 1);
    let created_by_fo = fo
        .list_tasks_matching(
            proto::ListTasksRequest {
                created_by_me: true,
                statuses: vec![
                    proto::TaskStatus::Created as i32,
                    proto::TaskStatus::DataAssigned as i32,
                ],
                function_id: small.function_id.clone(),
                ..Default::default()
            },
            usize::MAX,
        )
        .await
        .unwrap();
    assert_eq!(created_by_fo.len(), 1);
    assert_eq!(created_by_fo[0].task_id, mine_small.task_id);
    assert_ne!(created_by_fo[0].task_id, theirs.task_id);
    let none = fo
        .list_tasks_matching(
            proto::ListTasksRequest {
                statuses: vec![proto::TaskStatus::Finished as i32],
                ..Default::default()
            },
            usize::MAX,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    // Bad tokens, statuses and function ids are the caller's fault.
    for bad in [
        proto::ListTasksRequest {
            page_token: "not a token".into(),
            ..Default::default()
        },
        proto::ListTasksRequest {
            statuses: vec![0],
            ..Default::default()
        },
        proto::ListTasksRequest {
            function_id: "task-1".into(),
            ..Default::default()
        },
    ] {
        let e = fo.list_tasks_page(bad.clone()).await.unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{bad:?}: {e}");
    }

    // Files, functions and users page the same way.
    for _ in 0..3 {
        output(&fo).await;
    }
    let page = fo
        .list_files_page(proto::ListFilesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.files.len(), 2);
    let rest = fo
        .list_files_page(proto::ListFilesRequest {
            page_size: 2,
            page_token: page.next_page_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(rest.files.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let ids: BTreeSet<_> = page
        .files
        .iter()
        .chain(&rest.files)
        .map(|f| &f.file_id)
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(fo.list_files().await.unwrap().len(), 3);
    let page = fo
        .list_functions_page(proto::ListFunctionsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.functions[0].function_id, big.function_id);
    assert_eq!(fo.list_functions(false).await.unwrap().len(), 2);
    let users = admin
        .list_users_page(proto::ListUsersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(users.users.len(), 1);
    assert_eq!(admin.list_users().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_that_are_not_sealed_files_are_refused_with_the_reason() {
    let node = TestNode::start().await;
    let owner = node.owner("alice").await;
    let (sealed, key, _) = seal(b"some data");
    let mut bad_version = sealed.clone();
    bad_version[8] = 9;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("empty", Vec::new(), "truncated"),
        ("plaintext", b"name,salary\nbob,1\n".to_vec(), "bad magic"),
        ("version", bad_version, "version 9"),
        ("header only", sealed[..53].to_vec(), "truncated"),
        ("cut in its chunk", sealed[..63].to_vec(), "truncated"),
    ];
    for (what, bytes, reason) in cases {
        let digest = cella_types::Digest::of(&bytes).to_hex();
        let e = owner
            .upload_input(
                UploadSource::reader(std::io::Cursor::new(bytes)),
                crypto(&key),
                &digest,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(code(&e), Code::InvalidArgument, "{what}: {e}");
        assert!(
            e.to_string().contains(reason) && e.to_string().contains("sealed"),
            "{what}: {e}"
        );
    }
    // Nothing was registered; a real sealed file still uploads.
    assert!(owner.list_files().await.unwrap().is_empty());
    upload(&owner, b"some data").await;
    assert_eq!(owner.list_files().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_workers_does_not_start_and_policies_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cella_platform::NodeConfig::new(dir.path().join("data"));
    config.workers = 0;
    let server = cella_server::ServerConfig::new(config.clone(), "127.0.0.1:0".parse().unwrap());
    let e = cella_server::RunningNode::start(server, executors(&config, false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");

    let node = TestNode::start().await;
    let p = node.client().await.policies().await.unwrap();
    assert_eq!(
        p.node_policy,
        std::fs::read_to_string(node.running().policy_file()).unwrap()
    );
    assert!(p.instance_policy.is_empty(), "no LibOS executor here");
}
