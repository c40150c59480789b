//! Apache Teaclave's public gRPC API served by a Cella node: the authentication service
//! (`teaclave_authentication_service_proto.TeaclaveAuthenticationApi`, port 7776 by
//! default) and the frontend (`teaclave_frontend_service_proto.TeaclaveFrontend`, port
//! 7777), over TLS with the certificate Teaclave's SDK expects in simulation mode.
//!
//! Both listeners map every call onto the same [`cella_platform::Platform`] as Cella's
//! own API: the same users, functions, files and tasks, the same policy, the same audit.
//! Teaclave's semantics are kept on this API where they differ from Cella's (its task
//! statuses, roles, `id`/`token` metadata, error codes and messages); each difference is
//! listed in `docs/teaclave.md`. Every call into the platform goes through one module
//! (`node`), the only place that knows the platform's signatures.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod acl;
mod auth;
mod errors;
mod frontend;
mod node;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use cella_platform::Platform;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Generated messages and servers of Teaclave's three public packages, compiled from
/// this crate's `proto/` (written for Cella from Teaclave's wire facts).
#[allow(missing_docs, unreachable_pub, reason = "generated code")]
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]
pub mod pb {
    /// `teaclave_common_proto` (the module names are the packages', for cross-references).
    pub mod teaclave_common_proto {
        tonic::include_proto!("teaclave_common_proto");
    }
    /// `teaclave_authentication_service_proto`.
    pub mod teaclave_authentication_service_proto {
        tonic::include_proto!("teaclave_authentication_service_proto");
    }
    /// `teaclave_frontend_service_proto`.
    pub mod teaclave_frontend_service_proto {
        tonic::include_proto!("teaclave_frontend_service_proto");
    }
    pub use teaclave_authentication_service_proto as auth;
    pub use teaclave_common_proto as common;
    pub use teaclave_frontend_service_proto as frontend;
}

/// Teaclave's default authentication port.
pub const DEFAULT_AUTH_PORT: u16 = 7776;
/// Teaclave's default frontend port.
pub const DEFAULT_FRONTEND_PORT: u16 = 7777;
/// Largest gRPC message each way, as Teaclave's `[grpc_config]`: 4 MiB.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// TLS handshakes waiting to be served per listener.
const ACCEPT_QUEUE: usize = 128;

/// Where the Teaclave listeners listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeaclaveConfig {
    /// The authentication service's address; port 0 picks a free port.
    pub auth_listen: SocketAddr,
    /// The frontend's address; port 0 picks a free port.
    pub frontend_listen: SocketAddr,
}

/// The Teaclave listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node's evidence is not simulation: Teaclave's SDK in hardware mode wants an
    /// Intel attestation report in the certificate, which Cella cannot give it.
    #[error(
        "the Teaclave API (--teaclave-api) is served only on a node with simulation evidence: \
         Teaclave's SDK accepts Cella's certificate only with SGX_MODE=SW, and in hardware \
         mode it wants an Intel (EPID/IAS) attestation report that Cella does not produce \
         (docs/teaclave.md, \"TLS\")"
    )]
    NeedsSimulation,
    /// The certificate or TLS configuration could not be made.
    #[error("TLS for the Teaclave listeners")]
    Tls(#[source] tls::TlsError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} for the Teaclave {service} service")]
    Bind {
        /// Which service.
        service: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The running Teaclave listeners.
#[derive(Debug)]
pub struct Listeners {
    auth_addr: SocketAddr,
    frontend_addr: SocketAddr,
    stop: CancellationToken,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    /// Binds both listeners and serves Teaclave's API over `platform`.
    /// `simulation_evidence` says whether the node runs on simulation evidence; without
    /// it the listeners refuse to start.
    ///
    /// # Errors
    ///
    /// [`StartError`] naming what failed.
    pub async fn start(
        platform: Arc<Platform>,
        config: &TeaclaveConfig,
        simulation_evidence: bool,
    ) -> Result<Self, StartError> {
        if !simulation_evidence {
            return Err(StartError::NeedsSimulation);
        }
        let acceptor = TlsAcceptor::from(tls::server_config().map_err(StartError::Tls)?);
        let bind = |service, addr| async move {
            TcpListener::bind(addr)
                .await
                .and_then(|l| Ok((l.local_addr()?, l)))
                .map_err(|source| StartError::Bind {
                    service,
                    addr,
                    source,
                })
        };
        let (auth_addr, auth_listener) = bind("authentication", config.auth_listen).await?;
        let (frontend_addr, frontend_listener) = bind("frontend", config.frontend_listen).await?;
        let node = node::Node::new(platform);
        let stop = CancellationToken::new();
        let auth = tonic::service::Routes::new(
            pb::auth::teaclave_authentication_api_server::TeaclaveAuthenticationApiServer::new(
                auth::AuthApi(node.clone()),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
        let frontend = tonic::service::Routes::new(
            pb::frontend::teaclave_frontend_server::TeaclaveFrontendServer::new(
                frontend::FrontendApi(node),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
        let servers = vec![
            serve(auth_listener, acceptor.clone(), auth, stop.clone()),
            serve(frontend_listener, acceptor, frontend, stop.clone()),
        ];
        // The operator asked for it (--teaclave-api); it is said once, loudly, because
        // Teaclave's SDK in simulation mode checks nothing of the node it talks to.
        tracing::warn!(
            %auth_addr,
            %frontend_addr,
            "serving Teaclave's API with a simulation-mode certificate: Teaclave clients \
             (SGX_MODE=SW) do not verify this node, so passwords and tokens sent there are \
             only as safe as the network path"
        );
        Ok(Self {
            auth_addr,
            frontend_addr,
            stop,
            servers,
        })
    }

    /// The authentication service's address.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth_addr
    }

    /// The frontend's address.
    pub fn frontend_addr(&self) -> SocketAddr {
        self.frontend_addr
    }

    /// Stops both listeners and waits until their servers have ended.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for server in self.servers {
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "a Teaclave listener ended abnormally");
            }
        }
    }
}

/// Serves `routes` on `listener` over TLS until `stop`.
fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    routes: tonic::service::Routes,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(ACCEPT_QUEUE);
    let accept_stop = stop.clone();
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                },
                () = accept_stop.cancelled() => return,
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "set_nodelay failed");
            }
            let acceptor = acceptor.clone();
            let conn_tx = conn_tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        let _closed = conn_tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                }
            });
        }
    });
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::ReceiverStream::new(conn_rx);
        let served = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop.cancelled())
            .await;
        accept.abort();
        if let Err(e) = served {
            tracing::error!(error = %e, "a Teaclave listener stopped with an error");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_listeners_refuse_to_start_without_simulation_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::open(
            cella_platform::NodeConfig::new(dir.path().join("node")),
            cella_executor::Executors::new(),
        )
        .unwrap();
        // A port in use would be a different error: this one is refused before binding.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let config = TeaclaveConfig {
            auth_listen: addr,
            frontend_listen: addr,
        };
        let e = Listeners::start(Arc::clone(&platform), &config, false)
            .await
            .unwrap_err();
        assert!(matches!(e, StartError::NeedsSimulation), "{e}");
        assert!(e.to_string().contains("SGX_MODE=SW"), "{e}");
        // With simulation evidence the same configuration gets as far as binding.
        let e = Listeners::start(platform, &config, true).await.unwrap_err();
        assert!(
            matches!(
                e,
                StartError::Bind {
                    service: "authentication",
                    ..
                }
            ),
            "{e}"
        );
    }
}
