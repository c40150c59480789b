//! `cella.v1.FileService`: uploads and downloads stream in constant memory.

use std::io::Read;
use std::pin::Pin;

use cella_platform::files::{FileCrypto, FileView};
use cella_proto::v1 as pb;
use cella_proto::v1::file_service_server::FileService;
use cella_proto::v1::upload_input_request::Part;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{Api, page_reply, page_request};
use crate::convert::{file_info, parse};
use crate::status::{invalid, to_status};

/// Size of a download chunk: large enough to amortise per-message overhead, far below
/// gRPC's default 4 MiB message limit.
const DOWNLOAD_CHUNK: usize = 256 * 1024;
/// Download chunks buffered ahead of a slow client.
const DOWNLOAD_QUEUE: usize = 4;

/// The file service.
#[derive(Debug, Clone)]
pub(crate) struct FileApi(pub(crate) Api);

fn crypto(c: Option<pb::FileCrypto>) -> Result<FileCrypto, Status> {
    let c = c.ok_or_else(|| invalid("crypto is missing"))?;
    FileCrypto::new(&c.schema, c.key).map_err(to_status)
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadFileResponse, Status>> + Send>>;

#[tonic::async_trait]
impl FileService for FileApi {
    async fn upload_input(
        &self,
        req: Request<Streaming<pb::UploadInputRequest>>,
    ) -> Result<Response<pb::FileInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let mut stream = req.into_inner();
        let header = match stream.message().await?.and_then(|m| m.part) {
            Some(Part::Header(h)) => h,
            _ => return Err(invalid("the first upload message must be the header")),
        };
        let crypto = crypto(header.crypto)?;
        let digest = parse("ciphertext_digest", &header.ciphertext_digest)?;
        let mut upload = self
            .0
            .run(move |p| p.begin_upload(&caller, crypto, digest))
            .await?;
        while let Some(msg) = stream.message().await? {
            match msg.part {
                Some(Part::Chunk(chunk)) => upload.write(&chunk).map_err(to_status)?,
                _ => return Err(invalid("only chunks may follow the upload header")),
            }
        }
        let file = self.0.run(move |p| p.finish_upload(upload)).await?;
        Ok(Response::new(file_info(&FileView::Input(file))))
    }

    async fn register_input(
        &self,
        req: Request<pb::RegisterInputRequest>,
    ) -> Result<Response<pb::FileInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let crypto = crypto(r.crypto)?;
        let digest = parse("ciphertext_digest", &r.ciphertext_digest)?;
        let f = self
            .0
            .run(move |p| p.register_input_url(&caller, &r.url, crypto, digest))
            .await?;
        Ok(Response::new(file_info(&FileView::Input(f))))
    }

    async fn register_output(
        &self,
        req: Request<pb::RegisterOutputRequest>,
    ) -> Result<Response<pb::FileInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let crypto = crypto(r.crypto)?;
        let f = self
            .0
            .run(move |p| p.register_output(&caller, crypto, &r.url))
            .await?;
        Ok(Response::new(file_info(&FileView::Output(f))))
    }

    async fn get_file(
        &self,
        req: Request<pb::GetFileRequest>,
    ) -> Result<Response<pb::FileInfo>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("file_id", &req.get_ref().file_id)?;
        let f = self.0.run(move |p| p.get_file(&caller, id)).await?;
        Ok(Response::new(file_info(&f)))
    }

    async fn list_files(
        &self,
        req: Request<pb::ListFilesRequest>,
    ) -> Result<Response<pb::ListFilesResponse>, Status> {
        let r = req.get_ref();
        let page = page_request(r.page_size, &r.page_token, false)?;
        let fs = self
            .0
            .as_caller(&req, move |p, c| p.list_files(c, &page))
            .await?;
        let (files, next_page_token) = page_reply(&fs, file_info);
        Ok(Response::new(pb::ListFilesResponse {
            files,
            next_page_token,
        }))
    }

    async fn delete_file(
        &self,
        req: Request<pb::DeleteFileRequest>,
    ) -> Result<Response<pb::DeleteFileResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("file_id", &req.get_ref().file_id)?;
        self.0.run(move |p| p.delete_file(&caller, id)).await?;
        Ok(Response::new(pb::DeleteFileResponse {}))
    }

    type DownloadFileStream = DownloadStream;

    async fn download_file(
        &self,
        req: Request<pb::DownloadFileRequest>,
    ) -> Result<Response<Self::DownloadFileStream>, Status> {
        let caller = self.0.caller(&req)?;
        let id = parse("file_id", &req.get_ref().file_id)?;
        let mut file = self.0.run(move |p| p.open_download(&caller, id)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(DOWNLOAD_QUEUE);
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; DOWNLOAD_CHUNK];
            loop {
                let item = match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => Ok(pb::DownloadFileResponse {
                        chunk: buf[..n].to_vec(),
                    }),
                    // An object store cut off mid-download: the client may try again.
                    Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
                        Err(Status::unavailable(format!(
                            "reading the file: {}",
                            cella_store::error_chain(&e)
                        )))
                    }
                    Err(e) => Err(Status::internal(format!(
                        "reading the file: {}",
                        cella_store::error_chain(&e)
                    ))),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return; // the client went away, or the error was sent
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
