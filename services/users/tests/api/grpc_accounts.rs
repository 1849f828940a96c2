//! The public account RPCs (Register, Login, RefreshToken, Logout, GetMe): the HTTP rules and
//! error codes, over a real gRPC socket.

use ecom_proto::users::v1::{
    GetMeRequest, LoginRequest, LogoutRequest, RefreshTokenRequest, RegisterRequest, Role,
    user_service_client::UserServiceClient,
};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tonic::{Code, Request, transport::Channel};

use crate::helpers::*;

async fn client(app: &TestApp) -> UserServiceClient<Channel> {
    UserServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect")
}

fn login(email: &str, password: &str) -> LoginRequest {
    LoginRequest {
        email: email.to_owned(),
        password: password.to_owned(),
    }
}

/// A login as if relayed for `forwarded_for`.
fn login_for(email: &str, password: &str, forwarded_for: &str) -> Request<LoginRequest> {
    let mut request = Request::new(login(email, password));
    request.metadata_mut().insert(
        "x-forwarded-for",
        forwarded_for.parse().expect("metadata value"),
    );
    request
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn register_login_refresh_me_and_logout_over_grpc(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut grpc = client(&app).await;

    let user = grpc
        .register(RegisterRequest {
            email: " Alice@Example.COM ".into(),
            password: "password123".into(),
            full_name: "Alice".into(),
        })
        .await
        .expect("register")
        .into_inner();
    assert_eq!(
        (user.email.as_str(), user.role(), user.is_active),
        ("alice@example.com", Role::User, true)
    );
    assert!(user.id > 0);

    let pair = grpc
        .login(login("alice@example.com", "password123"))
        .await
        .expect("login")
        .into_inner();
    assert_eq!((pair.token_type.as_str(), pair.expires_in), ("bearer", 900));
    // The tokens are the real ones: HTTP accepts them.
    let (status, me) = app.get("/users/me", Some(&pair.access_token)).await;
    assert_eq!((status, me["id"].as_i64()), (StatusCode::OK, Some(user.id)));

    let me = grpc
        .get_me(ecom_shared::auth::with_bearer(
            Request::new(GetMeRequest {}),
            &pair.access_token,
        ))
        .await
        .expect("me")
        .into_inner();
    assert_eq!((me.id, me.email.as_str()), (user.id, "alice@example.com"));

    let rotated = grpc
        .refresh_token(RefreshTokenRequest {
            refresh_token: pair.refresh_token.clone(),
        })
        .await
        .expect("refresh")
        .into_inner();
    assert_ne!(rotated.refresh_token, pair.refresh_token);
    let reused = grpc
        .refresh_token(RefreshTokenRequest {
            refresh_token: pair.refresh_token.clone(),
        })
        .await
        .expect_err("a used refresh token is dead");
    assert_eq!(
        (
            reused.code(),
            ecom_shared::testing::grpc_error_code(&reused)
        ),
        (Code::Unauthenticated, Some("invalid_token"))
    );

    // Reuse revoked the family; log a fresh session out and check its token is dead too.
    let fresh = grpc
        .login(login("alice@example.com", "password123"))
        .await
        .expect("login again")
        .into_inner();
    grpc.logout(LogoutRequest {
        refresh_token: fresh.refresh_token.clone(),
    })
    .await
    .expect("logout");
    let after = grpc
        .refresh_token(RefreshTokenRequest {
            refresh_token: fresh.refresh_token,
        })
        .await
        .expect_err("logged out");
    assert_eq!(after.code(), Code::Unauthenticated);
    // Unknown tokens are accepted silently, as over HTTP.
    grpc.logout(LogoutRequest {
        refresh_token: "unknown".into(),
    })
    .await
    .expect("unknown token");
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn grpc_account_errors_carry_the_http_codes(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.register("bob@example.com", "password123").await;
    let mut grpc = client(&app).await;
    let register = |email: &str, password: &str| RegisterRequest {
        email: email.into(),
        password: password.into(),
        full_name: "Bob".into(),
    };

    let taken = grpc
        .register(register("BOB@example.com", "password123"))
        .await
        .expect_err("duplicate e-mail");
    assert_eq!(
        (taken.code(), ecom_shared::testing::grpc_error_code(&taken)),
        (Code::AlreadyExists, Some("email_taken"))
    );
    let short = grpc
        .register(register("carol@example.com", "short"))
        .await
        .expect_err("short password");
    assert_eq!(
        (short.code(), ecom_shared::testing::grpc_error_code(&short)),
        (Code::InvalidArgument, Some("validation_error"))
    );
    assert_error(
        &app.post(
            "/auth/register",
            &json!({"email": "carol@example.com", "password": "short", "full_name": "Bob"}),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );
    assert_eq!(app.user_count().await, 2, "the admin and bob only");

    for (email, password) in [
        ("bob@example.com", "wrong-password"),
        ("nobody@example.com", "password123"),
    ] {
        let refused = grpc
            .login(login(email, password))
            .await
            .expect_err("bad credentials");
        assert_eq!(
            (
                refused.code(),
                ecom_shared::testing::grpc_error_code(&refused)
            ),
            (Code::Unauthenticated, Some("invalid_credentials")),
            "{email}"
        );
    }
    let empty = grpc.login(login("", "")).await.expect_err("empty");
    assert_eq!(
        ecom_shared::testing::grpc_error_code(&empty),
        Some("validation_error")
    );

    let anonymous = grpc
        .get_me(Request::new(GetMeRequest {}))
        .await
        .expect_err("no token");
    assert_eq!(
        (
            anonymous.code(),
            ecom_shared::testing::grpc_error_code(&anonymous)
        ),
        (Code::Unauthenticated, Some("invalid_token"))
    );
    let forged = grpc
        .get_me(ecom_shared::auth::with_bearer(
            Request::new(GetMeRequest {}),
            "not-a-jwt",
        ))
        .await
        .expect_err("bad token");
    assert_eq!(forged.code(), Code::Unauthenticated);
    let refresh = grpc
        .refresh_token(RefreshTokenRequest {
            refresh_token: String::new(),
        })
        .await
        .expect_err("no refresh token");
    assert_eq!(
        ecom_shared::testing::grpc_error_code(&refresh),
        Some("validation_error")
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn grpc_logins_ignore_forwarded_for_from_an_untrusted_peer(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_RATE_LIMIT_LOGIN", "2/minute")]).await;
    let mut grpc = client(&app).await;
    // The budget is keyed by the real peer (127.0.0.1), whatever address the caller claims:
    // the HTTP login from the same peer and both gRPC ones spend the same budget.
    assert_eq!(
        app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.0,
        StatusCode::OK
    );
    grpc.login(login_for(ADMIN_EMAIL, ADMIN_PASSWORD, "203.0.113.1"))
        .await
        .expect("second attempt");
    let limited = grpc
        .login(login_for(ADMIN_EMAIL, ADMIN_PASSWORD, "203.0.113.2"))
        .await
        .expect_err("a claimed address is not a new budget");
    assert_eq!(
        (
            limited.code(),
            ecom_shared::testing::grpc_error_code(&limited)
        ),
        (Code::ResourceExhausted, Some("rate_limited"))
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn grpc_logins_believe_forwarded_for_from_a_trusted_proxy(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("ECOM_RATE_LIMIT_LOGIN", "2/minute"),
            ("ECOM_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    let mut grpc = client(&app).await;
    for _ in 0..2 {
        grpc.login(login_for(ADMIN_EMAIL, ADMIN_PASSWORD, "203.0.113.1"))
            .await
            .expect("within the budget");
    }
    let limited = grpc
        .login(login_for(ADMIN_EMAIL, ADMIN_PASSWORD, "203.0.113.1"))
        .await
        .expect_err("this client's budget is spent");
    assert_eq!(
        ecom_shared::testing::grpc_error_code(&limited),
        Some("rate_limited")
    );
    // Another client behind the same proxy has its own budget.
    grpc.login(login_for(ADMIN_EMAIL, ADMIN_PASSWORD, "203.0.113.2"))
        .await
        .expect("another client");
}
