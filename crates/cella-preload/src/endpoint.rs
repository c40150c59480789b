//! Where an instance connects back to its executor: a Unix socket (the mock and sandbox
//! backends) or a TCP port on the loopback interface (the Gramine backend: a Gramine
//! process cannot reach a Unix socket of the host, since Gramine keeps Unix domain sockets
//! among the processes of one Gramine instance).
//!
//! Written in `CELLA_PRELOAD_SOCKET` as a plain absolute path or `unix:<path>` for a
//! Unix socket, and `tcp:127.0.0.1:<port>` (or `tcp:[::1]:<port>`) for TCP. Only loopback
//! addresses are accepted: the channel never leaves the host. Either way the channel is
//! only a transport: TLS 1.3 with RA-TLS on both ends authenticates the peers, so a
//! process of the host that connects to the port first gains nothing (the launch fails).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Prefix of a TCP endpoint.
pub const TCP_PREFIX: &str = "tcp:";
/// Prefix of a Unix socket endpoint (optional: a plain absolute path is a Unix socket).
pub const UNIX_PREFIX: &str = "unix:";

/// The executor's end of an instance's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP port on a loopback address.
    Tcp(SocketAddr),
}

/// An endpoint could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint {value:?}: {reason}")]
pub struct EndpointError {
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Endpoint {
    /// Parses `unix:<path>`, an absolute path, or `tcp:<loopback address>:<port>`.
    ///
    /// # Errors
    ///
    /// [`EndpointError`] for a relative path, an unparsable or non-loopback address, or
    /// port 0.
    pub fn parse(value: &str) -> Result<Self, EndpointError> {
        let fail = |reason| EndpointError {
            value: value.to_owned(),
            reason,
        };
        if let Some(addr) = value.strip_prefix(TCP_PREFIX) {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| fail("not an address and port such as tcp:127.0.0.1:4000"))?;
            if !addr.ip().is_loopback() {
                return Err(fail("only loopback addresses are allowed"));
            }
            if addr.port() == 0 {
                return Err(fail("port 0 is not a port to connect to"));
            }
            return Ok(Self::Tcp(addr));
        }
        let path = Path::new(value.strip_prefix(UNIX_PREFIX).unwrap_or(value));
        if !path.is_absolute() {
            return Err(fail(
                "a Unix socket needs an absolute path (or use tcp:127.0.0.1:<port>)",
            ));
        }
        Ok(Self::Unix(path.to_path_buf()))
    }

    /// The socket's path, for a Unix socket.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Self::Unix(p) => Some(p),
            Self::Tcp(_) => None,
        }
    }

    /// Connects to the endpoint.
    ///
    /// # Errors
    ///
    /// The connection's I/O error.
    pub async fn connect(&self) -> io::Result<Stream> {
        match self {
            Self::Unix(p) => UnixStream::connect(p).await.map(Stream::Unix),
            Self::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                // Frames are written whole; small ones (Started, Log) should go at once.
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }
}

impl fmt::Display for Endpoint {
    /// The form [`Endpoint::parse`] reads: a Unix socket as its plain path (what older
    /// pre-load modules read), TCP as `tcp:<address>:<port>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => write!(f, "{TCP_PREFIX}{a}"),
        }
    }
}

impl From<PathBuf> for Endpoint {
    fn from(path: PathBuf) -> Self {
        Self::Unix(path)
    }
}

/// A connected channel: a Unix or a TCP stream.
#[derive(Debug)]
pub enum Stream {
    /// Over a Unix socket.
    Unix(UnixStream),
    /// Over TCP.
    Tcp(TcpStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Unix(s) => s.is_write_vectored(),
            Self::Tcp(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn parses_and_prints_both_kinds() {
        let u = Endpoint::parse("/run/x.sock").unwrap();
        assert_eq!(u, Endpoint::Unix("/run/x.sock".into()));
        assert_eq!(u.to_string(), "/run/x.sock");
        assert_eq!(Endpoint::parse("unix:/run/x.sock").unwrap(), u);
        let t = Endpoint::parse("tcp:127.0.0.1:4000").unwrap();
        assert_eq!(t.to_string(), "tcp:127.0.0.1:4000");
        assert_eq!(Endpoint::parse(&t.to_string()).unwrap(), t);
        assert!(t.unix_path().is_none());
        assert!(Endpoint::parse("tcp:[::1]:4000").is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_local_endpoint() {
        for (bad, why) in [
            ("tcp:10.0.0.1:4000", "loopback"),
            ("tcp:localhost:4000", "address"),
            ("tcp:127.0.0.1:0", "port 0"),
            ("tcp:127.0.0.1", "address"),
            ("relative.sock", "absolute"),
            ("unix:relative.sock", "absolute"),
            ("", "absolute"),
        ] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_tcp_stream_carries_bytes_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Endpoint::Tcp(listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let mut c = endpoint.connect().await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        server.await.unwrap();
    }
}
