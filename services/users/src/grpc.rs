//! The gRPC adapter (`ecom.users.v1.UserService`): translates to [`UsersService`] calls.

use std::sync::Arc;

use ecom_proto::users::v1::{
    self as pb, GetUserRequest, GetUsersRequest, GetUsersResponse, IssueServiceTokenRequest,
    ServiceToken, user_service_server::UserService,
};
use ecom_shared::auth::{JwtVerifier, grpc_user};
use tonic::{Request, Response, Status};

use crate::{domain::Role, error::Error, service::UsersService};

pub struct UsersGrpc {
    pub users: Arc<UsersService>,
    pub verifier: Arc<JwtVerifier>,
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn to_pb(u: crate::domain::User) -> pb::User {
    pb::User {
        id: u.id,
        email: u.email,
        full_name: u.full_name,
        role: match u.role {
            Role::User => pb::Role::User,
            Role::Admin => pb::Role::Admin,
        } as i32,
        is_active: u.is_active,
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
    }
}

#[tonic::async_trait]
impl UserService for UsersGrpc {
    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = grpc_user(&self.verifier, &request).await?;
        let id = request.into_inner().id;
        // Not yours → NOT_FOUND, exactly like a missing user.
        let user = self
            .users
            .visible_users(caller, &[id])
            .await?
            .into_iter()
            .next()
            .ok_or(Error::NotFound)?;
        Ok(Response::new(to_pb(user)))
    }

    async fn get_users(
        &self,
        request: Request<GetUsersRequest>,
    ) -> Result<Response<GetUsersResponse>, Status> {
        let caller = grpc_user(&self.verifier, &request).await?;
        let ids = request.into_inner().ids;
        let mut users = self.users.visible_users(caller, &ids).await?;
        // Answer in the order asked.
        users.sort_by_key(|u| ids.iter().position(|i| *i == u.id));
        Ok(Response::new(GetUsersResponse {
            users: users.into_iter().map(to_pb).collect(),
        }))
    }

    async fn issue_service_token(
        &self,
        request: Request<IssueServiceTokenRequest>,
    ) -> Result<Response<ServiceToken>, Status> {
        let req = request.into_inner();
        let (access_token, ttl) = self
            .users
            .issue_service_token(&req.service, &req.secret)
            .await?;
        Ok(Response::new(ServiceToken {
            access_token,
            expires_in: u32::try_from(ttl).unwrap_or(u32::MAX),
        }))
    }
}
