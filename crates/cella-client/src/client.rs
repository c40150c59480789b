//! [`Client`]: one connection to a node, the session token, and the auth and node calls.
//! Function, file and task calls live in their own modules as further `impl Client`
//! blocks.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::address::Address;
use crate::error::{ClientError, Result, chain_message};
use crate::proto;
use crate::proto::audit_service_client::AuditServiceClient;
use crate::proto::auth_service_client::AuthServiceClient;
use crate::proto::file_service_client::FileServiceClient;
use crate::proto::function_service_client::FunctionServiceClient;
use crate::proto::node_service_client::NodeServiceClient;
use crate::proto::task_service_client::TaskServiceClient;
use crate::tls::{self, ConnectFailure, ServerTrust};

/// Largest message the client accepts from the node: a function fetched with its
/// payload (a Wasm module or a program) can be far above tonic's 4 MiB default.
pub const MAX_RESPONSE_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// HTTP/2 keep-alive ping interval: keeps long `watch_task` streams alive through
/// idle-connection reapers and notices a dead node within a minute.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keep-alive ping may go unanswered before the connection is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The metadata key of the session token.
const AUTHORIZATION: &str = "authorization";

/// What a successful [`Client::login`] returns. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginInfo {
    /// The user who logged in.
    pub user: String,
    /// The session token (a secret: whoever holds it acts as the user until it expires).
    pub token: String,
    /// When the token expires, milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl fmt::Debug for LoginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginInfo")
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("roles", &self.roles)
            .finish()
    }
}

/// A session token, kept with the header value built from it.
#[derive(Clone)]
struct Token {
    raw: Arc<str>,
    header: AsciiMetadataValue,
}

/// A typed client for one Cella node.
///
/// Cloning is cheap and shares the connection (and the token, as it was at the clone).
/// Every call except [`login`](Self::login), [`health`](Self::health) and
/// [`version`](Self::version) sends the session token as `authorization: Bearer <token>`
/// and fails with [`ClientError::NotLoggedIn`] when there is none.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    addr: String,
    token: Option<Token>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("logged_in", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the node at `addr` (`host:port` or `https://host:port`), trusting
    /// exactly the certificate in `pinned_cert_pem` (the node's `<data_dir>/tls/cert.pem`).
    ///
    /// The connection is TLS 1.3 with ALPN `h2`. The TLS server name sent is the host,
    /// or `localhost` for an IP address; it does not matter for trust, which rests on the
    /// pinned certificate alone.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`], [`ClientError::InvalidCertificate`],
    /// [`ClientError::CertificateMismatch`] when the node presents another certificate,
    /// [`ClientError::Tls`] or [`ClientError::Connect`] when it cannot be reached.
    pub async fn connect(addr: &str, pinned_cert_pem: &[u8]) -> Result<Client> {
        Self::connect_with_trust(addr, ServerTrust::pinned_pem(pinned_cert_pem)?).await
    }

    /// Connects to the node at `addr`, authenticating it as `trust` says.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`].
    pub async fn connect_with_trust(addr: &str, trust: ServerTrust) -> Result<Client> {
        let address = Address::parse(addr)?;
        let config = Arc::new(tls::client_config(&trust)?);
        // The scheme is `http` on purpose: TLS is done by our connector, so tonic must
        // not try to add its own (it would refuse `https` without its TLS features).
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|_| ClientError::InvalidAddress {
                addr: addr.chars().take(200).collect(),
                reason: "not a valid URI authority",
            })?
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = endpoint
            .connect_with_connector(tls::connector(address.clone(), config))
            .await
            .map_err(|e| transport_error(&address, &e))?;
        tracing::debug!(addr = %address, "connected");
        Ok(Client {
            channel,
            addr: address.to_string(),
            token: None,
        })
    }

    /// This client with `token` as its session token, such as one saved from an earlier
    /// [`login`](Self::login).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidInput`] when the token is empty or not visible ASCII.
    pub fn with_token(mut self, token: &str) -> Result<Client> {
        self.set_token(token)?;
        Ok(self)
    }

    /// Replaces the session token.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidInput`] when the token is empty or not visible ASCII.
    pub fn set_token(&mut self, token: &str) -> Result<()> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidInput(
                "a session token is non-empty visible ASCII".to_owned(),
            ));
        }
        let mut header: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| {
                ClientError::InvalidInput("the session token is not a valid header".to_owned())
            })?;
        header.set_sensitive(true);
        self.token = Some(Token {
            raw: Arc::from(token),
            header,
        });
        Ok(())
    }

    /// Forgets the session token locally (see [`logout`](Self::logout) to revoke it).
    pub fn clear_token(&mut self) {
        self.token = None;
    }

    /// The current session token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(|t| &*t.raw)
    }

    /// The node address as connected to (`host:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Wraps `message` in a request that carries the session token.
    pub(crate) fn authed<T>(&self, message: T) -> Result<Request<T>> {
        let token = self.token.as_ref().ok_or(ClientError::NotLoggedIn)?;
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(AUTHORIZATION, token.header.clone());
        Ok(request)
    }

    pub(crate) fn auth_service(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    pub(crate) fn function_service(&self) -> FunctionServiceClient<Channel> {
        FunctionServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_RESPONSE_MESSAGE_SIZE)
    }

    pub(crate) fn file_service(&self) -> FileServiceClient<Channel> {
        FileServiceClient::new(self.channel.clone())
    }

    pub(crate) fn task_service(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(self.channel.clone())
    }

    pub(crate) fn audit_service(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }

    // ---- auth ----

    /// Logs in as `user` and keeps the session token for the calls that follow.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`] (`Unauthenticated` for a wrong name or password).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<LoginInfo> {
        let response = self
            .auth_service()
            .login(proto::LoginRequest {
                user: user.to_owned(),
                password: password.to_owned(),
            })
            .await
            .map_err(|s| ClientError::status("Login", s))?
            .into_inner();
        self.set_token(&response.token)
            .map_err(|_| ClientError::Protocol {
                op: "Login",
                message: "the node returned an unusable token".to_owned(),
            })?;
        Ok(LoginInfo {
            user: user.to_owned(),
            token: response.token,
            expires_at_ms: response.expires_at_ms,
            roles: response.roles,
        })
    }

    /// Revokes the session token on the node and forgets it.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn logout(&mut self) -> Result<()> {
        let request = self.authed(proto::LogoutRequest {})?;
        self.auth_service()
            .logout(request)
            .await
            .map_err(|s| ClientError::status("Logout", s))?;
        self.token = None;
        Ok(())
    }

    /// Creates a user with `roles` (`admin`, `function_owner`, `data_owner`); admin only.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn register_user(
        &self,
        user: &str,
        password: &str,
        roles: &[String],
    ) -> Result<proto::UserInfo> {
        let request = self.authed(proto::RegisterUserRequest {
            user: user.to_owned(),
            password: password.to_owned(),
            roles: roles.to_vec(),
        })?;
        Ok(self
            .auth_service()
            .register_user(request)
            .await
            .map_err(|s| ClientError::status("RegisterUser", s))?
            .into_inner())
    }

    /// Changes a password. `user = None` changes the caller's own and needs
    /// `old_password`; an admin may name another user, whose old password is ignored.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotLoggedIn`], [`ClientError::Status`].
    pub async fn change_password(
        &self,
        user: Option<&str>,
        old_password: &str,
        new_password: &str,
    ) -> Result<()> {
        let request = self.authed(proto::ChangePasswordRequest {
            user: user.unwrap_or_default().to_owned(),
            old_password: old_password.to_owned(),
            new_password: new_password.to_owned(),
        })?;
        self.auth_service()
            .change_password(request)
            .await
            .map_err(|s| ClientError::status("ChangePassword", s))?;
        Ok(())
    }

    // ---- node ----

    /// The node's liveness and load; needs no login.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`].
    pub async fn health(&self) -> Result<proto::HealthResponse> {
        Ok(NodeServiceClient::new(self.channel.clone())
            .health(proto::HealthRequest {})
            .await
            .map_err(|s| ClientError::status("Health", s))?
            .into_inner())
    }

    /// The node's version, API and executors; needs no login.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`].
    pub async fn version(&self) -> Result<proto::VersionResponse> {
        Ok(NodeServiceClient::new(self.channel.clone())
            .version(proto::VersionRequest {})
            .await
            .map_err(|s| ClientError::status("Version", s))?
            .into_inner())
    }

    /// The attestation policies the node publishes (for itself, and for its LibOS
    /// instances, which receipts are verified against); needs no login. They are as
    /// trustworthy as this client's trust in the node: with [`crate::ServerTrust::Attested`]
    /// they come over a channel whose other end was attested before anything was sent.
    ///
    /// # Errors
    ///
    /// [`ClientError::Status`].
    pub async fn policies(&self) -> Result<proto::GetPoliciesResponse> {
        Ok(NodeServiceClient::new(self.channel.clone())
            .get_policies(proto::GetPoliciesRequest {})
            .await
            .map_err(|s| ClientError::status("GetPolicies", s))?
            .into_inner())
    }
}

/// Turns a failed `connect_with_connector` into a [`ClientError`], using our
/// connector's own failure when it is in the chain.
fn transport_error(addr: &Address, err: &tonic::transport::Error) -> ClientError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(cause) = source {
        if let Some(failure) = cause.downcast_ref::<ConnectFailure>() {
            return failure.to_client_error();
        }
        source = cause.source();
    }
    ClientError::Connect {
        addr: addr.to_string(),
        message: chain_message(err),
    }
}
