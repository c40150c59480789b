//! `cella.v1.AuthService`.

use std::collections::BTreeSet;

use cella_proto::v1 as pb;
use cella_proto::v1::auth_service_server::AuthService;
use cella_types::{Role, UserName};
use tonic::{Request, Response, Status};

use super::{Api, page_reply, page_request};
use crate::convert::{parse, parse_opt, user_info};
use crate::status::invalid;

/// The auth service.
#[derive(Debug, Clone)]
pub(crate) struct AuthApi(pub(crate) Api);

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let pb::LoginRequest { user, password } = req.into_inner();
        // Not refused here: a name that is no user name is refused like an unknown one,
        // with the same message, after the same wait (see `Platform::login`).
        let user: Option<UserName> = user.parse().ok();
        let login = self
            .0
            .run(move |p| p.login(user.as_ref(), &password))
            .await?;
        Ok(Response::new(pb::LoginResponse {
            token: login.token,
            expires_at_ms: i64::try_from(login.expires_ms).unwrap_or(i64::MAX),
            roles: login.roles.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.0.as_caller(&req, |p, c| p.logout(c)).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn register_user(
        &self,
        req: Request<pb::RegisterUserRequest>,
    ) -> Result<Response<pb::UserInfo>, Status> {
        let roles: BTreeSet<Role> = req
            .get_ref()
            .roles
            .iter()
            .map(|r| r.parse().map_err(|e| invalid(format!("roles: {e}"))))
            .collect::<Result<_, Status>>()?;
        let caller = self.0.caller(&req)?;
        let user: UserName = parse("user", &req.get_ref().user)?;
        let password = req.get_ref().password.clone();
        let u = self
            .0
            .run(move |p| p.register_user(&caller, user, &password, roles))
            .await?;
        Ok(Response::new(user_info(&u)))
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.get_ref().clone();
        let target: Option<UserName> = parse_opt("user", &r.user)?;
        self.0
            .run(move |p| p.change_password(&caller, target, &r.old_password, &r.new_password))
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let r = req.get_ref();
        let page = page_request(r.page_size, &r.page_token, false)?;
        let users = self
            .0
            .as_caller(&req, move |p, c| p.list_users(c, &page))
            .await?;
        let (users, next_page_token) = page_reply(&users, user_info);
        Ok(Response::new(pb::ListUsersResponse {
            users,
            next_page_token,
        }))
    }
}
