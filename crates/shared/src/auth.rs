//! Access-token verification for every service: JWTs signed by the Users service, checked
//! against its JWKS.
//!
//! Security decisions, each deliberate:
//! - only asymmetric algorithms are accepted (EdDSA, RS256), and the algorithm must match the key
//!   the `kid` names, so `alg: none` and HS256-signed-with-the-public-key are refused;
//! - the token must carry `typ: "access"` in its claims, which a refresh token never has;
//! - an unknown `kid` triggers at most one JWKS refetch per few seconds, so a flood of forged
//!   tokens cannot turn into a flood of fetches;
//! - a signature proves what was true when the token was issued, not now: where an
//!   [`AccountSource`] is configured, every user request is confirmed against the Users service
//!   (the account still exists and is active; an admin is still an admin), see
//!   [`JwtVerifier::confirm`].

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{FromRef, FromRequestParts, OptionalFromRequestParts},
    http::{HeaderMap, header, request::Parts},
};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    errors::ErrorKind,
    jwk::{Jwk, JwkSet},
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use crate::error::ApiError;

/// The claim value that marks an access token.
pub const ACCESS_TOKEN_TYPE: &str = "access";
/// The `iss` of every access token: the Users service.
pub const TOKEN_ISSUER: &str = "ecom-users";
/// The default `aud` of access tokens (`ECOM_JWT_AUDIENCE`): the platform's APIs.
pub const DEFAULT_AUDIENCE: &str = "ecom";
/// Algorithms a token may be signed with. Never a symmetric one.
pub const ALLOWED_ALGORITHMS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::RS256];

/// A user's role.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role `{other}`")),
        }
    }
}

/// The `role` claim of an access token: a user's role, or `service` for a token the Users
/// service issued to another service (see [`ServiceTokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimRole {
    User,
    Admin,
    Service,
}

impl From<Role> for ClaimRole {
    fn from(r: Role) -> Self {
        match r {
            Role::User => Self::User,
            Role::Admin => Self::Admin,
        }
    }
}

/// The `sub` of a service token: `service:<name>`.
pub const SERVICE_SUBJECT_PREFIX: &str = "service:";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id, as a string (JWT convention); `service:<name>` for a service.
    pub sub: String,
    pub role: ClaimRole,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// Always [`ACCESS_TOKEN_TYPE`].
    pub typ: String,
    /// Always [`TOKEN_ISSUER`].
    pub iss: String,
    /// The platform the token is for (`ECOM_JWT_AUDIENCE`): a verifier refuses any other.
    pub aud: String,
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: i64,
    pub role: Role,
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Who made a gRPC call: an end user (their token forwarded), or one of the platform's services
/// acting on its own (a relay, a sweeper) with a service token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(CurrentUser),
    Service(String),
}

impl Caller {
    /// True for the named service only.
    pub fn is_service(&self, name: &str) -> bool {
        matches!(self, Self::Service(s) if s == name)
    }
}

/// Why a token was refused. Rendered as 401 `token_expired` or `invalid_token`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is invalid")]
    Invalid,
    #[error("the signing keys could not be fetched")]
    KeysUnavailable,
    #[error("the account could not be checked")]
    AccountsUnavailable,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Expired => ApiError::new(
                crate::error::ErrorCode::TokenExpired,
                "the access token has expired",
            ),
            AuthError::KeysUnavailable => ApiError::unavailable("token verification"),
            AuthError::AccountsUnavailable => ApiError::unavailable("account check"),
            AuthError::Missing | AuthError::Invalid => ApiError::invalid_token(e.to_string()),
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        ApiError::from(e).to_status()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Produces the current key set (an HTTP fetch, or the Users service's own key store).
pub type JwksLoader = Arc<dyn Fn() -> BoxFuture<anyhow::Result<JwkSet>> + Send + Sync>;

struct CachedKey {
    key: DecodingKey,
    alg: Algorithm,
}

struct Cache {
    keys: HashMap<String, Arc<CachedKey>>,
    fetched_at: Option<Instant>,
}

/// The least time between two loads of the signing keys caused by unknown `kid`s: a flood of
/// tokens with made-up `kid`s costs at most one load per interval.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(2);

/// Where a user's account stands now: the Users service (its database there; its gRPC `GetMe`
/// everywhere else).
pub trait AccountSource: Send + Sync {
    /// The account's role now. `Err(Invalid)` when it is deactivated or deleted,
    /// `Err(AccountsUnavailable)` when the source cannot answer.
    fn current_role(&self, user: CurrentUser, token: String) -> BoxFuture<Result<Role, AuthError>>;
}

/// How long an ordinary user's account, once confirmed active, is not asked about again by this
/// process. Admin rights are confirmed on every request.
pub const ACCOUNT_RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Confirmed accounts remembered at most (the map is emptied beyond it).
const MAX_CONFIRMED_ACCOUNTS: usize = 100_000;

/// Verified tokens remembered at most (the memo is emptied beyond it).
const MAX_VERIFIED_TOKENS: usize = 10_000;

/// A token whose signature and claims were checked: who it names, until when, under which key.
struct Verified {
    caller: Caller,
    /// `exp`, in seconds since the epoch.
    expires: i64,
    kid: String,
    key: Arc<CachedKey>,
}

/// Verifies access tokens against a JWKS, cached and refetched on an unknown `kid`.
///
/// A token once verified is remembered (by its exact text) until it expires, as long as the key
/// that signed it is still the current one for its `kid` and the key set is fresh: a client
/// sends the same token with every request, and each service on a checkout's path checks it, so
/// the signature is checked once per process instead of once per request. Only successes are
/// remembered (a flood of forged tokens cannot fill the memo), and what [`Self::confirm`] checks
/// against the Users service is still checked on every request.
pub struct JwtVerifier {
    loader: JwksLoader,
    cache: RwLock<Cache>,
    refetch: Mutex<()>,
    min_refetch_interval: Duration,
    max_age: Duration,
    accounts: Option<Arc<dyn AccountSource>>,
    /// The `aud` a token must carry.
    audience: String,
    /// Ordinary users confirmed active, and when.
    confirmed: std::sync::Mutex<HashMap<i64, Instant>>,
    /// Tokens already verified (see the type's doc).
    verified: std::sync::Mutex<HashMap<String, Verified>>,
}

impl JwtVerifier {
    pub fn new(loader: JwksLoader) -> Self {
        Self {
            loader,
            cache: RwLock::new(Cache {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            refetch: Mutex::new(()),
            min_refetch_interval: MIN_REFETCH_INTERVAL,
            max_age: Duration::from_secs(300),
            accounts: None,
            audience: DEFAULT_AUDIENCE.to_owned(),
            confirmed: std::sync::Mutex::new(HashMap::new()),
            verified: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Accepts only tokens whose `aud` is `audience` (default [`DEFAULT_AUDIENCE`]).
    pub fn with_audience(mut self, audience: &str) -> Self {
        audience.clone_into(&mut self.audience);
        self
    }

    /// Confirms every user request against `source` (see [`Self::confirm`]). Without one, a
    /// valid token is believed until it expires (the gateway, which decides nothing on it, and
    /// tests).
    pub fn with_account_source(mut self, source: Arc<dyn AccountSource>) -> Self {
        self.accounts = Some(source);
        self
    }

    /// The user a verified token names, as the Users service knows them now: a deactivated or
    /// deleted account is refused (`Invalid`), and a token claiming `admin` carries admin rights
    /// only while the account is still an admin (otherwise it is treated as a `user` token; a
    /// promotion needs a new token). Admin tokens are confirmed on every request; an ordinary
    /// user's active account is remembered for [`ACCOUNT_RECHECK_INTERVAL`].
    ///
    /// When the Users service cannot answer, admin rights are refused (503) and an ordinary
    /// user is believed on the token alone (logged): checkout keeps working through a Users
    /// outage, and the token's lifetime still bounds it.
    pub async fn confirm(&self, user: CurrentUser, token: &str) -> Result<CurrentUser, AuthError> {
        let Some(source) = &self.accounts else {
            return Ok(user);
        };
        let admin_claim = user.is_admin();
        if !admin_claim && self.recently_confirmed(user.id) {
            return Ok(user);
        }
        match source.current_role(user, token.to_owned()).await {
            Ok(role) => {
                if !admin_claim {
                    let mut confirmed = self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
                    if confirmed.len() >= MAX_CONFIRMED_ACCOUNTS {
                        confirmed.clear();
                    }
                    confirmed.insert(user.id, Instant::now());
                }
                let role = if admin_claim && role == Role::Admin {
                    Role::Admin
                } else {
                    Role::User
                };
                Ok(CurrentUser { id: user.id, role })
            }
            Err(AuthError::AccountsUnavailable) if !admin_claim => {
                tracing::warn!(
                    user_id = user.id,
                    "the Users service could not confirm the account; believing the token"
                );
                Ok(user)
            }
            Err(e) => {
                self.confirmed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&user.id);
                Err(e)
            }
        }
    }

    fn recently_confirmed(&self, id: i64) -> bool {
        self.confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .is_some_and(|at| at.elapsed() < ACCOUNT_RECHECK_INTERVAL)
    }

    /// A verifier fetching `url` over HTTP (other services, the gateway).
    pub fn remote(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self::new(Arc::new(move || {
            let (client, url) = (client.clone(), url.clone());
            Box::pin(async move {
                let set = client
                    .get(&url)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                Ok(set)
            })
        }))
    }

    /// Lowers the refetch interval (tests rotate keys and want to see them at once).
    pub fn with_min_refetch_interval(mut self, d: Duration) -> Self {
        self.min_refetch_interval = d;
        self
    }

    async fn refresh(&self, force: bool) -> Result<(), AuthError> {
        let _guard = self.refetch.lock().await;
        // Another task may have refreshed while we waited for the lock.
        if let Some(at) = self.cache.read().await.fetched_at {
            let age = at.elapsed();
            if age < self.min_refetch_interval || (!force && age < self.max_age) {
                return Ok(());
            }
        }
        let set = match (self.loader)().await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the JWKS");
                // Keep serving the keys we have; record the attempt so we do not hammer.
                let mut cache = self.cache.write().await;
                if cache.fetched_at.is_none() {
                    return Err(AuthError::KeysUnavailable);
                }
                cache.fetched_at = Some(Instant::now());
                return Ok(());
            }
        };
        let keys = set.keys.iter().filter_map(cached_key).collect();
        *self.cache.write().await = Cache {
            keys,
            fetched_at: Some(Instant::now()),
        };
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<Arc<CachedKey>, AuthError> {
        {
            let cache = self.cache.read().await;
            let stale = cache
                .fetched_at
                .is_none_or(|at| at.elapsed() > self.max_age);
            if !stale && let Some(k) = cache.keys.get(kid) {
                return Ok(k.clone());
            }
        }
        self.refresh(true).await?;
        self.cache
            .read()
            .await
            .keys
            .get(kid)
            .cloned()
            .ok_or(AuthError::Invalid)
    }

    /// Verifies a compact JWT of an end user. Service tokens are refused: a service acts as
    /// itself only where [`Self::verify_caller`] is used.
    pub async fn verify(&self, token: &str) -> Result<CurrentUser, AuthError> {
        match self.verify_caller(token).await? {
            Caller::User(user) => Ok(user),
            Caller::Service(_) => Err(AuthError::Invalid),
        }
    }

    /// Verifies a compact JWT and returns the caller, a user or a service.
    pub async fn verify_caller(&self, token: &str) -> Result<Caller, AuthError> {
        if let Some(caller) = self.remembered(token).await {
            return Ok(caller);
        }
        let header = decode_header(token).map_err(|_| AuthError::Invalid)?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let key = self.key(&kid).await?;
        if key.alg != header.alg {
            return Err(AuthError::Invalid);
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iat", "iss", "aud"]);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[&self.audience]);
        let data =
            decode::<AccessClaims>(token, &key.key, &validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let claims = data.claims;
        let caller = caller_of(&claims)?;
        self.remember(token, &caller, claims.exp, kid, key);
        Ok(caller)
    }

    /// The caller of `token` if it was verified before, is not expired (no leeway here), its
    /// key is still the current one for its `kid`, and the key set is not due for a refetch.
    async fn remembered(&self, token: &str) -> Option<Caller> {
        let (caller, kid, key) = {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            let v = verified.get(token)?;
            if v.expires <= chrono::Utc::now().timestamp() {
                return None;
            }
            (v.caller.clone(), v.kid.clone(), v.key.clone())
        };
        let cache = self.cache.read().await;
        let fresh = cache
            .fetched_at
            .is_some_and(|at| at.elapsed() <= self.max_age);
        let current = cache.keys.get(&kid).is_some_and(|k| Arc::ptr_eq(k, &key));
        (fresh && current).then_some(caller)
    }

    fn remember(
        &self,
        token: &str,
        caller: &Caller,
        expires: i64,
        kid: String,
        key: Arc<CachedKey>,
    ) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(
            token.to_owned(),
            Verified {
                caller: caller.clone(),
                expires,
                kid,
                key,
            },
        );
    }

    /// Verifies the bearer token of an `Authorization` header value.
    pub async fn verify_bearer(&self, value: Option<&str>) -> Result<CurrentUser, AuthError> {
        let token = bearer(value).ok_or(AuthError::Missing)?;
        self.verify(token).await
    }
}

/// Who verified `claims` name (a user or a service), if they are an access token's.
fn caller_of(claims: &AccessClaims) -> Result<Caller, AuthError> {
    if claims.typ != ACCESS_TOKEN_TYPE {
        return Err(AuthError::Invalid);
    }
    let role = match claims.role {
        ClaimRole::User => Role::User,
        ClaimRole::Admin => Role::Admin,
        ClaimRole::Service => {
            let name = claims
                .sub
                .strip_prefix(SERVICE_SUBJECT_PREFIX)
                .filter(|n| valid_service_name(n))
                .ok_or(AuthError::Invalid)?;
            return Ok(Caller::Service(name.to_owned()));
        }
    };
    let id = claims
        .sub
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(AuthError::Invalid)?;
    Ok(Caller::User(CurrentUser { id, role }))
}

/// A service name as it appears in a service token: 1 to 32 of `a-z`, `0-9`, `-`.
pub fn valid_service_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive).
pub fn bearer(value: Option<&str>) -> Option<&str> {
    let value = value?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

fn cached_key(jwk: &Jwk) -> Option<(String, Arc<CachedKey>)> {
    let kid = jwk.common.key_id.clone()?;
    let alg = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
        // Symmetric and other key types are never trusted.
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, Arc::new(CachedKey { key, alg })))
}

/// The bearer token a request carries ("" when none): what a service forwards to the peers it
/// calls on the user's behalf, so they check identity themselves.
/// The bearer token of a gRPC request's `authorization` metadata ("" when none): what a
/// servicer forwards to a peer on the caller's behalf, as HTTP handlers forward the header.
pub fn grpc_bearer_token<T>(request: &tonic::Request<T>) -> String {
    let value = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    bearer(value).unwrap_or_default().to_owned()
}

pub fn bearer_token(headers: &HeaderMap) -> &str {
    bearer(authorization(headers)).unwrap_or_default()
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    Arc<JwtVerifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(*user);
        }
        let verifier = Arc::<JwtVerifier>::from_ref(state);
        let value = authorization(&parts.headers);
        let user = verifier.verify_bearer(value).await?;
        let user = verifier
            .confirm(user, bearer(value).unwrap_or_default())
            .await?;
        parts.extensions.insert(user);
        Ok(user)
    }
}

impl<S> OptionalFromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    Arc<JwtVerifier>: FromRef<S>,
{
    type Rejection = ApiError;

    /// No `Authorization` header → `None`; a bad token is still an error.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if authorization(&parts.headers).is_none() {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// An authenticated admin; anyone else gets 403 (or 401 without a valid token).
#[derive(Debug, Clone, Copy)]
pub struct AdminUser(pub CurrentUser);

impl<S> FromRequestParts<S> for AdminUser
where
    S: Send + Sync,
    Arc<JwtVerifier>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        if user.is_admin() {
            Ok(Self(user))
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// gRPC: the caller of a request, from its `authorization` metadata.
pub async fn grpc_user<T>(
    verifier: &JwtVerifier,
    request: &tonic::Request<T>,
) -> Result<CurrentUser, tonic::Status> {
    if let Some(user) = request.extensions().get::<CurrentUser>() {
        return Ok(*user);
    }
    let value = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let user = verifier.verify_bearer(value).await?;
    Ok(verifier
        .confirm(user, bearer(value).unwrap_or_default())
        .await?)
}

/// gRPC: the caller of a request, an end user or a service.
pub async fn grpc_caller<T>(
    verifier: &JwtVerifier,
    request: &tonic::Request<T>,
) -> Result<Caller, tonic::Status> {
    if let Some(user) = request.extensions().get::<CurrentUser>() {
        return Ok(Caller::User(*user));
    }
    let value = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let token = bearer(value).ok_or(AuthError::Missing)?;
    Ok(match verifier.verify_caller(token).await? {
        Caller::User(user) => Caller::User(verifier.confirm(user, token).await?),
        service => service,
    })
}

/// A client interceptor that forwards the end user's access token on every call made with it
/// (`UserServiceClient::with_interceptor(channel, BearerInterceptor::new(token))`).
#[derive(Clone)]
pub struct BearerInterceptor(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl BearerInterceptor {
    pub fn new(token: &str) -> Self {
        Self(format!("Bearer {token}").parse().ok())
    }
}

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let value = self
            .0
            .clone()
            .ok_or_else(|| tonic::Status::unauthenticated("malformed token"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// Adds a bearer token to an outgoing gRPC request (forwarding the end user's identity).
pub fn with_bearer<T>(mut request: tonic::Request<T>, token: &str) -> tonic::Request<T> {
    if let Ok(v) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", v);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accounts as a test sets them: id → role (absent: deactivated or deleted), or no answer.
    struct Accounts {
        roles: std::sync::Mutex<HashMap<i64, Role>>,
        up: std::sync::atomic::AtomicBool,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl AccountSource for Accounts {
        fn current_role(
            &self,
            user: CurrentUser,
            _token: String,
        ) -> BoxFuture<Result<Role, AuthError>> {
            use std::sync::atomic::Ordering;
            self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = if self.up.load(Ordering::SeqCst) {
                self.roles
                    .lock()
                    .expect("roles")
                    .get(&user.id)
                    .copied()
                    .ok_or(AuthError::Invalid)
            } else {
                Err(AuthError::AccountsUnavailable)
            };
            Box::pin(async move { answer })
        }
    }

    /// A fixed Ed25519 key as (signing key, its JWK under `kid`).
    fn test_key(kid: &str) -> (jsonwebtoken::EncodingKey, Jwk) {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[7u8; 32]);
        let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        (key, jwk)
    }

    fn signed(kid: &str, sub: &str, exp_in: i64) -> String {
        let (key, _) = test_key(kid);
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let claims = serde_json::json!({"sub": sub, "role": "user", "iat": now, "exp": now + exp_in,
            "jti": "j", "typ": "access", "iss": TOKEN_ISSUER, "aud": DEFAULT_AUDIENCE});
        jsonwebtoken::encode(&header, &claims, &key).expect("token")
    }

    /// A verified token is remembered only while it could still be verified: a key withdrawn
    /// from the JWKS ends it at the next refetch, and an expired token is never answered.
    #[tokio::test]
    async fn remembered_tokens_end_with_their_key_and_their_expiry() {
        let keys = Arc::new(std::sync::Mutex::new(vec![test_key("k1").1]));
        let loaded = keys.clone();
        let verifier = JwtVerifier::new(Arc::new(move || {
            let set = JwkSet {
                keys: loaded.lock().expect("keys").clone(),
            };
            Box::pin(async move { Ok(set) })
        }))
        .with_min_refetch_interval(Duration::ZERO);
        let token = signed("k1", "7", 600);
        let user = CurrentUser {
            id: 7,
            role: Role::User,
        };
        assert_eq!(verifier.verify(&token).await, Ok(user));
        assert_eq!(verifier.remembered(&token).await, Some(Caller::User(user)));
        assert_eq!(verifier.verify(&token).await, Ok(user), "from the memo");

        // The key is withdrawn; a token under another kid makes the verifier refetch.
        keys.lock().expect("keys").clear();
        assert!(verifier.verify(&signed("k2", "8", 600)).await.is_err());
        assert_eq!(verifier.remembered(&token).await, None);
        assert_eq!(verifier.verify(&token).await, Err(AuthError::Invalid));

        // Back, but the remembered entry has expired: not answered from the memo.
        keys.lock().expect("keys").push(test_key("k1").1);
        assert!(verifier.verify(&signed("k1", "9", 600)).await.is_ok());
        let (kid, key) = {
            let cache = verifier.cache.read().await;
            let key = cache.keys.get("k1").expect("k1").clone();
            ("k1".to_owned(), key)
        };
        let past = chrono::Utc::now().timestamp() - 1;
        verifier.remember(&token, &Caller::User(user), past, kid, key);
        assert_eq!(verifier.remembered(&token).await, None);
    }

    #[tokio::test]
    async fn a_token_carries_only_the_rights_the_account_still_has() {
        use std::sync::atomic::Ordering;
        let accounts = Arc::new(Accounts {
            roles: std::sync::Mutex::new(HashMap::from([(1, Role::Admin), (2, Role::User)])),
            up: true.into(),
            asked: 0.into(),
        });
        let verifier =
            JwtVerifier::new(Arc::new(|| Box::pin(async { Ok(JwkSet { keys: vec![] }) })))
                .with_account_source(accounts.clone());
        let admin = CurrentUser {
            id: 1,
            role: Role::Admin,
        };
        let user = CurrentUser {
            id: 2,
            role: Role::User,
        };
        assert_eq!(verifier.confirm(admin, "t").await, Ok(admin));

        // Demoted: the admin token now carries user rights, at once.
        accounts.roles.lock().expect("roles").insert(1, Role::User);
        assert_eq!(
            verifier.confirm(admin, "t").await,
            Ok(CurrentUser {
                id: 1,
                role: Role::User
            })
        );
        // Promoted: a user token does not become an admin one (log in again).
        accounts.roles.lock().expect("roles").insert(2, Role::Admin);
        assert_eq!(verifier.confirm(user, "t").await, Ok(user));

        // Deactivated or deleted: refused. An admin is asked about on every request; a user's
        // active account is remembered for ACCOUNT_RECHECK_INTERVAL.
        accounts.roles.lock().expect("roles").clear();
        assert_eq!(verifier.confirm(admin, "t").await, Err(AuthError::Invalid));
        let asked = accounts.asked.load(Ordering::SeqCst);
        assert_eq!(verifier.confirm(user, "t").await, Ok(user), "remembered");
        assert_eq!(accounts.asked.load(Ordering::SeqCst), asked);

        // The Users service does not answer: admin rights are refused, a user believed.
        accounts.up.store(false, Ordering::SeqCst);
        assert_eq!(
            verifier.confirm(admin, "t").await,
            Err(AuthError::AccountsUnavailable)
        );
        let stranger = CurrentUser {
            id: 3,
            role: Role::User,
        };
        assert_eq!(verifier.confirm(stranger, "t").await, Ok(stranger));

        // Without a source (the gateway): the token is believed.
        let plain = JwtVerifier::new(Arc::new(|| Box::pin(async { Ok(JwkSet { keys: vec![] }) })));
        assert_eq!(plain.confirm(admin, "t").await, Ok(admin));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
