//! A rogue instance: attests like the real pre-load module (same identity and connection
//! code), then breaks the protocol in one scripted way.

use cella_attest::EvidenceSource;
use cella_preload::attest::{Identity, connect};
use cella_preload::protocol::{
    Body, Chunk, ChunkTarget, Deploy, Envelope, ExitStatus, Finished, FrameReader, Hello, Log,
    MAX_CHUNK_LEN, MAX_FRAME_LEN, MAX_LOG_LINE_BYTES, OutputMeta, PROTOCOL_VERSION, Started,
    write_frame,
};
use cella_preload::receipt::{Entry, RECEIPT_FORMAT, ReceiptBody, command_digest, sha256};
use cella_preload::{Launch, PreloadConfig, PreloadError};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::Fault;

/// Whether the rogue plays `fault` (the others are played at launch).
pub(super) fn plays(fault: Fault) -> bool {
    !matches!(
        fault,
        Fault::CrashBeforeAttestation
            | Fault::BadEvidence
            | Fault::WrongMeasurement
            | Fault::StaleNonce
    )
}

/// Reads frames, ignoring them, until the executor closes the channel.
async fn until_closed<R: AsyncRead + Unpin>(rd: &mut FrameReader<R>) -> Result<i32, PreloadError> {
    while rd.read_frame().await.is_ok() {}
    Ok(1)
}

fn entries(files: &[cella_preload::protocol::FileMeta]) -> Vec<Entry> {
    files
        .iter()
        .map(|f| Entry {
            name: f.name.clone(),
            sha256: f.sha256.clone(),
        })
        .collect()
}

/// A `Finished` for a run that wrote every declared output empty (or, with `partial`,
/// listed none), with a receipt signed by `identity`.
fn finished(identity: &Identity, deploy: &Deploy, partial: bool) -> Result<Finished, PreloadError> {
    let exit = ExitStatus {
        code: Some(0),
        signal: None,
    };
    let outputs: Vec<OutputMeta> = if partial {
        Vec::new()
    } else {
        deploy
            .outputs
            .iter()
            .map(|s| OutputMeta {
                slot: s.clone(),
                size: 0,
                sha256: sha256(b"").to_vec(),
            })
            .collect()
    };
    let body = ReceiptBody {
        format: RECEIPT_FORMAT.into(),
        task_id: deploy.task_id.clone(),
        function_id: deploy.function_id.clone(),
        measurement: identity.measurement().to_vec(),
        nonce: identity.nonce().to_vec(),
        workload: entries(&deploy.files),
        inputs: entries(&deploy.inputs),
        outputs: outputs
            .iter()
            .map(|o| Entry {
                name: o.slot.clone(),
                sha256: o.sha256.clone(),
            })
            .collect(),
        exit: Some(exit),
        return_value_sha256: sha256(b"").to_vec(),
        command_sha256: command_digest(&deploy.argv, &deploy.env).to_vec(),
        signed_at_unix_secs: 0,
        run_index: 1,
    }
    .encode_to_vec();
    let signature = identity
        .signer()
        .sign(&body)
        .map_err(|e| PreloadError::Identity(e.to_string()))?;
    Ok(Finished {
        exit: Some(exit),
        outputs,
        usage: None,
        return_value: Vec::new(),
        log_dropped: 0,
        receipt: body,
        signature,
    })
}

/// Plays `fault` on an attested channel.
pub(super) async fn run(
    fault: Fault,
    launch: &Launch,
    preload: &PreloadConfig,
    evidence: &dyn EvidenceSource,
) -> Result<i32, PreloadError> {
    let identity = Identity::issue(evidence, &launch.nonce)?;
    let stream = connect(&launch.socket, &identity, preload).await?;
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = FrameReader::new(rd);
    let hello: Envelope = Body::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        preload_version: "rogue".into(),
    })
    .into();
    write_frame(&mut wr, &hello).await?;
    match fault {
        Fault::HangBeforeDeploy => std::future::pending::<()>().await,
        Fault::ExitWhileIdle => {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            return Ok(2);
        }
        _ => {}
    }
    let Some(Body::Deploy(deploy)) = rd.read_frame().await?.body else {
        return Ok(1);
    };
    let mut remaining: u64 = deploy
        .files
        .iter()
        .chain(&deploy.inputs)
        .map(|f| f.size)
        .sum();
    while remaining > 0 {
        if let Some(Body::Chunk(c)) = rd.read_frame().await?.body {
            remaining = remaining.saturating_sub(u64::try_from(c.data.len()).unwrap_or(u64::MAX));
        }
    }
    write_frame(&mut wr, &Body::Started(Started {}).into()).await?;
    match fault {
        Fault::GarbageFrame => {
            wr.write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
                .await
                .map_err(frame_io)?;
            wr.flush().await.map_err(frame_io)?;
        }
        Fault::OversizedFrame => {
            let header = u32::try_from(MAX_FRAME_LEN + 1)
                .unwrap_or(u32::MAX)
                .to_be_bytes();
            wr.write_all(&header).await.map_err(frame_io)?;
            wr.flush().await.map_err(frame_io)?;
        }
        Fault::PartialOutputs => {
            write_frame(
                &mut wr,
                &Body::Finished(finished(&identity, &deploy, true)?).into(),
            )
            .await?;
        }
        Fault::TamperedReceipt => {
            let mut f = finished(&identity, &deploy, false)?;
            let last = f.receipt.len() - 1;
            f.receipt[last] ^= 1;
            write_frame(&mut wr, &Body::Finished(f).into()).await?;
        }
        Fault::OutputOverLimit => {
            let limit = deploy.limits.unwrap_or_default().max_output_bytes;
            let mut sent = 0u64;
            let piece = vec![b'x'; MAX_CHUNK_LEN];
            while sent <= limit {
                let chunk: Envelope = Body::Chunk(Chunk {
                    target: ChunkTarget::Output as i32,
                    index: 0,
                    data: piece.clone(),
                })
                .into();
                if write_frame(&mut wr, &chunk).await.is_err() {
                    return Ok(1);
                }
                sent += MAX_CHUNK_LEN as u64;
            }
        }
        Fault::LogFlood => {
            let line: Envelope = Body::Log(Log {
                stream: 0,
                line: "x".repeat(MAX_LOG_LINE_BYTES),
            })
            .into();
            while write_frame(&mut wr, &line).await.is_ok() {}
            return Ok(1);
        }
        Fault::CrashAfterStarted => return Ok(137),
        _ => {}
    }
    until_closed(&mut rd).await
}

fn frame_io(e: std::io::Error) -> PreloadError {
    PreloadError::Frame(e.into())
}
