//! The gRPC adapter (`ecom.users.v1.UserService`): translates to [`UsersService`] calls.

use std::sync::Arc;

use ecom_proto::users::v1::{
    self as pb, GetMeRequest, GetUserRequest, GetUsersRequest, GetUsersResponse,
    IssueServiceTokenRequest, LoginRequest, LogoutRequest, LogoutResponse, RefreshTokenRequest,
    RegisterRequest, ServiceToken, TokenPair, user_service_server::UserService,
};
use ecom_shared::{
    FieldError,
    auth::{JwtVerifier, grpc_user},
    http::{ClientIp, TrustedProxies},
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{Register, Role},
    error::Error,
    service::{self, UsersService},
};

pub struct UsersGrpc {
    pub users: Arc<UsersService>,
    pub verifier: Arc<JwtVerifier>,
    /// Peers whose `x-forwarded-for` metadata names the client (the same list as over HTTP).
    pub trusted_proxies: TrustedProxies,
}

impl UsersGrpc {
    /// The client's IP, by the same rule as HTTP's [`ClientIp`]: the socket peer, or the
    /// forwarded address when the peer is a trusted proxy. Login and registration throttles are
    /// keyed by it, so an untrusted caller cannot pick its own budget by sending `x-forwarded-for`.
    fn client_ip<T>(&self, request: &Request<T>) -> std::net::IpAddr {
        let peer = request
            .remote_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let forwarded_for = request
            .metadata()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        ClientIp::resolve(peer, forwarded_for, &self.trusted_proxies.0)
    }
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

fn token_pair_pb(p: service::TokenPair) -> TokenPair {
    TokenPair {
        access_token: p.access_token,
        refresh_token: p.refresh_token,
        token_type: "bearer".to_owned(),
        expires_in: u32::try_from(p.expires_in).unwrap_or(u32::MAX),
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

    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let ip = self.client_ip(&request);
        let r = request.into_inner();
        let command = Register::try_from(r).map_err(Error::Validation)?;
        let user = self.users.register(command, &ip.to_string()).await?;
        Ok(Response::new(to_pb(user)))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        let ip = self.client_ip(&request);
        let r = request.into_inner();
        let pair = self
            .users
            .login(&r.email, &r.password, &ip.to_string())
            .await?;
        Ok(Response::new(token_pair_pb(pair)))
    }

    async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        let pair = self
            .users
            .refresh(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(token_pair_pb(pair)))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        self.users
            .logout(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn get_me(&self, request: Request<GetMeRequest>) -> Result<Response<pb::User>, Status> {
        let caller = grpc_user(&self.verifier, &request).await?;
        Ok(Response::new(to_pb(self.users.me(caller).await?)))
    }
}

impl TryFrom<RegisterRequest> for Register {
    type Error = Vec<FieldError>;

    /// Proto3 strings are never absent: an empty one fails its field's rule.
    fn try_from(r: RegisterRequest) -> Result<Self, Self::Error> {
        Register::parse(Some(&r.email), Some(&r.password), Some(&r.full_name))
    }
}
