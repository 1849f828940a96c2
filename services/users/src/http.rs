//! The REST adapter: translates HTTP to [`UsersService`] calls and back. No rule lives here.

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequest, Request, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use ecom_shared::{
    ApiError, AppJson, AppPath, AppQuery, FieldError,
    auth::{AdminUser, CurrentUser, JwtVerifier, Role},
    error::{
        ErrorBody,
        doc::{AdminOnly, Authenticated, Invalid, JsonBody, NotFound, Unavailable},
        positive_id,
    },
    http::{ClientIp, TrustedProxies},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domain::{Register, UpdateProfile, User},
    error::Error,
    service::{AdminChange, TokenPair, UsersService},
};

#[derive(Clone)]
pub struct AppState {
    pub users: Arc<UsersService>,
    pub verifier: Arc<JwtVerifier>,
    pub trusted_proxies: TrustedProxies,
}

impl FromRef<AppState> for Arc<JwtVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

impl FromRef<AppState> for TrustedProxies {
    fn from_ref(s: &AppState) -> Self {
        s.trusted_proxies.clone()
    }
}

/// A user as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: i64,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            full_name: u.full_name,
            role: u.role,
            is_active: u.is_active,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserOut>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<TokenPair> for TokenResponse {
    fn from(p: TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: "bearer",
            expires_in: p.expires_in,
        }
    }
}

/// Fields are optional in the type so that a missing one is reported with the others; the
/// document says what the service requires (a missing or null field is a 422).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// An e-mail address (compared case-insensitively), at most 254 characters.
    #[schema(value_type = String, required = true, format = Email, max_length = 254,
             example = "alice@example.com")]
    pub email: Option<String>,
    /// 8 characters to 1 KiB (of UTF-8).
    #[schema(value_type = String, required = true, min_length = 8, max_length = 1024,
             example = "correct horse battery")]
    pub password: Option<String>,
    /// Not blank, at most 200 characters once trimmed, no control characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200,
             pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$", example = "Alice Example")]
    pub full_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Not blank, at most 254 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 254,
             pattern = r"\S", example = "alice@example.com")]
    pub email: Option<String>,
    /// 1 character to 1 KiB (of UTF-8).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1024)]
    pub password: Option<String>,
}

/// The OAuth2 password grant form (what Swagger's Authorize button sends).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// The e-mail: not blank, at most 254 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 254,
             pattern = r"\S")]
    pub username: Option<String>,
    /// 1 character to 1 KiB (of UTF-8).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 1024)]
    pub password: Option<String>,
    /// `password` when sent.
    #[schema(value_type = GrantType, required = false)]
    pub grant_type: Option<String>,
}

/// The only OAuth2 grant `/auth/login` takes.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code, reason = "documents the form field's one value")]
pub enum GrantType {
    Password,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token (at most 512 characters).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 512)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMeRequest {
    /// Not blank, at most 200 characters once trimmed, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub full_name: Option<String>,
    /// A new password (8 characters to 1 KiB of UTF-8). Ends every other session.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
}

impl TryFrom<RegisterRequest> for Register {
    type Error = Vec<FieldError>;

    fn try_from(body: RegisterRequest) -> Result<Self, Self::Error> {
        Register::parse(
            body.email.as_deref(),
            body.password.as_deref(),
            body.full_name.as_deref(),
        )
    }
}

impl TryFrom<UpdateMeRequest> for UpdateProfile {
    type Error = Vec<FieldError>;

    fn try_from(body: UpdateMeRequest) -> Result<Self, Self::Error> {
        UpdateProfile::parse(body.full_name.as_deref(), body.password.as_deref())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AdminUpdateRequest {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

/// Query parameters (the derive's default location is the path).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1..=100, default 20.
    #[param(value_type = i64, required = false, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Default 0.
    #[param(value_type = i64, required = false, minimum = 0)]
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    pub kid: String,
}

type HttpResult<T> = Result<T, ApiError>;

/// Create an account (role `user`). Throttled per client IP (`ECOM_RATE_LIMIT_REGISTER`).
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = UserOut, description = "the account (role `user`)"), (status = 409, body = ErrorBody, description = "email_taken"),
              JsonBody,
              (status = 429, body = ErrorBody, description = "rate_limited (with Retry-After)",
               headers(("Retry-After" = u64, description = "seconds to wait"))),
              (status = 503, body = ErrorBody, description = "service_unavailable: the password hasher is saturated, or the database is down (with Retry-After)",
               headers(("Retry-After" = u64, description = "seconds to wait")))))]
async fn register(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<RegisterRequest>,
) -> HttpResult<impl IntoResponse> {
    let command = Register::try_from(body).map_err(Error::Validation)?;
    let user = s.users.register(command, &ip.to_string()).await?;
    Ok((StatusCode::CREATED, AppJson(UserOut::from(user))))
}

/// Log in with JSON `{email, password}` or the OAuth2 password form (`username`, `password`).
#[utoipa::path(post, path = "/auth/login", tag = "auth",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"))),
    responses((status = 200, body = TokenResponse, description = "a token pair"),
              (status = 401, body = ErrorBody, description = "invalid_credentials"),
              JsonBody,
              (status = 429, body = ErrorBody, description = "rate_limited (with Retry-After)",
               headers(("Retry-After" = u64, description = "seconds to wait"))),
              (status = 503, body = ErrorBody, description = "service_unavailable: the password hasher is saturated or the throttle's store is down (with Retry-After)",
               headers(("Retry-After" = u64, description = "seconds to wait")))))]
async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    req: Request,
) -> HttpResult<AppJson<TokenResponse>> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let (email, password) = if is_form {
        let axum::Form(f) = axum::Form::<LoginForm>::from_request(req, &())
            .await
            .map_err(|_| ApiError::bad_request("the form could not be read"))?;
        if f.grant_type.as_deref().is_some_and(|g| g != "password") {
            return Err(ApiError::field("grant_type", "must be `password`"));
        }
        (f.username, f.password)
    } else {
        let AppJson(j) = AppJson::<LoginRequest>::from_request(req, &()).await?;
        (j.email, j.password)
    };
    let pair = s
        .users
        .login(
            email.as_deref().unwrap_or_default(),
            password.as_deref().unwrap_or_default(),
            &ip.to_string(),
        )
        .await?;
    Ok(AppJson(pair.into()))
}

/// Exchange a refresh token for a new pair. The presented token dies; reusing it revokes its family.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse, description = "a new token pair"),
              (status = 401, body = ErrorBody, description = "invalid_token: the refresh token is unknown, expired, used or revoked"),
              JsonBody, Unavailable))]
async fn refresh(
    State(s): State<AppState>,
    AppJson(body): AppJson<RefreshRequest>,
) -> HttpResult<AppJson<TokenResponse>> {
    let pair = s
        .users
        .refresh(body.refresh_token.as_deref().unwrap_or_default())
        .await?;
    Ok(AppJson(pair.into()))
}

/// Revoke a refresh token (and its family). 204 whether or not it was known.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "revoked (or unknown)"), JsonBody, Unavailable))]
async fn logout(
    State(s): State<AppState>,
    AppJson(body): AppJson<RefreshRequest>,
) -> HttpResult<StatusCode> {
    s.users
        .logout(body.refresh_token.as_deref().unwrap_or_default())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = []), ("password" = [])),
    responses((status = 200, body = UserOut, description = "the caller's account"), Authenticated, Unavailable))]
async fn me(State(s): State<AppState>, user: CurrentUser) -> HttpResult<AppJson<UserOut>> {
    Ok(AppJson(s.users.me(user).await?.into()))
}

/// Change one's own name or password (`role` and `is_active` are ignored here).
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = []), ("password" = [])),
    request_body = UpdateMeRequest,
    responses((status = 200, body = UserOut, description = "the account as changed"), Authenticated, JsonBody, Unavailable))]
async fn update_me(
    State(s): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<UpdateMeRequest>,
) -> HttpResult<AppJson<UserOut>> {
    let command = UpdateProfile::try_from(body).map_err(Error::Validation)?;
    Ok(AppJson(s.users.update_me(user, command).await?.into()))
}

/// Every user (admin).
#[utoipa::path(get, path = "/users", tag = "admin", params(ListQuery), security(("bearer" = []), ("password" = [])),
    responses((status = 200, body = UserList, description = "one page of users"), AdminOnly, Invalid, Unavailable))]
async fn list_users(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> HttpResult<AppJson<UserList>> {
    let (items, total, page) = s.users.list(q.limit, q.offset).await?;
    Ok(AppJson(UserList {
        items: items.into_iter().map(Into::into).collect(),
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// One user (admin).
#[utoipa::path(get, path = "/users/{id}", tag = "admin", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = []), ("password" = [])),
    responses((status = 200, body = UserOut, description = "the user"), AdminOnly, NotFound, Invalid, Unavailable))]
async fn get_user(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<AppJson<UserOut>> {
    Ok(AppJson(s.users.get(positive_id("id", id)?).await?.into()))
}

/// Change a user's role or active flag (admin). Deactivation ends their sessions.
#[utoipa::path(patch, path = "/users/{id}", tag = "admin", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = []), ("password" = [])), request_body = AdminUpdateRequest,
    responses((status = 200, body = UserOut, description = "the user as changed"), AdminOnly, NotFound,
              (status = 409, body = ErrorBody, description = "invalid_state: an admin cannot demote or deactivate themselves"),
              JsonBody, Unavailable))]
async fn admin_update(
    State(s): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<AdminUpdateRequest>,
) -> HttpResult<AppJson<UserOut>> {
    let change = AdminChange {
        role: body.role,
        is_active: body.is_active,
    };
    Ok(AppJson(
        s.users
            .admin_update(admin, positive_id("id", id)?, change)
            .await?
            .into(),
    ))
}

/// Delete a user (admin).
#[utoipa::path(delete, path = "/users/{id}", tag = "admin", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = []), ("password" = [])),
    responses((status = 204, description = "deleted"), AdminOnly, NotFound,
              (status = 409, body = ErrorBody, description = "invalid_state: an admin cannot delete themselves"),
              Invalid, Unavailable))]
async fn delete_user(
    State(s): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<StatusCode> {
    s.users.delete(admin, positive_id("id", id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JWK Set (RFC 7517)")))]
async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        AppJson(s.users.keys.jwks().await),
    )
}

/// Rotate the signing key now (admin). Tokens already issued stay valid until they expire.
#[utoipa::path(post, path = "/admin/keys/rotate", tag = "admin", security(("bearer" = []), ("password" = [])),
    responses((status = 200, body = RotatedKey, description = "the new signing key's id"), AdminOnly, Unavailable))]
async fn rotate_key(
    State(s): State<AppState>,
    AdminUser(admin): AdminUser,
) -> HttpResult<AppJson<RotatedKey>> {
    let kid = s.users.keys.rotate().await.map_err(Error::Internal)?;
    tracing::info!(admin_id = admin.id, kid, "signing key rotated by admin");
    Ok(AppJson(RotatedKey { kid }))
}

#[derive(OpenApi)]
#[openapi(info(title = "ecom Users", description = "Accounts, login and tokens."))]
struct ApiDoc;

/// The routes and their OpenAPI document (generated from the same definitions: they cannot drift).
pub fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, update_me))
        .routes(routes!(list_users))
        .routes(routes!(get_user, admin_update, delete_user))
        .routes(routes!(jwks))
        .routes(routes!(rotate_key))
        .with_state(state)
        .split_for_parts();
    ecom_shared::http::add_security(&mut openapi, Some("/auth/login"));
    (router, openapi)
}
