//! Service identity: a service acting on its own (the Payments outbox relay, the Orders sweeper)
//! calls its peers with a short-lived token the Users service issues for that service's own
//! credential (a credential mints only its own service's name). The token is an ordinary access token (`role: service`, `sub: service:<name>`), signed
//! with the same keys, so every service verifies it the same way; user endpoints refuse it.

use std::time::{Duration, Instant};

use ecom_proto::users::v1::{IssueServiceTokenRequest, user_service_client::UserServiceClient};
use tokio::sync::Mutex;

use crate::{
    auth::with_bearer,
    config::{CommonConfig, Secret},
    grpc::GrpcChannel,
    metrics::Metrics,
};

enum Source {
    Users {
        client: Box<UserServiceClient<GrpcChannel>>,
        service: String,
        secret: Secret,
    },
    Fixed(String),
}

/// This service's own token, fetched from Users and cached until shortly before it expires.
pub struct ServiceTokens {
    source: Source,
    cached: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: Option<(String, Instant)>,
    /// The last failed fetch: callers arriving within a second fail at once instead of each
    /// waiting out another timeout behind the lock.
    failed: Option<(tonic::Status, Instant)>,
}

const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl ServiceTokens {
    /// Tokens for `service` from the Users gRPC server on `channel`.
    pub fn from_users(channel: GrpcChannel, service: &str, secret: Secret) -> Self {
        Self {
            source: Source::Users {
                client: Box::new(UserServiceClient::new(channel)),
                service: service.to_owned(),
                secret,
            },
            cached: Mutex::new(State::default()),
        }
    }

    /// Tokens for the service `common` configures, from the Users server it names
    /// (`ECOM_USERS_GRPC_URL`), with its own credential (`ECOM_SERVICE_SECRET`).
    pub fn for_service(common: &CommonConfig) -> anyhow::Result<Self> {
        let secret = common.service_secret.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no service identity (see SERVICES_WITH_IDENTITY)",
                common.service
            )
        })?;
        let channel = crate::grpc::channel(
            &common.users_grpc_url,
            Metrics::new(common.service),
            Duration::from_secs(3),
            common.grpc_resolve_every,
        )?;
        Ok(Self::from_users(channel, common.service, secret))
    }

    /// Always the same token (tests sign one with the test key).
    pub fn fixed(token: String) -> Self {
        Self {
            source: Source::Fixed(token),
            cached: Mutex::new(State::default()),
        }
    }

    /// A valid token: the cached one, or a new one (one fetch at a time).
    pub async fn token(&self) -> Result<String, tonic::Status> {
        let (client, service, secret) = match &self.source {
            Source::Fixed(t) => return Ok(t.clone()),
            Source::Users {
                client,
                service,
                secret,
            } => (client, service, secret),
        };
        let mut state = self.cached.lock().await;
        if let Some((token, until)) = state.token.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        if let Some((status, at)) = state.failed.as_ref()
            && at.elapsed() < RETRY_AFTER_FAILURE
        {
            return Err(status.clone());
        }
        let reply = (**client)
            .clone()
            .issue_service_token(IssueServiceTokenRequest {
                service: service.clone(),
                secret: secret.expose().to_owned(),
            })
            .await;
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                state.failed = Some((status.clone(), Instant::now()));
                return Err(status);
            }
        };
        // Renew when 80% of the lifetime has passed, so a token in flight never expires.
        let lifetime = Duration::from_secs(u64::from(reply.expires_in)).mul_f64(0.8);
        state.token = Some((reply.access_token.clone(), Instant::now() + lifetime));
        state.failed = None;
        Ok(reply.access_token)
    }

    /// Forgets the cached token (after a peer refused it, e.g. the key was rotated away).
    pub async fn invalidate(&self) {
        self.cached.lock().await.token = None;
    }

    /// `message` as a request carrying this service's token.
    pub async fn request<T>(&self, message: T) -> Result<tonic::Request<T>, tonic::Status> {
        let token = self.token().await?;
        Ok(with_bearer(tonic::Request::new(message), &token))
    }
}
