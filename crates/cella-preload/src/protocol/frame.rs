//! Frames: `u32` big-endian length, then one protobuf [`Envelope`] of that length.
//!
//! [`decode_frame`] is the whole parser of untrusted bytes (the fuzz target
//! `libos_frame` drives it); [`FrameReader`] feeds it from a stream and is cancel-safe, so
//! a session can `select!` on the next frame and a timer without losing bytes.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::MAX_FRAME_LEN;
use super::messages::Envelope;

/// Length of a frame's header.
pub const HEADER_LEN: usize = 4;

/// Read buffer growth step: one chunk frame plus change, so a bulk transfer reads a frame
/// per system call or two.
const READ_STEP: usize = 64 * 1024;

/// A frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announces a message over [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes is over the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge {
        /// The announced length.
        len: u64,
    },
    /// The header announces an empty message.
    #[error("empty frame")]
    Empty,
    /// The message is not a valid protobuf `Envelope`.
    #[error("malformed frame: {0}")]
    Decode(String),
    /// The envelope carries no message (or one of a later protocol version).
    #[error("frame carries no known message")]
    NoBody,
    /// The stream ended between frames.
    #[error("the channel was closed")]
    Closed,
    /// The stream ended inside a frame.
    #[error("the channel was closed in the middle of a frame")]
    Truncated,
    /// The stream failed.
    #[error("channel I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Whether the peer sent bytes that are not a frame (as opposed to closing or the
    /// transport failing).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::Empty | Self::Decode(_) | Self::NoBody
        )
    }
}

/// Decodes the first frame of `buf`: `Ok(None)` if more bytes are needed, else the
/// envelope and the number of bytes it used. An oversized frame is refused as soon as its
/// header is complete.
///
/// # Errors
///
/// [`FrameError::TooLarge`], [`FrameError::Empty`], [`FrameError::Decode`] or
/// [`FrameError::NoBody`].
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Envelope, usize)>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header);
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge {
        len: u64::from(len),
    })?;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: u64::try_from(len).unwrap_or(u64::MAX),
        });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let Some(message) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let envelope = Envelope::decode(message).map_err(|e| FrameError::Decode(e.to_string()))?;
    if envelope.body.is_none() {
        return Err(FrameError::NoBody);
    }
    Ok(Some((envelope, HEADER_LEN + len)))
}

/// Encodes `envelope` as one frame.
///
/// # Errors
///
/// [`FrameError::TooLarge`] if the message is over [`MAX_FRAME_LEN`] (a bug of the
/// sender: chunks and lines are cut well below it).
pub fn encode_frame(envelope: &Envelope) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(HEADER_LEN + envelope.encoded_len());
    append_frame(&mut out, envelope)?;
    Ok(out)
}

/// Appends `envelope` as one frame to `out`, so that several frames go out in one write.
///
/// # Errors
///
/// As [`encode_frame`]; `out` is unchanged then.
pub fn append_frame(out: &mut Vec<u8>, envelope: &Envelope) -> Result<(), FrameError> {
    let len = envelope.encoded_len();
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: u64::try_from(len).unwrap_or(u64::MAX),
        });
    }
    out.reserve(HEADER_LEN + len);
    // `len` is at most MAX_FRAME_LEN, which fits a u32.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    envelope
        .encode(out)
        .map_err(|e| FrameError::Decode(e.to_string()))
}

/// Writes already encoded frames and flushes. Not cancel-safe: do not race it.
///
/// # Errors
///
/// [`FrameError::Io`].
pub async fn write_frames<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    frames: &[u8],
) -> Result<(), FrameError> {
    w.write_all(frames).await?;
    w.flush().await?;
    Ok(())
}

/// Writes `envelope` as one frame and flushes. Not cancel-safe: do not race it.
///
/// # Errors
///
/// [`FrameError::TooLarge`] or [`FrameError::Io`].
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    envelope: &Envelope,
) -> Result<(), FrameError> {
    let frame = encode_frame(envelope)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads frames from a stream, one at a time.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// The next frame's envelope. Cancel-safe: bytes read before a cancellation stay
    /// buffered for the next call.
    ///
    /// # Errors
    ///
    /// A [`FrameError`]; after one, the stream is not usable any more.
    pub async fn read_frame(&mut self) -> Result<Envelope, FrameError> {
        loop {
            if let Some((envelope, used)) = decode_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(envelope);
            }
            self.buf.reserve(READ_STEP);
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    FrameError::Closed
                } else {
                    FrameError::Truncated
                });
            }
        }
    }

    /// The stream, back.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{Body, Cancel, Hello};

    fn hello() -> Envelope {
        Body::Hello(Hello {
            protocol_version: 1,
            preload_version: "t".into(),
        })
        .into()
    }

    #[test]
    fn round_trip_and_partial_input() {
        let frame = encode_frame(&hello()).unwrap();
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        for cut in 0..frame.len() {
            assert!(decode_frame(&frame[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        let (env, used) = decode_frame(&two).unwrap().unwrap();
        assert_eq!(env, hello());
        assert_eq!(used, frame.len());
    }

    #[test]
    fn refuses_oversized_as_soon_as_the_header_is_read() {
        let header = u32::try_from(MAX_FRAME_LEN + 1).unwrap().to_be_bytes();
        assert!(matches!(
            decode_frame(&header),
            Err(FrameError::TooLarge { len }) if len == MAX_FRAME_LEN as u64 + 1
        ));
        assert!(matches!(
            decode_frame(&u32::MAX.to_be_bytes()),
            Err(FrameError::TooLarge { .. })
        ));
        // Exactly at the limit is a length the reader waits for.
        let at = u32::try_from(MAX_FRAME_LEN).unwrap().to_be_bytes();
        assert!(decode_frame(&at).unwrap().is_none());
    }

    #[test]
    fn refuses_empty_garbage_and_bodiless_frames() {
        assert!(matches!(
            decode_frame(&[0, 0, 0, 0]),
            Err(FrameError::Empty)
        ));
        let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        let err = decode_frame(&garbage).unwrap_err();
        assert!(err.is_malformed(), "{err}");
        // An unknown field only: a valid envelope without a known body.
        let unknown = [0, 0, 0, 2, (15 << 3), 1];
        assert!(matches!(decode_frame(&unknown), Err(FrameError::NoBody)));
    }

    #[test]
    fn encode_refuses_oversized_messages() {
        let big: Envelope = Body::Cancel(Cancel {
            reason: "x".repeat(MAX_FRAME_LEN),
        })
        .into();
        assert!(matches!(
            encode_frame(&big),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn reader_reads_split_frames_and_reports_eof_kinds() {
        let mut bytes = encode_frame(&hello()).unwrap();
        bytes.extend(encode_frame(&hello()).unwrap());
        let (mut tx, rx) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            tx.write_all(&bytes).await.unwrap();
            tx.write_all(&[0, 0]).await.unwrap();
        });
        let mut r = FrameReader::new(rx);
        assert_eq!(r.read_frame().await.unwrap(), hello());
        assert_eq!(r.read_frame().await.unwrap(), hello());
        writer.await.unwrap();
        assert!(matches!(r.read_frame().await, Err(FrameError::Truncated)));

        let (tx, rx) = tokio::io::duplex(8);
        drop(tx);
        let mut r = FrameReader::new(rx);
        assert!(matches!(r.read_frame().await, Err(FrameError::Closed)));
    }
}
