//! `teaclave_authentication_service_proto.TeaclaveAuthenticationApi`, and the `id` /
//! `token` credential both services read from a call's metadata.

use cella_platform::Caller;
use cella_types::Role;
use cella_types::user::{ParseUserNameError, UserName};
use tonic::{Request, Response, Status};

use crate::errors::{self, AUTHENTICATION_FAILED, PERMISSION_DENIED};
use crate::node::{CallError, Node};
use crate::pb::auth as pb;
use crate::pb::auth::teaclave_authentication_api_server::TeaclaveAuthenticationApi;
use crate::{acl, errors::not_served};

/// The caller behind a request's `id` and `token` metadata. `bad` is the message for a
/// credential that does not hold: the two services word it differently.
pub(crate) async fn credential<T>(
    node: &Node,
    req: &Request<T>,
    bad: &'static str,
) -> Result<Caller, Status> {
    let text = |key: &str| {
        req.metadata()
            .get(key)
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
    };
    let id = text("id").ok_or_else(|| Status::unauthenticated("missing user id"))?;
    let token = text("token").ok_or_else(|| Status::unauthenticated("missing token"))?;
    if id.is_empty() || token.is_empty() {
        return Err(Status::unauthenticated(bad));
    }
    let caller = node.authenticate(token).await.map_err(|e| match e {
        CallError::Platform(cella_platform::PlatformError::NoSession(_)) => {
            Status::unauthenticated(bad)
        }
        other => errors::auth(other),
    })?;
    // A token is one user's: the `id` beside it must name that user.
    if caller.user.as_str() != id {
        return Err(Status::unauthenticated(bad));
    }
    Ok(caller)
}

/// The authentication service.
#[derive(Debug, Clone)]
pub(crate) struct AuthApi(pub(crate) Node);

impl AuthApi {
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        credential(&self.0, req, AUTHENTICATION_FAILED).await
    }
}

#[tonic::async_trait]
impl TeaclaveAuthenticationApi for AuthApi {
    async fn user_register(
        &self,
        req: Request<pb::UserRegisterRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = self.caller(&req).await?;
        let r = req.into_inner();
        let user = user_id(&r.id)?;
        let roles =
            acl::roles_of(&r.role).ok_or_else(|| Status::unauthenticated("invalid role"))?;
        self.0
            .register_user(caller, user, r.password, roles)
            .await
            .map_err(errors::auth)?;
        Ok(Response::new(()))
    }

    async fn user_update(
        &self,
        req: Request<pb::UserUpdateRequest>,
    ) -> Result<Response<()>, Status> {
        self.caller(&req).await?;
        Err(not_served(
            "UserUpdate",
            "Cella cannot change a user's roles or attribute after registration",
        ))
    }

    async fn user_login(
        &self,
        req: Request<pb::UserLoginRequest>,
    ) -> Result<Response<pb::UserLoginResponse>, Status> {
        let r = req.into_inner();
        if r.id.is_empty() || r.password.is_empty() {
            return Err(Status::unauthenticated(AUTHENTICATION_FAILED));
        }
        let login = self.0.login(r.id, r.password).await.map_err(errors::auth)?;
        Ok(Response::new(pb::UserLoginResponse { token: login.token }))
    }

    async fn user_change_password(
        &self,
        req: Request<pb::UserChangePasswordRequest>,
    ) -> Result<Response<()>, Status> {
        self.caller(&req).await?;
        Err(not_served(
            "UserChangePassword",
            "Cella asks the old password to change one's own, and Teaclave's request does not \
             carry it; use Cella's AuthService/ChangePassword, or an admin's ResetUserPassword",
        ))
    }

    async fn reset_user_password(
        &self,
        req: Request<pb::ResetUserPasswordRequest>,
    ) -> Result<Response<pb::ResetUserPasswordResponse>, Status> {
        let caller = self.caller(&req).await?;
        if !caller.has_role(Role::Admin) {
            return Err(Status::unauthenticated(PERMISSION_DENIED));
        }
        let id = user_id(&req.into_inner().id)?;
        if id == caller.user {
            return Err(Status::unauthenticated("invalid user id"));
        }
        let password = self
            .0
            .reset_password(caller, id)
            .await
            .map_err(errors::auth)?;
        Ok(Response::new(pb::ResetUserPasswordResponse { password }))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<()>, Status> {
        self.caller(&req).await?;
        Err(not_served(
            "DeleteUser",
            "Cella has no deletion of users yet",
        ))
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = self.caller(&req).await?;
        if !caller.has_role(Role::Admin) {
            return Err(Status::unauthenticated(PERMISSION_DENIED));
        }
        let ids = self.0.all_users(caller).await.map_err(errors::auth)?;
        Ok(Response::new(pb::ListUsersResponse { ids }))
    }
}

/// A user name from a request, parsed at the edge; refused as Teaclave refuses a bad id,
/// with Cella's reason.
fn user_id(id: &str) -> Result<UserName, Status> {
    id.parse()
        .map_err(|e: ParseUserNameError| Status::unauthenticated(format!("invalid user id: {e}")))
}
