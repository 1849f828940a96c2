//! The Users service as the source of an account's standing: the other services confirm a
//! user's token against it (`GetMe`, with the user's own token) so that a demoted, deactivated
//! or deleted admin loses admin rights at once, not when the token expires.

use std::{sync::Arc, time::Duration};

use ecom_proto::users::v1::{GetMeRequest, Role as PbRole, user_service_client::UserServiceClient};

use crate::{
    auth::{AccountSource, AuthError, CurrentUser, JwtVerifier, Role, with_bearer},
    config::CommonConfig,
    grpc::GrpcChannel,
    metrics::Metrics,
};

/// Asks the Users gRPC server about the caller's own account.
pub struct UsersAccounts {
    client: UserServiceClient<GrpcChannel>,
}

impl UsersAccounts {
    pub fn new(channel: GrpcChannel) -> Self {
        Self {
            client: UserServiceClient::new(channel),
        }
    }
}

impl AccountSource for UsersAccounts {
    fn current_role(
        &self,
        _user: CurrentUser,
        token: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Role, AuthError>> + Send>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let reply = client
                .get_me(with_bearer(tonic::Request::new(GetMeRequest {}), &token))
                .await;
            match reply {
                Ok(user) => {
                    let user = user.into_inner();
                    if !user.is_active {
                        return Err(AuthError::Invalid);
                    }
                    Ok(match PbRole::try_from(user.role) {
                        Ok(PbRole::Admin) => Role::Admin,
                        _ => Role::User,
                    })
                }
                // Users refuses the token itself: the account is deactivated or gone.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                            | tonic::Code::NotFound
                    ) =>
                {
                    Err(AuthError::Invalid)
                }
                Err(status) => {
                    tracing::warn!(code = ?status.code(), "account check failed");
                    Err(AuthError::AccountsUnavailable)
                }
            }
        })
    }
}

/// The token verifier of a service that decides on a user's rights: the Users JWKS
/// (`ECOM_JWKS_URL`), each user request confirmed with the Users gRPC server
/// (`ECOM_USERS_GRPC_URL`).
pub fn verifier(common: &CommonConfig, metrics: Arc<Metrics>) -> anyhow::Result<Arc<JwtVerifier>> {
    let channel = crate::grpc::channel(
        &common.users_grpc_url,
        metrics,
        Duration::from_secs(2),
        common.grpc_resolve_every,
    )?;
    Ok(Arc::new(
        JwtVerifier::remote(common.jwks_url.clone())
            .with_audience(&common.jwt_audience)
            .with_account_source(Arc::new(UsersAccounts::new(channel))),
    ))
}
