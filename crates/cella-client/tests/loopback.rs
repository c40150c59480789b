//! The client against fake services on a local pinned-TLS gRPC server: the token header,
//! streaming upload and download, and waiting for a task. The real node's end-to-end
//! tests live with the server.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use cella_client::proto::{self, auth_service_server, file_service_server, node_service_server};
use cella_client::proto::{task_service_server, upload_input_request::Part};
use cella_client::{Client, ClientError, UploadSource};
use futures::{Stream, StreamExt};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::{Request, Response, Status, Streaming};

type Reply<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

const TOKEN: &str = "tok-123";

fn check_token<T>(request: &Request<T>) -> Result<(), Status> {
    let got = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if got == Some(&format!("Bearer {TOKEN}")) {
        Ok(())
    } else {
        Err(Status::unauthenticated(format!("bad token header {got:?}")))
    }
}

#[derive(Default, Clone)]
struct Fake {
    stored: Arc<Mutex<Vec<u8>>>,
    header: Arc<Mutex<Option<proto::UploadHeader>>>,
}

#[tonic::async_trait]
impl auth_service_server::AuthService for Fake {
    async fn login(&self, r: Request<proto::LoginRequest>) -> Reply<proto::LoginResponse> {
        let r = r.into_inner();
        if (r.user.as_str(), r.password.as_str()) != ("alice", "pw") {
            return Err(Status::unauthenticated("wrong user name or password"));
        }
        Ok(Response::new(proto::LoginResponse {
            token: TOKEN.to_owned(),
            expires_at_ms: 42,
            roles: vec!["data_owner".to_owned()],
        }))
    }
    async fn logout(&self, r: Request<proto::LogoutRequest>) -> Reply<proto::LogoutResponse> {
        check_token(&r)?;
        Ok(Response::new(proto::LogoutResponse {}))
    }
    async fn register_user(
        &self,
        _: Request<proto::RegisterUserRequest>,
    ) -> Reply<proto::UserInfo> {
        Err(Status::unimplemented("fake"))
    }
    async fn change_password(
        &self,
        _: Request<proto::ChangePasswordRequest>,
    ) -> Reply<proto::ChangePasswordResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_users(
        &self,
        r: Request<proto::ListUsersRequest>,
    ) -> Reply<proto::ListUsersResponse> {
        check_token(&r)?;
        Ok(Response::new(proto::ListUsersResponse {
            users: vec![proto::UserInfo {
                name: "alice".to_owned(),
                roles: vec![],
                created_at_ms: 1,
            }],
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl node_service_server::NodeService for Fake {
    async fn health(&self, _: Request<proto::HealthRequest>) -> Reply<proto::HealthResponse> {
        Ok(Response::new(proto::HealthResponse {
            status: "serving".to_owned(),
            workers: 2,
            ..Default::default()
        }))
    }
    async fn version(&self, _: Request<proto::VersionRequest>) -> Reply<proto::VersionResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_policies(
        &self,
        _: Request<proto::GetPoliciesRequest>,
    ) -> Reply<proto::GetPoliciesResponse> {
        Err(Status::unimplemented("fake"))
    }
}

#[tonic::async_trait]
impl file_service_server::FileService for Fake {
    async fn upload_input(
        &self,
        r: Request<Streaming<proto::UploadInputRequest>>,
    ) -> Reply<proto::FileInfo> {
        check_token(&r)?;
        let mut stream = r.into_inner();
        let mut data = Vec::new();
        let mut chunks = 0usize;
        while let Some(message) = stream.next().await {
            match message?.part {
                Some(Part::Header(h)) => *self.header.lock().unwrap() = Some(h),
                Some(Part::Chunk(c)) => {
                    assert!(c.len() <= cella_client::UPLOAD_CHUNK_SIZE);
                    chunks += 1;
                    data.extend_from_slice(&c);
                }
                None => return Err(Status::invalid_argument("empty part")),
            }
        }
        let digest = cella_types::Digest::of(&data).to_hex();
        let header = self.header.lock().unwrap().clone().unwrap_or_default();
        if header.ciphertext_digest != digest {
            return Err(Status::invalid_argument("ciphertext digest mismatch"));
        }
        assert!(chunks >= data.len() / cella_client::UPLOAD_CHUNK_SIZE);
        let size = data.len() as u64;
        *self.stored.lock().unwrap() = data;
        Ok(Response::new(proto::FileInfo {
            file_id: "input-1".to_owned(),
            ciphertext_digest: digest,
            size,
            ..Default::default()
        }))
    }
    async fn register_input(
        &self,
        _: Request<proto::RegisterInputRequest>,
    ) -> Reply<proto::FileInfo> {
        Err(Status::unimplemented("fake"))
    }
    async fn register_output(
        &self,
        _: Request<proto::RegisterOutputRequest>,
    ) -> Reply<proto::FileInfo> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_file(&self, _: Request<proto::GetFileRequest>) -> Reply<proto::FileInfo> {
        Err(Status::not_found("no such file"))
    }
    async fn list_files(
        &self,
        _: Request<proto::ListFilesRequest>,
    ) -> Reply<proto::ListFilesResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_file(
        &self,
        _: Request<proto::DeleteFileRequest>,
    ) -> Reply<proto::DeleteFileResponse> {
        Err(Status::unimplemented("fake"))
    }
    type DownloadFileStream = BoxStream<proto::DownloadFileResponse>;
    async fn download_file(
        &self,
        r: Request<proto::DownloadFileRequest>,
    ) -> Reply<Self::DownloadFileStream> {
        check_token(&r)?;
        let data = self.stored.lock().unwrap().clone();
        let chunks: Vec<_> = data
            .chunks(10_000)
            .map(|c| Ok(proto::DownloadFileResponse { chunk: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}

fn task(status: proto::TaskStatus) -> proto::TaskInfo {
    proto::TaskInfo {
        task_id: "task-1".to_owned(),
        status: status as i32,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl task_service_server::TaskService for Fake {
    async fn create_task(&self, _: Request<proto::CreateTaskRequest>) -> Reply<proto::TaskInfo> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_task(&self, r: Request<proto::GetTaskRequest>) -> Reply<proto::TaskInfo> {
        check_token(&r)?;
        Ok(Response::new(task(proto::TaskStatus::Finished)))
    }
    async fn list_tasks(
        &self,
        _: Request<proto::ListTasksRequest>,
    ) -> Reply<proto::ListTasksResponse> {
        Err(Status::unimplemented("fake"))
    }
    async fn assign_data(&self, _: Request<proto::AssignDataRequest>) -> Reply<proto::TaskInfo> {
        Err(Status::unimplemented("fake"))
    }
    async fn approve_task(&self, _: Request<proto::ApproveTaskRequest>) -> Reply<proto::TaskInfo> {
        Err(Status::unimplemented("fake"))
    }
    async fn invoke_task(&self, _: Request<proto::InvokeTaskRequest>) -> Reply<proto::TaskInfo> {
        Err(Status::unimplemented("fake"))
    }
    async fn cancel_task(&self, _: Request<proto::CancelTaskRequest>) -> Reply<proto::TaskInfo> {
        Err(Status::unimplemented("fake"))
    }
    type WatchTaskStream = BoxStream<proto::TaskInfo>;
    async fn watch_task(
        &self,
        r: Request<proto::WatchTaskRequest>,
    ) -> Reply<Self::WatchTaskStream> {
        check_token(&r)?;
        let updates = [
            proto::TaskStatus::Staged,
            proto::TaskStatus::Running,
            proto::TaskStatus::Finished,
        ]
        .map(|s| Ok(task(s)));
        Ok(Response::new(Box::pin(futures::stream::iter(updates))))
    }
}

/// Starts the fake node on pinned TLS; returns its address and certificate PEM.
async fn start() -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let incoming =
        futures::stream::unfold((listener, acceptor), |(listener, acceptor)| async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                match acceptor.accept(tcp).await {
                    Ok(tls) => return Some((Ok::<_, std::io::Error>(tls), (listener, acceptor))),
                    Err(_) => continue,
                }
            }
        });
    let fake = Fake::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(auth_service_server::AuthServiceServer::new(fake.clone()))
            .add_service(node_service_server::NodeServiceServer::new(fake.clone()))
            .add_service(file_service_server::FileServiceServer::new(fake.clone()))
            .add_service(task_service_server::TaskServiceServer::new(fake))
            .serve_with_incoming(incoming),
    );
    (addr, certified.cert.pem())
}

#[tokio::test]
async fn calls_carry_the_token_and_stream_files() {
    let (addr, pem) = start().await;
    let mut client = Client::connect(&format!("https://{addr}"), pem.as_bytes())
        .await
        .expect("connect");

    // Unauthenticated calls work; authenticated ones need a token first.
    assert_eq!(client.health().await.expect("health").status, "serving");
    assert!(matches!(
        client.list_users().await,
        Err(ClientError::NotLoggedIn)
    ));
    let err = client.login("alice", "nope").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated));
    assert!(
        err.to_string().contains("Login failed: wrong user name"),
        "{err}"
    );

    let info = client.login("alice", "pw").await.expect("login");
    assert_eq!(info.token, TOKEN);
    assert!(!format!("{info:?}").contains(TOKEN));
    assert_eq!(client.list_users().await.expect("list").len(), 1);

    // A saved token works on a fresh client.
    let other = Client::connect(&addr, pem.as_bytes())
        .await
        .expect("connect")
        .with_token(TOKEN)
        .expect("token");
    assert_eq!(other.list_users().await.expect("list").len(), 1);
    assert!(
        Client::connect(&addr, pem.as_bytes())
            .await
            .unwrap()
            .with_token("a b")
            .is_err()
    );

    // Upload 300 000 bytes from a file, with progress, then download them back.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.sealed");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).expect("write");
    let digest = cella_types::Digest::of(&data).to_hex();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let crypto = proto::FileCrypto {
        schema: cella_client::SCHEMA_CELLA_SEALED_V1.to_owned(),
        key: vec![7; 32],
    };
    let file = client
        .upload_input(
            path.as_path(),
            crypto.clone(),
            &digest,
            Some(Box::new(move |n| seen2.lock().unwrap().push(n))),
        )
        .await
        .expect("upload");
    assert_eq!(file.size, 300_000);
    let progress = seen.lock().unwrap().clone();
    assert_eq!(progress.last(), Some(&300_000));
    assert_eq!(
        progress.len(),
        300_000usize.div_ceil(cella_client::UPLOAD_CHUNK_SIZE)
    );

    // A wrong digest is the node's refusal.
    let err = client
        .upload_input(
            UploadSource::reader(&b"abc"[..]),
            crypto.clone(),
            &digest,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    // A missing file is a local error.
    let err = client
        .upload_input(dir.path().join("missing"), crypto, &digest, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Io { .. }), "{err}");

    let mut out = Vec::new();
    let summary = client
        .download_file("input-1", &mut out, None)
        .await
        .expect("download");
    assert_eq!(out, data);
    assert_eq!(summary.bytes, 300_000);
    assert_eq!(summary.ciphertext_digest, digest);

    let err = client.get_file("input-9").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound));

    // Watching ends at the terminal status.
    let mut watch = client.watch_task("task-1").await.expect("watch");
    let mut statuses = Vec::new();
    while let Some(t) = watch.next_update().await.expect("update") {
        statuses.push(t.status);
    }
    assert_eq!(statuses.len(), 3);
    let done = client.wait_terminal("task-1").await.expect("wait");
    assert_eq!(done.status, proto::TaskStatus::Finished as i32);

    client.logout().await.expect("logout");
    assert!(client.token().is_none());
}
